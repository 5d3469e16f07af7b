"""Used vs idle GPUs: every GPU is measured, the ones the run's processes used are marked, and J/token without the
idle ones is added. Through the real pynvml against the stand-in libnvidia-ml.so.1 (tests/fakes/fake_nvml.c), whose
process list is what a stand-in workload writes to FAKE_NVML_PROCS_FILE."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from footprint.core.model import DeviceReport, gpu_use
from footprint.gpu_use import descendants, used_by
from tests.conftest import nvml_env, report_json, run_cli
from tests.fakes.profile import gpu_energy_between

POWER = {0: 100.0, 1: 250.0, 2: 400.0}

# the command's child (a grandchild of footprint) takes GPU 1, as a CUDA context would, then works for 1.2 s
WORKLOAD = """
import os, subprocess, sys
code = "import os, sys, time; open(sys.argv[1], 'a').write('1 %d\\\\n' % os.getpid()); time.sleep(1.2)"
sys.exit(subprocess.call([sys.executable, "-c", code, os.environ["FAKE_NVML_PROCS_FILE"]]))
"""


def exact(dev: dict[str, float], t0: float) -> float:
    return gpu_energy_between(dev["first_read_at"], dev["last_read_at"], t0, POWER[int(dev["index"])], None)


def test_footprint_run_marks_the_gpus_its_processes_used(nvml_lib_dir: Path, clean_env: dict[str, str],
                                                          tmp_path: Path):
    procs = tmp_path / "procs"
    procs.write_text("0 1\n")  # pid 1 (not ours) holds GPU 0: another user's process is no use of ours
    env = nvml_env(clean_env, nvml_lib_dir, gpus=3, power="100,250,400", procs_file=procs)
    t0 = float(env["FAKE_NVML_T0"])
    res = run_cli(["run", "--interval", "0.1", "--tokens", "100", "--", sys.executable, "-c", WORKLOAD], env)
    assert res.returncode == 0, res.stderr.decode()
    run = report_json(env)["runs"][0]
    gpus = {d["index"]: d for d in run["devices"] if d["kind"] == "gpu"}
    assert {i: d["used"] for i, d in gpus.items()} == {0: False, 1: True, 2: False}
    assert run["meta"]["gpus_used"] == [1] and run["meta"]["gpus_used_source"] == "nvml-processes"
    for d in gpus.values():  # every GPU is still measured, to the exact integral
        assert d["energy_j"] == pytest.approx(exact(d, t0), rel=0.01)
    assert run["gpu_used_j"] == pytest.approx(exact(gpus[1], t0), rel=0.01)
    idle = exact(gpus[0], t0) + exact(gpus[2], t0)
    assert run["gpu_idle_j"] == pytest.approx(idle, rel=0.01)
    assert run["j_per_token"] == pytest.approx(run["energy_j"]["total"] / 100, rel=1e-9)  # the whole run, as before
    assert run["j_per_token_used_gpus"] == pytest.approx((run["energy_j"]["total"] - idle) / 100, rel=0.01)
    text = run_cli(["report"], env).stdout.decode()
    assert "GPUs used: gpu:1" in text and "idle: gpu:0, gpu:2" in text and "J/token without the idle GPUs" in text


def test_no_process_seen_is_not_known_not_idle(nvml_lib_dir: Path, clean_env: dict[str, str], tmp_path: Path):
    env = nvml_env(clean_env, nvml_lib_dir, gpus=2, procs_file=tmp_path / "none")
    res = run_cli(["run", "--interval", "0.1", "--tokens", "10", "--", sys.executable, "-c", "pass"], env)
    assert res.returncode == 0, res.stderr.decode()
    run = report_json(env)["runs"][0]
    assert [d["used"] for d in run["devices"] if d["kind"] == "gpu"] == [None, None]
    assert run["gpu_used_j"] is None and run["gpu_idle_j"] is None and run["j_per_token_used_gpus"] is None
    assert "gpus_used" not in run["meta"]
    assert "GPUs used" not in run_cli(["report"], env).stdout.decode()


TRACK_SCRIPT = """
import sys, time, types
uuids = sys.argv[1].split(",")
reserved = [int(x) for x in sys.argv[2].split(",")]
props = [types.SimpleNamespace(uuid=u) for u in uuids]
cuda = types.SimpleNamespace(is_initialized=lambda: True, is_available=lambda: True, device_count=lambda: len(uuids),
                             get_device_properties=lambda i: props[i], memory_reserved=lambda i: reserved[i],
                             current_device=lambda: 0, synchronize=lambda i=None: None)
sys.modules["torch"] = types.SimpleNamespace(cuda=cuda)
import footprint
with footprint.track("t", interval=0.1, summary=False) as run:
    time.sleep(0.8)
    run.add_tokens(50)
"""


def test_track_marks_the_gpus_torch_holds_memory_on(nvml_lib_dir: Path, clean_env: dict[str, str]):
    """torch's cuda:0 is NVML's GPU 2 (its UUID says so): memory there makes it the used one."""
    env = nvml_env(clean_env, nvml_lib_dir, gpus=3, power="100,250,400")
    t0 = float(env["FAKE_NVML_T0"])
    seen = ",".join(f"0000fa4e-0000-0000-0000-{i:012d}" for i in (2, 0, 1))  # torch prints no GPU- prefix
    res = subprocess.run([sys.executable, "-c", TRACK_SCRIPT, seen, f"{1 << 20},0,0"], env=env, capture_output=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr.decode()
    run = report_json(env)["runs"][0]
    gpus = {d["index"]: d for d in run["devices"] if d["kind"] == "gpu"}
    assert {i: d["used"] for i, d in gpus.items()} == {0: False, 1: False, 2: True}
    assert run["meta"]["gpus_used_source"] == "torch"
    assert run["gpu_used_j"] == pytest.approx(exact(gpus[2], t0), rel=0.01)
    assert run["gpu_idle_j"] == pytest.approx(exact(gpus[0], t0) + exact(gpus[1], t0), rel=0.01)


def test_gpu_use_sums_and_an_unknown_energy_is_no_zero():
    def dev(i: int, e: float | None) -> DeviceReport:
        return DeviceReport("gpu", i, "g", e, "nvml-energy", True)

    devs = [dev(0, 10.0), dev(1, 20.0), dev(2, 30.0), DeviceReport("cpu", 0, "c", 5.0, "rapl", True)]
    assert gpu_use(devs, [0, 2]) == (40.0, 20.0)
    assert [d.used for d in devs] == [True, False, True, None]
    assert gpu_use([dev(0, 1.0)], [0]) == (1.0, 0.0)  # no idle GPU: exactly 0 J idle
    assert gpu_use([dev(0, 1.0), dev(1, None)], [0]) == (1.0, None)  # unknown, not 0
    assert gpu_use([dev(0, 1.0)], None) == (None, None)


def test_descendants_and_used_by(tmp_path: Path):
    proc = tmp_path / "proc"
    for pid, ppid in ((10, 1), (11, 10), (12, 11), (13, 1)):
        (proc / str(pid)).mkdir(parents=True)
        (proc / str(pid) / "stat").write_text(f"{pid} (a (b) c) S {ppid} 0 0\n")
    assert descendants(10, str(proc)) == {11, 12}
    assert used_by({0: {13}, 1: {12}, 2: set()}, {11, 12}) == {1}
    assert json.dumps(sorted(descendants(99, str(proc)))) == "[]"
