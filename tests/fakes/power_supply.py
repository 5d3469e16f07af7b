"""A sysfs-shaped /sys/class/power_supply with a laptop battery (BATn) and its AC adapter, at known power.

Each battery exposes one family of files, as drivers do (Documentation/ABI/testing/sysfs-class-power):
- "power": `power_now` (µW), with `energy_now` (µWh) beside it;
- "current": `current_now` (µA) and `voltage_now` (µV), with `charge_now` (µAh); `negative=True` writes the
  current below zero while discharging, as some drivers do;
- "energy": `energy_now` (µWh) only.
`status` is Discharging, Charging, Full or Not charging; `plug(True)` puts the machine on AC (status Charging,
AC `online` 1). The firmware renews the values every `update_s` (the files then hold the mean power over the
last update, and the energy at that update); `write(t)` writes what the firmware would show at time t, and a
writer thread does it every `period_s`, or, with `clock=` a fake clock, each time that clock moves.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from footprint.common.fakeclock import FakeClock
from tests.fakes.hwmon import _Segments
from tests.fakes.writer import CounterWriter


@dataclass(eq=False)
class Battery:
    power_w: float
    family: str = "power"  # power | current | energy
    voltage_v: float = 11.4
    negative: bool = False
    full_wh: float = 60.0


class PowerSupplyTree(CounterWriter):
    def __init__(self, root: Path, batteries: list[Battery], *, update_s: float = 0.0, period_s: float = 0.002,
                 t0: float | None = None, clock: FakeClock | None = None) -> None:
        self.root = root / "class" / "power_supply"
        self.batteries = batteries
        self.update_s = update_s
        self.period_s = period_s
        self.clock = clock
        self.t0 = t0 if t0 is not None else time.time() if clock is None else clock.now()
        self.on_ac = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._lock = threading.Lock()
        self._fds: dict[Path, int] = {}
        self._power = {id(b): _Segments(self.t0, b.power_w) for b in batteries}
        ac = self.root / "AC"
        ac.mkdir(parents=True, exist_ok=True)
        (ac / "type").write_text("Mains\n")
        for i in range(len(batteries)):
            d = self.root / f"BAT{i}"
            d.mkdir(parents=True, exist_ok=True)
            (d / "type").write_text("Battery\n")
            (d / "model_name").write_text(f"5B10W13{i}\n")
        self.write(self.t0)

    def set_power(self, b: Battery, watts: float, t: float | None = None) -> None:
        with self._lock:
            self._power[id(b)].set(time.time() if t is None else t, watts)

    def plug(self, on_ac: bool) -> None:
        with self._lock:
            self.on_ac = on_ac
        self.write(time.time())

    def energy_j(self, b: Battery, a: float, z: float) -> float:
        seg = self._power[id(b)]
        return seg.energy_j(z) - seg.energy_j(a)

    def _shown(self, b: Battery, t: float) -> tuple[float, float]:
        """(mean power, energy drawn since t0) as the firmware shows them at t: as of its last update."""
        seg = self._power[id(b)]
        if self.update_s <= 0:
            return seg.power_w(t), seg.energy_j(t)
        at = self.t0 + math.floor((t - self.t0) / self.update_s) * self.update_s
        if at <= self.t0:
            return seg.power_w(self.t0), 0.0
        return (seg.energy_j(at) - seg.energy_j(at - self.update_s)) / self.update_s, seg.energy_j(at)

    def write(self, t: float) -> None:
        with self._lock:
            self._put(self.root / "AC" / "online", "1" if self.on_ac else "0")
            for i, b in enumerate(self.batteries):
                d = self.root / f"BAT{i}"
                watts, used_j = self._shown(b, t)
                self._put(d / "status", "Charging" if self.on_ac else "Discharging")
                energy_uwh = round((b.full_wh - used_j / 3600) * 1e6)
                if b.family == "power":
                    self._put(d / "power_now", str(round(watts * 1e6)))
                    self._put(d / "energy_now", str(energy_uwh))
                elif b.family == "current":
                    amps = watts / b.voltage_v
                    self._put(d / "voltage_now", str(round(b.voltage_v * 1e6)))
                    self._put(d / "current_now", str(round(-amps * 1e6 if b.negative else amps * 1e6)))
                    self._put(d / "charge_now", str(round((b.full_wh / b.voltage_v - used_j / 3600 / b.voltage_v)
                                                          * 1e6)))
                else:
                    self._put(d / "energy_now", str(energy_uwh))

    def _put(self, path: Path, text: str) -> None:
        fd = self._fds.get(path)
        if fd is None:
            fd = self._fds[path] = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        os.pwrite(fd, f"{text:<20}\n".encode(), 0)  # in place and fixed width, as the other fakes

    def _tick(self, t: float) -> None:
        self.write(t)

    def __enter__(self) -> PowerSupplyTree:
        self._start()
        return self
