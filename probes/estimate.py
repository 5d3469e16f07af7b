"""Labelled estimates for machines without counters: CPU from TDP and utilisation, RAM from its size."""

from __future__ import annotations

import os
import re
from pathlib import Path

from footprint.common.data import stamp as table_stamp
from footprint.common.data import table

from .base import Device, PowerIntegrator, Probe, ProbeError, Reading

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .base import Clock

DEFAULT_TDP_W = 85.0  # CodeCarbon's own assumption for a CPU missing from its table
IDLE_FRACTION = 0.1  # share of TDP drawn at 0 % utilisation in our linear model
RAM_W_PER_GB = 0.375  # 3 W per 8 GB DIMM, the figure CodeCarbon used for DDR4
# /proc/stat counts CPU time in whole ticks (jiffies, USER_HZ = 100 per second): a window resolves the
# utilisation to a tenth only once it spans this many ticks; anything shorter is flagged unreliable
UTILISATION_TICKS = 10


def utilisation_period_s() -> float:
    """The shortest window whose utilisation (and so estimated energy) /proc/stat resolves: UTILISATION_TICKS
    ticks of its clock."""
    try:
        hz = os.sysconf("SC_CLK_TCK")
    except (ValueError, OSError, AttributeError):
        hz = 100
    return UTILISATION_TICKS / (hz if hz > 0 else 100)


_MARKS = re.compile(r"\((r|tm)\)", re.I)
_NOISE = re.compile(r"\b(cpu|processor|with radeon.*|\d+-core)\b", re.I)


def _norm(name: str) -> str:
    """'Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz' -> 'intel xeon gold 6148'."""
    name = _NOISE.sub(" ", _MARKS.sub(" ", name.split("@", 1)[0]))
    return " ".join(name.lower().split())


def _tdp_table() -> tuple[dict[str, float], str]:
    """CodeCarbon's cpu_power.csv as {lower-cased name: TDP W}, and where it was read from."""
    found, where = table("cpu_tdp")
    return (found or {}), where


def _cache_file() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "footprint" / "cpu-tdp.json"


def lookup_tdp(model: str) -> tuple[float, str]:
    """(TDP in W, where it came from) for a CPU model string, remembered in ~/.cache/footprint so the
    5,000-row table is read once per machine, not at every start (it costs ~10 ms)."""
    import json

    stamp = table_stamp("cpu_tdp")
    cache = _cache_file()
    try:
        cached = json.loads(cache.read_text())
        if cached.get("model") == model and cached.get("table") == stamp:
            return float(cached["tdp"]), str(cached["source"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    tdp, source = _lookup_tdp(model)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"model": model, "table": stamp, "tdp": tdp, "source": source}))
        os.replace(tmp, cache)
    except OSError:
        pass  # a read-only home only costs the re-read
    return tdp, source


def _lookup_tdp(model: str) -> tuple[float, str]:
    tdps, _ = _tdp_table()
    key = _norm(model)
    if key and key in tdps:
        return tdps[key], f"CodeCarbon cpu_power.csv entry '{key}'"
    # the table often omits the vendor prefix or suffixes; accept a unique entry contained in the name
    if key:
        padded = f" {key} "
        hits = [k for k in tdps if len(k) > 4 and f" {k} " in padded]  # whole words, no regex per entry
        if len(hits) == 1:
            return tdps[hits[0]], f"CodeCarbon cpu_power.csv entry '{hits[0]}'"
    why = "not in CodeCarbon's CPU table" if tdps else "CodeCarbon's CPU table not found"
    return DEFAULT_TDP_W, f"assumed {DEFAULT_TDP_W:g} W: '{model}' {why}"


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> tuple[str, int, bool]:
    """(model name, sockets, running under a hypervisor)."""
    model, sockets, hyper = "unknown CPU", set(), False
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return model, 1, hyper
    for line in text.splitlines():
        key, _, val = line.partition(":")
        key, val = key.strip(), val.strip()
        if key == "model name" and model == "unknown CPU":
            model = val
        elif key == "physical id":
            sockets.add(val)
        elif key == "flags" and "hypervisor" in val.split():
            hyper = True
    return model, max(1, len(sockets)), hyper


class CpuTimes:
    """Machine-wide CPU utilisation between calls, from /proc/stat (psutil elsewhere)."""

    def __init__(self, path: str = "/proc/stat") -> None:
        # kept open: a read at offset 0 makes the kernel regenerate the file, and skips an open and a
        # close per sample
        try:
            self._fd: int | None = os.open(path, os.O_RDONLY)
        except OSError:
            self._fd = None
        self._last = self._read()

    def _read(self) -> tuple[float, float] | None:
        if self._fd is None:
            return None
        try:
            first = os.pread(self._fd, 256, 0).split(b"\n", 1)[0]  # the aggregate "cpu ..." line
            fields = [float(x) for x in first.split()[1:]]
        except (OSError, ValueError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
        return sum(fields[:8]), idle  # guest time is already inside user/nice

    def utilisation(self) -> float:
        """Mean utilisation since the previous call."""
        now = self._read()
        if now is None or self._last is None:
            import psutil

            return float(psutil.cpu_percent(interval=None)) / 100.0
        total, idle = now[0] - self._last[0], now[1] - self._last[1]
        self._last = now
        return 0.0 if total <= 0 else max(0.0, min(1.0, 1.0 - idle / total))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def total_memory_bytes() -> int:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    import psutil

    return int(psutil.virtual_memory().total)


class CpuEstimateProbe(Probe):
    """P = sockets × TDP × (IDLE_FRACTION + (1 − IDLE_FRACTION) × utilisation).

    The model is linear in utilisation, so the energy between two reads is P(mean utilisation between
    them) × elapsed time, exactly, however far apart the reads are: no interval-dependent error, and no
    need to wake up at every interval (`polled = False`).
    """

    name = "cpu-estimate"
    kinds = ("cpu",)
    estimate = True
    polled = False

    def __init__(self, *, stat_path: str = "/proc/stat", clock: Clock | None = None) -> None:
        super().__init__(clock=clock)
        self._stat_path = stat_path
        self._energy_j = 0.0
        self._last_t = 0.0
        self._cpu: CpuTimes | None = None

    def open(self) -> list[Device]:
        model, sockets, hyper = cpu_model()
        self.tdp_w, self.tdp_source = lookup_tdp(model)
        self.sockets = sockets
        note = f"TDP {self.tdp_w:g} W × {sockets} socket(s) ({self.tdp_source}); idle share {IDLE_FRACTION:g}"
        if hyper:
            note += "; virtual machine: the whole-socket TDP may overstate this guest's share"
        self.devices = [
            Device(kind="cpu", index=0, name=model, source="estimate:tdp-utilisation", measured=False,
                   update_period_s=utilisation_period_s(), note=note)
        ]
        self._cpu = CpuTimes(self._stat_path)
        self._last_t = self.clock.now()
        return self.devices

    def read(self) -> list[Reading]:
        if self._cpu is None:
            raise ProbeError("read before open")
        util = self._cpu.utilisation()
        t = self.clock.now()
        p = self.sockets * self.tdp_w * (IDLE_FRACTION + (1 - IDLE_FRACTION) * util)  # mean since the last read
        if t > self._last_t:
            self._energy_j += p * (t - self._last_t)
            self._last_t = t
        return [Reading(self.devices[0], t, self._energy_j, p)]

    def close(self) -> None:
        if self._cpu is not None:
            self._cpu.close()


class RamEstimateProbe(Probe):
    """P = installed GB × RAM_W_PER_GB, constant: read at edges and flushes only (`polled = False`)."""

    name = "ram-estimate"
    kinds = ("ram",)
    estimate = True
    polled = False

    def __init__(self, *, clock: Clock | None = None) -> None:
        super().__init__(clock=clock)
        self._integrator = PowerIntegrator()

    def open(self) -> list[Device]:
        # GB as DRAM is sold and CodeCarbon counts it (2^30 bytes): the figure of the 3 W per 8 GB DIMM rule, and
        # the same as the run's ram_total_gb, which the embodied estimate uses
        gb = total_memory_bytes() / 2**30
        self.power_w = gb * RAM_W_PER_GB
        self.devices = [
            Device(kind="ram", index=0, name=f"{gb:.1f} GB RAM", source="estimate:ram-w-per-gb",
                   measured=False, update_period_s=0.0,
                   note=f"{gb:.1f} GB × {RAM_W_PER_GB} W/GB = {self.power_w:.1f} W, constant")
        ]
        return self.devices

    def read(self) -> list[Reading]:
        t = self.clock.now()
        return [Reading(self.devices[0], t, self._integrator.add(t, self.power_w), self.power_w)]


PROBES = (CpuEstimateProbe, RamEstimateProbe)
