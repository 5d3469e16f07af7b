"""Energy counters in Linux hwmon (`energyN_input`, µJ): Intel GPUs through i915/xe, AMD CPU sockets through
amd_energy, and any other chip the user maps to a kind.

- i915 and xe (Arc, Data Center GPU Max, ...) expose the card's energy as `energy1_input` under
  `/sys/class/drm/cardN/device/hwmon/hwmonK` (also linked from /sys/class/hwmon). xe may add a `pkg` counter
  beside the `card` one; the card includes the package, so only `card` counts. Kind `gpu`.
- amd_energy has one counter per core (`EcoreNNN`) and per socket (`EsocketN`); cores sit inside their
  socket, so only the sockets count. Kind `cpu`. The registry orders this probe after RAPL, so a CPU that
  RAPL measures is never counted again here.
- Any other chip with energy counters is listed by `footprint probes` but not counted, since footprint cannot
  know whether it overlaps what other probes measure (a whole-node meter would count everything twice).
  `FOOTPRINT_HWMON_KINDS="ina228=soc,occ/pwr_proc0=cpu"` maps a chip (or one of its labelled counters) to a
  kind.

hwmon gives no counter range. Most drivers keep 64-bit µJ, some wrap lower: a read below the last one is
taken as a wrap at the smallest usual range above the last value (2^32 ... 2^64 µJ) when the energy that
implies agrees with the recent power; otherwise (an unknown range, or a driver reload) as the energy since
the counter restarted, and at least the recent power times the time between reads.

`FOOTPRINT_SYSFS` points every sysfs probe at another root than /sys (containers that mount the host's sysfs
elsewhere, and tests).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .base import Availability, Device, EnergyCounter, Probe, ProbeError, Reading

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .base import Clock

DEFAULT_SYSFS = "/sys"
KINDS_ENV = "FOOTPRINT_HWMON_KINDS"
GPU_DRIVERS = ("i915", "xe")
UPDATE_PERIOD_S = {"i915": 0.001, "xe": 0.001, "amd_energy": 0.001}  # PCU / SMU counters, RAPL-like
_ENERGY = re.compile(r"^energy(\d+)_input$")
_SOCKET = re.compile(r"^Esocket(\d+)$")
_NUMBER = re.compile(r"(\d+)$")
_RANGES = tuple(1 << bits for bits in (32, 40, 48, 56, 63, 64))


def sysfs_root() -> Path:
    return Path(os.environ.get("FOOTPRINT_SYSFS", DEFAULT_SYSFS))


def read_int(path: Path | str) -> int:
    # os-level calls: this runs for every counter at every sample
    fd = os.open(path, os.O_RDONLY)
    try:
        return int(os.read(fd, 64))
    finally:
        os.close(fd)


def read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _numbered(paths: list[Path]) -> list[Path]:
    def key(p: Path) -> tuple[int, str]:
        m = _NUMBER.search(p.name)
        return (int(m.group(1)) if m else -1, p.name)

    return sorted(paths, key=key)


def hwmon_dirs(root: Path) -> list[Path]:
    """Every hwmon device under root once: /class/hwmon/hwmonK and the GPUs' class/drm/cardN/device/hwmon."""
    seen: set[str] = set()
    out: list[Path] = []
    found = _numbered(list((root / "class" / "hwmon").glob("hwmon*")))
    for card in _numbered(list((root / "class" / "drm").glob("card*"))):
        found += _numbered(list((card / "device" / "hwmon").glob("hwmon*")))
    for d in found:
        real = os.path.realpath(d)
        if real not in seen and os.path.isdir(real):
            seen.add(real)
            out.append(d)
    return out


def drm_card(hwmon: Path) -> str | None:
    """cardN for a GPU's hwmon folder (…/<pci device>/hwmon/hwmonK, with …/<pci device>/drm/cardN)."""
    cards = _numbered(list((Path(os.path.realpath(hwmon)).parent.parent / "drm").glob("card*")))
    return cards[0].name if cards else None


def kind_map(text: str | None = None) -> dict[str, str]:
    """`FOOTPRINT_HWMON_KINDS`: "chip=kind,chip/label=kind" -> {"chip": kind, "chip/label": kind}."""
    raw = os.environ.get(KINDS_ENV, "") if text is None else text
    out: dict[str, str] = {}
    for item in raw.split(","):
        key, sep, kind = item.partition("=")
        if sep and key.strip() and kind.strip():
            out[key.strip()] = kind.strip()
    return out


class Found:
    __slots__ = ("path", "kind", "name", "source", "note", "update_period_s")

    def __init__(self, path: Path, kind: str, name: str, source: str, note: str | None,
                 update_period_s: float) -> None:
        self.path = path
        self.kind = kind
        self.name = name
        self.source = source
        self.note = note
        self.update_period_s = update_period_s


def find_counters(root: Path, kinds: dict[str, str] | None = None) -> tuple[list[Found], list[str]]:
    """(counters that count, what was seen and left out, and why)."""
    mapping = kind_map() if kinds is None else kinds
    found: list[Found] = []
    skipped: list[str] = []
    for d in hwmon_dirs(root):
        chip = read_text(d / "name") or d.name
        channels = sorted(int(m.group(1)) for p in d.glob("energy*_input") if (m := _ENERGY.match(p.name)))
        if not channels:
            continue
        labels = {n: read_text(d / f"energy{n}_label") for n in channels}
        source = f"hwmon:{chip}"
        if chip in GPU_DRIVERS:
            by_label = {lab: n for n, lab in labels.items() if lab}
            n = by_label.get("card", by_label.get("pkg", channels[0]))
            card = drm_card(d) or d.name
            what = labels[n] or f"energy{n}"
            others = [f"{labels[m] or f'energy{m}'}" for m in channels if m != n]
            note = f"{', '.join(others)} not counted: inside the {what} counter" if others else None
            found.append(Found(d / f"energy{n}_input", "gpu", f"Intel GPU {card} ({chip} {what})", source, note,
                               UPDATE_PERIOD_S[chip]))
        elif chip == "amd_energy":
            sockets = sorted((int(m.group(1)), n) for n, lab in labels.items() if lab and (m := _SOCKET.match(lab)))
            if not sockets:
                skipped.append(f"{chip} in {d.name}: no Esocket counters")
            for sock, n in sockets:
                found.append(Found(d / f"energy{n}_input", "cpu", f"AMD socket {sock} (amd_energy)", source, None,
                                   UPDATE_PERIOD_S[chip]))
        else:
            for n in channels:
                label = labels[n]
                kind = mapping.get(f"{chip}/{label}") if label else None
                kind = kind or mapping.get(chip)
                what = f"{chip} energy{n}" + (f" ({label})" if label else "")
                if kind:
                    found.append(Found(d / f"energy{n}_input", kind, what, source, f"mapped by {KINDS_ENV}", 0.0))
                else:
                    skipped.append(f"{what} in {d.name}")
    return found, skipped


def unwrap_unknown_range(prev_uj: int, cur_uj: int, expected_uj: float | None = None) -> int:
    """Energy in µJ between two reads of a counter whose range is not published.

    A read below the last is a wrap at the smallest usual range above the last value, when the energy that
    gives is plausible next to `expected_uj` (the recent power times the elapsed time); otherwise the counter
    restarted (an unknown range, a driver reload): what it counted since, and at least `expected_uj`.
    """
    if cur_uj >= prev_uj:
        return cur_uj - prev_uj
    if expected_uj is None:
        return cur_uj  # no power known yet: count what is certain
    for rng in _RANGES:
        if prev_uj < rng:
            delta = rng - prev_uj + cur_uj
            if delta <= 4 * expected_uj + 1_000_000:
                return delta
            break
    return max(cur_uj, round(expected_uj))


def _grant_hint(paths: list[str]) -> str:
    return (f"cannot read {paths[0]}: amd_energy counters are readable by root only; grant read access with "
            f"`sudo chmod a+r {' '.join(paths)}` (or a udev rule), or run as root")


def _unmapped_hint(skipped: list[str]) -> str:
    return (f"energy counters not counted: {'; '.join(skipped)} (their scope is unknown: map one with "
            f"{KINDS_ENV}=chip=kind if no other probe measures it)")


class HwmonProbe(Probe):
    name = "hwmon"
    kinds = ("gpu", "cpu")  # and whatever FOOTPRINT_HWMON_KINDS maps to: see availability().kinds
    node_kinds = ("gpu",)  # Intel GPUs are not CUDA devices: in a job, the node's rank counts them all once

    def __init__(self, root: str | Path | None = None, *, clock: Clock | None = None,
                 kinds: dict[str, str] | None = None) -> None:
        super().__init__(clock=clock)
        self.root = Path(root) if root is not None else sysfs_root()
        self.kind_map = kinds
        self._counters: list[EnergyCounter] = []

    @classmethod
    def availability(cls, root: str | Path | None = None, kinds: dict[str, str] | None = None) -> Availability:
        base = Path(root) if root is not None else sysfs_root()
        try:
            found, skipped = find_counters(base, kinds)
        except OSError as exc:
            return Availability(False, f"cannot list hwmon devices under {base}: {exc.strerror}")
        if not found:
            if skipped:
                return Availability(False, _unmapped_hint(skipped))
            return Availability(False, f"no hwmon energy counters under {base}/class/hwmon (Intel discrete GPUs "
                                       "need i915 on Linux >= 6.2 or xe; AMD sockets need the amd_energy module)")
        denied = []
        for f in found:
            try:
                read_int(f.path)
            except PermissionError:
                denied.append(str(f.path))
            except (OSError, ValueError) as exc:
                return Availability(False, f"cannot read {f.path}: {exc}")
        if denied:
            return Availability(False, _grant_hint(denied))
        kinds_here = tuple(dict.fromkeys(f.kind for f in found))
        what = ", ".join(sorted({f"{f.kind} ({f.source})" for f in found}))
        reason = f"hwmon energy counters for {what} under {base}"
        if skipped:
            reason += "; " + _unmapped_hint(skipped)
        return Availability(True, reason, kinds_here)

    def open(self) -> list[Device]:
        found, _ = find_counters(self.root, self.kind_map)
        if self.only_kinds is not None:  # kinds the user mapped outside `kinds` are theirs to keep
            found = [f for f in found if f.kind in self.only_kinds or f.kind not in self.kinds]
        if not found:
            raise ProbeError(f"no hwmon energy counters under {self.root}")
        index: dict[str, int] = {}
        for f in found:
            t = self.clock.now()  # before the read, which lets go of the GIL (see NvmlProbe.read)
            try:
                cur = read_int(f.path)
            except PermissionError as exc:
                raise ProbeError(_grant_hint([str(f.path)])) from exc
            except (OSError, ValueError) as exc:
                raise ProbeError(f"cannot read {f.path}: {exc}") from exc
            self._counters.append(EnergyCounter(str(f.path), cur, t))
            i = index[f.kind] = index.get(f.kind, -1) + 1
            self.devices.append(Device(kind=f.kind, index=i, name=f.name, source=f.source, measured=True,
                                       update_period_s=f.update_period_s, note=f.note))
        return self.devices

    def read(self) -> list[Reading]:
        out: list[Reading] = []
        for c, dev in zip(self._counters, self.devices, strict=False):
            t = self.clock.now()  # before the read, which lets go of the GIL (see NvmlProbe.read)
            try:
                cur = read_int(c.counter)
            except (OSError, ValueError) as exc:
                self.errors[dev.key] = f"{c.counter}: {exc}"
                continue
            out.append(Reading(dev, t, c.advance(cur, t, unwrap_unknown_range), c.power_w))
        if self._counters and not out:
            raise ProbeError("no hwmon energy counter could be read: " + "; ".join(self.errors.values()))
        return out


PROBES = (HwmonProbe,)
