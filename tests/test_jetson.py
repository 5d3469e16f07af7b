from __future__ import annotations

import time
from pathlib import Path

import pytest
from footprint.probes import Availability, default_probes
from footprint.probes.jetson import JetsonProbe, Plan, find_rails
from footprint.probes.nvml import NvmlProbe

from footprint.common.fakeclock import FakeClock
from tests.conftest import probe_line, report_json, run_cli
from tests.fakes.hwmon import Chip, Rail, SysfsTree, orin_agx


def orin_nx() -> list[Chip]:
    """Orin NX / Nano: one INA3221 with the module input, CPU+GPU+CV and SoC rails, as powerN_input (µW)."""
    return [Chip("ina3221", rails=[Rail("VDD_IN", 15.0, style="power", channel=1),
                                   Rail("VDD_CPU_GPU_CV", 6.0, style="power", channel=2),
                                   Rail("VDD_SOC", 2.5, style="power", channel=3)])]


def test_orin_agx_rails_map_to_components_and_the_input_rail_is_left_out(tmp_path: Path):
    SysfsTree(tmp_path, orin_agx())
    plan = Plan(find_rails(tmp_path))
    assert [(r.label, kind) for r, kind, _ in plan.devices] == [
        ("VDD_GPU_SOC", "gpu"), ("VDD_CPU_CV", "cpu"), ("VDDQ_VDD2_1V8AO", "ram")]  # NC channel skipped
    first_note = plan.devices[0][2]
    assert first_note is not None and "GPU and the SoC" in first_note and "VIN_SYS_5V0 (module input) not counted" in (
        first_note)
    av = JetsonProbe.availability(tmp_path)
    assert av.ok and set(av.kinds) == {"gpu", "soc", "cpu", "cv", "ram"} and "module" not in av.kinds
    assert "VDD_GPU_SOC->gpu" in av.reason and "VIN_SYS_5V0 (module input) not counted" in av.reason


def test_power_is_integrated_exactly_over_a_known_profile(tmp_path: Path):
    """On a fake clock, the test writes each value: a linear ramp, whose trapezoid integral is exact."""
    clock = FakeClock()
    chips = orin_agx()
    tree = SysfsTree(tmp_path, chips, t0=clock.now())
    gpu, cpu = chips[0].rails[0], chips[0].rails[1]
    probe = JetsonProbe(tmp_path, clock=clock)
    devices = probe.open()
    assert [(d.key, d.source, d.update_period_s) for d in devices] == [
        ("gpu:0", "ina3221:VDD_GPU_SOC", 0.14), ("cpu:0", "ina3221:VDD_CPU_CV", 0.14),
        ("ram:0", "ina3221:VDDQ_VDD2_1V8AO", 0.14)]
    t0 = clock.now()
    for _ in range(20):  # 10 s: the GPU ramps from 9 W by 1 W/s (1.8 A at 5 V, exact in mA); CPU steady
        clock.advance(0.5)
        tree.set_power(gpu, 9.0 + 1.0 * (clock.now() - t0), clock.now())
        tree.write(clock.now())
        readings = {r.device.key: r for r in probe.read()}
    assert readings["gpu:0"].energy_j == pytest.approx(9.0 * 10 + 0.5 * 1.0 * 10 ** 2, rel=1e-9)
    assert readings["gpu:0"].power_w == pytest.approx(19.0)
    assert readings["cpu:0"].energy_j == pytest.approx(4.0 * 10, rel=1e-9)
    assert readings["ram:0"].energy_j == pytest.approx(1.5 * 10, rel=1e-9)
    assert tree.energy_j(cpu, t0, clock.now()) == pytest.approx(40.0)


def test_orin_nx_in_power_units_and_what_its_rails_cover(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(NvmlProbe, "availability", classmethod(lambda cls: Availability(False, "test")))
    SysfsTree(tmp_path, orin_nx())
    monkeypatch.setenv("FOOTPRINT_SYSFS", str(tmp_path))
    monkeypatch.setenv("FOOTPRINT_POWERCAP", str(tmp_path / "none"))
    probes = default_probes()
    # VDD_CPU_GPU_CV feeds the CPU too: no CPU estimate on top; memory has no rail, so its estimate stays
    assert [p.name for p in probes] == ["jetson", "ram-estimate"]
    devices = probes[0].open()
    assert [(d.key, d.source) for d in devices] == [("gpu:0", "ina3221:VDD_CPU_GPU_CV"), ("soc:0", "ina3221:VDD_SOC")]
    assert devices[0].note is not None and "CPU, the GPU and the CV engines" in devices[0].note
    assert "VDD_IN (module input) not counted" in devices[0].note


def test_only_the_input_rail_is_read_as_the_module(tmp_path: Path):
    SysfsTree(tmp_path, [Chip("ina238", rails=[Rail("VDD_IN", 12.0, style="power")])])
    probe = JetsonProbe(tmp_path)
    devices = probe.open()
    assert [(d.key, d.source) for d in devices] == [("module:0", "ina238:VDD_IN")]
    assert devices[0].note is not None and "whole module" in devices[0].note
    assert set(JetsonProbe.availability(tmp_path).kinds) >= {"module", "cpu", "gpu", "ram"}  # no estimates on top


def test_jetpack4_iio_rails(tmp_path: Path):
    chips = [Chip("ina3221x", iio=True, rails=[Rail("VDD_IN", 10.0, style="iio", channel=0),
                                               Rail("VDD_CPU_GPU_CV", 4.0, style="iio", channel=1),
                                               Rail("VDD_SOC", 1.0, style="iio", channel=2)])]
    with SysfsTree(tmp_path, chips, period_s=0.001):
        probe = JetsonProbe(tmp_path)
        devices = probe.open()
        first = {r.device.key: r for r in probe.read()}
        time.sleep(0.5)
        last = {r.device.key: r for r in probe.read()}
    assert [(d.key, d.source) for d in devices] == [("gpu:0", "ina3221x:VDD_CPU_GPU_CV"), ("soc:0", "ina3221x:VDD_SOC")]
    for key, watts in (("gpu:0", 4.0), ("soc:0", 1.0)):
        assert last[key].energy_j - first[key].energy_j == pytest.approx(watts * (last[key].t - first[key].t), rel=1e-6)


def test_unknown_and_disabled_rails_are_named_not_counted(tmp_path: Path):
    SysfsTree(tmp_path, [Chip("ina3221", rails=[Rail("VDD_4V0_WIFI", 1.0), Rail("VDD_GPU", 5.0, channel=2)])])
    (tmp_path / "class" / "hwmon" / "hwmon0" / "in2_enable").write_text("0\n")
    av = JetsonProbe.availability(tmp_path)
    assert not av.ok and "VDD_4V0_WIFI (ina3221): a rail of unknown scope" in av.reason


def test_cli_end_to_end_on_orin_agx(tmp_path: Path, clean_env: dict[str, str]):
    with SysfsTree(tmp_path / "sys", orin_agx(), period_s=0.002):
        env = dict(clean_env, FOOTPRINT_SYSFS=str(tmp_path / "sys"))
        probes = run_cli(["probes"], env)
        res = run_cli(["run", "--no-summary", "--", "sleep", "0.5"], env)
    assert res.returncode == 0, res.stderr.decode()
    assert probe_line(probes.stdout.decode(), "jetson").startswith(
        "yes  Jetson rails VDD_GPU_SOC->gpu, VDD_CPU_CV->cpu, VDDQ_VDD2_1V8AO->ram")
    run = report_json(env)["runs"][0]
    dur = run["ended_at"] - run["started_at"]
    assert run["sources"] == {"cpu": "ina3221:VDD_CPU_CV", "ram": "ina3221:VDDQ_VDD2_1V8AO",
                              "gpu": "ina3221:VDD_GPU_SOC"}
    # constant power: the trapezoid over the run's reads is the exact integral; VIN_SYS_5V0's 20 W is not added
    assert run["energy_j"]["gpu"] == pytest.approx(9.0 * dur, rel=0.01)
    assert run["energy_j"]["cpu"] == pytest.approx(4.0 * dur, rel=0.01)
    assert run["energy_j"]["ram"] == pytest.approx(1.5 * dur, rel=0.01)
    assert "module" not in run["energy_j"]
