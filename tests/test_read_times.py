"""Every sysfs probe stamps a reading with the instant it read its file, not the instant Python got its lock
back. A file read lets go of the GIL, and beside a busy Python thread (a training loop) getting it back can take
a switch interval or more (5-8 ms measured, see test_nvml's late-return test). Here the fake clock moves while
each read waits for its lock, as that wait would, and the fake trees follow the clock: each reading's time must
be its file's read time, and its energy the exact figure between its read and the first one."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import footprint.probes.battery as battery
import footprint.probes.hwmon as hwmon
import footprint.probes.jetson as jetson
import footprint.probes.powermeter as powermeter
import footprint.probes.rapl as rapl
import pytest
from footprint.probes.base import Probe

from footprint.common.fakeclock import FakeClock
from tests.fakes.hwmon import Chip, Counter, Rail, SysfsTree, acpi_power_meter
from tests.fakes.power_supply import Battery, PowerSupplyTree
from tests.fakes.powercap import PowercapTree, Zone

WATTS = 40.0
# the wait for the lock after each file read: open()'s, then each read()'s; uneven, so a stamp taken after the
# read would move each reading's time by a different amount and change its energy
WAITS = [0.5, 0.25, 1.0, 0.75, 0.1, 0.3, 0.6]
Built = tuple[Probe, ModuleType, str, Callable[[float, float], float]]  # probe, module and reader to delay, exact J
Builder = Callable[[Path, FakeClock, contextlib.ExitStack], Built]


def _rapl(root: Path, clock: FakeClock, stack: contextlib.ExitStack) -> Built:
    zone = Zone("intel-rapl:0", "package-0", WATTS)
    tree = PowercapTree(root, [zone], clock=clock)
    stack.enter_context(tree)
    return rapl.RaplProbe(root, clock=clock), rapl, "_read_int", lambda a, b: tree.energy_j(zone, a, b)


def _hwmon(root: Path, clock: FakeClock, stack: contextlib.ExitStack) -> Built:
    counter = Counter(None, WATTS)
    tree = SysfsTree(root, [Chip("i915", [counter], drm_card=0)], clock=clock)
    stack.enter_context(tree)
    return hwmon.HwmonProbe(root, clock=clock), hwmon, "read_int", lambda a, b: tree.energy_j(counter, a, b)


def _jetson(root: Path, clock: FakeClock, stack: contextlib.ExitStack) -> Built:
    rail = Rail("VDD_IN", WATTS, style="power")  # one file per read: powerN_input (µW)
    tree = SysfsTree(root, [Chip("ina238", rails=[rail])], clock=clock)
    stack.enter_context(tree)
    return jetson.JetsonProbe(root, clock=clock), jetson, "read_int", lambda a, b: tree.energy_j(rail, a, b)


def _powermeter(root: Path, clock: FakeClock, stack: contextlib.ExitStack) -> Built:
    chip = acpi_power_meter(WATTS)
    tree = SysfsTree(root, [chip], clock=clock)
    stack.enter_context(tree)
    return (powermeter.PowerMeterProbe(root, clock=clock), powermeter, "read_int",
            lambda a, b: tree.energy_j(chip.rails[0], a, b))


def _battery(root: Path, clock: FakeClock, stack: contextlib.ExitStack) -> Built:
    cell = Battery(WATTS, family="power")  # one file per read: power_now (µW)
    tree = PowerSupplyTree(root, [cell], clock=clock)
    stack.enter_context(tree)
    return battery.BatteryProbe(root, clock=clock), battery, "read_int", lambda a, b: tree.energy_j(cell, a, b)


@pytest.mark.parametrize("build", [_rapl, _hwmon, _jetson, _powermeter, _battery],
                         ids=["rapl", "hwmon", "jetson", "powermeter", "battery"])
def test_a_reading_is_stamped_at_its_file_read_not_when_the_read_got_the_lock_back(
        build: Builder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    clock = FakeClock()
    stack = contextlib.ExitStack()
    probe, module, name, exact = build(tmp_path, clock, stack)
    real = getattr(module, name)
    waits = itertools.cycle(WAITS)
    read_at: list[float] = []

    def late(path: Path | str) -> int:  # the read, then the wait for the lock
        read_at.append(clock.now())
        value: int = real(path)
        clock.advance(next(waits))
        return value

    monkeypatch.setattr(module, name, late)
    with stack:
        (dev,) = probe.open()
        first = read_at[-1]  # open() may read another file first (a range): the counter or power comes last
        for _ in range(len(WAITS)):
            clock.advance(0.5)
            del read_at[:]
            (reading,) = probe.read()
            assert len(read_at) == 1 and reading.device.key == dev.key
            assert reading.t == read_at[0]
            assert reading.energy_j == pytest.approx(exact(first, reading.t), abs=1e-5)
            assert reading.power_w == pytest.approx(WATTS, rel=1e-5)  # from a counter: its delta over true times
    assert reading.energy_j == pytest.approx(WATTS * (reading.t - first), abs=1e-5)
    assert reading.energy_j > 0
