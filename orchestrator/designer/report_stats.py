"""The statistics of ``orchestrator report``: Wilson, Newcombe and Katz intervals, and the chi-square sample-ratio test (pure math)."""

from __future__ import annotations

import math
from collections.abc import Sequence

CONFIDENCE = 0.95
Z95 = 1.959963984540054
"""The two-sided 95 % standard normal quantile."""


def wilson_interval(converted: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval for ``converted`` successes in ``n`` trials (None for n = 0)."""
    if n <= 0:
        return None
    p = converted / n
    z2 = z * z
    denom = 1 + z2 / n
    center = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return max(0.0, center - half), min(1.0, center + half)


def newcombe_difference(x1: int, n1: int, x0: int, n0: int, z: float = Z95) -> tuple[float, float] | None:
    """Interval for p1 − p0 by Newcombe's hybrid score method (his method 10) from the two Wilson intervals."""
    w1, w0 = wilson_interval(x1, n1, z), wilson_interval(x0, n0, z)
    if w1 is None or w0 is None:
        return None
    p1, p0 = x1 / n1, x0 / n0
    d = p1 - p0
    return d - math.hypot(p1 - w1[0], w0[1] - p0), d + math.hypot(w1[1] - p1, p0 - w0[0])


def relative_uplift_interval(x1: int, n1: int, x0: int, n0: int, z: float = Z95) -> tuple[float, float] | None:
    """Interval for p1 / p0 − 1 from the Katz log interval of the rate ratio; None when x1 or x0 is 0."""
    if x1 <= 0 or x0 <= 0 or n1 <= 0 or n0 <= 0:
        return None
    ratio = (x1 / n1) / (x0 / n0)
    se = math.sqrt(1 / x1 - 1 / n1 + 1 / x0 - 1 / n0)
    return ratio * math.exp(-z * se) - 1, ratio * math.exp(z * se) - 1


def chi2_sf(x: float, df: int) -> float:
    """P(X ≥ x) for a chi-square variable with ``df`` ≥ 1 degrees of freedom (closed forms for integer df)."""
    if x <= 0:
        return 1.0
    half = x / 2
    if df % 2 == 0:
        term, total = 1.0, 1.0
        for i in range(1, df // 2):
            term *= half / i
            total += term
        return min(1.0, math.exp(-half) * total)
    total, term = math.erfc(math.sqrt(half)), math.sqrt(2 * x / math.pi) * math.exp(-half)
    for i in range(1, (df + 1) // 2):
        total += term
        term *= x / (2 * i + 1)
    return min(1.0, total)


def sample_ratio_p(observed: Sequence[int], weights: Sequence[float]) -> float | None:
    """Chi-square goodness-of-fit p-value of ``observed`` counts against ``weights``.

    None when the test does not apply: fewer than two variants with a weight, or an expected
    count below 5 (the chi-square approximation needs them).
    """
    pairs = [(o, w) for o, w in zip(observed, weights, strict=True) if w > 0]
    total, wsum = sum(o for o, _ in pairs), sum(w for _, w in pairs)
    if len(pairs) < 2 or total == 0:
        return None
    expected = [total * w / wsum for _, w in pairs]
    if min(expected) < 5:
        return None
    stat = sum((o - e) ** 2 / e for (o, _), e in zip(pairs, expected, strict=True))
    return chi2_sf(stat, len(pairs) - 1)
