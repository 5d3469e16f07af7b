"""Pure maths over repeated measurements: the mean and its 95 % confidence interval. No I/O here."""

from __future__ import annotations

import math

# Student's t, two-sided 95 % (the 0.975 quantile), for 1..30 degrees of freedom, then at 40, 60 and 120;
# beyond 120 the normal 1.96. Between tabulated points it is interpolated linearly in 1/df (error < 0.002).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)
_T975_TAIL = ((30, 2.042), (40, 2.021), (60, 2.000), (120, 1.980))
Z975 = 1.959964


def t975(df: int) -> float:
    """The two-sided 95 % critical value of Student's t with `df` degrees of freedom (df >= 1)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    for (d0, t0), (d1, t1) in zip(_T975_TAIL, _T975_TAIL[1:], strict=False):
        if df <= d1:
            w = (1 / df - 1 / d0) / (1 / d1 - 1 / d0)
            return t0 + w * (t1 - t0)
    d0, t0 = _T975_TAIL[-1]
    return t0 + (1 / df - 1 / d0) / (0 - 1 / d0) * (Z975 - t0)


def mean_ci95(values: list[float]) -> tuple[float, float | None]:
    """(mean, half-width of its t-based 95 % confidence interval): mean ± t(0.975, n-1) · s / √n, with s the
    sample standard deviation. The half-width is None for a single value: one run gives no interval."""
    if not values:
        raise ValueError("no values")
    n = len(values)
    mean = math.fsum(values) / n
    if n < 2:
        return mean, None
    s = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, t975(n - 1) * s / math.sqrt(n)
