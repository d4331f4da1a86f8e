"""Vectorized sweeps: K members in one compiled program equal K separate runs."""

import functools

from absl.testing import absltest
import chex
import jax
import jax.numpy as jnp

from regjax import schema
from regjax import sweep
from regjax import train
from regjax.data import load_dataset
from regjax.errors import ConfigError
from tests import helpers


def small_config(**overrides):
  c = schema.default_config()
  c.data.train_size = 400
  c.data.label_noise = 0.3  # Noisy labels: val_loss turns up, so runs stop early.
  c.model.widths = (64,)
  c.train.epochs = 20
  c.train.batch_size = 50
  c.optimizer.learning_rate = 3e-3
  c.early_stopping.patience = 2
  return helpers.override(c, **overrides)


@functools.lru_cache(maxsize=None)
def digits():
  return load_dataset(small_config().data)


def _strip(history):
  return [{k: v for k, v in row.items() if k != 'seconds'} for row in history]


class FitManyTest(absltest.TestCase):

  def test_vmapped_members_equal_separate_runs(self):
    members = [
        (small_config(), 0),
        (small_config(), 1),  # Same config, other seed.
        (small_config(**{'penalty.l2': 1e-2}), 0),  # Coupled penalty strength.
        # Other rate, and a transform the others lack (0 = an exact no-op for them).
        (small_config(**{'optimizer.learning_rate': 1e-2,
                         'optimizer.weight_decay': 0.5}), 2),
        (small_config(**{'optimizer.learning_rate': 1e-4}), 3),  # Runs all 20 epochs.
    ]
    data = digits()
    runner = sweep.Sweep(members, data)
    # One member uses L2, so the shared loss has it (the others add exact zeros); L1 is
    # left out; the separate Runners below leave L2 out where it is 0.
    self.assertEqual(runner.trainer.penalty_terms, ('l2',))
    runner.member_epoch = chex.assert_max_traces(runner.member_epoch, n=1)
    seen = []
    results = runner.fit(on_epoch=lambda i, row: seen.append((i, row['epoch'])))
    stops, runners = [], {}
    for (config, seed), (record, history, variables) in zip(members, results):
      # One Runner (one compile) per distinct config, as experiment.run does.
      ref = runners.setdefault(config.to_json(), train.Runner(config, data))
      ref_record, ref_history, ref_variables = ref.fit(seed)
      for key in ('seed', 'best_epoch', 'stop_epoch', 'epochs_run', 'stop_reason',
                  'diverged'):
        self.assertEqual(record[key], ref_record[key], key)
      self.assertEqual(set(record), set(ref_record))
      for key in ('test_accuracy', 'val_accuracy', 'train_accuracy', 'test_loss',
                  'val_loss', 'weight_l2', 'zero_fraction'):
        self.assertAlmostEqual(record[key], ref_record[key], places=4, msg=key)
      chex.assert_trees_all_close(_strip(history), _strip(ref_history),
                                  rtol=1e-4, atol=1e-5)
      chex.assert_trees_all_close(variables, ref_variables, rtol=1e-4, atol=1e-5)
      stops.append(record['stop_epoch'])
    # The case that needs the per-member freeze: members stopped at different epochs,
    # and at least one ran to the last epoch after others had stopped.
    self.assertGreaterEqual(len(set(stops)), 3, stops)
    self.assertEqual(results[4][0]['stop_reason'], 'max_epochs')
    self.assertEqual(max(stops), 19)
    self.assertIn('patience', [r['stop_reason'] for r, _, _ in results])
    self.assertGreater(runner.compile_seconds, 0.0)
    # on_epoch saw each running member once per epoch, epoch by epoch.
    self.assertEqual(seen, [(i, e) for e in range(20) for i in range(len(members))
                            if e < results[i][0]['epochs_run']])
    self.assertGreater(results[0][1][0]['seconds'], 0.0)

  def test_inactive_member_is_frozen_bit_for_bit(self):
    data = digits()
    runner = sweep.Sweep([(small_config(), 0)], data)
    state, es_state, keys = runner.init_member(jax.random.key(0),
                                               {k: v[0] for k, v in
                                                runner.opt_hparams.items()})
    hp = {k: v[0] for k, v in runner.hparams.items()}
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    xv, yv = jnp.asarray(data.x_val), jnp.asarray(data.y_val)
    step = jax.jit(runner.member_epoch)
    frozen = step(state, es_state, keys, hp, jnp.bool_(False), jnp.int32(0), x, y, xv, yv)
    moved = step(state, es_state, keys, hp, jnp.bool_(True), jnp.int32(0), x, y, xv, yv)
    chex.assert_trees_all_equal(frozen[:2], (state, es_state))
    self.assertEqual(int(moved[0].step), 400 // 50)
    self.assertEqual(int(moved[1].epoch), 1)

  def test_stop_request_interrupts_between_epochs(self):
    calls = []
    stop = lambda: calls.append(1) or len(calls) > 1  # After the first epoch.
    members = [(small_config(**{'train.epochs': 3}), s) for s in (0, 1)]
    with self.assertRaises(sweep.Interrupted) as caught:
      sweep.fit_many(members, digits(), stop_requested=stop)
    self.assertEqual(caught.exception.epochs_done, 1)


class CanVectorizeTest(absltest.TestCase):

  def test_array_valued_fields_vectorize(self):
    configs = [small_config(), small_config(**{'penalty.l2': 1e-3}),
               small_config(**{'optimizer.max_norm': 3.0, 'penalty.l1': 1e-4}),
               small_config(**{'optimizer.l1_prox': 1e-3})]
    configs[1].seed = 7
    self.assertTrue(sweep.can_vectorize(configs))

  def test_structural_fields_do_not(self):
    base = small_config()
    for field, value in (('model.dropout_rate', 0.5), ('model.widths', (32,)),
                         ('train.batch_size', 25), ('optimizer.name', 'sgd'),
                         ('early_stopping.patience', 5)):
      self.assertFalse(sweep.can_vectorize([base, small_config(**{field: value})]), field)
    self.assertFalse(sweep.can_vectorize([]))

  def test_groups_and_error_name_the_structure(self):
    configs = [small_config(), small_config(**{'model.dropout_rate': 0.5}),
               small_config(**{'penalty.l2': 1e-2}), small_config(**{'model.dropout_rate': 0.5,
                                                                     'penalty.l2': 1e-2})]
    self.assertEqual(sweep.vectorizable_groups(configs), [[0, 2], [1, 3]])
    with self.assertRaisesRegex(ConfigError, r'^model\.dropout_rate=0\.5: .*first member'):
      sweep.Sweep([(configs[0], 0), (configs[1], 0)], digits())
    with self.assertRaisesRegex(ConfigError, r'^seed=-1'):
      sweep.Sweep([(configs[0], -1)], digits())

  def test_auto_vectorizes_on_accelerators_only(self):
    same = [small_config(), small_config(**{'penalty.l2': 1e-2})]
    differ = [small_config(), small_config(**{'model.dropout_rate': 0.5})]
    self.assertTrue(sweep.should_vectorize(same, 'auto', backend='gpu'))
    self.assertTrue(sweep.should_vectorize(same, 'auto', backend='tpu'))
    self.assertFalse(sweep.should_vectorize(same, 'auto', backend='cpu'))
    self.assertTrue(sweep.should_vectorize(same, 'always', backend='cpu'))
    self.assertFalse(sweep.should_vectorize(same, 'never', backend='tpu'))
    self.assertFalse(sweep.should_vectorize(differ, 'always', backend='tpu'))
    self.assertFalse(sweep.should_vectorize(same[:1], 'always'))
    with self.assertRaisesRegex(ConfigError, r"^train\.vectorize='fast': one of auto"):
      sweep.should_vectorize(same, 'fast')


if __name__ == '__main__':
  absltest.main()
