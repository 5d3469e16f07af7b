import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from common import run  # noqa: E402

# the clock starts after the harness's own imports: they are the same for every tool
T_IMPORT = time.perf_counter()
import footprint  # noqa: E402

DB = f"/tmp/footprint-bench-{os.getpid()}.db"


def start(interval: float):
    t = footprint.track("bench", db=DB, interval=interval, summary=False)
    t.__enter__()
    return t


def stop(t):
    t.__exit__(None, None, None)
    rep = t.run.report()
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(DB + suffix):
            os.remove(DB + suffix)
    return {"gpu_j": rep.energy_j["gpu"], "cpu_j": rep.energy_j["cpu"],
            "t_tool_start": rep.started_at, "t_tool_end": rep.ended_at}


def rounds(t):
    return t.run.sampler.rounds


run(start, stop, T_IMPORT, rounds)
