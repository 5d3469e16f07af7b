"""The ACPI power meter (hwmon `power_meter`): the whole node, read from a fake sysfs tree whose power is a known
profile, beside the components (RAPL from a fake powercap tree), never added to them."""

from __future__ import annotations

from pathlib import Path

import pytest
from footprint.probes import Availability, default_probes
from footprint.probes.nvml import NvmlProbe
from footprint.probes.powermeter import PowerMeterProbe, find_meters

from footprint.common.fakeclock import FakeClock
from tests.conftest import probe_line, report_json, run_cli
from tests.fakes.hwmon import SysfsTree, acpi_power_meter
from tests.fakes.powercap import PowercapTree, standard_zones


def test_power_is_integrated_exactly_and_the_interval_is_the_update_period(tmp_path: Path):
    """On a fake clock the test writes each value: a linear ramp, whose trapezoid integral is exact."""
    clock = FakeClock()
    chip = acpi_power_meter(400.0, interval_ms=1000)
    tree = SysfsTree(tmp_path, [chip], t0=clock.now())
    probe = PowerMeterProbe(tmp_path, clock=clock)
    (dev,) = probe.open()
    assert (dev.key, dev.source, dev.update_period_s, dev.measured) == ("node:0", "acpi-power-meter", 1.0, True)
    assert dev.note is not None and "PSU" in dev.note and "trapezoid" in dev.note
    t0 = clock.now()
    for _ in range(20):  # 10 s: from 400 W up by 10 W/s (whole µW, so the reads are exact)
        clock.advance(0.5)
        tree.set_power(chip.rails[0], 400.0 + 10.0 * (clock.now() - t0), clock.now())
        tree.write(clock.now())
        (reading,) = probe.read()
    assert reading.energy_j == pytest.approx(400.0 * 10 + 0.5 * 10.0 * 10 ** 2, rel=1e-9)
    assert reading.power_w == pytest.approx(500.0)


def test_a_battery_meter_is_not_the_wall(tmp_path: Path):
    SysfsTree(tmp_path, [acpi_power_meter()])
    (tmp_path / "class" / "hwmon" / "hwmon0" / "power1_is_battery").write_text("1\n")
    assert find_meters(tmp_path) == []
    av = PowerMeterProbe.availability(tmp_path)
    assert not av.ok and "acpi_power_meter" in av.reason


def test_a_failed_read_is_a_device_error_not_a_zero(tmp_path: Path):
    clock = FakeClock()
    SysfsTree(tmp_path, [acpi_power_meter()], t0=clock.now())
    probe = PowerMeterProbe(tmp_path, clock=clock)
    probe.open()
    (tmp_path / "class" / "hwmon" / "hwmon0" / "power1_average").unlink()
    with pytest.raises(Exception, match="no ACPI power meter could be read"):
        probe.read()
    assert "node:0" in probe.take_errors()


def test_the_node_meter_does_not_keep_component_probes_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(NvmlProbe, "availability", classmethod(lambda cls: Availability(False, "test")))
    PowercapTree(tmp_path / "pc", standard_zones())
    SysfsTree(tmp_path / "sys", [acpi_power_meter()])
    monkeypatch.setenv("FOOTPRINT_POWERCAP", str(tmp_path / "pc"))
    monkeypatch.setenv("FOOTPRINT_SYSFS", str(tmp_path / "sys"))
    assert [p.name for p in default_probes()] == ["rapl", "powermeter"]
    # only the rank that measures the node reads the node meter
    assert "powermeter" not in [p.name for p in default_probes(node=False, cuda_ordinals=[0])]
    av = PowerMeterProbe.availability(tmp_path / "sys")
    assert av.ok and av.kinds == ("node",) and "every 1 s" in av.reason


def test_cli_end_to_end_node_beside_rapl(tmp_path: Path, clean_env: dict[str, str]):
    with PowercapTree(tmp_path / "pc", standard_zones(), period_s=0.002), \
            SysfsTree(tmp_path / "sys", [acpi_power_meter(420.0, interval_ms=250)], period_s=0.002):
        env = dict(clean_env, FOOTPRINT_POWERCAP=str(tmp_path / "pc"), FOOTPRINT_SYSFS=str(tmp_path / "sys"))
        probes = run_cli(["probes"], env)
        res = run_cli(["run", "--no-summary", "--", "sleep", "1"], env)
        text = run_cli(["report"], env)
    assert res.returncode == 0, res.stderr.decode()
    assert probe_line(probes.stdout.decode(), "powermeter").startswith(
        "yes  ACPI power meter: the whole node (hwmon0 every 0.25 s)")
    run = report_json(env)["runs"][0]
    dur = run["ended_at"] - run["started_at"]
    assert run["sources"]["node"] == "acpi-power-meter" and run["energy_basis"] == "node"
    # constant power: the trapezoid over the run's reads is the exact integral (1 % for the reads' timing)
    assert run["node_energy_j"] == pytest.approx(420.0 * dur, rel=0.01)
    assert run["energy_j"]["total"] == pytest.approx(80.0 * dur, rel=0.01)  # RAPL packages + dram: node not added
    assert run["unattributed_j"] == pytest.approx(run["node_energy_j"] - run["energy_j"]["total"], rel=1e-12)
    assert run["kwh"] == pytest.approx(run["node_energy_j"] / 3.6e6, rel=1e-12)
    assert "NODE" in text.stdout.decode() and "unattributed" in text.stdout.decode()
