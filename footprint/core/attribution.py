"""Sharing a device's measured energy among the requests a server handled at the same time. Pure maths.

The model (docs/serving.md says it to users):
- Between two counter reads a device's energy is taken as spread evenly over time (the straight line between
  the reads, as spans use).
- Each request does *work*: its prompt tokens spread evenly over its prefill (start to first token) and its
  completion tokens over its decode (first token to end). A request whose first token time is unknown (not
  streamed) spreads all its tokens over its whole duration. A request with no tokens at all (an error, an
  empty answer) counts as one unit of work over its duration, so it is not free.
- At each instant the energy is shared among the active requests in proportion to the work each is doing
  then; energy at instants with no request active is *idle*.

So energy is conserved exactly: the requests' shares plus idle are the device's total between its first and
last read. Under batching a request's share is an attribution, not a measurement: one forward pass serves
many requests and no counter sees which of them drew what. A prompt token and a completion token count as
the same work, which overstates prefill (it runs many tokens per pass) and understates long decodes.
"""

from __future__ import annotations

from footprint.common.record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence


class Phase(Record):
    """`units` of work done evenly over [start, end]."""

    __slots__ = ("start", "end", "units")

    def __init__(self, start: float, end: float, units: float) -> None:
        self.start = start
        self.end = end
        self.units = units


def phases(started_at: float, ended_at: float, *, first_token_at: float | None = None,
           prompt_tokens: int | None = None, completion_tokens: int | None = None) -> list[Phase]:
    """A request's work, as the module docstring defines it."""
    prompt, completion = max(prompt_tokens or 0, 0), max(completion_tokens or 0, 0)
    if ended_at <= started_at:
        return []  # an instant: it held no energy
    if prompt + completion == 0:
        return [Phase(started_at, ended_at, 1.0)]
    if first_token_at is None or not started_at < first_token_at < ended_at:
        return [Phase(started_at, ended_at, float(prompt + completion))]
    out = []
    if prompt:
        out.append(Phase(started_at, first_token_at, float(prompt)))
    if completion:
        out.append(Phase(first_token_at, ended_at, float(completion)))
    return out


def attribute(series: Sequence[tuple[float, float]], work: Sequence[Sequence[Phase]]) -> tuple[list[float], float]:
    """Share one device's energy among requests.

    `series`: the device's cumulative (time, energy J) reads, in time order. `work[i]`: request i's phases.
    Returns (energy J of each request, idle energy J); together they add up to the last read minus the first.
    """
    shares = [0.0] * len(work)
    idle = 0.0
    if len(series) < 2:
        return shares, idle
    t_first, t_last = series[0][0], series[-1][0]
    # phase edges as events: (time, +density or -density, request); densities are units per second
    edges: list[tuple[float, int, float]] = []
    for i, request in enumerate(work):
        for p in request:
            a, b = max(p.start, t_first), min(p.end, t_last)
            if b <= a or p.units <= 0:
                continue
            density = p.units / (p.end - p.start)
            edges.append((a, i, density))
            edges.append((b, i, -density))
    edges.sort(key=lambda e: e[0])
    active: dict[int, float] = {}  # request -> density now
    k = 0

    def advance_to(t: float) -> None:
        nonlocal k
        while k < len(edges) and edges[k][0] <= t:
            _, i, d = edges[k]
            left = active.get(i, 0.0) + d
            if left > 1e-12 * abs(d):
                active[i] = left
            else:
                active.pop(i, None)
            k += 1

    def share(energy: float) -> None:
        nonlocal idle
        total = sum(active.values())
        if total <= 0:
            idle += energy
            return
        for i, d in active.items():
            shares[i] += energy * d / total

    advance_to(t_first)
    for (t0, e0), (t1, e1) in zip(series, series[1:], strict=False):
        delta = e1 - e0
        if t1 <= t0:  # two reads at one instant: whatever is active then takes it
            share(delta)
            continue
        rate = delta / (t1 - t0)
        t = t0
        while k < len(edges) and edges[k][0] < t1:
            edge_t = edges[k][0]
            if edge_t > t:
                share(rate * (edge_t - t))
                t = edge_t
            advance_to(edge_t)
        share(rate * (t1 - t))
        advance_to(t1)
    return shares, idle
