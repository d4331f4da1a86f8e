"""Vectorized groups: K runs in one compiled program equal K separate runs; compaction;
a regularizer registered in one place is trained single and vmapped."""

import functools

from absl.testing import absltest
import chex
import jax
import jax.numpy as jnp
import optax

from regjax import checkpointing
from regjax import regularizers
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


def runs_of(members, data=None):
  return [train.Run(config, seed, data or digits()) for config, seed in members]


class RunGroupTest(absltest.TestCase):

  def assert_equal_to_separate_runs(self, results, runs, places=4):
    for run, (record, history, variables) in zip(runs, results):
      ref_record, ref_history, ref_variables = train.fit(run.config, run.data, run.seed)
      for key in ('seed', 'best_epoch', 'stop_epoch', 'epochs_run', 'stop_reason',
                  'diverged'):
        self.assertEqual(record[key], ref_record[key], key)
      self.assertEqual(set(record), set(ref_record))
      for key in ('test_accuracy', 'val_accuracy', 'train_accuracy', 'test_loss',
                  'val_loss', 'weight_l2', 'zero_fraction'):
        self.assertAlmostEqual(record[key], ref_record[key], places=places, msg=key)
      chex.assert_trees_all_close(_strip(history), _strip(ref_history),
                                  rtol=1e-4, atol=1e-5)
      chex.assert_trees_all_close(variables, ref_variables, rtol=1e-4, atol=1e-5)

  def test_vmapped_runs_equal_separate_runs(self):
    members = [
        (small_config(), 0),
        (small_config(), 1),  # Same config, other seed.
        (small_config(**{'penalty.l2': 1e-2}), 0),  # Coupled penalty strength.
        # Other rate, and a transform the others lack (0 = an exact no-op for them).
        (small_config(**{'optimizer.learning_rate': 1e-2,
                         'optimizer.weight_decay': 0.5}), 2),
        (small_config(**{'optimizer.learning_rate': 1e-4}), 3),  # Runs all 20 epochs.
    ]
    runs = runs_of(members)
    group = train.RunGroup(runs)
    # One run uses L2, so the shared loss has it (the others add exact zeros); L1 is
    # left out; a separate run leaves L2 out where it is 0.
    self.assertEqual(group.program.trainer.penalty_terms, ('l2',))
    self.assertIn('weight_decay', group.program.opt_names)
    group.program.epoch = chex.assert_max_traces(group.program.epoch, n=3)  # 8, 4, 2 lanes.
    seen, done = [], []
    results = group.fit(on_epoch=lambda i, row: seen.append((i, row['epoch'])),
                        on_done=lambda i, result: done.append(i))
    self.assert_equal_to_separate_runs(results, runs)
    stops = [r[0]['stop_epoch'] for r in results]
    # The case that needs the per-run freeze: runs stopped at different epochs, and at
    # least one ran to the last epoch after others had stopped.
    self.assertGreaterEqual(len(set(stops)), 3, stops)
    self.assertEqual(results[4][0]['stop_reason'], 'max_epochs')
    self.assertEqual(max(stops), 19)
    self.assertIn('patience', [r['stop_reason'] for r, _, _ in results])
    self.assertGreater(group.compile_seconds, 0.0)
    # on_epoch saw each running run once per epoch, epoch by epoch; on_done once each,
    # in the order they stopped.
    self.assertEqual(seen, [(i, e) for e in range(20) for i in range(len(members))
                            if e < results[i][0]['epochs_run']])
    self.assertEqual(sorted(done), list(range(5)))
    self.assertEqual([stops[i] for i in done], sorted(stops))
    self.assertGreater(results[0][1][0]['seconds'], 0.0)

  def test_compaction_saves_run_epochs_and_changes_nothing(self):
    # Four runs whose learning rates make them stop far apart.
    members = [(small_config(**{'optimizer.learning_rate': lr, 'model.widths': (128,),
                                'early_stopping.patience': 1}), s)
               for s, lr in enumerate((1e-4, 1e-2, 3e-2, 1e-1))]
    runs = runs_of(members)
    compact = train.RunGroup(runs)
    results = compact.fit()
    needed = sum(r[0]['epochs_run'] for r in results)
    self.assertEqual(compact.run_epochs, needed)
    full = train.RunGroup(runs, compact=False)
    uncompacted = full.fit()
    self.assertEqual(full.lane_epochs, 4 * max(r[0]['epochs_run'] for r in results))
    self.assertLess(compact.lane_epochs, full.lane_epochs)
    for a, b in zip(results, uncompacted):
      # A program of another size may round differently (a 1-lane program is not
      # vmapped at all), so equal within float rounding, and the same stops.
      self.assertEqual(a[0]['stop_epoch'], b[0]['stop_epoch'])
      chex.assert_trees_all_close(_strip(a[1]), _strip(b[1]), rtol=1e-4, atol=1e-5)
      self.assertAlmostEqual(a[0]['test_accuracy'], b[0]['test_accuracy'], places=4)

  def test_stop_request_interrupts_between_epochs(self):
    calls = []
    stop = lambda: calls.append(1) or len(calls) > 1  # After the first epoch.
    runs = runs_of([(small_config(**{'train.epochs': 3}), s) for s in (0, 1)])
    with self.assertRaises(checkpointing.Interrupted) as caught:
      train.RunGroup(runs).fit(stop_requested=stop)
    self.assertEqual(caught.exception.epochs_done, 1)


class RegisteredRegularizerTest(absltest.TestCase):
  """A toy regularizer registered here alone: its function plus one registration."""

  def test_a_penalty_and_a_transform_registered_here_train_single_and_vmapped(self):
    def quartic(params, mask):  # sum w^4 over the masked weights.
      return sum(jnp.sum(w ** 4) for m, w in zip(jax.tree.leaves(mask(params) if callable(
          mask) else mask), jax.tree.leaves(params)) if m)

    def shrink(strength, ctx):  # A decoupled transform: w -= lr * strength * w^3.
      def update(updates, state, params):
        return jax.tree.map(lambda u, w: u - strength * w ** 3, updates, params), state
      return optax.masked(optax.GradientTransformation(lambda p: optax.EmptyState(),
                                                       update), ctx.mask)

    with regularizers.registered(regularizers.register_penalty('l4', quartic, 'l4 sum w^4')), \
        regularizers.registered(regularizers.register_transform(
            'cubic_decay', shrink, 'update', 'w -= lr * c * w^3')):
      config = small_config(**{'penalty.l4': 1e-3, 'optimizer.cubic_decay': 1e-2})
      self.assertEqual(config.penalty.l4, 1e-3)  # The schema has the fields.
      self.assertIn('penalty.l4', sweep.sweepable_fields())
      self.assertIn('optimizer.cubic_decay', sweep.sweepable_fields())
      others = [small_config(**{'penalty.l4': v, 'optimizer.cubic_decay': c})
                for v, c in ((0.0, 0.0), (1e-2, 1e-1))]
      self.assertTrue(sweep.can_vectorize([config, *others]))
      runs = runs_of([(config, 0), (others[0], 0), (others[1], 1)])
      group = train.RunGroup(runs)
      self.assertIn('l4', group.program.trainer.penalty_terms)
      self.assertIn('cubic_decay', group.program.opt_names)
      results = group.fit()
      RunGroupTest.assert_equal_to_separate_runs(self, results, runs)
      # The strengths act: the norms differ between the three runs.
      norms = [r[0]['weight_l2'] for r in results]
      self.assertLen(set(norms), 3)
      self.assertLess(norms[2], norms[1])
    self.assertNotIn('l4', schema.default_config().penalty)  # Unregistered again.
    self.assertNotIn('penalty.l4', sweep.sweepable_fields())


class CanVectorizeTest(absltest.TestCase):

  def test_array_valued_fields_vectorize(self):
    configs = [small_config(), small_config(**{'penalty.l2': 1e-3}),
               small_config(**{'optimizer.max_norm': 3.0, 'penalty.l1': 1e-4}),
               small_config(**{'optimizer.l1_prox': 1e-3}),
               small_config(**{'data.split_seed': 4})]
    configs[1].seed = 7
    self.assertTrue(sweep.can_vectorize(configs))

  def test_structural_fields_do_not(self):
    base = small_config()
    for field, value in (('model.dropout_rate', 0.5), ('model.widths', (32,)),
                         ('train.batch_size', 25), ('optimizer.name', 'sgd'),
                         ('early_stopping.patience', 5), ('data.train_size', 300)):
      self.assertFalse(sweep.can_vectorize([base, small_config(**{field: value})]), field)
    self.assertFalse(sweep.can_vectorize([]))

  def test_groups_and_error_name_the_structure(self):
    configs = [small_config(), small_config(**{'model.dropout_rate': 0.5}),
               small_config(**{'penalty.l2': 1e-2}), small_config(**{'model.dropout_rate': 0.5,
                                                                     'penalty.l2': 1e-2})]
    self.assertEqual(sweep.vectorizable_groups(configs), [[0, 2], [1, 3]])
    with self.assertRaisesRegex(ConfigError, r'^model\.dropout_rate=0\.5: .*first run'):
      train.RunGroup(runs_of([(configs[0], 0), (configs[1], 0)]))
    with self.assertRaisesRegex(ConfigError, r'^seed=-1'):
      train.RunGroup(runs_of([(configs[0], -1)]))

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
