"""Pure maths of the forecast: a run's total from the steps measured so far. No I/O here.

    predicted = spent + remaining × mean(step)

`spent` is what the run has used up to the end of its latest step, `remaining` the steps still to come and the
mean is over the steps measured so far. The interval is the two-sided 95 % Student-t interval on that mean
(n - 1 degrees of freedom) scaled by the remaining steps: it says how well the mean step is known, and it
narrows as steps accumulate. One step gives a point forecast and no interval.
"""

from __future__ import annotations

import math

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

# two-sided 95 % quantiles of Student's t (t_0.975) by degrees of freedom, from the standard tables
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
         20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048,
         29: 2.045, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}
Z_975 = 1.960  # the limit for infinite degrees of freedom
INTERVAL = "95 % Student-t interval on the mean step (n - 1 degrees of freedom), times the remaining steps"


def t_975(df: int) -> float:
    """t_0.975 for `df` >= 1 degrees of freedom: the table, linear in 1/df between its rows and towards 1.960."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df in T_975:
        return T_975[df]
    rows = sorted(T_975)
    lo = max(r for r in rows if r < df)
    hi = min((r for r in rows if r > df), default=None)
    t_hi, x_hi = (T_975[hi], 1.0 / hi) if hi is not None else (Z_975, 0.0)
    x, x_lo = 1.0 / df, 1.0 / lo
    return t_hi + (T_975[lo] - t_hi) * (x - x_hi) / (x_lo - x_hi)


def mean_and_half_width(samples: Sequence[float]) -> tuple[float, float | None]:
    """(mean, half width of its 95 % t-interval); no half width for fewer than two samples."""
    n = len(samples)
    if n == 0:
        raise ValueError("no samples")
    mean = sum(samples) / n
    if n < 2:
        return mean, None
    var = sum((x - mean) ** 2 for x in samples) / (n - 1)
    return mean, t_975(n - 1) * math.sqrt(var) / math.sqrt(n)


def project(spent: float, samples: Sequence[float], remaining: int) -> tuple[float, float | None, float | None]:
    """(predicted, low, high) total: `spent` plus `remaining` × the mean of `samples` (per step), with the 95 %
    t-interval on the mean; a bound never goes below what is spent. Low and high are None with one sample and
    equal to the prediction when nothing remains."""
    mean, half = mean_and_half_width(samples)
    point = spent + remaining * mean
    if remaining <= 0:
        return spent, spent, spent
    if half is None:
        return point, None, None
    return point, spent + remaining * max(0.0, mean - half), spent + remaining * (mean + half)


def cycles(starts: Sequence[float], ends: Sequence[float]) -> list[float]:
    """Per-step amounts from cumulative values at the steps' starts and ends (in the order the steps ended):
    from one step's end to the next one's (what a step costs, gaps between steps included; the first step,
    often slowed by warm-up, is left out), or with a single step, that step from its start to its end."""
    if not ends:
        return []
    if len(ends) == 1:
        return [ends[0] - starts[0]]
    return [b - a for a, b in zip(ends, ends[1:], strict=False)]


def error_pct(predicted: float, actual: float) -> float | None:
    """How far a forecast was from what happened, in % of what happened (positive: it predicted too much)."""
    return None if not actual else (predicted - actual) / actual * 100.0
