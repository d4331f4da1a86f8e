"""Training: one compile per epoch function, sweep-ready hparams, restore, test-once."""

import functools

from absl.testing import absltest
import chex
import jax
import jax.numpy as jnp
import numpy as np

from regjax import schema
from regjax import train
from regjax.data import load_dataset
from regjax.errors import ConfigError
from tests import helpers


def small_config(**overrides):
  c = schema.default_config()
  c.data.train_size = 400
  c.model.widths = (32,)
  c.train.epochs = 4
  c.train.batch_size = 50
  c.optimizer.learning_rate = 1e-2
  return helpers.override(c, **overrides)


@functools.lru_cache(maxsize=None)
def digits(train_size=400, label_noise=0.0):
  c = schema.default_config().data
  c.train_size, c.label_noise = train_size, label_noise
  return load_dataset(c)


class TrainEpochTest(absltest.TestCase):

  def test_epoch_compiles_once_across_epochs_and_strengths(self):
    data = digits()
    trainer = train.make_trainer(small_config(), data.num_classes, len(data.x_train))
    state = trainer.init(jax.random.key(0), data.x_train[:1])
    epoch_fn = jax.jit(chex.assert_max_traces(trainer.train_epoch, n=1))
    key = jax.random.key(1)
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    for epoch, l2 in enumerate([0.0, 1e-3, 1e-2]):
      hp = {'l1': jnp.float32(0), 'l2': jnp.float32(l2)}
      state, metrics = epoch_fn(state, x, y, hp, key, key, jnp.int32(epoch))
    chex.assert_tree_all_finite(metrics)
    # 400 examples / batch 50 = 8 steps per epoch, 3 epochs.
    self.assertEqual(int(state.step), 24)

  def test_penalty_is_reported_apart_from_the_data_loss(self):
    data = digits()
    trainer = train.make_trainer(small_config(), data.num_classes, len(data.x_train))
    state = trainer.init(jax.random.key(0), data.x_train[:1])
    x, y = jnp.asarray(data.x_train[:50]), jnp.asarray(data.y_train[:50])
    key = jax.random.key(1)
    l2 = 0.1
    _, m0 = trainer.train_step(state, x, y, {'l1': 0.0, 'l2': 0.0}, key)
    _, m1 = trainer.train_step(state, x, y, {'l1': 0.0, 'l2': l2}, key)
    kernels = [state.params[m]['kernel'] for m in state.params]
    expected = 0.5 * l2 * sum(float(jnp.sum(k**2)) for k in kernels)
    self.assertAlmostEqual(float(m1['train_penalty']), expected, places=4)
    self.assertEqual(float(m0['train_penalty']), 0.0)
    # The same params and batch give the same data loss, penalty or not.
    self.assertAlmostEqual(float(m0['train_loss']), float(m1['train_loss']), places=6)

  def test_vmap_over_penalty_strengths_equals_separate_runs(self):
    # The design point for sweeps: strengths are array arguments, so one vmapped program
    # trains several members; each must equal its own separate run.
    data = digits()
    trainer = train.make_trainer(small_config(), data.num_classes, len(data.x_train))
    state = trainer.init(jax.random.key(0), data.x_train[:1])
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    key = jax.random.key(1)
    strengths = jnp.array([0.0, 0.05], jnp.float32)
    run = lambda l2: trainer.train_epoch(state, x, y, {'l1': jnp.float32(0), 'l2': l2},
                                         key, key, jnp.int32(0))
    batched_state, batched_metrics = jax.jit(jax.vmap(run))(strengths)
    for i in range(2):
      single_state, single_metrics = jax.jit(run)(strengths[i])
      chex.assert_trees_all_close(jax.tree.map(lambda a: a[i], batched_state.params),
                                  single_state.params, rtol=1e-5, atol=1e-6)
      chex.assert_trees_all_close(jax.tree.map(lambda a: a[i], batched_metrics),
                                  single_metrics, rtol=1e-5, atol=1e-6)
    self.assertGreater(float(jnp.abs(batched_state.params['Dense_0']['kernel'][0]
                                     - batched_state.params['Dense_0']['kernel'][1]).max()),
                       1e-4)

  def test_a_penalty_left_out_matches_it_at_zero_and_runners_keep_the_ones_in_use(self):
    # Leaving a zero-strength penalty out of the program (the fast path) must train the
    # same model as computing it times 0, up to float rounding of a fused program.
    data = digits()
    config = small_config(**{'model.dropout_rate': 0.3})
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    zeros = {'l1': jnp.float32(0), 'l2': jnp.float32(0)}
    finals = []
    for terms in (('l1', 'l2'), ()):
      trainer = train.make_trainer(config, data.num_classes, len(data.x_train), terms)
      state = trainer.init(jax.random.key(0), data.x_train[:1])
      state, metrics = jax.jit(trainer.train_epoch)(state, x, y, zeros, jax.random.key(1),
                                                    jax.random.key(2), jnp.int32(0))
      self.assertEqual(float(metrics['train_penalty']), 0.0)
      finals.append(state.params)
    chex.assert_trees_all_close(finals[0], finals[1], rtol=1e-5, atol=1e-6)
    # A term that is left out ignores its strength; Runner/Sweep keep every term > 0.
    trainer = train.make_trainer(config, data.num_classes, len(data.x_train), ('l2',))
    state = trainer.init(jax.random.key(0), data.x_train[:1])
    _, m = trainer.train_step(state, x[:50], y[:50], {'l1': 1.0, 'l2': 0.0}, jax.random.key(1))
    self.assertEqual(float(m['train_penalty']), 0.0)
    self.assertEqual(train.Runner(small_config(**{'penalty.l1': 1e-3}), data)
                     .trainer.penalty_terms, ('l1',))
    self.assertEqual(train.Runner(small_config(), data).trainer.penalty_terms, ())
    with self.assertRaisesRegex(ConfigError, "penalty_terms.*'l3'"):
      train.make_trainer(config, data.num_classes, len(data.x_train), ('l3',))

  def test_evaluate_counts_every_example_once(self):
    data = digits()
    config = small_config()
    config.train.eval_batch_size = 64  # 450 test examples: 7 full batches and a tail of 2.
    runner = train.Runner(config, data)
    state, _, _ = runner._init(0)
    chunked = runner.evaluate(state.params, state.batch_stats, data.x_test, data.y_test)
    whole = runner.trainer.evaluate(state.params, state.batch_stats,
                                    jnp.asarray(data.x_test), jnp.asarray(data.y_test))
    logits = runner.trainer.model.apply({'params': state.params}, data.x_test)
    expected_acc = float(np.mean(np.argmax(logits, -1) == data.y_test))
    self.assertAlmostEqual(chunked['accuracy'], expected_acc, places=6)
    self.assertAlmostEqual(float(whole['accuracy']), expected_acc, places=6)
    self.assertAlmostEqual(chunked['loss'], float(whole['loss']), places=5)


class FitTest(absltest.TestCase):

  def test_fit_learns_and_reports_every_metric(self):
    config = small_config(**{'train.epochs': 6})
    record, history, _ = train.fit(config, digits(), seed=0)
    self.assertLen(history, record['epochs_run'])
    self.assertGreater(record['test_accuracy'], 0.8)  # Chance is 0.1.
    for key in ('train_loss', 'train_penalty', 'train_accuracy', 'val_loss', 'val_accuracy',
                'weight_l1', 'weight_l2', 'zero_fraction', 'seconds'):
      self.assertIn(key, history[0])
      self.assertTrue(np.isfinite(history[-1][key]))
    self.assertLess(history[-1]['train_loss'], history[0]['train_loss'])

  def test_same_seed_same_numbers_and_other_seed_differs(self):
    config = small_config(**{'model.dropout_rate': 0.3})
    a, ha, _ = train.fit(config, digits(), seed=3)
    b, hb, _ = train.fit(config, digits(), seed=3)
    c, hc, _ = train.fit(config, digits(), seed=4)
    strip = lambda h: [{k: v for k, v in r.items() if k != 'seconds'} for r in h]
    self.assertEqual(strip(ha), strip(hb))
    self.assertEqual(a['test_accuracy'], b['test_accuracy'])
    self.assertNotEqual(strip(ha), strip(hc))

  def test_restored_weights_are_those_of_the_best_epoch(self):
    # Noisy labels and a wide net overfit quickly, so val_loss turns up and the run stops.
    config = small_config(**{'model.widths': (256,), 'train.epochs': 60,
                             'early_stopping.patience': 3, 'optimizer.learning_rate': 3e-3})
    data = digits(train_size=400, label_noise=0.5)
    record, history, _ = train.fit(config, data, seed=0)
    self.assertEqual(record['stop_reason'], 'patience')
    best = record['best_epoch']
    self.assertEqual(best, int(np.argmin([r['val_loss'] for r in history])))
    self.assertEqual(record['stop_epoch'], best + 3)
    # Evaluating the final weights on the validation set reproduces the best epoch's
    # validation numbers: the restored weights are that epoch's.
    self.assertAlmostEqual(record['val_loss'], history[best]['val_loss'], places=5)
    self.assertAlmostEqual(record['val_accuracy'], history[best]['val_accuracy'], places=6)

  def test_test_set_is_evaluated_exactly_once_on_the_final_weights(self):
    data = digits()
    runner = train.Runner(small_config(), data)
    seen = []
    original = runner.evaluate

    def spy(params, batch_stats, x, y):
      seen.append(x is data.x_test)
      return original(params, batch_stats, x, y)

    runner.evaluate = spy
    runner.fit(seed=0)
    self.assertEqual(sum(seen), 1)
    self.assertTrue(seen[-1])

  def test_batchnorm_stats_are_trained_and_restored(self):
    config = small_config(**{'model.batch_norm': True, 'train.epochs': 15})
    record, _, variables = train.fit(config, digits(), seed=0)
    stats = variables['batch_stats']
    self.assertNotEmpty(stats)
    means = jax.tree.leaves(stats)
    self.assertTrue(any(float(jnp.abs(m).max()) > 1e-3 for m in means))
    self.assertGreater(record['test_accuracy'], 0.8)

  def test_divergence_is_reported_not_raised(self):
    config = small_config(**{'optimizer.name': 'sgd', 'optimizer.learning_rate': 1e30})
    record, history, _ = train.fit(config, digits(), seed=0)
    self.assertTrue(record['diverged'])
    self.assertEqual(record['stop_reason'], 'non_finite')
    self.assertLess(len(history), config.train.epochs + 1)

  def test_bad_training_values(self):
    data = digits()
    for field, value, expected in [
        ('train.batch_size', 0, 'train.batch_size=0'),
        ('train.batch_size', 10_000, 'train.batch_size=10000'),
        ('train.epochs', 0, 'train.epochs=0'),
        ('penalty.l2', -1.0, 'penalty.l2=-1.0'),
        ('penalty.l1', float('nan'), 'penalty.l1=nan'),
    ]:
      with self.subTest(field=field, value=value):
        with self.assertRaises(ConfigError) as ctx:
          train.Runner(small_config(**{field: value}), data)
        self.assertIn(expected, str(ctx.exception))


if __name__ == '__main__':
  absltest.main()
