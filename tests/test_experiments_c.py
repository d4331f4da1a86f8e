"""Tests of the AdamW, feature-selection and path experiments: their measurements on
hand-made numbers, and each script's --smoke run end to end (digits, seconds)."""

import json
import math
import tempfile
from pathlib import Path
import warnings

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
from sklearn import linear_model

from experiments import adamw
from experiments import feature_selection as fs
from experiments import paths
from regjax.errors import ConfigError


class AdamWMeasuresTest(parameterized.TestCase):

  def test_ridge_ties_go_to_the_weaker_strength_and_nan_never_wins(self):
    m = np.array([[0.9, 0.9, 0.8],
                  [np.nan, 0.5, 0.7],
                  [np.nan, np.nan, np.nan]])
    np.testing.assert_array_equal(adamw.ridge(m), [0, 2, 0])
    np.testing.assert_array_equal(adamw.ridge(-m, mode='min'), [0, 2, 0])

  def test_ridge_ties_survive_float_rounding_of_means(self):
    # Means of equal accuracies summed in another order differ in the last bits.
    counts = [2808, 2841, 2799, 2830, 2815, 2822]  # Correct of 3,000, six seeds.
    a = np.mean([c / 3000 for c in counts])
    b = np.mean([c / 3000 for c in counts[:3] + [2822, 2830, 2815]])
    self.assertNotEqual(a, b)
    m = np.array([[min(a, b), max(a, b)]])
    np.testing.assert_array_equal(adamw.ridge(m), [0])

  def test_log_range_and_slope(self):
    self.assertAlmostEqual(adamw.log_range([1e-3, 1e-1, 1e-2]), 2.0)
    self.assertAlmostEqual(adamw.log_slope([1e-3, 1e-2, 1e-1], [1.0, 1.0, 1.0]), 0.0)
    self.assertAlmostEqual(adamw.log_slope([1e-3, 1e-2, 1e-1], [1e2, 1e1, 1e0]), -1.0)

  def test_interaction_share_is_zero_for_an_additive_grid(self):
    rows, cols = np.array([0.0, 1.0, 3.0]), np.array([0.5, -1.0, 2.0, 0.0])
    self.assertAlmostEqual(adamw.interaction_share(rows[:, None] + cols[None, :]), 0.0)
    # A diagonal ridge: the best column moves with the row.
    diagonal = -np.abs(np.arange(3)[:, None] - np.arange(3)[None, :]).astype(float)
    self.assertGreater(adamw.interaction_share(diagonal), 0.5)
    self.assertTrue(math.isnan(adamw.interaction_share(np.ones((2, 2)))))

  def test_ridge_units(self):
    # The best weight decay is 0.1 at every learning rate: flat in optax units, one
    # decade per decade of learning rate in the paper's units (lr * wd).
    lrs, wds = (1e-3, 1e-2, 1e-1), (0.01, 0.1, 1.0)
    m = np.array([[0.8, 0.9, 0.7]] * 3)
    flat = adamw.ridge_stats(m, lrs, wds)
    paper = adamw.ridge_stats(m, lrs, wds, scale_by_lr=True)
    self.assertEqual(flat['log_range'], 0.0)
    self.assertEqual(flat['on_edge'], 0)
    self.assertAlmostEqual(paper['log_range'], 2.0)
    self.assertAlmostEqual(paper['slope'], 1.0)
    np.testing.assert_allclose(paper['best'], [1e-4, 1e-3, 1e-2])

  def test_grid_matrix_means_seeds_and_skips_diverged_runs(self):
    runs = [{'lr': 1.0, 'strength': 2.0, 'seed': k, 'val_accuracy': v, 'diverged': d}
            for k, (v, d) in enumerate([(0.5, False), (0.7, False), (0.0, True)])]
    self.assertAlmostEqual(adamw.grid_matrix(runs, [1.0], [2.0])[0, 0], 0.6)
    self.assertAlmostEqual(adamw.grid_matrix(runs, [1.0], [2.0], seed=1)[0, 0], 0.7)
    self.assertTrue(np.isnan(adamw.grid_matrix(runs, [1.0], [2.0], seed=2)[0, 0]))

  def test_paired_table_pairs_by_seed_and_adjusts_with_holm(self):
    values = {'a': {0: 1.0, 1: 2.0, 2: 3.0, 3: 4.0}, 'b': {0: 0.0, 1: 0.0, 2: 0.0, 3: 0.0},
              'c': {0: 1.0, 1: 2.0, 2: 3.0, 9: 1.0}}
    rows = adamw.paired_table(values, [('a', 'b'), ('c', 'b')])
    self.assertEqual(rows[0]['n'], 4)
    self.assertEqual(rows[1]['n'], 3)  # Seed 9 has no partner.
    self.assertAlmostEqual(rows[0]['diff_mean'], 2.5)
    self.assertAlmostEqual(rows[0]['p_value'], 2 / 16)  # All positive: the smallest p.
    self.assertAlmostEqual(rows[1]['p_value'], 2 / 8)
    # Holm: the smaller p times 2, the larger times 1 (monotone).
    self.assertAlmostEqual(rows[0]['p_adjusted'], 0.25)
    self.assertAlmostEqual(rows[1]['p_adjusted'], 0.25)
    self.assertEqual(adamw.verdict(rows[0], +1), 'not resolved')
    self.assertEqual(adamw.verdict({'diff_mean': -1.0, 'p_adjusted': 0.01}, +1),
                     'does not hold')

  def test_one_seed_is_refused(self):
    with self.assertRaises(ConfigError):
      adamw.make_settings(smoke=True, seeds=1)


class FeatureSelectionMeasuresTest(parameterized.TestCase):

  def test_noisy_table_appends_uniform_and_permuted_columns(self):
    rng = np.random.default_rng(1)
    pool = (rng.random((50, 3, 3, 1)) < 0.5).astype(np.uint8) * 200
    pool[:, 0, 0, 0] = 0  # Blank everywhere: never a permuted source.
    test = pool[:20]
    p, t, sources = fs.noisy_table(pool, test, 4, 2, np.random.default_rng(0))
    self.assertEqual(p.shape, (50, 9 + 6))
    self.assertEqual(t.shape, (20, 9 + 6))
    self.assertEqual(p.dtype, np.uint8)
    np.testing.assert_array_equal(p[:, :9], pool.reshape(50, 9))
    self.assertNotIn(0, sources)
    for k, j in enumerate(sources):  # A permutation of its source column.
      column = p[:, 9 + 4 + k]
      np.testing.assert_array_equal(np.sort(column), np.sort(p[:, j]))
      self.assertFalse(np.array_equal(column, p[:, j]))
    floats = fs.noisy_table(pool.astype(np.float32) / 255, test.astype(np.float32) / 255,
                            4, 2, np.random.default_rng(0))[0]
    self.assertTrue(np.all((floats[:, 9:13] >= 0) & (floats[:, 9:13] < 1)))

  def test_input_classes(self):
    x = np.array([[0, 1, 0, 0.3, 0.2, 0.9],
                  [0, 1, 0, 0.1, 0.5, 0.1]] + [[0, 1, 0, 0.5, 0.5, 0.5]] * 18)
    x[5, 2] = 1.0  # Pixel 2: non-zero in 1 of 20 images (< 10%): rare.
    classes = fs.input_classes(x, n_original=3, n_uniform=2)
    self.assertEqual([fs.CLASSES[c] for c in classes],
                     ['blank', 'common', 'rare', 'uniform', 'uniform', 'permuted'])

  def test_selection_stats_on_a_hand_made_kernel(self):
    common_, rare, blank, uniform, permuted = range(5)
    classes = np.array([common_, common_, rare, blank, uniform, permuted, permuted])
    kernel = np.array([[1.0, 0.0],       # common, selected
                       [0.0, 0.0],       # common, zeroed
                       [5e-4, 0.0],      # rare, selected only exactly (near: zero)
                       [0.0, 0.0],       # blank
                       [0.0, 2.0],       # uniform noise, selected
                       [0.0, 0.0],       # permuted, zeroed
                       [0.0, -3e-4]])    # permuted, selected only exactly
    st = fs.selection_stats(kernel, classes)
    self.assertEqual(st['exact_selected'], 4)
    self.assertAlmostEqual(st['exact_precision'], 2 / 4)  # 2 informative, 2 noise.
    self.assertAlmostEqual(st['exact_recall'], 2 / 3)
    self.assertAlmostEqual(st['exact_kept_permuted'], 0.5)
    self.assertAlmostEqual(st['exact_kept_noise'], 2 / 3)
    self.assertEqual(st['near_selected'], 2)
    self.assertAlmostEqual(st['near_precision'], 1 / 2)
    self.assertAlmostEqual(st['near_recall'], 1 / 3)
    self.assertAlmostEqual(st['zero_fraction'], 10 / 14)
    self.assertEqual(st['counts'], {'common': 2, 'rare': 1, 'blank': 1, 'uniform': 1,
                                    'permuted': 2})
    # Informative norms (1, 0, 5e-4) vs noise (2, 0, 3e-4): 4 wins and 1 tie of 9 pairs.
    self.assertAlmostEqual(st['auroc'], 4.5 / 9)

  def test_auroc(self):
    self.assertEqual(fs.auroc(np.array([2.0, 3.0]), np.array([1.0])), 1.0)
    self.assertEqual(fs.auroc(np.array([1.0]), np.array([1.0])), 0.5)
    self.assertTrue(math.isnan(fs.auroc(np.array([]), np.array([1.0]))))


class PathsMeasuresTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    rng = np.random.default_rng(0)
    self.x = rng.normal(size=(60, 4))
    # Labels that depend on x, so that the fitted weights are far from 0.
    self.y = np.argmax(self.x[:, :3] * 2 + rng.normal(size=(60, 3)), axis=1)

  def test_data_gradient_matches_finite_differences(self):
    rng = np.random.default_rng(1)
    w, b = rng.normal(size=(4, 3)), rng.normal(size=3)
    g, gb = paths.data_gradient(w, b, self.x, self.y)
    eps = 1e-6
    for (i, j) in ((0, 0), (3, 2)):
      dw = np.zeros_like(w)
      dw[i, j] = eps
      fd = (paths.objective(w + dw, b, self.x, self.y, 0.0, 'ridge')
            - paths.objective(w - dw, b, self.x, self.y, 0.0, 'ridge')) / (2 * eps)
      self.assertAlmostEqual(g[i, j], fd, places=6)
    db = np.array([0.0, eps, 0.0])
    fd = (paths.objective(w, b + db, self.x, self.y, 0.0, 'ridge')
          - paths.objective(w, b - db, self.x, self.y, 0.0, 'ridge')) / (2 * eps)
    self.assertAlmostEqual(gb[1], fd, places=6)

  def test_sklearn_with_c_of_lambda_is_optimal_for_the_mean_loss_objective(self):
    # The convention: C = 1 / (n * lambda) solves mean CE + (lambda / 2) ||W||^2.
    lam = 0.05
    w, b, converged = paths.sklearn_fit(self.x, self.y, lam, 'ridge', 10000)
    self.assertTrue(converged)
    self.assertLess(paths.kkt_residual(w, b, self.x, self.y, lam, 'ridge'), 1e-4)
    # The sum-loss reading (C = 1 / lambda) is not optimal for it.
    with warnings.catch_warnings():
      warnings.simplefilter('ignore')
      wrong = linear_model.LogisticRegression(C=1 / lam, tol=1e-10).fit(self.x, self.y)
    self.assertGreater(paths.kkt_residual(wrong.coef_.T, wrong.intercept_, self.x, self.y,
                                          lam, 'ridge'), 0.1)

  def test_lasso_kkt_at_zero_is_the_excess_gradient(self):
    w, b = np.zeros((4, 3)), np.zeros(3)
    g, _ = paths.data_gradient(w, b, self.x, self.y)
    lam = float(np.abs(g).max()) * 2  # Above lambda_max: W = 0 satisfies the W part.
    residual = paths.kkt_residual(w, b, self.x, self.y, lam, 'lasso')
    _, gb = paths.data_gradient(w, b, self.x, self.y)
    self.assertAlmostEqual(residual, float(np.abs(gb).max()) / lam)


class SmokeTest(absltest.TestCase):
  """Each script end to end on digits: files written, numbers consistent."""

  def setUp(self):
    super().setUp()
    self.out = Path(tempfile.mkdtemp(prefix='regjax-exp-c-'))

  def _files(self, *names):
    for name in ('results.json', 'report.md') + names:
      self.assertGreater((self.out / name).stat().st_size, 100, name)
    return json.loads((self.out / 'results.json').read_text())

  def test_adamw(self):
    adamw.run(str(self.out), '', smoke=True, seeds=2)
    res = self._files(adamw.HEATMAP_FIGURE, adamw.TUNED_FIGURE)
    s = res['settings']
    self.assertLen(res['runs']['adam_l2'], 2 * 2 * 2)  # lr x strength x seed.
    self.assertLen(res['runs']['adamw'], 2 * 2 * 2)
    self.assertLen(res['runs']['adam'], 2 * 2)  # The weight_decay = 0 lanes.
    for form in ('adam_l2', 'adamw'):
      runs = res['runs'][form]
      grid = np.array(res['val_accuracy_grid'][form])
      for i, lr in enumerate(s['learning_rates']):
        for j, st in enumerate(s['strengths'][form]):
          vals = [r['val_accuracy'] for r in runs if r['lr'] == lr and r['strength'] == st]
          self.assertAlmostEqual(grid[i, j], np.mean(vals))
      self.assertEqual(res['ridges'][form]['best'],
                       [s['strengths'][form][j] for j in np.argmax(grid, 1)])
      for seed in range(2):  # The tuned run is the best on validation, not on test.
        mine = [r for r in runs if r['seed'] == seed]
        self.assertEqual(res['tuned'][form][str(seed)]['val_accuracy'],
                         max(r['val_accuracy'] for r in mine))
    for row in res['claim1_tests'] + res['tuned_tests']:
      self.assertGreaterEqual(row['p_value'], 0.5)  # 2 seeds: p >= 2 / 2^2.
      self.assertGreaterEqual(row['p_adjusted'], row['p_value'])
    # Re-analysis of the stored runs (no training) gives the same numbers.
    again = adamw.run(str(self.out / 'again'), '', smoke=False, seeds=2,
                      reanalyze=str(self.out / 'results.json'))
    self.assertEqual(again['ridges'], res['ridges'])
    self.assertEqual(again['tuned_tests'][0]['diffs'], res['tuned_tests'][0]['diffs'])
    self.assertEqual(again['training']['runtime_seconds'], res['runtime_seconds'])
    self.assertIn('Analysis rerun', (self.out / 'again' / 'report.md').read_text())

  def test_feature_selection(self):
    fs.run(str(self.out), '', smoke=True, seeds=2)
    res = self._files(fs.PATHS_FIGURE, fs.NORMS_FIGURE)
    classes = np.array(res['classes_seed0'])
    n = res['settings']['n_original']
    self.assertLen(classes, n + 16 + 16)
    self.assertTrue(np.all(classes[n:n + 16] == fs.CLASSES.index('uniform')))
    informative = np.isin(classes, [0, 1])
    noise = np.isin(classes, [3, 4])
    self.assertLen(res['records'], 2 * 2 * 2)  # arm x strength x seed.
    for r in res['records']:
      for c in fs.CRITERIA:
        for key in ('precision', 'recall', 'kept_noise', 'kept_informative'):
          v = r[f'{c}_{key}']
          self.assertTrue(v is None or 0.0 <= v <= 1.0, (c, key, v))
      self.assertBetween(r['auroc'], 0.0, 1.0)
      if r['seed'] == 0:  # Consistent with the weights (their row norms).
        sel = np.array(r['row_norms']) > 0
        self.assertEqual(r['exact_selected'], int(sel.sum()))
        tp, fp = int((sel & informative).sum()), int((sel & noise).sum())
        self.assertAlmostEqual(r['exact_precision'], tp / (tp + fp))
        self.assertAlmostEqual(r['exact_recall'], tp / int(informative.sum()))
    # The momentum arm's strong L1 zeroes some rows exactly.
    strong = [r for r in res['records'] if r['arm'] == 'momentum' and r['strength'] > 0]
    self.assertTrue(all(r['exact_selected'] < len(classes) for r in strong))

  def test_paths(self):
    paths.run(str(self.out), '', smoke=True, seeds=2)
    res = self._files(paths.FIGURE)
    for form in paths.FORMS:
      (check,) = res['sklearn_checks'][form]  # The one lambda > 0 of the smoke grid.
      self.assertEqual(check['lambda'], 0.01)
      self.assertLess(abs(check['objective_gap']), 1e-3)
      self.assertLess(check['coef_rel_diff'], 0.05)
      self.assertTrue(check['sklearn_converged'])
    lasso = res['sklearn_checks']['lasso'][0]
    self.assertEqual(lasso['zero_rows'], lasso['zero_rows_sklearn'])
    self.assertGreater(lasso['zero_pattern_agreement'], 0.95)
    self.assertLen(res['tuned_tests'], 3)


if __name__ == '__main__':
  absltest.main()
