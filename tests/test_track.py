"""footprint.track in code, with the in-memory FakeProbe."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from footprint.probes import FakeProbe

import footprint
from footprint import FootprintError
from footprint.common.fakeclock import FakeClock


def fake(clock: FakeClock | None = None, **powers: float) -> list[FakeProbe]:
    return [FakeProbe(powers_w={k.replace("_", ":"): v for k, v in powers.items()}, clock=clock)]


def test_context_manager_energy_is_power_times_duration(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    clock = FakeClock()
    with footprint.track("cm", db=str(tmp_path / "a.db"), probes=fake(clock, cpu_0=50.0, gpu_0=200.0, gpu_1=100.0),
                         interval=0.05, clock=clock) as run:
        clock.advance(0.4)
    rep = run.report()
    assert rep.ended_at - rep.started_at == pytest.approx(0.4, abs=1e-6)
    assert rep.status == "completed"
    assert rep.energy_j["cpu"] == pytest.approx(50.0 * 0.4, rel=1e-6)
    assert rep.energy_j["gpu"] == pytest.approx(300.0 * 0.4, rel=1e-6)
    assert rep.energy_j["ram"] is None
    assert run.energy_j == pytest.approx(350.0 * 0.4, rel=1e-6)
    assert run.kwh == pytest.approx(run.energy_j / 3.6e6)
    err = capsys.readouterr().err
    assert "run 1 'cm'" in err and "fake (measured)" in err


def test_a_fake_clock_tells_its_watchers_before_the_work_due_at_each_instant():
    """What a stand-in for hardware relies on: at each instant work runs, the watchers have already seen it."""
    clock = FakeClock()
    seen: list[tuple[str, float]] = []
    due = [0.5]

    def work() -> None:
        seen.append(("work", clock.monotonic()))
        due[0] += 0.5

    def moved() -> None:
        seen.append(("moved", clock.monotonic()))

    clock.attach(lambda: due[0], work)
    clock.watch(moved)
    clock.advance(1.2)
    assert seen == [("moved", 0.5), ("work", 0.5), ("moved", 1.0), ("work", 1.0), ("moved", 1.2)]
    clock.unwatch(moved)
    clock.advance(0.3)
    assert seen[-1] == ("work", 1.5)
    clock.advance(0)  # time that does not move tells nobody
    assert len(seen) == 6


def test_the_real_clock_and_thread_still_measure_power_times_duration(tmp_path: Path):
    with footprint.track("real", db=str(tmp_path / "r.db"), probes=fake(None, gpu_0=200.0), interval=0.05,
                         summary=False) as run:
        time.sleep(0.3)
    rep = run.report()
    assert rep.duration_s >= 0.3
    assert rep.energy_j["gpu"] == pytest.approx(200.0 * rep.duration_s, rel=1e-3)


def test_spans_nest_and_tokens_roll_up(tmp_path: Path):
    clock = FakeClock()
    with footprint.track("spans", db=str(tmp_path / "a.db"), probes=fake(clock, gpu_0=100.0), summary=False,
                         clock=clock) as run:
        with run.span("train"):
            for _ in range(3):
                with run.span("step", tokens=10):
                    clock.advance(0.05)
        with run.span("eval"):
            clock.advance(0.1)
            run.add_tokens(5)
    rep = run.report()
    spans = rep.spans
    assert [s.name for s in spans] == ["train", "step", "step", "step", "eval"]
    train = spans[0]
    steps = spans[1:4]
    assert all(s.parent == train.id for s in steps)
    assert train.tokens == 30 and spans[4].tokens == 5 and rep.tokens == 35
    # exact boundary reads: span energies are P x duration and the steps add up to train
    for s in steps:
        assert s.energy_j["gpu"] == pytest.approx(100.0 * 0.05, rel=1e-5)
    assert spans[4].energy_j["gpu"] == pytest.approx(100.0 * 0.1, rel=1e-5)
    assert sum(s.energy_j["gpu"] for s in steps) == pytest.approx(train.energy_j["gpu"], rel=1e-6)
    assert rep.j_per_token == pytest.approx(rep.energy_j["total"] / 35)
    assert spans[4].j_per_token == pytest.approx(spans[4].energy_j["total"] / 5)


def test_switch_span_shares_one_edge_between_phases(tmp_path: Path):
    clock = FakeClock()
    with footprint.track("phases", db=str(tmp_path / "s.db"), probes=fake(clock, gpu_0=100.0), summary=False,
                         clock=clock) as run:
        with run.span("generate"):
            first = run.begin_span("prefill")
            clock.advance(0.05)
            second = run.switch_span(first, "decode")
            run.add_tokens(7)  # lands in decode: it took prefill's place on the stack
            clock.advance(0.1)
            run.end_span(second)
    spans = {s.name: s for s in run.report().spans}
    assert spans["prefill"].ended_at == spans["decode"].started_at
    assert spans["prefill"].parent == spans["decode"].parent == spans["generate"].id
    assert spans["decode"].tokens == 7 and spans["prefill"].tokens is None  # none counted: no figure, not 0
    assert spans["prefill"].energy_j["gpu"] == pytest.approx(5.0, rel=1e-5)
    assert spans["decode"].energy_j["gpu"] == pytest.approx(10.0, rel=1e-5)


def test_decorator_makes_a_run_per_call(tmp_path: Path):
    db = str(tmp_path / "d.db")

    @footprint.track(db=db, probes=None, summary=False)
    def work(x: int) -> int:
        return x * 2

    assert work(2) == 4 and work(3) == 6
    with sqlite3.connect(db) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM runs ORDER BY id")]
    assert names == ["test_decorator_makes_a_run_per_call.<locals>.work"] * 2


def test_exception_marks_run_failed_and_propagates(tmp_path: Path):
    with pytest.raises(ZeroDivisionError), footprint.track("boom", db=str(tmp_path / "e.db"), probes=fake(),
                                                           summary=False) as run:
        1 / 0  # noqa: B018
    assert run.report().status == "failed"


def test_nested_track_in_process_becomes_a_span(tmp_path: Path):
    db = str(tmp_path / "n.db")
    with footprint.track("outer", db=db, probes=fake(), summary=False) as outer:
        with footprint.track("inner", db=db, summary=False) as inner:
            assert inner is outer
            inner.add_tokens(7)
    rep = outer.report()
    assert [s.name for s in rep.spans] == ["inner"] and rep.spans[0].tokens == 7
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1


def test_samples_reach_the_db_within_a_second(tmp_path: Path):
    db = str(tmp_path / "f.db")
    clock = FakeClock()

    def stored() -> int:
        with sqlite3.connect(db) as conn:  # another connection, as another process would read
            return int(conn.execute("SELECT COUNT(*) FROM samples").fetchone()[0])

    with footprint.track("flush", db=db, probes=fake(clock, cpu_0=10.0), interval=0.1, summary=False,
                         clock=clock):
        clock.advance(0.85)
        assert stored() == 0  # held in memory until the first flush
        clock.advance(0.2)
        # by 1.05 s the flush (riding on the read at 0.9 or 1.0 s, as rounding has it) holds the start and every
        # periodic read up to it
        assert stored() in (10, 11)


class Unpolled(FakeProbe):
    """Like the estimates: exact between any two reads, so read only at edges and flushes."""

    polled = False


def test_probes_that_need_no_polling_are_read_at_edges_and_flushes_only(tmp_path: Path):
    db = str(tmp_path / "p.db")
    clock = FakeClock()
    probes = [FakeProbe(powers_w={"gpu:0": 100.0}, clock=clock), Unpolled(powers_w={"cpu:0": 40.0}, clock=clock)]
    with footprint.track("mixed", db=db, probes=probes, interval=0.05, summary=False, clock=clock) as run:
        clock.advance(2.5)  # one flush falls inside (the first, at 1 s; the next is due at 3 s)
    with sqlite3.connect(db) as conn:
        counts = dict(conn.execute("SELECT d.kind, COUNT(*) FROM samples s JOIN devices d ON d.id = s.device_id "
                                   "GROUP BY d.kind").fetchall())
    assert counts["gpu"] == 2 + 50  # start, end and a read every 0.05 s
    assert counts["cpu"] == 3  # start, end and the flush
    rep = run.report()
    assert rep.energy_j["cpu"] == pytest.approx(40.0 * 2.5, rel=1e-6)
    assert rep.energy_j["gpu"] == pytest.approx(100.0 * 2.5, rel=1e-6)


def test_with_nothing_to_poll_the_sampler_wakes_only_to_flush(tmp_path: Path):
    clock = FakeClock()
    with footprint.track("quiet", db=str(tmp_path / "q.db"), probes=[Unpolled(powers_w={"cpu:0": 40.0}, clock=clock)],
                         interval=0.01, summary=False, clock=clock) as run:
        clock.advance(0.9)
        assert run.sampler is not None
        assert run.sampler.rounds == 1  # the start; no flush is due within 1 s
        clock.advance(0.2)
        assert run.sampler.rounds == 2  # the flush at 1 s
    assert run.report().energy_j["cpu"] == pytest.approx(40.0 * 1.1, rel=1e-6)


def test_interval_sets_the_sampling_rate(tmp_path: Path):
    db = str(tmp_path / "i.db")
    clock = FakeClock()
    with footprint.track("rate", db=db, probes=fake(clock, cpu_0=10.0), interval=0.05, summary=False, clock=clock):
        clock.advance(1.01)
    with sqlite3.connect(db) as conn:
        n = conn.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
    assert n == 20 + 2  # 20 periodic reads (0.05 ... 1.0 s), the start and the end


@pytest.mark.parametrize("bad", [0, -1, float("nan")])
def test_bad_interval_is_refused(tmp_path: Path, bad: float):
    with pytest.raises(FootprintError, match="interval must be a positive number"), \
            footprint.track("x", db=str(tmp_path / "b.db"), probes=fake(), interval=bad):
        pass


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True])
def test_bad_tokens_are_refused(tmp_path: Path, bad: object):
    with footprint.track("x", db=str(tmp_path / "t.db"), probes=fake(), summary=False) as run, \
            pytest.raises(FootprintError, match="tokens must be a non-negative integer"):
        run.add_tokens(bad)  # type: ignore[arg-type]


def test_spans_from_threads_keep_their_own_nesting(tmp_path: Path):
    with footprint.track("threads", db=str(tmp_path / "th.db"), probes=fake(), summary=False) as run:
        def worker(name: str) -> None:
            with run.span(name):
                with run.span(name + "-child"):
                    time.sleep(0.05)

        ts = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(3)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    spans = {s.name: s for s in run.report().spans}
    for i in range(3):
        assert spans[f"w{i}-child"].parent == spans[f"w{i}"].id


def test_short_window_is_flagged_unreliable(tmp_path: Path):
    from footprint.probes import FakeProbe as FP
    from footprint.probes.base import Device

    class SlowCounter(FP):
        def open(self):  # type: ignore[no-untyped-def]
            super().open()
            self.devices = [Device(kind="gpu", index=0, name="slow", source="fake", measured=True,
                                   update_period_s=1.0)]
            return self.devices

    with footprint.track("short", db=str(tmp_path / "s.db"), probes=[SlowCounter(powers_w={"gpu:0": 100.0})],
                         summary=False) as run:
        with run.span("tiny"):
            pass
    rep = run.report()
    assert any("shorter than a counter's update period" in w for w in rep.warnings)
    assert rep.spans[0].reliable is False


def test_wake_fd_is_used_only_when_it_is_the_inherited_pipe(tmp_path: Path):
    import os

    from footprint.run import inherited_wake_fd, wake_fd_token

    r, w = os.pipe()
    try:
        assert inherited_wake_fd(wake_fd_token(w)) == w
        with open(tmp_path / "unrelated.log", "w") as fh:  # a file that happens to hold some fd number
            assert inherited_wake_fd(f"{fh.fileno()}:{os.fstat(w).st_ino}") is None
        assert inherited_wake_fd(f"{w}:1") is None
        assert inherited_wake_fd("junk") is None and inherited_wake_fd(None) is None
    finally:
        os.close(r)
        os.close(w)


def test_a_user_probe_that_skips_probe_init_still_works(tmp_path: Path):
    from footprint.probes import Device, Probe, Reading

    class Minimal(Probe):  # no super().__init__(): no `errors` dict of its own
        def __init__(self) -> None:
            self.devices = [Device("gpu", 0, "mine", "custom", True)]
            self.t0 = time.monotonic()

        def read(self) -> list[Reading]:
            t = footprint.common.clock.now()
            return [Reading(self.devices[0], t, 30.0 * (time.monotonic() - self.t0), 30.0)]

    with footprint.track("mine", db=str(tmp_path / "m.db"), probes=[Minimal()], interval=0.05,
                         summary=False) as run:
        time.sleep(0.3)
    rep = run.report()
    assert rep.energy_j["gpu"] == pytest.approx(30.0 * rep.duration_s, rel=0.05)
    assert not [w for w in rep.warnings if "probe-error" in w]
