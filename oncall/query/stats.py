"""Honest significance marks, so nobody chases noise at 2 AM.

- Rates (errors, refusals, JSON validity): the two-proportion z-test with a pooled variance.
- Means (latency, tokens, cost, length): Welch's t statistic from the cohorts' means, variances
  and counts (aggregated in DuckDB; no rows come to Python), read against the normal
  distribution — fine for the n ≥ 30 we require; below that the mark is "too few".
Percentiles (p50/p95/p99) are shown with no test: they describe, they do not prove.
The mark is "significant" when p < ALPHA (0.001: many metrics are compared at once, so the bar is
high) and "noise" otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

ALPHA = 0.001
MIN_N = 30


@dataclass(frozen=True)
class Test:
    significance: str  # significant | noise | too few | n/a
    p_value: float | None
    statistic: float | None = None


def _p_two_sided(z: float) -> float:
    return math.erfc(abs(z) / math.sqrt(2.0))


def _mark(p: float | None) -> str:
    if p is None:
        return "n/a"
    return "significant" if p < ALPHA else "noise"


def two_proportions(x1: int, n1: int, x2: int, n2: int) -> Test:
    """Cohort x1/n1 against baseline x2/n2."""
    if n1 < MIN_N or n2 < MIN_N:
        return Test("too few", None)
    p = (x1 + x2) / (n1 + n2)
    se = math.sqrt(p * (1 - p) * (1 / n1 + 1 / n2))
    if se == 0:
        return Test("noise", 1.0, 0.0)
    z = (x1 / n1 - x2 / n2) / se
    pv = _p_two_sided(z)
    return Test(_mark(pv), pv, z)


def welch(mean1: float | None, var1: float | None, n1: int, mean2: float | None, var2: float | None,
          n2: int) -> Test:
    """Difference of means from summary statistics."""
    if n1 < MIN_N or n2 < MIN_N or mean1 is None or mean2 is None:
        return Test("too few", None)
    se = math.sqrt((var1 or 0.0) / n1 + (var2 or 0.0) / n2)
    if se == 0:
        return Test("noise" if mean1 == mean2 else "significant", 1.0 if mean1 == mean2 else 0.0)
    t = (mean1 - mean2) / se
    pv = _p_two_sided(t)
    return Test(_mark(pv), pv, t)


def relative_change(new: float | None, old: float | None) -> float | None:
    if new is None or old is None or old == 0:
        return None
    return (new - old) / abs(old)
