"""A sysfs-shaped tree (as under /sys) with hwmon energy counters and power rails that move at known power.

Layout, like the kernel's:
- `class/hwmon/hwmonK/` with `name` and, per chip, `energyN_input` (µJ, with `energyN_label`) for energy
  counters, or power-monitor channels: `inN_input` (mV) and `currN_input` (mA) with `inN_label` (ina3221),
  or `powerN_input` (µW) with `powerN_label` (ina238 and other ina2xx chips);
- a GPU's hwmon under its PCI device, `devices/pci0000:00/<bdf>/hwmon/hwmonK`, with `drm/cardN` beside it,
  `class/drm/cardN` and `class/hwmon/hwmonK` linking there (i915, xe);
- Jetson's older ina3221x IIO devices: `bus/i2c/drivers/ina3221x/<addr>/iio:device0/` with `rail_name_N`
  and `in_powerN_input` (mW), `in_currentN_input` (mA), `in_voltageN_input` (mV).

Energy counters hold the exact integral of their power since the tree started (plus `offset_uj`), modulo
`range_uj`. Power changes with `set_power(thing, watts, t)` and the integral stays exact across the step.
A writer thread refreshes every file every `period_s`; without the thread (`write(t)` called by the test on a
fake clock) a test controls every value the probe sees.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from footprint.common.fakeclock import FakeClock
from tests.fakes.writer import CounterWriter


@dataclass(eq=False)
class Counter:
    """One `energyN_input` counter."""

    label: str | None
    power_w: float
    range_uj: int = 1 << 64
    offset_uj: int = 0
    channel: int = 1


@dataclass(eq=False)
class Rail:
    """One power-monitor channel. style: "in_curr" (mV x mA), "power" (µW), "iio" (in_powerN_input, mW),
    "average" (`powerN_average` µW, as the ACPI power_meter driver gives it)."""

    label: str
    power_w: float
    style: str = "in_curr"
    voltage_mv: float = 5000.0
    channel: int = 1


@dataclass(eq=False)
class Chip:
    name: str  # the hwmon `name`: i915, xe, amd_energy, ina3221, ina238, ... (ina3221x for an IIO device)
    counters: list[Counter] = field(default_factory=list)
    rails: list[Rail] = field(default_factory=list)
    drm_card: int | None = None  # a GPU: lives under its PCI device, with class/drm/cardN
    iio: bool = False  # Jetson's ina3221x IIO layout instead of hwmon
    update_interval_ms: int | None = None  # the driver's `update_interval`, where it has one
    average_interval_ms: int | None = None  # acpi_power_meter's `power1_average_interval`


class _Segments:
    """Piecewise-constant power and its exact integral."""

    def __init__(self, t0: float, power_w: float) -> None:
        self.steps = [(t0, 0.0, power_w)]  # (from t, energy at t in J, power from t)

    def set(self, t: float, power_w: float) -> None:
        self.steps.append((t, self.energy_j(t), power_w))

    def _step(self, t: float) -> tuple[float, float, float]:
        return next((s for s in reversed(self.steps) if t >= s[0]), self.steps[0])

    def power_w(self, t: float) -> float:
        return self._step(t)[2]

    def energy_j(self, t: float) -> float:
        t_from, e, p = self._step(t)
        return e + p * max(0.0, t - t_from)


class SysfsTree(CounterWriter):
    def __init__(self, root: Path, chips: list[Chip], *, period_s: float = 0.001, t0: float | None = None,
                 clock: FakeClock | None = None) -> None:
        self.root = root
        self.chips = chips
        self.period_s = period_s
        self.clock = clock
        self.t0 = t0 if t0 is not None else time.time() if clock is None else clock.now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._lock = threading.Lock()
        self._fds: dict[Path, int] = {}
        self._power: dict[int, _Segments] = {}
        self._files: list[tuple[Counter | Rail, Path, str]] = []  # (thing, file, what it holds)
        hw = 0
        for i, chip in enumerate(chips):
            if chip.iio:
                base = root / "bus" / "i2c" / "drivers" / chip.name / f"1-004{i}" / "iio:device0"
                base.mkdir(parents=True, exist_ok=True)
                (base / "name").write_text(f"{chip.name}\n")
            else:
                if chip.drm_card is not None:
                    pci = root / "devices" / "pci0000:00" / f"0000:{3 + i:02x}:00.0"
                    base = pci / "hwmon" / f"hwmon{hw}"
                    card = pci / "drm" / f"card{chip.drm_card}"
                    card.mkdir(parents=True, exist_ok=True)
                    _link(card / "device", pci)
                    _link(root / "class" / "drm" / f"card{chip.drm_card}", card)
                    base.mkdir(parents=True, exist_ok=True)
                    _link(root / "class" / "hwmon" / f"hwmon{hw}", base)
                else:
                    base = root / "class" / "hwmon" / f"hwmon{hw}"
                    base.mkdir(parents=True, exist_ok=True)
                hw += 1
                (base / "name").write_text(f"{chip.name}\n")
                if chip.update_interval_ms is not None:
                    (base / "update_interval").write_text(f"{chip.update_interval_ms}\n")
                if chip.average_interval_ms is not None:
                    (base / "power1_average_interval").write_text(f"{chip.average_interval_ms}\n")
            for c in chip.counters:
                self._power[id(c)] = _Segments(self.t0, c.power_w)
                if c.label is not None:
                    (base / f"energy{c.channel}_label").write_text(f"{c.label}\n")
                self._files.append((c, base / f"energy{c.channel}_input", "uj"))
            for r in chip.rails:
                self._power[id(r)] = _Segments(self.t0, r.power_w)
                n = r.channel
                if r.style == "iio":
                    (base / f"rail_name_{n}").write_text(f"{r.label}\n")
                    self._files += [(r, base / f"in_power{n}_input", "mw"), (r, base / f"in_current{n}_input", "ma"),
                                    (r, base / f"in_voltage{n}_input", "mv")]
                elif r.style == "average":
                    self._files.append((r, base / f"power{n}_average", "uw"))
                elif r.style == "power":
                    (base / f"power{n}_label").write_text(f"{r.label}\n")
                    self._files += [(r, base / f"power{n}_input", "uw"), (r, base / f"in{n}_input", "mv")]
                else:
                    (base / f"in{n}_label").write_text(f"{r.label}\n")
                    self._files += [(r, base / f"in{n}_input", "mv"), (r, base / f"curr{n}_input", "ma")]
        self.write(self.t0)

    def set_power(self, thing: Counter | Rail, power_w: float, t: float | None = None) -> None:
        with self._lock:
            self._power[id(thing)].set(time.time() if t is None else t, power_w)

    def energy_j(self, thing: Counter | Rail, a: float, b: float) -> float:
        """The exact energy of a counter or rail over [a, b]."""
        seg = self._power[id(thing)]
        return seg.energy_j(b) - seg.energy_j(a)

    def counter_uj(self, c: Counter, t: float) -> int:
        return (c.offset_uj + int(self._power[id(c)].energy_j(t) * 1e6)) % c.range_uj

    def write(self, t: float) -> None:
        with self._lock:
            for thing, path, what in self._files:
                if what == "uj":
                    assert isinstance(thing, Counter)
                    value = self.counter_uj(thing, t)
                else:
                    assert isinstance(thing, Rail)
                    p = self._power[id(thing)].power_w(t)
                    value = {"mv": round(thing.voltage_mv), "ma": round(p / thing.voltage_mv * 1e6),
                             "mw": round(p * 1e3), "uw": round(p * 1e6)}[what]
                fd = self._fds.get(path)
                if fd is None:
                    fd = self._fds[path] = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
                # in place and fixed width, as sysfs behaves (see the powercap fake)
                os.pwrite(fd, f"{value:<20}\n".encode(), 0)

    def _tick(self, t: float) -> None:
        self.write(t)

    def __enter__(self) -> SysfsTree:
        self._start()
        return self



def _link(link: Path, target: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        os.symlink(os.path.relpath(target, link.parent), link)


def intel_gpus() -> list[Chip]:
    """An Arc card on i915 (energy1 only) and a Data Center GPU Max-class card on xe (card and pkg counters:
    the card counter includes the package, so only it counts)."""
    return [
        Chip("i915", [Counter(None, 120.0)], drm_card=0),
        Chip("xe", [Counter("card", 300.0, channel=1), Counter("pkg", 250.0, channel=2)], drm_card=1),
    ]


def amd_energy_chip(sockets: int = 2, cores_per_socket: int = 2) -> Chip:
    """amd_energy: Ecore counters (inside their socket: not counted) then Esocket counters."""
    counters = [Counter(f"Ecore{c:03d}", 5.0, channel=c + 1) for c in range(sockets * cores_per_socket)]
    n = len(counters)
    counters += [Counter(f"Esocket{s}", 80.0 + 10 * s, channel=n + s + 1) for s in range(sockets)]
    return Chip("amd_energy", counters)


def orin_agx() -> list[Chip]:
    """Jetson AGX Orin: two INA3221 (hwmon layout): GPU+SoC, CPU+CV, the module's 5 V input; memory."""
    return [
        Chip("ina3221", rails=[Rail("VDD_GPU_SOC", 9.0, channel=1), Rail("VDD_CPU_CV", 4.0, channel=2),
                               Rail("VIN_SYS_5V0", 20.0, channel=3)], update_interval_ms=140),
        Chip("ina3221", rails=[Rail("NC", 0.0, channel=1), Rail("VDDQ_VDD2_1V8AO", 1.5, channel=2)],
             update_interval_ms=140),
    ]


def acpi_power_meter(watts: float = 420.0, interval_ms: int = 1000) -> Chip:
    """The ACPI power meter (acpi_power_meter driver): the whole machine's mean power in `power1_average` (µW)
    over `power1_average_interval` (ms), as server firmware reports it."""
    return Chip("power_meter", rails=[Rail("", watts, style="average")], average_interval_ms=interval_ms)
