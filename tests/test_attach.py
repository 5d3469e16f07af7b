"""Processes and threads that join a run someone else owns: code inside `footprint run`, threads, spawn
workers and forked children. Energies are checked against the stand-in RAPL tree, whose counters are the
exact integral of known power (package and dram zones: 80 W in all)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, report_json, run_cli
from tests.fakes.powercap import PowercapTree

PY = sys.executable
WATTS = 80.0  # standard_zones(): package-0 40 + dram 6 + package-1 30 + dram 4 (psys and subzones not counted)
# The stand-in tree's thread advances its counters every 2 ms, and later when the machine is busy: a read can
# lag the truth by that much at each edge. 2.5 % of a 0.6 s span is 15 ms of lag; the errors these tests
# guard against are whole flush periods (0 J, or a span cut short by hundreds of ms).
REL = 0.025

SPAN_THEN_READ = """
import json, time, footprint
with footprint.track("gen") as run:
    for i in range(4):
        with run.span(f"work-{i}"):
            time.sleep(0.6)
        rep = run.report()
        work = [s for s in rep.spans if s.name == f"work-{i}"][0]
        print(json.dumps({"id": work.id, "energy": work.energy_j["total"], "duration": work.duration_s,
                          "j_per_token": rep.j_per_token}), flush=True)
"""


def _span(run: dict, span_id: int) -> dict:
    return next(s for s in run["spans"] if s["id"] == span_id)


def test_spans_read_inside_footprint_run_right_after_they_end_are_exact(powercap: PowercapTree,
                                                                        clean_env: dict[str, str]):
    env = dict(clean_env, FOOTPRINT_POWERCAP=str(powercap.root))
    # the default interval (0.5 s) and flush (1 s): a span's end often lies after the last flushed sample
    res = run_cli(["run", "--no-summary", "--", PY, "-c", SPAN_THEN_READ], env)
    assert res.returncode == 0, res.stderr.decode()
    run = report_json(env)["runs"][0]
    for line in res.stdout.decode().splitlines():
        seen = json.loads(line)
        assert seen["duration"] == pytest.approx(0.6, abs=0.2)
        assert seen["energy"] == pytest.approx(WATTS * seen["duration"], rel=REL)
        later = _span(run, seen["id"])
        assert later["duration_s"] == seen["duration"]
        assert later["energy_j"]["total"] == pytest.approx(seen["energy"], abs=1e-9)  # what the DB holds later


def test_the_owner_reads_its_span_right_after_it_ends_exactly(tmp_path: Path):
    from footprint.probes import FakeProbe

    import footprint
    from footprint.common.fakeclock import FakeClock

    clock = FakeClock()
    probe = FakeProbe({"cpu:0": 50.0}, clock=clock)
    with footprint.track("own", db=str(tmp_path / "o.db"), probes=[probe], clock=clock, summary=False) as run:
        clock.advance(0.3)  # a flush at 1 s; the span's end read is only in the sampler's buffer
        with run.span("work"):
            clock.advance(0.4)
        work = next(s for s in run.report().spans if s.name == "work")
        assert work.energy_j["total"] == pytest.approx(50.0 * 0.4, abs=1e-5)  # epoch-sized floats


# -- after a run ends ---------------------------------------------------------------------------------


def _fake_track(tmp_path: Path, clock: object, name: str = "r") -> object:
    from footprint.probes import FakeProbe

    import footprint

    return footprint.track(name, db=str(tmp_path / "a.db"), probes=[FakeProbe({"cpu:0": 50.0}, clock=clock)],
                           clock=clock, summary=False)


def test_spans_and_tokens_after_the_run_ended_are_refused_and_its_report_is_final(tmp_path: Path):
    from footprint import FootprintError
    from footprint.common.fakeclock import FakeClock

    clock = FakeClock()
    with _fake_track(tmp_path, clock) as run:
        clock.advance(1.0)
        during = run.report()
        open_id = run.begin_span("left-open")
    assert run.report() is not during and run.report().status == "completed"  # not the one taken while it ran
    assert run.energy_j == pytest.approx(50.0, abs=1e-5)
    for use in (lambda: run.add_tokens(5), lambda: run.begin_span("late"), lambda: run.end_span(open_id),
                lambda: run.span("late").__enter__()):
        with pytest.raises(FootprintError, match=r"run \d+ \('r'\) has ended"):
            use()
    assert run.report().tokens is None


@pytest.mark.parametrize("status", ["completed", "incomplete"])
def test_a_leftover_run_id_of_an_ended_run_starts_a_fresh_run(status: str, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]):
    import os
    import subprocess

    from footprint.common.fakeclock import FakeClock
    from footprint.core.store import Store

    db = str(tmp_path / "a.db")
    with Store(db) as store:
        dead = subprocess.Popen([PY, "-c", "pass"])
        dead.wait()
        old = store.create_run("old", created_at=1.0, host=os.uname().nodename, pid=dead.pid)
        if status == "completed":
            store.finish_run(old, status="completed", exit_code=0, ended_at=2.0)
    monkeypatch.setenv("FOOTPRINT_RUN_ID", str(old))
    monkeypatch.setenv("FOOTPRINT_DB", db)
    clock = FakeClock()
    with _fake_track(tmp_path, clock, "new") as run:
        clock.advance(1.0)
    assert run.id != old and not run.attached
    assert run.energy_j == pytest.approx(50.0, abs=1e-5)
    err = capsys.readouterr().err
    assert err == (f"footprint: FOOTPRINT_RUN_ID={old} names a run that has ended ({status}) in {db}; "
                   "starting a new run\n")


# -- one timeline for every process of a run ------------------------------------------------------------

SKEWED_CHILD = """
import json, time, footprint
from footprint.common.clock import SYSTEM
with footprint.track("gen") as run:
    skew = SYSTEM.now() - run.clock.now()  # this process's wall clock against the owner's timeline
    with run.span("work"):
        time.sleep(0.6)
    rep = run.report()
    work = [s for s in rep.spans if s.name == "work"][0]
    print(json.dumps({"id": work.id, "energy": work.energy_j["total"], "duration": work.duration_s,
                      "skew": skew, "status": rep.status, "warnings": rep.warnings}), flush=True)
"""


def test_a_child_whose_wall_clock_differs_puts_its_spans_on_the_owners_timeline(
        powercap: PowercapTree, clean_env: dict[str, str], tmp_path: Path):
    skewed = tmp_path / "skewed"
    skewed.mkdir()
    # the child's wall clock runs 600 s ahead of footprint's, as in a container with a clock of its own
    (skewed / "sitecustomize.py").write_text("import time\n_real = time.time\ntime.time = lambda: _real() + 600.0\n")
    env = dict(clean_env, FOOTPRINT_POWERCAP=str(powercap.root))
    res = run_cli(["run", "--no-summary", "--", "env", f"PYTHONPATH={skewed}:{ROOT}", PY, "-c", SKEWED_CHILD], env)
    assert res.returncode == 0, res.stderr.decode()
    assert res.stderr == b""  # no fresh run, no warning
    seen = json.loads(res.stdout)
    assert seen["skew"] == pytest.approx(600.0, abs=0.5)
    assert seen["status"] == "running" and seen["warnings"] == []  # a live run is not called dead
    assert seen["energy"] == pytest.approx(WATTS * seen["duration"], rel=REL)
    data = report_json(env)
    assert len(data["runs"]) == 1
    later = _span(data["runs"][0], seen["id"])
    assert later["energy_j"]["total"] == pytest.approx(seen["energy"], abs=1e-9)
    assert data["runs"][0]["warnings"] == []


def test_a_span_wholly_outside_the_runs_readings_is_unknown_and_flagged_not_0_j(tmp_path: Path):
    from footprint.reports import render

    from footprint.common.fakeclock import FakeClock
    from footprint.core.model import load_run

    clock = FakeClock()
    with _fake_track(tmp_path, clock) as run:
        with run.span("inside"):
            clock.advance(1.0)
        # a span stamped by a process whose clock is 600 s ahead (one that could not share the owner's)
        late = run.store.start_span(run.id, "elsewhere", None, clock.now() + 600.0)
        run.store.end_span(late, clock.now() + 601.0)
    rep = load_run(run.store, run.id)
    spans = {s.name: s for s in rep.spans}
    assert spans["inside"].energy_j["total"] == pytest.approx(50.0, abs=1e-5)
    assert spans["elsewhere"].energy_j["total"] is None and not spans["elsewhere"].reliable
    assert spans["elsewhere"].j_per_token is None
    assert [w for w in rep.warnings if "elsewhere" in w] == \
        ["span 'elsewhere' lies wholly outside the run's readings (+600.0 s after the last): its energy is "
            "unknown, not 0 (recorded by a process whose clock differs from the owner's?)"]
    line = next(x for x in render(rep, "console").splitlines() if "elsewhere" in x and "outside" not in x)
    assert "unknown" in line and " 0.00 J" not in line


# -- threads, spawn workers and forked children join the run ----------------------------------------------

FAMILY = """
import json, multiprocessing, os, sys, threading, time
import footprint


def worker(tag):
    with footprint.track(tag, summary=False) as run:  # joins the run of the process that started this one
        time.sleep(0.5)
        run.add_tokens(10)


def generate():  # what model.generate does in its thread beside a streamer: no track() of its own
    footprint.current_run().add_tokens(7)


if __name__ == "__main__":
    out = {}
    with footprint.track("main", summary=False) as run:
        with run.span("generate"):
            t = threading.Thread(target=generate)
            t.start()
            t.join()
        t = threading.Thread(target=worker, args=("thread",))
        t.start()
        t.join()
        p = multiprocessing.get_context("spawn").Process(target=worker, args=("spawned",))
        p.start()
        p.join()
        out["spawn_exit"] = p.exitcode
        # fork while another thread holds the DB connection's lock (as the sampler does while it flushes)
        held, done = threading.Event(), threading.Event()

        def hold():
            with run.store.lock:
                held.set()
                done.wait(5)

        threading.Thread(target=hold).start()
        held.wait()
        pid = os.fork()
        if pid == 0:
            worker("forked")
            os._exit(0)
        done.set()
        _, status = os.waitpid(pid, 0)
        out["fork_exit"] = os.waitstatus_to_exitcode(status)
        out["id"] = run.id
        out["env_during"] = os.environ.get("FOOTPRINT_RUN_ID")
    out["env_after"] = os.environ.get("FOOTPRINT_RUN_ID")
    print(json.dumps(out))
"""


def test_threads_spawn_workers_and_forked_children_join_the_run(powercap: PowercapTree,
                                                                clean_env: dict[str, str], tmp_path: Path):
    import subprocess

    script = tmp_path / "family.py"
    script.write_text(FAMILY)
    env = dict(clean_env, FOOTPRINT_POWERCAP=str(powercap.root))
    res = subprocess.run([PY, str(script)], env=env, capture_output=True, timeout=60, cwd=tmp_path)
    assert res.returncode == 0, res.stderr.decode()
    out = json.loads(res.stdout)
    assert out["spawn_exit"] == 0 and out["fork_exit"] == 0
    assert out["env_during"] == str(out["id"]) and out["env_after"] is None  # set only while the run is active
    data = report_json(env)
    assert [r["id"] for r in data["runs"]] == [out["id"]]  # one run: nobody counted the machine again
    run = data["runs"][0]
    spans = {s["name"]: s for s in run["spans"]}
    assert set(spans) == {"generate", "thread", "spawned", "forked"}
    assert spans["generate"]["tokens"] == 7  # the generation thread's tokens go in the span its starter opened
    assert run["tokens"] == 7 + 3 * 10
    for name in ("thread", "spawned", "forked"):
        sp = spans[name]
        assert sp["tokens"] == 10
        assert sp["duration_s"] == pytest.approx(0.5, abs=0.3)
        assert sp["energy_j"]["total"] == pytest.approx(WATTS * sp["duration_s"], rel=REL), name
    assert run["warnings"] == []
