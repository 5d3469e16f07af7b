"""Distributed jobs (torchrun, Slurm): who this process is, what it measures, and one job-wide summary.

Every rank measures only its own GPU(s); node-wide probes (CPU, RAM) run once per node, on local rank
0, so four ranks on a node never count its CPU four times. At the end each rank leaves its totals in the
job's key-value store (torchrun's agent store, else the process group's store) and rank 0 reads what is
there after a bounded wait: no collective, so a rank that failed or exited never blocks the others.
"""

from __future__ import annotations

import contextlib
import os
import sys

from footprint.common.record import FrozenRecord
from footprint.core.store import ENV_DB

TYPE_CHECKING = False  # typing itself costs start-up time; annotations need it only when checked
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

ENV_GATHER_TIMEOUT = "FOOTPRINT_GATHER_TIMEOUT"
# how launchers give each rank its GPUs: CUDA for NVIDIA; the ROCm runtime's and HIP's for AMD
VISIBLE_DEVICES_ENV = ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES")
DEFAULT_GATHER_TIMEOUT_S = 30.0
STORE_TIMEOUT_S = 10.0  # connecting to the job's store, and any one call on it
_KEY = "footprint"


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


def job_id_from_env(env: Mapping[str, str]) -> str | None:
    """A per-launch job id named by the environment: FOOTPRINT_JOB_ID, Slurm's job and step, or torchrun's
    rendezvous id (not its default "none", which every static-rendezvous launch shares)."""
    if env.get("FOOTPRINT_JOB_ID"):
        return env["FOOTPRINT_JOB_ID"]
    slurm_job = env.get("SLURM_JOB_ID")
    if slurm_job:
        step = env.get("SLURM_STEP_ID")
        return f"{slurm_job}.{step}" if step else slurm_job
    elastic = env.get("TORCHELASTIC_RUN_ID")
    if elastic and elastic != "none":
        return elastic
    return None


def launcher_id(node: str, pid: int | None = None) -> str:
    """The parent launcher's pid and start time (unique per launch on one node; ranks on other nodes have
    other launchers, so this is the last resort, when no store can be reached)."""
    pid = os.getppid() if pid is None else pid
    start = "0"
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            start = fh.read().rsplit(")", 1)[1].split()[19]  # field 22, starttime
    except (OSError, IndexError):
        pass
    return f"{node}-{pid}-{start}"


def identity(env: Mapping[str, str] | None = None) -> Identity | None:
    """This process's place in a job, from torchrun's or Slurm's variables; None outside a job.

    With the process's own environment (env=None) and no per-launch id in it, the ranks agree on a fresh
    one through the job's store (the first rank to ask sets it); given a mapping, nothing is asked."""
    live = env is None
    env = os.environ if env is None else env
    world = _int(env, "WORLD_SIZE", "SLURM_NTASKS")
    rank = _int(env, "RANK", "SLURM_PROCID")
    if world is None or rank is None or world < 2:
        return None
    local_rank = _int(env, "LOCAL_RANK", "SLURM_LOCALID") or 0
    local_world = _int(env, "LOCAL_WORLD_SIZE", "SLURM_NTASKS_PER_NODE") or slurm_tasks_on_node(env) or 1
    node = env.get("FOOTPRINT_NODE") or env.get("SLURMD_NODENAME") or os.uname().nodename
    job = job_id_from_env(env)
    if job is None and live:
        job = _agreed_job_id(env)
    if job is None:
        job = launcher_id(node)
    return Identity(rank, local_rank, world, local_world, node, job)


def _agreed_job_id(env: Mapping[str, str]) -> str | None:
    import secrets
    import time

    store = job_store(env)  # torchrun's agent store, or a group initialised before track()
    if store is None:
        return None
    candidate = f"{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}"
    try:
        value = store.compare_set(f"{_KEY}/job_id", "", candidate)
        return value.decode() if isinstance(value, bytes) else str(value)
    except Exception:
        return None


# -- the job's key-value store -----------------------------------------------------------------------

_agent_store: Any = None


def job_store(env: Mapping[str, str] | None = None) -> Any:
    """A torch.distributed Store every rank of this launch reaches, or None: torchrun's agent store (it
    outlives the workers, so a rank that exited does not take it down), else the initialised process
    group's store."""
    global _agent_store
    env = os.environ if env is None else env
    if env.get("TORCHELASTIC_USE_AGENT_STORE") == "True" and env.get("MASTER_ADDR") and env.get("MASTER_PORT"):
        if _agent_store is not None:
            return _agent_store
        try:
            from datetime import timedelta

            from torch.distributed import TCPStore  # type: ignore[attr-defined]

            _agent_store = TCPStore(env["MASTER_ADDR"], int(env["MASTER_PORT"]), is_master=False,
                                    timeout=timedelta(seconds=STORE_TIMEOUT_S), wait_for_workers=False)
            return _agent_store
        except Exception:
            pass
    torch = sys.modules.get("torch")  # never import torch for this: a job that uses a group imported it
    group: Any = getattr(torch, "distributed", None) if torch is not None else None
    try:
        if group is not None and group.is_available() and group.is_initialized():
            return group.distributed_c10d._get_default_store()
    except Exception:
        pass
    return None


# -- what a rank measures ------------------------------------------------------------------------------

def gpu_ordinals(ident: Identity, env: Mapping[str, str] | None = None,
                 layout: tuple[int, int] | None = None) -> list[int] | None:
    """The CUDA ordinals (positions in CUDA_VISIBLE_DEVICES; on AMD, HIP's ordinals after ROCR_VISIBLE_DEVICES
    and HIP_VISIBLE_DEVICES) this rank measures; None: all it sees.

    - FOOTPRINT_GPUS ("0,1") says so explicitly;
    - the only rank on its node measures every GPU it sees (one task using several GPUs);
    - when the launcher gave each rank its own CUDA_VISIBLE_DEVICES or ROCR/HIP_VISIBLE_DEVICES (Slurm
      --gpus-per-task or --gpu-bind, Kubernetes device plugins): every GPU it sees. That is the case when
      cuda:LOCAL_RANK does not exist, or when the ranks' visible sets fit side by side on the node (visible ×
      local ranks <= the node's GPUs);
    - otherwise cuda:LOCAL_RANK (a rank beyond the node's GPUs shares one with a lower rank, which
      measures it, and measures none).
    `layout`: (GPUs visible here, GPUs on the node), asked of NVML, else AMD SMI, when not given."""
    env = os.environ if env is None else env
    given = env.get("FOOTPRINT_GPUS")
    if given is not None:
        return [int(x) for x in given.split(",") if x.strip().isdigit()]
    if ident.local_world_size <= 1:
        return None
    if all(env.get(name) is None for name in VISIBLE_DEVICES_ENV):
        return [ident.local_rank]
    if layout is None:
        from .probes import amd, nvml

        layout = nvml.visible_layout() or amd.visible_layout()
        if layout is None:
            return [ident.local_rank]
    visible, total = layout
    if ident.local_rank >= visible or visible * ident.local_world_size <= total:
        return list(range(visible))
    return [ident.local_rank]


def used_cuda_ordinals() -> set[int] | None:
    """The CUDA devices this process holds memory on, if torch has initialised CUDA; else None."""
    torch = sys.modules.get("torch")
    try:
        if torch is None or not torch.cuda.is_initialized():
            return None
        return {i for i in range(torch.cuda.device_count()) if torch.cuda.memory_reserved(i) > 0}
    except Exception:
        return None


def gpu_mismatch(rank: int, measured: set[int], used: set[int] | None) -> str | None:
    """A one-line warning when a rank's measured CUDA devices are not the ones it used (None: they are)."""
    if used is None or not used or used == measured:
        return None
    unmeasured, idle = sorted(used - measured), sorted(measured - used)
    parts = []
    if unmeasured:
        parts.append("used but not measured: " + ", ".join(f"cuda:{i}" for i in unmeasured))
    if idle:
        parts.append("measured but not used: " + ", ".join(f"cuda:{i}" for i in idle))
    return f"rank {rank}: " + "; ".join(parts) + " (set FOOTPRINT_GPUS to the ordinals this rank uses)"


def default_db(ident: Identity, env: Mapping[str, str] | None = None) -> str:
    """One SQLite file per node (never one file shared over a network file system). `{node}` in
    FOOTPRINT_DB is replaced by the node's name, so one setting serves every node."""
    env = os.environ if env is None else env
    given = env.get(ENV_DB)
    if given:
        return given.replace("{node}", ident.node)
    return f"footprint-{ident.node}.db"


def run_options(db: str | None) -> dict[str, Any]:
    """For `footprint run` started as one rank of a job (`torchrun --no-python footprint run -- ...`):
    start_run's keyword arguments (this rank's GPUs, node probes on local rank 0 only, its node's DB, job
    id and rank); {} outside a job."""
    ident = identity()
    if ident is None:
        return {}
    from .probes import default_probes

    return {"ident": ident, "db": db or default_db(ident),
            "probes": default_probes(node=ident.measures_node, cuda_ordinals=gpu_ordinals(ident))}


def span_name(name: str, env: Mapping[str, str] | None = None) -> str:
    """A rank's span inside a run it joined (`footprint run -- torchrun ...`) says which rank it is: each
    covers the whole node's energy, so unlabelled they read as if they added up."""
    env = os.environ if env is None else env
    rank = _int(env, "RANK", "SLURM_PROCID")
    world = _int(env, "WORLD_SIZE", "SLURM_NTASKS")
    return f"{name} [rank {rank}]" if rank is not None and world is not None and world > 1 else name


# -- the end of a job ------------------------------------------------------------------------------

_rounds = 0  # track() blocks ended in this process: the ranks' n-th blocks meet under the same keys


def gather_timeout(env: Mapping[str, str] | None = None) -> float:
    env = os.environ if env is None else env
    try:
        value = float(env.get(ENV_GATHER_TIMEOUT, DEFAULT_GATHER_TIMEOUT_S))
    except ValueError:
        return DEFAULT_GATHER_TIMEOUT_S
    return value if value >= 0 else DEFAULT_GATHER_TIMEOUT_S


def gather_to_rank0(payload: dict[str, Any], ident: Identity, *, wait: bool = True,
                    timeout_s: float | None = None, store: Any = None) -> tuple[list[dict[str, Any]], list[int]]:
    """Every rank leaves `payload` in the job's store; rank 0 (only) collects those that arrive within
    `timeout_s` (FOOTPRINT_GATHER_TIMEOUT, default 30 s; no wait with wait=False). Returns (payloads,
    ranks that sent none), ([payload], []) on other ranks. Never raises, never blocks past the timeout."""
    import json
    import time

    global _rounds
    _rounds += 1
    prefix = f"{_KEY}/{ident.job_id}/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/{_rounds}"
    store = job_store() if store is None else store
    others = [r for r in range(ident.world_size) if r != ident.rank]
    if store is None:
        return [payload], (others if ident.rank == 0 else [])
    with contextlib.suppress(Exception):  # rank 0's store may be gone already: our run is in our node's DB anyway
        store.set(f"{prefix}/{ident.rank}", json.dumps(payload))
    if ident.rank != 0:
        return [payload], []
    got: dict[int, dict[str, Any]] = {0: payload}
    missing = set(others)
    deadline = time.monotonic() + (gather_timeout() if timeout_s is None else timeout_s)
    try:
        while missing:
            for r in sorted(missing):
                key = f"{prefix}/{r}"
                if store.check([key]):
                    got[r] = json.loads(store.get(key))
                    missing.discard(r)
            if not missing or not wait or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
    except Exception:
        pass  # the store went away (its host exited): what arrived is all there is
    return [got[r] for r in sorted(got)], sorted(missing)


def finish_job(report: Callable[[], dict[str, Any]], ident: Identity, *, failed: bool, summary: bool) -> None:
    """At the end of a rank's track(): warn when the GPUs it measured are not those it used, leave its
    totals (`report()`, the run's dict) for rank 0, and on rank 0 print one job-wide summary (partial, and
    saying so, when ranks sent nothing in time). A failing rank still sends; a failing rank 0 does not wait.
    Never raises."""
    try:
        _finish_job(report, ident, failed=failed, summary=summary)
    except Exception as exc:  # a summary must never turn a finished job into a failed one
        print(f"footprint: no job summary: {type(exc).__name__}: {exc}", file=sys.stderr)


def _finish_job(report: Callable[[], dict[str, Any]], ident: Identity, *, failed: bool, summary: bool) -> None:
    payload = report()  # the rank's run as RunReport.to_dict(): what every rank sends and the job view reads
    gpus = [d for d in payload.get("devices", []) if d.get("kind") == "gpu"]
    measured = [d["index"] for d in gpus]
    used = used_cuda_ordinals()
    if used is not None:
        from .probes import amd, nvml

        # AMD GPUs are numbered by HIP, and an MI250 card's one device stands for both its dies
        on_amd = any(str(d.get("source", "")).startswith("amdsmi") for d in gpus)
        ordinals = amd.cuda_ordinals_of(measured) if on_amd else nvml.cuda_ordinals_of(measured)
        warning = gpu_mismatch(ident.rank, ordinals, used)
        if warning:
            print(f"footprint: {warning}", file=sys.stderr)
            payload.setdefault("warnings", []).append(warning)
    gathered, missing = gather_to_rank0(payload, ident, wait=not failed)
    if ident.rank != 0 or not summary:
        return
    from .core.job import job_report
    from .reports.job import render_job

    job = job_report(gathered, ident.job_id)
    for r in gathered:
        job.warnings.extend(w for w in r.get("warnings", []) if w.startswith("rank "))
    if missing:
        job.warnings.append(f"partial: no totals from rank(s) {', '.join(map(str, missing))}"
                            + ("" if failed else f" within {gather_timeout():g} s")
                            + " (each rank's run is in its node's DB: footprint merge, then report --job)")
    print(render_job(job), file=sys.stderr)
