"""Timestamps that a wall-clock jump cannot break, and the clock interface the sampler and probes accept.

`now()` is wall-clock time as it was when this process first asked, advanced by the monotonic clock
since: readings keep a meaningful epoch time (to line up with other processes and hosts) while their
differences, which become durations and energy, never go negative or leap when NTP or a user sets the
clock.

A clock is any object with `now()` (epoch seconds as above) and `monotonic()`; `SYSTEM` is the real one.
Tests pass a `footprint.common.fakeclock.FakeClock` instead, which moves only when told to.
"""

from __future__ import annotations

import time

_ANCHOR_WALL = time.time()
_ANCHOR_MONO = time.monotonic()


def now() -> float:
    return _ANCHOR_WALL + (time.monotonic() - _ANCHOR_MONO)


class SystemClock:
    """The real clock. `fake` tells the sampler it may block in the OS rather than be driven by a test."""

    fake = False

    @staticmethod
    def now() -> float:
        return _ANCHOR_WALL + (time.monotonic() - _ANCHOR_MONO)

    @staticmethod
    def monotonic() -> float:
        return time.monotonic()


SYSTEM = SystemClock()
