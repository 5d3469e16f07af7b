"""An Android phone over adb: a stand-in `adb` on PATH answers `adb devices`, the power stats HAL's dumpsys and the
battery's sysfs files in their real formats, for a phone whose rails and battery draw known, constant power."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from footprint.probes import ProbeError
from footprint.probes.adb import AdbProbe, battery_watts, choose_serial, parse_devices, parse_rails, rail_kind

from footprint.common.fakeclock import FakeClock
from tests.conftest import report_json, run_cli
from tests.fakes.powercap import PowercapTree, standard_zones
from tests.fakes.tools import put_on_path

SERIAL = "FA8X31A01234"
# a Pixel-like set of rails (names as Pixel 6's ODPM channels), watts
RAILS = {"S4M_VDD_CPUCL0:CPU(LITTLE)": 0.4, "S3M_VDD_CPUCL1:CPU(MID)": 0.9, "S2M_VDD_CPUCL2:CPU(BIG)": 1.6,
         "S2S_VDD_G3D:GPU": 1.2, "S1M_VDD_MIF:Memory": 0.5, "S10M_VDD_TPU:TPU": 0.7,
         "VSYS_PWR_DISPLAY:Display": 0.8, "VSYS_PWR_MODEM:Modem": 0.3}


def _adb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **fake: str) -> None:
    env = put_on_path(tmp_path / "bin", "adb", "adb.py", {})
    monkeypatch.setenv("PATH", env["PATH"])
    for key, value in fake.items():
        monkeypatch.setenv(f"FAKE_ADB_{key.upper()}", value)


def _rails_env() -> dict[str, str]:
    return {"rails": ",".join(f"{k}={w}" for k, w in RAILS.items()), "t0": repr(time.time() - 1000.0)}


def test_parse_the_real_formats():
    assert parse_devices("List of devices attached\nFA8X31A01234\tdevice\nemulator-5554\toffline\n\n") == {
        "FA8X31A01234": "device", "emulator-5554": "offline"}
    assert parse_devices("* daemon not running; starting now at tcp:5037\n* daemon started successfully\n"
                         "List of devices attached\n\n") == {}
    dump = ("============= PowerStats HAL 2.0 energy consumers ==============\n"
            "CPUCL0       :        1234.50 mWs\n"
            "========== End of PowerStats HAL 2.0 energy consumers ==========\n\n"
            "============= PowerStats HAL 2.0 energy meter ==============\n"
            "                           Channel    Cumulative Energy\n"
            "      [S4M_VDD_CPUCL0]:CPU(LITTLE)        12345.67 mWs\n"
            "              [S2S_VDD_G3D]:GPU             10.00 mWs\n"
            "========== End of PowerStats HAL 2.0 energy meter ==========\n")
    assert parse_rails(dump) == {"S4M_VDD_CPUCL0": ("CPU(LITTLE)", pytest.approx(12.34567)),
                                 "S2S_VDD_G3D": ("GPU", pytest.approx(0.01))}  # consumers are not rails
    assert parse_rails("Can't find service: android.hardware.power.stats.IPowerStats/default\n") == {}
    assert [rail_kind(s) for s in ("CPU(BIG)", "GPU", "Memory", "DDR", "TPU", "Display")] == [
        "cpu", "gpu", "ram", "ram", "tpu", None]


def test_battery_units_and_sign_are_detected_and_said():
    assert battery_watts(-812_000, 3_850_000) == (pytest.approx(0.812 * 3.85),
                                                  "current_now in µA (negative while discharging), voltage_now in µV")
    assert battery_watts(812, 3850) == (pytest.approx(0.812 * 3.85),
                                        "current_now in mA (positive while discharging), voltage_now in mV")


def test_choosing_the_phone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    _adb(tmp_path, monkeypatch, devices=f"{SERIAL}:device")
    assert choose_serial(None) == SERIAL
    _adb(tmp_path, monkeypatch, devices=f"{SERIAL}:device,R5CT1234:device")
    with pytest.raises(ProbeError, match="several phones attached .*pass --adb SERIAL"):
        choose_serial(None)
    assert choose_serial("R5CT1234") == "R5CT1234"
    _adb(tmp_path, monkeypatch, devices="R5CT1234:unauthorized")
    with pytest.raises(ProbeError, match="R5CT1234 is unauthorized .*accept the debugging prompt"):
        choose_serial("R5CT1234")
    _adb(tmp_path, monkeypatch, devices="")
    with pytest.raises(ProbeError, match="no phone ready over adb"):
        choose_serial(None)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ProbeError, match="adb not found on PATH"):
        choose_serial(None)


def test_rails_are_the_node_and_name_the_components(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    log = tmp_path / "dumps.log"
    _adb(tmp_path, monkeypatch, log=str(log), **_rails_env())
    probe = AdbProbe(SERIAL)
    devices = probe.open()
    assert [(d.key, d.source) for d in devices] == [
        ("node:0", "adb:power-stats"), ("cpu:0", "adb:power-stats"), ("gpu:0", "adb:power-stats"),
        ("ram:0", "adb:power-stats"), ("tpu:0", "adb:power-stats")]
    assert devices[1].note == "rails S4M_VDD_CPUCL0, S3M_VDD_CPUCL1, S2M_VDD_CPUCL2 (also in the node figure)"
    a = {r.device.key: r.energy_j for r in probe.read()}
    time.sleep(0.3)
    b = {r.device.key: r.energy_j for r in probe.read()}
    t = [float(x) for x in log.read_text().split()]
    dt = t[-1] - t[-2]  # the times the phone read its counters: the energy between is exact
    rounding = 2 * 1e-5  # each rail is printed to 0.01 mWs, twice
    assert b["node:0"] - a["node:0"] == pytest.approx(sum(RAILS.values()) * dt, abs=len(RAILS) * rounding)
    assert b["cpu:0"] - a["cpu:0"] == pytest.approx((0.4 + 0.9 + 1.6) * dt, abs=3 * rounding)
    for key, watts in (("gpu:0", 1.2), ("ram:0", 0.5), ("tpu:0", 0.7)):
        assert b[key] - a[key] == pytest.approx(watts * dt, abs=rounding), key


def test_battery_when_there_are_no_rails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    _adb(tmp_path, monkeypatch, rails="", battery="3.2,ma_neg")
    clock = FakeClock()
    probe = AdbProbe(SERIAL, clock=clock)
    (dev,) = probe.open()
    assert (dev.key, dev.source) == ("node:0", "adb:battery")
    assert dev.note is not None and "assumed current_now in mA (negative while discharging), voltage_now in µV" in (
        dev.note)
    for _ in range(4):
        clock.advance(2.5)
        (r,) = probe.read()
    watts = round(3.2 / 3.85 * 1e3) * 1e-3 * 3.85  # what the phone reports: whole mA at 3.85 V
    assert r.energy_j == pytest.approx(watts * 10.0, rel=1e-9)


def test_charging_and_unplugging_are_gaps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    gone = tmp_path / "gone"
    _adb(tmp_path, monkeypatch, rails="", battery="2.0,ua", gone=str(gone))
    clock = FakeClock()
    probe = AdbProbe(SERIAL, clock=clock)
    probe.open()
    clock.advance(1.0)
    (r,) = probe.read()
    monkeypatch.setenv("FAKE_ADB_STATUS", "Charging")
    clock.advance(1.0)
    with pytest.raises(ProbeError, match="is charging .*not counted"):
        probe.read()
    monkeypatch.setenv("FAKE_ADB_STATUS", "Discharging")
    clock.advance(1.0)
    assert probe.read()[0].energy_j == r.energy_j  # measuring restarts: the charging second is not counted
    gone.write_text("")
    clock.advance(1.0)
    with pytest.raises(ProbeError, match="device .* not found"):
        probe.read()
    gone.unlink()
    clock.advance(1.0)
    assert probe.read()[0].energy_j == r.energy_j
    clock.advance(1.0)
    assert probe.read()[0].energy_j == pytest.approx(r.energy_j * 2, rel=1e-6)


def test_footprint_run_adb_measures_the_phone_not_the_host(tmp_path: Path, clean_env: dict[str, str]):
    log = tmp_path / "dumps.log"
    fake = {f"FAKE_ADB_{k.upper()}": v for k, v in dict(_rails_env(), log=str(log)).items()}
    env = put_on_path(tmp_path / "bin", "adb", "adb.py", dict(clean_env, **fake))
    with PowercapTree(tmp_path / "pc", standard_zones(), period_s=0.002):
        env["FOOTPRINT_POWERCAP"] = str(tmp_path / "pc")  # the host has RAPL: it is not read with --adb
        res = run_cli(["run", "--adb", "--no-summary", "--", "adb", "shell", "sleep 1; exit 3"], env)
    assert res.returncode == 3, res.stderr.decode()  # the wrapped command's exit code, as without footprint
    run = report_json(env)["runs"][0]
    dur = run["ended_at"] - run["started_at"]
    assert run["meta"]["measured"] == f"Android phone {SERIAL} over adb"
    assert run["sources"] == {"cpu": "adb:power-stats", "ram": "adb:power-stats", "gpu": "adb:power-stats",
                              "tpu": "adb:power-stats", "node": "adb:power-stats"}
    # the counters are exact between the phone's reads: the first stored one is the run's start (the second dump,
    # after the probe's opening one), the last its end; each rail printed to 0.01 mWs
    t = [float(x) for x in log.read_text().split()]
    assert run["node_energy_j"] == pytest.approx(sum(RAILS.values()) * (t[-1] - t[1]), abs=len(RAILS) * 2e-5)
    assert run["node_energy_j"] == pytest.approx(sum(RAILS.values()) * dur, rel=0.2)  # timed from outside
    # display and modem rails are in the node figure only: they are the unattributed rest
    assert run["unattributed_j"] == pytest.approx(run["node_energy_j"] - run["energy_j"]["total"], rel=1e-12)
    assert run["unattributed_j"] == pytest.approx((0.8 + 0.3) * (t[-1] - t[1]), abs=2 * 2e-5)
    res = run_cli(["run", "--adb", "NOPE", "--", "adb", "shell", "true"], env)
    err = res.stderr.decode()
    assert res.returncode != 0 and "no phone NOPE attached" in err and "Traceback" not in err
