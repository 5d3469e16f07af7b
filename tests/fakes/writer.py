"""What the fake sysfs trees share: a thread that rewrites their counters every `period_s`, on time, or, on a
fake clock, a rewrite each time the clock moves (no thread, no lag)."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import Any

from footprint.common.fakeclock import FakeClock


class CounterWriter:
    """Mixin: set `period_s`, `_stop` (an Event), `_thread` (targeting `_loop`), `_lock` and `_fds` (path -> fd),
    and write every counter for wall time t in `_tick(t)`. A context manager runs the thread, or, where `clock`
    is a FakeClock, watches it: each counter is rewritten whenever the clock moves, so a sampler reads the counter
    of the very instant it reads at, which no thread can promise on a loaded machine."""

    period_s: float
    clock: FakeClock | None = None
    # the most a counter was behind its own power, as the thread kept it: a period plus what a busy machine
    # adds; a reading's error is at most this times the power
    max_lag_s: float = 0.0
    _stop: threading.Event
    _thread: threading.Thread
    _lock: threading.Lock
    _fds: dict[Any, int]

    def _tick(self, t: float) -> None:
        raise NotImplementedError

    def _start(self) -> None:
        if self.clock is None:
            self._thread.start()
        else:
            self.clock.watch(self._clock_tick)

    def _clock_tick(self) -> None:
        assert self.clock is not None
        self._tick(self.clock.now())

    def _loop(self) -> None:
        with contextlib.suppress(OSError, AttributeError, PermissionError):
            # a counter that lags its own power is no stand-in for hardware: on a busy machine (tests run in
            # parallel) the writer thread keeps its time by real-time priority, where the user may set it
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
        last: float | None = None
        while not self._stop.is_set():
            t = time.time()
            self._tick(t)
            if last is not None:  # from the instant the previous write was for to this one's being in place
                self.max_lag_s = max(self.max_lag_s, time.time() - last)
            last = t
            time.sleep(self.period_s)

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self.clock is not None:
            self.clock.unwatch(self._clock_tick)
        else:
            self._thread.join()
        with self._lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()
