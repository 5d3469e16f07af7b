"""CPU package and DRAM energy from the Linux powercap interface (Intel RAPL, and AMD on Linux >= 5.8).

AMD packages appear as `intel-rapl:N` zones on most kernels, and as an `amd-rapl` control type with
`amd-rapl:N` zones on others; both are read. `intel-rapl-mmio:N` is the same package counter reached
through MMIO and is skipped, as is any second zone for a package already found.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .base import Availability, Device, EnergyCounter, Probe, ProbeError, Reading

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .base import Clock

DEFAULT_ROOT = "/sys/class/powercap"
_ZONE = re.compile(r"^(?:intel-rapl|amd-rapl):(\d+)(?::(\d+))?$")
_PACKAGE = re.compile(r"^package(?:-(\d+))?")



def grant_hint(control: str = "intel-rapl") -> str:
    return (
        "energy_uj is readable only by root since Linux 5.10 (CVE-2020-8694); grant read access with "
        f"`sudo chmod a+r /sys/class/powercap/{control}:*/energy_uj /sys/class/powercap/{control}:*/*/energy_uj` "
        "(or a udev rule / systemd-tmpfiles entry to keep it across reboots), or run as root"
    )


GRANT_HINT = grant_hint()


def powercap_root() -> Path:
    # FOOTPRINT_POWERCAP lets containers that mount the host's sysfs elsewhere (and tests) point us at it.
    return Path(os.environ.get("FOOTPRINT_POWERCAP", DEFAULT_ROOT))


def unwrap(prev_uj: int, cur_uj: int, range_uj: int, expected_uj: float | None = None) -> int:
    """Energy in µJ between two reads of a counter that wraps at `range_uj`.

    One wrap is visible (cur < prev). Several wraps between reads are not visible in the counter
    itself; `expected_uj` (from the last known power times the elapsed time) picks the number of
    whole extra ranges that brings the delta closest to it.
    """
    if range_uj <= 0:
        return max(0, cur_uj - prev_uj)
    delta = (cur_uj - prev_uj) % range_uj
    if expected_uj is not None and expected_uj > delta:
        delta += range_uj * round((expected_uj - delta) / range_uj)
    return delta


class _Zone(EnergyCounter):
    __slots__ = ("path", "kind", "index", "name", "range_uj")

    def __init__(self, path: Path, kind: str, index: int, name: str, range_uj: int, last_uj: int,
                 last_t: float) -> None:
        super().__init__(str(path / "energy_uj"), last_uj, last_t)  # the counter's path, built once
        self.path = path
        self.kind = kind
        self.index = index
        self.name = name
        self.range_uj = range_uj

    def unwrap(self, prev: int, cur: int, expected_uj: float | None) -> int:
        return unwrap(prev, cur, self.range_uj, expected_uj)


def _read_int(path: Path | str) -> int:
    # os-level calls: this runs for every zone at every sample, and pathlib's layers cost several times more
    fd = os.open(path, os.O_RDONLY)
    try:
        return int(os.read(fd, 64))
    finally:
        os.close(fd)


def find_zones(root: Path) -> list[tuple[Path, str, int, str]]:
    """(path, kind, index, zone name) for package zones (cpu) and dram zones (ram).

    core/uncore sit inside their package and psys covers the whole platform, so adding any of them
    would double-count; they are skipped.
    """
    found: dict[str, tuple[Path, str, int, str]] = {}
    seen: set[tuple[str, int]] = set()  # (kind, index): one zone per package, whichever control type has it
    if not root.is_dir():
        return []
    candidates: list[Path] = []
    for entry in sorted(root.iterdir()):
        if _ZONE.match(entry.name):
            candidates.append(entry)
            # subzones live inside their package as well as (as links) at the top level
            candidates.extend(sorted(p for p in entry.iterdir() if _ZONE.match(p.name)))
    for zone in candidates:
        m = _ZONE.match(zone.name)
        assert m is not None
        real = str(zone.resolve())
        if real in found:
            continue
        try:
            name = (zone / "name").read_text().strip()
        except OSError:
            continue
        pkg = _PACKAGE.match(name)
        if pkg and zone.name.count(":") == 1:
            # "package-0"; "package-0-die-1" on multi-die parts and a bare "package" take the zone's number
            idx = int(pkg.group(1)) if pkg.group(1) and name == f"package-{pkg.group(1)}" else int(m.group(1))
            hit = (zone, "cpu", idx, name)
        elif name == "dram":
            hit = (zone, "ram", int(m.group(1)), name)
        else:
            continue
        if (hit[1], hit[2]) not in seen:
            seen.add((hit[1], hit[2]))
            found[real] = hit
    return sorted(found.values(), key=lambda z: (z[1], z[2]))


class RaplProbe(Probe):
    name = "rapl"
    kinds = ("cpu", "ram")

    def __init__(self, root: str | Path | None = None, *, clock: Clock | None = None) -> None:
        super().__init__(clock=clock)
        self.root = Path(root) if root is not None else powercap_root()
        self._zones: list[_Zone] = []

    @classmethod
    def availability(cls, root: str | Path | None = None) -> Availability:
        base = Path(root) if root is not None else powercap_root()
        try:
            zones = find_zones(base)
        except OSError as exc:  # a powercap folder this user may not even look into
            return Availability(False, f"cannot list RAPL zones under {base}: {exc.strerror}")
        if not zones:
            return Availability(False, f"no RAPL package zones under {base}")
        try:
            for path, *_ in zones:
                _read_int(path / "energy_uj")
        except PermissionError:
            return Availability(False, grant_hint(zones[0][0].name.split(":", 1)[0]))
        except (OSError, ValueError) as exc:
            return Availability(False, f"cannot read RAPL counters: {exc}")
        kinds = tuple(sorted({k for _, k, _, _ in zones}))
        return Availability(True, f"RAPL zones for {', '.join(kinds)} under {base}", kinds)

    def open(self) -> list[Device]:
        zones = find_zones(self.root)
        if not zones:
            raise ProbeError(f"no RAPL package zones under {self.root}")
        for path, kind, idx, zname in zones:
            try:
                rng = _read_int(path / "max_energy_range_uj")
                t = self.clock.now()  # before the read, which lets go of the GIL (see NvmlProbe.read)
                cur = _read_int(path / "energy_uj")
            except PermissionError as exc:
                raise ProbeError(grant_hint(path.name.split(":", 1)[0])) from exc
            except (OSError, ValueError) as exc:
                raise ProbeError(f"cannot read {path}: {exc}") from exc
            self._zones.append(_Zone(path, kind, idx, zname, rng, cur, t))
            self.devices.append(
                Device(kind=kind, index=idx, name=f"RAPL {zname} ({path.name})", source="rapl",
                       measured=True, update_period_s=0.001)
            )
        return self.devices

    def read(self) -> list[Reading]:
        out: list[Reading] = []
        for zone, dev in zip(self._zones, self.devices, strict=False):
            t = self.clock.now()  # before the read, which lets go of the GIL (see NvmlProbe.read)
            try:
                cur = _read_int(zone.counter)
            except (OSError, ValueError) as exc:
                self.errors[dev.key] = f"{zone.counter}: {exc}"
                continue
            out.append(Reading(dev, t, zone.advance(cur, t, zone.unwrap), zone.power_w))
        if self._zones and not out:
            raise ProbeError("no RAPL zone could be read: " + "; ".join(self.errors.values()))
        return out


PROBES = (RaplProbe,)
