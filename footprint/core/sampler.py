"""The background sampler: reads every probe at an interval and flushes batches to the store.

Counters are also read on demand (`mark`) at run and span boundaries, so totals never depend on
the interval. A pipe lets a child process (code inside `footprint run`) ask for such a read.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading

from footprint.common.clock import SYSTEM
from footprint.core.store import Store
from footprint.probes.base import Probe, ProbeError, Reading

TYPE_CHECKING = False
if TYPE_CHECKING:
    from footprint.probes.base import Clock

DEFAULT_INTERVAL_S = 0.5
FLUSH_EVERY_S = 2.0  # samples reach the DB within this, once the first flush is done (docs/reliability.md)
# The first flush comes sooner, so that a profiler killed early keeps its first second; after it, each flush is a
# transaction whose cost is most of the sampler's own (docs/benchmarks.md), so they are spaced further apart.
FIRST_FLUSH_S = 1.0
# Long runs: periodic samples older than KEEP_FULL_S are thinned to one per COMPACT_BUCKET_S per device.
KEEP_FULL_S = 3600.0
COMPACT_BUCKET_S = 10.0
COMPACT_EVERY_S = 300.0


class Sampler:
    def __init__(self, store: Store, run_id: int, probes: list[Probe], device_ids: dict[str, int],
                 *, interval_s: float = DEFAULT_INTERVAL_S, flush_every_s: float = FLUSH_EVERY_S,
                 first_flush_s: float = FIRST_FLUSH_S,
                 keep_full_s: float = KEEP_FULL_S, compact_bucket_s: float = COMPACT_BUCKET_S,
                 compact_every_s: float = COMPACT_EVERY_S, clock: Clock | None = None) -> None:
        self.clock: Clock = clock if clock is not None else SYSTEM
        self.store = store
        self.run_id = run_id
        self.probes = probes
        self.device_ids = device_ids
        self.interval_s = interval_s
        self.flush_every_s = flush_every_s
        self.first_flush_s = min(first_flush_s, flush_every_s)
        self.keep_full_s = keep_full_s
        self.compact_bucket_s = compact_bucket_s
        self.compact_every_s = compact_every_s
        self._compacted_until: float | None = None
        self._read_lock = threading.Lock()
        self._buf_lock = threading.Lock()
        self._samples: list[tuple[int, float, float, float | None, int]] = []
        self._events: list[tuple[int | None, float, str, str]] = []
        self._reported: set[str] = set()
        self._stop = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)  # a full pipe skips a wake-up rather than stall whoever writes
        self._thread = threading.Thread(target=self._loop, name="footprint-sampler", daemon=True)
        self.last_flush_error: str | None = None
        self._failing_since: float | None = None
        # per device: (first energy, previous reading, latest reading), for live exporters
        self._live: dict[str, tuple[float, Reading | None, Reading]] = {}
        # per device: the reading of the latest span edge, which a periodic read that comes after it does not
        # replace: what a span that just began or ended was given
        self._at_mark: dict[str, Reading] = {}
        self.rounds = 0  # read rounds so far (periodic, edges, flushes): what the sampler really did

    @property
    def wake_fd(self) -> int:
        """Write a byte here (from any process that inherited it) to get an immediate read."""
        return self._wake_w

    def mark(self) -> float:
        """Read every probe now; returns the time of the first read."""
        readings = self._read(self.probes, mark=True)
        return readings[0].t if readings else self.clock.now()

    def _read(self, probes: list[Probe], *, mark: bool = False) -> list[Reading]:
        out: list[Reading] = []
        with self._read_lock:
            self.rounds += 1
            for probe in probes:
                try:
                    out += probe.read()
                except ProbeError as exc:
                    self._event(None, "probe-error", f"{probe.name}: {exc}")
                except Exception as exc:  # a probe bug must not end the run
                    self._event(None, "probe-error", f"{probe.name}: {type(exc).__name__}: {exc}")
                for key, msg in Probe.take_errors(probe).items():
                    self._event(self.device_ids.get(key), "device-error", f"{key}: {msg}")
            # buffered before the read lock is let go, so reads reach the DB in the order they were taken: a
            # flush never stores a later read while an earlier one is still on its way
            ids, flag = self.device_ids, int(mark)
            with self._buf_lock:
                samples, live = self._samples, self._live
                for r in out:
                    key = r.device.key
                    samples.append((ids[key], r.t, r.energy_j, r.power_w, flag))
                    old = live.get(key)
                    live[key] = (r.energy_j, None, r) if old is None else (old[0], old[2], r)
                    if mark:
                        self._at_mark[key] = r
        return out

    def snapshot(self) -> dict[str, tuple[float, Reading | None, Reading]]:
        with self._buf_lock:
            return dict(self._live)

    def edge_snapshot(self) -> dict[str, tuple[float, Reading]]:
        """Per device: (first energy, the reading of the latest span edge). Unlike `snapshot`'s latest reading,
        a periodic read taken since the edge does not change it, so a span's energy computed from two of
        these equals the span's recorded energy."""
        with self._buf_lock:
            return {key: (self._live[key][0], r) for key, r in self._at_mark.items()}

    def _event(self, device_id: int | None, kind: str, message: str) -> None:
        # the same failure repeats at every read: record its first occurrence and each new message
        key = f"{device_id}:{message}"
        if key in self._reported:
            return
        self._reported.add(key)
        with self._buf_lock:
            self._events.append((device_id, self.clock.now(), kind, message))

    def flush(self) -> None:
        with self._buf_lock:
            samples, self._samples = self._samples, []
            events, self._events = self._events, []
        if self.last_flush_error is not None and self._failing_since is not None:
            failing_s = self.clock.now() - self._failing_since
            events.append((None, self.clock.now(), "store-retry",
                           f"writes failed for {failing_s:.1f} s ({self.last_flush_error}); "
                           "the samples were held in memory and written late"))
        try:
            self.store.write_batch(self.run_id, samples, events, self.clock.now())
            self.last_flush_error = None
            self._failing_since = None
        except Exception as exc:  # disk full, locked too long: keep the data and try again later
            self.last_flush_error = str(exc)
            if self._failing_since is None:
                self._failing_since = self.clock.now()
            with self._buf_lock:
                self._samples[:0] = samples
                self._events[:0] = [e for e in events if e[2] != "store-retry"]

    def _maybe_compact(self) -> None:
        """Thin samples older than keep_full_s, incrementally, every compact_every_s."""
        cutoff = self.clock.now() - self.keep_full_s
        if self._compacted_until is None:
            started = self.store.run_started_at(self.run_id)
            self._compacted_until = started if started is not None else cutoff
        since = self._compacted_until
        if cutoff - since < self.compact_every_s:
            return
        # whole buckets only, so a bucket is never split between two passes
        until = since + ((cutoff - since) // self.compact_bucket_s) * self.compact_bucket_s
        if until <= since:
            return
        try:
            self.store.compact(self.run_id, since=since, until=until, bucket_s=self.compact_bucket_s)
            self._compacted_until = until
        except Exception as exc:  # compaction is housekeeping: never let it stop sampling
            self.last_flush_error = f"compaction: {exc}"

    # Each wake-up costs CPU of its own on top of the work (about 0.1 ms on a small VM), so: probes that need
    # no polling (estimates) are read at flushes only; a flush rides on the last periodic read before
    # flush_every_s would be exceeded; and with nothing to poll, the thread wakes only to flush.

    def _begin(self) -> None:
        self._polled = [p for p in self.probes if p.polled]
        self._unpolled = [p for p in self.probes if not p.polled]
        self._interval = self.interval_s if self._polled else float("inf")
        start = self.clock.monotonic()
        self._last_flush = start - (self.flush_every_s - self.first_flush_s)  # the first flush is due sooner
        self._next_read = start + self._interval

    def _due(self) -> float:
        """The monotonic instant of the next scheduled read or flush."""
        return min(self._next_read, self._last_flush + self.flush_every_s)

    def _tick(self, woken: bool) -> None:
        """One step of the loop, at the current time: a read if due (or asked for), a flush if due."""
        if woken:
            # a wake from a child process is a span boundary: read everything, kept exact through compaction,
            # and store it at once (below): the child may be waiting for it to read its span's figures
            self._read(self.probes, mark=True)
            self._next_read = self.clock.monotonic() + self._interval
        elif self.clock.monotonic() >= self._next_read:
            self._read(self._polled)
            self._next_read = self.clock.monotonic() + self._interval
        now = self.clock.monotonic()
        if woken or now >= self._last_flush + self.flush_every_s or (
                self._polled and self._next_read > self._last_flush + self.flush_every_s):
            if self._unpolled and not woken:
                self._read(self._unpolled)
            self.flush()
            self._last_flush = self.clock.monotonic()
            self._maybe_compact()

    def _fake_tick(self) -> None:
        self._tick(False)

    def start(self) -> None:
        self._begin()
        if self.clock.fake:  # a test drives time: run each step when the clock reaches it, in its thread
            self.clock.attach(self._due, self._fake_tick)  # type: ignore[attr-defined]
            return
        self._thread.start()

    def _loop(self) -> None:
        while True:
            ready, _, _ = select.select([self._wake_r], [], [], max(0.0, self._due() - self.clock.monotonic()))
            if ready:
                os.read(self._wake_r, 4096)
            if self._stop:
                break
            self._tick(bool(ready))
        self.flush()

    def stop(self) -> None:
        """Stop the thread after a last flush. Call `mark()` first for an exact end reading."""
        self._stop = True
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        if self._thread.is_alive():
            self._thread.join()
        else:
            if self.clock.fake:
                self.clock.detach(self._fake_tick)  # type: ignore[attr-defined]
            self.flush()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
