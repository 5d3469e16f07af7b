"""The whole machine's power from the ACPI power meter (`acpi_power_meter`, hwmon chip `power_meter`).

Servers whose firmware implements the ACPI power meter device (ACPI000D: most Dell, HPE, Lenovo and Supermicro
boards, read by the BMC at the PSUs' input) expose it in hwmon:
- `power1_average`: the mean power in µW over the last averaging interval;
- `power1_average_interval`: that interval in ms, which is the update period of the figure.

It covers everything the PSUs feed: CPUs, memory, GPUs, fans, disks, NICs and the PSUs' own loss. So it is a
device of kind `node`, reported beside the components and never added to them (footprint.core.model). The
meter gives power, not energy: footprint integrates its reads over time (trapezoid), so the energy is as good as
the read interval and the firmware's averaging. Meters with `power1_is_battery` = 1 measure a battery, not the
wall: they are left out (the battery probe reads those).

`FOOTPRINT_SYSFS` points it at another root than /sys, as for every sysfs probe.
"""

from __future__ import annotations

from pathlib import Path

from .base import Availability, Device, PowerIntegrator, Probe, ProbeError, Reading
from .hwmon import hwmon_dirs, read_int, read_text, sysfs_root

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .base import Clock

CHIP = "power_meter"
SOURCE = "acpi-power-meter"


class Meter:
    """One ACPI power meter: where its mean power is, and how often the firmware renews it."""

    __slots__ = ("hwmon", "path", "update_period_s")

    def __init__(self, hwmon: Path, update_period_s: float) -> None:
        self.hwmon = hwmon
        self.path = str(hwmon / "power1_average")
        self.update_period_s = update_period_s

    def watts(self) -> float:
        return read_int(self.path) * 1e-6  # µW


def find_meters(root: Path) -> list[Meter]:
    """Every ACPI power meter under root that measures the wall (not a battery)."""
    meters = []
    for d in hwmon_dirs(root):
        if read_text(d / "name") != CHIP or not (d / "power1_average").exists():
            continue
        if read_text(d / "power1_is_battery") == "1":
            continue
        interval_ms = read_text(d / "power1_average_interval")
        period = int(interval_ms) / 1000 if interval_ms and interval_ms.isdigit() else 0.0
        meters.append(Meter(d, period))
    return meters


class PowerMeterProbe(Probe):
    name = "powermeter"
    kinds = ("node",)
    node_kinds = kinds  # the whole machine: once per node in a distributed job

    def __init__(self, root: str | Path | None = None, *, clock: Clock | None = None) -> None:
        super().__init__(clock=clock)
        self.root = Path(root) if root is not None else sysfs_root()
        self._meters: list[Meter] = []
        self._integrators: list[PowerIntegrator] = []

    @classmethod
    def availability(cls, root: str | Path | None = None) -> Availability:
        base = Path(root) if root is not None else sysfs_root()
        try:
            meters = find_meters(base)
        except OSError as exc:
            return Availability(False, f"cannot list hwmon devices under {base}: {exc.strerror}")
        if not meters:
            return Availability(False, f"no ACPI power meter (hwmon '{CHIP}') under {base}/class/hwmon (servers "
                                       "whose firmware has one need the acpi_power_meter module)")
        for m in meters:
            try:
                m.watts()
            except PermissionError:
                return Availability(False, f"cannot read {m.path}: grant read access with `sudo chmod a+r` on it, "
                                           "or run as root")
            except (OSError, ValueError) as exc:
                return Availability(False, f"cannot read {m.path}: {exc}")
        periods = ", ".join(f"{m.hwmon.name} every {m.update_period_s:g} s" if m.update_period_s
                            else m.hwmon.name for m in meters)
        return Availability(True, f"ACPI power meter: the whole node ({periods})", ("node",))

    def open(self) -> list[Device]:
        meters = find_meters(self.root)
        if not meters:
            raise ProbeError(f"no ACPI power meter under {self.root}")
        for i, m in enumerate(meters):
            t = self.clock.now()  # before the read, which lets go of the GIL (see NvmlProbe.read)
            try:
                watts = m.watts()
            except (OSError, ValueError) as exc:
                raise ProbeError(f"cannot read {m.path}: {exc}") from exc
            integ = PowerIntegrator()
            integ.add(t, watts)
            self._meters.append(m)
            self._integrators.append(integ)
            every = f" over {m.update_period_s:g} s" if m.update_period_s else ""
            self.devices.append(Device(
                kind="node", index=i, name=f"ACPI power meter ({m.hwmon.name})", source=SOURCE, measured=True,
                update_period_s=m.update_period_s,
                note=f"whole node at the PSU input (fans, disks, NICs and PSU loss included): the firmware's mean "
                     f"power{every}, integrated over footprint's reads (trapezoid)"))
        return self.devices

    def read(self) -> list[Reading]:
        out: list[Reading] = []
        for m, integ, dev in zip(self._meters, self._integrators, self.devices, strict=False):
            t = self.clock.now()  # before the read, which lets go of the GIL (see NvmlProbe.read)
            try:
                watts = m.watts()
            except (OSError, ValueError) as exc:
                self.errors[dev.key] = f"{m.path}: {exc}"
                continue
            out.append(Reading(dev, t, integ.add(t, watts), watts))
        if self._meters and not out:
            raise ProbeError("no ACPI power meter could be read: " + "; ".join(self.errors.values()))
        return out


PROBES = (PowerMeterProbe,)
