"""The labelled estimates: exact under their own model, however often (or rarely) they are read."""

from __future__ import annotations

from pathlib import Path

import pytest
from footprint.probes import CpuEstimateProbe, RamEstimateProbe
from footprint.probes.estimate import IDLE_FRACTION

from footprint.common.fakeclock import FakeClock


def _write_stat(path: Path, busy: int, idle: int) -> None:
    # the aggregate line as the kernel writes it: user nice system idle iowait irq softirq steal guest guest_nice
    path.write_text(f"cpu  {busy} 0 0 {idle} 0 0 0 0 0 0\ncpu0 {busy} 0 0 {idle} 0 0 0 0 0 0\nintr 1 2 3\n")


def test_cpu_estimate_energy_does_not_depend_on_how_often_it_is_read(tmp_path: Path):
    stat = tmp_path / "stat"
    clock = FakeClock(1000.0)
    busy, idle = 5000, 50000
    _write_stat(stat, busy, idle)
    often = CpuEstimateProbe(stat_path=str(stat), clock=clock)
    rarely = CpuEstimateProbe(stat_path=str(stat), clock=clock)
    often.open()
    rarely.open()
    assert often.tdp_w > 0 and often.sockets >= 1
    utils = [0.2, 1.0, 0.0, 0.5, 0.75]
    seconds = [1.0, 0.5, 2.0, 0.25, 1.5]
    for u, dt in zip(utils, seconds, strict=True):
        jiffies = int(200 * dt)  # two CPUs at 100 Hz
        busy += int(jiffies * u)
        idle += jiffies - int(jiffies * u)
        clock.advance(dt)
        _write_stat(stat, busy, idle)
        often.read()
    last = rarely.read()[0]
    exact = often.sockets * often.tdp_w * sum((IDLE_FRACTION + (1 - IDLE_FRACTION) * u) * dt
                                              for u, dt in zip(utils, seconds, strict=True))
    assert often.read()[0].energy_j == pytest.approx(exact, rel=1e-12)  # no time has passed: nothing added
    assert last.energy_j == pytest.approx(exact, rel=1e-12)
    assert last.device.measured is False and last.device.source == "estimate:tdp-utilisation"
    often.close()
    rarely.close()


def test_the_ram_estimate_counts_gb_as_dram_is_sold_and_as_the_run_records_it():
    """3 W per 8 GB DIMM: GB of 2^30 bytes, as CodeCarbon counts them and as the run's ram_total_gb (the
    embodied estimate's) has them, so one machine's RAM is one figure everywhere."""
    from footprint.probes.estimate import RAM_W_PER_GB, total_memory_bytes

    from footprint.run import _ram_gb

    probe = RamEstimateProbe()
    (dev,) = probe.open()
    gib = total_memory_bytes() / 2**30
    assert probe.power_w == pytest.approx(gib * RAM_W_PER_GB, rel=1e-12)
    assert _ram_gb() == pytest.approx(gib, rel=1e-3) and dev.name == f"{gib:.1f} GB RAM"


def test_estimates_ask_not_to_be_polled():
    # their energy between two reads is exact, so the sampler reads them at edges and flushes only
    assert CpuEstimateProbe.polled is False and RamEstimateProbe.polled is False


def test_a_window_shorter_than_the_estimates_resolution_is_flagged(tmp_path: Path):
    # /proc/stat counts CPU time in jiffies (100 Hz): a 2.6 ms span sees no tick at all, so its "utilisation"
    # and energy say nothing. It must be flagged unreliable like a window shorter than a counter's update period,
    # while a span long enough to be resolved is not.
    import os

    from footprint.probes.estimate import UTILISATION_TICKS

    import footprint

    stat = tmp_path / "stat"
    _write_stat(stat, 5000, 50000)
    clock = FakeClock()
    probe = CpuEstimateProbe(stat_path=str(stat), clock=clock)
    with footprint.track("short", probes=[probe], clock=clock, db=str(tmp_path / "f.db"), summary=False) as run:
        clock.advance(1.0)
        with run.span("prefill", tokens=12):
            clock.advance(0.0026)
        with run.span("decode", tokens=64):
            clock.advance(2.0)
    period = probe.devices[0].update_period_s
    assert period == UTILISATION_TICKS / os.sysconf("SC_CLK_TCK")  # whole ticks of the utilisation counter
    spans = {s.name: s for s in run.report().spans}
    assert spans["prefill"].reliable is False
    assert spans["decode"].reliable is True
    assert run.report().warnings == ["estimated, not measured: cpu (estimate:tdp-utilisation)"]
