"""A torch.distributed job for tests: each rank sleeps through a span and counts 100 × (rank + 1) tokens.

Under srun-style variables (SLURM_PROCID, no RANK) the group is initialised from them.
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
with footprint.track("dist-job", interval=0.1) as run:
    with run.span("step", tokens=100 * (rank + 1)):
        time.sleep(2.0)  # long enough that a late tick of the simulated counters stays far below 1 %
    dist.barrier()
dist.destroy_process_group()
print(f"rank {rank} done", flush=True)
