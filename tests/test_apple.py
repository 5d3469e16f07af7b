"""Apple Silicon: macmon (no root) and powermetrics (root), each against a stand-in executable on PATH that
streams samples in the real tool's format at a known power (tests/fakes/macmon.py, tests/fakes/powermetrics.py).

The stand-ins print each sample's exact mean power over its window and log where the windows end, so the energy
a probe sums must be the exact integral of the profile from the first sample's end to the last's. Tolerances
come from the real formats' precision: macmon's f32 watts (~8 digits) and microsecond timestamps; powermetrics'
%g milliwatts (6 significant digits, so 1e-5 relative).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from footprint.probes import Availability, ProbeError, default_probes
from footprint.probes.macmon import MacmonProbe, parse_sample
from footprint.probes.nvml import NvmlProbe
from footprint.probes.powermetrics import PowermetricsProbe
from footprint.probes.powermetrics import parse_sample as parse_plist
from footprint.probes.stream import Sample, StreamTotals

from tests.conftest import probe_line, report_json, run_cli
from tests.fakes.tools import Profile, install, window_ends, with_bin

MACMON = {"cpu": 3.5, "gpu": 1.25, "gpu_ram": 0.05, "ane": 0.5, "ram": 0.75, "sys": 12.0}
POWERMETRICS = {"cpu": 4.2, "gpu": 2.6, "ane": 0.8}


def spec(powers: dict[str, float]) -> str:
    return ",".join(f"{k}={v}" for k, v in powers.items())


@pytest.fixture
def tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Both stand-ins on this process's PATH; NVML, RAPL and hwmon absent."""
    bin_dir = tmp_path / "bin"
    install(bin_dir, "macmon", "macmon.py")
    install(bin_dir, "powermetrics", "powermetrics.py")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FOOTPRINT_POWERCAP", str(tmp_path / "none"))
    monkeypatch.setenv("FOOTPRINT_SYSFS", str(tmp_path / "none"))
    monkeypatch.setattr(NvmlProbe, "availability", classmethod(lambda cls: Availability(False, "test")))
    return bin_dir


def test_macmon_energy_is_the_exact_integral_over_its_windows(tools: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch):
    log = tmp_path / "windows"
    ramp = {"cpu": 2.0, "gpu": -0.5, "ane": 1.0, "ram": 0.25}  # W/s: each sample's mean differs from the last
    for key, value in (("POWER", spec(MACMON)), ("RAMP", spec(ramp)), ("LOG", str(log)), ("SAMPLES", "8")):
        monkeypatch.setenv(f"FAKE_MACMON_{key}", value)
    probe = MacmonProbe(interval_s=0.1)
    devices = probe.open()
    assert [(d.key, d.source, d.update_period_s, d.measured) for d in devices] == [
        ("cpu:0", "macmon:cpu_power", 0.1, True), ("gpu:0", "macmon:gpu_power+gpu_ram_power", 0.1, True),
        ("ane:0", "macmon:ane_power", 0.1, True), ("ram:0", "macmon:ram_power", 0.1, True)]
    assert probe.wait_exit(10)
    last = {r.device.kind: r for r in probe.read()}  # what came before the exit is kept
    ends = window_ends(log)
    assert len(ends) == 8
    profile = Profile(MACMON, ramp)
    for kind in ("cpu", "ane", "ram"):
        assert last[kind].energy_j == pytest.approx(profile.energy(kind, ends[0], ends[-1]), rel=1e-5)
    gpu = profile.energy("gpu", ends[0], ends[-1]) + profile.energy("gpu_ram", ends[0], ends[-1])
    assert last["gpu"].energy_j == pytest.approx(gpu, rel=1e-5)
    assert last["cpu"].power_w == pytest.approx(profile.mean("cpu", ends[-2], ends[-1]), rel=1e-6)
    with pytest.raises(ProbeError, match=r"macmon exited with status 0 after 8 samples; no readings from here on"):
        probe.read()
    probe.close()


def test_powermetrics_energy_is_the_exact_integral_of_elapsed_ns_windows(tools: Path, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch):
    log = tmp_path / "windows"
    ramp = {"cpu": 3.0, "gpu": 1.5, "ane": -0.25}
    for key, value in (("POWER", spec(POWERMETRICS)), ("RAMP", spec(ramp)), ("LOG", str(log)), ("SAMPLES", "6")):
        monkeypatch.setenv(f"FAKE_POWERMETRICS_{key}", value)
    probe = PowermetricsProbe(interval_s=0.1)
    devices = probe.open()
    assert [(d.key, d.source, d.update_period_s) for d in devices] == [
        ("cpu:0", "powermetrics:cpu_power", 0.1), ("gpu:0", "powermetrics:gpu_power", 0.1),
        ("ane:0", "powermetrics:ane_power", 0.1)]
    assert probe.wait_exit(10)
    last = {r.device.kind: r for r in probe.read()}
    ends = window_ends(log)
    profile = Profile(POWERMETRICS, ramp)
    for kind in ("cpu", "gpu", "ane"):
        assert last[kind].energy_j == pytest.approx(profile.energy(kind, ends[0], ends[-1]), rel=1e-5)
    probe.close()


def test_a_real_powermetrics_sample_parses_to_its_own_powers():
    """The M1 sample of tests/fakes/powermetrics.py's source (macOS 13.3): 89 mJ of CPU over 2.019 s is its
    44.0773 mW; the probe takes the mW (more digits) and the window."""
    from tests.fakes.powermetrics import SAMPLE

    text = SAMPLE.format(elapsed_ns=2019178750, timestamp="2023-04-01T13:18:36Z", cpu_energy=89, cpu_power="44.0773",
                         gpu_energy=31, gpu_power="15.3528", ane_energy=0, ane_power="0", combined_power="59.4301")
    sample = parse_plist(text.encode() + b"\x00")
    assert sample is not None and sample.elapsed_s == pytest.approx(2.01917875)
    assert sample.power_w == pytest.approx({"cpu": 0.0440773, "gpu": 0.0153528, "ane": 0.0})
    # a release without the *_power keys: the whole-mJ energy over the window
    older = text.replace("<key>cpu_power</key>\n<real>44.0773</real>\n", "")
    assert parse_plist(older.encode()).power_w["cpu"] == pytest.approx(0.089 / 2.01917875)  # type: ignore[union-attr]


def test_macmon_line_and_its_timestamps():
    line = (b'{"cpu_power":0.20486385,"gpu_power":0.017451683,"ane_power":0.0,"all_power":0.22231553,'
            b'"sys_power":5.876533,"ram_power":0.11635789,"gpu_ram_power":0.0009615385,'
            b'"timestamp":"2025-02-24T20:38:15.427569+00:00"}')
    sample = parse_sample(line)
    assert sample is not None
    assert sample.power_w == pytest.approx({"cpu": 0.20486385, "gpu": 0.017451683 + 0.0009615385, "ane": 0.0,
                                            "ram": 0.11635789})  # all_power and sys_power are not devices
    assert sample.stamp == pytest.approx(1740429495.427569)
    totals = StreamTotals()
    totals.add(100.0, sample)
    totals.add(100.7, Sample({"cpu": 2.0}, stamp=sample.stamp + 0.5))  # the window is the tool's, not the arrival's
    assert totals.energy_j["cpu"] == pytest.approx(1.0)
    assert totals.at("cpu", 100.8, max_ahead_s=0.2) == pytest.approx(1.2)  # the latest power over the time since
    assert totals.at("cpu", 109.0, max_ahead_s=0.2) == pytest.approx(1.4)  # held after max_ahead_s
    totals.add(101.2, Sample({"cpu": 0.2}, stamp=sample.stamp + 1.0))  # lower than extrapolated: never goes down
    assert totals.at("cpu", 101.2, max_ahead_s=0.2) == pytest.approx(1.4)


def test_macmon_comes_first_and_covers_memory(tools: Path, monkeypatch: pytest.MonkeyPatch):
    assert [p.name for p in default_probes()] == ["macmon"]  # cpu, gpu, ane, ram: no estimate, no powermetrics
    (tools / "macmon").unlink()
    assert [p.name for p in default_probes()] == ["powermetrics", "ram-estimate"]
    monkeypatch.setattr(os, "geteuid", lambda: 501)
    av = PowermetricsProbe.availability()
    assert not av.ok and av.reason == "powermetrics needs root: run footprint with sudo, or install macmon (no root)"
    assert "powermetrics" not in [p.name for p in default_probes()]


def test_a_tool_that_cannot_run_fails_the_probe_with_its_own_message(tools: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FAKE_POWERMETRICS_UID", "501")  # started without sudo: the tool itself refuses
    with pytest.raises(ProbeError, match="powermetrics exited with status 1 after 0 samples: powermetrics must be "
                                         "invoked as the superuser"):
        PowermetricsProbe(interval_s=0.1).open()


def test_cli_end_to_end_with_macmon(tmp_path: Path, clean_env: dict[str, str]):
    bin_dir = tmp_path / "bin"
    install(bin_dir, "macmon", "macmon.py")
    env = with_bin(dict(clean_env, FAKE_MACMON_POWER=spec(MACMON)), bin_dir)
    probes = run_cli(["probes"], env)
    assert probe_line(probes.stdout.decode(), "macmon").startswith("yes  ") and "no root" in probes.stdout.decode()
    res = run_cli(["run", "--no-summary", "--", "sleep", "2"], env)
    assert res.returncode == 0, res.stderr.decode()
    run = report_json(env)["runs"][0]
    assert run["sources"] == {"cpu": "macmon:cpu_power", "ram": "macmon:ram_power",
                              "gpu": "macmon:gpu_power+gpu_ram_power", "ane": "macmon:ane_power"}
    devices = {d["kind"]: d for d in run["devices"]}
    # constant power: the samples' windows plus the latest power carried to each read are the exact integral over
    # the time the reads cover, but the windows are the tool's and the reads' times are when samples arrived: 3 %
    # covers up to 60 ms of delivery delay (pipe, scheduling on a loaded machine) in a 2 s run
    for kind, watts in (("cpu", MACMON["cpu"]), ("gpu", MACMON["gpu"] + MACMON["gpu_ram"]), ("ane", MACMON["ane"]),
                        ("ram", MACMON["ram"])):
        covered = devices[kind]["last_read_at"] - devices[kind]["first_read_at"]
        assert covered > 1.9
        assert devices[kind]["energy_j"] == pytest.approx(watts * covered, rel=0.03)
    # sys_power, the whole machine, is not a device: the total is the components'
    assert run["energy_j"]["total"] == pytest.approx(sum(d["energy_j"] for d in devices.values()), rel=1e-9)
    assert set(devices) == {"cpu", "gpu", "ane", "ram"}
    assert not [w for w in run["warnings"] if "estimated" in w]
    short = run_cli(["run", "--no-summary", "--", "true"], env)  # a run shorter than one sample's window
    assert short.returncode == 0, short.stderr.decode()
    warnings = report_json(env)["runs"][0]["warnings"]
    assert any("shorter than a counter's update period (0.25 s)" in w for w in warnings), warnings


def test_cli_a_tool_that_exits_mid_run_is_a_gap_with_a_warning(tmp_path: Path, clean_env: dict[str, str]):
    bin_dir = tmp_path / "bin"
    install(bin_dir, "powermetrics", "powermetrics.py")
    log = tmp_path / "windows"
    env = with_bin(dict(clean_env, FAKE_POWERMETRICS_POWER=spec(POWERMETRICS), FAKE_POWERMETRICS_EXIT_AFTER="8",
                        FAKE_POWERMETRICS_LOG=str(log)), bin_dir)
    res = run_cli(["run", "--no-summary", "--", "sh", "-c", "sleep 3.5; exit 3"], env)
    assert res.returncode == 3, res.stderr.decode()  # the command's own exit code, not a crash
    run = report_json(env)["runs"][0]
    gone = [w for w in run["warnings"] if "probe-error" in w]
    assert len(gone) == 1 and ("powermetrics exited with status 1 after 8 samples: powermetrics: sampler cpu_power "
                               "stopped unexpectedly; no readings from here on") in gone[0]
    assert any(w.startswith("cpu:0: no reading after +") for w in run["warnings"])
    cpu = next(d for d in run["devices"] if d["kind"] == "cpu")
    covered = cpu["last_read_at"] - cpu["first_read_at"]
    assert covered == pytest.approx(7 * 0.25, abs=0.1)  # the samples it gave, from the run's start to the eighth
    # as above: 5 % is 90 ms of delivery delay over the 1.75 s covered
    assert cpu["energy_j"] == pytest.approx(POWERMETRICS["cpu"] * covered, rel=0.05)
    ends = window_ends(log)  # and never more than the tool measured: the run began after its first sample
    assert len(ends) == 8 and cpu["energy_j"] <= POWERMETRICS["cpu"] * (ends[-1] - ends[0]) * (1 + 1e-5)
    assert run["sources"]["ram"] == "estimate:ram-w-per-gb"  # powermetrics has no DRAM figure
