"""The whole machine's power from the BMC over IPMI DCMI: `ipmitool dcmi power reading` (opt-in).

The BMC measures at the PSUs' input, so this is a device of kind `node` (every component plus fans, disks, NICs
and PSU loss), reported beside the components and never added to them. It is opt-in (`FOOTPRINT_IPMI=1`,
`footprint run --ipmi`, or `ipmi = true` in footprint.toml) because asking the BMC is slow: 0.1 to a few seconds
a call, so a background thread asks at its own pace (one call at a time, at most one a second), never the
sampler. ipmitool prints (lib/ipmi_dcmi.c):

        Instantaneous power reading:                   250 Watts
        ...
        Sampling period:                          00000001 Seconds.
        Power reading state is:                   activated

The instantaneous reading is used, timed when ipmitool answers. Energy: each sample's power is held until the
next one (at most `HOLD_S` past it), so a read between two samples (a span's edge) already holds the energy that
the next sample will confirm, and the figure never goes back. Samples are as far apart as the BMC answers, which is the
device's update period; a window shorter than it is flagged. A BMC that stops answering for longer than
`HOLD_S` is a gap: the sampler records why, and nothing is counted for it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading

from .base import Availability, Device, Probe, ProbeError, Reading

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .base import Clock

ENV = "FOOTPRINT_IPMI"  # the switch: 1, true, yes or on (footprint run --ipmi and the config key set it)
COMMAND = ("ipmitool", "dcmi", "power", "reading")
PACE_S = 1.0  # at most one BMC call a second: BMCs are slow and shared with the fans' control
HOLD_S = 10.0  # a sample's power is held this long at most; past it, the BMC is taken as gone
TIMEOUT_S = 15.0
SOURCE = "ipmi-dcmi"
_WATTS = re.compile(r"Instantaneous power reading\s*:\s*(\d+)\s*Watts", re.IGNORECASE)
_PERIOD = re.compile(r"Sampling period\s*:\s*(\d+)\s*(Milliseconds|Seconds)", re.IGNORECASE)
_STATE = re.compile(r"Power reading state is\s*:\s*(\w+)", re.IGNORECASE)
TRUE = ("1", "true", "yes", "on")


def enabled(environ: dict[str, str] | None = None) -> bool:
    value = (os.environ if environ is None else environ).get(ENV, "")
    return value.strip().lower() in TRUE


class DcmiReading:
    __slots__ = ("watts", "sampling_period_s", "active")

    def __init__(self, watts: float, sampling_period_s: float | None, active: bool) -> None:
        self.watts = watts
        self.sampling_period_s = sampling_period_s
        self.active = active


def parse(text: str) -> DcmiReading:
    """ipmitool's `dcmi power reading` output -> the reading; ValueError when it holds none."""
    m = _WATTS.search(text)
    if m is None:
        raise ValueError("no 'Instantaneous power reading' in ipmitool's answer")
    period = _PERIOD.search(text)
    seconds = None
    if period is not None:
        seconds = int(period.group(1)) / (1000 if period.group(2).lower().startswith("milli") else 1)
    state = _STATE.search(text)
    return DcmiReading(float(m.group(1)), seconds, state is None or state.group(1).lower() == "activated")


class HeldPower:
    """Energy from power samples that arrive late and unevenly: each sample's power is held until the next
    one, for at most `hold_s`. `energy_at(t)` for t at or after the last sample never exceeds what the next
    sample will give, so readings taken between samples stay consistent and never decrease."""

    __slots__ = ("hold_s", "energy_j", "last_t", "last_w")

    def __init__(self, hold_s: float = HOLD_S) -> None:
        self.hold_s = hold_s
        self.energy_j = 0.0
        self.last_t: float | None = None
        self.last_w = 0.0

    def add(self, t: float, watts: float) -> None:
        if self.last_t is not None and t <= self.last_t:
            return  # an older sample (a slow call overtaken): its time has been counted
        self.energy_j = self.energy_at(t) if self.last_t is not None else 0.0
        self.last_t, self.last_w = t, watts

    def energy_at(self, t: float) -> float:
        if self.last_t is None:
            return 0.0
        return self.energy_j + self.last_w * min(max(0.0, t - self.last_t), self.hold_s)

    def stale(self, t: float) -> bool:
        return self.last_t is None or t - self.last_t > self.hold_s


def _hint(text: str) -> str:
    if "Permission denied" in text:
        return " (grant access to /dev/ipmi0, or run as root)"
    if "Could not open device" in text:
        return " (load the BMC driver: `sudo modprobe ipmi_si ipmi_devintf`)"
    return ""


class IpmiProbe(Probe):
    name = "ipmi"
    kinds = ("node",)
    node_kinds = kinds  # the whole machine: once per node in a distributed job

    def __init__(self, command: tuple[str, ...] = COMMAND, *, clock: Clock | None = None, pace_s: float = PACE_S,
                 hold_s: float = HOLD_S) -> None:
        super().__init__(clock=clock)
        self.command = command
        self.pace_s = pace_s
        self.power = HeldPower(hold_s)
        self.last_error: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._proc: subprocess.Popen[str] | None = None

    @classmethod
    def availability(cls) -> Availability:
        if not enabled():
            return Availability(False, f"opt-in (the BMC is slow to ask): set {ENV}=1 or pass --ipmi to "
                                       "footprint run")
        if shutil.which(COMMAND[0]) is None:
            return Availability(False, "ipmitool not found on PATH (install ipmitool)")
        try:
            reading, seconds = cls()._call()
        except ProbeError as exc:
            return Availability(False, str(exc))
        if not reading.active:
            return Availability(False, "the BMC's DCMI power reading is deactivated (`ipmitool dcmi power "
                                       "activate` on BMCs that allow it)")
        return Availability(True, f"IPMI DCMI power reading: the whole node, {reading.watts:g} W now "
                                  f"(the BMC answered in {seconds:.2f} s)", ("node",))

    def _call(self) -> tuple[DcmiReading, float]:
        """One `ipmitool dcmi power reading` -> (the reading, the call's duration)."""
        t0 = self.clock.monotonic()
        try:
            proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    stdin=subprocess.DEVNULL)
        except OSError as exc:
            raise ProbeError(f"cannot run {self.command[0]}: {exc.strerror}") from None
        self._proc = proc
        try:
            out, err = proc.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise ProbeError(f"{' '.join(self.command)} did not answer within {TIMEOUT_S:g} s") from None
        finally:
            self._proc = None
        if proc.returncode != 0:
            why = (err.strip() or out.strip() or f"exit status {proc.returncode}").splitlines()[0]
            raise ProbeError(f"{' '.join(self.command)}: {why}{_hint(err)}")
        try:
            return parse(out), self.clock.monotonic() - t0
        except ValueError as exc:
            raise ProbeError(f"{' '.join(self.command)}: {exc}") from None

    def _sample(self) -> DcmiReading:
        """Ask the BMC once and add its answer, timed when it arrives: no read can come between that time and
        the sample (both are taken under the lock), which keeps the energy from ever going back."""
        reading, _ = self._call()
        if not reading.active:
            raise ProbeError("the BMC's DCMI power reading is deactivated")
        with self._lock:
            self.power.add(self.clock.now(), reading.watts)
            self.last_error = None
        return reading

    def open(self) -> list[Device]:
        t0 = self.clock.monotonic()
        reading = self._sample()
        spacing = max(self.pace_s, self.clock.monotonic() - t0)
        period = f"; the BMC averages over {reading.sampling_period_s:g} s" if reading.sampling_period_s else ""
        self.devices = [Device(
            kind="node", index=0, name="BMC power (IPMI DCMI)", source=SOURCE, measured=True,
            update_period_s=spacing,
            note=f"whole node at the PSU input (fans, disks, NICs and PSU loss included): ipmitool's instantaneous "
                 f"reading about every {spacing:.2g} s, each held until the next{period}")]
        self._thread = threading.Thread(target=self._loop, name="footprint-ipmi", daemon=True)
        self._thread.start()
        return self.devices

    def _loop(self) -> None:
        while not self._stop.is_set():
            began = self.clock.monotonic()
            try:
                self._sample()
            except ProbeError as exc:
                with self._lock:
                    self.last_error = str(exc)
            self._stop.wait(max(0.0, self.pace_s - (self.clock.monotonic() - began)))

    def read(self) -> list[Reading]:
        with self._lock:
            t = self.clock.now()
            if self.power.stale(t):
                last = f" ({self.last_error})" if self.last_error else ""
                raise ProbeError(f"no answer from the BMC for over {self.power.hold_s:g} s{last}: not counted "
                                 "until it answers again")
            energy, watts = self.power.energy_at(t), self.power.last_w
        return [Reading(self.devices[0], t, energy, watts)]

    def close(self) -> None:
        self._stop.set()
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()  # a slow BMC call must not hold up the end of the run
        if self._thread is not None:
            self._thread.join(timeout=TIMEOUT_S)


PROBES = (IpmiProbe,)
