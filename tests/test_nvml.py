"""The NVML probe, through the real pynvml, against the stand-in libnvidia-ml.so.1 (tests/fakes/fake_nvml.c)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from footprint.probes.nvml import MIG_NOTE, visible_gpus

from tests.conftest import nvml_env, report_json, run_cli
from tests.fakes.profile import gpu_energy_between

PROBE_SCRIPT = """
import json, sys, time
from footprint.probes.nvml import NvmlProbe
av = NvmlProbe.availability()
if not av.ok:
    print(json.dumps({"available": False, "reason": av.reason})); sys.exit(0)
p = NvmlProbe()
devs = p.open()
first = p.read()
end = time.time() + float(sys.argv[1])
while time.time() < end:
    time.sleep(0.02)
    p.read()
last = p.read()
p.close()
print(json.dumps({
    "available": True, "reason": av.reason,
    "devices": [dict(key=d.key, name=d.name, uuid=d.uuid, source=d.source, note=d.note, limit=d.power_limit_w)
                for d in devs],
    "first": [[r.device.key, r.t, r.energy_j] for r in first],
    "last": [[r.device.key, r.t, r.energy_j] for r in last],
}))
"""


def probe_run(env: dict[str, str], seconds: float = 1.0) -> dict[str, Any]:
    res = subprocess.run([sys.executable, "-c", PROBE_SCRIPT, str(seconds)], env=env, capture_output=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr.decode()
    out: dict[str, Any] = json.loads(res.stdout)
    return out


def per_device(out: dict[str, Any]) -> dict[str, tuple[float, float, float]]:
    """key -> (t_first, t_last, energy between)."""
    first = {k: (t, e) for k, t, e in out["first"]}
    return {k: (first[k][0], t, e - first[k][1]) for k, t, e in out["last"]}


def test_energy_counter_matches_exact_integral_of_square_wave(nvml_lib_dir: Path, clean_env: dict[str, str]):
    env = nvml_env(clean_env, nvml_lib_dir, gpus=2, power="120,300", square="0.1,200")
    t0 = float(env["FAKE_NVML_T0"])
    out = probe_run(env, 1.2)
    assert [d["source"] for d in out["devices"]] == ["nvml-energy", "nvml-energy"]
    assert out["devices"][1]["uuid"] == "GPU-0000fa4e-0000-0000-0000-000000000001"
    assert out["devices"][0]["limit"] == 700.0
    for key, base in (("gpu:0", 120.0), ("gpu:1", 300.0)):
        a, b, e = per_device(out)[key]
        exact = gpu_energy_between(a, b, t0, base, (0.1, 200.0))
        assert e == pytest.approx(exact, rel=0.01), key


def test_instant_power_integrated_when_no_energy_counter(nvml_lib_dir: Path, clean_env: dict[str, str]):
    env = nvml_env(clean_env, nvml_lib_dir, gpus=1, power="250", no_energy=1)
    out = probe_run(env, 1.0)
    assert out["devices"][0]["source"] == "nvml-power-instant"
    a, b, e = per_device(out)["gpu:0"]
    assert e == pytest.approx(250.0 * (b - a), rel=0.01)


def test_power_usage_fallback(nvml_lib_dir: Path, clean_env: dict[str, str], tmp_path: Path):
    log = tmp_path / "calls.log"
    env = nvml_env(clean_env, nvml_lib_dir, gpus=1, power="80", no_energy=1, no_fields=1, call_log=log)
    out = probe_run(env, 1.0)
    assert out["devices"][0]["source"] == "nvml-power"
    a, b, e = per_device(out)["gpu:0"]
    assert e == pytest.approx(80.0 * (b - a), rel=0.01)
    assert "nvmlDeviceGetPowerUsage" in log.read_text().split()


@pytest.mark.parametrize("cvd, expected", [
    ("1", ["gpu:1"]),
    ("2,0", ["gpu:2", "gpu:0"]),
    ("GPU-0000fa4e-0000-0000-0000-000000000002", ["gpu:2"]),
    ("0,7,1", ["gpu:0"]),  # CUDA stops at the first invalid entry
    ("", []),
])
def test_cuda_visible_devices_is_respected(nvml_lib_dir: Path, clean_env: dict[str, str], cvd: str,
                                           expected: list[str]):
    env = nvml_env(clean_env, nvml_lib_dir, gpus=3)
    env["CUDA_VISIBLE_DEVICES"] = cvd
    out = probe_run(env, 0.1)
    assert [d["key"] for d in out["devices"]] == expected


def test_visible_gpus_prefixes():
    uuids = ["GPU-aaaa-1", "GPU-bbbb-2", "GPU-bbbc-3"]
    assert visible_gpus(None, uuids) == [0, 1, 2]
    assert visible_gpus("GPU-aaaa", uuids) == [0]
    assert visible_gpus("bbbc", uuids) == [2]
    assert visible_gpus("GPU-bbb", uuids) == []  # ambiguous prefix: stop, as CUDA does
    assert visible_gpus("1,1", uuids) == [1]


def test_mig_mode_is_stated(nvml_lib_dir: Path, clean_env: dict[str, str]):
    env = nvml_env(clean_env, nvml_lib_dir, gpus=2, mig="1")
    out = probe_run(env, 0.1)
    assert out["devices"][0]["note"] is None
    assert out["devices"][1]["note"] == MIG_NOTE


def test_no_driver_reason(clean_env: dict[str, str]):
    out = probe_run(clean_env, 0.1)  # no LD_LIBRARY_PATH: no libnvidia-ml.so.1 on this machine
    assert out["available"] is False
    assert "NVML unavailable" in out["reason"]


def test_footprint_run_gpu_energy_matches_integral(nvml_lib_dir: Path, clean_env: dict[str, str]):
    env = nvml_env(clean_env, nvml_lib_dir, gpus=2, power="150,350", square="0.2,100")
    t0 = float(env["FAKE_NVML_T0"])
    res = run_cli(["run", "--interval", "0.1", "--", sys.executable, "-c", "import time; time.sleep(1.5)"], env)
    assert res.returncode == 0, res.stderr.decode()
    assert b"nvml-energy (measured)" in res.stderr
    run = report_json(env)["runs"][0]
    a, b = run["started_at"], run["ended_at"]
    exact = {0: gpu_energy_between(a, b, t0, 150.0, (0.2, 100.0)),
             1: gpu_energy_between(a, b, t0, 350.0, (0.2, 100.0))}
    gpus = [d for d in run["devices"] if d["kind"] == "gpu"]
    assert [d["index"] for d in gpus] == [0, 1]
    for d in gpus:
        assert d["source"] == "nvml-energy"
        assert d["energy_j"] == pytest.approx(exact[d["index"]], rel=0.01)
    assert run["energy_j"]["gpu"] == pytest.approx(exact[0] + exact[1], rel=0.01)
    assert run["sources"]["gpu"] == "nvml-energy"
