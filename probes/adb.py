"""An Android phone over adb (`footprint run --adb [SERIAL] -- adb shell ...`): the phone is measured, not the host.

Two sources, the first the phone has:
- **On-device power monitors** (Pixel 6 and later, and other phones whose power stats HAL has energy meters):
  `adb shell dumpsys android.hardware.power.stats.IPowerStats/default` prints, in its "PowerStats HAL 2.0
  energy meter" section, each rail's energy since boot ("[S4M_VDD_CPUCL0]:CPU(LITTLE)   12345.67 mWs"). Those
  are energy counters: the energy between two reads is exact however far apart they are. The node figure is the
  sum of every rail; rails whose subsystem names a component are also read as that component: CPU(...) is
  `cpu`, GPU `gpu`, Memory or DDR `ram`, TPU `tpu`. The other rails (display, modem, radios, camera, ...) are in
  the node figure only, so they make up its unattributed rest.
- **The battery** otherwise: `/sys/class/power_supply/battery/current_now` x `voltage_now`, integrated over
  the reads (trapezoid), as the node figure. Units and sign differ by vendor: the voltage is in µV when above
  100 000, else mV; the current in µA when its magnitude is at least 10 000, else mA (phones draw from ~10 mA
  to a few A); the sign is dropped and `status` says the direction. What was assumed is in the device's note.
  While the phone charges (USB power), the battery says nothing about what the phone draws: that time is a gap
  (the sampler records why), not a figure.

A phone that disconnects mid-run is a gap as well; rail counters resume where they are, so the energy of the
gap is still counted between the reads around it, while the battery's is not.
"""

from __future__ import annotations

import re
import subprocess

from .base import Availability, Device, PowerIntegrator, Probe, ProbeError, Reading

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .base import Clock

SERVICE = "android.hardware.power.stats.IPowerStats/default"
ON_CHARGE = ("Charging", "Full")  # on USB power: the battery does not see what the phone draws
BATTERY = "/sys/class/power_supply/battery/"
METER_START = "PowerStats HAL 2.0 energy meter"
TIMEOUT_S = 20.0
_CHANNEL = re.compile(r"^\s*\[(?P<rail>[^\]]+)\]:?(?P<subsystem>\S*)\s+(?P<mws>-?\d+(?:\.\d+)?)\s*mWs")
# rail subsystem -> component kind (the rest is in the node figure only)
SUBSYSTEMS = (("CPU", "cpu"), ("GPU", "gpu"), ("MEMORY", "ram"), ("DDR", "ram"), ("TPU", "tpu"))
KINDS = ("node", "cpu", "gpu", "ram", "tpu")


def run_adb(args: list[str], adb: str = "adb") -> str:
    try:
        proc = subprocess.run([adb, *args], capture_output=True, text=True, timeout=TIMEOUT_S,
                              stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise ProbeError(f"{adb} not found on PATH (install Android's platform-tools)") from None
    except subprocess.TimeoutExpired:
        raise ProbeError(f"adb {' '.join(args)} did not answer within {TIMEOUT_S:g} s") from None
    if proc.returncode != 0:
        why = (proc.stderr.strip() or proc.stdout.strip() or f"exit status {proc.returncode}").splitlines()[0]
        raise ProbeError(f"adb {' '.join(args)}: {why}")
    return proc.stdout


def parse_devices(text: str) -> dict[str, str]:
    """`adb devices` -> {serial: state} (device, unauthorized, offline, ...)."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and not line.startswith(("List of devices", "*")):
            out[parts[0]] = parts[1]
    return out


def choose_serial(given: str | None, adb: str = "adb") -> str:
    """The phone to measure: `given`, checked against `adb devices`, or the only one attached."""
    found = parse_devices(run_adb(["devices"], adb))
    ready = [s for s, state in found.items() if state == "device"]
    if given:
        if found.get(given) == "device":
            return given
        if given in found:
            hint = " (accept the debugging prompt on the phone)" if found[given] == "unauthorized" else ""
            raise ProbeError(f"phone {given} is {found[given]}{hint}")
        raise ProbeError(f"no phone {given} attached (adb devices lists: {', '.join(found) or 'none'})")
    if not ready:
        listed = f" ({', '.join(f'{s} {st}' for s, st in found.items())})" if found else ""
        raise ProbeError(f"no phone ready over adb{listed}: plug one in with USB debugging on")
    if len(ready) > 1:
        raise ProbeError(f"several phones attached ({', '.join(ready)}): pass --adb SERIAL")
    return ready[0]


def parse_rails(text: str) -> dict[str, tuple[str, float]]:
    """The power stats dump -> {rail: (subsystem, energy since boot in J)}; {} when it has no energy meters."""
    rails: dict[str, tuple[str, float]] = {}
    inside = False
    for line in text.splitlines():
        if METER_START in line:
            inside = "End of" not in line  # the section's header starts it, its "End of" line ends it
            continue
        if inside and (m := _CHANNEL.match(line)):
            rails[m.group("rail")] = (m.group("subsystem"), float(m.group("mws")) * 1e-3)  # mWs -> J
    return rails


def rail_kind(subsystem: str) -> str | None:
    up = subsystem.upper()
    return next((kind for prefix, kind in SUBSYSTEMS if up.startswith(prefix)), None)


def battery_watts(current: int, voltage: int) -> tuple[float, str]:
    """Battery current and voltage as the phone reports them -> (watts, what was assumed about units and sign)."""
    volts, v_unit = (voltage * 1e-6, "µV") if abs(voltage) > 100_000 else (voltage * 1e-3, "mV")
    amps, a_unit = (abs(current) * 1e-6, "µA") if abs(current) >= 10_000 else (abs(current) * 1e-3, "mA")
    sign = "negative" if current < 0 else "positive"
    return amps * abs(volts), f"current_now in {a_unit} ({sign} while discharging), voltage_now in {v_unit}"


class AdbProbe(Probe):
    name = "adb"
    kinds = KINDS
    node_kinds = KINDS

    def __init__(self, serial: str, *, adb: str = "adb", clock: Clock | None = None) -> None:
        super().__init__(clock=clock)
        self.serial = serial
        self.adb = adb
        self.mode = ""
        self._groups: list[list[str]] = []  # per device: the rails it adds up
        self._last: dict[str, float] = {}  # per rail: its last energy since boot
        self._total: dict[str, float] = {}  # per rail: energy since open
        self._integ: PowerIntegrator | None = None
        self._energy_j = 0.0
        self._charging = 0

    @classmethod
    def availability(cls) -> Availability:
        return Availability(False, "a phone is measured with `footprint run --adb [SERIAL] -- adb shell ...` only")

    def _shell(self, *cmd: str) -> tuple[str, float]:
        """(the answer, when the phone read it: the middle of the call, the best guess from outside)"""
        start = self.clock.now()
        text = run_adb(["-s", self.serial, "shell", *cmd], self.adb)
        return text, (start + self.clock.now()) / 2

    def _battery(self) -> tuple[float, str, str, float]:
        text, t = self._shell("cat", *(BATTERY + f for f in ("current_now", "voltage_now", "status")))
        parts = text.split()
        if len(parts) < 3:
            raise ProbeError(f"phone {self.serial}: cannot read {BATTERY}current_now, voltage_now and status")
        try:
            watts, assumed = battery_watts(int(parts[0]), int(parts[1]))
        except ValueError:
            raise ProbeError(f"phone {self.serial}: unexpected battery values {' '.join(parts[:2])}") from None
        return watts, assumed, parts[2], t

    def open(self) -> list[Device]:
        text, _ = self._shell("dumpsys", SERVICE)
        rails = parse_rails(text)
        if rails:
            self.mode = "rails"
            self._last = {r: e for r, (_, e) in rails.items()}
            self._total = dict.fromkeys(rails, 0.0)
            names = ", ".join(f"{r}:{s}" if s else r for r, (s, _) in rails.items())
            self.devices.append(Device(
                kind="node", index=0, name=f"phone {self.serial} (power monitor rails)", source="adb:power-stats",
                measured=True, note=f"sum of the phone's power monitor rails (energy counters): {names}"))
            self._groups.append(list(rails))
            for kind in KINDS[1:]:
                mine = [r for r, (s, _) in rails.items() if rail_kind(s) == kind]
                if mine:
                    self.devices.append(Device(kind=kind, index=0, name=f"phone {self.serial} {kind.upper()} rails",
                                               source="adb:power-stats", measured=True,
                                               note=f"rails {', '.join(mine)} (also in the node figure)"))
                    self._groups.append(mine)
            return self.devices
        self.mode = "battery"
        watts, assumed, status, t = self._battery()
        self._integ = PowerIntegrator()
        if status not in ON_CHARGE:
            self._integ.add(t, watts)
        self.devices.append(Device(
            kind="node", index=0, name=f"phone {self.serial} (battery)", source="adb:battery", measured=True,
            note=f"no power monitor rails: the battery's current x voltage, integrated over footprint's reads "
                 f"(trapezoid); assumed {assumed}; time on charge is not counted"))
        return self.devices

    def read(self) -> list[Reading]:
        if self.mode == "rails":
            text, t = self._shell("dumpsys", SERVICE)
            rails = parse_rails(text)
            if not rails:
                raise ProbeError(f"phone {self.serial}: the power stats HAL gave no energy meter readings")
            for r, (_, e) in rails.items():
                if r in self._last:  # a counter below its last read: the phone rebooted; count from zero
                    self._total[r] += e - self._last[r] if e >= self._last[r] else e
                    self._last[r] = e
            return [Reading(dev, t, sum(self._total[r] for r in group))
                    for dev, group in zip(self.devices, self._groups, strict=True)]
        assert self._integ is not None
        try:
            watts, _, status, t = self._battery()
        except ProbeError:
            self._integ = PowerIntegrator(self._integ.energy_j)  # unplugged: the gap is not integrated over
            raise
        if status in ON_CHARGE:
            if self._integ.last_t is not None:
                self._charging += 1
                self._integ = PowerIntegrator(self._integ.energy_j)  # the next read starts afresh
            raise ProbeError(f"phone {self.serial} is charging (gap {self._charging}): over USB power its battery "
                             "says nothing about what it draws, so this time is not counted (use a phone with power "
                             "monitor rails, or one that does not charge from the host)")
        return [Reading(self.devices[0], t, self._integ.add(t, watts), watts)]


PROBES = (AdbProbe,)
