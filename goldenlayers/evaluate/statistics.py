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
from scipy import stats

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


def _sample(values: Sequence[float], name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size < 2:
        raise GoldenLayersError(f"sample {name} needs at least 2 values, got {array.size}")
    if not np.all(np.isfinite(array)):
        raise GoldenLayersError(f"sample {name} has a NaN or infinite value")
    return array


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
        paired=paired, n=(int(x.size), int(y.size)), alpha=alpha,
    )
