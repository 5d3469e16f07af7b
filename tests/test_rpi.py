"""Raspberry Pi 5: the PMIC's rails through `vcgencmd pmic_read_adc`, against a stand-in vcgencmd on PATH that
prints the real lines at a known power per rail (tests/fakes/vcgencmd.py).

On a fake clock the test tells the stand-in the time (a file it reads), so each read's power is the profile's
at that instant and the trapezoid over a linear ramp is its exact integral; the printed figures have eight
decimals (A and V), hence the 1e-7 tolerance.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from footprint.probes import Availability, ProbeError, default_probes
from footprint.probes.nvml import NvmlProbe
from footprint.probes.rpi import BOARD_RAILS, RpiProbe, parse_adc

from footprint.common.fakeclock import FakeClock
from tests.conftest import report_json, run_cli
from tests.fakes.tools import Profile, install, with_bin
from tests.fakes.vcgencmd import RAILS

POWER = {"VDD_CORE": 2.0, "DDR_VDD2": 0.3, "DDR_VDDQ": 0.1, "3V3_SYS": 0.4, "1V8_SYS": 0.35, "0V8_SW": 0.2,
         "HDMI": 0.12, "3V7_WL_SW": 0.05, "1V1_SYS": 0.2, "0V8_AON": 0.01, "3V3_DAC": 0.0, "3V3_ADC": 0.0}
OTHERS = [r for r in POWER if r not in ("VDD_CORE", "DDR_VDD2", "DDR_VDDQ")]

# captured on a Pi 5 (the format tests/fakes/vcgencmd.py reproduces)
CAPTURED = """ 3V7_WL_SW_A current(0)=0.00195186A
   3V3_SYS_A current(1)=0.12687090A
   1V8_SYS_A current(2)=0.18835450A
  DDR_VDD2_A current(3)=0.02147046A
  DDR_VDDQ_A current(4)=0.00000000A
   1V1_SYS_A current(5)=0.17957110A
    0V8_SW_A current(6)=0.25959740A
  VDD_CORE_A current(7)=0.56259000A
   3V3_DAC_A current(17)=0.00000000A
   3V3_ADC_A current(18)=0.00000000A
   0V8_AON_A current(16)=0.00293040A
      HDMI_A current(22)=0.02551890A
 3V7_WL_SW_V volt(8)=3.70720000V
   3V3_SYS_V volt(9)=3.32580900V
   1V8_SYS_V volt(10)=1.80415000V
  DDR_VDD2_V volt(11)=1.11135400V
  DDR_VDDQ_V volt(12)=0.60329610V
   1V1_SYS_V volt(13)=1.11282000V
    0V8_SW_V volt(14)=0.80512740V
  VDD_CORE_V volt(15)=0.76798460V
   3V3_DAC_V volt(20)=3.32142500V
   3V3_ADC_V volt(21)=3.32966700V
   0V8_AON_V volt(19)=0.80175740V
      HDMI_V volt(23)=5.11746000V
     EXT5V_V volt(24)=5.14158000V
      BATT_V volt(25)=3.28033900V
"""


def spec(powers: dict[str, float]) -> str:
    return ",".join(f"{k}={v}" for k, v in powers.items())


@pytest.fixture
def vcgencmd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    install(bin_dir, "vcgencmd", "vcgencmd.py")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FOOTPRINT_POWERCAP", str(tmp_path / "none"))
    monkeypatch.setenv("FOOTPRINT_SYSFS", str(tmp_path / "none"))
    monkeypatch.setattr(NvmlProbe, "availability", classmethod(lambda cls: Availability(False, "test")))
    return bin_dir


def test_the_captured_output_is_twelve_rails_of_volts_times_amps():
    rails = parse_adc(CAPTURED)
    assert len(rails) == 12 and "EXT5V" not in rails and "BATT" not in rails  # voltage only: no power
    assert rails["VDD_CORE"] == pytest.approx(0.76798460 * 0.56259000)
    assert sorted(BOARD_RAILS) == sorted(r for r in rails if r not in ("VDD_CORE", "DDR_VDD2", "DDR_VDDQ"))
    assert [name for name, *_ in RAILS] == list(rails)  # the stand-in prints the same rails


def test_rails_are_integrated_exactly_over_a_known_profile(vcgencmd: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch):
    now = tmp_path / "now"
    clock = FakeClock()
    t0 = clock.now()
    ramp = {"VDD_CORE": 0.3, "DDR_VDDQ": 0.02, "3V3_SYS": -0.01}
    for key, value in (("POWER", spec(POWER)), ("RAMP", spec(ramp)), ("CLOCK", str(now))):
        monkeypatch.setenv(f"FAKE_VCGENCMD_{key}", value)
    now.write_text("0")
    probe = RpiProbe(clock=clock)
    devices = probe.open()
    assert [(d.key, d.source, d.measured) for d in devices] == [
        ("cpu:0", "pmic:VDD_CORE", True), ("ram:0", "pmic:DDR_VDD2+DDR_VDDQ", True), ("board:0", "pmic:board", True)]
    note = devices[2].note
    assert note is not None and "USB" in note and "PMIC" in note and "3V3_SYS" in note
    for _ in range(10):  # 5 s in 0.5 s steps
        clock.advance(0.5)
        now.write_text(repr(clock.now() - t0))
        last = {r.device.kind: r for r in probe.read()}
    profile = Profile(POWER, ramp)
    assert last["cpu"].energy_j == pytest.approx(profile.energy("VDD_CORE", 0, 5), rel=1e-7)
    assert last["ram"].energy_j == pytest.approx(profile.energy("DDR_VDD2", 0, 5) + profile.energy("DDR_VDDQ", 0, 5),
                                                 rel=1e-7)
    assert last["board"].energy_j == pytest.approx(sum(profile.energy(r, 0, 5) for r in OTHERS), rel=1e-7)
    assert last["cpu"].power_w == pytest.approx(2.0 + 0.3 * 5, rel=1e-7)


def test_a_failing_vcgencmd_is_a_gap_not_counted_and_said(vcgencmd: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch):
    now, broken = tmp_path / "now", tmp_path / "broken"
    clock = FakeClock()
    t0 = clock.now()
    for key, value in (("POWER", spec(POWER)), ("CLOCK", str(now)), ("FAIL_AFTER", str(broken))):
        monkeypatch.setenv(f"FAKE_VCGENCMD_{key}", value)
    now.write_text("0")
    probe = RpiProbe(clock=clock)
    probe.open()

    def step() -> dict[str, float]:
        clock.advance(1.0)
        now.write_text(repr(clock.now() - t0))
        return {r.device.kind: r.energy_j for r in probe.read()}

    step(), step()  # 2 s read
    broken.touch()
    for _ in range(3):
        with pytest.raises(ProbeError, match="VCHI initialization failed"):
            step()
    broken.unlink()
    step()  # back at 6 s: the 4 s since the last reading are not counted
    assert probe.take_errors()["cpu:0"] == "no reading for 4 s (vcgencmd failed): the energy in that gap is not counted"
    last = step()  # 7 s
    assert last["cpu"] == pytest.approx(POWER["VDD_CORE"] * (2 + 1), rel=1e-7)


def test_older_boards_have_no_pmic_and_are_estimated(vcgencmd: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FAKE_VCGENCMD_BOARD", "pi4")
    av = RpiProbe.availability()
    assert not av.ok and "pmic_read_adc" in av.reason and "rpi-estimate" in av.reason
    # no device tree names the board here (FOOTPRINT_SYSFS is empty): the generic estimates; with one, the
    # board model (tests/test_rpiboard.py)
    assert [p.name for p in default_probes()] == ["cpu-estimate", "ram-estimate"]


def test_cli_end_to_end_on_a_pi_5(tmp_path: Path, clean_env: dict[str, str]):
    bin_dir = tmp_path / "bin"
    install(bin_dir, "vcgencmd", "vcgencmd.py")
    env = with_bin(dict(clean_env, FAKE_VCGENCMD_POWER=spec(POWER)), bin_dir)
    probes = run_cli(["probes"], env)
    lines = {line.split()[0]: line.split(None, 2)[1:] for line in probes.stdout.decode().splitlines() if line.strip()}
    assert lines["rpi"][0] == "yes"
    assert lines["rpi"][1].startswith("Raspberry Pi 5 PMIC rails VDD_CORE->cpu, DDR_VDD2+DDR_VDDQ->ram")
    res = run_cli(["run", "--no-summary", "--", "sleep", "1"], env)
    assert res.returncode == 0, res.stderr.decode()
    run = report_json(env)["runs"][0]
    # the VideoCore GPU is on VDD_CORE (the cpu device's note says so): no gpu device of its own
    assert run["sources"] == {"cpu": "pmic:VDD_CORE", "ram": "pmic:DDR_VDD2+DDR_VDDQ", "gpu": "none",
                              "board": "pmic:board"}
    devices = {d["kind"]: d for d in run["devices"]}
    assert devices["cpu"]["first_read_at"] == pytest.approx(run["started_at"], abs=1e-6)  # the run's first read
    # constant power: the trapezoid over the reads is the exact integral over the time they cover; the figures
    # have eight decimals (A and V)
    for kind, watts in (("cpu", POWER["VDD_CORE"]), ("ram", POWER["DDR_VDD2"] + POWER["DDR_VDDQ"]),
                        ("board", sum(POWER[r] for r in OTHERS))):
        covered = devices[kind]["last_read_at"] - devices[kind]["first_read_at"]
        assert covered > 0.9  # the 1 s run, read throughout
        assert devices[kind]["energy_j"] == pytest.approx(watts * covered, rel=1e-6)
    assert run["energy_j"]["total"] == pytest.approx(sum(d["energy_j"] for d in devices.values()), rel=1e-9)
    assert not [w for w in run["warnings"] if "estimated" in w]
