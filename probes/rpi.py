"""Raspberry Pi 5 power rails from its PMIC, through `vcgencmd pmic_read_adc`.

The Pi 5's PMIC measures twelve rails: a current line (`VDD_CORE_A current(7)=0.56259000A`) and a voltage line
(`VDD_CORE_V volt(15)=0.76798460V`) each. A rail's power is V x I; each read runs vcgencmd once, and the
power of the reads is integrated over time (trapezoid), so the energy is as good as the read interval.

Kinds: VDD_CORE, the BCM2712's core rail (its CPU cores, and the VideoCore GPU on the same rail), is `cpu`;
DDR_VDD2 and DDR_VDDQ are `ram`; the other rails (3.3 V and 1.8 V system rails, Wi-Fi, HDMI, ...) are
`board`. The sum is what the PMIC delivers: it excludes what the 5 V input feeds directly (USB devices, the
fan) and the PMIC's own conversion losses, so it is below what the power supply gives. EXT5V_V (the input)
and BATT_V have a voltage only and give no power. Older boards have no such ADC: they are estimated from their
board model (`rpiboard.py`).
"""

from __future__ import annotations

import re

from .base import Availability, Device, PowerIntegrator, Probe, ProbeError, Reading
from .stream import find_executable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .base import Clock

COMMAND = "pmic_read_adc"
TIMEOUT_S = 2.0
_LINE = re.compile(r"^\s*(\S+)_([AV])\s+(?:current|volt)\(\d+\)=([-+0-9.eE]+)[AV]\s*$")
CPU_RAILS = ("VDD_CORE",)
RAM_RAILS = ("DDR_VDD2", "DDR_VDDQ")
BOARD_RAILS = ("3V7_WL_SW", "3V3_SYS", "1V8_SYS", "1V1_SYS", "0V8_SW", "3V3_DAC", "3V3_ADC", "0V8_AON", "HDMI")
EXCLUDES = "excludes what the 5 V input feeds directly (USB devices, the fan) and the PMIC's own losses"
NO_PMIC = (f"vcgencmd {COMMAND} gives no power rails here (a Raspberry Pi 5's PMIC has them; older boards have "
           "no power ADC: they are estimated from their board model, see rpi-estimate)")


def parse_adc(text: str) -> dict[str, float]:
    """`pmic_read_adc` output -> {rail: W} for the rails with both a current and a voltage, in printed order."""
    amps: dict[str, float] = {}
    volts: dict[str, float] = {}
    for line in text.splitlines():
        m = _LINE.match(line)
        if m:
            (amps if m.group(2) == "A" else volts)[m.group(1)] = float(m.group(3))
    return {rail: volts[rail] * a for rail, a in amps.items() if rail in volts}


def kind_of(rail: str) -> str:
    return "cpu" if rail in CPU_RAILS else "ram" if rail in RAM_RAILS else "board"


# kind -> (source, name, note)
DEVICES = {
    "cpu": ("pmic:VDD_CORE", "Raspberry Pi 5 VDD_CORE (PMIC)",
            "VDD_CORE: the BCM2712's core rail, its CPU cores and the VideoCore GPU"),
    "ram": ("pmic:DDR_VDD2+DDR_VDDQ", "Raspberry Pi 5 DDR_VDD2 + DDR_VDDQ (PMIC)", "the LPDDR4X memory's rails"),
    "board": ("pmic:board", "Raspberry Pi 5 other rails (PMIC)", None),
}


def run_vcgencmd(executable: str) -> str:
    """The command's output; ProbeError with what it said when it fails."""
    import subprocess

    try:
        res = subprocess.run([executable, COMMAND], stdin=subprocess.DEVNULL, capture_output=True,
                             timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise ProbeError(f"vcgencmd {COMMAND} took over {TIMEOUT_S:g} s") from exc
    except OSError as exc:
        raise ProbeError(f"cannot run {executable}: {exc.strerror or exc}") from exc
    out = res.stdout.decode(errors="replace")
    if res.returncode != 0 and not parse_adc(out):
        said = (res.stderr.decode(errors="replace").strip() or out.strip()).splitlines()
        raise ProbeError(f"vcgencmd {COMMAND} failed (status {res.returncode})" + (f": {said[-1]}" if said else ""))
    return out


class RpiProbe(Probe):
    name = "rpi"
    kinds = ("cpu", "ram", "board")
    node_kinds = kinds  # a board's rails: once per node

    def __init__(self, *, clock: Clock | None = None) -> None:
        super().__init__(clock=clock)
        self._exe: str | None = None
        self._integrators: dict[str, PowerIntegrator] = {}
        self._last_good = 0.0  # time of the latest successful read
        self._failing = False

    @classmethod
    def availability(cls) -> Availability:
        exe = find_executable("vcgencmd")
        if exe is None:
            return Availability(False, "vcgencmd not found on PATH (Raspberry Pi OS has it; a Pi 5 gives its PMIC's "
                                       "rails through it, older boards are estimated)")
        try:
            rails = parse_adc(run_vcgencmd(exe))
        except ProbeError as exc:
            why = str(exc)
            if "VCHI" in why or "/dev/vcio" in why:
                why += ": add the user to the video group (`sudo usermod -aG video $USER`), or run as root"
            elif "Command not registered" in why:
                return Availability(False, NO_PMIC)
            return Availability(False, why)
        if not rails:
            return Availability(False, NO_PMIC)
        others = [r for r in rails if kind_of(r) == "board"]
        return Availability(True, f"Raspberry Pi 5 PMIC rails {'+'.join(CPU_RAILS)}->cpu, {'+'.join(RAM_RAILS)}->ram, "
                                  f"{len(others)} others->board, from {exe} {COMMAND}; {EXCLUDES}",
                            tuple(sorted({kind_of(r) for r in rails}, key=cls.kinds.index)))

    def _powers(self) -> tuple[float, dict[str, float], list[str]]:
        """(time of the read, W per kind, the rails read)."""
        assert self._exe is not None
        before = self.clock.now()
        rails = parse_adc(run_vcgencmd(self._exe))
        t = (before + self.clock.now()) / 2  # the PMIC was read while the command ran
        if not rails:
            raise ProbeError(NO_PMIC)
        power: dict[str, float] = {}
        for rail, watts in rails.items():
            power[kind_of(rail)] = power.get(kind_of(rail), 0.0) + watts
        return t, power, list(rails)

    def open(self) -> list[Device]:
        self._exe = find_executable("vcgencmd")
        if self._exe is None:
            raise ProbeError("vcgencmd not found on PATH")
        t, power, rails = self._powers()
        for kind in self.kinds:
            if kind not in power or (self.only_kinds is not None and kind not in self.only_kinds):
                continue
            source, name, note = DEVICES[kind]
            if kind == "board":
                note = f"rails {', '.join(r for r in rails if kind_of(r) == 'board')}; the rails' sum {EXCLUDES}"
            integ = PowerIntegrator()
            integ.add(t, power[kind])
            self._integrators[kind] = integ
            self.devices.append(Device(kind=kind, index=0, name=name, source=source, measured=True, note=note))
        if not self.devices:
            raise ProbeError(NO_PMIC)
        self._last_good = t
        return self.devices

    def read(self) -> list[Reading]:
        try:
            t, power, _ = self._powers()
        except ProbeError:
            self._failing = True
            raise
        if self._failing:
            for dev in self.devices:
                self.errors[dev.key] = (f"no reading for {t - self._last_good:.3g} s (vcgencmd failed): the energy "
                                        "in that gap is not counted")
            for integ in self._integrators.values():
                integ.last_t = None  # the gap is not bridged with a guess
            self._failing = False
        out: list[Reading] = []
        for dev in self.devices:
            integ = self._integrators[dev.kind]
            if dev.kind not in power:
                self.errors[dev.key] = f"vcgencmd {COMMAND} no longer lists this rail"
                integ.last_t = None
                continue
            out.append(Reading(dev, t, integ.add(t, power[dev.kind]), power[dev.kind]))
        self._last_good = t
        return out


PROBES = (RpiProbe,)
