"""Pure maths for choosing a configuration: Pareto frontiers and "the cheapest one that is good enough".

Points are (key, cost, benefit) triples: lower cost is better (J per token), higher benefit is better
(quality, tokens/s). No I/O here.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Hashable, Sequence


def frontier(points: Sequence[tuple[Hashable, float, float]]) -> set[Hashable]:
    """Keys of the points no other point dominates. A point is dominated when another costs no more and gives
    no less, and is strictly better in one of the two; equal points are all on the frontier."""
    out = set()
    for key, cost, benefit in points:
        dominated = any(c <= cost and b >= benefit and (c < cost or b > benefit) for k, c, b in points if k != key)
        if not dominated:
            out.add(key)
    return out


def cheapest_within(points: Sequence[tuple[Hashable, float, float]], margin: float) -> Hashable | None:
    """The key of the lowest-cost point whose benefit is within `margin` (absolute, same unit as the benefit)
    of the best benefit; ties on cost go to the higher benefit, then to the earlier point. None without points."""
    if not points:
        return None
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    best = max(b for _, _, b in points)
    floor = best - margin - 1e-9 * max(1.0, abs(best))  # 0.80 - 0.02 is 0.7800000000000001: 0.78 is within
    good = [(c, -b, i, k) for i, (k, c, b) in enumerate(points) if b >= floor]
    return min(good)[3]
