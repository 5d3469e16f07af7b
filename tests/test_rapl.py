from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from footprint.probes.rapl import GRANT_HINT, RaplProbe, find_zones, grant_hint, unwrap

from footprint.common.fakeclock import FakeClock
from tests.conftest import probe_line, report_json, run_cli
from tests.fakes.powercap import PowercapTree, Zone, amd_rapl_zones, standard_zones


def test_unwrap_no_wrap_one_wrap_and_several():
    assert unwrap(100, 250, 1000) == 150
    assert unwrap(900, 100, 1000) == 200  # one visible wrap
    # two whole extra wraps hidden between reads: the expected energy picks them
    assert unwrap(900, 100, 1000, expected_uj=2150) == 2200
    # an expectation below the visible delta never shrinks it
    assert unwrap(100, 250, 1000, expected_uj=10) == 150


def test_zone_selection_counts_packages_and_dram_only(tmp_path: Path):
    PowercapTree(tmp_path, standard_zones())
    zones = find_zones(tmp_path)
    assert [(kind, idx, name) for _, kind, idx, name in zones] == [
        ("cpu", 0, "package-0"), ("cpu", 1, "package-1"), ("ram", 0, "dram"), ("ram", 1, "dram"),
    ]


def _read_every(probe: RaplProbe, clock: FakeClock, seconds: float, step: float) -> dict[str, float]:
    first = {r.device.key: r for r in probe.read()}
    for _ in range(round(seconds / step)):
        clock.advance(step)
        probe.read()
    last = {r.device.key: r for r in probe.read()}
    return {k: last[k].energy_j - first[k].energy_j for k in last}


# On a fake clock the tree's counters are rewritten each time the clock moves: exact to the µJ they are
# written in, and as fast on a loaded machine as on an idle one.
EXACT = 1e-6


def test_energy_matches_exact_integral_across_wraps(tmp_path: Path):
    # 5 J range: package-0 at 40 W wraps every 125 ms; read every 60 ms (one wrap at most between reads)
    clock = FakeClock()
    with PowercapTree(tmp_path, standard_zones(range_uj=5_000_000), clock=clock):
        probe = RaplProbe(tmp_path, clock=clock)
        probe.open()
        energy = _read_every(probe, clock, 1.5, 0.06)
    for key, p in {"cpu:0": 40.0, "cpu:1": 30.0, "ram:0": 6.0, "ram:1": 4.0}.items():
        assert energy[key] == pytest.approx(p * 1.5, rel=EXACT), key


def test_several_wraps_between_two_reads(tmp_path: Path):
    clock = FakeClock()
    zones = [Zone("intel-rapl:0", "package-0", 20.0, 5_000_000)]  # wraps every 0.25 s
    with PowercapTree(tmp_path, zones, clock=clock):
        probe = RaplProbe(tmp_path, clock=clock)
        probe.open()
        a = probe.read()[0]
        for _ in range(5):  # learn the power
            clock.advance(0.05)
            probe.read()
        clock.advance(1.1)  # more than 4 wraps with no read
        b = probe.read()[0]
    assert b.energy_j - a.energy_j == pytest.approx(20.0 * 1.35, rel=EXACT)


def test_track_in_process_with_rapl_tree(tmp_path: Path):
    from footprint.probes import RaplProbe as Rp

    import footprint

    clock = FakeClock()
    with PowercapTree(tmp_path / "powercap", standard_zones(), clock=clock) as tree:
        with footprint.track("rapl", db=str(tmp_path / "r.db"), interval=0.1, probes=[Rp(tree.root, clock=clock)],
                             summary=False, clock=clock) as run:
            clock.advance(1.0)
    rep = run.report()
    assert rep.ended_at - rep.started_at == pytest.approx(1.0)
    assert rep.sources["cpu"] == "rapl" and rep.sources["ram"] == "rapl"
    assert rep.energy_j["cpu"] == pytest.approx(70.0, rel=EXACT)  # package-0 + package-1, no core/uncore
    assert rep.energy_j["ram"] == pytest.approx(10.0, rel=EXACT)
    assert rep.energy_j["gpu"] is None and rep.sources["gpu"] == "none"


def test_cli_reads_tree_named_by_env(powercap: PowercapTree, clean_env: dict[str, str]):
    env = dict(clean_env, FOOTPRINT_POWERCAP=str(powercap.root))
    res = run_cli(["run", "--no-summary", "--", "python", "-c", "import time; time.sleep(1)"], env)
    assert res.returncode == 0, res.stderr.decode()
    run = report_json(env)["runs"][0]
    dur = run["ended_at"] - run["started_at"]
    assert run["sources"] == {"cpu": "rapl", "ram": "rapl", "gpu": "none"}
    assert run["energy_j"]["cpu"] == pytest.approx(70.0 * dur, rel=0.01)
    assert run["energy_j"]["ram"] == pytest.approx(10.0 * dur, rel=0.01)


def _can_unshare() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _can_unshare(), reason="needs root and unshare -m")
def test_cli_reads_real_sysfs_path_via_bind_mount(tmp_path: Path, clean_env: dict[str, str]):
    """The default path /sys/class/powercap, with our tree bind-mounted there in a private mount namespace."""
    sysclass = tmp_path / "sysclass"
    with PowercapTree(sysclass / "powercap", standard_zones(), period_s=0.002):
        env = dict(clean_env)
        env.pop("FOOTPRINT_POWERCAP")
        script = (f"mount --bind {sysclass} /sys/class && "
                  f"exec {' '.join(map(str, [*__import__('tests.conftest').conftest.footprint_cmd()]))} "
                  "run --no-summary -- sleep 1")
        res = subprocess.run(["unshare", "-m", "sh", "-c", script], env=env, capture_output=True, timeout=60)
        if res.returncode != 0 and b"mount" in res.stderr:
            pytest.skip(f"bind mount refused here: {res.stderr.decode().strip()}")
        assert res.returncode == 0, res.stderr.decode()
    run = report_json(env)["runs"][0]
    dur = run["ended_at"] - run["started_at"]
    assert run["sources"]["cpu"] == "rapl"
    assert run["energy_j"]["cpu"] == pytest.approx(70.0 * dur, rel=0.01)
    assert not Path("/sys/class/powercap").exists()  # the mount stayed inside its namespace


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv")
def test_unreadable_counters_explain_how_to_grant_access(tmp_path: Path, clean_env: dict[str, str]):
    tree_root = tmp_path / "pc"
    tree = PowercapTree(tree_root, standard_zones())
    for z in tree.zones:
        # owner-only and owned by someone else: like root-only counters seen by a normal user
        os.chown(tree.zone_dir(z) / "energy_uj", 12345, 12345)
        os.chmod(tree.zone_dir(z) / "energy_uj", 0o400)
    code = ("import json; from footprint.probes.rapl import RaplProbe; "
            f"a = RaplProbe.availability({str(tree_root)!r}); print(json.dumps([a.ok, a.reason]))")
    # root without the capabilities that bypass file permissions
    drop = "-dac_override,-dac_read_search"
    res = subprocess.run(["setpriv", f"--bounding-set={drop}", f"--inh-caps={drop}", sys.executable, "-c", code],
                         env=clean_env, capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr.decode()
    ok, reason = json.loads(res.stdout)
    assert ok is False
    assert reason == GRANT_HINT and "chmod a+r" in reason


def test_rapl_without_dram_zones_falls_back_to_the_ram_estimate(tmp_path: Path, clean_env: dict[str, str]):
    zones = [Zone("intel-rapl:0", "package-0", 40.0), Zone("intel-rapl:0:0", "core", 20.0)]
    with PowercapTree(tmp_path / "pc", zones, period_s=0.002) as tree:
        env = dict(clean_env, FOOTPRINT_POWERCAP=str(tree.root))
        res = run_cli(["run", "--no-summary", "--", "sleep", "0.5"], env)
    assert res.returncode == 0, res.stderr.decode()
    run = report_json(env)["runs"][0]
    assert run["sources"]["cpu"] == "rapl" and run["sources"]["ram"] == "estimate:ram-w-per-gb"
    dur = run["ended_at"] - run["started_at"]
    assert run["energy_j"]["cpu"] == pytest.approx(40.0 * dur, rel=0.01)


def test_amd_rapl_control_type_is_found_and_its_core_zones_skipped(tmp_path: Path):
    PowercapTree(tmp_path, amd_rapl_zones())
    zones = find_zones(tmp_path)
    assert [(z[0].name, kind, idx, name) for z, (_, kind, idx, name) in zip(zones, zones, strict=True)] == [
        ("amd-rapl:0", "cpu", 0, "package-0"), ("amd-rapl:1", "cpu", 1, "package-1"),
    ]
    av = RaplProbe.availability(tmp_path)
    assert av.ok and av.kinds == ("cpu",)


def test_the_mmio_copy_of_a_package_and_a_second_control_type_are_not_counted_twice(tmp_path: Path):
    zones = [Zone("intel-rapl:0", "package-0", 40.0), Zone("intel-rapl-mmio:0", "package-0", 40.0),
             Zone("amd-rapl:0", "package-0", 40.0), Zone("intel-rapl:0:0", "dram", 5.0)]
    PowercapTree(tmp_path, zones)
    # one package-0 (the first in name order), never the MMIO copy
    assert [(z[0].name, z[1], z[2]) for z in find_zones(tmp_path)] == [("amd-rapl:0", "cpu", 0),
                                                                       ("intel-rapl:0:0", "ram", 0)]


def test_multi_die_package_names_take_the_zone_number(tmp_path: Path):
    PowercapTree(tmp_path, [Zone("intel-rapl:0", "package-0-die-0", 30.0),
                            Zone("intel-rapl:1", "package-0-die-1", 30.0)])
    assert [(z[1], z[2], z[3]) for z in find_zones(tmp_path)] == [("cpu", 0, "package-0-die-0"),
                                                                  ("cpu", 1, "package-0-die-1")]


def test_amd_rapl_energy_matches_exact_integral_across_wraps(tmp_path: Path):
    clock = FakeClock()
    with PowercapTree(tmp_path, amd_rapl_zones(range_uj=20_000_000), clock=clock):  # wraps every ~0.2 s
        probe = RaplProbe(tmp_path, clock=clock)
        devices = probe.open()
        energy = _read_every(probe, clock, 1.2, 0.05)
    assert [d.name for d in devices] == ["RAPL package-0 (amd-rapl:0)", "RAPL package-1 (amd-rapl:1)"]
    assert energy["cpu:0"] == pytest.approx(90.0 * 1.2, rel=EXACT)
    assert energy["cpu:1"] == pytest.approx(70.0 * 1.2, rel=EXACT)


def test_amd_rapl_cli_end_to_end(tmp_path: Path, clean_env: dict[str, str]):
    with PowercapTree(tmp_path / "pc", amd_rapl_zones(), period_s=0.002) as tree:
        env = dict(clean_env, FOOTPRINT_POWERCAP=str(tree.root))
        probes = run_cli(["probes"], env)
        res = run_cli(["run", "--no-summary", "--", "sleep", "0.5"], env)
    assert res.returncode == 0, res.stderr.decode()
    assert probe_line(probes.stdout.decode(), "rapl").startswith("yes  RAPL zones for cpu under")
    run = report_json(env)["runs"][0]
    dur = run["ended_at"] - run["started_at"]
    assert run["sources"]["cpu"] == "rapl" and run["sources"]["ram"] == "estimate:ram-w-per-gb"
    assert run["energy_j"]["cpu"] == pytest.approx(160.0 * dur, rel=0.01)


def test_grant_hint_names_the_control_type():
    assert "/sys/class/powercap/amd-rapl:*/energy_uj" in grant_hint("amd-rapl")
