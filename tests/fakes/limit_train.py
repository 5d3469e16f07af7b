"""A stand-in training loop that experiences the GPU power limit, driven by footprint.PowerLimitTuner.

Each step asks the stand-in NVML (through the real pynvml) for its GPU's limit L and takes
work / speed(L) seconds: with --time-file, on a clock it advances itself (the stand-in NVML reads the same
file, so the GPU's energy over a step is exactly min(demand, L) * step time); else it sleeps. speed() is
the model of tests/test_powerlimit.py: linear from STATIC_W up to KNEE_W, then BETA as steep.

    python limit_train.py STEPS [--objective ...] [--time-file F] [--gpu N] [--slow F] [--kill-at STEP]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time

STATIC_W, KNEE_W, BETA = 100.0, 400.0, 0.3  # the speed model
WORK_S = 0.05  # a step's time at the knee


def speed(limit_w: float) -> float:
    return (min(limit_w, KNEE_W) - STATIC_W) / (KNEE_W - STATIC_W) + BETA * max(limit_w - KNEE_W, 0.0) / (
        KNEE_W - STATIC_W)


def step_s(limit_w: float, slow: float = 1.0) -> float:
    return WORK_S * slow / speed(limit_w)


class FileClock:
    """Time kept in a file the stand-in NVML reads too (epoch seconds as text)."""

    fake = True

    def __init__(self, path: str) -> None:
        self.path = path

    def now(self) -> float:
        with open(self.path) as fh:
            return float(fh.read())

    def monotonic(self) -> float:
        return self.now()

    def advance(self, seconds: float) -> None:
        t = self.now() + seconds
        with open(self.path + ".tmp", "w") as fh:
            fh.write(f"{t:.9f}")
        os.replace(self.path + ".tmp", self.path)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("steps", type=int)
    ap.add_argument("--objective", default="energy")
    ap.add_argument("--eta", type=float, default=0.5)
    ap.add_argument("--max-slowdown", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--profile-steps", type=int, default=3)
    ap.add_argument("--step-w", type=float, default=100.0)
    ap.add_argument("--profile")
    ap.add_argument("--time-file")
    ap.add_argument("--gpu", type=int, default=0, help="NVML index of the GPU this process runs on")
    ap.add_argument("--slow", type=float, default=1.0, help="this process's steps take this much longer")
    ap.add_argument("--kill-at", type=int, help="SIGKILL itself at the start of this step")
    ap.add_argument("--track", action="store_true", help="inside footprint.track() (a run to store with)")
    ap.add_argument("--distributed", action="store_true", help="join a gloo process group (torchrun)")
    a = ap.parse_args()

    if a.distributed:
        import torch.distributed as dist

        dist.init_process_group("gloo")
        rank = dist.get_rank()
        a.gpu = rank
        a.slow = 1.0 + 0.25 * rank  # rank 1 is slower: the profile's time is its time
        if a.time_file:
            a.time_file = f"{a.time_file}.{rank}"
    if a.time_file:
        os.environ["FAKE_NVML_TIME_FILE"] = a.time_file  # read by the stand-in NVML at nvmlInit
    import pynvml

    import footprint
    from footprint.powerlimit import PowerLimitTuner

    clock = FileClock(a.time_file) if a.time_file else None
    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(a.gpu)
    with footprint.track("train", summary=False) if a.track else _nothing() as run:
        tuner = PowerLimitTuner(objective=a.objective, eta=a.eta, max_slowdown=a.max_slowdown,
                                warmup_steps=a.warmup, profile_steps=a.profile_steps, step_w=a.step_w,
                                profile=a.profile, clock=clock, gpus=[a.gpu] if not a.distributed else None,
                                run=run)
        with tuner:
            for step in range(a.steps):
                if step == a.kill_at:
                    emit({"killing": step, "limit_w": pynvml.nvmlDeviceGetPowerManagementLimit(handle) / 1000})
                    os.kill(os.getpid(), signal.SIGKILL)
                tuner.on_step_begin()
                dt = step_s(pynvml.nvmlDeviceGetPowerManagementLimit(handle) / 1000.0, a.slow)
                if clock is not None:
                    clock.advance(dt)
                else:
                    time.sleep(dt)
                tuner.on_step_end()
            during = pynvml.nvmlDeviceGetPowerManagementLimit(handle) / 1000.0
        after = pynvml.nvmlDeviceGetPowerManagementLimit(handle) / 1000.0
    emit({"chosen_w": tuner.chosen_w, "state": tuner.state, "limit_at_end_w": during, "limit_after_close_w": after,
          "run_id": run.id if run is not None else None, "profiles": [p.to_dict() for p in tuner.profiles]})
    return 0


def emit(result: dict[str, object]) -> None:
    """One JSON line on stdout in a single write(2). Under torchrun the ranks share the test's stdout pipe and run
    as `python -u` (unbuffered), where print() writes the text and its newline in two calls: another rank's line
    could land between them ('{rank 0}{rank 1}' then an empty line). One write of at most PIPE_BUF bytes to a
    pipe is atomic, so each line arrives whole."""
    import select

    data = (json.dumps(result) + "\n").encode()
    if len(data) > select.PIPE_BUF and os.environ.get("WORLD_SIZE", "1") != "1":
        raise SystemExit(f"limit_train: a {len(data)}-byte result line is not written atomically by one rank "
                         f"(PIPE_BUF is {select.PIPE_BUF})")
    sys.stdout.flush()
    view = memoryview(data)
    while view:
        view = view[os.write(sys.stdout.fileno(), view):]


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *_: object) -> None:
        pass


if __name__ == "__main__":
    sys.exit(main())
