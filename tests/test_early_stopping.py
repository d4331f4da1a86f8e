"""Tests for regjax.early_stopping: Keras 3 EarlyStopping semantics, jit and vmap."""

import math

from absl.testing import absltest
from absl.testing import parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np

from regjax import early_stopping as es_lib
from regjax import schema
from regjax.errors import ConfigError

NAN = math.nan
INF = math.inf


def _params(epoch: float, member: float = 0.0):
  """Weights whose value names the epoch (and sweep member) they come from."""
  return {'w': jnp.full((2,), 10.0 * member + epoch, jnp.float32)}


def _batch_stats(epoch: float, member: float = 0.0):
  return {'mean': jnp.full((3,), 10.0 * member + epoch + 0.5, jnp.float32)}


def _replay(es, values, monitor='val_loss'):
  """Feeds `values` through a jitted update like a training loop (stops on stop).

  Returns the final state, the variables best_variables picks and the last
  epoch trained.
  """
  update = jax.jit(es.update)
  state = es.init(_params(-1), _batch_stats(-1))
  last = -1
  for epoch, value in enumerate(values):
    last = epoch
    metrics = {monitor: jnp.float32(value), 'train_loss': jnp.float32(0.0)}
    state = update(state, metrics, _params(epoch), _batch_stats(epoch))
    if bool(state.stopped):
      break
  params, batch_stats = es.best_variables(state, _params(last), _batch_stats(last))
  return state, params, batch_stats, last


# (name, settings, values, stop_epoch, best_epoch, reason, restored_epoch)
# restored_epoch: the epoch whose weights best_variables returns.
_CASES = (
    ('min_patience0', dict(patience=0), [3.0, 2.0, 2.5, 1.0], 2, 1, 1, 1),
    # Keras counts the non-improving epoch itself, so patience 1 == patience 0.
    ('min_patience1', dict(patience=1), [3.0, 2.0, 2.5, 1.0], 2, 1, 1, 1),
    ('min_patience2', dict(patience=2), [3.0, 2.0, 2.5, 2.2, 1.0], 3, 1, 1, 1),
    ('min_patience3', dict(patience=3),
     [5.0, 4.0, 4.5, 4.2, 3.9, 4.0, 4.1, 4.3, 1.0], 7, 4, 1, 4),
    ('max_accuracy', dict(monitor='val_accuracy', mode='max', patience=2),
     [0.5, 0.7, 0.6, 0.65, 0.8], 3, 1, 1, 1),
    ('auto_accuracy_is_max', dict(monitor='val_accuracy', mode='auto', patience=2),
     [0.5, 0.7, 0.6, 0.65, 0.8], 3, 1, 1, 1),
    ('auto_loss_is_min', dict(mode='auto', patience=2),
     [0.5, 0.7, 0.6, 0.65, 0.4], 2, 0, 1, 0),
    ('min_delta_min', dict(min_delta=0.1, patience=2),
     [1.0, 0.95, 0.92, 0.5, 0.45], 2, 0, 1, 0),
    ('no_min_delta_same_values', dict(min_delta=0.0, patience=2),
     [1.0, 0.95, 0.92, 0.5, 0.45], -1, 4, 0, 4),
    ('min_delta_max', dict(monitor='val_accuracy', mode='max', min_delta=0.1,
                           patience=2),
     [0.5, 0.55, 0.58, 0.7], 2, 0, 1, 0),
    # Never beating the baseline: improvements don't reset wait, so it stops at
    # the first non-improving epoch once wait >= patience; restores the best seen.
    ('baseline_never_beaten', dict(baseline=0.5, patience=2),
     [1.0, 0.9, 0.95, 0.93, 0.92], 2, 1, 1, 1),
    ('baseline_never_beaten_flat', dict(baseline=0.5, patience=2),
     [1.0, 1.0, 1.0, 1.0], 1, 0, 1, 0),
    ('same_values_without_baseline', dict(patience=2),
     [1.0, 0.9, 0.95, 0.93, 0.92], 3, 1, 1, 1),
    ('baseline_beaten_late', dict(baseline=0.5, patience=3),
     [1.0, 0.9, 0.8, 0.4, 0.45, 0.46, 0.47, 0.3], 6, 3, 1, 3),
    ('start_from_epoch', dict(start_from_epoch=3, patience=1),
     [0.1, 5.0, 5.0, 2.0, 3.0, 1.0], 4, 3, 1, 3),
    ('start_from_epoch_ignores_nan', dict(start_from_epoch=2, patience=1),
     [NAN, 1.0, 0.5, 0.6], 3, 2, 1, 2),
    ('nan_stops_at_once', dict(patience=5), [1.0, 0.5, NAN, 0.1], 2, 1, 2, 1),
    ('inf_stops_at_once', dict(patience=5), [1.0, INF, 0.1], 1, 0, 2, 0),
    ('minus_inf_stops_at_once', dict(patience=5), [1.0, -INF, 0.1], 1, 0, 2, 0),
    ('nan_at_epoch0_keeps_last', dict(patience=5), [NAN, 1.0], 0, -1, 2, 0),
    ('always_improving', dict(patience=0), [5.0, 4.0, 3.0, 2.0, 1.0], -1, 4, 0, 4),
    ('restore_best_false', dict(patience=0, restore_best=False),
     [3.0, 2.0, 2.5, 1.0], 2, 1, 1, 2),
    ('disabled_never_stops', dict(patience=0, enabled=False),
     [3.0, 2.0, 2.5, 2.6, 2.7], -1, 1, 0, 4),
    ('disabled_still_stops_on_nan', dict(patience=0, enabled=False),
     [3.0, 2.0, 2.5, NAN, 2.7], 3, 1, 2, 3),
)


class ReplayTest(parameterized.TestCase):

  @parameterized.named_parameters(*_CASES)
  def test_stop_best_and_restored_epochs(self, settings, values, stop_epoch,
                                         best_epoch, reason, restored_epoch):
    es = es_lib.EarlyStopping(**settings)
    state, params, batch_stats, last = _replay(es, values, es.monitor)
    self.assertEqual(int(state.stop_epoch), stop_epoch)
    self.assertEqual(bool(state.stopped), stop_epoch >= 0)
    self.assertEqual(int(state.best_epoch), best_epoch)
    self.assertEqual(int(state.reason), reason)
    # Frozen at stop, so epoch counts the epochs trained.
    self.assertEqual(int(state.epoch), last + 1)
    if best_epoch >= 0:
      self.assertAlmostEqual(float(state.best), values[best_epoch], places=6)
    chex.assert_trees_all_equal(params, _params(restored_epoch))
    chex.assert_trees_all_equal(batch_stats, _batch_stats(restored_epoch))


class StateMachineTest(parameterized.TestCase):

  def test_stopped_state_freezes(self):
    es = es_lib.EarlyStopping(patience=1)
    update = jax.jit(es.update)
    state = es.init(_params(-1), _batch_stats(-1))
    for epoch, value in enumerate([2.0, 3.0]):  # Stops at epoch 1.
      state = update(state, {'val_loss': jnp.float32(value)}, _params(epoch),
                     _batch_stats(epoch))
    self.assertTrue(bool(state.stopped))
    frozen = state
    # A much better value and NaN later must change nothing.
    for epoch, value in [(2, 0.0), (3, NAN), (4, -1.0)]:
      state = update(state, {'val_loss': jnp.float32(value)}, _params(epoch),
                     _batch_stats(epoch))
    chex.assert_trees_all_equal(state, frozen)
    self.assertEqual(int(state.epoch), 2)
    self.assertEqual(es_lib.reason_name(state.reason), 'patience')

  def test_init_state(self):
    state = es_lib.EarlyStopping(mode='max').init(_params(0), _batch_stats(0))
    self.assertEqual(float(state.best), -INF)
    self.assertEqual(int(state.best_epoch), -1)
    self.assertEqual(int(state.stop_epoch), -1)
    self.assertEqual(int(state.reason), es_lib.RUNNING)
    self.assertEqual(state.epoch.dtype, jnp.int32)
    self.assertEqual(state.best.dtype, jnp.float32)
    self.assertEqual(float(es_lib.EarlyStopping().init({}, {}).best), INF)

  def test_no_weight_copies_when_never_restoring(self):
    for es in (es_lib.EarlyStopping(restore_best=False),
               es_lib.EarlyStopping(enabled=False)):
      state = es.init(_params(0), _batch_stats(0))
      self.assertIsNone(state.best_params)
      self.assertIsNone(state.best_batch_stats)

  def test_init_copies_weights_so_donation_is_safe(self):
    params = _params(0)
    state = es_lib.EarlyStopping().init(params, {})
    params['w'].delete()  # What a donating train step does to its input.
    np.testing.assert_array_equal(state.best_params['w'], [0.0, 0.0])

  def test_missing_monitor_raises_config_error(self):
    es = es_lib.EarlyStopping(monitor='val_auc')
    state = es.init(_params(0), {})
    with self.assertRaisesRegex(
        ConfigError, r"^early_stopping\.monitor='val_auc': not among the metrics: "
        r'train_loss, val_loss$'):
      jax.jit(es.update)(state, {'val_loss': 1.0, 'train_loss': 2.0}, _params(0), {})

  def test_disabled_without_its_monitor_only_counts_epochs(self):
    # A run with no validation split disables early stopping; it must still train.
    es = es_lib.EarlyStopping(monitor='val_loss', enabled=False)
    state = es.init(_params(0), {})
    update = jax.jit(es.update)
    for epoch in range(3):
      state = update(state, {'train_loss': jnp.float32(1.0)}, _params(epoch), {})
    self.assertEqual(int(state.epoch), 3)
    self.assertFalse(bool(state.stopped))
    self.assertEqual(int(state.best_epoch), -1)
    params, _ = es.best_variables(state, _params(2), {})
    np.testing.assert_array_equal(params['w'], _params(2)['w'])

  def test_reason_names(self):
    self.assertEqual([es_lib.reason_name(c) for c in range(3)],
                     ['running', 'patience', 'non_finite'])
    with self.assertRaises(ValueError):
      es_lib.reason_name(7)

  def test_update_compiles_once(self):
    es = es_lib.EarlyStopping(patience=1)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def update(state, metrics, params, batch_stats):
      return es.update(state, metrics, params, batch_stats)

    chex.clear_trace_counter()
    state = es.init(_params(-1), _batch_stats(-1))
    # Runs through improvement, stop and frozen epochs with one trace.
    for epoch, value in enumerate([3.0, 2.0, 2.5, 1.0, NAN]):
      state = update(state, {'val_loss': jnp.float32(value)}, _params(epoch),
                     _batch_stats(epoch))
    self.assertEqual(int(state.stop_epoch), 2)

  def test_vmap_scan_sweep_matches_separate_replays(self):
    es = es_lib.EarlyStopping(patience=1, baseline=2.5)
    # Member 0 stops for patience at 2, member 1 on NaN at 1, member 2 runs on.
    values = np.array([[3.0, 2.0, 2.2, 1.0, 0.5],
                       [3.0, NAN, 1.0, 0.5, 0.2],
                       [3.0, 2.0, 1.0, 0.5, 0.2]], np.float32)
    members = jnp.arange(3, dtype=jnp.float32)

    def run(member, member_values):
      def step(state, epoch_and_value):
        epoch, value = epoch_and_value
        state = es.update(state, {'val_loss': value}, _params(epoch, member),
                          _batch_stats(epoch, member))
        return state, None

      state = es.init(_params(-1.0, member), _batch_stats(-1.0, member))
      epochs = jnp.arange(member_values.shape[0], dtype=jnp.float32)
      state, _ = jax.lax.scan(step, state, (epochs, member_values))
      last = member_values.shape[0] - 1.0
      best = es.best_variables(state, _params(last, member),
                               _batch_stats(last, member))
      return state, best

    swept_state, swept_best = jax.jit(jax.vmap(run))(members, jnp.asarray(values))
    for m in range(3):
      alone_state, alone_best = jax.jit(run)(members[m], jnp.asarray(values[m]))
      chex.assert_trees_all_equal(
          jax.tree.map(lambda x, i=m: x[i], (swept_state, swept_best)),
          (alone_state, alone_best))
    np.testing.assert_array_equal(swept_state.stop_epoch, [2, 1, -1])
    np.testing.assert_array_equal(swept_state.reason, [1, 2, 0])
    np.testing.assert_array_equal(swept_state.best_epoch, [1, 0, 4])
    # Restored weights name member and epoch: 10 * member + best_epoch.
    np.testing.assert_array_equal(swept_best[0]['w'][:, 0], [1.0, 10.0, 24.0])


class ConfigTest(parameterized.TestCase):

  def test_from_default_config(self):
    es = es_lib.EarlyStopping.from_config(schema.default_config().early_stopping)
    self.assertEqual(es, es_lib.EarlyStopping(
        monitor='val_loss', mode='min', min_delta=0.0, patience=10, baseline=None,
        start_from_epoch=0, restore_best=True, enabled=True))
    hash(es)  # Static settings must be hashable to close over in jit.

  def test_from_config_reads_every_field(self):
    c = schema.default_config().early_stopping
    c.monitor, c.mode, c.min_delta, c.patience = 'val_accuracy', 'auto', 0.01, 0
    c.baseline, c.start_from_epoch, c.restore_best, c.enabled = 0.9, 4, False, False
    self.assertEqual(es_lib.EarlyStopping.from_config(c), es_lib.EarlyStopping(
        monitor='val_accuracy', mode='max', min_delta=0.01, patience=0,
        baseline=0.9, start_from_epoch=4, restore_best=False, enabled=False))

  @parameterized.parameters(
      ('val_loss', 'min'), ('loss', 'min'), ('val_accuracy', 'max'),
      ('val_acc', 'max'), ('train_auc', 'max'), ('accuracy_gap', 'min'),
      ('val_error', 'min'))
  def test_auto_mode_resolution(self, monitor, mode):
    self.assertEqual(es_lib.EarlyStopping(monitor=monitor, mode='auto').mode, mode)

  @parameterized.named_parameters(
      ('bad_mode', 'mode', 'sideways'),
      ('negative_patience', 'patience', -1),
      ('negative_min_delta', 'min_delta', -0.1),
      ('negative_start', 'start_from_epoch', -1),
      ('empty_monitor', 'monitor', ''),
      ('nan_baseline', 'baseline', NAN))
  def test_from_config_rejects(self, field, value):
    c = schema.default_config().early_stopping
    c[field] = value
    with self.assertRaises(ConfigError) as caught:
      es_lib.EarlyStopping.from_config(c)
    self.assertEqual(caught.exception.field, f'early_stopping.{field}')
    self.assertNotIn('\n', str(caught.exception))

  def test_patience_zero_is_allowed(self):
    self.assertEqual(es_lib.EarlyStopping(patience=0).patience, 0)


if __name__ == '__main__':
  absltest.main()
