"""Student's t-tests between two sets of per-request scores (paper Table 1: sample-wise optimal
layer vs golden layer), with scipy.

- two-sample (``paired=False``): Student's test with pooled (equal) variances, scipy.stats.ttest_ind.
- paired (``paired=True``): the one-sample test of the differences a_i - b_i, scipy.stats.ttest_rel.
Two-sided; ``significant`` means p < alpha. Standard deviations are sample ones (ddof=1), the
spread Student's test itself uses.

When the tested spread is zero (both samples constant, or paired differences all equal) scipy
warns and returns NaN or +-inf; we answer without it. Equal means give statistic 0 and p = 1 (no
evidence of a difference); different means give statistic +-inf and p = 0 (the samples differ by a
constant with no noise at all).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

from goldenlayers.errors import GoldenLayersError


@dataclass(frozen=True)
class TTestResult:
    mean_a: float
    std_a: float
    mean_b: float
    std_b: float
    statistic: float
    p_value: float
    significant: bool  # p_value < alpha
    paired: bool
    n: tuple[int, int]  # sample sizes of a and b (equal when paired)
    alpha: float = 0.05
    no_spread: bool = False  # the tested values all equal: no test (p 1, or 0 if the means differ)


DECIMALS = 12  # values equal to this many decimals are equal (metric values are fractions)


def _sample(values: Sequence[float], name: str) -> np.ndarray:
    """The values as floats, rounded to ``DECIMALS``: a sum computed in another order (0.1 + 0.2
    against 0.3) is not a spread, nor a difference, to test."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size < 2:
        raise GoldenLayersError(f"sample {name} needs at least 2 values, got {array.size}")
    if not np.all(np.isfinite(array)):
        raise GoldenLayersError(f"sample {name} has a NaN or infinite value")
    return np.round(array, DECIMALS)


def _without_spread(a: np.ndarray, b: np.ndarray, paired: bool) -> tuple[float, float]:
    """(statistic, p) where scipy's is undefined because the tested spread is zero."""
    difference = float(np.mean(a - b) if paired else a.mean() - b.mean())
    if difference == 0.0:
        return 0.0, 1.0
    return math.copysign(math.inf, difference), 0.0


def t_test(a: Sequence[float], b: Sequence[float], paired: bool = False,
           alpha: float = 0.05) -> TTestResult:
    """Two-sided Student's t-test of mean(a) == mean(b); paired or two-sample (equal variances)."""
    if not 0.0 < alpha < 1.0:
        raise GoldenLayersError(f"alpha must lie in (0, 1), not {alpha}")
    x, y = _sample(a, "a"), _sample(b, "b")
    if paired and x.size != y.size:
        raise GoldenLayersError(f"a paired test needs samples of one size, got {x.size} "
                                f"and {y.size}")
    spread = np.ptp(x - y) if paired else max(np.ptp(x), np.ptp(y))
    if spread == 0.0:  # scipy would warn and return NaN or +-inf
        statistic, p_value = _without_spread(x, y, paired)
    else:
        result = stats.ttest_rel(x, y) if paired else stats.ttest_ind(x, y, equal_var=True)
        statistic, p_value = float(result.statistic), float(result.pvalue)
    return TTestResult(
        mean_a=float(x.mean()), std_a=float(x.std(ddof=1)),
        mean_b=float(y.mean()), std_b=float(y.std(ddof=1)),
        statistic=statistic, p_value=p_value, significant=p_value < alpha,
        paired=paired, n=(int(x.size), int(y.size)), alpha=alpha, no_spread=bool(spread == 0.0),
    )


# --- intervals and power ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    """A mean over ``n`` values with its bootstrap confidence interval [low, high]."""

    mean: float
    low: float
    high: float
    n: int
    confidence: float = 0.95

    def describe(self, digits: int = 3) -> str:
        return f"{self.mean:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"

    def to_dict(self) -> dict[str, float | int]:
        return {"mean": self.mean, "low": self.low, "high": self.high, "n": self.n,
                "confidence": self.confidence}


def bootstrap_interval(values: Sequence[float], confidence: float = 0.95, resamples: int = 2000,
                       seed: int = 0) -> Interval:
    """Percentile bootstrap interval of the mean, resampling the values (requests) with
    replacement (scipy.stats.bootstrap). Constant values give a zero-width interval; one value
    gives [v, v] as well, since nothing can be said about its spread."""
    array = np.asarray(values, dtype=np.float64)
    array = array[np.isfinite(array)]
    if array.size == 0:
        return Interval(math.nan, math.nan, math.nan, 0, confidence)
    mean = float(array.mean())
    if array.size == 1 or np.ptp(np.round(array, DECIMALS)) == 0.0:  # scipy would warn: degenerate
        return Interval(mean, mean, mean, int(array.size), confidence)
    result = stats.bootstrap((array,), np.mean, confidence_level=confidence, n_resamples=resamples,
                             method="percentile", rng=np.random.default_rng(seed))
    low, high = result.confidence_interval
    return Interval(mean, float(low), float(high), int(array.size), confidence)


def regret_interval(matrix: np.ndarray | Sequence[Sequence[float]], column: int,
                    confidence: float = 0.95, resamples: int = 2000, seed: int = 0) -> Interval:
    """Regret of ``column`` in a (requests, layers) matrix oriented higher-is-better: the best
    column's mean minus ``column``'s, with a percentile bootstrap interval in which the best
    column is re-picked in every resample of the requests (holding it fixed would read a
    selected layer's luck as a measured zero). Rows with a NaN are left out."""
    array = np.asarray(matrix, dtype=np.float64)
    array = array[~np.isnan(array).any(axis=1)]
    if len(array) == 0:
        return Interval(math.nan, math.nan, math.nan, 0, confidence)
    means = array.mean(axis=0)
    point = float(means.max() - means[column])
    draws = np.random.default_rng(seed).integers(0, len(array), size=(resamples, len(array)))
    resampled = array[draws].mean(axis=1)  # (resamples, layers)
    regrets = resampled.max(axis=1) - resampled[:, column]
    tail = (1 - confidence) / 2
    # rounded like t_test's samples: 1.0 - 0.98 is 0.02, not 0.020000000000000018 (a threshold
    # of 0.02 would read the difference of two means differently from the mean of differences)
    point, low, high = np.round([point, *np.quantile(regrets, [tail, 1 - tail])], DECIMALS)
    return Interval(float(point), float(low), float(high), len(array), confidence)


def minimum_detectable_difference(n: int, sd: float, alpha: float = 0.05,
                                  power: float = 0.8) -> float:
    """The smallest mean difference a two-sided paired t-test of ``n`` pairs whose differences
    have standard deviation ``sd`` detects with probability ``power`` at level ``alpha``.

    Solved exactly on the noncentral t distribution (scipy): power(d) = P(|T| > t_crit) with
    T ~ nct(n - 1, d sqrt(n) / sd). NaN for n < 2; 0 when sd is 0 (any difference is certain)."""
    if n < 2 or not math.isfinite(sd):
        return math.nan
    if sd == 0.0:
        return 0.0
    df = n - 1
    critical = stats.t.ppf(1 - alpha / 2, df)

    def shortfall(d: float) -> float:
        shift = d * math.sqrt(n) / sd
        # scipy gives NaN for the far lower tail at large shifts, where it is ~0 anyway
        lower = float(np.nan_to_num(stats.nct.cdf(-critical, df, shift), nan=0.0))
        return float(stats.nct.sf(critical, df, shift)) + lower - power

    high = 4.0 * sd / math.sqrt(n)  # a noncentrality of 4: power above 0.8 unless n is tiny
    while shortfall(high) < 0:
        high *= 2
    return float(optimize.brentq(shortfall, 0.0, high, xtol=1e-10))


@dataclass(frozen=True)
class PairedComparison:
    """a vs b on the same requests: the paired t-test, the mean difference's bootstrap interval,
    and the smallest difference the test could detect at 80% power."""

    test: TTestResult
    difference: Interval  # of a_i - b_i
    detectable: float  # minimum detectable difference at ``power``
    power: float = 0.8

    def to_dict(self) -> dict[str, object]:
        t = self.test
        return {"n": t.n[0], "mean_a": t.mean_a, "mean_b": t.mean_b, "statistic": t.statistic,
                "p_value": t.p_value, "significant": t.significant,
                "difference": self.difference.to_dict(), "detectable_at_power": self.detectable,
                "power": self.power, "alpha": t.alpha}


def paired_comparison(a: Sequence[float], b: Sequence[float], alpha: float = 0.05,
                      power: float = 0.8, seed: int = 0) -> PairedComparison:
    test = t_test(a, b, paired=True, alpha=alpha)
    differences = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    return PairedComparison(test, bootstrap_interval(differences, seed=seed),
                            minimum_detectable_difference(differences.size,
                                                          float(differences.std(ddof=1)),
                                                          alpha, power), power)
