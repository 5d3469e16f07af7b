"""The AMD SMI probe, through the real amdsmi package, against the stand-in libamd_smi.so
(tests/fakes/fake_amdsmi.c, built by tests/fakes/amdsmi_lib.py and found through ROCM_PATH as ROCm's is)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import probe_line, report_json, run_cli
from tests.fakes.amdsmi_lib import build, wrapper_source
from tests.fakes.profile import gpu_energy_between

RESOLUTION_UJ = 15.3


@pytest.fixture(scope="session")
def amd_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ROCm-like folder with the stand-in lib/libamd_smi.so (ROCM_PATH points at it)."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to build the stand-in libamd_smi.so")
    if wrapper_source() is None:
        pytest.skip("the amdsmi package is not installed (pip install footprint-profiler[amd])")
    return build(tmp_path_factory.mktemp("rocm"))


def amd_env(env: dict[str, str], root: Path, **settings: Any) -> dict[str, str]:
    """Point the real amdsmi at the stand-in library with the given FAKE_AMDSMI_* settings."""
    env = dict(env)
    env["ROCM_PATH"] = str(root)
    env.setdefault("FAKE_AMDSMI_T0", f"{time.time() - 100:.6f}")
    for key, value in settings.items():
        env[f"FAKE_AMDSMI_{key.upper()}"] = str(value)
    return env


PROBE_SCRIPT = """
import json, sys, time
from footprint.probes.amd import AmdSmiProbe
seconds, ordinals, interval = float(sys.argv[1]), sys.argv[2], float(sys.argv[4])
if sys.argv[3] == "block":
    sys.modules["amdsmi"] = None  # as if the package were not installed
av = AmdSmiProbe.availability()
if not av.ok:
    print(json.dumps({"available": False, "reason": av.reason})); sys.exit(0)
p = AmdSmiProbe(cuda_ordinals=None if ordinals == "-" else [int(o) for o in ordinals.split(",") if o])
devs = p.open()
import amdsmi
handles = amdsmi.amdsmi_get_processor_handles()
def raw():
    return [amdsmi.amdsmi_get_energy_count(h)["energy_accumulator"] for h in handles]
raw_first = raw() if sys.argv[3] == "raw" else []
first = p.read()
end = time.time() + seconds
while time.time() < end:
    time.sleep(interval)
    p.read()
last = p.read()
raw_last = raw() if sys.argv[3] == "raw" else []
p.close()
print(json.dumps({
    "available": True, "reason": av.reason, "kinds": list(av.kinds),
    "devices": [dict(key=d.key, name=d.name, uuid=d.uuid, source=d.source, note=d.note, limit=d.power_limit_w,
                     period=d.update_period_s, measured=d.measured) for d in devs],
    "first": [[r.device.key, r.t, r.energy_j] for r in first],
    "last": [[r.device.key, r.t, r.energy_j] for r in last],
    "raw_first": raw_first, "raw_last": raw_last,
}))
"""


def probe_run(env: dict[str, str], seconds: float = 1.0, ordinals: str = "-", mode: str = "",
              interval: float = 0.02) -> dict[str, Any]:
    res = subprocess.run([sys.executable, "-c", PROBE_SCRIPT, str(seconds), ordinals, mode or "-", str(interval)],
                         env=env, capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr.decode()
    out: dict[str, Any] = json.loads(res.stdout)  # nothing but the JSON on stdout: amdsmi's prints are kept off it
    return out


def per_device(out: dict[str, Any]) -> dict[str, tuple[float, float, float]]:
    """key -> (t_first, t_last, energy between)."""
    first = {k: (t, e) for k, t, e in out["first"]}
    return {k: (first[k][0], t, e - first[k][1]) for k, t, e in out["last"]}


# The probe stamps each read just after the library's own clock read: a read descheduled between the two
# shifts its window by that much. 1 % of a ~1.2 s window allows 12 ms of that; quantisation (one count of
# 15.3 µJ, or even 1 mJ) is far below it.
REL = 0.01


@pytest.mark.parametrize("resolution", [RESOLUTION_UJ, 1000.0])
def test_energy_accumulator_matches_exact_integral_of_square_wave(amd_root: Path, clean_env: dict[str, str],
                                                                  resolution: float):
    env = amd_env(clean_env, amd_root, gpus=2, power="120,300", square="0.1,200", resolution=resolution)
    t0 = float(env["FAKE_AMDSMI_T0"])
    out = probe_run(env, 1.2)
    assert out["kinds"] == ["gpu"]
    assert [d["source"] for d in out["devices"]] == ["amdsmi-energy", "amdsmi-energy"]
    assert all(d["measured"] for d in out["devices"])
    assert out["devices"][0]["name"] == "AMD Instinct MI300X"
    assert out["devices"][1]["uuid"] == "GPU-fa4e000000000001"  # ROCm's form, as ROCR_VISIBLE_DEVICES takes it
    assert out["devices"][0]["limit"] == 750.0
    assert out["devices"][0]["note"] is None
    for key, base in (("gpu:0", 120.0), ("gpu:1", 300.0)):
        a, b, e = per_device(out)[key]
        exact = gpu_energy_between(a, b, t0, base, (0.1, 200.0))
        assert e == pytest.approx(exact, rel=REL), key


def test_a_64_bit_accumulator_that_wraps_during_the_run(amd_root: Path, clean_env: dict[str, str]):
    t0 = time.time() - 100
    power = 250.0
    # the accumulator passes 2^64 about 2 s from now: after the probe's first read, before its last
    start = 2**64 - int(power * (100 + 2.0) * 1e6 / RESOLUTION_UJ)
    env = amd_env(clean_env, amd_root, t0=f"{t0:.6f}", gpus=1, power=power, start=start)
    # reads 0.4 s apart: the read across the wrap holds about 100 J, which a wrong unwrap loses or multiplies
    out = probe_run(env, 3.0, mode="raw", interval=0.4)
    assert out["raw_first"][0] > 2**63 > out["raw_last"][0], "the counter did not wrap inside the window"
    a, b, e = per_device(out)["gpu:0"]
    assert e == pytest.approx(power * (b - a), rel=REL)


def test_unwrap_counts_of_a_64_bit_counter():
    from footprint.probes.amd import unwrap_counts

    assert unwrap_counts(100, 250, None) == 150
    assert unwrap_counts(2**64 - 10, 5, 15.0) == 15  # a wrap, as the recent power expects
    assert unwrap_counts(2**64 - 10, 5, None) == 5  # no power known yet: only what is certain
    # far below the last value with the last value nowhere near 2^64: the driver restarted the counter
    assert unwrap_counts(10**9, 400, 500.0) == 500
    assert unwrap_counts(10**9, 600, 500.0) == 600


def test_instant_power_integrated_when_no_energy_counter(amd_root: Path, clean_env: dict[str, str], tmp_path: Path):
    log = tmp_path / "calls.log"
    env = amd_env(clean_env, amd_root, gpus=1, power="250", no_energy=1, call_log=log)
    out = probe_run(env, 1.0)
    dev = out["devices"][0]
    assert (dev["source"], dev["period"]) == ("amdsmi-power-current", 0.1)
    a, b, e = per_device(out)["gpu:0"]
    assert e == pytest.approx(250.0 * (b - a), rel=REL)
    assert log.read_text().split().count("amdsmi_get_power_info") > 10


def test_average_power_integrated_on_mi200_class_gpus(amd_root: Path, clean_env: dict[str, str]):
    env = amd_env(clean_env, amd_root, gpus=1, power="80", no_energy=1, no_current=1)
    out = probe_run(env, 1.0)
    dev = out["devices"][0]
    assert (dev["source"], dev["period"]) == ("amdsmi-power-average", 1.0)
    a, b, e = per_device(out)["gpu:0"]
    assert e == pytest.approx(80.0 * (b - a), rel=REL)


@pytest.mark.parametrize("visible, expected", [
    ({"ROCR_VISIBLE_DEVICES": "1"}, ["gpu:1"]),
    ({"ROCR_VISIBLE_DEVICES": "2,0"}, ["gpu:2", "gpu:0"]),
    ({"ROCR_VISIBLE_DEVICES": "GPU-fa4e000000000002"}, ["gpu:2"]),
    ({"ROCR_VISIBLE_DEVICES": "0,7,1"}, ["gpu:0"]),  # stops at the first entry that names no GPU
    ({"HIP_VISIBLE_DEVICES": "1"}, ["gpu:1"]),
    ({"ROCR_VISIBLE_DEVICES": "1,2", "HIP_VISIBLE_DEVICES": "1"}, ["gpu:2"]),  # HIP picks among ROCr's
    ({"CUDA_VISIBLE_DEVICES": "2"}, ["gpu:2"]),  # HIP honours it when HIP_VISIBLE_DEVICES is unset
    ({"CUDA_VISIBLE_DEVICES": "0", "HIP_VISIBLE_DEVICES": "2"}, ["gpu:2"]),
    ({"HIP_VISIBLE_DEVICES": ""}, []),
])
def test_rocr_and_hip_visible_devices_are_respected(amd_root: Path, clean_env: dict[str, str],
                                                    visible: dict[str, str], expected: list[str]):
    env = amd_env(clean_env, amd_root, gpus=3)
    env.update(visible)
    out = probe_run(env, 0.1)
    assert [d["key"] for d in out["devices"]] == expected


def test_indices_are_hip_indices_not_amd_smi_order(amd_root: Path, clean_env: dict[str, str]):
    # AMD SMI lists the GPUs in another order than HIP numbers them: HIP's numbers are what the env vars mean
    env = amd_env(clean_env, amd_root, gpus=3, hip_ids="2,0,1", power="100,200,300")
    env["HIP_VISIBLE_DEVICES"] = "0"
    t0 = float(env["FAKE_AMDSMI_T0"])
    out = probe_run(env, 0.5)
    assert [(d["key"], d["uuid"]) for d in out["devices"]] == [("gpu:0", "GPU-fa4e000000000001")]
    a, b, e = per_device(out)["gpu:0"]
    assert e == pytest.approx(gpu_energy_between(a, b, t0, 200.0), rel=REL)


def test_a_rank_measures_the_gpus_of_its_cuda_ordinals(amd_root: Path, clean_env: dict[str, str]):
    # torch on ROCm calls HIP device N cuda:N
    env = amd_env(clean_env, amd_root, gpus=4)
    env["ROCR_VISIBLE_DEVICES"] = "3,1,0"
    out = probe_run(env, 0.1, ordinals="1")
    assert [d["key"] for d in out["devices"]] == ["gpu:1"]


LAYOUT_SCRIPT = """
import json
from footprint.probes.amd import cuda_ordinals_of, visible_layout
print(json.dumps({"layout": visible_layout(), "card0": sorted(cuda_ordinals_of([0])),
                  "card2": sorted(cuda_ordinals_of([2]))}))
"""


@pytest.mark.parametrize("mi250, visible, expected", [
    (0, "3,2", {"layout": [2, 4], "card0": [], "card2": [1]}),
    (1, "3,2", {"layout": [2, 4], "card0": [], "card2": [0, 1]}),  # both dies of card 1 are the card's device
    (1, "1", {"layout": [1, 4], "card0": [0], "card2": []}),  # the silent die: measured as card 0's device
])
def test_layout_and_cuda_ordinals_for_distributed_jobs(amd_root: Path, clean_env: dict[str, str], mi250: int,
                                                       visible: str, expected: dict[str, Any]):
    env = amd_env(clean_env, amd_root, gpus=4, mi250=mi250)
    env["ROCR_VISIBLE_DEVICES"] = visible
    res = subprocess.run([sys.executable, "-c", LAYOUT_SCRIPT], env=env, capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr.decode()
    assert json.loads(res.stdout) == expected


def test_mi250_dies_are_attributed_per_card(amd_root: Path, clean_env: dict[str, str]):
    from footprint.probes.amd import mi250_note

    env = amd_env(clean_env, amd_root, gpus=4, mi250=1, power="300,0,200,0", square="0.2,100")
    t0 = float(env["FAKE_AMDSMI_T0"])
    out = probe_run(env, 1.2)
    assert [(d["key"], d["name"], d["source"]) for d in out["devices"]] == [
        ("gpu:0", "AMD Instinct MI250X", "amdsmi-energy"), ("gpu:2", "AMD Instinct MI250X", "amdsmi-energy")]
    assert [d["note"] for d in out["devices"]] == [mi250_note(0, 1, [0, 1]), mi250_note(2, 3, [2, 3])]
    assert "GPUs 0 and 1" in out["devices"][0]["note"]
    for key, base in (("gpu:0", 300.0), ("gpu:2", 200.0)):
        a, b, e = per_device(out)[key]
        assert e == pytest.approx(gpu_energy_between(a, b, t0, base, (0.2, 100.0)), rel=REL), key


def test_a_process_on_the_silent_die_of_an_mi250_measures_its_card(amd_root: Path, clean_env: dict[str, str]):
    from footprint.probes.amd import mi250_note

    env = amd_env(clean_env, amd_root, gpus=4, mi250=1, power="300,0,200,0")
    env["HIP_VISIBLE_DEVICES"] = "3"  # the second die of card 1, which reports 0 W itself
    t0 = float(env["FAKE_AMDSMI_T0"])
    out = probe_run(env, 0.6)
    assert [d["key"] for d in out["devices"]] == ["gpu:2"]
    assert out["devices"][0]["note"] == mi250_note(2, 3, [3])
    assert "sees GPU 3 only" in out["devices"][0]["note"]
    a, b, e = per_device(out)["gpu:2"]
    assert e == pytest.approx(gpu_energy_between(a, b, t0, 200.0), rel=REL)


def test_reason_when_the_library_is_missing(clean_env: dict[str, str], tmp_path: Path):
    if wrapper_source() is None:
        pytest.skip("the amdsmi package is not installed")
    env = dict(clean_env, ROCM_PATH=str(tmp_path / "no-rocm"))
    out = probe_run(env, 0.1)  # and amdsmi's own "Unable to find libamd_smi.so" print stays off stdout
    assert out["available"] is False
    assert out["reason"].startswith("amdsmi is installed but libamd_smi.so was not found")
    assert "install ROCm" in out["reason"]


def test_reason_when_the_package_is_missing(amd_root: Path, clean_env: dict[str, str]):
    out = probe_run(amd_env(clean_env, amd_root), 0.1, mode="block")
    assert out["available"] is False
    assert "pip install footprint-profiler[amd]" in out["reason"]


def test_reason_when_the_driver_is_not_loaded(amd_root: Path, clean_env: dict[str, str]):
    out = probe_run(amd_env(clean_env, amd_root, init_status=34), 0.1)
    assert out["available"] is False
    assert "AMDSMI_STATUS_DRIVER_NOT_LOADED" in out["reason"] and "amdgpu" in out["reason"]


def test_reason_when_there_is_no_gpu(amd_root: Path, clean_env: dict[str, str]):
    out = probe_run(amd_env(clean_env, amd_root, gpus=0), 0.1)
    assert out == {"available": False, "reason": "AMD SMI found no GPU"}


def test_reason_when_the_library_is_older_than_the_package(clean_env: dict[str, str], tmp_path: Path):
    if shutil.which("gcc") is None or wrapper_source() is None:
        pytest.skip("gcc and the amdsmi package are needed")
    root = build(tmp_path / "old-rocm", stubs=False)
    out = probe_run(amd_env(clean_env, root), 0.1)
    assert out["available"] is False
    assert "does not match" in out["reason"] and str(root / "lib" / "libamd_smi.so") in out["reason"]


def test_footprint_probes_lists_it(amd_root: Path, clean_env: dict[str, str]):
    res = run_cli(["probes"], amd_env(clean_env, amd_root, gpus=2))
    assert res.returncode == 0, res.stderr.decode()
    assert probe_line(res.stdout.decode(), "amdsmi") == "yes  AMD SMI sees 2 GPU(s)"


def test_footprint_run_gpu_energy_matches_integral(amd_root: Path, clean_env: dict[str, str]):
    env = amd_env(clean_env, amd_root, gpus=2, power="150,350", square="0.2,100")
    t0 = float(env["FAKE_AMDSMI_T0"])
    res = run_cli(["run", "--interval", "0.1", "--", sys.executable, "-c", "import time; time.sleep(1.5)"], env)
    assert res.returncode == 0, res.stderr.decode()
    assert b"amdsmi-energy (measured)" in res.stderr
    run = report_json(env)["runs"][0]
    a, b = run["started_at"], run["ended_at"]
    exact = {0: gpu_energy_between(a, b, t0, 150.0, (0.2, 100.0)),
             1: gpu_energy_between(a, b, t0, 350.0, (0.2, 100.0))}
    gpus = [d for d in run["devices"] if d["kind"] == "gpu"]
    assert [d["index"] for d in gpus] == [0, 1]
    for d in gpus:
        assert d["source"] == "amdsmi-energy"
        assert d["energy_j"] == pytest.approx(exact[d["index"]], rel=REL)
    assert run["energy_j"]["gpu"] == pytest.approx(exact[0] + exact[1], rel=REL)
    assert run["sources"]["gpu"] == "amdsmi-energy"


def test_footprint_run_on_mi250_reports_the_card_with_its_note(amd_root: Path, clean_env: dict[str, str]):
    from footprint.probes.amd import mi250_note

    env = amd_env(clean_env, amd_root, gpus=2, mi250=1, power="400,0")
    t0 = float(env["FAKE_AMDSMI_T0"])
    res = run_cli(["run", "--interval", "0.1", "--", sys.executable, "-c", "import time; time.sleep(1.0)"], env)
    assert res.returncode == 0, res.stderr.decode()
    run = report_json(env)["runs"][0]
    gpus = [d for d in run["devices"] if d["kind"] == "gpu"]
    assert [(d["index"], d["note"]) for d in gpus] == [(0, mi250_note(0, 1, [0, 1]))]
    exact = gpu_energy_between(run["started_at"], run["ended_at"], t0, 400.0)
    assert gpus[0]["energy_j"] == pytest.approx(exact, rel=REL)
