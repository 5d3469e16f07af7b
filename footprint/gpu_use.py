"""Which of the measured GPUs a run's processes used, beside the idle ones that are measured all the same.

With CUDA_VISIBLE_DEVICES unset every GPU NVML sees is measured, so the idle ones would inflate J/token. Reports
keep every GPU but mark each used or idle (runs.meta "gpus_used": NVML indices) and add J/token without the idle
GPUs. Two ways to know:
- `footprint run`: the driver lists the pids holding a compute context on each GPU
  (nvmlDeviceGetComputeRunningProcesses); a thread checks them against the command's process tree while it runs.
  The driver names pids of the host's pid namespace: inside a container they match nothing, and nothing is said.
- `footprint.track()` in-process: at the end, the CUDA devices torch holds memory on, by their UUIDs.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading

TYPE_CHECKING = False  # typing costs start-up time; annotations need it only when checked
if TYPE_CHECKING:
    from collections.abc import Iterable

    from footprint.core.store import Store
    from footprint.probes.base import Probe

META_KEY = "gpus_used"  # runs.meta: NVML indices of the GPUs the run's processes used
SOURCE_KEY = "gpus_used_source"  # runs.meta: "nvml-processes" or "torch"


def descendants(root: int, proc: str = "/proc") -> set[int]:
    """The pids below `root` in the process tree (not root itself), from /proc/<pid>/stat; empty without /proc."""
    parent: dict[int, int] = {}
    try:
        names = os.listdir(proc)
    except OSError:
        return set()
    for name in names:
        if not name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            with open(f"{proc}/{name}/stat", encoding="ascii", errors="replace") as fh:
                parent[int(name)] = int(fh.read().rsplit(")", 1)[1].split()[1])  # field 4, ppid
    out: set[int] = set()
    frontier = [root]
    while frontier:
        pid = frontier.pop()
        for child, ppid in parent.items():
            if ppid == pid and child not in out:
                out.add(child)
                frontier.append(child)
    return out


def used_by(listing: dict[int, set[int]], pids: set[int]) -> set[int]:
    """The GPU indices on which any of `pids` holds a context, from a probe's {index: pids} listing."""
    return {idx for idx, holders in listing.items() if holders & pids}


class ProcessWatch:
    """Polls the GPU probes' process listings every `interval_s` while a command runs and keeps every GPU its
    process tree (this process's descendants) was seen on. `close()` stops it and returns those NVML indices."""

    def __init__(self, probes: Iterable[Probe], interval_s: float) -> None:
        self.probes = [p for p in probes if hasattr(p, "processes")]
        self.interval_s = min(max(interval_s, 0.2), 2.0)  # often enough to see a short command, cheap for long ones
        self.used: set[int] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll(self) -> None:
        pids = descendants(os.getpid())
        if not pids:
            return
        for probe in self.probes:
            with contextlib.suppress(Exception):  # a probe that cannot list processes says nothing
                self.used |= used_by(probe.processes(), pids)

    def start(self) -> None:
        if not self.probes:
            return

        def loop() -> None:
            while not self._stop.wait(self.interval_s):
                self.poll()

        self.poll()
        self._thread = threading.Thread(target=loop, name="footprint-gpu-use", daemon=True)
        self._thread.start()

    def close(self) -> list[int]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        return sorted(self.used)


def torch_used(probes: Iterable[Probe]) -> list[int]:
    """NVML indices of the measured GPUs torch holds memory on in this process (by UUID); [] when torch has not
    initialised CUDA or none matches."""
    from footprint.probes.nvml import torch_uuids

    from .distributed import used_cuda_ordinals

    ordinals, uuids = used_cuda_ordinals(), torch_uuids()
    if not ordinals or not uuids:
        return []
    wanted = {uuids[i] for i in ordinals if i < len(uuids)}
    return sorted({d.index for p in probes for d in p.devices if d.kind == "gpu" and d.uuid in wanted})


def record(store: Store, run_id: int, used: list[int], source: str) -> None:
    """Keep what was seen in the run's meta; nothing seen is not known (never "every GPU idle"), so it is left
    out, and an earlier record (the command's own processes) is kept. Never raises: it is a bonus to the run."""
    if not used:
        return
    try:
        store.update_meta(run_id, {META_KEY: used, SOURCE_KEY: source}, keep=True)
    except Exception as exc:
        print(f"footprint: warning: which GPUs the run used was not stored ({type(exc).__name__}: {exc})",
              file=sys.stderr)
