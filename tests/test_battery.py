"""A laptop on battery: the whole machine from a fake /sys/class/power_supply whose power is a known profile,
read through each family of files drivers expose; AC power is a gap, never a figure."""

from __future__ import annotations

from pathlib import Path

import pytest
from footprint.probes import Availability, ProbeError, default_probes
from footprint.probes.battery import BatteryProbe
from footprint.probes.nvml import NvmlProbe

from footprint.common.fakeclock import FakeClock
from tests.conftest import probe_line, report_json, run_cli
from tests.fakes.power_supply import Battery, PowerSupplyTree
from tests.fakes.powercap import PowercapTree, standard_zones


def _drive(clock: FakeClock, tree: PowerSupplyTree, probe: BatteryProbe, seconds: float, step: float = 0.5,
           ramp: tuple[Battery, float, float] | None = None) -> float:
    """Advance the clock, write the tree and read the probe every `step`; returns the last energy."""
    energy = 0.0
    t_start = clock.now()
    for _ in range(round(seconds / step)):
        clock.advance(step)
        if ramp is not None:
            b, base, slope = ramp
            tree.set_power(b, base + slope * (clock.now() - t_start), clock.now())
        tree.write(clock.now())
        energy = probe.read()[0].energy_j
    return energy


def test_power_now_is_integrated_exactly(tmp_path: Path):
    clock = FakeClock()
    b = Battery(8.0, family="power")
    tree = PowerSupplyTree(tmp_path, [b], t0=clock.now())
    probe = BatteryProbe(tmp_path, clock=clock)
    (dev,) = probe.open()
    assert (dev.key, dev.source, dev.measured) == ("node:0", "battery:power_now", True)
    assert dev.note is not None and "sign dropped" in dev.note
    # 10 s, from 8 W up by 0.5 W/s (whole µW): the trapezoid is exact on a ramp
    assert _drive(clock, tree, probe, 10.0, ramp=(b, 8.0, 0.5)) == pytest.approx(8.0 * 10 + 0.25 * 10 ** 2, rel=1e-9)


def test_negative_current_times_voltage(tmp_path: Path):
    clock = FakeClock()
    tree = PowerSupplyTree(tmp_path, [Battery(20.0, family="current", negative=True)], t0=clock.now())
    probe = BatteryProbe(tmp_path, clock=clock)
    assert probe.open()[0].source == "battery:current_now*voltage_now"
    # current rounded to the µA the driver gives: 20 W at 11.4 V is 1 754 386 µA (error under 1e-6)
    assert _drive(clock, tree, probe, 10.0) == pytest.approx(20.0 * 10, rel=1e-6)


def test_energy_now_deltas(tmp_path: Path):
    clock = FakeClock()
    tree = PowerSupplyTree(tmp_path, [Battery(15.0, family="energy")], t0=clock.now())
    probe = BatteryProbe(tmp_path, clock=clock)
    assert probe.open()[0].source == "battery:energy_now"
    # the deltas telescope: only the first and last reads' rounding to 1 µWh (3.6 mJ each) remains
    assert _drive(clock, tree, probe, 10.0) == pytest.approx(15.0 * 10, abs=2 * 3.6e-3)


def test_the_firmware_update_period_is_detected_and_said(tmp_path: Path):
    clock = FakeClock()
    b = Battery(10.0, family="power")
    tree = PowerSupplyTree(tmp_path, [b], update_s=2.0, t0=clock.now())
    probe = BatteryProbe(tmp_path, clock=clock)
    probe.open()
    said: dict[str, str] = {}
    for _ in range(24):  # 12 s read every 0.5 s; the firmware renews its mean power every 2 s
        clock.advance(0.5)
        tree.set_power(b, 10.0 + (clock.now() - tree.t0), clock.now())
        tree.write(clock.now())
        probe.read()
        said.update(probe.take_errors())
    assert "renews power_now about every 2 s" in said["node:0"]


def test_on_ac_other_probes_measure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(NvmlProbe, "availability", classmethod(lambda cls: Availability(False, "test")))
    tree = PowerSupplyTree(tmp_path / "sys", [Battery(10.0)])
    PowercapTree(tmp_path / "pc", standard_zones())
    monkeypatch.setenv("FOOTPRINT_SYSFS", str(tmp_path / "sys"))
    monkeypatch.setenv("FOOTPRINT_POWERCAP", str(tmp_path / "pc"))
    assert [p.name for p in default_probes()] == ["rapl", "battery"]
    tree.plug(True)
    av = BatteryProbe.availability(tmp_path / "sys")
    assert not av.ok and "on AC power (BAT0 Charging)" in av.reason and "other probes" in av.reason
    assert [p.name for p in default_probes()] == ["rapl"]


def test_going_on_ac_mid_run_is_a_gap(tmp_path: Path):
    clock = FakeClock()
    b = Battery(10.0, family="power")
    tree = PowerSupplyTree(tmp_path, [b], t0=clock.now())
    probe = BatteryProbe(tmp_path, clock=clock)
    probe.open()
    before = _drive(clock, tree, probe, 4.0)
    tree.on_ac = True  # plugged in for 3 s
    for _ in range(6):
        clock.advance(0.5)
        tree.write(clock.now())
        with pytest.raises(ProbeError, match=r"on AC power \(BAT0 Charging; gap 1\).*not counted"):
            probe.read()
    tree.on_ac = False
    tree.write(clock.now())
    (first,) = probe.read()  # discharging again: measuring restarts here, nothing added for the gap
    assert first.energy_j == before == pytest.approx(40.0, rel=1e-9)
    assert _drive(clock, tree, probe, 3.0) == pytest.approx(40.0 + 30.0, rel=1e-9)


def test_cli_on_battery_end_to_end(tmp_path: Path, clean_env: dict[str, str]):
    with PowercapTree(tmp_path / "pc", standard_zones(), period_s=0.002), \
            PowerSupplyTree(tmp_path / "sys", [Battery(30.0, family="current")]):
        env = dict(clean_env, FOOTPRINT_POWERCAP=str(tmp_path / "pc"), FOOTPRINT_SYSFS=str(tmp_path / "sys"))
        probes = run_cli(["probes"], env)
        res = run_cli(["run", "--no-summary", "--", "sleep", "1"], env)
    assert res.returncode == 0, res.stderr.decode()
    assert probe_line(probes.stdout.decode(), "battery").startswith(
        "yes  on battery: the whole machine from BAT0 (battery:current_now*voltage_now)")
    run = report_json(env)["runs"][0]
    dur = run["ended_at"] - run["started_at"]
    assert run["sources"]["node"] == "battery:current_now*voltage_now" and run["energy_basis"] == "node"
    assert run["node_energy_j"] == pytest.approx(30.0 * dur, rel=0.01)
    assert run["energy_j"]["total"] == pytest.approx(80.0 * dur, rel=0.01)  # RAPL beside it, not added to it
    assert run["unattributed_j"] == pytest.approx(run["node_energy_j"] - run["energy_j"]["total"], rel=1e-12)
    assert any("less than the sum of its components" in w for w in run["warnings"])  # 30 W < RAPL's 80 W
