"""Probes fed by a long-running tool that streams power samples (`macmon pipe`, `powermetrics -f plist`).

Each sample gives, per device, the mean power over the sample's own window (`Sample.elapsed_s`): its energy is
power x window, exact whatever the tool's interval, and the sum over contiguous windows is the exact integral.
A background thread reads the tool's output and adds each sample up as it comes (`StreamTotals`); `read()`
gives the total at the last sample plus the latest power over the time since (at most two intervals), so that
a run or span edge between two samples gets its share; the next sample puts the exact figure in its place.

The energy starts at the first sample (its window began before the probe was open), so `open()` waits for it:
a tool that cannot run (no root, wrong machine) fails the probe there, with what it printed. A tool that exits
later is a gap: the samples it gave are kept (the next read returns them), then `read()` raises ProbeError with
the tool's exit status and message, which the sampler records as a warning event.
"""

from __future__ import annotations

import contextlib
import os
import time

from footprint.common.record import Record

from .base import Device, Probe, ProbeError, Reading

TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    import threading
    from collections.abc import Callable
    from typing import IO

    from .base import Clock

EXTRAPOLATE_INTERVALS = 2.0  # beyond this many intervals without a sample, the energy is held, not guessed
FIRST_SAMPLE_WAIT_S = 5.0  # on top of one interval: how long open() waits for the tool's first sample


def find_executable(name: str) -> str | None:
    """`shutil.which` without importing shutil (it costs start-up time on every run, for tools rarely there)."""
    for folder in os.get_exec_path():
        path = os.path.join(folder, name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


class Sample(Record):
    """One sample of a tool: mean power per kind (W) over a window of `elapsed_s` (None: not in the sample)."""

    __slots__ = ("power_w", "elapsed_s", "stamp")

    def __init__(self, power_w: dict[str, float], elapsed_s: float | None = None, stamp: float | None = None) -> None:
        self.power_w = power_w
        self.elapsed_s = elapsed_s
        self.stamp = stamp  # the tool's own time of the window's end (epoch s), where it prints one


class StreamTotals(Record):
    """Cumulative energy per kind from samples (pure: no I/O, no clock of its own).

    The first sample is the zero: energy counts from the end of its window. A sample without its window length
    takes it from the tool's timestamps, else from the arrival times."""

    __slots__ = ("energy_j", "power_w", "last_t", "last_stamp", "samples", "given_j")

    def __init__(self) -> None:
        self.energy_j: dict[str, float] = {}
        self.power_w: dict[str, float] = {}
        self.last_t: float | None = None  # arrival of the latest sample, on the probe's clock
        self.last_stamp: float | None = None
        self.samples = 0
        self.given_j: dict[str, float] = {}  # the latest figure read(): readings never go down

    def add(self, t: float, sample: Sample) -> None:
        window = sample.elapsed_s
        if window is None and sample.stamp is not None and self.last_stamp is not None:
            window = sample.stamp - self.last_stamp
        if (window is None or window <= 0) and self.last_t is not None:
            window = t - self.last_t  # a clock step in the tool's timestamps: fall back to when samples came
        for kind, watts in sample.power_w.items():
            before = self.energy_j.get(kind)
            self.energy_j[kind] = 0.0 if before is None else before + watts * max(window or 0.0, 0.0)
        self.power_w = dict(sample.power_w)
        self.last_t, self.last_stamp = t, sample.stamp
        self.samples += 1

    def at(self, kind: str, t: float, max_ahead_s: float) -> float:
        """Energy of `kind` at time t: the total at the latest sample plus its power over the time since (at most
        max_ahead_s); never below what was given before."""
        e = self.energy_j.get(kind, 0.0)
        if self.last_t is not None:
            e += self.power_w.get(kind, 0.0) * min(max(t - self.last_t, 0.0), max_ahead_s)
        e = max(e, self.given_j.get(kind, 0.0))
        self.given_j[kind] = e
        return e


class ToolStream:
    """A tool's process and the thread that reads its stdout, cut into samples at `separator`."""

    def __init__(self, argv: list[str], separator: bytes, parse: Callable[[bytes], Sample | None],
                 clock: Clock, *, complete: bytes | None = None) -> None:
        import threading
        self.argv = argv
        self.separator = separator
        self.complete = complete  # the end of a whole sample, parsed without waiting for the next separator
        self.parse = parse
        self.clock = clock
        self.totals = StreamTotals()
        self.lock = threading.Lock()
        self.first = threading.Event()
        self.exit_message: str | None = None  # set when the tool has gone
        self.bad_samples = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        import subprocess
        import tempfile
        import threading

        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 -- held while the tool runs, closed by stop()
        try:
            # its own session: the terminal's Ctrl-C is the wrapped command's, and must not stop the measuring
            self._proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                          stderr=self._stderr, start_new_session=True)
        except OSError as exc:
            raise ProbeError(f"cannot run {self.argv[0]}: {exc.strerror or exc}") from exc
        self._thread = threading.Thread(target=self._loop, name=f"footprint-{os.path.basename(self.argv[0])}",
                                        daemon=True)
        self._thread.start()

    def _take(self, chunk: bytes) -> None:
        if not chunk.strip():
            return
        try:
            sample = self.parse(chunk)
        except Exception:  # one garbled sample is skipped, not the stream
            sample = None
        if sample is None:
            self.bad_samples += 1
            return
        with self.lock:
            self.totals.add(self.clock.now(), sample)
        self.first.set()

    def _loop(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        buf = b""
        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b""
            if not data:
                break
            buf += data
            *whole, buf = buf.split(self.separator)
            for chunk in whole:
                self._take(chunk)
            if self.complete is not None and buf.rstrip().endswith(self.complete):
                self._take(buf)
                buf = b""
        self._take(buf)
        code = self._proc.wait()
        message = self._stderr_tail()
        with self.lock:
            self.exit_message = (f"{os.path.basename(self.argv[0])} exited with status {code} after "
                                 f"{self.totals.samples} samples" + (f": {message}" if message else ""))
        self.first.set()

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        try:
            self._stderr.seek(0)
            lines = self._stderr.read().decode(errors="replace").strip().splitlines()
        except (OSError, ValueError):
            return ""
        return lines[-1].strip() if lines else ""

    def wait_first(self, timeout_s: float) -> None:
        """Wait for the first sample; raise ProbeError if the tool exits or says nothing in time."""
        self.first.wait(timeout_s)
        with self.lock:
            if self.totals.samples:
                return
            why = self.exit_message
        self.stop()
        raise ProbeError(why or f"no sample from {os.path.basename(self.argv[0])} within {timeout_s:g} s")

    def stop(self) -> None:
        import subprocess
        import threading

        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.terminate()
            try:
                proc.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(OSError):
                    proc.kill()
                proc.wait()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)
        if proc is not None and proc.stdout is not None:
            with contextlib.suppress(OSError):
                proc.stdout.close()
        if self._stderr is not None:
            with contextlib.suppress(OSError):
                self._stderr.close()
            self._stderr = None


class StreamProbe(Probe):
    """A probe whose devices are the kinds a streaming tool reports (one device per kind, index 0).

    Subclasses set `name`, `kinds`, `tool` (the executable's name), `separator`, and implement `argv()`,
    `parse()` and `device()`."""

    tool = ""
    separator = b"\n"
    complete: bytes | None = None
    interval_s = 0.25  # the tool's sampling interval: its samples' window, so the devices' update period

    def __init__(self, *, interval_s: float | None = None, clock: Clock | None = None) -> None:
        super().__init__(clock=clock)
        if interval_s is not None:
            self.interval_s = interval_s
        self._stream: ToolStream | None = None
        self._last_read: float | None = None  # when read() last gave readings
        self._given_samples = 0

    @classmethod
    def create(cls, *, cuda_ordinals: list[int] | None = None) -> Probe:
        return cls()

    @classmethod
    def executable(cls) -> str | None:
        return find_executable(cls.tool)

    def argv(self, executable: str) -> list[str]:
        raise NotImplementedError

    @staticmethod
    def parse(chunk: bytes) -> Sample | None:
        raise NotImplementedError

    def device(self, kind: str) -> Device:
        raise NotImplementedError

    def open(self) -> list[Device]:
        exe = self.executable()
        if exe is None:
            raise ProbeError(f"{self.tool} not found on PATH")
        stream = ToolStream(self.argv(exe), self.separator, self.parse, self.clock, complete=self.complete)
        stream.start()
        stream.wait_first(self.interval_s + FIRST_SAMPLE_WAIT_S)
        with stream.lock:
            reported = set(stream.totals.power_w)
        chosen = [k for k in self.kinds if k in reported and (self.only_kinds is None or k in self.only_kinds)]
        if not chosen:
            stream.stop()
            raise ProbeError(f"{self.tool} reports none of {', '.join(self.only_kinds or self.kinds)}")
        self._stream = stream
        self.devices = [self.device(kind) for kind in chosen]
        return self.devices

    def read(self) -> list[Reading]:
        stream = self._stream
        if stream is None:
            return []
        with stream.lock:
            totals, gone = stream.totals, stream.exit_message
            if gone is not None:
                # the tool has exited: what it gave since the last read is kept, at its own time; then a gap
                if totals.samples == self._given_samples or totals.last_t is None:
                    raise ProbeError(f"{gone}; no readings from here on")
                t, ahead = totals.last_t, 0.0
            else:
                t, ahead = self.clock.now(), EXTRAPOLATE_INTERVALS * self.interval_s
                if totals.last_t is not None and t - totals.last_t > ahead + self.interval_s:
                    for dev in self.devices:
                        self.errors[dev.key] = (f"no sample from {self.tool} for over "
                                                f"{EXTRAPOLATE_INTERVALS + 1:g} intervals: energy held at its "
                                                "last sample")
            out = [Reading(dev, t, totals.at(dev.kind, t, ahead), totals.power_w.get(dev.kind))
                   for dev in self.devices]
            self._given_samples = totals.samples
        return out

    def wait_exit(self, timeout_s: float) -> bool:
        """Wait until the tool has exited (True) or timeout_s has passed (False)."""
        deadline = time.monotonic() + timeout_s
        while self._stream is not None:
            with self._stream.lock:
                if self._stream.exit_message is not None:
                    return True
            if time.monotonic() >= deadline:
                break
            time.sleep(0.01)
        return False

    def close(self) -> None:
        if self._stream is not None:
            self._stream.stop()
            self._stream = None

