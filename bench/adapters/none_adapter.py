"""No profiler: the baseline every other adapter is compared with."""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from common import run  # noqa: E402

run(lambda interval: None, lambda h: {"gpu_j": None, "cpu_j": None})
