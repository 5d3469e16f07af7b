"""Apple Silicon CPU, GPU, Neural Engine and DRAM power from `macmon pipe`, without root.

macmon (github.com/vladkens/macmon) reads the same IOReport energy model as powermetrics, without sudo, and
`macmon pipe -i MS` prints one JSON object per line per interval: `cpu_power`, `gpu_power`, `ane_power`,
`ram_power` and `gpu_ram_power` in W, each the mean over the interval since the previous sample (IOReport
deltas), and an RFC 3339 `timestamp`. The window of a sample is the time between its timestamp and the
previous one's; energy is power x window, summed.

Kinds are the energy model's channels: `cpu` (CPU Energy), `gpu` (GPU Energy plus the GPU's SRAM), `ane`
(Neural Engine), `ram` (DRAM). They are separate parts of the SoC, so their sum is the SoC's and nothing is
counted twice. macmon's `all_power` (cpu + gpu + ane) and `sys_power` (the whole machine, from the SMC) are not
recorded: both include the devices counted here.
"""

from __future__ import annotations

import json

from .base import Availability, Device
from .stream import Sample, StreamProbe

FIELDS = {"cpu": ("cpu_power",), "gpu": ("gpu_power", "gpu_ram_power"), "ane": ("ane_power",),
          "ram": ("ram_power",)}
NAMES = {"cpu": "Apple Silicon CPU", "gpu": "Apple Silicon GPU", "ane": "Apple Neural Engine",
         "ram": "Apple Silicon DRAM"}
NOTES = {"gpu": "GPU Energy plus GPU SRAM", "ram": "unified memory: the DRAM the CPU, GPU and ANE share"}


def parse_sample(line: bytes) -> Sample | None:
    """One line of `macmon pipe` -> its mean powers (W) and timestamp (epoch s); None for anything else."""
    from datetime import datetime

    doc = json.loads(line)
    if not isinstance(doc, dict):
        return None
    power: dict[str, float] = {}
    for kind, fields in FIELDS.items():
        values = [doc[f] for f in fields if isinstance(doc.get(f), (int, float))]
        if values:
            power[kind] = float(sum(values))
    if not power:
        return None
    stamp = None
    if isinstance(doc.get("timestamp"), str):
        try:
            stamp = datetime.fromisoformat(doc["timestamp"].replace("Z", "+00:00")).timestamp()
        except ValueError:
            stamp = None
    return Sample(power, stamp=stamp)


class MacmonProbe(StreamProbe):
    name = "macmon"
    kinds = ("cpu", "gpu", "ane", "ram")
    node_kinds = kinds  # one SoC per machine
    tool = "macmon"
    separator = b"\n"

    @classmethod
    def availability(cls) -> Availability:
        exe = cls.executable()
        if exe is None:
            return Availability(False, "macmon not found on PATH (Apple Silicon: `brew install macmon` gives "
                                       "CPU, GPU, ANE and DRAM power without root)")
        return Availability(True, f"{exe} pipe: CPU, GPU, ANE and DRAM power from IOReport, no root, every "
                                  f"{cls.interval_s * 1000:g} ms", cls.kinds)

    def argv(self, executable: str) -> list[str]:
        return [executable, "pipe", "-i", str(max(100, round(self.interval_s * 1000)))]  # macmon's floor: 100 ms

    @staticmethod
    def parse(chunk: bytes) -> Sample | None:
        return parse_sample(chunk)

    def device(self, kind: str) -> Device:
        return Device(kind=kind, index=0, name=f"{NAMES[kind]} (macmon)", source=f"macmon:{'+'.join(FIELDS[kind])}",
                      measured=True, update_period_s=self.interval_s, note=NOTES.get(kind))


PROBES = (MacmonProbe,)
