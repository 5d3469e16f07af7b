"""Raspberry Pi 4 and older: a labelled board model, found from the device tree's model string in a fake sysfs
tree (`$FOOTPRINT_SYSFS/firmware/devicetree/base/model`, NUL-terminated as the kernel writes it), driven by a
fake /proc/stat on a fake clock.

The model is P = idle + (max - idle) x utilisation, the load part as `cpu` and the idle floor as `board`; its
energy between two reads is exact for the mean utilisation between them, so the assertions are the model's
exact integral (rel 1e-12: float sums only).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from footprint.probes import Availability, default_probes
from footprint.probes.nvml import NvmlProbe
from footprint.probes.rpiboard import BOARDS, RpiBoardEstimateProbe, board_model, board_power

from footprint.common.fakeclock import FakeClock
from tests.conftest import probe_line, report_json, run_cli
from tests.fakes.tools import install, with_bin
from tests.test_estimate import _write_stat


def write_model(sysfs: Path, model: str) -> Path:
    path = sysfs / "firmware" / "devicetree" / "base" / "model"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.encode() + b"\x00")
    return path


@pytest.fixture
def sysfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "sys"
    root.mkdir()
    monkeypatch.setenv("FOOTPRINT_SYSFS", str(root))
    monkeypatch.setenv("FOOTPRINT_POWERCAP", str(tmp_path / "none"))
    monkeypatch.setattr(NvmlProbe, "availability", classmethod(lambda cls: Availability(False, "test")))
    return root


@pytest.fixture
def vcgencmd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    install(bin_dir, "vcgencmd", "vcgencmd.py")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir


def test_the_board_is_named_by_the_device_tree_and_found_in_the_table(sysfs: Path):
    assert board_model() is None  # no device tree: not a Raspberry Pi
    write_model(sysfs, "Raspberry Pi 4 Model B Rev 1.4")
    assert board_model() == "Raspberry Pi 4 Model B Rev 1.4"
    pi4 = board_power("Raspberry Pi 4 Model B Rev 1.4")
    assert pi4 is not None and (pi4.idle_w, pi4.max_w) == (2.7, 6.4) and "pidramble" in pi4.source
    plus = board_power("Raspberry Pi 3 Model B Plus Rev 1.3")
    assert plus is not None and (plus.idle_w, plus.max_w) == (1.9, 5.1)
    assert board_power("Raspberry Pi 3 Model B Rev 1.2") == BOARDS["Raspberry Pi 3 Model B"]  # not the Plus
    for other in ("Raspberry Pi 5 Model B Rev 1.0", "Raspberry Pi Zero W Rev 1.1", "Raspberry Pi 400 Rev 1.0",
                  "Pine64 RockPro64 v2.1", "NVIDIA Jetson Orin Nano Developer Kit"):
        assert board_power(other) is None
    for board in BOARDS.values():
        assert 0 < board.idle_w < board.max_w < 10 and board.source


def test_a_pi_4_is_its_board_model_exactly_on_a_fake_clock(sysfs: Path, tmp_path: Path):
    write_model(sysfs, "Raspberry Pi 4 Model B Rev 1.4")
    stat = tmp_path / "stat"
    clock = FakeClock(1000.0)
    busy, idle = 5000, 50000
    _write_stat(stat, busy, idle)
    probe = RpiBoardEstimateProbe(stat_path=str(stat), clock=clock)
    devices = probe.open()
    assert [(d.key, d.source, d.measured) for d in devices] == [
        ("cpu:0", "estimate:rpi-board-model", False), ("board:0", "estimate:rpi-board-model", False)]
    for dev in devices:
        assert dev.note is not None and "Raspberry Pi 4 Model B Rev 1.4" in dev.name + dev.note
        assert "pidramble" in dev.note
    assert devices[0].update_period_s > 0 and devices[1].update_period_s == 0.0  # the idle floor is constant
    utils = [0.25, 1.0, 0.0, 0.5, 0.75]
    seconds = [1.0, 0.5, 2.0, 0.25, 1.5]
    for u, dt in zip(utils, seconds, strict=True):
        jiffies = int(400 * dt)  # four CPUs at 100 Hz
        busy += int(jiffies * u)
        idle += jiffies - int(jiffies * u)
        clock.advance(dt)
        _write_stat(stat, busy, idle)
        last = {r.device.kind: r for r in probe.read()}
    load = (6.4 - 2.7) * sum(u * dt for u, dt in zip(utils, seconds, strict=True))
    assert last["cpu"].energy_j == pytest.approx(load, rel=1e-12)
    assert last["board"].energy_j == pytest.approx(2.7 * sum(seconds), rel=1e-12)
    # the whole board: idle + (max - idle) x utilisation, integrated
    assert last["cpu"].energy_j + last["board"].energy_j == pytest.approx(
        sum((2.7 + (6.4 - 2.7) * u) * dt for u, dt in zip(utils, seconds, strict=True)), rel=1e-12)
    assert last["cpu"].power_w == pytest.approx(3.7 * 0.75) and last["board"].power_w == 2.7
    probe.close()


def test_on_a_pi_4_it_replaces_the_generic_cpu_and_ram_estimates(sysfs: Path, vcgencmd: Path,
                                                                 monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FAKE_VCGENCMD_BOARD", "pi4")  # its firmware has no pmic_read_adc
    write_model(sysfs, "Raspberry Pi 4 Model B Rev 1.4")
    av = RpiBoardEstimateProbe.availability()
    assert av.ok and av.kinds == ("cpu", "ram", "board")  # the board figure includes the RAM
    assert "Raspberry Pi 4 Model B Rev 1.4" in av.reason and "2.7 W" in av.reason and "6.4 W" in av.reason
    assert [p.name for p in default_probes()] == ["rpi-estimate"]
    assert [p.name for p in default_probes(node=False)] == []  # a board is measured once per node


def test_a_pi_5_still_uses_its_pmic(sysfs: Path, vcgencmd: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FAKE_VCGENCMD_POWER", "VDD_CORE=2.0,DDR_VDD2=0.3")
    write_model(sysfs, "Raspberry Pi 5 Model B Rev 1.0")
    av = RpiBoardEstimateProbe.availability()
    assert not av.ok and "PMIC" in av.reason
    assert [p.name for p in default_probes()] == ["rpi"]


@pytest.mark.parametrize("model", [None, "Pine64 RockPro64 v2.1", "Raspberry Pi Zero W Rev 1.1"])
def test_elsewhere_the_generic_estimates_are_unchanged(sysfs: Path, model: str | None):
    if model is not None:
        write_model(sysfs, model)
    av = RpiBoardEstimateProbe.availability()
    assert not av.ok
    if model is not None:
        assert model in av.reason  # a board it does not know is named
    assert [p.name for p in default_probes()] == ["cpu-estimate", "ram-estimate"]


def test_cli_probes_and_run_on_a_pi_4(tmp_path: Path, clean_env: dict[str, str]):
    bin_dir = tmp_path / "bin"
    install(bin_dir, "vcgencmd", "vcgencmd.py")
    sysfs = tmp_path / "sys"
    write_model(sysfs, "Raspberry Pi 4 Model B Rev 1.4")
    env = with_bin(dict(clean_env, FAKE_VCGENCMD_BOARD="pi4", FOOTPRINT_SYSFS=str(sysfs)), bin_dir)
    probes = run_cli(["probes"], env).stdout.decode()
    assert probe_line(probes, "rpi-estimate").startswith(
        "yes  Raspberry Pi 4 Model B Rev 1.4 (device tree): whole board 2.7 W idle")
    assert "in place of the generic CPU and RAM estimates" in probes
    res = run_cli(["run", "--no-summary", "--", "sleep", "1"], env)
    assert res.returncode == 0, res.stderr.decode()
    run = report_json(env)["runs"][0]
    # the RAM is inside the board figure (its device's note says so): no ram device of its own, as no gpu
    assert run["sources"] == {"cpu": "estimate:rpi-board-model", "ram": "none", "gpu": "none",
                              "board": "estimate:rpi-board-model"}
    devices = {d["kind"]: d for d in run["devices"]}
    covered = devices["board"]["last_read_at"] - devices["board"]["first_read_at"]
    assert covered > 0.9
    # the idle floor is constant: exactly 2.7 W over the time the reads cover; the load part depends on this
    # machine's real utilisation, which is between 0 and 1
    assert devices["board"]["energy_j"] == pytest.approx(2.7 * covered, rel=1e-9)
    assert 0.0 <= devices["cpu"]["energy_j"] <= (6.4 - 2.7) * covered * (1 + 1e-9)
    assert "estimated, not measured: board (estimate:rpi-board-model), cpu (estimate:rpi-board-model)" \
        in run["warnings"]
