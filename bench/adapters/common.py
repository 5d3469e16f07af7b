"""The protocol every adapter speaks, so each tool runs the same work in its own venv.

    python ADAPTER.py '{"mode": "startup" | "idle" | "work" | "accuracy", ...}'

prints one JSON line. An adapter defines start(interval) -> handle and stop(handle) -> {"gpu_j", "cpu_j"}
(None where the tool cannot measure), and calls run(start, stop).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any


def cpu_workload(n: int) -> float:
    """A fixed pure-Python workload (no I/O, no sleeping)."""
    acc = 0.0
    for i in range(n):
        acc += (i % 7) * 0.5 - (i % 3)
    return acc


def torch_workload(n: int) -> float:
    import torch

    torch.manual_seed(0)
    x = torch.randn(256, 256)
    for _ in range(n):
        x = torch.tanh(x @ x / 256)
    return float(x.sum())


def tree_cpu_seconds() -> float:
    """CPU seconds of this process and every live descendant (some tools sample from a child process)."""
    import os

    total = time.process_time()
    tick = os.sysconf("SC_CLK_TCK")
    todo = [os.getpid()]
    seen = set()
    while todo:
        pid = todo.pop()
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as fh:
                    for child in fh.read().split():
                        if int(child) not in seen:
                            seen.add(int(child))
                            todo.append(int(child))
        except OSError:
            continue
    for pid in seen:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            continue
    return total


def run(start: Callable[[float], Any], stop: Callable[[Any], dict[str, float | None]],
        t_import: float | None = None, rounds: Callable[[Any], int] | None = None) -> None:
    """`rounds(handle)`: how many times the tool has read its sensors so far, where it can say; the idle
    mode reports the rate it really achieved, which is not always the interval it was given."""
    args = json.loads(sys.argv[1])
    mode = args["mode"]
    out: dict[str, Any] = {"mode": mode}
    interval = float(args.get("interval", 0.5))
    if mode == "startup":
        # t_import: perf_counter before the tool's import, taken at the top of the adapter
        t0 = t_import if t_import is not None else time.perf_counter()
        h = start(interval)
        stop(h)
        out["seconds"] = time.perf_counter() - t0
    elif mode == "idle":
        h = start(interval)
        time.sleep(min(1.0, float(args["seconds"]) / 4))  # let start-up work finish before counting
        r0 = rounds(h) if rounds else None
        c0, w0 = tree_cpu_seconds(), time.perf_counter()
        time.sleep(float(args["seconds"]))
        c1, w1 = tree_cpu_seconds(), time.perf_counter()
        r1 = rounds(h) if rounds else None
        stop(h)
        out.update(cpu_s=c1 - c0, wall_s=w1 - w0)
        if r0 is not None and r1 is not None:
            out["reads_per_s"] = (r1 - r0) / (w1 - w0)
    elif mode == "work":
        # Bare and profiled blocks alternate in one process (ABBA order), each timed alone: a pair lies
        # within a few seconds, so the machine's drift (other tenants on a VM) cancels in its ratio, which
        # separate processes minutes apart could not give. The tool's start and stop are left out (start-up
        # is measured on its own); it runs throughout its block, as it would around real work.
        work = cpu_workload if args.get("workload", "cpu") == "cpu" else torch_workload
        n = int(args["n"])
        work(max(1, n // 10))  # warm-up (torch's thread pool, allocator), not timed
        bare: list[float] = []
        prof: list[float] = []
        for i in range(int(args.get("pairs", 1))):
            for profiled in ((False, True) if i % 2 == 0 else (True, False)):
                h = start(interval) if profiled else None
                time.sleep(0.2)  # let the tool's start-up threads settle; the same pause when bare
                w0 = time.perf_counter()
                work(n)
                (prof if profiled else bare).append(time.perf_counter() - w0)
                if profiled:
                    stop(h)
        out.update(bare=bare, profiled=prof)
    elif mode == "accuracy":
        h = start(interval)
        t0 = time.time()
        time.sleep(float(args["seconds"]))
        t1 = time.time()
        out.update(stop(h))
        out.update(t_start=t0, t_end=t1)
    print(json.dumps(out), flush=True)
