"""Runs and batches over 8 CPU devices equal one device; two processes (jax.distributed)
equal one; multi-host detection; the compilation cache.

The 8-device checks run in child processes: XLA_FLAGS must be set before JAX starts,
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

from regjax import models
from regjax import parallel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A run alone on 8 devices: its batch of 48 is split 8 ways (6 examples per device).
_EIGHT_DEVICES = textwrap.dedent(r'''
  import json, os, re
  os.environ['XLA_FLAGS'] = '--xla_force_host_platform_device_count=8'
  import jax, jax.numpy as jnp
  from regjax import schema, train
  from regjax.data import load_dataset

  c = schema.default_config()
  c.data.train_size = 240
  c.model.widths = (32,)
  c.model.batch_norm = True  # Its statistics must be those of the global batch.
  c.model.dropout_rate = 0.2  # Its masks must not depend on the layout.
  c.train.batch_size = 48
  c.train.epochs = 2
  data = load_dataset(c.data)
  one = train.RunGroup([train.Run(c, 0, data)], devices=jax.devices()[:1])
  eight = train.RunGroup([train.Run(c, 0, data)])
  (r1, h1, v1), = one.fit()
  (r8, h8, v8), = eight.fit()
  hlo = eight._epoch_fn(1).as_text()  # The compiled program fit used.
  diff = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), v1, v8)
  rows = lambda h: [[v for k, v in sorted(r.items()) if k != 'seconds'] for r in h]
  print(json.dumps({
      'devices': len(jax.devices()),
      'placement': eight.describe_placement(),
      'max_diff': max(jax.tree.leaves(diff)),
      'history_diff': max(abs(a - b) for x, y in zip(rows(h1), rows(h8))
                          for a, b in zip(x, y)),
      'bn_var_diff': max(jax.tree.leaves(diff['batch_stats'])),
      'bn_var_mean': float(jnp.mean(v8['batch_stats']['_Hidden_0']['BatchNorm_0']['var'])),
      'all_reduce': hlo.count('all-reduce'),
      'local_hidden': sorted(set(re.findall(r'f32\[(\d+),32\]', hlo))),
      'test': [r1['test_accuracy'], r8['test_accuracy']],
  }))
''')

# A comparison of 2 variants x 3 seeds (6 runs, vmapped) on 8 devices against one device.
_COMPARISON = textwrap.dedent(r'''
  import json, os, sys, tempfile
  if sys.argv[1] == '8':
    os.environ['XLA_FLAGS'] = '--xla_force_host_platform_device_count=8'
  import jax
  from regjax import experiment, schema, variants
  jax.config.update('jax_default_matmul_precision', 'highest')
  c = schema.overfitting_regime(schema.default_config())
  c.data.train_size, c.model.widths, c.train.epochs = 400, (64,), 25
  c.early_stopping.patience = 2
  c.train.vectorize = 'always'
  # Measured on one device: the fast runs stop at epochs 8, 15 and 9, the others run
  # all 25, so the program compacts from 8 lanes to 4 and 2 on the way.
  variants.set_variants(c, baseline={}, fast={'optimizer.learning_rate': 1e-2})
  lines = []
  result = experiment.run(c, tempfile.mkdtemp(), log=lines.append, checkpoint_every_s=None)
  print(json.dumps({'lines': lines[:2], 'records': [
      {k: r[k] for k in ('variant', 'seed', 'stop_epoch', 'best_epoch', 'test_accuracy',
                         'val_loss')} for r in result['records']]}))
''')

_CACHE_CHILD = textwrap.dedent(r'''
  import json, sys, time
  import jax, jax.numpy as jnp
  from regjax import parallel, schema, trainer as trainer_lib
  events = []
  jax.monitoring.register_event_listener(lambda event, **_: events.append(event))
  parallel.enable_compilation_cache(sys.argv[1])
  c = schema.default_config()
  trainer = trainer_lib.make_trainer(c, num_classes=10, num_train=64)
  x, y = jnp.zeros((64, 8, 8, 1)), jnp.zeros((64,), jnp.int32)
  state = trainer.init(jax.random.key(0), x[:1])
  key = jax.random.key(1)
  t0 = time.perf_counter()
  jax.jit(trainer.train_epoch).lower(state, x, y, trainer_lib.penalty_hparams(c), key,
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


class DevicesTest(absltest.TestCase):

  def test_a_run_alone_splits_its_batch_and_equals_one_device(self):
    out = _child(_EIGHT_DEVICES)
    self.assertEqual(out['devices'], 8)
    self.assertEqual(out['placement'], '1 run over 8 devices (members axis 1 x data axis 8)')
    # Weights, BatchNorm statistics and every metric of 2 epochs, within float rounding.
    self.assertLess(out['max_diff'], 1e-5)
    self.assertLess(out['history_diff'], 1e-5)
    self.assertAlmostEqual(out['test'][0], out['test'][1], places=6)
    # Per-device statistics of 6 examples would give other variances than those of the
    # global 48; equality says BatchNorm reduced over the global batch.
    self.assertLess(out['bn_var_diff'], 1e-6)
    self.assertGreater(out['bn_var_mean'], 1e-3)
    # The batch really is split: hidden activations are (6, 32) per device, never
    # (48, 32), and gradients meet in all-reduces.
    self.assertIn('6', out['local_hidden'])
    self.assertNotIn('48', out['local_hidden'])
    self.assertGreater(out['all_reduce'], 0)

  def test_a_comparison_on_eight_devices_matches_one_device(self):
    # Tolerance. Sums over a batch split 4 ways round differently, and training
    # amplifies rounding: measured, 4 of the 6 runs agree to ~1e-5 in val_loss, while
    # the fastest learner (lr 1e-2, 15 epochs) ends 0.016 apart in val_loss and 2 of
    # 450 test examples (0.44 pp) apart. So: the same stop and best epoch for every run,
    # test accuracy within 1 pp, val_loss within 5% and within 1e-4 for most runs.
    one, eight = _child(_COMPARISON, '1'), _child(_COMPARISON, '8')
    self.assertIn('6 runs as 1 program', eight['lines'][1])
    self.assertIn('6 runs over 8 devices (members axis 2 x data axis 4)',
                  eight['lines'][1])
    self.assertIn('over 1 device (members axis 1 x data axis 1)', one['lines'][1])
    self.assertGreater(len({r['stop_epoch'] for r in one['records']}), 1)
    close = 0
    for a, b in zip(one['records'], eight['records']):
      self.assertEqual((a['variant'], a['seed'], a['stop_epoch'], a['best_epoch']),
                       (b['variant'], b['seed'], b['stop_epoch'], b['best_epoch']))
      self.assertLessEqual(abs(a['test_accuracy'] - b['test_accuracy']), 0.01)
      self.assertLess(abs(a['val_loss'] - b['val_loss']), 0.05 * a['val_loss'])
      close += abs(a['val_loss'] - b['val_loss']) < 1e-4
    self.assertGreaterEqual(close, 4)

  def test_placement_uses_members_first_then_splits_batches(self):
    devices = [mock.Mock(id=i) for i in range(8)]
    for runs, batch, expected in [
        (12, 32, (12, 4, 2)), (8, 32, (8, 8, 1)), (1, 32, (1, 1, 8)), (3, 32, (3, 1, 8)),
        (6, 32, (6, 2, 4)),
        (1, 12, (1, 1, 4)),  # 12 examples do not split 8 ways: 4 ways, 4 devices idle.
        (5, 30, (8, 8, 1))]:  # 30 splits 2 ways at most: 8 lanes of 30 beat 5 of 15.
      with self.subTest(runs=runs, batch=batch):
        with mock.patch.object(parallel, 'Mesh'):
          p = parallel.placement(runs, batch, devices)
        self.assertEqual((p.size, p.members, p.data), expected)
    with mock.patch.object(parallel, 'Mesh'):
      text = parallel.placement(1, 12, devices).describe(1, 8)
    self.assertEqual(text, '1 run over 4 devices (members axis 1 x data axis 4); 4 of 8 '
                     'devices idle (the batch size does not split further)')
    self.assertIsNone(parallel.placement(5, 32, devices[:1]).mesh)


# Two processes on this machine, 2 CPU devices each, through jax.distributed (the CPU
# backend's cross-process collectives): one comparison over 4 devices.
_TWO_PROCESS_ENV = {'XLA_FLAGS': '--xla_force_host_platform_device_count=2',
                    'JAX_NUM_PROCESSES': '2'}


class TwoProcessTest(absltest.TestCase):

  def test_two_processes_train_one_comparison_like_one_process(self):
    import socket  # pylint: disable=g-import-not-at-top
    with socket.socket() as sock:
      sock.bind(('localhost', 0))
      port = sock.getsockname()[1]
    args = ['--config=configs/base.py:smoke', '--config.train.vectorize=always',
            '--compilation_cache=', '--checkpoint_every_s=-1']
    multi, single = tempfile.mkdtemp(), tempfile.mkdtemp()
    env = dict(os.environ, PYTHONPATH=ROOT, JAX_COORDINATOR_ADDRESS=f'localhost:{port}',
               **_TWO_PROCESS_ENV)
    procs = [subprocess.Popen([sys.executable, '-m', 'regjax.main', *args,
                               f'--workdir={multi}'], cwd=ROOT,
                              env=dict(env, JAX_PROCESS_ID=str(i)), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs):
      self.assertEqual(p.returncode, 0, err[-3000:])
    self.assertIn('2 runs over 4 devices (members axis 2 x data axis 2)', outs[0][1])
    self.assertEqual(outs[1][1].count('test_acc'), 0)  # Process 1 trains, stays quiet.
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop('XLA_FLAGS', None)
    proc = subprocess.run([sys.executable, '-m', 'regjax.main', *args,
                           f'--workdir={single}'], cwd=ROOT, env=env, text=True,
                          capture_output=True, timeout=300)
    self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
    records = []
    for workdir in (multi, single):
      with open(os.path.join(workdir, 'results.json')) as f:
        records.append(json.load(f)['records'])
    for a, b in zip(*records):
      self.assertEqual((a['seed'], a['stop_epoch'], a['best_epoch']),
                       (b['seed'], b['stop_epoch'], b['best_epoch']))
      self.assertAlmostEqual(a['test_accuracy'], b['test_accuracy'], places=6)


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
      init.reset_mock()
      # An explicit coordinator: JAX does not read the count and id itself.
      self.assertTrue(parallel.maybe_initialize_distributed(
          {'JAX_COORDINATOR_ADDRESS': 'localhost:1234', 'JAX_NUM_PROCESSES': '2',
           'JAX_PROCESS_ID': '1'}))
      init.assert_called_once_with(num_processes=2, process_id=1)


class EnvironmentTest(absltest.TestCase):

  def test_environment_names_backend_devices_precision_prng_mask_and_versions(self):
    env = parallel.environment()
    self.assertEqual(env['backend'], jax.default_backend())
    # Where the keys' and dropout masks' bits come from: a seed's runs follow from both.
    self.assertEqual(env['prng_impl'], 'threefry2x32')  # JAX's default; tests keep it.
    self.assertEqual(env['dropout_mask'], models.DROPOUT_BITS)
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
