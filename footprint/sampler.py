"""The background sampler: reads every probe at an interval and flushes batches to the store.

Counters are also read on demand (`mark`) at run and span boundaries, so totals never depend on
the interval. A pipe lets a child process (code inside `footprint run`) ask for such a read.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time

from . import clock
from .probes.base import Probe, ProbeError, Reading
from .store import Store

DEFAULT_INTERVAL_S = 0.5
FLUSH_EVERY_S = 1.0  # samples reach the DB within this (the bound is 2 s)


class Sampler:
    def __init__(self, store: Store, run_id: int, probes: list[Probe], device_ids: dict[str, int],
                 *, interval_s: float = DEFAULT_INTERVAL_S, flush_every_s: float = FLUSH_EVERY_S) -> None:
        self.store = store
        self.run_id = run_id
        self.probes = probes
        self.device_ids = device_ids
        self.interval_s = interval_s
        self.flush_every_s = flush_every_s
        self._read_lock = threading.Lock()
        self._buf_lock = threading.Lock()
        self._samples: list[tuple[int, float, float, float | None]] = []
        self._events: list[tuple[int | None, float, str, str]] = []
        self._reported: set[str] = set()
        self._stop = False
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._loop, name="footprint-sampler", daemon=True)
        self.last_flush_error: str | None = None

    @property
    def wake_fd(self) -> int:
        """Write a byte here (from any process that inherited it) to get an immediate read."""
        return self._wake_w

    def start(self) -> None:
        self._thread.start()

    def mark(self) -> float:
        """Read every probe now; returns the time of the first read."""
        readings = self._read_all()
        return readings[0].t if readings else clock.now()

    def _read_all(self) -> list[Reading]:
        out: list[Reading] = []
        with self._read_lock:
            for probe in self.probes:
                try:
                    out.extend(probe.read())
                except ProbeError as exc:
                    self._event(None, "probe-error", f"{probe.name}: {exc}")
                except Exception as exc:  # a probe bug must not end the run
                    self._event(None, "probe-error", f"{probe.name}: {type(exc).__name__}: {exc}")
                errors = getattr(probe, "errors", None)
                if errors:
                    for key, msg in list(errors.items()):
                        self._event(self.device_ids.get(key), "device-error", f"{key}: {msg}")
                    errors.clear()
        with self._buf_lock:
            self._samples.extend((self.device_ids[r.device.key], r.t, r.energy_j, r.power_w) for r in out)
        return out

    def _event(self, device_id: int | None, kind: str, message: str) -> None:
        # the same failure repeats at every read: record its first occurrence and each new message
        key = f"{device_id}:{message}"
        if key in self._reported:
            return
        self._reported.add(key)
        with self._buf_lock:
            self._events.append((device_id, clock.now(), kind, message))

    def flush(self) -> None:
        with self._buf_lock:
            samples, self._samples = self._samples, []
            events, self._events = self._events, []
        try:
            self.store.write_batch(self.run_id, samples, events, clock.now())
            self.last_flush_error = None
        except Exception as exc:  # disk full, locked too long: keep the data and try again later
            self.last_flush_error = str(exc)
            with self._buf_lock:
                self._samples[:0] = samples
                self._events[:0] = events

    def _loop(self) -> None:
        last_flush = time.monotonic()
        next_read = time.monotonic() + self.interval_s
        while True:
            timeout = max(0.0, min(next_read, last_flush + self.flush_every_s) - time.monotonic())
            ready, _, _ = select.select([self._wake_r], [], [], timeout)
            if ready:
                os.read(self._wake_r, 4096)
            if self._stop:
                break
            now = time.monotonic()
            if ready or now >= next_read:
                self._read_all()
                next_read = time.monotonic() + self.interval_s
            if time.monotonic() - last_flush >= self.flush_every_s:
                self.flush()
                last_flush = time.monotonic()
        self.flush()

    def stop(self) -> None:
        """Stop the thread after a last flush. Call `mark()` first for an exact end reading."""
        self._stop = True
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        if self._thread.is_alive():
            self._thread.join()
        else:
            self.flush()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
