"""A laptop on battery: the whole machine's power from `/sys/class/power_supply/BAT*` (kind `node`).

What a battery gives is everything the laptop draws (CPU, GPU, screen, disks, radios), so it is a node figure,
reported beside the components (RAPL and the rest) and never added to them. Drivers expose one family of files
(Documentation/ABI/testing/sysfs-class-power):
- `power_now` (µW), read as is; or
- `current_now` (µA) x `voltage_now` (µV), where there is no `power_now`;
- `energy_now` (µWh) alone: the energy is the fall of the charge between reads.
The sign of power_now and current_now differs between drivers (some are negative while discharging), so the
magnitude is used and `status` says the direction: only "Discharging" is measured. On AC (Charging, Full,
Not charging) the battery says nothing about the machine: the probe is not available, and the other probes
measure; a battery that goes on AC mid-run is a gap (the sampler records why), and measuring resumes from the
next read once it discharges again, the time in between not counted.

Firmware renews these values from every second to once a minute (a mean over that time): the probe watches how
often the value changes and says so once it knows (a warning on the run: windows shorter than that are
unreliable). Power is integrated over the reads (trapezoid); energy_now is used as is.

`FOOTPRINT_SYSFS` points it at another root than /sys, as for every sysfs probe.
"""

from __future__ import annotations

from pathlib import Path

from .base import Availability, Device, PowerIntegrator, Probe, ProbeError, Reading
from .hwmon import read_int, read_text, sysfs_root

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .base import Clock

DISCHARGING = "Discharging"


class Cell:
    """One battery: which family of files it has, and how to turn them into watts (or µWh)."""

    __slots__ = ("path", "family", "source")

    def __init__(self, path: Path) -> None:
        self.path = path
        if (path / "power_now").exists():
            self.family, what = "power", "power_now"
        elif (path / "current_now").exists() and (path / "voltage_now").exists():
            self.family, what = "current", "current_now*voltage_now"
        elif (path / "energy_now").exists():
            self.family, what = "energy", "energy_now"
        else:
            self.family, what = "", ""
        self.source = f"battery:{what}"

    @property
    def name(self) -> str:
        return self.path.name

    def status(self) -> str:
        return read_text(self.path / "status") or "Unknown"

    def value(self) -> float:
        """Watts (power and current families, sign dropped: `status` gives the direction), or µWh (energy)."""
        if self.family == "power":
            return abs(read_int(self.path / "power_now")) * 1e-6
        if self.family == "current":
            return abs(read_int(self.path / "current_now")) * abs(read_int(self.path / "voltage_now")) * 1e-12
        return float(read_int(self.path / "energy_now"))


def find_batteries(root: Path) -> list[Cell]:
    """The machine's batteries (type Battery, not a mouse's or a headset's: scope Device), with a family of files
    to read."""
    cells = []
    try:
        found = sorted((root / "class" / "power_supply").glob("*"))
    except OSError:  # a sysfs this user may not list (another user's tree, a locked-down container): no battery
        return []
    for d in found:
        if read_text(d / "type") != "Battery" or read_text(d / "scope") == "Device":
            continue
        cell = Cell(d)
        if cell.family:
            cells.append(cell)
    return cells


class Meter:
    """The energy of one battery since the probe opened: what it gave while discharging, with gaps on AC."""

    __slots__ = ("cell", "energy_j", "integ", "last_uwh", "changes", "last_value", "last_change_t")

    def __init__(self, cell: Cell) -> None:
        self.cell = cell
        self.energy_j = 0.0
        self.integ: PowerIntegrator | None = None  # power families; None: between a gap and the next read
        self.last_uwh: float | None = None  # energy family
        self.changes: list[float] = []  # times the firmware renewed the value: its update period
        self.last_value: float | None = None
        self.last_change_t: float | None = None

    def add(self, t: float, value: float) -> tuple[float, float | None]:
        """A read while discharging -> (cumulative J, watts or None)."""
        if value != self.last_value:
            if self.last_value is not None and self.last_change_t is not None:
                self.changes.append(t - self.last_change_t)
            self.last_value, self.last_change_t = value, t
        if self.cell.family == "energy":
            if self.last_uwh is not None and value < self.last_uwh:
                self.energy_j += (self.last_uwh - value) * 3.6e-3  # µWh -> J
            self.last_uwh = value
            return self.energy_j, None
        if self.integ is None:
            self.integ = PowerIntegrator(self.energy_j)
        self.energy_j = self.integ.add(t, value)
        return self.energy_j, value

    def gap(self) -> None:
        """On AC: the next read starts afresh, counting nothing for the time in between."""
        self.integ, self.last_uwh, self.last_value, self.last_change_t = None, None, None, None

    def update_period_s(self) -> float | None:
        """The firmware's update period once two renewals were seen: the median time between them."""
        if len(self.changes) < 2:
            return None
        ordered = sorted(self.changes)
        return ordered[len(ordered) // 2]


class BatteryProbe(Probe):
    name = "battery"
    kinds = ("node",)
    node_kinds = kinds

    def __init__(self, root: str | Path | None = None, *, clock: Clock | None = None) -> None:
        super().__init__(clock=clock)
        self.root = Path(root) if root is not None else sysfs_root()
        self._meters: list[Meter] = []
        self._said_period: set[str] = set()
        self._gaps = 0

    @classmethod
    def availability(cls, root: str | Path | None = None) -> Availability:
        base = Path(root) if root is not None else sysfs_root()
        cells = find_batteries(base)
        if not cells:
            return Availability(False, f"no battery under {base}/class/power_supply")
        statuses = {c.name: c.status() for c in cells}
        if DISCHARGING not in statuses.values():
            what = ", ".join(f"{n} {s}" for n, s in statuses.items())
            return Availability(False, f"on AC power ({what}): a battery measures the machine only while it "
                                       "discharges; the other probes measure")
        for c in cells:
            try:
                c.value()
            except (OSError, ValueError) as exc:
                return Availability(False, f"cannot read {c.path}: {exc}")
        what = ", ".join(f"{c.name} ({c.source})" for c in cells)
        return Availability(True, f"on battery: the whole machine from {what}", ("node",))

    def open(self) -> list[Device]:
        cells = find_batteries(self.root)
        if not cells:
            raise ProbeError(f"no battery under {self.root}/class/power_supply")
        if all(c.status() != DISCHARGING for c in cells):
            raise ProbeError("on AC power: a battery measures the machine only while it discharges")
        for i, c in enumerate(cells):
            meter = Meter(c)
            self._meters.append(meter)
            how = ("the fall of energy_now (µWh)" if c.family == "energy" else
                   f"{c.source.split(':')[1]} integrated over footprint's reads (trapezoid), its sign dropped "
                   "(status says Discharging)")
            self.devices.append(Device(
                kind="node", index=i, name=f"battery {c.name}" + (f" ({m})" if (m := read_text(c.path / "model_name"))
                                                                   else ""),
                source=c.source, measured=True,
                note=f"whole machine while on battery (screen, radios and disks included): {how}; time on AC is "
                     "not counted"))
            if c.status() == DISCHARGING:
                t = self.clock.now()  # before the read, which lets go of the GIL (see NvmlProbe.read)
                meter.add(t, c.value())
        return self.devices

    def read(self) -> list[Reading]:
        out: list[Reading] = []
        on_ac: list[str] = []
        for meter, dev in zip(self._meters, self.devices, strict=False):
            c = meter.cell
            try:
                status = c.status()
                if status != DISCHARGING:
                    if meter.integ is not None or meter.last_uwh is not None:
                        self._gaps += 1
                        meter.gap()
                    on_ac.append(f"{c.name} {status}")
                    continue
                t = self.clock.now()  # before the read, which lets go of the GIL (see NvmlProbe.read)
                value = c.value()
            except (OSError, ValueError) as exc:
                self.errors[dev.key] = f"{c.path}: {exc}"
                continue
            energy, watts = meter.add(t, value)
            out.append(Reading(dev, t, energy, watts))
            period = meter.update_period_s()
            if period is not None and period > 0.5 and dev.key not in self._said_period:
                self._said_period.add(dev.key)  # once: a finding, recorded with the run's events
                self.errors[dev.key] = (f"{c.name}'s firmware renews {c.source.split(':')[1]} about every "
                                        f"{period:.3g} s: windows shorter than that are unreliable")
        if on_ac and not out:
            raise ProbeError(f"on AC power ({', '.join(on_ac)}; gap {self._gaps}): the node figure stops here and "
                             "resumes when the battery discharges again, the time between not counted (so the node "
                             "figure and the unattributed rest cover the time on battery only)")
        if self._meters and not out and not on_ac:
            raise ProbeError("no battery could be read: " + "; ".join(self.errors.values()))
        return out


PROBES = (BatteryProbe,)
