"""Tests of experiments 2, 6, 7, 8: their measurement helpers on hand-made numbers, and
each script's --smoke run end to end (digits, seconds)."""

import json
import math
import tempfile
from pathlib import Path

from absl.testing import absltest
from absl.testing import parameterized
import chex
import jax
import numpy as np

from experiments import batchnorm
from experiments import bias_variance
from experiments import memorization
from experiments import tradeoffs
from regjax import train
from regjax.data import load_dataset
from regjax.errors import ConfigError


class BiasVarianceTest(parameterized.TestCase):

  def test_domingos_hand_example(self):
    # Three points, four members, three classes (worked out by hand):
    #   x0 (y=0): 0,0,0,1 -> main 0, unbiased, V=1/4, L=1/4
    #   x1 (y=1): 2,2,1,0 -> main 2, biased,   V=1/2, L=3/4 (one member is right)
    #   x2 (y=2): 1,1,1,1 -> main 1, biased,   V=0,   L=1
    preds = np.array([[0, 2, 1], [0, 2, 1], [0, 1, 1], [1, 0, 1]])
    y = np.array([0, 1, 2])
    d = bias_variance.zero_one_decomposition(preds, y, num_classes=3)
    self.assertAlmostEqual(d['loss'], 2 / 3)
    self.assertAlmostEqual(d['bias'], 2 / 3)
    self.assertAlmostEqual(d['variance'], 0.25)
    self.assertAlmostEqual(d['variance_unbiased'], 1 / 12)
    self.assertAlmostEqual(d['variance_biased'], 1 / 6)
    # The biased point's variance is credited back: 1/12 - (1/4)/3 = 0.
    self.assertAlmostEqual(d['net_variance'], 0.0)
    self.assertAlmostEqual(d['residual'], 0.0)

  def test_domingos_tie_goes_to_lowest_class(self):
    d = bias_variance.zero_one_decomposition(np.array([[3], [1]]), np.array([1]), 4)
    self.assertEqual(d['bias'], 0.0)  # Main prediction 1 (tie 1 vs 3) is right.
    self.assertEqual(d['variance'], 0.5)

  def test_squared_hand_example(self):
    probs = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])  # Two members, one point, y = 0.
    d = bias_variance.squared_decomposition(probs, np.array([0]))
    self.assertAlmostEqual(d['bias2'], 0.5)
    self.assertAlmostEqual(d['variance'], 0.5)
    self.assertAlmostEqual(d['error'], 1.0)

  @parameterized.parameters(2, 10)
  def test_decompositions_add_up_on_random_predictions(self, num_classes):
    rng = np.random.default_rng(num_classes)
    logits = rng.normal(size=(7, 300, num_classes))
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    y = rng.integers(0, num_classes, 300)
    sq = bias_variance.squared_decomposition(probs, y)
    self.assertLess(abs(sq['residual']), 1e-12)
    self.assertGreater(sq['variance'], 0.01)
    z = bias_variance.zero_one_decomposition(probs.argmax(-1), y, num_classes)
    self.assertLess(abs(z['residual']), 1e-12)
    if num_classes == 2:  # Two classes: c = 1, the textbook B + V_u - V_b.
      self.assertAlmostEqual(z['net_variance'],
                             z['variance_unbiased'] - z['variance_biased'])

  def test_jackknife_of_a_mean_is_its_standard_error(self):
    x = np.array([1.0, 2.0, 4.0, 7.0])
    se = bias_variance.jackknife_se(lambda a: {'m': float(a.mean())}, x)
    self.assertAlmostEqual(se['m'], x.std(ddof=1) / 2)

  def test_bootstrap_rows_are_seeded_and_differ(self):
    a = bias_variance.bootstrap_indices(50, 3)
    np.testing.assert_array_equal(a, bias_variance.bootstrap_indices(50, 3))
    self.assertEqual(a.shape, (3, 50))
    self.assertFalse(np.array_equal(a[0], a[1]))
    self.assertLess(len(np.unique(a[0])), 50)  # With replacement: duplicates.

  def test_members_train_like_plain_runs_on_their_resample(self):
    # A member is a lane of one vmapped program reading the shared pool through its
    # bootstrap rows. With the identity row arange(n) it must take exactly the steps of
    # train.fit on the base split with the same seed (same keys, order and batches);
    # with a real resample, those of train.fit on that resample. Up to float rounding:
    # vmapped and single programs may round differently.
    s = bias_variance.make_settings(smoke=True, seeds=2)
    config = bias_variance.base_config(s, '')
    config.model.widths = (8,)
    config.train.epochs = 2
    data = load_dataset(config.data)
    n = data.num_train
    rows = np.stack([np.arange(n, dtype=np.int32),
                     bias_variance.bootstrap_indices(n, 1)[0]])
    runs = bias_variance.member_runs(config, data, rows, [1e-3, 0.0], [5, 6])
    variables, histories, _ = bias_variance.fit_members(runs)
    for m, run in enumerate(runs):
      _, history, plain = train.fit(run.config, run.data, run.seed)
      chex.assert_trees_all_close(jax.tree.map(lambda a: a[m], variables['params']),
                                  plain['params'], atol=1e-5)
      self.assertAlmostEqual(histories[m][1]['train_loss'], history[1]['train_loss'],
                             places=5)
    self.assertEqual(runs[0].config.penalty.l2, 1e-3)
    np.testing.assert_array_equal(runs[0].data.train_idx, data.train_idx)
    # The resample's member did not train on the base split.
    _, _, base = train.fit(runs[1].config, data, 6)
    diff = max(float(np.abs(a[1] - b).max()) for a, b in zip(
        jax.tree.leaves(variables['params']), jax.tree.leaves(base['params'])))
    self.assertGreater(diff, 1e-3)

  def test_one_member_is_refused(self):
    with self.assertRaisesRegex(ConfigError, 'seeds=1'):
      bias_variance.make_settings(smoke=True, seeds=1)


class HelpersTest(absltest.TestCase):

  def test_epochs_to_target_is_first_crossing(self):
    curve = [0.5, 0.96, 0.94]
    self.assertEqual(batchnorm.epochs_to_target(curve, 0.95), 2)
    self.assertIsNone(batchnorm.epochs_to_target(curve, 0.97))
    # A diverged epoch (NaN, or None after JSON) never counts as reaching the target.
    self.assertIsNone(batchnorm.epochs_to_target([float('nan'), None], 0.1))

  def test_median_steps_counts_misses_as_slowest(self):
    self.assertEqual(batchnorm._median_steps([100, None, 300]), 300)
    self.assertIsNone(batchnorm._median_steps([100, None, None]))

  def test_knob_summary_range_and_width_in_decades(self):
    knob = tradeoffs.Knob('l2', 'penalty.l2', (1e-4, 1e-3, 1e-2, 1e-1))
    means = {1e-4: 0.950, 1e-3: 0.958, 1e-2: 0.960, 1e-1: 0.900}
    rows = [{'knob': 'l2', 'value': v, 'test_accuracy': m + d, 'val_accuracy': m}
            for v, m in means.items() for d in (-0.001, 0.001)]
    k = tradeoffs.summarize_knob(knob, rows)
    self.assertEqual(k['best_value'], 1e-2)
    self.assertAlmostEqual(k['range'], 0.06)
    # 1e-3 is within 0.5 pp of the best, 1e-4 (1.0 pp) is not: 1e-3..1e-2 = 1 decade.
    self.assertAlmostEqual(k['within_tolerance_width'], 1.0)
    self.assertEqual(k['points_within_tolerance'], 2)
    self.assertAlmostEqual(k['test_acc_std'][0], math.sqrt(2) * 0.001)

  def test_knob_best_is_chosen_on_validation_not_test(self):
    knob = tradeoffs.Knob('l2', 'penalty.l2', (1e-3, 1e-2))
    # Test prefers 1e-2, validation prefers 1e-3: the summary follows validation.
    rows = [{'knob': 'l2', 'value': 1e-3, 'test_accuracy': 0.90, 'val_accuracy': 0.95},
            {'knob': 'l2', 'value': 1e-2, 'test_accuracy': 0.99, 'val_accuracy': 0.93}]
    k = tradeoffs.summarize_knob(knob, rows)
    self.assertEqual(k['best_value'], 1e-3)
    self.assertAlmostEqual(k['best_mean'], 0.90)

  def test_tuned_knob_chooses_per_seed_on_validation(self):
    knob = tradeoffs.Knob('l2', 'penalty.l2', (1e-3, 1e-2))
    rows = []
    for seed, (val_a, val_b) in enumerate(((0.95, 0.93), (0.91, 0.94))):
      base = {'train_accuracy': 1.0, 'diverged': False, 'seed': seed}
      rows += [dict(base, knob='none', value=0.0, test_accuracy=0.90, val_accuracy=0.9),
               dict(base, knob='l2', value=1e-3, test_accuracy=0.92, val_accuracy=val_a),
               dict(base, knob='l2', value=1e-2, test_accuracy=0.99, val_accuracy=val_b)]
    summary, records = tradeoffs.tuned_comparison((knob,), rows)
    tuned = [r for r in records if r['variant'] == 'l2']
    self.assertEqual([r['chosen'] for r in tuned], [1e-3, 1e-2])
    self.assertAlmostEqual(summary[1]['diff_mean'], ((0.92 - 0.90) + (0.99 - 0.90)) / 2)

  def test_cost_ratio_is_paired_by_round(self):
    rows = [{'round': 0, 'variant': 'none', 'seconds': 1.0, 'compile_seconds': 2.0},
            {'round': 1, 'variant': 'none', 'seconds': 2.0, 'compile_seconds': 2.0},
            {'round': 0, 'variant': 'bn', 'seconds': 1.5, 'compile_seconds': 3.0},
            {'round': 1, 'variant': 'bn', 'seconds': 3.0, 'compile_seconds': 3.0}]
    bn = tradeoffs.summarize_cost(rows, ('none', 'bn'))[1]
    self.assertEqual((bn['ratio_min'], bn['ratio_max']), (1.5, 1.5))
    self.assertAlmostEqual(bn['seconds_mean'], 2.25)

  def test_epochs_to_fit(self):
    self.assertEqual(memorization.epochs_to_fit([0.3, 0.98, 0.995]), 3)
    self.assertEqual(memorization.epochs_to_fit([0.3, 0.98, 0.995], 0.9), 2)
    self.assertIsNone(memorization.epochs_to_fit([0.3, 0.98]))

  def test_early_stopping_pairs_by_seed(self):
    s = memorization.make_settings(smoke=True, seeds=2)
    runs = []
    for seed, (end_acc, es_acc) in enumerate(((0.80, 0.85), (0.70, 0.80))):
      base = {'noise': 1.0, 'seed': seed, 'memorized': 0.5, 'train_accuracy': 1.0,
              'epochs_run': 4, 'best_epoch': 1}
      runs += [dict(base, regularizer='none', test_accuracy=end_acc),
               dict(base, regularizer='early_stopping', test_accuracy=es_acc)]
    row = [r for r in memorization.early_stopping_pairs(runs, s) if r['noise'] == 1.0][0]
    self.assertEqual(row['n'], 2)
    self.assertAlmostEqual(row['test_diff_mean'], 0.075)
    self.assertAlmostEqual(row['best_epoch_mean'], 2.0)  # Reported 1-based.


class SmokeTest(absltest.TestCase):
  """Each script end to end on digits: files written, numbers sane."""

  def setUp(self):
    super().setUp()
    # mkdtemp() under the session's TMPDIR: absl's default test tmpdir (/tmp/absl_testing)
    # need not exist on a fresh machine.
    self.out = Path(tempfile.mkdtemp(prefix='regjax-exp-b-'))

  def _files(self, *names):
    for name in ('results.json', 'report.md') + names:
      self.assertGreater((self.out / name).stat().st_size, 100, name)
    return json.loads((self.out / 'results.json').read_text())

  def test_bias_variance(self):
    bias_variance.run(str(self.out), smoke=True, seeds=3)
    res = self._files(bias_variance.FIGURE)
    self.assertLen(res['points'], 2)  # 1 width x 2 strengths.
    self.assertLess(res['max_abs_residual']['squared'], 1e-9)
    self.assertLess(res['max_abs_residual']['zero_one'], 1e-9)
    for p in res['points']:
      self.assertBetween(p['zero_one']['bias'], 0.0, 1.0)
      self.assertGreater(p['squared']['variance'], 0.0)

  def test_batchnorm(self):
    batchnorm.run(str(self.out), smoke=True, seeds=1)
    res = self._files(batchnorm.STEPS_FIGURE, batchnorm.CURVES_FIGURE)
    self.assertLen(res['runs'], 2)  # BN off / on.
    self.assertEqual(res['steps_per_epoch'], 400 // 32)
    self.assertLen(res['claims'], 2)  # One per target.
    self.assertEqual(res['claims'][0]['cells_reached_all_seeds']['of'], 1)
    for r in res['runs']:
      self.assertLen(r['val_accuracy_curve'], 3)
      # Steps are whole epochs of 12 steps, consistent with the curve.
      for target, steps in zip(res['settings']['targets'], r['steps_to_target']):
        epochs = batchnorm.epochs_to_target(r['val_accuracy_curve'], target)
        self.assertEqual(steps, None if epochs is None else 12 * epochs)

  def test_tradeoffs(self):
    tradeoffs.run(str(self.out), smoke=True, seeds=1)
    res = self._files(tradeoffs.COST_FIGURE, tradeoffs.SENSITIVITY_FIGURE)
    none = [c for c in res['cost'] if c['variant'] == 'none'][0]
    self.assertEqual(none['ratio_median'], 1.0)
    self.assertGreater(none['compile_mean'], 0.0)
    self.assertLen(res['sensitivity'], 1)
    self.assertLen(res['sensitivity_runs'], 3)  # none + 2 grid points, 1 seed.
    self.assertLen(res['tuned_summary'], 2)  # none and the tuned knob.
    self.assertIn(res['tuned_records'][-1]['chosen'], (1e-3, 1e-1))
    self.assertGreater(res['cpu_seconds'], 0.0)

  def test_memorization(self):
    memorization.run(str(self.out), smoke=True, seeds=1)
    res = self._files(memorization.FIT_FIGURE, memorization.REG_FIGURE,
                      memorization.ES_FIGURE)
    full = [r for r in res['runs'] if r['noise'] == 1.0 and r['regularizer'] == 'none'][0]
    # label_noise 1.0 redraws all 200 labels; about 9 in 10 change class.
    self.assertBetween(full['changed_labels'], 150, 199)
    self.assertBetween(full['memorized'], 0.0, 1.0)
    self.assertLen(full['memorized_curve'], 4)  # One inference-mode value per epoch.
    self.assertAlmostEqual(full['memorized_curve'][-1], full['memorized'])
    es = [r for r in res['runs'] if r['regularizer'] == 'early_stopping']
    self.assertLen(es, 1)
    self.assertTrue(es[0]['early_stopping'])
    # train.fit's early-stopped run and the per-epoch trajectory share seed 0, so they
    # train the same path: equal validation accuracy on the epochs both ran.
    n = min(len(es[0]['val_accuracy_curve']), 4)
    np.testing.assert_allclose(es[0]['val_accuracy_curve'][:n],
                               full['val_accuracy_curve'][:n], atol=1e-6)


if __name__ == '__main__':
  absltest.main()
