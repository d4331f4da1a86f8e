"""Paired comparison statistics: sign-flip permutation test, Holm, t-intervals.

Pure numpy/scipy. The input is always `diffs`, shape [n]: one paired difference per
replicate seed (variant minus baseline, e.g. test accuracy as a fraction), n >= 0.

Why a sign-flip permutation test for the p-value (not the paired t-test):
  * Under the null "the variant changes nothing", the variant and the baseline run of one
    seed are exchangeable, so each difference is as likely to be d as -d. The test
    enumerates all 2^n sign vectors and asks how often |mean| is at least the observed
    one. That p is exact for any distribution of the differences: no normality, which
    5-10 accuracy differences (multiples of 1/n_test, often skewed by one bad seed)
    cannot justify.
  * It cannot return 0. The observed signs and their full flip always reach the
    observed |mean|, so p >= 2 / 2^n. The t-test instead returns p = 0 when every
    seed gives the same non-zero difference (zero spread: t = d / 0), which claims a
    certainty that n seeds cannot give.
  * The price is honesty about small n: the smallest attainable p is 2 / 2^n. With 5
    replicates that is 0.0625, so no comparison can reach 5% however large the effect;
    6 replicates give 0.031, 8 give 0.0078, 10 give 0.0020. After Holm over m rows the
    smallest adjusted p is m * 2 / 2^n, so a table of 5 variants needs >= 8 replicates
    (10 variants: >= 9) before even an effect with the same sign on every seed can be
    marked at 5%, and realistic effects, whose signs vary, need more.

The intervals are t-intervals (mean +- t * s / sqrt(n)): the permutation test gives a p but
no interval in the unit of the effect, and the t-interval is what readers expect. The two
can disagree at small n (an interval that excludes 0 with p = 0.0625); the verdict follows
the p. An interval covers seed-to-seed noise only: the test set is fixed, so it says
nothing about how the difference would move on another draw of test data.
"""

from collections.abc import Sequence
import math

import numpy as np
from scipy import stats as scipy_stats

from regjax.errors import ConfigError

# Up to this many pairs the sign-flip test enumerates all 2^n sign vectors (2^20 sums:
# 8 MB, a few ms); beyond it, Monte Carlo.
EXACT_MAX = 20
# Monte Carlo draws beyond EXACT_MAX: the standard error of p near 0.05 is
# sqrt(0.05 * 0.95 / 1e5) = 0.0007, and the smallest p is 1 / (1 + 1e5).
MC_DRAWS = 100_000
MC_SEED = 0
# Sums of signed differences within TIE_RTOL * sum|d| of the observed one count as ties:
# summing in another order moves a sum by ~n * eps * sum|d| (~1e-15 relative), while
# distinct sums of accuracy differences (multiples of 1 / n_test) are far further apart.
TIE_RTOL = 1e-9
# Differences whose spread is below this fraction of their size count as identical (the
# rounding of `a - b` on accuracies, ~1e-16, must not turn a point into a t-interval).
SPREAD_RTOL = 1e-9
_MC_CHUNK = 10_000


def _as_diffs(diffs: Sequence[float] | np.ndarray) -> np.ndarray:
  d = np.asarray(diffs, dtype=np.float64)
  if d.ndim != 1:
    raise ConfigError('diffs', d.shape, 'a 1-D sequence of paired differences')
  if not np.all(np.isfinite(d)):
    raise ConfigError('diffs', d.tolist(), 'finite numbers (leave diverged runs out)')
  return d


def _check_confidence(confidence: float) -> None:
  if not 0.0 < confidence < 1.0:
    raise ConfigError('confidence', confidence, 'must lie strictly between 0 and 1')


def min_attainable_p(n: int, exact_max: int = EXACT_MAX, draws: int = MC_DRAWS) -> float:
  """Smallest p sign_flip_test can return for n pairs: 2 / 2^n (Monte Carlo: >= 1/(1+draws))."""
  if n < 1:
    return math.nan
  if n <= exact_max:
    return 2.0 ** (1 - n)
  return max(2.0 ** (1 - n), 1.0 / (1 + draws))


def sign_flip_test(diffs: Sequence[float] | np.ndarray, exact_max: int = EXACT_MAX,
                   draws: int = MC_DRAWS, seed: int = MC_SEED) -> float:
  """Two-sided paired sign-flip permutation test of mean(diffs) = 0.

  p = share of sign vectors s in {-1, +1}^n with |sum(s * diffs)| >= |sum(diffs)| (ties
  within TIE_RTOL * sum|diffs|). For n <= exact_max all 2^n vectors are enumerated, so p
  is exact and at least 2 / 2^n; above, `draws` random vectors from a fixed `seed` give
  p = (1 + #as-extreme) / (1 + draws), a valid (never 0, slightly conservative) estimate.
  All-zero differences give p = 1; identical non-zero ones give 2 / 2^n.

  Args:
    diffs: shape [n], finite paired differences (any unit).
    exact_max: largest n that is enumerated exactly.
    draws: Monte Carlo sign vectors for n > exact_max.
    seed: numpy seed of those draws (fixed, so reports are reproducible).

  Returns:
    The p-value in (0, 1]; NaN for n = 0.
  """
  d = _as_diffs(diffs)
  n = d.shape[0]
  if n == 0:
    return math.nan
  tol = TIE_RTOL * float(np.sum(np.abs(d)))
  if n <= exact_max:
    # All 2^n signed sums by doubling: step k appends d_k to every sum and subtracts it
    # from a copy. Index 0 is the all-plus (observed) sum and the last index its exact
    # negation, so both extremes always count and p >= 2 / 2^n.
    sums = np.zeros(1)
    for x in d:
      sums = np.concatenate([sums + x, sums - x])
    observed = abs(sums[0])
    return float(np.count_nonzero(np.abs(sums) >= observed - tol)) / sums.shape[0]
  observed = abs(float(np.sum(d)))
  rng = np.random.default_rng(seed)
  extreme = 0
  for start in range(0, draws, _MC_CHUNK):
    size = min(_MC_CHUNK, draws - start)
    signs = rng.integers(0, 2, size=(size, n), dtype=np.int8) * 2 - 1
    extreme += int(np.count_nonzero(np.abs(signs @ d) >= observed - tol))
  return (1 + extreme) / (1 + draws)


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
  """Holm-Bonferroni step-down adjusted p-values.

  Sorting the m finite p-values ascending, the i-th (1-based) becomes
  max over j <= i of min(1, (m - j + 1) * p_(j)): monotone in p and capped at 1.
  Rejecting where adjusted p < alpha controls the family-wise error rate at alpha.
  NaN entries (comparisons that could not be made) stay NaN and do not count in m.

  Args:
    pvalues: shape [k], each in [0, 1] or NaN.

  Returns:
    Adjusted p-values, shape [k], float64, in the input order.
  """
  p = np.asarray(pvalues, dtype=np.float64)
  if p.ndim != 1:
    raise ConfigError('pvalues', p.shape, 'a 1-D sequence of p-values')
  finite = ~np.isnan(p)
  if np.any((p[finite] < 0.0) | (p[finite] > 1.0)):
    raise ConfigError('pvalues', p.tolist(), 'each in [0, 1] or NaN')
  out = np.full_like(p, np.nan)
  idx = np.flatnonzero(finite)
  m = idx.shape[0]
  if m == 0:
    return out
  order = idx[np.argsort(p[idx], kind='stable')]
  scaled = (m - np.arange(m)) * p[order]
  out[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
  return out


def is_constant(diffs: Sequence[float] | np.ndarray) -> bool:
  """True if all differences are equal up to SPREAD_RTOL of their size (zero spread)."""
  d = _as_diffs(diffs)
  if d.shape[0] == 0:
    return True
  return float(np.ptp(d)) <= SPREAD_RTOL * float(np.max(np.abs(d)))


def t_interval(diffs: Sequence[float] | np.ndarray,
               confidence: float = 0.95) -> tuple[float, float, float]:
  """Mean and two-sided Student-t interval of paired differences.

  Args:
    diffs: shape [n], finite; the interval is in their unit.
    confidence: two-sided level in (0, 1).

  Returns:
    (mean, low, high). n = 0: all NaN; n = 1: (mean, NaN, NaN); zero spread (see
    is_constant): the point (mean, mean, mean), the limit of the interval as s -> 0.
  """
  _check_confidence(confidence)
  d = _as_diffs(diffs)
  n = d.shape[0]
  if n == 0:
    return math.nan, math.nan, math.nan
  mean = float(np.mean(d))
  if n < 2:
    return mean, math.nan, math.nan
  if is_constant(d):
    return mean, mean, mean
  sem = float(np.std(d, ddof=1)) / math.sqrt(n)
  low, high = scipy_stats.t.interval(confidence, n - 1, loc=mean, scale=sem)
  return mean, float(low), float(high)


def bonferroni_t_interval(diffs: Sequence[float] | np.ndarray, confidence: float,
                          m: int) -> tuple[float, float, float]:
  """t_interval at level 1 - (1 - confidence) / m: m such intervals hold together.

  With probability >= `confidence` all m intervals of a table cover their true
  differences at once (Bonferroni), which is what a forest plot of m rows implies.

  Args:
    diffs: shape [n], finite.
    confidence: the family-wise two-sided level in (0, 1).
    m: number of simultaneous intervals, >= 1.

  Returns:
    (mean, low, high) as t_interval.
  """
  _check_confidence(confidence)
  if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1:
    raise ConfigError('m', m, 'a positive integer number of intervals')
  return t_interval(diffs, 1.0 - (1.0 - confidence) / m)


def t_test_p(diffs: Sequence[float] | np.ndarray) -> float:
  """Two-sided paired (one-sample) t-test p of mean(diffs) = 0.

  Returns:
    The p-value; NaN for n < 2 or zero spread, where t = mean / 0 is undefined (scipy
    would say p = 0 for a non-zero mean, a certainty n seeds cannot give).
  """
  d = _as_diffs(diffs)
  if d.shape[0] < 2 or is_constant(d):
    return math.nan
  return float(scipy_stats.ttest_1samp(d, 0.0).pvalue)
