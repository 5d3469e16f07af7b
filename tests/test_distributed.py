"""Beyond one machine: torchrun jobs (gloo on CPU), per-node DBs merged, and the Prometheus exporter."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from footprint.distributed import (
    Identity,
    default_db,
    gather_to_rank0,
    gpu_mismatch,
    gpu_ordinals,
    identity,
    slurm_tasks_on_node,
    used_cuda_ordinals,
)
from tests.conftest import FAKES, ROOT, footprint_cmd, free_port, nvml_env, requires, run_cli
from tests.fakes.powercap import PowercapTree
from tests.fakes.profile import gpu_energy_between

pytestmark = requires("torch")  # torchrun and gloo
PY = sys.executable
CPU_W, RAM_W = 70.0, 10.0  # the powercap tree's packages and dram zones


def job_json(db: Path, env: dict[str, str]) -> dict[str, Any]:
    res = run_cli(["report", "--db", str(db), "--job", "--json"], env)
    assert res.returncode == 0, res.stderr.decode()
    out: dict[str, Any] = json.loads(res.stdout)
    return out


def runs_json(db: Path, env: dict[str, str], ids: list[int]) -> list[dict[str, Any]]:
    res = run_cli(["report", "--db", str(db), "--json", *map(str, ids)], env)
    assert res.returncode == 0, res.stderr.decode()
    runs: list[dict[str, Any]] = json.loads(res.stdout)["runs"]
    return runs


def test_identity_from_torchrun_and_slurm():
    assert identity({}) is None
    assert identity({"RANK": "0", "WORLD_SIZE": "1"}) is None
    t = identity({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4",
                  "TORCHELASTIC_RUN_ID": "abc", "FOOTPRINT_NODE": "n1"})
    assert t is not None and (t.rank, t.local_rank, t.world_size, t.node, t.job_id) == (3, 1, 8, "n1", "abc")
    assert not t.measures_node and gpu_ordinals(t, {}) == [1]
    s = identity({"SLURM_PROCID": "4", "SLURM_NTASKS": "8", "SLURM_LOCALID": "0", "SLURM_JOB_ID": "777",
                  "SLURMD_NODENAME": "gpu-07"})
    assert s is not None and (s.rank, s.local_rank, s.node, s.job_id) == (4, 0, "gpu-07", "777") and s.measures_node
    assert gpu_ordinals(s, {"FOOTPRINT_GPUS": "0,1"}) == [0, 1]
    step = identity({"SLURM_PROCID": "1", "SLURM_NTASKS": "2", "SLURM_JOB_ID": "777", "SLURM_STEP_ID": "3",
                     "SLURM_NODEID": "1", "SLURM_STEP_TASKS_PER_NODE": "3,1"})
    assert step is not None and step.job_id == "777.3" and step.local_world_size == 1  # each srun its own job
    static = {"RANK": "0", "WORLD_SIZE": "2", "TORCHELASTIC_RUN_ID": "none", "MASTER_ADDR": "h", "MASTER_PORT": "1"}
    a = identity(static)
    assert a is not None and a.job_id != "h:1" and a.job_id.startswith(a.node)  # the launcher's, not the port's


def test_slurm_tasks_per_node():
    assert slurm_tasks_on_node({"SLURM_TASKS_PER_NODE": "2(x3),1", "SLURM_NODEID": "2"}) == 2
    assert slurm_tasks_on_node({"SLURM_TASKS_PER_NODE": "2(x3),1", "SLURM_NODEID": "3"}) == 1
    assert slurm_tasks_on_node({"SLURM_STEP_TASKS_PER_NODE": "4(x2)"}) == 4
    assert slurm_tasks_on_node({}) is None


def test_gpu_ordinals_per_launch_pattern():
    def ranks(local_world: int, cvd: str | None, layout: tuple[int, int]) -> list[list[int] | None]:
        env = {} if cvd is None else {"CUDA_VISIBLE_DEVICES": cvd}
        return [gpu_ordinals(Identity(r, r, local_world, local_world, "n", "j"), env, layout)
                for r in range(local_world)]

    assert ranks(2, None, (2, 2)) == [[0], [1]]  # torchrun, all visible: cuda:LOCAL_RANK
    assert ranks(2, "0,1", (2, 2)) == [[0], [1]]
    assert ranks(2, "1", (1, 2)) == [[0], [0]]  # one GPU per rank (--gpus-per-task): the one it sees
    assert ranks(2, "2,3", (2, 4)) == [[0, 1], [0, 1]]  # two per rank, side by side on a 4-GPU node
    assert ranks(1, None, (2, 2)) == [None]  # alone on its node: every GPU it sees
    assert ranks(4, None, (2, 2))[3] == [3]  # beyond the node's GPUs: shares, measures none (the probe skips it)


def test_gpu_ordinals_follow_rocr_and_hip_visible_devices():
    def ranks(local_world: int, env: dict[str, str], layout: tuple[int, int]) -> list[list[int] | None]:
        return [gpu_ordinals(Identity(r, r, local_world, local_world, "n", "j"), env, layout)
                for r in range(local_world)]

    assert ranks(2, {"ROCR_VISIBLE_DEVICES": "1"}, (1, 2)) == [[0], [0]]  # Slurm binds one GPU per task
    assert ranks(2, {"HIP_VISIBLE_DEVICES": "2,3"}, (2, 4)) == [[0, 1], [0, 1]]
    assert ranks(2, {"ROCR_VISIBLE_DEVICES": "0,1"}, (2, 2)) == [[0], [1]]  # all visible: cuda:LOCAL_RANK


def test_gpu_mismatch_is_said():
    assert gpu_mismatch(1, {0}, None) is None and gpu_mismatch(1, {0}, {0}) is None
    text = gpu_mismatch(1, {0}, {0, 1})
    assert text is not None and text.startswith("rank 1: used but not measured: cuda:1")


def test_used_gpus_read_from_torch(monkeypatch: pytest.MonkeyPatch):
    import types

    cuda = types.SimpleNamespace(is_initialized=lambda: True, device_count=lambda: 3,
                                 memory_reserved=lambda i: 1 << 20 if i in (0, 2) else 0)
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=cuda))
    assert used_cuda_ordinals() == {0, 2}
    cuda.is_initialized = lambda: False
    assert used_cuda_ordinals() is None  # CUDA never used: nothing to compare


def test_default_db_per_node():
    ident = Identity(0, 0, 2, 2, "gpu-07", "j")
    assert default_db(ident, {}) == "footprint-gpu-07.db"
    assert default_db(ident, {"FOOTPRINT_DB": "/tmp/footprint-{node}.db"}) == "/tmp/footprint-gpu-07.db"


def test_gather_is_bounded_and_never_raises():
    class Gone:
        def set(self, *_: Any) -> None:
            raise RuntimeError("Connection closed by peer")

        check = get = set

    ident = Identity(0, 0, 3, 3, "n", "j")
    t = time.monotonic()
    got, missing = gather_to_rank0({"id": 1}, ident, store=Gone(), timeout_s=30)
    assert got == [{"id": 1}] and missing == [1, 2] and time.monotonic() - t < 1


@pytest.mark.slow
def test_torchrun_two_ranks_one_node(tmp_path: Path, nvml_lib_dir: Path, clean_env: dict[str, str]):
    with PowercapTree(tmp_path / "pc", _zones(), period_s=0.002) as tree:
        env = nvml_env(clean_env, nvml_lib_dir, gpus=2, power="100,200")
        env.pop("FOOTPRINT_DB")  # distributed default: one DB per node, named after it
        env.update(FOOTPRINT_POWERCAP=str(tree.root), FOOTPRINT_NODE="node-a")
        res = subprocess.run([PY, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                              str(FAKES / "dist_job.py")], env=env, cwd=tmp_path, capture_output=True, timeout=300)
    assert res.returncode == 0, res.stderr.decode()[-4000:]
    err = res.stderr.decode()
    assert err.count("footprint · job") == 1  # one job-wide summary, from rank 0
    assert "partial" not in err and "not measured" not in err
    # every GPU visible to every rank: each rank measures its own (LOCAL_RANK), each GPU once
    runs = node_runs(tmp_path, env)
    assert sorted(r["rank"] for r in runs) == [0, 1] and len({r["job_id"] for r in runs}) == 1
    assert_each_gpu_once(runs, float(env["FAKE_NVML_T0"]), {"node-a": [100.0, 200.0]}, {0: [0], 1: [1]})
    db = tmp_path / "footprint-node-a.db"
    job = job_json(db, env)
    runs = runs_json(db, env, job["runs"])
    by_rank = {r["rank"]: r for r in runs}
    assert sorted(by_rank) == [0, 1]
    r0, r1 = by_rank[0], by_rank[1]
    assert sorted(f"{d['kind']}:{d['index']}" for d in r0["devices"]) == ["cpu:0", "cpu:1", "gpu:0", "ram:0", "ram:1"]
    assert [f"{d['kind']}:{d['index']}" for d in r1["devices"]] == ["gpu:1"]  # no second copy of the node's CPU
    d0 = r0["ended_at"] - r0["started_at"]
    d1 = r1["ended_at"] - r1["started_at"]
    assert r0["energy_j"]["gpu"] == pytest.approx(100.0 * d0, rel=0.01)
    assert r1["energy_j"]["gpu"] == pytest.approx(200.0 * d1, rel=0.01)
    assert r0["energy_j"]["cpu"] == pytest.approx(CPU_W * d0, rel=0.01)
    exact = 100.0 * d0 + 200.0 * d1 + (CPU_W + RAM_W) * d0
    assert job["energy_j"]["total"] == pytest.approx(exact, rel=0.01)
    assert job["energy_j"]["cpu"] == pytest.approx(r0["energy_j"]["cpu"])  # node energy counted once
    assert job["tokens"] == 100 + 200
    assert job["j_per_token"] == pytest.approx(job["energy_j"]["total"] / 300)
    assert [n["node"] for n in job["nodes"]] == ["node-a"] and job["nodes"][0]["ranks"] == [0, 1]


def uuid(i: int) -> str:
    return f"GPU-0000fa4e-0000-0000-0000-{i:012d}"  # the stand-in NVML's


def node_runs(cwd: Path, env: dict[str, str]) -> list[dict[str, Any]]:
    """Every run in the per-node DBs (footprint-<node>.db) under cwd."""
    runs = []
    for db in sorted(cwd.glob("footprint-*.db")):
        ids = [r[0] for r in _sql(db, "SELECT id FROM runs ORDER BY id")]
        runs.extend(dict(r, db=db.name) for r in runs_json(db, env, ids))
    return runs


def _sql(db: Path, query: str) -> list[tuple[Any, ...]]:
    import sqlite3

    with sqlite3.connect(db) as con:
        return list(con.execute(query))


def assert_each_gpu_once(runs: list[dict[str, Any]], t0: float, watts: dict[str, list[float]],
                         expected: dict[int, list[int]]) -> None:
    """Every GPU of every node measured by exactly one rank (the one `expected` names: rank -> physical
    indices), its energy the exact integral of its (constant) power over that rank's run."""
    seen: list[tuple[str, str]] = []
    for r in runs:
        gpus = [d for d in r["devices"] if d["kind"] == "gpu"]
        assert sorted(d["index"] for d in gpus) == expected[r["rank"]], (r["rank"], gpus)
        for d in gpus:
            exact = gpu_energy_between(r["started_at"], r["ended_at"], t0, watts[r["node"]][d["index"]])
            assert d["energy_j"] == pytest.approx(exact, rel=0.01), (r["rank"], d)
            assert d["uuid"] == uuid(d["index"])
            seen.append((r["node"], d["uuid"]))
    every = [(node, uuid(i)) for node, w in watts.items() for i in range(len(w))]
    assert sorted(seen) == sorted(every)  # each once: none missing, none twice


def torchrun(args: list[str], env: dict[str, str], cwd: Path,
             timeout: float = 240) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([PY, "-m", "torch.distributed.run", *args], env=env, cwd=cwd, capture_output=True,
                          timeout=timeout)


@pytest.mark.slow
@pytest.mark.parametrize("pattern", ["cvd-index-per-rank", "cvd-uuid-per-rank"])
def test_torchrun_each_gpu_counted_once(pattern: str, tmp_path: Path, nvml_lib_dir: Path,
                                        clean_env: dict[str, str]):
    """The launcher binds rank 0 to GPU 1 and rank 1 to GPU 0 (by index or by UUID): each GPU once, by the rank
    bound to it. (Every GPU visible to every rank: test_torchrun_two_ranks_one_node.)"""
    env = nvml_env(clean_env, nvml_lib_dir, gpus=2, power="100,200")
    env.pop("FOOTPRINT_DB")
    env["FOOTPRINT_NODE"] = "node-a"
    env["FAKE_RANK_GPUS"] = "1|0" if pattern == "cvd-index-per-rank" else f"{uuid(1)}|{uuid(0)}"
    cmd = ["--standalone", "--nproc_per_node", "2", "--no-python", PY, str(FAKES / "per_rank_gpus.py"), PY]
    expected = {0: [1], 1: [0]}
    res = torchrun([*cmd, str(FAKES / "dist_job.py")], env, tmp_path)
    assert res.returncode == 0, res.stderr.decode()[-4000:]
    err = res.stderr.decode()
    assert err.count("footprint · job") == 1 and "partial" not in err and "not measured" not in err
    runs = node_runs(tmp_path, env)
    assert sorted(r["rank"] for r in runs) == [0, 1] and len({r["job_id"] for r in runs}) == 1
    assert_each_gpu_once(runs, float(env["FAKE_NVML_T0"]), {"node-a": [100.0, 200.0]}, expected)


def slurm_step(tmp_path: Path, nvml_lib_dir: Path, clean_env: dict[str, str], tasks: list[dict[str, str]],
               watts: dict[str, str]) -> tuple[float, list[tuple[int, bytes, bytes]]]:
    """What srun starts: one process per task with Slurm's variables (no torchrun), rank 0 hosting the group."""
    port = free_port()
    procs = []
    t0 = f"{time.time() - 100:.6f}"
    nodes = sorted({t["SLURMD_NODENAME"] for t in tasks})
    per_node = [sum(t["SLURMD_NODENAME"] == n for t in tasks) for n in nodes]
    for rank, task in enumerate(tasks):
        env = nvml_env(clean_env, nvml_lib_dir, gpus=len(watts[task["SLURMD_NODENAME"]].split(",")),
                       power=watts[task["SLURMD_NODENAME"]], t0=t0)
        env.pop("FOOTPRINT_DB")
        node_id = nodes.index(task["SLURMD_NODENAME"])
        env.update(SLURM_JOB_ID="4242", SLURM_STEP_ID="0", SLURM_PROCID=str(rank), SLURM_NTASKS=str(len(tasks)),
                   SLURM_NODEID=str(node_id), SLURM_STEP_TASKS_PER_NODE=",".join(map(str, per_node)),
                   SLURM_LOCALID=str(sum(t["SLURMD_NODENAME"] == task["SLURMD_NODENAME"] for t in tasks[:rank])),
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), **task)
        procs.append(subprocess.Popen([PY, str(FAKES / "dist_job.py")], env=env, cwd=tmp_path,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    outs = [p.communicate(timeout=240) for p in procs]
    return float(t0), [(p.returncode, o, e) for p, (o, e) in zip(procs, outs, strict=True)]


@pytest.mark.slow
@pytest.mark.parametrize("pattern", ["gpus-per-task", "one-task-per-node-two-gpus"])
def test_slurm_variables_without_torchrun_each_gpu_once(pattern: str, tmp_path: Path, nvml_lib_dir: Path,
                                                        clean_env: dict[str, str]):
    if pattern == "gpus-per-task":  # srun --ntasks-per-node 2 --gpus-per-task 1: Slurm binds GPU 1, then 0
        tasks = [dict(SLURMD_NODENAME="node-a", CUDA_VISIBLE_DEVICES="1"),
                 dict(SLURMD_NODENAME="node-a", CUDA_VISIBLE_DEVICES="0")]
        watts = {"node-a": "100,200"}
        expected = {0: [1], 1: [0]}
    else:  # srun -N 2 --ntasks-per-node 1 --gpus-per-node 2: one task uses both GPUs of its node
        tasks = [dict(SLURMD_NODENAME="node-a", CUDA_VISIBLE_DEVICES="0,1"),
                 dict(SLURMD_NODENAME="node-b", CUDA_VISIBLE_DEVICES="0,1")]
        watts = {"node-a": "100,200", "node-b": "300,400"}
        expected = {0: [0, 1], 1: [0, 1]}
    t0, results = slurm_step(tmp_path, nvml_lib_dir, clean_env, tasks, watts)
    for rc, _, err in results:
        assert rc == 0, err.decode()[-4000:]
    err0 = results[0][2].decode()
    assert err0.count("footprint · job 4242.0") == 1 and "partial" not in err0
    runs = node_runs(tmp_path, clean_env)
    assert {r["job_id"] for r in runs} == {"4242.0"}
    assert_each_gpu_once(runs, t0, {n: [float(w) for w in v.split(",")] for n, v in watts.items()},
                         expected)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["raise", "exit"])
def test_failing_rank_never_hurts_rank0(how: str, tmp_path: Path, nvml_lib_dir: Path, clean_env: dict[str, str]):
    """Rank 1 leaves track() with an exception (the script goes on), or exits inside it: rank 0 finishes
    promptly, exit code 0, with a job summary that says what is missing."""
    env = nvml_env(clean_env, nvml_lib_dir, gpus=2, power="100,200")
    env.update(FAKE_JOB_FAIL=how, FOOTPRINT_GATHER_TIMEOUT="3")
    start = time.monotonic()
    res = torchrun(["--standalone", "--nproc_per_node", "2", str(FAKES / "dist_job.py")], env, tmp_path, timeout=120)
    took = time.monotonic() - start
    out, err = res.stdout.decode(), res.stderr.decode()
    assert res.returncode == 0, err[-4000:]
    assert "rank 0 done" in out and "Traceback" not in err and "RuntimeError" not in err.replace("rank 1 failed", "")
    assert err.count("footprint · job") == 1
    if how == "raise":  # rank 1 still sent its totals: nothing to wait for
        assert "rank 1: rank 1 failed" in out and "(rank 1) is failed" in err and "partial" not in err
    else:
        assert "partial: no totals from rank(s) 1 within 3 s" in err
    assert took < 60  # not the process group's 30-minute timeout
    runs = runs_json(Path(env["FOOTPRINT_DB"]), env, [1, 2])
    assert {r["rank"]: r["status"] for r in runs}[0] == "completed"


@pytest.mark.slow
def test_each_launch_its_own_job_id(tmp_path: Path, nvml_lib_dir: Path, clean_env: dict[str, str]):
    """A fixed --master_addr/--master_port (static rendezvous, run id "none") still gives every launch its own
    job id, which both ranks share."""
    env = nvml_env(clean_env, nvml_lib_dir, gpus=2, power="100,200")
    port = str(free_port())
    for _ in range(2):
        res = torchrun(["--nnodes", "1", "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", port,
                        str(FAKES / "dist_job.py")], env, tmp_path)
        assert res.returncode == 0, res.stderr.decode()[-4000:]
    runs = runs_json(Path(env["FOOTPRINT_DB"]), env, [1, 2, 3, 4])
    jobs: dict[str, list[int]] = {}
    for r in runs:
        jobs.setdefault(r["job_id"], []).append(r["rank"])
    assert sorted(map(sorted, jobs.values())) == [[0, 1], [0, 1]]
    assert f"127.0.0.1:{port}" not in jobs
    job = job_json(Path(env["FOOTPRINT_DB"]), env)  # the last launch's job only
    assert len(job["runs"]) == 2 and job["tokens"] == 300


@pytest.mark.slow
def test_job_id_agreed_through_the_group_without_a_launcher_id(tmp_path: Path, nvml_lib_dir: Path,
                                                                clean_env: dict[str, str]):
    """RANK/WORLD_SIZE set by some other launcher, the group initialised before track(): the ranks agree
    on a fresh id through the group's store."""
    port = str(free_port())
    procs = []
    for rank in range(2):
        env = nvml_env(clean_env, nvml_lib_dir, gpus=2, power="100,200")
        env.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2",
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
        procs.append(subprocess.Popen([PY, str(FAKES / "dist_job.py")], env=env, cwd=tmp_path,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err.decode()[-4000:]
    runs = runs_json(Path(clean_env["FOOTPRINT_DB"]), clean_env, [1, 2])
    (job,) = {r["job_id"] for r in runs}
    assert job[:8].isdigit() and "T" in job  # the agreed one (a launcher id would start with the node's name)


@pytest.mark.slow
def test_footprint_run_as_each_rank(tmp_path: Path, nvml_lib_dir: Path, clean_env: dict[str, str]):
    """torchrun --no-python footprint run -- python train.py: each footprint run is one rank's run, the node
    measured once (on local rank 0), each GPU by its rank, all under one job id."""
    with PowercapTree(tmp_path / "pc", _zones(), period_s=0.002) as tree:
        env = nvml_env(clean_env, nvml_lib_dir, gpus=2, power="100,200")
        env.pop("FOOTPRINT_DB")
        env.update(FOOTPRINT_POWERCAP=str(tree.root), FOOTPRINT_NODE="node-a")
        res = torchrun(["--standalone", "--nproc_per_node", "2", "--no-python", *footprint_cmd(), "run",
                        "--interval", "0.1", "--", PY, str(FAKES / "dist_job.py")], env, tmp_path)
    assert res.returncode == 0, res.stderr.decode()[-4000:]
    job = job_json(tmp_path / "footprint-node-a.db", env)  # report --job: the runs carry the job id and rank
    runs = runs_json(tmp_path / "footprint-node-a.db", env, job["runs"])
    assert sorted(r["rank"] for r in runs) == [0, 1]
    assert_each_gpu_once(runs, float(env["FAKE_NVML_T0"]), {"node-a": [100.0, 200.0]}, {0: [0], 1: [1]})
    r0 = next(r for r in runs if r["rank"] == 0)
    assert next(r for r in runs if r["rank"] == 1)["energy_j"]["cpu"] is None  # the node once, not per rank
    assert job["energy_j"]["cpu"] == pytest.approx(CPU_W * (r0["ended_at"] - r0["started_at"]), rel=0.01)
    assert job["tokens"] == 300


@pytest.mark.slow
def test_ranks_inside_footprint_run_label_their_spans(tmp_path: Path, nvml_lib_dir: Path,
                                                      clean_env: dict[str, str]):
    """footprint run -- torchrun ...: one run for the node; each rank's span says which rank it is."""
    env = nvml_env(clean_env, nvml_lib_dir, gpus=2, power="100,200")
    res = run_cli(["run", "--interval", "0.1", "--", PY, "-m", "torch.distributed.run", "--standalone",
                   "--nproc_per_node", "2", str(FAKES / "dist_job.py")], env, timeout=240, cwd=tmp_path)
    assert res.returncode == 0, res.stderr.decode()[-4000:]
    runs = runs_json(Path(env["FOOTPRINT_DB"]), env, [1])
    names = sorted(sp["name"] for sp in runs[0]["spans"] if sp["parent"] is None)
    assert names == ["dist-job [rank 0]", "dist-job [rank 1]"]


def doc_block(marker: str) -> str:
    """The code block that follows `marker` in docs/distributed.md."""
    text = (ROOT / "docs" / "distributed.md").read_text()
    after = text[text.index(marker):]
    start = after.index("```")
    start = after.index("\n", start) + 1
    return after[start:after.index("```", start)]


@pytest.mark.slow
def test_slurm_recipe(tmp_path: Path, nvml_lib_dir: Path, clean_env: dict[str, str]):
    """The documented srun lines, as written, through a stand-in srun on two simulated nodes, from a batch
    script's shell (whose own SLURMD_NODENAME is the batch host's): one DB per node, named after it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, target in (("python", PY), ("srun", f"{PY} {FAKES / 'srun.py'}")):
        (bin_dir / name).write_text(f'#!/bin/sh\nexec {target} "$@"\n')
        (bin_dir / name).chmod(0o755)
    env = nvml_env(clean_env, nvml_lib_dir, gpus=4, power="100,200,300,400")
    env.pop("FOOTPRINT_DB")
    env.update(PATH=f"{bin_dir}:{env['PATH']}", SLURMD_NODENAME="batch-host")
    watts = [100.0, 200.0, 300.0, 400.0]
    lines = [ln for ln in doc_block("tested as written: tests/test_distributed.py::test_slurm_recipe").splitlines()
             if ln.strip()]
    broken = ("srun --ntasks-per-node 4 --gpus-per-task 1 env FOOTPRINT_DB=/tmp/footprint-$SLURMD_NODENAME.db "
              "python train.py")
    assert len(lines) == 2
    for i, line in enumerate([*lines, broken]):
        cwd = tmp_path / f"recipe-{i}"
        (cwd / "tmp").mkdir(parents=True)
        (cwd / "train.py").write_text((FAKES / "slurm_train.py").read_text())
        res = subprocess.run(["bash", "-c", line.replace("/tmp/", f"{cwd}/tmp/")], env=env, cwd=cwd,
                             capture_output=True, timeout=240)
        assert res.returncode == 0, res.stderr.decode()[-4000:]
        dbs = sorted(p.name for p in (cwd / "tmp").glob("*.db"))
        if line is broken:  # the stand-in reproduces the trap: every node's DB named after the batch host
            assert dbs == ["footprint-batch-host.db"]
            continue
        assert dbs == ["footprint-node-a.db", "footprint-node-b.db"], line
        for node in ("node-a", "node-b"):
            db = cwd / "tmp" / f"footprint-{node}.db"
            runs = runs_json(db, env, [r[0] for r in _sql(db, "SELECT id FROM runs")])
            assert {r["node"] for r in runs} == {node} and {r["job_id"] for r in runs} == {"9001.0"}
            first = 0 if node == "node-a" else 4
            assert sorted(r["rank"] for r in runs) == list(range(first, first + 4))
            assert_each_gpu_once(runs, float(env["FAKE_NVML_T0"]), {node: watts},
                                 {rank: [rank - first] for rank in range(first, first + 4)})


def _zones() -> list[Any]:
    from tests.fakes.powercap import standard_zones

    return standard_zones()


@pytest.mark.slow
def test_two_nodes_merged_into_one_job(tmp_path: Path, nvml_lib_dir: Path, clean_env: dict[str, str]):
    port = free_port()
    procs = []
    with PowercapTree(tmp_path / "pc", _zones(), period_s=0.002) as tree:
        for node_rank, (node, watts) in enumerate((("node-a", "100"), ("node-b", "300"))):
            env = nvml_env(clean_env, nvml_lib_dir, gpus=1, power=watts)  # one GPU each: the rank measures it
            env.update(FOOTPRINT_POWERCAP=str(tree.root), FOOTPRINT_NODE=node,
                       FOOTPRINT_DB=str(tmp_path / f"{node}.db"))
            procs.append(subprocess.Popen(
                [PY, "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank", str(node_rank),
                 "--nproc_per_node", "1", "--master_addr", "127.0.0.1", "--master_port", str(port),
                 str(FAKES / "dist_job.py")], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err.decode()[-4000:]
    merged = tmp_path / "job.db"
    res = run_cli(["merge", str(tmp_path / "node-a.db"), str(tmp_path / "node-b.db"), "-o", str(merged)], clean_env)
    assert res.returncode == 0, res.stderr.decode()
    assert "merged 2 run(s)" in res.stderr.decode()
    again = run_cli(["merge", str(tmp_path / "node-a.db"), "-o", str(merged)], clean_env)
    assert "skipped 1 already there" in again.stderr.decode()  # merging twice never double-counts
    job = job_json(merged, clean_env)
    runs = runs_json(merged, clean_env, job["runs"])
    assert sorted(n["node"] for n in job["nodes"]) == ["node-a", "node-b"]
    exact = 0.0
    for r in runs:
        dur = r["ended_at"] - r["started_at"]
        gpu_w = 100.0 if r["node"] == "node-a" else 300.0
        assert r["energy_j"]["gpu"] == pytest.approx(gpu_w * dur, rel=0.01)
        assert r["energy_j"]["cpu"] == pytest.approx(CPU_W * dur, rel=0.01)  # each node's local rank 0
        exact += (gpu_w + CPU_W + RAM_W) * dur
    assert job["energy_j"]["total"] == pytest.approx(exact, rel=0.01)
    assert job["tokens"] == 300 and len({r["job_id"] for r in runs}) == 1
    text = run_cli(["report", "--db", str(merged), "--job"], clean_env).stdout.decode()
    assert "node-a" in text and "node-b" in text and "J/token" in text


def scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = resp.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_prometheus_endpoint_over_loopback(nvml_lib_dir: Path, clean_env: dict[str, str]):
    env = nvml_env(clean_env, nvml_lib_dir, gpus=1, power="250")
    child = ("import time, footprint; print('ready', flush=True)\n"
             "with footprint.track('x') as r: r.add_tokens(42)\ntime.sleep(3)")
    proc = subprocess.Popen(footprint_cmd() + ["run", "--interval", "0.1", "--prometheus", "0", "--", PY, "-c",
                                               child], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stderr is not None and proc.stdout is not None
    line = proc.stderr.readline().decode()
    assert line.startswith("footprint: Prometheus metrics on http://127.0.0.1:")  # localhost by default
    url = line.split(" on ", 1)[1].strip()
    assert proc.stdout.readline() == b"ready\n"
    time.sleep(0.5)
    first = scrape(url)
    time.sleep(0.5)
    second = scrape(url)
    proc.communicate(timeout=30)
    assert proc.returncode == 0
    gpu = next(k for k in second if k.startswith("footprint_energy_joules_total{") and 'kind="gpu"' in k)
    assert 'source="nvml-energy"' in gpu and 'measured="true"' in gpu
    stamp = gpu.replace("footprint_energy_joules_total", "footprint_last_reading_timestamp_seconds")
    assert second[stamp] > first[stamp] and abs(second[stamp] - time.time()) < 5
    # 250 W between the two readings the scrapes saw, exactly, however late a loaded machine ran the sampler
    assert second[gpu] - first[gpu] == pytest.approx(250.0 * (second[stamp] - first[stamp]), rel=0.01)
    power = next(v for k, v in second.items() if k.startswith("footprint_power_watts{") and 'kind="gpu"' in k)
    assert power == pytest.approx(250.0, rel=0.01)
    assert next(v for k, v in second.items() if k.startswith("footprint_tokens_total")) == 42


def test_bad_prometheus_address(clean_env: dict[str, str]):
    res = run_cli(["run", "--prometheus", "host:notaport", "--", "true"], clean_env)
    assert res.returncode == 2 and "--prometheus takes [HOST:]PORT" in res.stderr.decode()


def start_exporter(env: dict[str, str], address: str, child: str,
                   *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen(footprint_cmd() + ["run", "--interval", "0.1", "--prometheus", address, *extra, "--",
                                               PY, "-c", child], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    line = proc.stderr.readline().decode()
    assert line.startswith("footprint: Prometheus metrics on http://"), line
    return proc, line.split(" on ", 1)[1].strip()


def test_prometheus_on_ipv6_loopback(nvml_lib_dir: Path, clean_env: dict[str, str]):
    env = nvml_env(clean_env, nvml_lib_dir, gpus=1, power="250")
    proc, url = start_exporter(env, "[::1]:0", "import sys; sys.stdin.read()")
    assert url.startswith("http://[::1]:")
    values = scrape(url)
    proc.communicate(timeout=30)
    assert proc.returncode == 0 and any('kind="gpu"' in k for k in values)


def test_scraper_hanging_up_early_is_not_a_traceback(nvml_lib_dir: Path, clean_env: dict[str, str]):
    import struct

    env = nvml_env(clean_env, nvml_lib_dir, gpus=1, power="250")
    proc, url = start_exporter(env, "0", "import sys; sys.stdin.read()")  # runs until we close its stdin
    host, port = url.removeprefix("http://").split("/")[0].rsplit(":", 1)
    for _ in range(20):  # ask, then reset the connection before the answer is written
        with socket.create_connection((host, int(port))) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    assert scrape(url)  # still serving
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert b"Traceback" not in err and b"BrokenPipe" not in err and b"ConnectionReset" not in err, err.decode()


def test_all_interfaces_is_said(clean_env: dict[str, str]):
    res = run_cli(["run", "--prometheus", "0.0.0.0:0", "--", PY, "-c", "pass"], clean_env)
    assert res.returncode == 0, res.stderr.decode()
    assert "served on every network interface" in res.stderr.decode()


def test_busy_port_leaves_no_run(clean_env: dict[str, str]):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = run_cli(["run", "--prometheus", f"127.0.0.1:{port}", "--", PY, "-c", "pass"], clean_env)
    assert res.returncode == 2 and f"cannot serve metrics on 127.0.0.1:{port}" in res.stderr.decode()
    assert not Path(clean_env["FOOTPRINT_DB"]).exists()  # refused before any run was created


def test_prometheus_linger_serves_the_final_values(nvml_lib_dir: Path, clean_env: dict[str, str]):
    env = nvml_env(clean_env, nvml_lib_dir, gpus=1, power="250")
    child = "import time, footprint\nwith footprint.track('x') as r: r.add_tokens(42)\ntime.sleep(1)"
    proc, url = start_exporter(env, "0", child, "--prometheus-linger", "3")
    assert proc.stderr is not None
    assert proc.stderr.readline().startswith(b"footprint: serving the final metrics for 3 s more")
    final = scrape(url)  # the command has exited: this is the whole run, last stretch included
    proc.communicate(timeout=30)
    assert proc.returncode == 0
    run = runs_json(Path(env["FOOTPRINT_DB"]), env, [1])[0]
    gpu = next(v for k, v in final.items() if k.startswith("footprint_energy_joules_total{") and 'kind="gpu"' in k)
    assert gpu == pytest.approx(250.0 * (run["ended_at"] - run["started_at"]), rel=0.01)
    assert gpu == pytest.approx(run["energy_j"]["gpu"], rel=0.01)
    key = next(k for k in final if k.startswith("footprint_energy_joules_total{") and 'kind="gpu"' in k)
    assert f'model="{run["name"]}"' in key  # what the documented rules aggregate by, with job_id
    assert next(v for k, v in final.items() if k.startswith("footprint_tokens_total")) == 42


def test_prometheus_recording_rules(tmp_path: Path):
    """The documented recording rules, as written, through promtool test rules."""
    import shutil

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (make test installs it: apt-get install prometheus)")
    (tmp_path / "rules.yml").write_text(doc_block("tests/test_distributed.py::test_prometheus_recording_rules"))
    (tmp_path / "test.yml").write_text((FAKES / "promtool_rules_test.yml").read_text())
    check = subprocess.run([promtool, "check", "rules", "rules.yml"], cwd=tmp_path, capture_output=True, timeout=60)
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()
    res = subprocess.run([promtool, "test", "rules", "test.yml"], cwd=tmp_path, capture_output=True, timeout=60)
    assert res.returncode == 0, res.stdout.decode() + res.stderr.decode()


def test_merging_a_live_db_then_again_brings_the_run_up_to_date(tmp_path: Path, clean_env: dict[str, str]):
    from footprint.probes import FakeProbe

    from footprint.common.fakeclock import FakeClock
    from footprint.run import finish_run, start_run

    node, out = tmp_path / "node.db", tmp_path / "job.db"
    clock = FakeClock()
    run = start_run("live", db=str(node), probes=[FakeProbe({"gpu:0": 100.0}, clock=clock)], clock=clock)
    clock.advance(2.5)  # two flushes have reached node.db; the run is still recording
    first = run_cli(["merge", str(node), "-o", str(out)], clean_env)
    assert first.returncode == 0 and "merged 1 run(s)" in first.stderr.decode()
    clock.advance(1.5)
    finish_run(run)
    again = run_cli(["merge", str(node), "-o", str(out)], clean_env)
    assert again.returncode == 0 and "(1 brought up to date)" in again.stderr.decode(), again.stderr.decode()
    third = run_cli(["merge", str(node), "-o", str(out)], clean_env)
    assert "skipped 1 already there" in third.stderr.decode()
    data = json.loads(run_cli(["report", "--db", str(out), "--json", "last"], clean_env).stdout)
    (merged,) = data["runs"]
    assert merged["status"] == "completed" and merged["energy_j"]["gpu"] == pytest.approx(400.0, rel=1e-6)
    with sqlite3.connect(out) as conn:
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1
        assert conn.execute("SELECT COUNT(*) FROM devices").fetchone()[0] == 1
