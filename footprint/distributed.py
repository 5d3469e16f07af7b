"""Distributed jobs (torchrun, Slurm): who this process is, what it measures, and one job-wide summary.

Every rank measures only its own GPU(s); node-wide probes (CPU, RAM) run once per node, on local rank
0, so four ranks on a node never count its CPU four times. At the end the ranks' totals travel to rank 0
through the job's own process group (gloo or nccl): no extra process or port of ours.
"""

from __future__ import annotations

import os

from footprint.common.record import FrozenRecord

TYPE_CHECKING = False  # typing itself costs start-up time; annotations need it only when checked
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any


class Identity(FrozenRecord):
    __slots__ = ("rank", "local_rank", "world_size", "local_world_size", "node", "job_id")

    def __init__(self, rank: int, local_rank: int, world_size: int, local_world_size: int, node: str,
                 job_id: str) -> None:
        self.rank = rank
        self.local_rank = local_rank
        self.world_size = world_size
        self.local_world_size = local_world_size
        self.node = node
        self.job_id = job_id

    @property
    def measures_node(self) -> bool:
        return self.local_rank == 0


def _int(env: Mapping[str, str], *names: str) -> int | None:
    for name in names:
        value = env.get(name)
        if value is not None and value.strip().lstrip("-").isdigit():
            return int(value)
    return None


def identity(env: Mapping[str, str] | None = None) -> Identity | None:
    """This process's place in a job, from torchrun's or Slurm's variables; None outside a job."""
    env = os.environ if env is None else env
    world = _int(env, "WORLD_SIZE", "SLURM_NTASKS")
    rank = _int(env, "RANK", "SLURM_PROCID")
    if world is None or rank is None or world < 2:
        return None
    local_rank = _int(env, "LOCAL_RANK", "SLURM_LOCALID") or 0
    local_world = _int(env, "LOCAL_WORLD_SIZE", "SLURM_NTASKS_PER_NODE") or 1
    node = env.get("FOOTPRINT_NODE") or env.get("SLURMD_NODENAME") or os.uname().nodename
    elastic = env.get("TORCHELASTIC_RUN_ID")
    job = (env.get("FOOTPRINT_JOB_ID") or env.get("SLURM_JOB_ID")
           or (elastic if elastic not in (None, "none") else None)
           or f"{env.get('MASTER_ADDR', 'local')}:{env.get('MASTER_PORT', '0')}")
    return Identity(rank, local_rank, world, local_world, node, job)


def gpu_ordinals(ident: Identity, env: Mapping[str, str] | None = None) -> list[int]:
    """The CUDA ordinals this rank measures: FOOTPRINT_GPUS if set ("0,1"), else cuda:LOCAL_RANK (a rank
    beyond the node's GPUs shares one with a lower rank, which measures it, and measures none)."""
    env = os.environ if env is None else env
    given = env.get("FOOTPRINT_GPUS")
    if given is not None:
        return [int(x) for x in given.split(",") if x.strip().isdigit()]
    return [ident.local_rank]


def default_db(ident: Identity) -> str:
    """One SQLite file per node (never one file shared over a network file system)."""
    return os.environ.get("FOOTPRINT_DB") or f"footprint-{ident.node}.db"


def gather_to_rank0(payload: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Every rank's payload on rank 0 (None elsewhere), through the job's own process group; [payload]
    alone when there is no initialised group."""
    import sys

    torch = sys.modules.get("torch")
    dist = getattr(torch, "distributed", None) if torch is not None else None
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return [payload]
    out: list[Any] | None = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(payload, out, dst=0)
    return out
