"""A powercap-shaped tree (as under /sys/class/powercap) whose counters a thread advances at known power.

Layout, like the kernel's: a directory per zone, `intel-rapl:N` (or `amd-rapl:N`, or `intel-rapl-mmio:N`)
for packages with `intel-rapl:N:M` subzones inside, and top-level symlinks to every zone; each holds `name`,
`energy_uj`, `max_energy_range_uj`. Counters wrap at `max_energy_range_uj`.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from footprint.common.fakeclock import FakeClock
from tests.fakes.writer import CounterWriter


@dataclass
class Zone:
    path: str  # e.g. "intel-rapl:0", "intel-rapl:0:2", "amd-rapl:1"
    name: str  # package-0, core, uncore, dram, psys
    power_w: float
    range_uj: int = 262_143_328_850


class PowercapTree(CounterWriter):
    def __init__(self, root: Path, zones: list[Zone], *, period_s: float = 0.001,
                 clock: FakeClock | None = None) -> None:
        self.root = root
        self.zones = zones
        self.period_s = period_s
        self.clock = clock
        self.t0 = time.time() if clock is None else clock.now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._removed: set[str] = set()
        self._lock = threading.Lock()
        self._fds: dict[str, int] = {}
        root.mkdir(parents=True, exist_ok=True)
        for z in zones:
            parts = z.path.split(":")
            if len(parts) == 3:
                zdir = root / f"{parts[0]}:{parts[1]}" / z.path
                (root / z.path).parent.mkdir(parents=True, exist_ok=True)
                zdir.mkdir(parents=True, exist_ok=True)
                link = root / z.path
                if not link.exists():
                    os.symlink(os.path.relpath(zdir, root), link)
            else:
                zdir = root / z.path
                zdir.mkdir(parents=True, exist_ok=True)
            (zdir / "name").write_text(z.name + "\n")
            (zdir / "max_energy_range_uj").write_text(f"{z.range_uj}\n")
            (zdir / "enabled").write_text("1\n")
        # the control-type folder as the kernel has it: intel-rapl/ (or amd-rapl/) with its zones inside and
        # subsystem -> the class folder (tools other than ours look there)
        for z in zones:
            ctl = root / z.path.split(":", 1)[0]
            ctl.mkdir(exist_ok=True)
            if not (ctl / "subsystem").exists():
                os.symlink("..", ctl / "subsystem")
            if z.path.count(":") == 1 and not (ctl / z.path).exists():
                os.symlink(os.path.join("..", z.path), ctl / z.path)
        self._write(self.t0)

    def zone_dir(self, z: Zone) -> Path:
        return (self.root / z.path).resolve()

    def energy_j(self, z: Zone, a: float, b: float) -> float:
        """Exact energy of zone z over [a, b] (constant power)."""
        return z.power_w * (b - a)

    def remove_counter(self, path: str) -> None:
        """Make a zone's energy_uj vanish, as when a driver is unloaded mid-run."""
        with self._lock:
            self._removed.add(path)
            z = next(z for z in self.zones if z.path == path)
            fd = self._fds.pop(path, None)
            if fd is not None:
                os.close(fd)
            (self.zone_dir(z) / "energy_uj").unlink()

    def _write(self, t: float) -> None:
        with self._lock:
            self._write_locked(t)

    def _write_locked(self, t: float) -> None:
        # In place, as sysfs behaves (one inode whose content changes), and cheaply: a new file and a rename
        # every 2 ms made ext4's journal stall the writer on slow disks, leaving counters stale for tens of
        # ms. Fixed width, so a value never leaves digits of a longer one behind.
        for z in self.zones:
            if z.path in self._removed:
                continue
            total_uj = int(z.power_w * (t - self.t0) * 1e6)
            fd = self._fds.get(z.path)
            if fd is None:
                fd = self._fds[z.path] = os.open(self.zone_dir(z) / "energy_uj", os.O_WRONLY | os.O_CREAT, 0o644)
            os.pwrite(fd, f"{total_uj % z.range_uj:<20}\n".encode(), 0)

    def _tick(self, t: float) -> None:
        self._write(t)

    def __enter__(self) -> PowercapTree:
        self._start()
        return self



def standard_zones(range_uj: int = 262_143_328_850) -> list[Zone]:
    """Two packages with core/uncore/dram subzones, plus psys: only package and dram must count."""
    return [
        Zone("intel-rapl:0", "package-0", 40.0, range_uj),
        Zone("intel-rapl:0:0", "core", 25.0, range_uj),
        Zone("intel-rapl:0:1", "uncore", 5.0, range_uj),
        Zone("intel-rapl:0:2", "dram", 6.0, range_uj),
        Zone("intel-rapl:1", "package-1", 30.0, range_uj),
        Zone("intel-rapl:1:0", "core", 20.0, range_uj),
        Zone("intel-rapl:1:1", "dram", 4.0, range_uj),
        Zone("intel-rapl:2", "psys", 100.0, range_uj),
    ]


def amd_rapl_zones(range_uj: int = 262_143_328_850) -> list[Zone]:
    """An AMD EPYC two-socket layout on kernels with an `amd-rapl` control type: package-N zones with core
    subzones (skipped: they sit inside the package) and no dram zone."""
    return [
        Zone("amd-rapl:0", "package-0", 90.0, range_uj),
        Zone("amd-rapl:0:0", "core", 60.0, range_uj),
        Zone("amd-rapl:1", "package-1", 70.0, range_uj),
        Zone("amd-rapl:1:0", "core", 50.0, range_uj),
    ]
