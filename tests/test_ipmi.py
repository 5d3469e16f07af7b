"""IPMI DCMI (opt-in): the whole node's power from a stand-in `ipmitool` on PATH that prints ipmitool's own output
format with the power of a known profile, read by the real probe in its own background thread."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from footprint.probes import Availability, ProbeError, default_probes
from footprint.probes.ipmi import HeldPower, IpmiProbe, parse
from footprint.probes.nvml import NvmlProbe

from tests.conftest import report_json, run_cli
from tests.fakes.tools import put_on_path

# as ipmitool 1.8 prints it (lib/ipmi_dcmi.c), and as the stand-in does
REAL = """
    Instantaneous power reading:                   250 Watts
    Minimum during sampling period:                 80 Watts
    Maximum during sampling period:                350 Watts
    Average power reading over sample period:      240 Watts
    IPMI timestamp:                           Thu Feb 15 08:36:01 2024
    Sampling period:                          00000005 Seconds.
    Power reading state is:                   activated

"""


def _ipmitool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **fake: str) -> None:
    env = put_on_path(tmp_path / "bin", "ipmitool", "ipmitool.py", {})
    monkeypatch.setenv("PATH", env["PATH"])
    monkeypatch.setenv("FOOTPRINT_IPMI", "1")
    for key, value in fake.items():
        monkeypatch.setenv(f"FAKE_IPMI_{key.upper()}", value)


def test_parse_the_real_output():
    r = parse(REAL)
    assert (r.watts, r.sampling_period_s, r.active) == (250.0, 5.0, True)
    ms = parse("Instantaneous power reading : 214 Watts\nSampling period : 1000 Milliseconds\n"
               "Power reading state is : deactivated\n")
    assert (ms.watts, ms.sampling_period_s, ms.active) == (214.0, 1.0, False)
    with pytest.raises(ValueError):
        parse("Could not open device at /dev/ipmi0")


def test_held_power_is_exact_and_never_goes_back():
    p = HeldPower(hold_s=5.0)
    p.add(10.0, 200.0)
    assert p.energy_at(10.5) == 100.0  # read between samples: 200 W held
    p.add(11.0, 300.0)
    assert p.energy_at(11.0) == 200.0 and p.energy_at(12.0) == 500.0
    p.add(10.8, 999.0)  # older than the last sample: ignored
    assert p.energy_at(12.0) == 500.0
    assert not p.stale(16.0) and p.stale(16.5)
    assert p.energy_at(30.0) == 200.0 + 300.0 * 5.0  # held 5 s at most: a gap is not counted
    p.add(30.0, 100.0)
    assert p.energy_at(31.0) == 200.0 + 1500.0 + 100.0


def test_opt_in_and_what_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("FOOTPRINT_IPMI", raising=False)
    av = IpmiProbe.availability()
    assert not av.ok and "FOOTPRINT_IPMI=1" in av.reason and "--ipmi" in av.reason
    monkeypatch.setenv("FOOTPRINT_IPMI", "1")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert "ipmitool not found" in IpmiProbe.availability().reason
    _ipmitool(tmp_path, monkeypatch, state="deactivated")
    assert "deactivated" in IpmiProbe.availability().reason
    _ipmitool(tmp_path, monkeypatch, state="activated", down=str(tmp_path / "bin"))  # exists: no device
    av = IpmiProbe.availability()
    assert not av.ok and "Could not open device" in av.reason and "modprobe ipmi_si" in av.reason


def test_constant_power_is_exact_and_read_in_the_background(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    _ipmitool(tmp_path, monkeypatch, profile="250", delay="0.05")
    av = IpmiProbe.availability()
    assert av.ok and av.kinds == ("node",) and "250 W now" in av.reason
    probe = IpmiProbe(pace_s=0.2)
    (dev,) = probe.open()
    try:
        assert (dev.key, dev.source, dev.measured) == ("node:0", "ipmi-dcmi", True)
        assert dev.update_period_s >= 0.2 and dev.note is not None and "averages over 1 s" in dev.note
        (a,) = probe.read()
        time.sleep(1.0)
        (b,) = probe.read()
        assert probe.power.last_t is not None and probe.power.last_t > a.t  # the thread kept asking
    finally:
        probe.close()
    assert b.energy_j - a.energy_j == pytest.approx(250.0 * (b.t - a.t), rel=1e-9)


def test_a_step_is_followed_within_one_sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    step_at = time.time() + 0.6
    _ipmitool(tmp_path, monkeypatch, profile=f"200,{step_at}=300", delay="0.05")
    probe = IpmiProbe(pace_s=0.1)
    probe.open()
    try:
        (a,) = probe.read()
        time.sleep(1.4)
        (b,) = probe.read()
    finally:
        probe.close()
    exact = 200.0 * (step_at - a.t) + 300.0 * (b.t - step_at)
    # the held power lags the step by at most one sample: the pace plus a call (the stand-in's 50 ms, and
    # process start-up on a busy machine), at 100 W of difference
    assert b.energy_j - a.energy_j == pytest.approx(exact, abs=100.0 * 0.5)
    assert b.energy_j - a.energy_j > 200.0 * (b.t - a.t) + 100.0 * 0.3  # the step was seen


def test_a_bmc_that_stops_answering_is_a_gap_not_a_guess(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    down = tmp_path / "down"
    _ipmitool(tmp_path, monkeypatch, profile="100", delay="0.02", down=str(down))
    probe = IpmiProbe(pace_s=0.05, hold_s=0.3)
    probe.open()
    try:
        (a,) = probe.read()
        time.sleep(0.3)
        down.write_text("")
        time.sleep(1.0)
        with pytest.raises(ProbeError, match="no answer from the BMC.*Could not open device"):
            probe.read()
        down.unlink()
        time.sleep(0.4)
        (b,) = probe.read()
    finally:
        probe.close()
    elapsed = b.t - a.t
    # about 1 s without answers, of which at most hold_s (0.3 s) is held: some 0.7 s is not counted
    assert 100.0 * (elapsed - 1.2) < b.energy_j - a.energy_j < 100.0 * (elapsed - 0.5)


def test_ipmi_joins_the_component_probes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(NvmlProbe, "availability", classmethod(lambda cls: Availability(False, "test")))
    monkeypatch.setenv("FOOTPRINT_POWERCAP", str(tmp_path / "none"))
    monkeypatch.setenv("FOOTPRINT_SYSFS", str(tmp_path / "none"))
    _ipmitool(tmp_path, monkeypatch)
    assert [p.name for p in default_probes()] == ["ipmi", "cpu-estimate", "ram-estimate"]


def test_cli_run_ipmi_end_to_end(tmp_path: Path, clean_env: dict[str, str]):
    env = put_on_path(tmp_path / "bin", "ipmitool", "ipmitool.py", dict(clean_env, FAKE_IPMI_PROFILE="300"))
    res = run_cli(["run", "--ipmi", "--no-summary", "--", "sleep", "1.5"], env)
    assert res.returncode == 0, res.stderr.decode()
    run = report_json(env)["runs"][0]
    dur = run["ended_at"] - run["started_at"]
    assert run["sources"]["node"] == "ipmi-dcmi" and run["energy_basis"] == "node"
    assert run["node_energy_j"] == pytest.approx(300.0 * dur, rel=0.01)  # exact but for the first read's timing
    assert run["unattributed_j"] == pytest.approx(run["node_energy_j"] - run["energy_j"]["total"], rel=1e-12)
    # without --ipmi, nor the variable, the BMC is not asked
    res = run_cli(["run", "--no-summary", "--", "true"], env)
    assert "node" not in report_json(env)["runs"][0]["sources"]
    # the config file's key switches it on too; a bad value is one line and a non-zero exit
    (tmp_path / "footprint.toml").write_text("ipmi = true\n")
    res = run_cli(["run", "--no-summary", "--", "true"], dict(env, FOOTPRINT_CONFIG=str(tmp_path / "footprint.toml")))
    assert res.returncode == 0 and report_json(env)["runs"][0]["sources"]["node"] == "ipmi-dcmi"
    res = run_cli(["run", "--no-summary", "--", "true"], dict(env, FOOTPRINT_IPMI="maybe"))
    err = res.stderr.decode()
    assert res.returncode != 0 and "FOOTPRINT_IPMI must be on or off" in err and "Traceback" not in err
