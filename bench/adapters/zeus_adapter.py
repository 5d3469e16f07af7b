import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from common import run  # noqa: E402

# the clock starts after the harness's own imports: they are the same for every tool
T_IMPORT = time.perf_counter()
from zeus.monitor import ZeusMonitor  # noqa: E402


def start(interval: float):
    # Zeus measures windows (counter reads at begin/end), it has no sampling interval to set
    m = ZeusMonitor(approx_instant_energy=True)
    m.begin_window("bench", sync_execution=False)
    return m


def stop(m):
    mes = m.end_window("bench", sync_execution=False)
    gpu = sum(mes.gpu_energy.values()) if mes.gpu_energy else None
    cpu = sum(mes.cpu_energy.values()) if getattr(mes, "cpu_energy", None) else None
    return {"gpu_j": gpu, "cpu_j": cpu}


if __name__ == "__main__":
    run(start, stop, T_IMPORT)
