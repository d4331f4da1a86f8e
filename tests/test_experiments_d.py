"""Tests of experiments 12 and 13 (srivastava.py, randomization.py): their measurement
helpers on hand-made data, and each script's --smoke run end to end (digits)."""

import json
import math
import tempfile
from pathlib import Path

from absl.testing import absltest
import jax
import numpy as np

from experiments import common
from experiments import randomization
from experiments import srivastava
from regjax import trainer as trainer_lib
from regjax.data import load_dataset


def _digits(train_size: int = 0, validation_fraction: float = 0.1):
  c = common.base_config(True, '')
  c = common.override(c, data__train_size=train_size,
                      data__validation_fraction=validation_fraction)
  return c, load_dataset(c.data)


class SrivastavaHelpersTest(absltest.TestCase):

  def test_dropped_units_move_only_with_optimizer_state(self):
    # One step on one example: SGD leaves every dropped unit's incoming weights exactly
    # as they were; Adam's first step too (its moments are 0); after warm-up steps
    # Adam moves dropped units (its first moment carries earlier gradients).
    config, data = _digits(train_size=300)
    config = common.override(config, model__widths=(16, 16), model__dropout_rate=0.5,
                             train__batch_size=20)
    sgd = common.override(config, optimizer__name='sgd', optimizer__learning_rate=0.1)
    adam = common.override(config, optimizer__name='adam', optimizer__learning_rate=1e-3)
    for res in srivastava.dropped_unit_check(sgd, data, (0, 3)):
      for layer in res['per_layer']:
        self.assertGreater(layer['dropped'], 0)
        self.assertEqual(layer['zero_grad_dropped'], layer['dropped'])
        self.assertEqual(layer['dropped_exact_zero'], layer['dropped'])
        self.assertEqual(layer['max_abs_update_dropped'], 0.0)
        # The kept units with a gradient did move: the check can see an update.
        self.assertGreater(layer['kept_active'], 0)
        self.assertGreater(layer['mean_abs_update_kept'], 0.0)
    first, later = srivastava.dropped_unit_check(adam, data, (0, 3))
    for layer in first['per_layer']:
      self.assertEqual(layer['dropped_exact_zero'], layer['dropped'])
    self.assertGreater(max(l['max_abs_update_dropped'] for l in later['per_layer']), 0.0)
    self.assertLess(sum(l['dropped_exact_zero'] for l in later['per_layer']),
                    sum(l['dropped'] for l in later['per_layer']))
    # A batch of 20 draws a mask per example: no unit is dropped for all 20.
    self.assertEqual(first['batch_dropped_everywhere'], {0: 0, 1: 0})

  def test_keep_masks_follow_the_rate(self):
    config, data = _digits(train_size=300)
    config = common.override(config, model__widths=(256,), model__dropout_rate=0.75)
    trainer = trainer_lib.make_trainer(config, data.num_classes, data.num_train)
    state = trainer.init(jax.random.key(0), data.x_train[:1])
    masks = srivastava.keep_masks(trainer.model, state.params, data.x_train[:50],
                                  jax.random.key(1))
    self.assertEqual(set(masks), {0})
    self.assertEqual(masks[0].shape, (50, 256))
    self.assertAlmostEqual(float(np.mean(masks[0])), 0.25, delta=0.02)

  def test_paired_rows_holm_and_floor(self):
    rows = common.paired_rows([('a', [0.01] * 8), ('b', [0.01, -0.01] * 4)])
    self.assertAlmostEqual(rows[0]['p_value'], 2 / 2**8)
    self.assertAlmostEqual(rows[0]['p_adjusted'], 2 * 2 / 2**8)  # Holm, m = 2.
    self.assertTrue(rows[0]['significant'])
    self.assertEqual(rows[1]['p_value'], 1.0)
    self.assertFalse(rows[1]['significant'])
    self.assertEqual(srivastava.verdict(rows[0]['mean'], rows[0]['significant']), 'holds')
    self.assertEqual(srivastava.verdict(-0.01, True), 'does not hold')
    three = common.paired_rows([('c', [0.02, 0.03, 0.01])])[0]
    self.assertEqual(three['p_value'], 0.25)  # 3 seeds: p never below 2/8.
    self.assertEqual(srivastava.verdict(three['mean'], three['significant']), 'not resolved')

  def test_hidden_unit_norms_are_kernel_columns(self):
    params = {'Dense_0': {'kernel': np.array([[3.0, 0.0], [4.0, 1.0]])},
              'Dense_1': {'kernel': np.array([[2.0], [0.0]])},
              'Dense_2': {'kernel': np.ones((1, 10))}}  # The output layer: not counted.
    np.testing.assert_allclose(srivastava.hidden_unit_norms(params, 2), [5.0, 1.0, 2.0])


class RandomizationHelpersTest(absltest.TestCase):

  def test_shuffled_pixels_permute_each_image_the_same_way(self):
    _, data = _digits()
    shuffled, perm = randomization.shuffle_pixels(data)
    for before, after in ((data.pool, shuffled.pool), (data.test, shuffled.test)):
      flat, flat_after = before.reshape(len(before), -1), after.reshape(len(after), -1)
      np.testing.assert_array_equal(flat_after, flat[:, perm])
      # Per image the same multiset of pixel values, in other places.
      np.testing.assert_array_equal(np.sort(flat_after, 1), np.sort(flat, 1))
    self.assertFalse(np.array_equal(shuffled.pool, data.pool))
    self.assertEqual(sorted(perm.tolist()), list(range(64)))
    np.testing.assert_array_equal(shuffled.y_train, data.y_train)
    # An MLP sees the same problem: decoded training inputs are the permuted originals.
    np.testing.assert_array_equal(shuffled.x_train.reshape(data.num_train, -1),
                                  data.x_train.reshape(data.num_train, -1)[:, perm])

  def test_random_pixels_match_per_pixel_statistics(self):
    _, data = _digits(validation_fraction=0.0)
    noise = randomization.random_pixels(data)
    self.assertEqual(noise.pool.shape, data.x_train.shape)
    self.assertEqual(noise.test.shape, data.test.shape)
    np.testing.assert_array_equal(noise.y_train, data.y_train)
    self.assertEqual(noise.num_val, 0)
    x, z = data.x_train.astype(np.float64), noise.x_train.astype(np.float64)
    n = data.num_train
    # Means within 4 standard errors, standard deviations within 15%.
    np.testing.assert_array_less(np.abs(z.mean(0) - x.mean(0)),
                                 4 * x.std(0) / math.sqrt(n) + 1e-6)
    np.testing.assert_allclose(z.std(0), x.std(0), rtol=0.15, atol=1e-6)
    # Noise, not the images: around the per-pixel means, uncorrelated with them.
    corr = np.corrcoef((x - x.mean(0)).ravel(), (z - z.mean(0)).ravel())[0, 1]
    self.assertLess(abs(corr), 0.05)

  def test_epochs_to_fit_and_censored_ratio(self):
    self.assertEqual(randomization.epochs_to_fit([0.5, 0.99, 1.0]), 2)
    self.assertIsNone(randomization.epochs_to_fit([0.5, 0.98]))
    r = randomization.ratio({'epochs_to_fit': None}, {'epochs_to_fit': 5}, epochs=9)
    self.assertEqual(r, {'ratio': 2.0, 'censored': True})
    r = randomization.ratio({'epochs_to_fit': 6}, {'epochs_to_fit': 3}, epochs=9)
    self.assertEqual(r, {'ratio': 2.0, 'censored': False})


class SmokeTest(absltest.TestCase):
  """Each script end to end on digits: files written, numbers sane."""

  def setUp(self):
    super().setUp()
    self.out = Path(tempfile.mkdtemp(prefix='regjax-exp-d-'))

  def _files(self, *names):
    for name in ('results.json', 'report.md') + names:
      self.assertGreater((self.out / name).stat().st_size, 100, name)
    return json.loads((self.out / 'results.json').read_text())

  def test_srivastava(self):
    srivastava.run(str(self.out), smoke=True, seeds=2, log=lambda _: None)
    res = self._files(srivastava.ARMS_FIGURE, srivastava.RATES_FIGURE,
                      srivastava.SIZE_FIGURE)
    s = srivastava.SMOKE
    summary = res['arms']['summary']
    self.assertEqual([r['variant'] for r in summary], [a[0] for a in srivastava.ARMS])
    # Holm over the three rows against none: adjusted p >= raw p.
    for r in summary[1:]:
      self.assertGreaterEqual(r['p_adjusted'], r['p_value'])
    # Each arm's chosen run is the best of its grid on validation accuracy.
    for rec in res['arms']['records']:
      grid = [x for x in res['runs'] if x['seed'] == rec['seed']
              and x['spec']['keep'] == rec['spec']['keep']
              and x['spec']['max_norm'] == rec['spec']['max_norm']
              and x['spec']['size'] == s.train_size and x['spec']['widths'] == list(s.widths)]
      self.assertLen(grid, len(s.learning_rates))
      self.assertEqual(rec['val_accuracy'], max(x['val_accuracy'] for x in grid))
    # Runs are trained once: A's 16, B's one new width (2 seeds), and C's new size with
    # 2 keeps x 2 learning rates x 2 seeds; C's other size is A's.
    self.assertLen(res['runs'], 4 * 2 * 2 + 2 + 2 * 2 * 2)
    # Max-norm runs keep every hidden unit's incoming norm within c (up to rounding).
    for x in res['runs']:
      if x['spec']['max_norm']:
        self.assertLessEqual(x['max_unit_norm'], x['spec']['max_norm'] * (1 + 1e-5))
    # The notebook's claim, tested: SGD leaves dropped units' weights exactly unchanged.
    sgd = [c for c in res['dropped_units'] if c['optimizer'] == 'SGD']
    self.assertLen(sgd, 2)
    for c in sgd:
      for layer in c['per_layer']:
        self.assertGreater(layer['dropped'], 0)
        self.assertEqual(layer['dropped_exact_zero'], layer['dropped'])
    # C compares against no dropout at ITS learning rate chosen on validation.
    for row in res['data_size']['per_seed']:
      base = [x for x in res['runs'] if x['seed'] == row['seed'] and x['spec']['keep'] == 1.0
              and x['spec']['max_norm'] and x['spec']['size'] == row['size']
              and x['spec']['widths'] == list(s.widths)]
      self.assertLen(base, len(s.learning_rates))
      best = max(base, key=lambda x: x['val_accuracy'])
      self.assertEqual(row['test_no_dropout'], best['test_accuracy'])
      self.assertEqual(row['no_dropout_lr'], best['spec']['lr'])
    self.assertLen(res['data_size']['per_seed'], len(s.sizes) * 2)

  def test_randomization(self):
    randomization.run(str(self.out), smoke=True, seeds=2, log=lambda _: None)
    res = self._files(randomization.FIT_FIGURE, randomization.RATIO_FIGURE)
    s = randomization.make_settings(True)
    self.assertLen(res['runs'], len(randomization.ARMS) * len(s.regularizers) * 2)
    self.assertBetween(res['changed_labels'], 150, 199)  # ~9 in 10 of 200 change.
    for r in res['runs']:
      self.assertLen(r['fit_curve'], s.epochs)
      if r['arm'] == 'true labels':
        self.assertEqual(r['ratio'], 1.0)
      if r['arm'] == 'random pixels':
        self.assertLess(r['test_accuracy'], 0.3)  # Noise inputs: near chance on test.


if __name__ == '__main__':
  absltest.main()
