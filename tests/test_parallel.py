"""Data parallel over 8 CPU devices equals one device; multi-host detection; the cache.

The 8-device checks run in a child process: XLA_FLAGS must be set before JAX starts,
and this pytest process has started JAX already.
"""

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import jax

from regjax import parallel
from regjax import schema
from regjax import train
from regjax.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_EIGHT_DEVICES = textwrap.dedent(r'''
  import json, os, re
  os.environ['XLA_FLAGS'] = '--xla_force_host_platform_device_count=8'
  import jax, jax.numpy as jnp
  from regjax import parallel, schema, train
  from regjax.data import load_dataset

  c = schema.default_config()
  c.data.train_size = 240
  c.model.widths = (32,)
  c.model.batch_norm = True  # Its statistics must be those of the global batch.
  c.model.dropout_rate = 0.2  # Its masks must not depend on the layout.
  c.train.batch_size = 48  # 6 examples per device.
  data = load_dataset(c.data)
  trainer = train.make_trainer(c, data.num_classes, len(data.x_train))
  state = trainer.init(jax.random.key(0), data.x_train[:1])
  hp = train.penalty_hparams(c.penalty)
  k1, k2 = jax.random.split(jax.random.key(1))
  x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)

  one = jax.jit(trainer.train_epoch)  # Unsharded inputs: runs on device 0 alone.
  mesh = parallel.batch_mesh()
  sharded = parallel.make_sharded_train_epoch(trainer, mesh)
  s1 = s8 = state
  for epoch in range(2):
    s1, m1 = one(s1, x, y, hp, k1, k2, jnp.int32(epoch))
    args = parallel.replicate((s8, x, y, hp, k1, k2, jnp.int32(epoch)), mesh)
    s8, m8 = sharded(*args)
  hlo = sharded.lower(*args).compile().as_text()
  diff = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), (s1, m1), (s8, m8))
  print(json.dumps({
      'devices': len(jax.devices()),
      'mesh': mesh.devices.size,
      'max_diff': max(jax.tree.leaves(diff)),
      'bn_var_diff': max(jax.tree.leaves(diff[0].batch_stats)),
      'bn_var_mean': float(jnp.mean(s8.batch_stats['_Hidden_0']['BatchNorm_0']['var'])),
      'kernel_spec': str(s8.params['Dense_0']['kernel'].sharding.spec),
      'all_reduce': hlo.count('all-reduce'),
      'local_hidden': sorted(set(re.findall(r'f32\[(\d+),32\]', hlo))),
      'step': int(s8.step),
  }))
''')

_CACHE_CHILD = textwrap.dedent(r'''
  import json, sys, time
  import jax, jax.numpy as jnp
  from regjax import parallel, schema, train
  events = []
  jax.monitoring.register_event_listener(lambda event, **_: events.append(event))
  parallel.enable_compilation_cache(sys.argv[1])
  c = schema.default_config()
  trainer = train.make_trainer(c, num_classes=10, num_train=64)
  x, y = jnp.zeros((64, 8, 8, 1)), jnp.zeros((64,), jnp.int32)
  state = trainer.init(jax.random.key(0), x[:1])
  key = jax.random.key(1)
  t0 = time.perf_counter()
  jax.jit(trainer.train_epoch).lower(state, x, y, train.penalty_hparams(c.penalty), key,
                                     key, jnp.int32(0)).compile()
  print(json.dumps({'hits': events.count('/jax/compilation_cache/cache_hits'),
                    'misses': events.count('/jax/compilation_cache/cache_misses'),
                    'compile_seconds': time.perf_counter() - t0}))
''')


def _child(code: str, *args: str) -> dict:
  env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
  env.pop('XLA_FLAGS', None)
  proc = subprocess.run([sys.executable, '-c', code, *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=240)
  if proc.returncode:
    raise AssertionError(f'child failed:\n{proc.stderr[-3000:]}')
  return json.loads(proc.stdout.strip().splitlines()[-1])


class ShardedEpochTest(absltest.TestCase):

  def test_eight_devices_give_the_one_device_epoch(self):
    out = _child(_EIGHT_DEVICES)
    self.assertEqual(out['devices'], 8)
    self.assertEqual(out['mesh'], 8)
    self.assertEqual(out['step'], 2 * (240 // 48))
    # Parameters, optimizer state, BatchNorm statistics and metrics after 2 epochs.
    self.assertLess(out['max_diff'], 1e-5)
    # Per-device statistics of 6 examples would give other variances than those of the
    # global 48; equality says BatchNorm reduced over the global batch.
    self.assertLess(out['bn_var_diff'], 1e-6)
    self.assertGreater(out['bn_var_mean'], 1e-3)
    # Replicated parameters; the batch really is split: hidden activations are
    # (6, 32) per device, never (48, 32), and gradients meet in all-reduces.
    self.assertEqual(out['kernel_spec'], 'P()')
    self.assertIn('6', out['local_hidden'])
    self.assertNotIn('48', out['local_hidden'])
    self.assertGreater(out['all_reduce'], 0)

  def test_batch_not_divisible_by_devices_names_the_field(self):
    c = schema.default_config()
    trainer = train.make_trainer(c, 10, 100)
    mesh = parallel.batch_mesh(jax.devices()[:1])
    parallel.make_sharded_train_epoch(trainer, mesh)  # 32 % 1 == 0: fine.
    fake = mock.Mock(devices=mock.Mock(size=3))
    with self.assertRaisesRegex(ConfigError, r'train\.batch_size=32.*multiple of the 3'):
      parallel.make_sharded_train_epoch(trainer, fake)


class DistributedTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ('laptop', {}, None),
      ('colab_tpu_single_host', {'TPU_WORKER_HOSTNAMES': 'localhost'}, None),
      ('tpu_pod', {'TPU_WORKER_HOSTNAMES': 'w-0,w-1,w-2,w-3'}, 'TPU pod slice'),
      ('slurm_one_task', {'SLURM_STEP_NODELIST': 'n1', 'SLURM_NTASKS': '1'}, None),
      ('slurm_four_tasks', {'SLURM_STEP_NODELIST': 'n[1-4]', 'SLURM_NTASKS': '4'},
       'SLURM job step'),
      ('explicit', {'JAX_COORDINATOR_ADDRESS': '10.0.0.1:1234'},
       'explicit coordinator (with JAX_NUM_PROCESSES, JAX_PROCESS_ID)'),
  )
  def test_multi_host_environment(self, env, expected):
    self.assertEqual(parallel.multi_host_environment(env), expected)

  def test_initializes_only_on_multi_host(self):
    with mock.patch.object(jax.distributed, 'initialize') as init, \
         mock.patch.object(jax.distributed, 'is_initialized', return_value=False):
      self.assertFalse(parallel.maybe_initialize_distributed({}))
      init.assert_not_called()
      self.assertTrue(parallel.maybe_initialize_distributed(
          {'TPU_WORKER_HOSTNAMES': 'w-0,w-1'}))
      init.assert_called_once_with()


class EnvironmentTest(absltest.TestCase):

  def test_environment_names_backend_devices_precision_and_versions(self):
    env = parallel.environment()
    self.assertEqual(env['backend'], jax.default_backend())
    self.assertEqual(env['devices'], jax.device_count())
    self.assertEqual(env['matmul_precision'], 'highest')  # What tests/conftest.py sets.
    self.assertEqual(env['jax'], jax.__version__)
    json.dumps(env)  # JSON-ready, as results.json needs.


class CompilationCacheTest(absltest.TestCase):

  def test_second_process_loads_every_program_from_the_cache(self):
    with tempfile.TemporaryDirectory() as cache:
      first = _child(_CACHE_CHILD, cache)
      entries = set(os.listdir(cache))
      second = _child(_CACHE_CHILD, cache)
      self.assertGreater(first['misses'], 0)
      self.assertEqual(first['hits'], 0)
      self.assertNotEmpty(entries)
      # Every compilation of the repeated command is a hit; nothing new is written.
      self.assertEqual(second['misses'], 0)
      self.assertEqual(second['hits'], first['misses'])
      self.assertEqual(set(os.listdir(cache)), entries)


if __name__ == '__main__':
  absltest.main()
