"""Apple Silicon CPU, GPU and Neural Engine power from `powermetrics` (root only).

`powermetrics --samplers cpu_power,gpu_power,ane_power -f plist -i MS` streams one plist per interval, the next
after a NUL byte. Each has `elapsed_ns`, the sample's own window, and under `processor` the mean
`cpu_power`/`gpu_power`/`ane_power` in mW over it (and `cpu_energy`/`gpu_energy`/`ane_energy` in whole mJ,
read only where a power is missing). Energy is power x elapsed_ns, summed: exact over any span of samples.

Kinds: `cpu`, `gpu`, `ane`, the energy model's separate channels; `combined_power` is their sum and is not
recorded. powermetrics gives no DRAM figure on Apple Silicon, so memory is left to the estimate. macmon gives
the same channels and DRAM without root, and comes first where it is installed.
"""

from __future__ import annotations

import os

from .base import Availability, Device
from .stream import Sample, StreamProbe

KINDS = ("cpu", "gpu", "ane")
NAMES = {"cpu": "Apple Silicon CPU", "gpu": "Apple Silicon GPU", "ane": "Apple Neural Engine"}
NOT_ROOT = "powermetrics needs root: run footprint with sudo, or install macmon (no root)"


def parse_sample(chunk: bytes) -> Sample | None:
    """One plist sample -> mean powers (W) over its window and the window (s); None if it has neither."""
    import plistlib

    doc = plistlib.loads(chunk.strip(b"\x00\r\n\t "))
    if not isinstance(doc, dict) or not isinstance(doc.get("elapsed_ns"), int) or doc["elapsed_ns"] <= 0:
        return None
    elapsed = doc["elapsed_ns"] / 1e9
    proc = doc.get("processor")
    if not isinstance(proc, dict):
        return None
    power: dict[str, float] = {}
    for kind in KINDS:
        mw, mj = proc.get(f"{kind}_power"), proc.get(f"{kind}_energy")
        if isinstance(mw, (int, float)):
            power[kind] = mw / 1000
        elif isinstance(mj, (int, float)):
            power[kind] = mj / 1000 / elapsed  # older releases: energy over the window only
    return Sample(power, elapsed_s=elapsed) if power else None


class PowermetricsProbe(StreamProbe):
    name = "powermetrics"
    kinds = KINDS
    node_kinds = kinds
    tool = "powermetrics"
    separator = b"\x00"
    complete = b"</plist>"  # a whole sample is read at once, not when the next one's NUL comes

    @classmethod
    def availability(cls) -> Availability:
        exe = cls.executable()
        if exe is None:
            return Availability(False, "powermetrics not found on PATH (it ships with macOS)")
        if os.geteuid() != 0:
            return Availability(False, NOT_ROOT)
        return Availability(True, f"{exe} --samplers cpu_power,gpu_power,ane_power: CPU, GPU and ANE power every "
                                  f"{cls.interval_s * 1000:g} ms", cls.kinds)

    def argv(self, executable: str) -> list[str]:
        return [executable, "--samplers", "cpu_power,gpu_power,ane_power", "-f", "plist",
                "-i", str(max(1, round(self.interval_s * 1000))), "-b", "0"]

    @staticmethod
    def parse(chunk: bytes) -> Sample | None:
        return parse_sample(chunk)

    def device(self, kind: str) -> Device:
        return Device(kind=kind, index=0, name=f"{NAMES[kind]} (powermetrics)", source=f"powermetrics:{kind}_power",
                      measured=True, update_period_s=self.interval_s)


PROBES = (PowermetricsProbe,)
