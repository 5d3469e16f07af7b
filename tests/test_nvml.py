"""The NVML probe, through the real pynvml, against the stand-in libnvidia-ml.so.1 (tests/fakes/fake_nvml.c)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from footprint.probes.nvml import MIG_NOTE, mig_note, order_note, visible_gpus

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


# -- CUDA's numbering: CUDA_DEVICE_ORDER, torch's own device UUIDs, MIG instances -----------------------------

def uuid_of(i: int) -> str:
    return f"GPU-0000fa4e-0000-0000-0000-{i:012d}"


# NVML index 0 sits on PCI bus 3, index 1 on bus 1, index 2 on bus 2: NVML's order is not PCI order
PCI_OUT_OF_ORDER = "3,1,2"


@pytest.mark.parametrize("order, names, cvd, expected, noted", [
    ("PCI_BUS_ID", "A100,H100,H100", "0", ["gpu:1"], False),  # cuda:0 is the lowest bus id, NVML's 1
    ("PCI_BUS_ID", "A100,H100,H100", "2,0", ["gpu:0", "gpu:1"], False),
    (None, "H100", "0", ["gpu:1"], False),  # FASTEST_FIRST among equals: ties go by PCI bus id
    ("FASTEST_FIRST", "H100", "1", ["gpu:2"], False),
    (None, "A100,H100,H100", "0", ["gpu:1"], True),  # several models: PCI order assumed, and said
    (None, "A100,H100,H100", uuid_of(0), ["gpu:0"], False),  # a UUID needs no numbering
])
def test_cuda_device_order_maps_indices(nvml_lib_dir: Path, clean_env: dict[str, str], order: str | None,
                                        names: str, cvd: str, expected: list[str], noted: bool):
    env = nvml_env(clean_env, nvml_lib_dir, gpus=3, pci_bus=PCI_OUT_OF_ORDER, name=names)
    env["CUDA_VISIBLE_DEVICES"] = cvd
    if order is not None:
        env["CUDA_DEVICE_ORDER"] = order
    out = probe_run(env, 0.1)
    assert [d["key"] for d in out["devices"]] == expected
    notes = [d["note"] for d in out["devices"]]
    assert notes == ([order_note(cvd)] * len(expected) if noted else [None] * len(expected))


TORCH_SCRIPT = """
import sys, types
uuids = sys.argv[2].split(",")
props = [types.SimpleNamespace(uuid=u) for u in uuids]
cuda = types.SimpleNamespace(is_initialized=lambda: True, device_count=lambda: len(uuids),
                             get_device_properties=lambda i: props[i])
sys.modules["torch"] = types.SimpleNamespace(cuda=cuda)
"""


def test_torch_device_uuids_are_the_truth_about_cuda_order(nvml_lib_dir: Path, clean_env: dict[str, str]):
    """torch, once it has initialised CUDA, says which GPU each cuda:N is (its UUIDs come without the GPU- prefix):
    no assumption, no note, even among several models under FASTEST_FIRST."""
    env = nvml_env(clean_env, nvml_lib_dir, gpus=3, pci_bus=PCI_OUT_OF_ORDER, name="A100,H100,H100")
    env["CUDA_VISIBLE_DEVICES"] = "0,1"
    seen = ",".join(u.removeprefix("GPU-") for u in (uuid_of(2), uuid_of(0)))
    res = subprocess.run([sys.executable, "-c", TORCH_SCRIPT + PROBE_SCRIPT, "0.1", seen], env=env,
                         capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr.decode()
    out = json.loads(res.stdout)
    assert [d["key"] for d in out["devices"]] == ["gpu:2", "gpu:0"]
    assert [d["note"] for d in out["devices"]] == [None, None]


def mig_uuid(gpu: int, k: int) -> str:
    return f"MIG-0000fa4e-0000-{gpu:04d}-0000-{k:012d}"


def test_a_mig_instance_measures_its_parent_gpu_through_pynvml(nvml_lib_dir: Path, clean_env: dict[str, str],
                                                               tmp_path: Path):
    log = tmp_path / "calls.log"
    env = nvml_env(clean_env, nvml_lib_dir, gpus=3, power="100,250,300", mig="1,2", call_log=log)
    env["CUDA_VISIBLE_DEVICES"] = mig_uuid(2, 1)
    t0 = float(env["FAKE_NVML_T0"])
    out = probe_run(env, 0.5)
    assert [d["key"] for d in out["devices"]] == ["gpu:2"]
    assert out["devices"][0]["note"] == mig_note(mig_uuid(2, 1))
    assert out["devices"][0]["uuid"] == uuid_of(2)
    a, b, e = per_device(out)["gpu:2"]
    assert e == pytest.approx(gpu_energy_between(a, b, t0, 300.0, None), rel=0.01)
    calls = log.read_text().split()
    assert "nvmlDeviceGetHandleByUUID" in calls and "nvmlDeviceGetDeviceHandleFromMigDeviceHandle" in calls


def test_a_mig_uuid_prefix_is_found_by_listing_the_instances(nvml_lib_dir: Path, clean_env: dict[str, str],
                                                             tmp_path: Path):
    log = tmp_path / "calls.log"
    env = nvml_env(clean_env, nvml_lib_dir, gpus=2, mig="0,1", call_log=log)
    env["CUDA_VISIBLE_DEVICES"] = "MIG-0000fa4e-0000-0001"  # both of GPU 1's instances: ambiguous, CUDA stops
    assert probe_run(env, 0.1)["devices"] == []
    env["FAKE_NVML_MIG_INSTANCES"] = "1"  # now GPU 1's one instance alone begins so: its parent is GPU 1
    out = probe_run(env, 0.1)
    assert [d["key"] for d in out["devices"]] == ["gpu:1"]
    assert out["devices"][0]["note"] == mig_note("MIG-0000fa4e-0000-0001")
    assert "nvmlDeviceGetMigDeviceHandleByIndex" in log.read_text().split()


@pytest.mark.parametrize("cvd", ["MIG-0000fa4e-0000-0009-0000-000000000000", f"MIG-{uuid_of(7)}/1/0"])
def test_an_unknown_mig_instance_selects_nothing(nvml_lib_dir: Path, clean_env: dict[str, str], cvd: str):
    env = nvml_env(clean_env, nvml_lib_dir, gpus=2, mig="1")
    env["CUDA_VISIBLE_DEVICES"] = cvd
    assert probe_run(env, 0.1)["devices"] == []


def test_the_older_mig_form_names_its_parent(nvml_lib_dir: Path, clean_env: dict[str, str]):
    env = nvml_env(clean_env, nvml_lib_dir, gpus=2, mig="1")
    env["CUDA_VISIBLE_DEVICES"] = f"MIG-{uuid_of(1)}/1/0"
    out = probe_run(env, 0.1)
    assert [d["key"] for d in out["devices"]] == ["gpu:1"]
    assert out["devices"][0]["note"] == mig_note(f"MIG-{uuid_of(1)}/1/0")


def test_footprint_run_under_a_mig_instance_bills_the_parent_with_its_note(nvml_lib_dir: Path,
                                                                           clean_env: dict[str, str]):
    env = nvml_env(clean_env, nvml_lib_dir, gpus=2, power="100,400", mig="1")
    env["CUDA_VISIBLE_DEVICES"] = mig_uuid(1, 0)
    t0 = float(env["FAKE_NVML_T0"])
    res = run_cli(["run", "--interval", "0.1", "--", sys.executable, "-c", "import time; time.sleep(1.0)"], env)
    assert res.returncode == 0, res.stderr.decode()
    run = report_json(env)["runs"][0]
    (gpu,) = [d for d in run["devices"] if d["kind"] == "gpu"]
    assert gpu["index"] == 1 and gpu["note"] == mig_note(mig_uuid(1, 0))
    exact = gpu_energy_between(gpu["first_read_at"], gpu["last_read_at"], t0, 400.0, None)
    assert gpu["energy_j"] == pytest.approx(exact, rel=0.01)


LATE_RETURN_SCRIPT = """
import json, os
import pynvml
from footprint.probes.nvml import NvmlProbe
from tests.fakes.limit_train import FileClock  # the stand-in's own time: a file it reads at every call

clock = FileClock(os.environ["FAKE_NVML_TIME_FILE"])
real = pynvml.nvmlDeviceGetTotalEnergyConsumption
waits = iter([0.0, 0.0, 1.0, 0.0, 0.5, 0.0])  # for the lock after each call: open(), then five reads

def late(handle):  # the call returns, then the thread waits for the GIL (a busy training loop beside it)
    value = real(handle)
    clock.advance(next(waits))
    return value

pynvml.nvmlDeviceGetTotalEnergyConsumption = late
p = NvmlProbe(clock=clock)
p.open()
readings = [p.read()[0] for _ in range(5)]
print(json.dumps([[r.t, r.energy_j] for r in readings]))
"""


def test_a_reading_is_stamped_at_its_counter_read_not_when_the_call_got_the_gil_back(nvml_lib_dir: Path,
                                                                                      clean_env: dict[str, str],
                                                                                      tmp_path: Path):
    """The driver call lets go of Python's lock; getting it back can take a busy thread's switch interval (5-8 ms
    measured with a Python loop beside the sampler). A stamp taken after the call would carry that wait: each
    reading's time is taken before the call, so its energy is the counter at its own time."""
    t0 = 1_750_000_000.0
    time_file = tmp_path / "now"
    time_file.write_text(f"{t0 + 100:.9f}")
    env = dict(nvml_env(clean_env, nvml_lib_dir, gpus=1, power=200, t0=f"{t0:.6f}"),
               FAKE_NVML_TIME_FILE=str(time_file))
    res = subprocess.run([sys.executable, "-c", LATE_RETURN_SCRIPT], env=env, capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr.decode()
    (t_a, e_a), *rest = json.loads(res.stdout)
    assert [round(t - t_a, 6) for t, _ in rest] == [0.0, 1.0, 1.0, 1.5]  # the waits came between the reads
    for t, e in rest:  # 200 W: each reading's energy is the counter at that reading's own time
        assert e - e_a == pytest.approx(200.0 * (t - t_a), abs=0.002)  # NVML counts whole mJ
