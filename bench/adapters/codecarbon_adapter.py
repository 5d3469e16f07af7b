import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from common import run  # noqa: E402

# the clock starts after the harness's own imports: they are the same for every tool
T_IMPORT = time.perf_counter()
import logging  # noqa: E402

from codecarbon import OfflineEmissionsTracker  # noqa: E402

logging.getLogger("codecarbon").setLevel(logging.ERROR)


def start(interval: float):
    # Offline tracker with a given country: CodeCarbon's documented way to avoid its geo-IP look-up
    t = OfflineEmissionsTracker(country_iso_code="USA", measure_power_secs=interval, save_to_file=False,
                                log_level="error", tracking_mode="machine", allow_multiple_runs=True)
    t.start()
    return t


def stop(t):
    t.stop()
    d = t.final_emissions_data
    kwh_to_j = 3.6e6
    return {"gpu_j": d.gpu_energy * kwh_to_j if d.gpu_energy else None,
            "cpu_j": d.cpu_energy * kwh_to_j if d.cpu_energy else None}


def rounds(t):
    return t._measure_occurrence  # counted by CodeCarbon at each measurement (reset only for API output)


run(start, stop, T_IMPORT, rounds)
