"""Nothing lost, nothing confusing: signals, crashes, concurrency, failing probes, long runs, bad input."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from footprint.probes import FakeProbe

from footprint.core.sampler import Sampler
from footprint.core.store import Store
from tests.conftest import footprint_cmd, nvml_env, report_json, run_cli
from tests.fakes.powercap import PowercapTree
from tests.fakes.profile import gpu_energy_between

PY = sys.executable
SLEEPER = "import sys, time; print('ready', flush=True); time.sleep(60)"


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(footprint_cmd() + args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"
    return proc


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_signal_is_forwarded_and_run_finalised_interrupted(sig: signal.Signals, powercap: PowercapTree,
                                                          clean_env: dict[str, str]):
    env = dict(clean_env, FOOTPRINT_POWERCAP=str(powercap.root))
    proc = start(["run", "--interval", "0.1", "--", PY, "-c", SLEEPER], env)
    time.sleep(1.0)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + sig, err.decode()
    run = report_json(env)["runs"][0]
    assert run["status"] == "interrupted" and run["exit_code"] == 128 + sig
    dur = run["ended_at"] - run["started_at"]
    assert dur >= 1.0
    assert run["energy_j"]["cpu"] == pytest.approx(70.0 * dur, rel=0.01)  # everything sampled is kept


def test_profiler_killed_leaves_intact_db_and_incomplete_run(powercap: PowercapTree, clean_env: dict[str, str]):
    import psutil

    env = dict(clean_env, FOOTPRINT_POWERCAP=str(powercap.root))
    proc = start(["run", "--interval", "0.1", "--", PY, "-c", SLEEPER], env)
    child = psutil.Process(proc.pid).children()[0]
    time.sleep(3.0)
    killed_at = time.time()
    proc.kill()
    proc.wait()
    child.kill()
    with sqlite3.connect(env["FOOTPRINT_DB"]) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    run = report_json(env)["runs"][0]
    assert run["status"] == "incomplete"
    assert run["ended_at"] >= killed_at - 2.0  # samples up to the last flush (1 s old, plus load) are kept
    dur = run["ended_at"] - run["started_at"]
    assert run["energy_j"]["cpu"] == pytest.approx(70.0 * dur, rel=0.01)
    res = run_cli(["report"], env)
    assert "incomplete" in res.stdout.decode() and "crash or kill" in res.stdout.decode()


def test_profiler_killed_early_keeps_its_first_second(powercap: PowercapTree, clean_env: dict[str, str]):
    # samples are flushed every second: a SIGKILL between 1 s and 2 s into a run used to lose all of them
    import psutil

    env = dict(clean_env, FOOTPRINT_POWERCAP=str(powercap.root))
    proc = start(["run", "--interval", "0.1", "--", PY, "-c", SLEEPER], env)
    child = psutil.Process(proc.pid).children()[0]
    with sqlite3.connect(env["FOOTPRINT_DB"]) as conn:
        started_at = conn.execute("SELECT started_at FROM runs").fetchone()[0]
    time.sleep(max(0.0, started_at + 1.4 - time.time()))
    proc.kill()
    proc.wait()
    child.kill()
    run = report_json(env)["runs"][0]
    assert run["status"] == "incomplete"
    assert run["ended_at"] - run["started_at"] >= 0.8  # the flush due at 1 s is in the DB
    assert run["energy_j"]["cpu"] == pytest.approx(70.0 * (run["ended_at"] - run["started_at"]), rel=0.01)


@pytest.mark.parametrize("n", [8, 16])
def test_concurrent_writers_on_a_new_file(clean_env: dict[str, str], n: int):
    procs = [subprocess.Popen(footprint_cmd() + ["run", "--no-summary", "--interval", "0.05", "--name", f"w{i}",
                                                 "--", PY, "-c", "import time; time.sleep(1.5)"],
                              env=clean_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(n)]
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err.decode()
        assert b"locked" not in err
    runs = report_json(clean_env, *[str(i) for i in range(1, n + 1)])["runs"]
    assert sorted(r["name"] for r in runs) == sorted(f"w{i}" for i in range(n))
    assert all(r["status"] == "completed" and r["energy_j"]["total"] is not None for r in runs)


def test_gpu_lost_mid_run_keeps_the_rest(nvml_lib_dir: Path, clean_env: dict[str, str], tmp_path: Path):
    env = nvml_env(clean_env, nvml_lib_dir, gpus=2, power="100,200")
    t0 = float(env["FAKE_NVML_T0"])
    # GPU 1 falls off once the run has read it for a while, at an instant chosen then: an instant fixed before
    # the launch (1 s on) once passed before a loaded machine had footprint reading at all (0 J counted). The
    # child then runs 1.5 s on, longer than the 1 s gap the report warns about
    trigger = tmp_path / "lost-at"
    env["FAKE_NVML_LOST"] = f"1,@{trigger}"
    child = (f"import os, time\nwhile not os.path.exists({str(trigger)!r}):\n    time.sleep(0.05)\n"
             f"time.sleep(max(0.0, float(open({str(trigger)!r}).read()) + {t0!r} + 1.5 - time.time()))")
    proc = start(["run", "--interval", "0.1", "--", PY, "-c", "print('ready', flush=True)\n" + child], env)
    deadline = time.monotonic() + 60
    while True:  # the first flush holds about a second of GPU 1's reads
        with sqlite3.connect(env["FOOTPRINT_DB"]) as conn:
            span = conn.execute("SELECT MAX(t) - MIN(t) FROM samples JOIN devices ON devices.id = device_id "
                                "WHERE kind = 'gpu' AND idx = 1").fetchone()[0]
        if span is not None and span >= 0.8:
            break
        assert time.monotonic() < deadline, "no GPU 1 samples flushed"
        time.sleep(0.05)
    lost_at = time.time() + 0.2
    (tmp_path / "lost-at.tmp").write_text(f"{lost_at - t0:.6f}\n")
    os.replace(tmp_path / "lost-at.tmp", trigger)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    assert "GPU is lost" in err.decode()
    run = report_json(env)["runs"][0]
    assert run["status"] == "completed"
    gpus = {d["index"]: d for d in run["devices"] if d["kind"] == "gpu"}
    a, b = run["started_at"], run["ended_at"]
    assert gpus[0]["energy_j"] == pytest.approx(gpu_energy_between(a, b, t0, 100.0), rel=0.01)
    # GPU 1 counted up to its last good read, just before it fell off, and the gap is shown
    last = gpus[1]["last_read_at"]
    assert lost_at - 0.3 < last < lost_at
    assert gpus[1]["energy_j"] == pytest.approx(gpu_energy_between(a, last, t0, 200.0), rel=0.01)
    assert any(w.startswith("gpu:1: no reading after") for w in run["warnings"])
    assert any(e["kind"] == "device-error" and e["device"] == "gpu:1" for e in run["events"])
    assert any("GPU is lost" in w for w in run["warnings"])


def test_rapl_counter_vanishing_mid_run_is_recorded(powercap: PowercapTree, clean_env: dict[str, str]):
    env = dict(clean_env, FOOTPRINT_POWERCAP=str(powercap.root))
    proc = start(["run", "--interval", "0.1", "--", PY, "-c",
                  "import time; print('ready', flush=True); time.sleep(2)"], env)
    time.sleep(0.8)
    powercap.remove_counter("intel-rapl:1:1")  # the second socket's dram zone
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()
    run = report_json(env)["runs"][0]
    dur = run["ended_at"] - run["started_at"]
    assert run["energy_j"]["cpu"] == pytest.approx(70.0 * dur, rel=0.01)  # the packages carried on
    assert any("intel-rapl:1:1" in e["message"] for e in run["events"])


def test_compaction_keeps_totals_and_bounds_size(tmp_path: Path):
    """A simulated 24-hour run at the default 0.5 s interval, 3 devices, compacted as the sampler does."""
    db = tmp_path / "day.db"
    store = Store(db)
    rid = store.create_run("day", created_at=0.0, host="h", pid=1)
    from footprint.probes.base import Device

    devs = [Device(kind, 0, kind, "fake", True) for kind in ("gpu", "cpu", "ram")]
    ids = store.add_devices(rid, devs, "h")
    power = {"gpu:0": 300.0, "cpu:0": 90.0, "ram:0": 10.0}
    t_start = 1_000_000.0
    store.set_started(rid, t_start)
    hour = 3600.0
    for h in range(24):
        rows = []
        for k in range(7200):
            t = t_start + h * hour + k * 0.5
            mark = int(h == 0 and k == 0)
            rows.extend((ids[key], t, p * (t - t_start), p, mark) for key, p in power.items())
        store.write_batch(rid, rows, [], t)
        # as Sampler._maybe_compact: everything older than an hour, in whole 10 s buckets
        if h >= 1:
            store.compact(rid, since=t_start + (h - 1) * hour, until=t_start + h * hour, bucket_s=10.0)
    t_end = t_start + 24 * hour - 0.5
    store.write_batch(rid, [(ids[key], t_end, p * (t_end - t_start), p, 1) for key, p in power.items()], [], t_end)
    store.finish_run(rid, status="completed", exit_code=0, ended_at=t_end)
    n = store.query("SELECT COUNT(*) FROM samples")[0][0]
    assert n < 3 * (7200 + 23 * 360 + 10)  # the last hour full, the rest one sample per 10 s
    from footprint.core.model import load_run

    rep = load_run(store, rid)
    for d in rep.devices:
        assert d.energy_j == pytest.approx(power[f"{d.kind}:{d.index}"] * (t_end - t_start), rel=1e-9)
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = db.stat().st_size
    assert size < 4 * 1024 * 1024, size  # docs/reliability.md states: under 4 MB per day for 3 devices


def test_sampler_compacts_old_samples_during_a_run(tmp_path: Path):
    store = Store(tmp_path / "c.db")
    rid = store.create_run("c", created_at=time.time(), host="h", pid=os.getpid())
    probe = FakeProbe(powers_w={"gpu:0": 100.0})
    ids = store.add_devices(rid, probe.open(), "h")
    sampler = Sampler(store, rid, [probe], ids, interval_s=0.02, flush_every_s=0.1, keep_full_s=0.5,
                      compact_bucket_s=0.25, compact_every_s=0.25)
    start = sampler.mark()
    store.set_started(rid, start)
    sampler.start()
    time.sleep(2.5)
    end = sampler.mark()
    sampler.stop()
    rows = store.query("SELECT t, energy_j, mark FROM samples ORDER BY t")
    old = [r for r in rows if r["t"] < end - 1.0 and not r["mark"]]
    assert old and len(old) < (end - 1.0 - start) / 0.02 / 3  # thinned from 50/s to about 4/s
    first, last = rows[0], rows[-1]
    assert last["energy_j"] - first["energy_j"] == pytest.approx(100.0 * (end - start), rel=1e-6)


def test_clock_jump_does_not_create_energy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from footprint.probes import CpuEstimateProbe, RamEstimateProbe

    import footprint

    real_time = time.time
    with footprint.track("jump", db=str(tmp_path / "j.db"), probes=[CpuEstimateProbe(), RamEstimateProbe()],
                         interval=0.05, summary=False) as run:
        time.sleep(0.3)
        monkeypatch.setattr(time, "time", lambda: real_time() + 3600)  # the wall clock leaps forward
        time.sleep(0.3)
        monkeypatch.setattr(time, "time", lambda: real_time() - 7200)  # then far back
        time.sleep(0.3)
    monkeypatch.setattr(time, "time", real_time)
    rep = run.report()
    assert 0.9 <= rep.duration_s < 2.0
    ram_w = rep.devices[[d.kind for d in rep.devices].index("ram")].mean_power_w
    assert rep.energy_j["ram"] == pytest.approx(ram_w * rep.duration_s, rel=0.01)
    assert 0 < rep.energy_j["cpu"] < 85 * 2 * rep.duration_s


@pytest.mark.parametrize("args, message", [
    (["run", "--interval", "-1", "--", "true"], "--interval: expected a positive number, got '-1'"),
    (["run", "--interval", "abc", "--", "true"], "--interval: expected a number, got 'abc'"),
    (["run", "--tokens", "-5", "--", "true"], "--tokens: expected a whole number >= 0, got '-5'"),
    (["run", "--tokens", "many", "--", "true"], "--tokens: expected a whole number, got 'many'"),
    (["run", "--carbon-intensity", "-3", "--", "true"], "expected a number >= 0"),
    (["run", "--country", "FRNA", "--", "true"], "unknown country code 'FRNA'"),
    (["run", "--db", "/proc/footprint.db", "--", "true"], "cannot create database /proc/footprint.db"),
    (["run"], "needs a command"),
    (["report", "999"], "no run with id 999"),
    (["report", "--json", "--format", "csv"], "--json and --format csv ask for two formats"),
    (["compare", "1", "--quality", "9=1"], "--quality names run 9, which is not compared"),
    (["compare", "1", "--quality", "1=0.5", "--quality", "1=0.7"], "--quality gives run 1 twice"),
    (["report", "--db", "/nonexistent/fp.db"], "no database at /nonexistent/fp.db"),
])
def test_bad_input_is_one_line_and_non_zero(args: list[str], message: str, clean_env: dict[str, str]):
    assert run_cli(["run", "--no-summary", "--", PY, "-c", "pass"], clean_env).returncode == 0  # a DB exists
    res = run_cli(args, clean_env)
    err = res.stderr.decode()
    assert res.returncode == 2, err
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert res.stdout == b""


def test_unknown_country_suggests_close_matches(clean_env: dict[str, str]):
    res = run_cli(["run", "--country", "FRNA", "--", "true"], clean_env)
    assert "did you mean" in res.stderr.decode() and "FRA" in res.stderr.decode()


def test_help_states_each_note_once(clean_env: dict[str, str]):
    for command in ([], ["run"], ["report"], ["compare"]):
        out = run_cli([*command, "--help"], clean_env).stdout.decode()
        assert out.count("Data goes to ./footprint.db") == 1
        assert out.count("overrides what the run recorded") <= 1


def test_not_a_sqlite_file(tmp_path: Path, clean_env: dict[str, str]):
    bad = tmp_path / "notes.db"
    bad.write_text("these are my notes, not a database\n" * 100)
    res = run_cli(["report", "--db", str(bad)], clean_env)
    assert res.returncode == 2
    expected = f"footprint: error: {bad} is not a footprint database (not SQLite, or damaged)"
    assert res.stderr.decode().strip() == expected
    assert bad.read_text().startswith("these are my notes")  # untouched


def test_other_sqlite_db_and_newer_schema(tmp_path: Path, clean_env: dict[str, str]):
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    res = run_cli(["runs", "--db", str(other)], clean_env)
    assert res.returncode == 2 and "not a footprint one" in res.stderr.decode()
    newer = tmp_path / "newer.db"
    with sqlite3.connect(newer) as conn:
        conn.execute("PRAGMA user_version = 99")
    res = run_cli(["report", "--db", str(newer)], clean_env)
    assert res.returncode == 2 and "newer footprint (schema 99" in res.stderr.decode()


def test_unwritable_output_path(clean_env: dict[str, str]):
    assert run_cli(["run", "--no-summary", "--", PY, "-c", "pass"], clean_env).returncode == 0
    res = run_cli(["report", "-o", "/nonexistent/dir/out.json"], clean_env)
    assert res.returncode == 2
    assert res.stderr.decode().strip().startswith("footprint: error: cannot write /nonexistent/dir/out.json")


SITECUSTOMIZE = """
import sys
def _hook(event, args):
    if event in ("socket.connect", "socket.getaddrinfo", "socket.bind", "socket.sendto", "socket.sendmsg"):
        with open(__import__("os").environ["NET_AUDIT_LOG"], "a") as fh:
            fh.write(f"{event} {args!r}\\n")
sys.addaudithook(_hook)
"""


def test_no_network_use(tmp_path: Path, nvml_lib_dir: Path, powercap: PowercapTree, clean_env: dict[str, str]):
    hook_dir = tmp_path / "hook"
    hook_dir.mkdir()
    (hook_dir / "sitecustomize.py").write_text(SITECUSTOMIZE)
    log = tmp_path / "net.log"
    env = nvml_env(clean_env, nvml_lib_dir, gpus=1)
    env.update(FOOTPRINT_POWERCAP=str(powercap.root), NET_AUDIT_LOG=str(log),
               PYTHONPATH=f"{hook_dir}:{env['PYTHONPATH']}")
    for args in (["run", "--country", "DEU", "--", "true"], ["report", "--json"], ["runs"], ["probes"]):
        res = run_cli(args, env)
        assert res.returncode == 0, res.stderr.decode()
    assert not log.exists() or log.read_text() == ""


def _can_unshare() -> bool:
    return os.geteuid() == 0 and subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0


DISK_FILLER = """
import os, time
print('ready', flush=True)
time.sleep(0.5)
fd = os.open('/mnt/fp/filler', os.O_WRONLY | os.O_CREAT)
try:
    while True:
        os.write(fd, b'x' * 4096)
except OSError:
    os.close(fd)
time.sleep(3)           # footprint's flushes fail here: the disk is full
os.remove('/mnt/fp/filler')
time.sleep(2)           # and succeed again here
"""


@pytest.mark.skipif(not _can_unshare(), reason="needs root and unshare -m for a small tmpfs")
def test_disk_full_loses_no_samples(tmp_path: Path, clean_env: dict[str, str], nvml_lib_dir: Path):
    # a GPU (the stand-in NVML) is read every 0.05 s; the CPU estimate needs no polling and is read at
    # flushes, the very writes that fail here
    mnt = Path("/mnt/fp")
    script = tmp_path / "filler.py"
    script.write_text(DISK_FILLER)
    cmd = " ".join(footprint_cmd())
    shell = (f"mkdir -p {mnt} && mount -t tmpfs -o size=2m tmpfs {mnt} && "
             f"{cmd} run --no-summary --db {mnt}/fp.db --interval 0.05 -- {PY} {script} && "
             f"cp {mnt}/fp.db {tmp_path}/fp.db && {cmd} report --json --db {mnt}/fp.db")
    env = nvml_env(clean_env, nvml_lib_dir)
    res = subprocess.run(["unshare", "-m", "sh", "-c", shell], env=env, capture_output=True, timeout=120)
    if res.returncode != 0 and b"mount" in res.stderr:
        pytest.skip(f"tmpfs mount refused: {res.stderr.decode().strip()}")
    assert res.returncode == 0, res.stderr.decode()
    run = json.loads(res.stdout.decode().split("ready\n", 1)[-1])["runs"][0]
    assert run["status"] == "completed"
    retries = [e for e in run["events"] if e["kind"] == "store-retry"]
    assert len(retries) == 1 and "disk is full" in retries[0]["message"]
    with sqlite3.connect(tmp_path / "fp.db") as conn:
        def times(kind: str) -> list[float]:
            return [r[0] for r in conn.execute("SELECT t FROM samples s JOIN devices d ON d.id = s.device_id "
                                               "WHERE d.kind = ? ORDER BY t", (kind,))]
        gpu, cpu = times("gpu"), times("cpu")
    gaps = [b - a for a, b in zip(gpu, gpu[1:], strict=False)]
    assert len(gpu) > 100 and max(gaps) < 0.5  # no hole where the disk was full: held and written later
    cpu_gaps = [b - a for a, b in zip(cpu, cpu[1:], strict=False)]
    assert len(cpu) >= 4 and max(cpu_gaps) < 2.5  # its flush-time reads were kept too
    assert run["energy_j"]["cpu"] is not None and run["energy_j"]["gpu"] is not None
