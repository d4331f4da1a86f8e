"""Tests for regjax.report: paired statistics, table, results files, plots, atomicity."""

import csv
import json
import math
import os
import shutil
import stat
import tempfile

from absl.testing import absltest
from absl.testing import parameterized
import chex
import numpy as np
from scipy import stats

from regjax import report
from regjax import stats as paired_stats
from regjax.errors import ConfigError

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


def _record(variant, seed, test_accuracy, **overrides):
  """A complete run record with plausible defaults."""
  r = {
      'variant': variant, 'seed': seed, 'test_accuracy': test_accuracy,
      'test_loss': 0.2, 'train_accuracy': test_accuracy + 0.03, 'train_loss': 0.05,
      'val_accuracy': test_accuracy, 'val_loss': 0.2, 'best_epoch': 10 + seed,
      'stop_epoch': 20 + seed, 'epochs_run': 20 + seed, 'stop_reason': 'patience',
      'zero_fraction': 0.0, 'weight_l2': 10.0, 'weight_l1': 100.0,
      'seconds_per_epoch': 0.5, 'compile_seconds': 2.0, 'diverged': False,
  }
  r.update(overrides)
  return r


def _records(accs):
  """{variant: [acc per seed 0..n-1]} -> run records."""
  return [_record(v, s, a) for v, seq in accs.items() for s, a in enumerate(seq)]


def _row(rows, variant):
  (row,) = [r for r in rows if r['variant'] == variant]
  return row


def _no_temp_files(folder):
  return [f for f in os.listdir(folder) if f.endswith('.tmp')] == []


def _tempdir(test):
  """A fresh folder removed after `test` (absltest's create_tempdir needs parsed flags)."""
  folder = tempfile.mkdtemp(prefix='regjax_report_test_')
  test.addCleanup(shutil.rmtree, folder, ignore_errors=True)
  return folder


class SummarizeTest(parameterized.TestCase):

  @parameterized.parameters(0.9, 0.95, 0.99)
  def test_paired_difference_matches_hand_computed_t_interval(self, confidence):
    base = [0.90, 0.92, 0.88, 0.91]
    diffs = np.array([0.01, 0.02, 0.00, 0.03])
    rows = report.summarize(
        _records({'baseline': base, 'l2': list(np.add(base, diffs))}), 'baseline',
        confidence)
    row = _row(rows, 'l2')
    n = 4
    sd = np.std(diffs, ddof=1)
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)
    p = 2 * stats.t.sf(abs(diffs.mean() / (sd / math.sqrt(n))), n - 1)
    chex.assert_trees_all_close(
        (row['diff_mean'], row['diff_ci_low'], row['diff_ci_high'], row['p_t']),
        (0.015, 0.015 - half, 0.015 + half, p), rtol=1e-9, atol=1e-12)
    # 'p_value' is now the sign-flip p (it used to be the t-test's): |sum| of
    # ±1 ±2 ±0 ±3 (in 0.01) reaches 6 for 4 of the 16 sign vectors.
    self.assertAlmostEqual(row['p_value'], 0.25, places=12)
    # One compared row: Holm and Bonferroni change nothing.
    self.assertAlmostEqual(row['p_adjusted'], 0.25, places=12)
    chex.assert_trees_all_close((row['adj_ci_low'], row['adj_ci_high']),
                                (row['diff_ci_low'], row['diff_ci_high']), rtol=1e-12)
    self.assertEqual(row['n_paired'], 4)
    self.assertFalse(row['significant'])  # p_adjusted 0.25 at all three levels.
    if confidence == 0.95:
      # t_{0.975,3} = 3.18245, sd = sqrt(5e-4 / 3): half-width 0.020543, p = 0.1027.
      self.assertAlmostEqual(half, 0.020543, places=5)
      self.assertAlmostEqual(row['p_t'], 0.1027, places=4)

  def test_means_stds_gap_and_first_appearance_order(self):
    recs = _records({'b': [0.5, 0.6, 0.7], 'a': [0.9]})
    rows = report.summarize(recs, 'a')
    self.assertEqual([r['variant'] for r in rows], ['b', 'a'])
    b, a = rows
    self.assertAlmostEqual(b['test_acc_mean'], 0.6)
    self.assertAlmostEqual(b['test_acc_std'], 0.1)  # Sample std (ddof=1).
    self.assertAlmostEqual(b['train_acc_mean'], 0.63)
    self.assertAlmostEqual(b['gap_mean'], 0.03)
    self.assertAlmostEqual(b['gap_std'], 0.0)
    self.assertAlmostEqual(b['best_epoch_mean'], 11.0)
    self.assertAlmostEqual(b['stop_epoch_mean'], 21.0)
    self.assertEqual(a['n'], 1)
    self.assertTrue(math.isnan(a['test_acc_std']))
    # Baseline row: no test against itself.
    self.assertEqual(a['diff_mean'], 0.0)
    for key in ('p_value', 'p_t', 'p_adjusted', 'adj_ci_low', 'adj_ci_high'):
      self.assertTrue(math.isnan(a[key]), key)
    self.assertFalse(a['significant'])
    # b shares only seed 0 with the baseline: a difference but no interval.
    self.assertEqual(b['n_paired'], 1)
    self.assertAlmostEqual(b['diff_mean'], -0.4)
    self.assertTrue(math.isnan(b['diff_ci_low']) and math.isnan(b['p_value']))
    self.assertTrue(math.isnan(b['p_adjusted']) and math.isnan(b['adj_ci_low']))
    self.assertFalse(b['significant'])

  def test_variant_identical_to_baseline_has_zero_diff_and_is_not_significant(self):
    base = [0.91, 0.95, 0.93, 0.90, 0.94]
    row = _row(report.summarize(_records({'baseline': base, 'same': base}), 'baseline'),
               'same')
    self.assertEqual((row['diff_mean'], row['diff_ci_low'], row['diff_ci_high']),
                     (0.0, 0.0, 0.0))
    self.assertEqual(row['p_value'], 1.0)
    self.assertEqual(row['p_adjusted'], 1.0)
    self.assertTrue(math.isnan(row['p_t']))  # t = 0 / 0.
    self.assertFalse(row['significant'])

  def test_consistent_two_point_gain_is_significant_thanks_to_pairing(self):
    # 10 seeds: with the sign-flip p, 5 seeds can never go below 2/2^5 = 0.0625 (the
    # next test), so this test, which used 5 seeds and the t-test p, now uses 10.
    rng = np.random.default_rng(0)
    base = np.array([0.90, 0.94, 0.92, 0.96, 0.89, 0.91, 0.95, 0.93, 0.88, 0.92])
    better = base + 0.02 + 0.001 * rng.standard_normal(10)  # +2 pp, 0.1 pp jitter.
    rows = report.summarize(_records({'baseline': base, 'better': better}), 'baseline')
    row = _row(rows, 'better')
    self.assertTrue(row['significant'])
    self.assertGreater(row['diff_ci_low'], 0.015)
    self.assertLess(row['diff_ci_high'], 0.025)
    self.assertLess(row['p_t'], 1e-4)
    # Every seed gains: only the observed signs and their full flip reach the sum.
    self.assertEqual(row['p_value'], 2 / 2 ** 10)
    # Unpaired, the same numbers would not separate: the seed spread swamps 2 pp.
    self.assertGreater(stats.ttest_ind(better, base).pvalue, 0.05)

  def test_identical_gain_on_five_seeds_is_not_p_zero(self):
    # Before: zero spread gave a point CI and p = 0, so '*'. Five pairs cannot say more
    # than 2/2^5 = 0.0625, whatever the effect.
    base = [0.90, 0.94, 0.92, 0.96, 0.89]
    rows = report.summarize(_records({'baseline': base, 'v': np.add(base, 0.02)}),
                            'baseline')
    row = _row(rows, 'v')
    self.assertAlmostEqual(row['diff_ci_low'], 0.02, places=12)   # Point interval.
    self.assertAlmostEqual(row['diff_ci_high'], 0.02, places=12)
    self.assertEqual(row['p_value'], 0.0625)
    self.assertTrue(math.isnan(row['p_t']))
    self.assertFalse(row['significant'])

  def test_holm_and_bonferroni_over_the_table_rows(self):
    # 8 seeds, 8 compared variants: 'gain' is better on every seed (p = 2/2^8) and its
    # 95% CI excludes 0, but Holm over 8 rows gives 8 * 2/2^8 = 0.0625: no '*'. 'lone'
    # has one pair: no p, so it is not one of the 8.
    rng = np.random.default_rng(1)
    base = 0.90 + 0.02 * rng.standard_normal(8)
    accs = {'baseline': base, 'gain': base + 0.02 + 0.005 * rng.standard_normal(8)}
    for k in range(7):
      accs[f'noise{k}'] = base + 0.01 * rng.standard_normal(8)
    recs = _records(accs) + [_record('lone', 0, 0.95)]
    rows = [r for r in report.summarize(recs, 'baseline') if r['variant'] != 'baseline']
    gain = _row(rows, 'gain')
    self.assertGreater(gain['diff_ci_low'], 0.0)
    self.assertEqual(gain['p_value'], 2 / 2 ** 8)
    self.assertAlmostEqual(gain['p_adjusted'], 0.0625, places=12)
    self.assertFalse(gain['significant'])
    # Holm by its definition, written out independently of regjax.stats.holm.
    tested = [r for r in rows if r['variant'] != 'lone']
    p = np.array([r['p_value'] for r in tested])
    order = np.argsort(p)
    m = len(p)
    want = np.empty(m)
    for i in range(m):
      want[order[i]] = min(1.0, max((m - j) * p[order[j]] for j in range(i + 1)))
    np.testing.assert_allclose([r['p_adjusted'] for r in tested], want, rtol=1e-12)
    # Each adjusted interval: t at 1 - 0.05 / (2 * 8), from scipy.
    for r in tested:
      d = np.array(accs[r['variant']]) - base
      half = stats.t.ppf(1 - 0.05 / 16, 7) * np.std(d, ddof=1) / math.sqrt(8)
      np.testing.assert_allclose((r['adj_ci_low'], r['adj_ci_high']),
                                 (d.mean() - half, d.mean() + half), rtol=1e-9)
      self.assertEqual(r['significant'], r['p_adjusted'] < 0.05)
      np.testing.assert_allclose(r['p_value'], paired_stats.sign_flip_test(d))
    lone = _row(rows, 'lone')
    self.assertTrue(math.isnan(lone['p_adjusted']) and math.isnan(lone['adj_ci_low']))

  def test_diverged_runs_are_excluded_from_means_and_counted(self):
    recs = _records({'baseline': [0.90, 0.92, 0.94, 0.96]})
    recs += [
        _record('wild', 0, 0.91), _record('wild', 1, 0.93),
        _record('wild', 2, math.nan, diverged=True, train_accuracy=math.nan),
        _record('wild', 3, 0.10, diverged=True),  # Flagged: excluded though finite.
    ]
    row = _row(report.summarize(recs, 'baseline'), 'wild')
    self.assertEqual((row['n'], row['diverged'], row['n_paired']), (2, 2, 2))
    self.assertAlmostEqual(row['test_acc_mean'], 0.92)
    self.assertAlmostEqual(row['diff_mean'], 0.01)
    self.assertAlmostEqual(row['best_epoch_mean'], 10.5)
    chex.assert_tree_all_finite([row['train_acc_mean'], row['gap_mean']])

  def test_unpaired_seeds_are_dropped_from_the_difference(self):
    recs = [_record('baseline', s, 0.90 + 0.01 * s) for s in range(4)]  # Seeds 0-3.
    recs += [_record('v', s, 0.95 + 0.01 * s) for s in (2, 3, 4, 5)]   # Seeds 2-5.
    row = _row(report.summarize(recs, 'baseline'), 'v')
    self.assertEqual((row['n'], row['n_paired']), (4, 2))
    self.assertAlmostEqual(row['test_acc_mean'], 0.985)  # Means use all its seeds.
    self.assertAlmostEqual(row['diff_mean'], 0.05)       # Seeds 2 and 3 only.
    self.assertAlmostEqual(row['diff_ci_low'], 0.05)     # Constant diff: point CI.
    # It used to be 'significant' (the point CI excludes 0); two pairs give p = 2/2^2.
    self.assertEqual(row['p_value'], 0.5)
    self.assertFalse(row['significant'])

  @parameterized.named_parameters(
      ('missing_baseline', dict(baseline='nope'), 'baseline'),
      ('bad_confidence', dict(baseline='baseline', confidence=1.0), 'confidence'),
  )
  def test_bad_arguments_raise_config_error_naming_the_field(self, kwargs, field):
    with self.assertRaises(ConfigError) as cm:
      report.summarize(_records({'baseline': [0.9, 0.8]}), **kwargs)
    self.assertEqual(cm.exception.field, field)

  def test_duplicate_variant_seed_raises(self):
    with self.assertRaises(ConfigError) as cm:
      report.summarize([_record('baseline', 0, 0.9), _record('baseline', 0, 0.8)],
                       'baseline')
    self.assertEqual(cm.exception.field, 'records')


def _hand_rows():
  """Summary rows with round numbers, so the formatted strings are known exactly."""
  common = dict(baseline='baseline', confidence=0.95, n=5, n_paired=5, diverged=0,
                train_acc_mean=0.9950, gap_std=0.001, best_epoch_mean=12.0,
                stop_epoch_mean=22.4, zero_fraction_mean=0.125, weight_l2_mean=31.4159,
                seconds_per_epoch_mean=0.25)
  nan = math.nan
  return [
      dict(common, variant='baseline', test_acc_mean=0.9741, test_acc_std=0.0012,
           diff_mean=0.0, diff_ci_low=nan, diff_ci_high=nan, adj_ci_low=nan,
           adj_ci_high=nan, p_value=nan, p_t=nan, p_adjusted=nan,
           significant=False, gap_mean=0.0209),
      dict(common, variant='l2_1e-4', test_acc_mean=0.9776, test_acc_std=0.0010,
           diff_mean=0.0035, diff_ci_low=-0.0010, diff_ci_high=0.0080, adj_ci_low=-0.0020,
           adj_ci_high=0.0090, p_value=0.11, p_t=0.09, p_adjusted=0.11,
           significant=False, gap_mean=0.0174),
      dict(common, variant='decay_1e-2', test_acc_mean=0.9941, test_acc_std=0.0005,
           diff_mean=0.0200, diff_ci_low=0.0150, diff_ci_high=0.0250, adj_ci_low=0.0120,
           adj_ci_high=0.0280, p_value=0.0003, p_t=0.0001, p_adjusted=0.0006,
           significant=True, gap_mean=0.0009, diverged=1, n=4, n_paired=4),
  ]


class FormatTableTest(absltest.TestCase):

  def test_numbers_markers_and_verdicts(self):
    text = report.format_table(_hand_rows(), 'baseline')
    for variant in ('baseline', 'l2_1e-4', 'decay_1e-2'):
      self.assertIn(variant, text)
    self.assertIn('97.41 ± 0.12', text)
    # '*' used to follow the CI; now it follows the Holm-adjusted p (its own column).
    self.assertRegex(text, r'\+0\.35 \[-0\.10, \+0\.80\]  +0\.11  0\.11 +99\.50')
    self.assertRegex(text, r'\+2\.00 \[\+1\.50, \+2\.50\]  +0\.0003  0\.0006 \* +99\.50')
    self.assertEqual(text.count('*'), 2)  # The marked row and the legend's '* = ...'.
    self.assertIn('Holm over the 2 compared rows', text)
    self.assertIn('99.50', text)       # Train accuracy, percent.
    self.assertIn('+2.09', text)       # Gap, pp.
    self.assertIn('12.0/22.4', text)   # Best/stop epoch.
    self.assertIn('12.50', text)       # Zeros, percent.
    self.assertIn('31.42', text)       # Weight norm.
    self.assertIn('4 (1)', text)       # Seeds used (diverged).
    self.assertIn('l2_1e-4: within noise (+0.35 pp, 95% CI [-0.10, +0.80]; p=0.11, '
                  'Holm p=0.11; 5 pairs).', text)
    self.assertIn('decay_1e-2: better than baseline by 2.00 pp (95% CI [+1.50, +2.50]; '
                  'p=0.0003, Holm p=0.0006; 4 pairs).', text)
    # 120 before the p and p adj columns; format_table now promises 130.
    self.assertLessEqual(max(len(line) for line in text.splitlines()), 130)

  def test_fits_130_columns_with_20_character_names_and_wide_numbers(self):
    rows = _hand_rows()
    rows[2].update(variant='v' * 20, diff_mean=-0.1234, diff_ci_low=-0.1468,
                   diff_ci_high=-0.1000, p_value=0.0078125, p_adjusted=0.0078125)
    rows.append(dict(rows[2], variant='w' * 20, n_paired=8, p_adjusted=0.0625,
                     significant=False))  # At the 8-pair floor, not significant.
    text = report.format_table(rows, 'baseline')
    self.assertIn('-12.34 [-14.68, -10.00]  0.0078  0.0078 *', text)
    self.assertIn('p=0.0078 (floor for 8 pairs), Holm p=0.062; 8 pairs).', text)
    self.assertLessEqual(max(len(line) for line in text.splitlines()), 130)

  def test_not_significant_at_the_tests_floor_says_so(self):
    # Five identical gains: point CI excluding 0, p = 2/2^5; the verdict follows p.
    base, _, gain = _hand_rows()
    gain.update(n_paired=5, diff_ci_low=0.02, diff_ci_high=0.02, p_value=0.0625,
                p_adjusted=0.0625, significant=False)
    text = report.format_table([base, gain], 'baseline')
    self.assertIn('decay_1e-2: within noise (+2.00 pp, 95% CI [+2.00, +2.00]; p=0.062 '
                  '(floor for 5 pairs), Holm p=0.062; 5 pairs).', text)
    self.assertNotIn(' *', text)

  def test_rows_without_the_new_keys_still_format(self):
    # results.json written before p_adjusted existed: the adjusted p shows as n/a.
    rows = [{k: v for k, v in r.items() if k not in ('p_adjusted', 'p_t')}
            for r in _hand_rows()]
    text = report.format_table(rows, 'baseline')
    self.assertIn('Holm p=n/a', text)

  def test_worse_and_too_few_seeds_verdicts(self):
    base, worse, lone = _hand_rows()
    worse.update(diff_mean=-0.012, diff_ci_low=-0.02, diff_ci_high=-0.004,
                 significant=True)
    lone.update(n_paired=1, diff_ci_low=math.nan, diff_ci_high=math.nan,
                p_value=math.nan, p_adjusted=math.nan, significant=False)
    text = report.format_table([base, worse, lone], 'baseline')
    self.assertIn('l2_1e-4: worse than baseline by 1.20 pp', text)
    self.assertIn('decay_1e-2: cannot tell, only 1 seed(s)', text)


class ResultsFilesTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = _tempdir(self)
    recs = _records({'baseline': [0.90, 0.92, 0.91], 'l2': [0.93, 0.94, 0.92]})
    recs.append(_record('l2', 3, math.nan, diverged=True, test_loss=math.inf))
    self.records = recs
    self.rows = report.summarize(recs, 'baseline')

  def test_json_and_csv_parse_back_with_the_same_values(self):
    paths = report.write_results(self.dir, self.rows, self.records)
    self.assertEqual(paths, {'json': os.path.join(self.dir, 'results.json'),
                             'csv': os.path.join(self.dir, 'results.csv')})
    with open(paths['json']) as f:
      data = json.load(f)
    self.assertEqual(data['baseline'], 'baseline')
    self.assertLen(data['records'], 7)
    self.assertIsNone(data['records'][-1]['test_accuracy'])  # NaN -> null.
    self.assertIsNone(data['records'][-1]['test_loss'])      # inf -> null.
    self.assertIsNone(data['summary'][0]['p_value'])
    for got, want in zip(data['summary'], self.rows):
      for key, value in want.items():
        if isinstance(value, float) and math.isnan(value):
          self.assertIsNone(got[key], key)
        else:
          self.assertEqual(got[key], value, key)
    with open(paths['csv'], newline='') as f:
      lines = list(csv.DictReader(f))
    self.assertLen(lines, 2)
    l2 = lines[1]
    self.assertEqual(l2['variant'], 'l2')
    self.assertEqual(int(l2['diverged']), 1)
    self.assertEqual(float(l2['diff_mean']), self.rows[1]['diff_mean'])  # Exact repr.
    self.assertEqual(float(l2['diff_ci_low']), self.rows[1]['diff_ci_low'])
    self.assertEqual(lines[0]['p_value'], '')  # NaN -> empty cell.
    for key in ('p_t', 'p_adjusted', 'adj_ci_low', 'adj_ci_high'):
      self.assertEqual(float(l2[key]), self.rows[1][key], key)
    self.assertEqual(float(l2['p_value']), 0.25)  # 3 pairs, all gains: 2/2^3.
    self.assertTrue(_no_temp_files(self.dir))

  def test_metrics_writer_appends_one_valid_json_object_per_line(self):
    path = os.path.join(self.dir, 'metrics.jsonl')
    rows = [{'variant': 'baseline', 'seed': 0, 'epoch': e, 'val_loss': 1.0 / (e + 1),
             'train_loss': math.nan if e == 2 else 0.5, 'seconds': np.float32(0.25)}
            for e in range(3)]
    with report.MetricsWriter(path) as w:
      w.write(rows[0])
      with open(path) as f:  # Flushed per line: visible before close.
        self.assertLen(f.readlines(), 1)
      w.write_all(rows[1:])
    with self.assertRaises(ValueError):
      w.write(rows[0])
    with report.MetricsWriter(path) as w:  # Reopening appends.
      w.write(rows[0])
    with open(path) as f:
      parsed = [json.loads(line) for line in f]
    self.assertLen(parsed, 4)
    self.assertIsNone(parsed[2]['train_loss'])
    self.assertEqual(parsed[1]['val_loss'], 0.5)
    self.assertEqual(parsed[0]['seconds'], 0.25)
    self.assertEqual(report.read_metrics(path), parsed)


def _history():
  """Two variants, three seeds each, stopping after 5, 8 and 12 epochs."""
  rows = []
  for variant, offset in (('baseline', 0.0), ('dropout', 0.1)):
    for seed, length in enumerate((5, 8, 12)):
      for epoch in range(1, length + 1):
        rows.append({'variant': variant, 'seed': seed, 'epoch': epoch,
                     'val_loss': 1.0 / epoch + offset + 0.01 * seed,
                     'val_accuracy': 1.0 - 1.0 / (epoch + 1) - offset,
                     'train_loss': 0.9 / epoch, 'train_accuracy': 1.0 - 0.5 / epoch})
  return rows


class PlotCurvesTest(absltest.TestCase):

  def test_mean_curve_averages_only_the_seeds_still_running(self):
    history = _history()
    history[0]['val_loss'] = math.nan  # Seed 0, epoch 1: a non-finite value is skipped.
    epochs, mean, low, high = report.mean_curve(history, 'baseline', 'val_loss')
    chex.assert_shape([epochs, mean, low, high], (12,))
    np.testing.assert_allclose(epochs, np.arange(1, 13))
    np.testing.assert_allclose(mean[0], 1.0 + 0.015)          # Seeds 1, 2.
    np.testing.assert_allclose(mean[4], 0.2 + 0.01)           # Seeds 0, 1, 2.
    np.testing.assert_allclose(mean[6], 1 / 7 + 0.015)        # Seeds 1, 2.
    np.testing.assert_allclose(mean[11], 1 / 12 + 0.02)       # Seed 2 alone.
    np.testing.assert_allclose((low[4], high[4]), (0.2, 0.22))

  def test_writes_png_for_unequal_lengths_atomically(self):
    folder = _tempdir(self)
    path = os.path.join(folder, 'curves.png')
    best = {('baseline', 0): 5, ('baseline', 2): 9, ('dropout', 1): 8,
            ('dropout', 7): 3}  # Unknown seed: ignored.
    self.assertEqual(report.plot_curves(_history(), path, best_epochs=best), path)
    with open(path, 'rb') as f:
      data = f.read()
    self.assertEqual(data[:8], PNG_MAGIC)
    self.assertGreater(len(data), 10_000)
    self.assertEqual(os.listdir(folder), ['curves.png'])

  def test_default_metrics_skip_those_the_history_lacks(self):
    # A run without a validation split has no val_* metrics; the default plots the rest.
    history = [{k: v for k, v in row.items() if not k.startswith('val_')}
               for row in _history()]
    path = os.path.join(_tempdir(self), 'curves.png')
    report.plot_curves(history, path)
    with open(path, 'rb') as f:
      self.assertEqual(f.read(8), PNG_MAGIC)

  def test_unknown_metric_raises_config_error(self):
    with self.assertRaises(ConfigError) as cm:
      report.plot_curves(_history(), os.path.join(_tempdir(self), 'x.png'),
                         metrics=('val_los',))
    self.assertEqual(cm.exception.field, 'metrics')

  def test_running_counts_drop_as_seeds_stop(self):
    epochs, counts, total = report.running_counts(_history(), 'dropout')
    np.testing.assert_array_equal(epochs, np.arange(1, 13))
    np.testing.assert_array_equal(counts, [3] * 5 + [2] * 3 + [1] * 4)
    self.assertEqual(total, 3)

  def test_mean_is_solid_while_half_the_runs_go_then_dashed(self):
    # Seeds stop after 5, 8 and 12 epochs: 2 of 3 (>= half) run through epoch 8, then 1.
    fig = report._curves_figure(_history(), ['val_loss', 'val_accuracy'], None,
                                'configs/l2.py on digits, 30% training-label noise')
    ax = fig.axes[0]
    lines_by_gid = {line.get_gid(): line for line in ax.get_lines()}
    epochs, mean, _, _ = report.mean_curve(_history(), 'baseline', 'val_loss')
    solid, tail = lines_by_gid['solid:baseline'], lines_by_gid['tail:baseline']
    np.testing.assert_array_equal(solid.get_xdata(), np.arange(1, 9))
    np.testing.assert_array_equal(tail.get_xdata(), np.arange(8, 13))  # Joined at 8.
    np.testing.assert_allclose(tail.get_ydata(), mean[7:])
    self.assertEqual(tail.get_linestyle(), '--')
    self.assertEqual(fig._suptitle.get_text(),
                     'configs/l2.py on digits, 30% training-label noise')
    fig.canvas.draw()
    for axis in fig.axes:
      ticks = [t for t in axis.get_xticks() if axis.get_xlim()[0] <= t <= axis.get_xlim()[1]]
      np.testing.assert_array_equal(ticks, np.round(ticks))  # Whole epochs only.
    # The bottom panel's step line per variant counts 3, 2, 1 (offset a hair apart).
    count_ax = fig.axes[-1]
    (steps,) = [line for line in count_ax.get_lines() if line.get_gid() == 'count:dropout']
    np.testing.assert_array_equal(np.round(steps.get_ydata()), [3] * 5 + [2] * 3 + [1] * 4)

  def test_no_dashed_tail_when_all_runs_last(self):
    history = [row for row in _history() if row['epoch'] <= 5]  # All 3 seeds reach 5.
    fig = report._curves_figure(history, ['val_loss'], None, None)
    gids = {line.get_gid() for line in fig.axes[0].get_lines()}
    self.assertIn('solid:baseline', gids)
    self.assertNotIn('tail:baseline', gids)


def _effect_rows():
  """summarize() rows: 8 seeds, a clear gain, a null, a loss, and a one-pair variant."""
  rng = np.random.default_rng(0)
  base = 0.90 + 0.02 * rng.standard_normal(8)
  accs = {'baseline': base, 'gain': base + 0.03 + 0.004 * rng.standard_normal(8),
          'null': base + 0.01 * rng.standard_normal(8),
          'loss': base - 0.01 + 0.01 * rng.standard_normal(8)}
  return report.summarize(_records(accs) + [_record('lone', 0, 0.95)], 'baseline')


class PlotEffectsTest(absltest.TestCase):

  def test_rows_intervals_and_adjusted_p_in_table_order(self):
    rows = _effect_rows()
    fig = report._effects_figure(rows, 'my title')
    ax, right = fig.axes
    compared = rows[1:]
    names = [t.get_text() for t in ax.get_yticklabels()]
    ys = ax.get_yticks()
    self.assertEqual([n for _, n in sorted(zip(-ys, names))],  # Top to bottom.
                     ['gain', 'null', 'loss', 'lone'])
    segments = {c.get_gid(): c.get_segments()[0] for c in ax.collections}
    for y, r in zip(sorted(ys, reverse=True), compared):
      if r['variant'] == 'lone':  # One pair: a mean, no interval.
        self.assertNotIn('ci:lone', segments)
        continue
      ci, adj = segments[f"ci:{r['variant']}"], segments[f"adj_ci:{r['variant']}"]
      np.testing.assert_allclose(ci[:, 0], [r['diff_ci_low'] * 100, r['diff_ci_high'] * 100])
      np.testing.assert_allclose(adj[:, 0], [r['adj_ci_low'] * 100, r['adj_ci_high'] * 100])
      np.testing.assert_allclose(ci[:, 1], [y, y])
      self.assertLess(adj[0, 0], ci[0, 0])  # The adjusted interval is wider.
    marks = {line.get_gid(): line for line in ax.get_lines()}
    gain = _row(rows, 'gain')
    self.assertAlmostEqual(marks['mean:gain'].get_xdata()[0], gain['diff_mean'] * 100)
    self.assertTrue(gain['significant'])  # 8 gains of ~3 pp: 3 * 2/2^8 = 0.023.
    self.assertAlmostEqual(gain['p_adjusted'], 3 * 2 / 2 ** 8)
    self.assertEqual(marks['mean:gain'].get_markerfacecolor(), 'black')
    self.assertEqual(marks['mean:null'].get_markerfacecolor(), 'white')
    right_labels = dict(zip(right.get_yticks(), [t.get_text() for t in right.get_yticklabels()]))
    self.assertEqual(right_labels[max(ys)], 'p adj 0.023 *')
    self.assertEqual(right_labels[min(ys)], 'p adj n/a')
    self.assertIn('vs baseline', ax.get_xlabel())
    self.assertIn('1-8 paired replicates', ax.get_xlabel())
    self.assertEqual(fig._suptitle.get_text(), 'my title')

  def test_writes_png_atomically(self):
    folder = _tempdir(self)
    path = os.path.join(folder, 'effects.png')
    self.assertEqual(report.plot_effects(_effect_rows(), path), path)
    with open(path, 'rb') as f:
      self.assertEqual(f.read(8), PNG_MAGIC)
    self.assertEqual(os.listdir(folder), ['effects.png'])

  def test_only_a_baseline_raises(self):
    rows = report.summarize(_records({'baseline': [0.9, 0.8]}), 'baseline')
    with self.assertRaises(ConfigError) as cm:
      report.plot_effects(rows, os.path.join(_tempdir(self), 'e.png'))
    self.assertEqual(cm.exception.field, 'rows')


def _selection_entry():
  """L2 over 0, 1e-4, 1e-3 with 3 replicates; replicate 2 diverged at 1e-3."""
  val = [[0.80, 0.86, 0.83], [0.82, 0.88, 0.90], [0.78, 0.84, None]]
  test = [[0.79, 0.85, 0.82], [0.81, 0.86, 0.87], [0.77, 0.85, None]]
  return {'variant': 'l2', 'fields': ['penalty.l2'],
          'grid': [{'penalty.l2': v} for v in (0.0, 1e-4, 1e-3)],
          'replicates': [{'points': [{'val_accuracy': v, 'test_accuracy': t, 'val_metric': v}
                                     for v, t in zip(vr, tr)], 'chosen': int(c)}
                         for vr, tr, c in zip(val, test, (1, 2, 1))]}


class PlotSelectionTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ('log_with_zero', ['penalty.l2'], [0.0, 1e-4, 1e-3, 1e-2],
       [-5.5, -4.0, -3.0, -2.0], ['0', '0.0001', '0.001', '0.01'],
       'penalty.l2 (log scale)'),
      ('log_one_value_and_zero', ['penalty.l1'], [1e-3, 0],
       [-3.0, -4.5], ['0.001', '0'], 'penalty.l1 (log scale)'),
      ('linear_with_negative', ['x'], [-1.0, 0.0, 2.0], [-1.0, 0.0, 2.0],
       ['-1', '0', '2'], 'x'),
      ('not_numbers', ['optimizer.name'], ['adam', 'sgd'], [0.0, 1.0], ['adam', 'sgd'],
       'optimizer.name'),
  )
  def test_grid_axis_single_field(self, fields, values, positions, labels, xlabel):
    got = report.grid_axis(fields, [{fields[0]: v} for v in values])
    np.testing.assert_allclose(got[0], positions, atol=1e-12)
    self.assertEqual(got[1:], (labels, xlabel))

  def test_grid_axis_several_fields_and_untuned(self):
    grid = [{'model.dropout': d, 'optimizer.max_norm': m} for d in (0.2, 0.5) for m in (2, 4)]
    pos, labels, xlabel = report.grid_axis(['model.dropout', 'optimizer.max_norm'], grid)
    np.testing.assert_array_equal(pos, [0, 1, 2, 3])
    self.assertEqual(labels, ['0.2/2', '0.2/4', '0.5/2', '0.5/4'])
    self.assertEqual(xlabel, 'model.dropout / optimizer.max_norm')
    pos, labels, _ = report.grid_axis([], [{}])
    self.assertEqual((pos.tolist(), labels), ([0.0], ['untuned']))

  def test_means_bands_and_chosen_points(self):
    fig = report._selection_figure([_selection_entry()], None)
    ax = fig.axes[0]
    lines_by_gid = {line.get_gid(): line for line in ax.get_lines()}
    val = lines_by_gid['val_accuracy:l2']
    # x: 0 at 1.5 grid steps (decades) left of 1e-4, then 1e-4, 1e-3; the diverged point
    # is left out of its mean.
    np.testing.assert_allclose(val.get_xdata(), [-5.5, -4.0, -3.0])
    np.testing.assert_allclose(val.get_ydata(), [80.0, 86.0, 86.5])
    test = lines_by_gid['test_accuracy:l2']
    np.testing.assert_allclose(test.get_ydata(), [79.0, 85.333333333, 84.5])
    # The band: min and max over the replicates that have a value, in grid order.
    bands = [c for c in ax.collections if not c.get_gid()]
    self.assertLen(bands, 2)
    ys = bands[0].get_paths()[0].vertices[:, 1]
    for want in (78.0, 84.0, 83.0, 82.0, 88.0, 90.0):
      self.assertTrue(np.any(np.isclose(ys, want)), want)
    self.assertFalse(np.any(np.isclose(ys, 80.0)))  # A mean, not an edge.
    chosen = {c.get_gid(): c.get_offsets() for c in ax.collections if c.get_gid()}
    np.testing.assert_allclose(chosen['chosen_val_accuracy:l2'],
                               [[-4.0, 86.0], [-3.0, 90.0], [-4.0, 84.0]])
    np.testing.assert_allclose(chosen['chosen_test_accuracy:l2'],
                               [[-4.0, 85.0], [-3.0, 87.0], [-4.0, 85.0]])
    self.assertEqual([t.get_text() for t in ax.get_xticklabels()],
                     ['0', '0.0001\n2/3', '0.001\n1/3'])

  def test_writes_png_with_untuned_and_two_field_variants(self):
    entry = _selection_entry()
    untuned = {'variant': 'baseline', 'fields': [], 'grid': [{}],
               'replicates': [{'points': [{'val_accuracy': 0.8, 'test_accuracy': 0.79}],
                               'chosen': 0}] * 3}
    grid = [{'a': 0.2, 'b': 2}, {'a': 0.5, 'b': 2}, {'a': 0.5, 'b': 4}]
    two = dict(entry, variant='two', fields=['a', 'b'], grid=grid)
    folder = _tempdir(self)
    path = os.path.join(folder, 'selection.png')
    self.assertEqual(report.plot_selection([entry, untuned, two], path, title='t'), path)
    with open(path, 'rb') as f:
      self.assertEqual(f.read(8), PNG_MAGIC)
    self.assertEqual(os.listdir(folder), ['selection.png'])

  @parameterized.named_parameters(
      ('chosen_out_of_range', lambda e: e['replicates'][0].update(chosen=3)),
      ('points_length', lambda e: e['replicates'][1]['points'].pop()),
      ('grid_lacks_field', lambda e: e['grid'][0].pop('penalty.l2')),
      ('no_replicates', lambda e: e.update(replicates=[])),
  )
  def test_bad_selection_raises_config_error(self, corrupt):
    entry = _selection_entry()
    corrupt(entry)
    with self.assertRaises(ConfigError):
      report.plot_selection([entry], os.path.join(_tempdir(self), 's.png'))


class AtomicWriteTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = _tempdir(self)
    self.path = os.path.join(self.dir, 'config.json')

  def test_json_writes_null_for_nan_and_leaves_no_temp_files(self):
    report.atomic_write_json(self.path, {'a': math.nan, 'b': (1, np.float64(2.5)),
                                         'c': np.arange(3)})
    with open(self.path) as f:
      self.assertEqual(json.load(f), {'a': None, 'b': [1, 2.5], 'c': [0, 1, 2]})
    self.assertEqual(os.listdir(self.dir), ['config.json'])
    self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o644)

  def test_unencodable_object_leaves_the_old_file_intact(self):
    report.atomic_write_json(self.path, {'version': 1})
    with self.assertRaises(TypeError):
      report.atomic_write_json(self.path, {'version': 2, 'bad': object()})
    with open(self.path) as f:
      self.assertEqual(json.load(f), {'version': 1})
    self.assertEqual(os.listdir(self.dir), ['config.json'])

  def test_failure_midway_through_writing_leaves_the_old_file_intact(self):
    report.atomic_write_text(self.path, 'old\n')
    # A lone surrogate cannot be UTF-8 encoded: the write fails after the temp file exists.
    with self.assertRaises(UnicodeEncodeError):
      report.atomic_write_text(self.path, 'new' * 10_000 + '\ud800')
    with open(self.path) as f:
      self.assertEqual(f.read(), 'old\n')
    self.assertEqual(os.listdir(self.dir), ['config.json'])

  def test_creates_missing_parent_folder(self):
    path = os.path.join(self.dir, 'sub', 'deeper', 'notes.txt')
    report.atomic_write_text(path, 'hello')
    with open(path) as f:
      self.assertEqual(f.read(), 'hello')


if __name__ == '__main__':
  absltest.main()
