from __future__ import annotations

from pathlib import Path

import pytest
from footprint.probes import Availability, default_probes
from footprint.probes.hwmon import HwmonProbe, find_counters, kind_map, unwrap_unknown_range
from footprint.probes.nvml import NvmlProbe

from footprint.common.fakeclock import FakeClock
from tests.conftest import probe_line, report_json, run_cli
from tests.fakes.hwmon import Chip, Counter, SysfsTree, amd_energy_chip, intel_gpus
from tests.fakes.powercap import PowercapTree, standard_zones


def _read_every(probe: HwmonProbe, clock: FakeClock, seconds: float, step: float) -> dict[str, float]:
    """Energy over `seconds` read every `step` on a fake clock (the tree's counters exact at every read)."""
    first = {r.device.key: r for r in probe.read()}
    for _ in range(round(seconds / step)):
        clock.advance(step)
        probe.read()
    last = {r.device.key: r for r in probe.read()}
    return {k: last[k].energy_j - first[k].energy_j for k in last}


def test_intel_gpus_and_amd_sockets_are_found_and_others_listed(tmp_path: Path):
    chips = [*intel_gpus(), amd_energy_chip(), Chip("ina228", [Counter(None, 3.0)])]
    SysfsTree(tmp_path, chips)
    found, skipped = find_counters(tmp_path, {})
    assert [(f.path.name, f.kind, f.name, f.source, f.note) for f in found] == [
        ("energy1_input", "gpu", "Intel GPU card0 (i915 energy1)", "hwmon:i915", None),
        ("energy1_input", "gpu", "Intel GPU card1 (xe card)", "hwmon:xe", "pkg not counted: inside the card counter"),
        ("energy5_input", "cpu", "AMD socket 0 (amd_energy)", "hwmon:amd_energy", None),  # never the Ecore ones
        ("energy6_input", "cpu", "AMD socket 1 (amd_energy)", "hwmon:amd_energy", None),
    ]
    assert skipped == ["ina228 energy1 in hwmon3"]
    av = HwmonProbe.availability(tmp_path, {})
    assert av.ok and av.kinds == ("gpu", "cpu")
    assert "gpu (hwmon:i915)" in av.reason and "cpu (hwmon:amd_energy)" in av.reason
    assert "FOOTPRINT_HWMON_KINDS" in av.reason  # says how to count the unknown chip


def test_unknown_chips_count_only_when_mapped(tmp_path: Path):
    SysfsTree(tmp_path, [Chip("ina228", [Counter("VBUS", 3.0), Counter("VSYS", 2.0, channel=2)])])
    av = HwmonProbe.availability(tmp_path, {})
    assert not av.ok and "ina228 energy1 (VBUS)" in av.reason and "FOOTPRINT_HWMON_KINDS=chip=kind" in av.reason
    assert kind_map("ina228/VSYS=soc, bad, =x") == {"ina228/VSYS": "soc"}
    found, skipped = find_counters(tmp_path, kind_map("ina228/VSYS=soc"))
    assert [(f.kind, f.source) for f in found] == [("soc", "hwmon:ina228")]
    assert skipped == ["ina228 energy1 (VBUS) in hwmon0"]


def test_no_counters_says_what_would_work(tmp_path: Path):
    av = HwmonProbe.availability(tmp_path / "nothing")
    assert not av.ok and "i915" in av.reason and "amd_energy" in av.reason


def test_unwrap_unknown_range():
    assert unwrap_unknown_range(100, 250) == 150
    # a wrap at 2^32 that agrees with the recent power
    assert unwrap_unknown_range((1 << 32) - 1000, 500, expected_uj=1400) == 1500
    # a lower read with a range that does not fit: a restart; at least the expected energy
    assert unwrap_unknown_range(4_900_000, 100_000, expected_uj=200_000) == 200_000
    assert unwrap_unknown_range(4_900_000, 300_000, expected_uj=200_000) == 300_000
    # no power known yet: only what is certain
    assert unwrap_unknown_range(4_900_000, 100_000) == 100_000


def test_energy_matches_exact_integral_with_a_power_step(tmp_path: Path):
    """On a fake clock the test writes every value the probe sees: exact to the counters' 1 µJ."""
    clock = FakeClock()
    chips = [*intel_gpus(), amd_energy_chip()]
    tree = SysfsTree(tmp_path, chips, t0=clock.now())
    probe = HwmonProbe(tmp_path, kinds={}, clock=clock)
    devices = probe.open()
    i915 = chips[0].counters[0]
    t_a = clock.now()
    for step in range(40):  # 2 s read every 50 ms; the i915 card drops from 120 W to 40 W at 1 s
        clock.advance(0.05)
        if step == 20:
            tree.set_power(i915, 40.0, clock.now() - 0.02)
        tree.write(clock.now())
        last = {r.device.key: r for r in probe.read()}
    t_b = clock.now()
    assert [(d.key, d.source, d.update_period_s) for d in devices] == [
        ("gpu:0", "hwmon:i915", 0.001), ("gpu:1", "hwmon:xe", 0.001),
        ("cpu:0", "hwmon:amd_energy", 0.001), ("cpu:1", "hwmon:amd_energy", 0.001)]
    xe_card, socket0, socket1 = chips[1].counters[0], chips[2].counters[-2], chips[2].counters[-1]
    for key, counter in (("gpu:0", i915), ("gpu:1", xe_card), ("cpu:0", socket0), ("cpu:1", socket1)):
        assert last[key].energy_j == pytest.approx(tree.energy_j(counter, t_a, t_b), abs=1e-4), key
    assert tree.energy_j(i915, t_a, t_b) == pytest.approx(120.0 * 1.03 + 40.0 * 0.97)  # the step happened
    assert last["gpu:0"].power_w == pytest.approx(40.0)


def test_a_32_bit_wrap_is_exact(tmp_path: Path):
    # starts 10 J below 2^32 µJ: at 40 W it wraps 0.25 s in
    counter = Counter(None, 40.0, range_uj=1 << 32, offset_uj=(1 << 32) - 10_000_000)
    clock = FakeClock()
    with SysfsTree(tmp_path, [Chip("i915", [counter], drm_card=0)], clock=clock) as tree:
        probe = HwmonProbe(tmp_path, clock=clock)
        probe.open()
        energy = _read_every(probe, clock, 1.0, 0.05)
    assert tree.counter_uj(counter, clock.now()) < 40_000_000  # it did wrap
    assert energy["gpu:0"] == pytest.approx(40.0 * 1.0, rel=1e-6)


def test_a_counter_with_an_unpublished_range_is_followed_by_its_power(tmp_path: Path):
    # wraps at 5 J (no usual range): every 0.25 s at 20 W, read every 50 ms
    counter = Counter("Esocket0", 20.0, range_uj=5_000_000)
    clock = FakeClock()
    with SysfsTree(tmp_path, [Chip("amd_energy", [counter])], clock=clock):
        probe = HwmonProbe(tmp_path, clock=clock)
        probe.open()
        energy = _read_every(probe, clock, 1.2, 0.05)
    assert energy["cpu:0"] == pytest.approx(20.0 * 1.2, rel=1e-6)


def _no_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(NvmlProbe, "availability", classmethod(lambda cls: Availability(False, "test")))


def test_amd_energy_is_not_used_when_rapl_measures_the_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    _no_nvml(monkeypatch)
    PowercapTree(tmp_path / "pc", standard_zones())
    SysfsTree(tmp_path / "sys", [amd_energy_chip()])
    monkeypatch.setenv("FOOTPRINT_POWERCAP", str(tmp_path / "pc"))
    monkeypatch.setenv("FOOTPRINT_SYSFS", str(tmp_path / "sys"))
    assert [p.name for p in default_probes()] == ["rapl"]  # rapl covers cpu: hwmon has nothing left to add

    # with an Intel GPU as well, hwmon is used for the GPU only
    SysfsTree(tmp_path / "sys2", [amd_energy_chip(), *intel_gpus()])
    monkeypatch.setenv("FOOTPRINT_SYSFS", str(tmp_path / "sys2"))
    probes = default_probes()
    assert [p.name for p in probes] == ["rapl", "hwmon"]
    assert {d.key: d.source for d in probes[1].open()} == {"gpu:0": "hwmon:i915", "gpu:1": "hwmon:xe"}

    # without RAPL, amd_energy measures the CPU and no CPU estimate is added
    monkeypatch.setenv("FOOTPRINT_POWERCAP", str(tmp_path / "none"))
    probes = default_probes()
    assert [p.name for p in probes] == ["hwmon", "ram-estimate"]
    assert sorted(d.key for d in probes[0].open()) == ["cpu:0", "cpu:1", "gpu:0", "gpu:1"]


def test_intel_gpus_are_counted_once_per_node_in_a_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    _no_nvml(monkeypatch)
    SysfsTree(tmp_path, intel_gpus())
    monkeypatch.setenv("FOOTPRINT_SYSFS", str(tmp_path))
    monkeypatch.setenv("FOOTPRINT_POWERCAP", str(tmp_path / "none"))
    assert "hwmon" not in [p.name for p in default_probes(node=False, cuda_ordinals=[1])]
    assert "hwmon" in [p.name for p in default_probes(node=True, cuda_ordinals=[0])]


def test_cli_end_to_end_with_the_tree_named_by_env(tmp_path: Path, clean_env: dict[str, str]):
    chips = [*intel_gpus(), amd_energy_chip()]
    with SysfsTree(tmp_path / "sys", chips, period_s=0.001):
        env = dict(clean_env, FOOTPRINT_SYSFS=str(tmp_path / "sys"))
        probes = run_cli(["probes"], env)
        res = run_cli(["run", "--no-summary", "--", "sleep", "0.5"], env)
    assert res.returncode == 0, res.stderr.decode()
    assert probe_line(probes.stdout.decode(), "hwmon").startswith(
        "yes  hwmon energy counters for cpu (hwmon:amd_energy), gpu (hwmon:i915), gpu (hwmon:xe)")
    run = report_json(env)["runs"][0]
    dur = run["ended_at"] - run["started_at"]
    assert run["sources"] == {"cpu": "hwmon:amd_energy", "ram": "estimate:ram-w-per-gb",
                              "gpu": "hwmon:i915+hwmon:xe"}
    assert run["energy_j"]["gpu"] == pytest.approx((120.0 + 300.0) * dur, rel=0.01)  # xe's pkg not added
    assert run["energy_j"]["cpu"] == pytest.approx((80.0 + 90.0) * dur, rel=0.01)  # sockets, not cores
