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


def slurm_tasks_on_node(env: Mapping[str, str]) -> int | None:
    """Tasks of this step on this node, from SLURM_STEP_TASKS_PER_NODE / SLURM_TASKS_PER_NODE ("2(x3),1":
    2 tasks on each of the first 3 nodes, 1 on the fourth) and SLURM_NODEID."""
    spec = env.get("SLURM_STEP_TASKS_PER_NODE") or env.get("SLURM_TASKS_PER_NODE")
    node_id = _int(env, "SLURM_NODEID")
    if not spec:
        return None
    counts: list[int] = []
    for part in spec.split(","):
        n, _, rep = part.partition("(x")
        if not n.strip().isdigit():
            return None
        counts.extend([int(n)] * (int(rep.rstrip(")")) if rep.rstrip(")").isdigit() else 1))
    if node_id is None:
        return counts[0] if len(set(counts)) == 1 else None
    return counts[node_id] if 0 <= node_id < len(counts) else None


def identity(env: Mapping[str, str] | None = None) -> Identity | None:
    """This process's place in a job, from torchrun's or Slurm's variables; None outside a job."""
    env = os.environ if env is None else env
    world = _int(env, "WORLD_SIZE", "SLURM_NTASKS")
    rank = _int(env, "RANK", "SLURM_PROCID")
    if world is None or rank is None or world < 2:
        return None
    local_rank = _int(env, "LOCAL_RANK", "SLURM_LOCALID") or 0
    local_world = _int(env, "LOCAL_WORLD_SIZE", "SLURM_NTASKS_PER_NODE") or slurm_tasks_on_node(env) or 1
    node = env.get("FOOTPRINT_NODE") or env.get("SLURMD_NODENAME") or os.uname().nodename
    elastic = env.get("TORCHELASTIC_RUN_ID")
    job = (env.get("FOOTPRINT_JOB_ID") or env.get("SLURM_JOB_ID")
           or (elastic if elastic not in (None, "none") else None)
           or f"{env.get('MASTER_ADDR', 'local')}:{env.get('MASTER_PORT', '0')}")
    return Identity(rank, local_rank, world, local_world, node, job)


def gpu_ordinals(ident: Identity, env: Mapping[str, str] | None = None,
                 layout: tuple[int, int] | None = None) -> list[int] | None:
    """The CUDA ordinals (positions in CUDA_VISIBLE_DEVICES) this rank measures; None: all it sees.

    - FOOTPRINT_GPUS ("0,1") says so explicitly;
    - the only rank on its node measures every GPU it sees (one task using several GPUs);
    - when the launcher gave each rank its own CUDA_VISIBLE_DEVICES (Slurm --gpus-per-task or --gpu-bind,
      Kubernetes device plugins): every GPU it sees. That is the case when cuda:LOCAL_RANK does not exist, or
      when the ranks' visible sets fit side by side on the node (visible × local ranks <= the node's GPUs);
    - otherwise cuda:LOCAL_RANK (a rank beyond the node's GPUs shares one with a lower rank, which
      measures it, and measures none).
    `layout`: (GPUs visible here, GPUs on the node), asked of NVML when not given."""
    env = os.environ if env is None else env
    given = env.get("FOOTPRINT_GPUS")
    if given is not None:
        return [int(x) for x in given.split(",") if x.strip().isdigit()]
    if ident.local_world_size <= 1:
        return None
    if env.get("CUDA_VISIBLE_DEVICES") is None:
        return [ident.local_rank]
    if layout is None:
        from .probes.nvml import visible_layout

        layout = visible_layout()
        if layout is None:
            return [ident.local_rank]
    visible, total = layout
    if ident.local_rank >= visible or visible * ident.local_world_size <= total:
        return list(range(visible))
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
