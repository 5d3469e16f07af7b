"""Timestamps that a wall-clock jump cannot break.

`now()` is wall-clock time as it was when this process first asked, advanced by the monotonic clock
since: readings keep a meaningful epoch time (to line up with other processes and hosts) while their
differences, which become durations and energy, never go negative or leap when NTP or a user sets the
clock.
"""

from __future__ import annotations

import time

_ANCHOR_WALL = time.time()
_ANCHOR_MONO = time.monotonic()


def now() -> float:
    return _ANCHOR_WALL + (time.monotonic() - _ANCHOR_MONO)
