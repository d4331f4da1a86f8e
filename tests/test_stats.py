"""Tests for regjax.stats: sign-flip test, Holm, t-intervals, each against scipy or by hand."""

import math

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
from scipy import stats as scipy_stats

from regjax import stats
from regjax.errors import ConfigError


def _scipy_sign_flip(diffs):
  """scipy's exact paired permutation test of the mean (flips the sign of each pair)."""
  result = scipy_stats.permutation_test(
      (np.asarray(diffs, dtype=np.float64),), lambda x, axis: np.mean(x, axis=axis),
      permutation_type='samples', n_resamples=np.inf, alternative='two-sided')
  return result.pvalue


class SignFlipTest(parameterized.TestCase):

  @parameterized.parameters(2, 3, 5, 8, 11)  # scipy needs n >= 2.
  def test_matches_scipy_exact_permutation_test_on_continuous_data(self, n):
    diffs = np.random.default_rng(n).normal(0.01, 0.02, size=n)
    self.assertAlmostEqual(stats.sign_flip_test(diffs), _scipy_sign_flip(diffs), places=12)

  @parameterized.parameters(4, 6, 9)
  def test_matches_scipy_with_ties_from_quantized_accuracies(self, n):
    # Accuracy differences are multiples of 1/450 (the test-set size): many signed sums
    # tie with the observed one, and float rounding must not split those ties.
    diffs = np.random.default_rng(10 + n).integers(-3, 5, size=n) / 450
    self.assertAlmostEqual(stats.sign_flip_test(diffs), _scipy_sign_flip(diffs), places=12)

  def test_hand_worked_case(self):
    # Sums of ±1 ±2 ±0 ±3 (units of 0.01): |sum| >= 6 only for all-plus and all-minus,
    # twice each (the zero's sign does not matter): 4 of 16.
    self.assertEqual(stats.sign_flip_test([0.01, 0.02, 0.0, 0.03]), 0.25)
    # 0.1 + 0.2 - 0.3 is 5.6e-17 in floats, not 0: still a perfect tie with the null.
    self.assertEqual(stats.sign_flip_test([0.1, 0.2, -0.3]), 1.0)

  @parameterized.parameters(1, 2, 5, 8, 12)
  def test_identical_nonzero_differences_give_two_over_two_to_the_n_never_zero(self, n):
    p = stats.sign_flip_test(np.full(n, 0.02))
    self.assertEqual(p, 2.0 / 2 ** n)
    self.assertEqual(p, stats.min_attainable_p(n))
    self.assertEqual(stats.sign_flip_test(np.full(n, -0.02)), p)  # Two-sided.

  def test_all_zero_differences_give_one_and_empty_gives_nan(self):
    self.assertEqual(stats.sign_flip_test(np.zeros(6)), 1.0)
    self.assertTrue(math.isnan(stats.sign_flip_test([])))

  def test_monte_carlo_above_exact_max_agrees_with_enumeration_and_is_reproducible(self):
    diffs = np.random.default_rng(3).normal(0.004, 0.02, size=21)
    exact = stats.sign_flip_test(diffs, exact_max=21)
    mc = stats.sign_flip_test(diffs)  # 21 > EXACT_MAX: Monte Carlo.
    self.assertGreater(exact, 0.05)   # A p in the middle, where MC error is largest.
    se = math.sqrt(exact * (1 - exact) / stats.MC_DRAWS)
    self.assertLess(abs(mc - exact), 4 * se)
    self.assertEqual(stats.sign_flip_test(diffs), mc)  # Fixed seed.
    self.assertNotEqual(stats.sign_flip_test(diffs, seed=1), mc)

  def test_monte_carlo_p_is_never_zero(self):
    # 30 identical differences: no random sign vector out of 1e5 reaches the observed sum
    # (chance 2/2^30 each), so p = (1 + 0) / (1 + draws).
    self.assertEqual(stats.sign_flip_test(np.full(30, 0.01)), 1 / (1 + stats.MC_DRAWS))
    self.assertEqual(stats.min_attainable_p(30), 1 / (1 + stats.MC_DRAWS))

  def test_smallest_attainable_p_for_typical_replicate_counts(self):
    # The documented limits: 5 replicates can never reach 5%, even before Holm.
    self.assertEqual(stats.min_attainable_p(5), 0.0625)
    self.assertEqual(stats.min_attainable_p(8), 0.0078125)
    self.assertLess(5 * stats.min_attainable_p(8), 0.05)   # Holm over 5 rows: 8 suffice.
    self.assertGreater(5 * stats.min_attainable_p(7), 0.05)

  @parameterized.parameters([[math.nan, 0.1]], [[[0.1, 0.2]]])
  def test_bad_input_raises_config_error(self, diffs):
    with self.assertRaises(ConfigError) as cm:
      stats.sign_flip_test(diffs)
    self.assertEqual(cm.exception.field, 'diffs')


class HolmTest(absltest.TestCase):

  def test_hand_worked_example(self):
    # Sorted: 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 -> 0.02, 0.03, 0.06, 0.04;
    # running max -> 0.02, 0.03, 0.06, 0.06 (monotone), back in input order.
    np.testing.assert_allclose(stats.holm([0.01, 0.04, 0.03, 0.005]),
                               [0.03, 0.06, 0.06, 0.02], rtol=1e-12)

  def test_nan_passes_through_and_does_not_count_in_m(self):
    got = stats.holm([0.01, math.nan, 0.04, 0.03, 0.005])
    self.assertTrue(math.isnan(got[1]))
    np.testing.assert_allclose(got[[0, 2, 3, 4]], [0.03, 0.06, 0.06, 0.02], rtol=1e-12)
    self.assertTrue(np.all(np.isnan(stats.holm([math.nan, math.nan]))))
    self.assertEqual(stats.holm([]).shape, (0,))

  def test_capped_at_one_and_single_p_unchanged(self):
    np.testing.assert_array_equal(stats.holm([0.5, 0.6]), [1.0, 1.0])
    np.testing.assert_array_equal(stats.holm([0.026]), [0.026])

  def test_the_issue_headline_l2_table(self):
    # The l2.py table: 5 compared rows, smallest p 0.026 -> 5 * 0.026 = 0.13.
    got = stats.holm([0.83, 0.026, 0.98, 0.15, 0.40])
    self.assertAlmostEqual(got[1], 0.13, places=12)
    np.testing.assert_allclose(got, [1.0, 0.13, 1.0, 0.6, 1.0], rtol=1e-12)

  def test_out_of_range_p_raises(self):
    with self.assertRaises(ConfigError) as cm:
      stats.holm([0.2, 1.5])
    self.assertEqual(cm.exception.field, 'pvalues')


class TIntervalTest(parameterized.TestCase):

  def test_hand_computed_interval(self):
    mean, low, high = stats.t_interval([0.01, 0.02, 0.00, 0.03], 0.95)
    # t_{0.975,3} = 3.18245, s = sqrt(5e-4 / 3): half-width 0.020543.
    self.assertAlmostEqual(mean, 0.015)
    self.assertAlmostEqual(high - mean, 0.020543, places=6)
    self.assertAlmostEqual(mean - low, 0.020543, places=6)

  @parameterized.parameters(1, 3, 5)
  def test_bonferroni_uses_level_one_minus_alpha_over_m(self, m):
    diffs = np.array([0.012, -0.004, 0.031, 0.007, 0.02])
    mean, low, high = stats.bonferroni_t_interval(diffs, 0.95, m)
    half = (scipy_stats.t.ppf(1 - 0.05 / (2 * m), 4) * np.std(diffs, ddof=1)
            / math.sqrt(5))
    np.testing.assert_allclose((low, high), (mean - half, mean + half), rtol=1e-12)
    if m == 5:  # t_{0.995,4} = 4.6041: wider than the 95% interval's 2.7764.
      self.assertAlmostEqual(scipy_stats.t.ppf(0.995, 4), 4.6041, places=4)

  def test_zero_spread_gives_a_point_and_short_inputs_nan(self):
    self.assertEqual(stats.t_interval([0.02] * 4), (0.02, 0.02, 0.02))
    # 0.95 - 0.90 and 0.96 - 0.91 differ in the last bit: still zero spread.
    diffs = [0.95 - 0.90, 0.96 - 0.91, 0.97 - 0.92]
    self.assertTrue(stats.is_constant(diffs))
    _, low, high = stats.bonferroni_t_interval(diffs, 0.95, 4)
    self.assertEqual(low, high)
    mean, low, high = stats.t_interval([0.03])
    self.assertEqual(mean, 0.03)
    self.assertTrue(math.isnan(low) and math.isnan(high))
    self.assertTrue(all(math.isnan(x) for x in stats.t_interval([])))

  def test_t_test_p_matches_scipy_and_is_nan_without_spread(self):
    diffs = [0.01, 0.02, 0.00, 0.03]
    self.assertAlmostEqual(stats.t_test_p(diffs), 0.1027, places=4)
    self.assertAlmostEqual(stats.t_test_p(diffs),
                           scipy_stats.ttest_1samp(diffs, 0.0).pvalue, places=14)
    self.assertTrue(math.isnan(stats.t_test_p([0.02] * 5)))
    self.assertTrue(math.isnan(stats.t_test_p([0.02])))

  @parameterized.named_parameters(
      ('confidence', dict(confidence=1.0, m=2), 'confidence'),
      ('m_zero', dict(confidence=0.95, m=0), 'm'),
      ('m_float', dict(confidence=0.95, m=2.0), 'm'),
  )
  def test_bad_arguments_raise_config_error(self, kwargs, field):
    with self.assertRaises(ConfigError) as cm:
      stats.bonferroni_t_interval([0.1, 0.2], **kwargs)
    self.assertEqual(cm.exception.field, field)


if __name__ == '__main__':
  absltest.main()
