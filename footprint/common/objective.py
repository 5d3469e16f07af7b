"""Which GPU power limit is best: the pure maths of the tuner (footprint.powerlimit), away from any I/O.

Each profiled limit has the GPU energy and the time of the same number of training steps. Per step:
- `energy`: least energy;
- `time`: least time;
- `cost`: Zeus' cost, eta * energy + (1 - eta) * max_power * time, where max_power is the highest profiled
  limit times the number of GPUs (eta = 1 is energy alone, eta = 0 time alone);
- `slowdown`: least energy among the limits at most `max_slowdown` (0.1: 10 %) slower than the fastest.
"""

from __future__ import annotations

from footprint.common.record import Record

OBJECTIVES = ("energy", "time", "cost", "slowdown")


class LimitProfile(Record):
    """What one power limit (W) cost over `steps` profiled steps: GPU energy summed over `gpus` GPUs (every
    rank's), and time (the slowest rank's)."""

    __slots__ = ("limit_w", "steps", "energy_j", "time_s", "gpus")

    def __init__(self, limit_w: float, steps: int, energy_j: float, time_s: float, gpus: int = 1) -> None:
        self.limit_w = limit_w
        self.steps = steps
        self.energy_j = energy_j
        self.time_s = time_s
        self.gpus = gpus


def zeus_cost(energy_j: float, time_s: float, *, eta: float, max_power_w: float) -> float:
    """Zeus' time-energy cost: eta * energy + (1 - eta) * max_power * time (joules)."""
    return eta * energy_j + (1.0 - eta) * max_power_w * time_s


def check_objective(objective: str, eta: float, max_slowdown: float) -> None:
    """ValueError with one line for a bad objective or knob."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be between 0 and 1, got {eta!r}")
    if not max_slowdown >= 0.0:
        raise ValueError(f"max_slowdown must be >= 0 (0.1 for 10 %), got {max_slowdown!r}")


def describe(objective: str, eta: float, max_slowdown: float) -> str:
    """The objective as stored with the run and shown in reports: 'energy', 'cost (eta=0.5)', ..."""
    if objective == "cost":
        return f"cost (eta={eta:g})"
    if objective == "slowdown":
        return f"least energy within {max_slowdown * 100:g} % slowdown"
    return objective


def scores(profiles: list[LimitProfile], objective: str, *, eta: float = 0.5,
           max_slowdown: float = 0.1) -> list[float | None]:
    """Each profile's per-step score (lower is better); None where the objective rules the limit out."""
    check_objective(objective, eta, max_slowdown)
    if not profiles:
        return []
    per_step = [(p.energy_j / p.steps, p.time_s / p.steps) for p in profiles]
    if objective == "energy":
        return [e for e, _ in per_step]
    if objective == "time":
        return [t for _, t in per_step]
    if objective == "cost":
        max_power = max(p.limit_w for p in profiles) * max(p.gpus for p in profiles)
        return [zeus_cost(e, t, eta=eta, max_power_w=max_power) for e, t in per_step]
    fastest = min(t for _, t in per_step)
    return [e if t <= (1.0 + max_slowdown) * fastest else None for e, t in per_step]


def best(profiles: list[LimitProfile], objective: str, *, eta: float = 0.5, max_slowdown: float = 0.1) -> int:
    """Index of the best profile; of equal scores the lowest limit (it draws less power)."""
    values = scores(profiles, objective, eta=eta, max_slowdown=max_slowdown)
    ranked = [(v, profiles[i].limit_w, i) for i, v in enumerate(values) if v is not None]
    if not ranked:
        raise ValueError("no profiled power limit to choose from")
    return min(ranked)[2]


def limits_to_profile(min_w: float, max_w: float, step_w: float) -> list[float]:
    """From the highest limit down by `step_w` while at or above the lowest (the lowest itself always last),
    as Zeus profiles them."""
    if not step_w > 0:
        raise ValueError(f"step_w must be a positive number of watts, got {step_w!r}")
    out: list[float] = []
    w = max_w
    while w >= min_w - 1e-9:
        out.append(round(w, 3))
        w -= step_w
    if out[-1] > min_w:
        out.append(min_w)
    return out
