"""Power rails of NVIDIA Jetson modules (Orin, Xavier, Nano, TX2) from their INA3221 / INA238 power monitors.

The monitors give power, not energy: each read's power is integrated over time (trapezoid), so the energy is
as good as the read interval. Rails are found in hwmon (`inN_label` with `inN_input` mV x `currN_input` mA on
ina3221, or `powerN_input` µW with `powerN_label`) and in the older ina3221x IIO devices of JetPack 4
(`rail_name_N` with `in_powerN_input` mW).

Each rail is given the kind of the compute unit it feeds, and a note saying what else it feeds:
- a rail that feeds the GPU is `gpu`: VDD_GPU_SOC (AGX Orin: GPU and SoC), VDD_CPU_GPU_CV (Orin NX/Nano,
  Xavier NX: CPU, GPU and the CV engines), GPU, VDD_GPU, POM_5V_GPU, VDD_SYS_GPU;
- one that feeds the CPU but not the GPU is `cpu`: VDD_CPU_CV (AGX Orin: CPU and CV engines), CPU, VDD_CPU, ...;
- SoC rails are `soc`, CV rails `cv`, memory rails (VDDQ_VDD2_1V8AO, VDDRQ, VDD_SYS_DDR) `ram`.
The module's input rail (VDD_IN, VIN_SYS_5V0, POM_5V_IN) feeds all of them: adding it would count them
twice. It is read as its own device of kind `module` only when no component rail is found; otherwise it is
left out and the first device's note says so. Rails of other names are listed by `footprint probes` and not
counted.
"""

from __future__ import annotations

import re
from pathlib import Path

from .base import Availability, Device, PowerIntegrator, Probe, ProbeError, Reading
from .hwmon import hwmon_dirs, read_int, read_text, sysfs_root

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .base import Clock

MONITORS = re.compile(r"^ina(3221|2\d\d)")  # ina3221, ina238, ina226, ...
_CHANNEL = re.compile(r"^(?:in|power|curr)(\d+)_label$")
_IIO_CHANNEL = re.compile(r"^rail_name_(\d+)$")

# rail name -> (kind, what else it feeds, the kinds it covers: no estimate is added for those)
RAILS: dict[str, tuple[str, str | None, tuple[str, ...]]] = {
    "VDD_GPU_SOC": ("gpu", "rail of the GPU and the SoC (memory controller, video and other engines)",
                    ("gpu", "soc")),
    "VDD_CPU_GPU_CV": ("gpu", "rail of the CPU, the GPU and the CV engines (DLA, PVA)", ("gpu", "cpu", "cv")),
    "VDD_CPU_CV": ("cpu", "rail of the CPU and the CV engines (DLA, PVA)", ("cpu", "cv")),
    **{name: ("gpu", None, ("gpu",)) for name in ("GPU", "VDD_GPU", "POM_5V_GPU", "VDD_SYS_GPU")},
    **{name: ("cpu", None, ("cpu",)) for name in ("CPU", "VDD_CPU", "POM_5V_CPU", "VDD_SYS_CPU")},
    **{name: ("soc", None, ("soc",)) for name in ("SOC", "VDD_SOC", "VDD_SYS_SOC")},
    **{name: ("cv", None, ("cv",)) for name in ("CV", "VDD_CV")},
    **{name: ("ram", "memory rail", ("ram",)) for name in ("VDDRQ", "VDD_DDR", "VDD_SYS_DDR", "VDDQ_VDD2_1V8AO")},
}
MODULE_RAILS = ("VDD_IN", "VIN_SYS_5V0", "POM_5V_IN")
MODULE_COVERS = ("module", "gpu", "cpu", "soc", "cv", "ram")
NOT_CONNECTED = ("NC", "")
ORDER = ("gpu", "cpu", "soc", "cv", "ram", "module")  # devices are listed, and numbered, in this order


class Rail:
    """One monitor channel: power in W from `power` (µW or mW) or from `volts` (mV) x `amps` (mA)."""

    __slots__ = ("label", "chip", "channel", "power", "scale", "volts", "amps", "update_period_s")

    def __init__(self, label: str, chip: str, channel: int, *, power: Path | None = None, scale: float = 1e-6,
                 volts: Path | None = None, amps: Path | None = None, update_period_s: float = 0.0) -> None:
        self.label = label
        self.chip = chip
        self.channel = channel
        self.power = str(power) if power is not None else None
        self.scale = scale
        self.volts = str(volts) if volts is not None else None
        self.amps = str(amps) if amps is not None else None
        self.update_period_s = update_period_s

    def watts(self) -> float:
        if self.power is not None:
            return read_int(self.power) * self.scale
        assert self.volts is not None and self.amps is not None
        return read_int(self.volts) * read_int(self.amps) * 1e-6  # mV x mA = µW

    @property
    def where(self) -> str:
        return self.power or f"{self.volts} x {self.amps}"


def find_rails(root: Path) -> list[Rail]:
    """Every labelled, connected power-monitor channel under root (hwmon, then ina3221x IIO devices)."""
    rails: list[Rail] = []
    for d in hwmon_dirs(root):
        chip = read_text(d / "name") or ""
        if not MONITORS.match(chip):
            continue
        interval_ms = read_text(d / "update_interval")
        period = int(interval_ms) / 1000 if interval_ms and interval_ms.isdigit() else 0.0
        channels = sorted({int(m.group(1)) for p in d.iterdir() if (m := _CHANNEL.match(p.name))})
        for n in channels:
            label = next((t for f in (f"power{n}_label", f"in{n}_label", f"curr{n}_label")
                          if (t := read_text(d / f)) is not None), "")
            if label.upper() in NOT_CONNECTED or read_text(d / f"in{n}_enable") == "0":
                continue
            if (d / f"power{n}_input").exists():
                rails.append(Rail(label, chip, n, power=d / f"power{n}_input", update_period_s=period))
            elif (d / f"in{n}_input").exists() and (d / f"curr{n}_input").exists():
                rails.append(Rail(label, chip, n, volts=d / f"in{n}_input", amps=d / f"curr{n}_input",
                                  update_period_s=period))
    for dev in sorted((root / "bus" / "i2c" / "drivers").glob("ina3221*/*/iio:device*")):
        chip = dev.parent.parent.name
        for p in sorted(dev.glob("rail_name_*")):
            m = _IIO_CHANNEL.match(p.name)
            label = read_text(p) or ""
            if m is None or label.upper() in NOT_CONNECTED or not (dev / f"in_power{m.group(1)}_input").exists():
                continue
            rails.append(Rail(label, chip, int(m.group(1)), power=dev / f"in_power{m.group(1)}_input", scale=1e-3))
    return rails


class Plan:
    """What to read: (rail, kind, note) per device, the kinds covered, and what is left out and why."""

    __slots__ = ("devices", "covers", "left_out")

    def __init__(self, rails: list[Rail]) -> None:
        self.devices: list[tuple[Rail, str, str | None]] = []
        self.covers: list[str] = []
        self.left_out: list[str] = []
        modules: list[Rail] = []
        for r in rails:
            name = r.label.upper()
            if name in RAILS:
                kind, note, covers = RAILS[name]
                self.devices.append((r, kind, f"{r.label}: {note}" if note else None))
                self.covers += [k for k in covers if k not in self.covers]
            elif name in MODULE_RAILS:
                modules.append(r)
            else:
                self.left_out.append(f"{r.label} ({r.chip}): a rail of unknown scope")
        self.devices.sort(key=lambda d: ORDER.index(d[1]))
        if self.devices and modules:
            why = (f"{', '.join(m.label for m in modules)} (module input) not counted: it feeds the rails "
                   "counted here, and adding it would count them twice")
            self.left_out.append(why)
            r, kind, note = self.devices[0]
            self.devices[0] = (r, kind, f"{note}; {why}" if note else why)
        elif modules:
            for m in modules[:1]:  # one input rail is the whole module; a second would repeat it
                self.devices.append((m, "module", f"{m.label}: the whole module's input (CPU, GPU, memory, "
                                                  "SoC and the rest of the board), no component rails found"))
            self.covers = list(MODULE_COVERS)
            self.left_out += [f"{m.label}: a second module input rail" for m in modules[1:]]


class JetsonProbe(Probe):
    name = "jetson"
    kinds = ORDER
    node_kinds = kinds  # a board's rails: once per node

    def __init__(self, root: str | Path | None = None, *, clock: Clock | None = None) -> None:
        super().__init__(clock=clock)
        self.root = Path(root) if root is not None else sysfs_root()
        self._rails: list[Rail] = []
        self._integrators: list[PowerIntegrator] = []

    @classmethod
    def availability(cls, root: str | Path | None = None) -> Availability:
        base = Path(root) if root is not None else sysfs_root()
        try:
            plan = Plan(find_rails(base))
        except OSError as exc:
            return Availability(False, f"cannot list power monitors under {base}: {exc.strerror}")
        if not plan.devices:
            extra = f" ({'; '.join(plan.left_out)})" if plan.left_out else ""
            return Availability(False, f"no Jetson power rails (INA3221/INA238 in hwmon) under {base}{extra}")
        for r, _, _ in plan.devices:
            try:
                r.watts()
            except PermissionError:
                return Availability(False, f"cannot read {r.where}: grant read access with `sudo chmod a+r` "
                                           "on it, or run as root")
            except (OSError, ValueError) as exc:
                return Availability(False, f"cannot read {r.where}: {exc}")
        rails = ", ".join(f"{r.label}->{kind}" for r, kind, _ in plan.devices)
        reason = f"Jetson rails {rails} under {base}"
        if plan.left_out:
            reason += "; left out: " + "; ".join(plan.left_out)
        return Availability(True, reason, tuple(plan.covers))

    def open(self) -> list[Device]:
        plan = Plan(find_rails(self.root))
        chosen = [d for d in plan.devices if self.only_kinds is None or d[1] in self.only_kinds]
        if not chosen:
            raise ProbeError(f"no Jetson power rails under {self.root}")
        index: dict[str, int] = {}
        for r, kind, note in chosen:
            t = self.clock.now()  # before the read, which lets go of the GIL (see NvmlProbe.read)
            try:
                watts = r.watts()
            except (OSError, ValueError) as exc:
                raise ProbeError(f"cannot read {r.where}: {exc}") from exc
            integ = PowerIntegrator()
            integ.add(t, watts)
            self._rails.append(r)
            self._integrators.append(integ)
            i = index[kind] = index.get(kind, -1) + 1
            self.devices.append(Device(kind=kind, index=i, name=f"Jetson {r.label} ({r.chip} channel {r.channel})",
                                       source=f"{r.chip}:{r.label}", measured=True,
                                       update_period_s=r.update_period_s, note=note))
        return self.devices

    def read(self) -> list[Reading]:
        out: list[Reading] = []
        for r, integ, dev in zip(self._rails, self._integrators, self.devices, strict=False):
            t = self.clock.now()  # before the read, which lets go of the GIL (see NvmlProbe.read)
            try:
                watts = r.watts()
            except (OSError, ValueError) as exc:
                self.errors[dev.key] = f"{r.where}: {exc}"
                continue
            out.append(Reading(dev, t, integ.add(t, watts), watts))
        if self._rails and not out:
            raise ProbeError("no Jetson rail could be read: " + "; ".join(self.errors.values()))
        return out


PROBES = (JetsonProbe,)
