"""Beyond one machine: torchrun jobs (gloo on CPU), per-node DBs merged, and the Prometheus exporter."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from footprint.distributed import gpu_ordinals, identity
from tests.conftest import FAKES, footprint_cmd, nvml_env, run_cli
from tests.fakes.powercap import PowercapTree

pytest.importorskip("torch")
PY = sys.executable
CPU_W, RAM_W = 70.0, 10.0  # the powercap tree's packages and dram zones


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


def _zones() -> list[Any]:
    from tests.fakes.powercap import standard_zones

    return standard_zones()


def test_two_nodes_merged_into_one_job(tmp_path: Path, nvml_lib_dir: Path, clean_env: dict[str, str]):
    port = free_port()
    procs = []
    with PowercapTree(tmp_path / "pc", _zones(), period_s=0.002) as tree:
        for node_rank, (node, watts) in enumerate((("node-a", "100"), ("node-b", "300"))):
            env = nvml_env(clean_env, nvml_lib_dir, gpus=2, power=watts)
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
