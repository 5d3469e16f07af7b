"""Hardware probes: NVML (GPU), RAPL (CPU, DRAM) and labelled estimates."""

from __future__ import annotations

from .base import Availability, Device, FakeProbe, Probe, ProbeError, Reading
from .estimate import CpuEstimateProbe, RamEstimateProbe
from .nvml import NvmlProbe
from .rapl import RaplProbe

__all__ = [
    "Availability", "CpuEstimateProbe", "Device", "FakeProbe", "NvmlProbe", "Probe", "ProbeError",
    "RamEstimateProbe", "RaplProbe", "Reading", "default_probes", "probe_status",
]


def probe_status() -> list[tuple[str, Availability]]:
    """Each probe's availability here, for `footprint probes` and for the summary."""
    return [("nvml", NvmlProbe.availability()), ("rapl", RaplProbe.availability())]


def default_probes(*, gpu: bool = True, node: bool = True, cuda_ordinals: list[int] | None = None) -> list[Probe]:
    """The best probes this machine offers: NVML for GPUs, RAPL for CPU/DRAM, else estimates.

    `node=False` skips CPU and RAM (for all but one rank per node in distributed jobs);
    `cuda_ordinals` limits GPUs to those a rank uses (cuda:N).
    """
    probes: list[Probe] = []
    if gpu and cuda_ordinals != [] and NvmlProbe.availability().ok:
        probes.append(NvmlProbe(cuda_ordinals=cuda_ordinals))
    if node:
        rapl_dram = False
        availability = RaplProbe.availability()
        if availability.ok:
            probes.append(RaplProbe())
            rapl_dram = "ram" in availability.kinds
        else:
            probes.append(CpuEstimateProbe())
        if not rapl_dram:
            probes.append(RamEstimateProbe())
    return probes
