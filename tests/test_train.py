"""The one training program: its step and epoch, the key split and batch order defined
once, one compile per program, restore, and the test set touched once."""

import functools
import tempfile
from unittest import mock

from absl.testing import absltest
import chex
import jax
import jax.numpy as jnp
import numpy as np

from regjax import experiment
from regjax import program
from regjax import schema
from regjax import train
from regjax import trainer as trainer_lib
from regjax import variants
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


def make_trainer(config, data, terms=None):
  return trainer_lib.make_trainer(config, data.num_classes, data.num_train, terms)


class TrainerTest(absltest.TestCase):

  def test_epoch_compiles_once_across_epochs_and_strengths(self):
    data = digits()
    trainer = make_trainer(small_config(), data)
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
    trainer = make_trainer(small_config(), data)
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
    # trains several runs; each must equal its own separate run.
    data = digits()
    trainer = make_trainer(small_config(), data)
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

  def test_a_penalty_left_out_matches_it_at_zero_and_groups_keep_the_ones_in_use(self):
    # Leaving a zero-strength penalty out of the program (the fast path) must train the
    # same model as computing it times 0, up to float rounding of a fused program.
    data = digits()
    config = small_config(**{'model.dropout_rate': 0.3})
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    zeros = {'l1': jnp.float32(0), 'l2': jnp.float32(0)}
    finals = []
    for terms in (('l1', 'l2'), ()):
      trainer = make_trainer(config, data, terms)
      state = trainer.init(jax.random.key(0), data.x_train[:1])
      state, metrics = jax.jit(trainer.train_epoch)(state, x, y, zeros, jax.random.key(1),
                                                    jax.random.key(2), jnp.int32(0))
      self.assertEqual(float(metrics['train_penalty']), 0.0)
      finals.append(state.params)
    chex.assert_trees_all_close(finals[0], finals[1], rtol=1e-5, atol=1e-6)
    # A term that is left out ignores its strength; groups keep every term > 0.
    trainer = make_trainer(config, data, ('l2',))
    state = trainer.init(jax.random.key(0), data.x_train[:1])
    _, m = trainer.train_step(state, x[:50], y[:50], {'l1': 1.0, 'l2': 0.0}, jax.random.key(1))
    self.assertEqual(float(m['train_penalty']), 0.0)
    group = lambda c: train.RunGroup([train.Run(c, 0, data)]).program.trainer.penalty_terms
    self.assertEqual(group(small_config(**{'penalty.l1': 1e-3})), ('l1',))
    self.assertEqual(group(small_config()), ())
    with self.assertRaisesRegex(ConfigError, "penalty_terms.*'l3'"):
      make_trainer(config, data, ('l3',))

  def test_evaluation_counts_every_example_once(self):
    data = digits()
    config = small_config()
    config.train.eval_batch_size = 64  # 450 test examples: 7 full batches and a tail of 2.
    group = train.RunGroup([train.Run(config, 0, data)])
    run = jax.tree.map(lambda a: a[0], group._init([0])).train
    variables = {'params': run.params, 'batch_stats': run.batch_stats}
    chunked = group._evaluate(variables, data.test, None, data.y_test, data)
    whole = group.program.trainer.evaluate(run.params, run.batch_stats,
                                           jnp.asarray(data.x_test), jnp.asarray(data.y_test))
    logits = group.program.trainer.model.apply({'params': run.params}, data.x_test)
    expected_acc = float(np.mean(np.argmax(logits, -1) == data.y_test))
    self.assertAlmostEqual(chunked['accuracy'], expected_acc, places=6)
    self.assertAlmostEqual(float(whole['accuracy']), expected_acc, places=6)
    self.assertAlmostEqual(chunked['loss'], float(whole['loss']), places=5)


class KeysAndOrderTest(absltest.TestCase):
  """The key split and the batch order are defined once (regjax/trainer.py)."""

  def test_one_key_splits_into_init_shuffle_and_dropout(self):
    keys = trainer_lib.run_keys(3)
    expected = jax.random.split(jax.random.key(3), 3)
    for got, want in zip(keys, expected):
      self.assertTrue(np.array_equal(jax.random.key_data(got), jax.random.key_data(want)))
    other = trainer_lib.run_keys(4)
    self.assertFalse(np.array_equal(jax.random.key_data(keys[1]),
                                    jax.random.key_data(other[1])))

  def test_every_epoch_has_its_own_order_of_every_position(self):
    key = trainer_lib.run_keys(0)[1]
    orders = [np.asarray(trainer_lib.batch_order(key, jnp.int32(e), 103, 10))
              for e in range(3)]
    for order in orders:
      self.assertEqual(order.shape, (10, 10))  # 3 left over: the remainder is dropped.
      self.assertLen(set(order.ravel()), 100)
      self.assertTrue(set(order.ravel()) <= set(range(103)))
    self.assertFalse(np.array_equal(orders[0], orders[1]))
    self.assertFalse(np.array_equal(orders[1], orders[2]))

  def test_the_program_trains_epochs_in_different_orders(self):
    # Without dropout only the order tells two epochs apart: the same state trained as
    # epoch 0 and as epoch 1 must end differently (and identically for equal epochs).
    data = digits()
    group = train.RunGroup([train.Run(small_config(), 0, data)])
    run = group._init([0])
    placed = group._place_lanes([0])
    epoch_fn = group._compile(1, run, placed)
    outs = [epoch_fn(run, placed['seed'], placed['hparams'], jnp.ones(1, bool),
                     jnp.int32(e), placed['data'], placed['shared'], jnp.bool_(True))[0]
            for e in (0, 1, 0)]
    kernel = lambda r: np.asarray(r.train.params['Dense_0']['kernel'])
    self.assertFalse(np.array_equal(kernel(outs[0]), kernel(outs[1])))
    self.assertTrue(np.array_equal(kernel(outs[0]), kernel(outs[2])))

  def test_every_step_draws_its_own_dropout_masks(self):
    # Two steps from the same params, optimizer state and batch that differ only in the
    # step counter differ only in their dropout masks (the key is fold_in(key, step)).
    data = digits()
    trainer = make_trainer(small_config(**{'model.dropout_rate': 0.5}), data)
    state = trainer.init(jax.random.key(0), data.x_train[:1])
    x, y = jnp.asarray(data.x_train[:50]), jnp.asarray(data.y_train[:50])
    hp = trainer_lib.penalty_hparams(small_config())
    key = jax.random.key(7)
    step = jax.jit(trainer.train_step)
    a, _ = step(state, x, y, hp, key)
    b, _ = step(state.replace(step=jnp.int32(1)), x, y, hp, key)
    c, _ = step(state, x, y, hp, key)
    kernel = lambda s: np.asarray(s.params['Dense_0']['kernel'])
    self.assertFalse(np.array_equal(kernel(a), kernel(b)))
    self.assertTrue(np.array_equal(kernel(a), kernel(c)))
    self.assertFalse(np.array_equal(jax.random.key_data(trainer_lib.step_key(key, 0)),
                                    jax.random.key_data(trainer_lib.step_key(key, 1))))

  def test_a_stopped_run_comes_back_bit_for_bit(self):
    data = digits()
    group = train.RunGroup([train.Run(small_config(), s, data) for s in (0, 1)])
    run = group._init([0, 1])
    placed = group._place_lanes([0, 1])
    epoch_fn = group._compile(2, run, placed)
    new, _ = epoch_fn(run, placed['seed'], placed['hparams'], jnp.asarray([True, False]),
                      jnp.int32(0), placed['data'], placed['shared'], jnp.bool_(True))
    lane = lambda r, i: jax.tree.map(lambda a: np.asarray(a[i]), r)
    chex.assert_trees_all_equal(lane(new, 1), lane(run, 1))
    self.assertFalse(np.array_equal(lane(new, 0).train.params['Dense_0']['kernel'],
                                    lane(run, 0).train.params['Dense_0']['kernel']))


class CompiledProgramSharedTest(absltest.TestCase):

  def test_equal_groups_traced_first_compile_once(self):
    # experiment.run traces every group before the first trains; an equal later group
    # must then take the program the first compiled, not compile its own copy (each
    # copy's machine code stays mapped: ~190 copies exhausted a process's memory maps).
    config = small_config(**{'train.epochs': 1, 'model.widths': (17,)})  # A fresh program.
    groups = [train.RunGroup([train.Run(config, seed, digits())]) for seed in (0, 1, 2)]
    for g in groups:
      g.trace()
    with mock.patch.object(jax.stages.Lowered, 'compile', autospec=True,
                           side_effect=jax.stages.Lowered.compile) as compile_spy:
      for g in groups:
        g.fit()
    self.assertEqual(compile_spy.call_count, 1)
    self.assertIs(groups[1]._compiled[1], groups[0]._compiled[1])
    self.assertIs(groups[2]._compiled[1], groups[0]._compiled[1])


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
          train.RunGroup([train.Run(small_config(**{field: value}), 0, data)])
        self.assertIn(expected, str(ctx.exception))


class TestSetTouchedOnceTest(absltest.TestCase):
  """Every evaluation path is watched: the in-program sets (traced), the final host-side
  evaluation, and the trainer's array evaluation (which a comparison must not use)."""

  def _watch(self):
    seen = {'program': [], 'host': [], 'trainer': 0}
    program_eval, host_eval = program.Program._evaluate, train.RunGroup._evaluate
    trainer_eval = trainer_lib.Trainer.evaluate

    def in_program(self_, state, shared, source, *args):
      seen['program'].append(source)
      return program_eval(self_, state, shared, source, *args)

    def on_host(self_, variables, source, rows, labels, data):
      seen['host'].append('test' if source is data.test else 'pool')
      return host_eval(self_, variables, source, rows, labels, data)

    def by_trainer(*args, **kwargs):
      seen['trainer'] += 1
      return trainer_eval(*args, **kwargs)

    patches = [mock.patch.object(program.Program, '_evaluate', in_program),
               mock.patch.object(train.RunGroup, '_evaluate', on_host),
               mock.patch.object(trainer_lib.Trainer, 'evaluate', by_trainer)]
    return seen, patches

  def test_a_run_tests_once_on_its_final_weights(self):
    seen, patches = self._watch()
    with patches[0], patches[1], patches[2]:
      train.fit(small_config(), digits(), seed=0)
    self.assertEqual(seen['host'], ['pool', 'pool', 'test'])  # train, val, then test.
    self.assertNotIn('test', seen['program'])
    self.assertEqual(seen['trainer'], 0)

  def test_a_comparison_tests_each_run_once_vmapped_or_not(self):
    for mode in ('never', 'always'):
      with self.subTest(vectorize=mode):
        config = small_config(**{'train.vectorize': mode, 'train.epochs': 3})
        config.seeds = 2
        variants.set_variants(config, baseline={}, l2={'penalty.l2': 1e-3})
        seen, patches = self._watch()
        with patches[0], patches[1], patches[2]:
          result = experiment.run(config, tempfile.mkdtemp(),
                                  log=lambda line: None, checkpoint_every_s=None)
        self.assertLen(result['records'], 4)
        self.assertEqual(seen['host'].count('test'), 4)  # One per run.
        self.assertNotIn('test', seen['program'])
        self.assertEqual(seen['trainer'], 0)


if __name__ == '__main__':
  absltest.main()
