import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from common import run  # noqa: E402

# the clock starts after the harness's own imports: they are the same for every tool
T_IMPORT = time.perf_counter()
import contextlib  # noqa: E402
import tempfile  # noqa: E402

from carbontracker.tracker import CarbonTracker  # noqa: E402


def start(interval: float):
    ct = CarbonTracker(epochs=1, monitor_epochs=1, epochs_before_pred=0, update_interval=interval, verbose=0,
                       log_dir=tempfile.mkdtemp(), ignore_errors=True)
    ct.epoch_start()
    return ct


def stop(ct):
    # read the per-component energy of the epoch before carbontracker's own end-of-run handling
    inner = ct.tracker
    inner.epoch_counter += 1
    inner.epoch_times.append(time.time() - inner.cur_epoch_time)
    inner._collect_measurements()
    out = {"gpu_j": None, "cpu_j": None}
    for comp in inner.components:
        kwh = comp.energy_usage(inner.epoch_times)
        if len(kwh) and comp.name in ("gpu", "cpu"):
            out[f"{comp.name}_j"] = float(kwh[0]) * 3.6e6
    with contextlib.suppress(BaseException):  # its shutdown path is not what we measure
        ct.stop()
    return out


def rounds(ct):
    # every measurement round appends one figure per component
    comps = ct.tracker.components
    return sum(len(u) for u in comps[0].power_usages) if comps else 0


run(start, stop, T_IMPORT, rounds)
