"""The Python twin of fake_nvml.c's maths: exact energy of a GPU's power profile."""

from __future__ import annotations

import math


def gpu_energy_j(t: float, t0: float, base_w: float, square: tuple[float, float] | None = None,
                 cap_w: float = math.inf) -> float:
    """Integral of the profile from t0 (counter zero) to t; `cap_w`: a power limit held since t0 (the GPU draws
    min(profile, limit))."""
    s = t - t0
    if s <= 0:
        return 0.0
    lo = min(base_w, cap_w)
    e = lo * s
    if square:
        period, amp = square
        half = period / 2
        full = math.floor(s / period)
        rest = s - full * period
        e += (min(base_w + amp, cap_w) - lo) * (full * half + min(rest, half))
    return e


def gpu_energy_between(a: float, b: float, t0: float, base_w: float,
                       square: tuple[float, float] | None = None) -> float:
    return gpu_energy_j(b, t0, base_w, square) - gpu_energy_j(a, t0, base_w, square)
