"""Hardware probes: NVML (NVIDIA GPUs), AMD SMI (AMD GPUs), RAPL (CPU, DRAM), hwmon energy counters (Intel
GPUs, amd_energy), Jetson power rails, Raspberry Pi 5 PMIC rails, Apple Silicon (macmon, powermetrics), whole-node
meters (ACPI power meter, IPMI DCMI, a laptop's battery: kind `node`, reported beside the components), and
labelled estimates (a board model for older Raspberry Pis, then CPU and RAM models for any machine).

Probes are registered by declaration: each module named in `PROBE_MODULES` lists its probe classes in
`PROBES`. Adding a probe is one new module plus its name here. Order matters only among probes that measure
the same kind: the first available one wins, and estimates fill only the kinds nothing measured.
"""

from __future__ import annotations

from importlib import import_module

from .base import Availability, Device, Probe, ProbeError, Reading
from .fake import FakeProbe

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .amd import AmdSmiProbe
    from .estimate import CpuEstimateProbe, RamEstimateProbe
    from .hwmon import HwmonProbe
    from .jetson import JetsonProbe
    from .macmon import MacmonProbe
    from .nvml import NvmlProbe
    from .powermeter import PowerMeterProbe
    from .powermetrics import PowermetricsProbe
    from .rapl import RaplProbe
    from .rpi import RpiProbe
    from .rpiboard import RpiBoardEstimateProbe

# rapl before hwmon: a CPU with RAPL is never counted again through amd_energy; macmon (no root, and DRAM too)
# before powermetrics: a Mac with both is read through macmon only. Node meters measure kind `node` only, so they
# never keep a component probe out: the first available one is the node figure (IPMI first: it is opt-in, so
# asked for). Among estimates the board-specific one (rpiboard: older Raspberry Pis) comes first, so that it keeps the
# generic CPU and RAM estimates out on its boards
PROBE_MODULES = ("nvml", "amd", "rapl", "hwmon", "jetson", "rpi", "macmon", "powermetrics", "ipmi", "powermeter",
                 "battery", "rpiboard", "estimate")
NODE_KINDS = ("cpu", "ram")  # measured once per node (by local rank 0 in distributed jobs)

__all__ = [
    "AmdSmiProbe", "Availability", "CpuEstimateProbe", "Device", "FakeProbe", "HwmonProbe", "JetsonProbe",
    "MacmonProbe", "NvmlProbe", "PROBE_MODULES", "PowerMeterProbe", "PowermetricsProbe", "Probe",
    "ProbeError", "RamEstimateProbe", "RaplProbe", "Reading", "RpiBoardEstimateProbe", "RpiProbe", "default_probes",
    "probe_status", "registered",
]
_LAZY = {"CpuEstimateProbe": "estimate", "RamEstimateProbe": "estimate", "NvmlProbe": "nvml", "RaplProbe": "rapl",
         "HwmonProbe": "hwmon", "JetsonProbe": "jetson", "AmdSmiProbe": "amd", "MacmonProbe": "macmon",
         "PowermetricsProbe": "powermetrics", "RpiProbe": "rpi", "PowerMeterProbe": "powermeter",
         "RpiBoardEstimateProbe": "rpiboard"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def registered() -> list[type[Probe]]:
    """Every registered probe class, in PROBE_MODULES order."""
    out: list[type[Probe]] = []
    for module in PROBE_MODULES:
        out.extend(import_module(f".{module}", __name__).PROBES)
    return out


def probe_status() -> list[tuple[str, Availability]]:
    """Each measuring probe's availability here, for `footprint probes`, and that of each estimate that applies to
    some machines only (it has an availability of its own: the Raspberry Pi board model); the generic estimates
    always apply."""
    return [(cls.name, cls.availability()) for cls in registered()
            if not cls.estimate or "availability" in vars(cls)]


def default_probes(*, gpu: bool = True, node: bool = True, cuda_ordinals: list[int] | None = None) -> list[Probe]:
    """The best probes this machine offers: every available measuring probe, then estimates for the kinds
    none of them covers.

    `node=False` skips node kinds, CPU and RAM and each probe's `node_kinds` (for all but one rank per node
    in distributed jobs);
    `gpu=False` skips GPUs; `cuda_ordinals` limits GPUs to those a rank uses (cuda:N), `[]` to none.
    """
    def wanted(cls: type[Probe]) -> set[str]:
        keep = {k for k in cls.kinds if node or (k not in NODE_KINDS and k not in cls.node_kinds)}
        if not gpu or cuda_ordinals == []:
            keep.discard("gpu")
        return keep

    classes = registered()
    probes: list[Probe] = []
    covered: set[str] = set()
    for cls in classes:
        todo = wanted(cls) - covered
        if cls.estimate or not todo:
            continue
        availability = cls.availability()
        if availability.ok and (not availability.kinds or set(availability.kinds) & todo):
            probe = cls.create(cuda_ordinals=cuda_ordinals)
            probe.only_kinds = frozenset(todo)  # what an earlier probe measures is not measured again
            probes.append(probe)
            covered |= set(availability.kinds or cls.kinds) & todo
    for cls in classes:
        todo = wanted(cls) - covered
        if not cls.estimate or not todo:
            continue
        availability = cls.availability()  # the generic estimates always apply; a board's model on that board only
        if availability.ok:
            probe = cls.create(cuda_ordinals=cuda_ordinals)
            probe.only_kinds = frozenset(todo)
            probes.append(probe)
            covered |= set(availability.kinds or cls.kinds)  # the Pi board model covers the RAM too
    return probes
