"""A launcher's per-rank GPU binding, for tests (what Slurm --gpus-per-task or a device plugin does): sets
CUDA_VISIBLE_DEVICES from FAKE_RANK_GPUS ("1|0": local rank 0 sees GPU 1, local rank 1 sees GPU 0), then
runs the rest of the command line in its place."""

import os
import sys

local_rank = int(os.environ.get("LOCAL_RANK") or os.environ["SLURM_LOCALID"])
os.environ["CUDA_VISIBLE_DEVICES"] = os.environ["FAKE_RANK_GPUS"].split("|")[local_rank]
os.execvp(sys.argv[1], sys.argv[1:])
