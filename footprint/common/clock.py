"""Timestamps that a wall-clock jump cannot break, and the clock interface the sampler and probes accept.

`now()` is wall-clock time as it was when this process first asked, advanced by the monotonic clock
since: readings keep a meaningful epoch time (to line up with other processes and hosts) while their
differences, which become durations and energy, never go negative or leap when NTP or a user sets the
clock.

A clock is any object with `now()` (epoch seconds as above) and `monotonic()`; `SYSTEM` is the real one.
Tests pass a `footprint.common.fakeclock.FakeClock` instead, which moves only when told to.

Processes that share a run share one timeline: the process that owns a run records its anchor (`anchor()`:
the wall-minus-monotonic offset, and the boot it belongs to) with the run, and a process that joins the run
on the same boot stamps its spans with `AnchoredClock(offset)`, i.e. its own monotonic time plus the
owner's offset. CLOCK_MONOTONIC is one clock for every process of a boot, so those stamps are on the
owner's timeline even when this process's wall clock differs (another container's clock, a step between
the two processes' starts).
"""

from __future__ import annotations

import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

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


class AnchoredClock:
    """Another process's timeline: this process's monotonic time plus that process's anchor offset."""

    fake = False

    def __init__(self, offset_s: float) -> None:
        self.offset_s = offset_s

    def now(self) -> float:
        return time.monotonic() + self.offset_s

    @staticmethod
    def monotonic() -> float:
        return time.monotonic()


def boot_id() -> str | None:
    """This boot's id (Linux): processes with the same one share CLOCK_MONOTONIC."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip() or None
    except OSError:
        return None


def anchor() -> dict[str, Any]:
    """This process's anchor, as a run records it: {"offset_s": wall - monotonic, "boot_id": ...}."""
    return {"offset_s": _ANCHOR_WALL - _ANCHOR_MONO, "boot_id": boot_id()}


def owner_clock(recorded: object) -> AnchoredClock | None:
    """The clock of the process that recorded `recorded` (an anchor() dict), if it is usable here: only a
    process of the same boot shares its monotonic clock."""
    if not isinstance(recorded, dict):
        return None
    offset, boot = recorded.get("offset_s"), recorded.get("boot_id")
    if not isinstance(offset, (int, float)) or isinstance(offset, bool) or not boot or boot != boot_id():
        return None
    return AnchoredClock(float(offset))
