"""A torch.distributed job for tests: each rank sleeps through a span and counts 100 × (rank + 1) tokens.

FAKE_JOB_FAIL=raise: rank 1 raises inside track() (the script catches it and exits 0); =exit: rank 1
exits inside track() without leaving it. Under srun-style variables (SLURM_PROCID, no RANK) the group is
initialised from them.
"""

import os
import time

import torch.distributed as dist

import footprint

if "RANK" in os.environ:
    dist.init_process_group("gloo")
else:
    dist.init_process_group("gloo", rank=int(os.environ["SLURM_PROCID"]), world_size=int(os.environ["SLURM_NTASKS"]))
rank = dist.get_rank()
fail = os.environ.get("FAKE_JOB_FAIL") if rank == 1 else None
try:
    with footprint.track("dist-job", interval=0.1) as run:
        with run.span("step", tokens=100 * (rank + 1)):
            time.sleep(2.0)  # long enough that a late tick of the simulated counters stays far below 1 %
        if fail == "raise":
            raise RuntimeError("rank 1 failed")
        if fail == "exit":
            os._exit(0)
        if not os.environ.get("FAKE_JOB_FAIL"):
            dist.barrier()
except RuntimeError as exc:
    if fail != "raise":
        raise  # only rank 1's own failure is the script's to swallow
    print(f"rank {rank}: {exc}", flush=True)
dist.destroy_process_group()
print(f"rank {rank} done", flush=True)
