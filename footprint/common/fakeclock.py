"""A clock that moves only when a test says so, for exact and instant tests of the sampler and probes.

    clock = FakeClock()
    with footprint.track("t", probes=[FakeProbe({"gpu:0": 100.0}, clock=clock)], clock=clock) as run:
        clock.advance(2.5)          # the sampler does 2.5 s of reads and flushes, at once
    assert run.energy_j == 250.0    # exactly

Samplers built on a fake clock do not start a thread: they register with the clock, and `advance` runs
their work at each due instant in order, so what a real run does over minutes a test does in milliseconds.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

EPOCH = 1_750_000_000.0  # 2025-06-15 15:06:40 UTC: a fixed start, so rendered times are stable


class FakeClock:
    fake = True

    def __init__(self, start: float = EPOCH) -> None:
        self._m = 0.0  # seconds since start: kept apart from the epoch so due instants compare exactly
        self._start = start
        # each: a function returning the next instant (monotonic) it wants to run at, and the work to run then
        self._waiters: list[tuple[Callable[[], float], Callable[[], None]]] = []
        self._watchers: list[Callable[[], None]] = []

    def now(self) -> float:
        return self._start + self._m

    def monotonic(self) -> float:
        return self._m

    def attach(self, due: Callable[[], float], work: Callable[[], None]) -> None:
        self._waiters.append((due, work))

    def detach(self, work: Callable[[], None]) -> None:
        self._waiters = [w for w in self._waiters if w[1] != work]

    def watch(self, moved: Callable[[], None]) -> None:
        """Call `moved` each time the clock moves, before any work due at the new instant: a stand-in for
        hardware (a sysfs tree of counters) keeps itself current with it, so what a sampler reads is the
        counter at the very instant it reads."""
        self._watchers.append(moved)

    def unwatch(self, moved: Callable[[], None]) -> None:
        self._watchers = [m for m in self._watchers if m != moved]

    def _moved_to(self, m: float) -> None:
        if m != self._m:
            self._m = m
            for moved in list(self._watchers):
                moved()

    def advance(self, seconds: float) -> None:
        """Move time forward by `seconds`, running every attached sampler's work at the instants it is due."""
        if not seconds >= 0:
            raise ValueError(f"a fake clock only moves forward, got {seconds!r}")
        end = self.monotonic() + seconds
        while True:
            pending = [(due(), work) for due, work in self._waiters]
            pending = [(t, w) for t, w in pending if t <= end]
            if not pending:
                break
            t, work = min(pending, key=lambda p: p[0])
            self._moved_to(max(t, self._m))
            work()
            if any(w == work and due() <= t for due, w in self._waiters):
                raise RuntimeError("work attached to a fake clock did not move its next due instant")
        self._moved_to(end)
