"""Pure maths: energy to kWh, CO2e, cost and per-token figures. No I/O here."""

from __future__ import annotations

J_PER_KWH = 3_600_000.0


def j_to_kwh(joules: float) -> float:
    return joules / J_PER_KWH


def j_to_wh(joules: float) -> float:
    return joules / 3600.0


def co2e_g(energy_j: float, g_per_kwh: float, pue: float = 1.0) -> float:
    """Grams CO2e for energy drawn by the hardware, scaled by the data centre's PUE."""
    return j_to_kwh(energy_j) * pue * g_per_kwh


def energy_cost(energy_j: float, price_per_kwh: float, pue: float = 1.0) -> float:
    return j_to_kwh(energy_j) * pue * price_per_kwh


def instance_cost(duration_s: float, price_per_hour: float) -> float:
    return duration_s / 3600.0 * price_per_hour


def per_token(value: float | None, tokens: int | None) -> float | None:
    """value / tokens, or None when either is unknown or there are no tokens (never a silent 0)."""
    if value is None or not tokens:
        return None
    return value / tokens


def per_million_tokens(value: float | None, tokens: int | None) -> float | None:
    v = per_token(value, tokens)
    return None if v is None else v * 1_000_000


def interpolate(t: float, t0: float, e0: float, t1: float, e1: float) -> float:
    """Cumulative energy at t, on the straight line between two samples."""
    if t1 <= t0:
        return e1 if t >= t1 else e0
    return e0 + (e1 - e0) * (t - t0) / (t1 - t0)
