"""The DB file: concurrent creation, path safety (symlinks, devices, modes), read-only readers, one-line errors."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from footprint.core.store import Store
from tests.conftest import footprint_cmd, report_json, run_cli
from tests.fakes.powercap import PowercapTree

PY = sys.executable


def _open_and_write(path: str, i: int, barrier: multiprocessing.synchronize.Barrier) -> str:
    barrier.wait()
    try:
        store = Store(path)
        store.create_run(f"w{i}", created_at=time.time(), host="h", pid=os.getpid())
        store.close()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return ""


def test_sixteen_processes_create_one_new_db_at_once(tmp_path: Path):
    """16 processes open the same new file at the same instant (a barrier), 4 times over: setting up WAL and
    the schema answers SQLITE_BUSY without the busy handler, which must be retried, not reported."""
    ctx = multiprocessing.get_context("fork")
    for trial in range(4):
        path = str(tmp_path / f"new{trial}.db")
        with ctx.Manager() as manager:
            barrier = manager.Barrier(16)
            with ctx.Pool(16) as pool:
                errors = [e for e in pool.starmap(_open_and_write, [(path, i, barrier) for i in range(16)]) if e]
        assert errors == []
        with sqlite3.connect(path) as conn:
            names = sorted(r[0] for r in conn.execute("SELECT name FROM runs"))
        assert names == sorted(f"w{i}" for i in range(16))


# -- path safety (writers) ------------------------------------------------------------------------------------

NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make files another user owns")
needs_setpriv = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                                   reason="needs root and setpriv to run footprint as another user")
MARK_CHILD = "import sys; open(sys.argv[1], 'w').close()"


def _shared_folder(tmp_path: Path) -> Path:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp
    return shared


def _run_refused(db: Path, env: dict[str, str], tmp_path: Path, message: str) -> None:
    marker = tmp_path / "child-ran"
    res = run_cli(["run", "--no-summary", "--db", str(db), "--", PY, "-c", MARK_CHILD, str(marker)], env)
    err = res.stderr.decode()
    assert res.returncode == 2, err
    assert message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not marker.exists()  # refused before the child started


@needs_root
def test_other_users_symlink_in_a_shared_folder_is_not_followed(tmp_path: Path, clean_env: dict[str, str]):
    victim = tmp_path / "victim"
    victim.write_bytes(b"")
    victim.chmod(0o644)
    shared = _shared_folder(tmp_path)
    link = shared / "footprint.db"
    link.symlink_to(victim)
    os.lchown(link, NOBODY, NOBODY)
    _run_refused(link, clean_env, tmp_path, f"refusing to follow symlink {link}: it belongs to another user")
    assert victim.read_bytes() == b"" and victim.stat().st_mode & 0o777 == 0o644  # untouched
    assert not Path(f"{victim}-wal").exists() and not Path(f"{victim}-journal").exists()
    res = run_cli(["report", "--db", str(link)], clean_env)  # readers do not follow it either
    assert res.returncode == 2 and "refusing to follow symlink" in res.stderr.decode()


@needs_root
def test_other_users_dangling_symlink_creates_nothing(tmp_path: Path, clean_env: dict[str, str]):
    target = tmp_path / "made-by-footprint.db"
    shared = _shared_folder(tmp_path)
    link = shared / "footprint.db"
    link.symlink_to(target)
    os.lchown(link, NOBODY, NOBODY)
    _run_refused(link, clean_env, tmp_path, "refusing to follow symlink")
    assert not target.exists()


def test_own_symlink_is_followed_and_a_dangling_one_makes_a_private_db(tmp_path: Path, clean_env: dict[str, str]):
    target = tmp_path / "data" / "fp.db"
    target.parent.mkdir()
    shared = _shared_folder(tmp_path)
    link = shared / "footprint.db"
    link.symlink_to(target)  # ours: followed, as the kernel would
    res = run_cli(["run", "--no-summary", "--db", str(link), "--", PY, "-c", "pass"], clean_env)
    assert res.returncode == 0, res.stderr.decode()
    assert target.stat().st_mode & 0o777 == 0o600
    assert link.is_symlink()
    env = dict(clean_env, FOOTPRINT_DB=str(link))
    assert report_json(env)["runs"][0]["status"] == "completed"


@needs_root
def test_other_users_file_in_a_shared_folder_is_not_written(tmp_path: Path, clean_env: dict[str, str]):
    shared = _shared_folder(tmp_path)
    planted = shared / "footprint.db"
    planted.write_bytes(b"")
    planted.chmod(0o666)
    os.chown(planted, NOBODY, NOBODY)
    _run_refused(planted, clean_env, tmp_path, "belongs to another user")
    assert planted.read_bytes() == b""


def test_empty_existing_db_is_made_private_before_writing(tmp_path: Path, clean_env: dict[str, str]):
    db = tmp_path / "empty.db"
    db.write_bytes(b"")
    db.chmod(0o644)
    res = run_cli(["run", "--no-summary", "--db", str(db), "--", PY, "-c", "pass"], clean_env)
    assert res.returncode == 0, res.stderr.decode()
    assert db.stat().st_mode & 0o777 == 0o600
    assert db.stat().st_size > 0


@pytest.mark.parametrize("kind", ["device", "fifo", "folder"])
def test_db_must_be_a_regular_file(kind: str, tmp_path: Path, clean_env: dict[str, str]):
    if kind == "device":
        db = Path("/dev/null")
        before = {p.name for p in Path("/dev").iterdir()}
        message = "/dev/null is a device, not a footprint database"
    elif kind == "fifo":
        db = tmp_path / "pipe.db"
        os.mkfifo(db)
        message = "is a pipe, not a footprint database"
    else:
        db = tmp_path / "dir.db"
        db.mkdir()
        message = "is a folder, not a footprint database"
    _run_refused(db, clean_env, tmp_path, message)
    for cmd in ("report", "runs"):
        res = run_cli([cmd, "--db", str(db)], clean_env, timeout=30)
        assert res.returncode == 2 and message in res.stderr.decode(), res.stderr.decode()
    if kind == "device":
        assert {p.name for p in Path("/dev").iterdir()} <= before  # no /dev/null-journal


# -- readers never write ---------------------------------------------------------------------------------------


def _record(db: Path, name: str = "r", job: str | None = None) -> None:
    from footprint.probes.base import Device

    store = Store(db)
    t0 = time.time() - 10
    rid = store.create_run(name, created_at=t0, host="h", pid=1, job_id=job, rank=0 if job else None,
                           node="h" if job else None)
    ids = store.add_devices(rid, [Device("gpu", 0, "gpu", "fake", True)], "h")
    store.set_started(rid, t0)
    store.write_batch(rid, [(ids["gpu:0"], t0 + k, 100.0 * k, 100.0, int(k in (0, 5))) for k in range(6)], [], t0 + 5)
    store.finish_run(rid, status="completed", exit_code=0, ended_at=t0 + 5)
    store.close()


@pytest.fixture
def open_folder():
    """A folder other users can reach (pytest's tmp_path is private to root)."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="fp-ro-"))
    path.chmod(0o755)
    yield path
    for p in [path, *path.rglob("*")]:
        if p.is_dir() and not p.is_symlink():
            p.chmod(0o755)
    shutil.rmtree(path)


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mode, p.stat().st_mtime_ns) for p in folder.iterdir()}


def _as_nobody(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    """footprint as uid 65534 (root ignores file permissions, so read-only folders need another user)."""
    drop = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    env = dict(env, HOME="/nonexistent")  # root's home is not theirs to read
    return subprocess.run(drop + footprint_cmd() + args, env=env, capture_output=True, timeout=60, cwd="/")


@needs_setpriv
def test_readers_of_a_wal_db_in_a_read_only_folder_write_nothing(open_folder: Path, clean_env: dict[str, str]):
    ro = open_folder / "ro"
    ro.mkdir()
    db = ro / "fp.db"
    _record(db, "one", job="j1")
    _record(db, "two")
    db.chmod(0o644)
    assert db.read_bytes()[18] == 2  # WAL
    ro.chmod(0o555)
    out = open_folder / "out"
    out.mkdir()
    os.chown(out, NOBODY, NOBODY)
    before = _snapshot(ro)
    for args in (["report"], ["report", "--json", "1", "2"], ["runs"], ["compare", "1", "2"], ["watch", "--once"],
                 ["report", "--job"], ["report", "--job", "j1", "--json"]):
        res = _as_nobody([*args, "--db", str(db)], clean_env)
        assert res.returncode == 0, (args, res.stderr.decode())
        assert res.stdout, args
    res = _as_nobody(["merge", str(db), "-o", str(out / "merged.db")], clean_env)
    assert res.returncode == 0, res.stderr.decode()
    assert "merged 2 run(s)" in res.stderr.decode()
    assert _snapshot(ro) == before  # no -wal, no -shm, not a byte changed
    env = dict(clean_env, FOOTPRINT_DB=str(out / "merged.db"))
    assert [r["name"] for r in report_json(env, "1", "2")["runs"]] == ["one", "two"]


@pytest.mark.parametrize("cmd", [["report"], ["runs"], ["compare", "1"], ["watch", "--once"], ["report", "--job"]])
def test_readers_leave_an_empty_file_empty(cmd: list[str], tmp_path: Path, clean_env: dict[str, str]):
    db = tmp_path / "empty.db"
    db.write_bytes(b"")
    db.chmod(0o644)
    res = run_cli([*cmd, "--db", str(db)], clean_env)
    err = res.stderr.decode()
    assert res.returncode == 2, err
    assert err == f"footprint: error: no runs recorded in {db} (it holds no footprint data yet)\n"
    assert db.read_bytes() == b"" and db.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["empty.db"]


def test_merge_refuses_an_input_hard_linked_to_the_output(tmp_path: Path, clean_env: dict[str, str]):
    out = tmp_path / "out.db"
    _record(out)
    alias = tmp_path / "alias.db"
    os.link(out, alias)
    t0 = time.monotonic()
    res = run_cli(["merge", str(alias), "-o", str(out)], clean_env)
    assert time.monotonic() - t0 < 30  # no wait on our own lock
    assert res.returncode == 2
    assert res.stderr.decode() == f"footprint: error: {alias} is both an input and the output\n"


# -- one-line errors -------------------------------------------------------------------------------------------

HUGE = "99999999999999999999999"


@pytest.mark.parametrize("args, message", [
    (["report", HUGE], f"no run with id or name '{HUGE}'"),
    (["report", "²"], "no run with id or name '²'"),  # str.isdigit() says yes, int() says no
    (["compare", "1", HUGE], f"no run with id or name '{HUGE}'"),
    (["runs", "--limit", HUGE], f"--limit: expected a whole number below 2**63, got '{HUGE}'"),
    (["runs", "--limit", "²"], "--limit: expected a whole number, got '²'"),
    (["run", "--tokens", HUGE, "--", "true"], f"--tokens: expected a whole number below 2**63, got '{HUGE}'"),
])
def test_out_of_range_numbers_are_one_line(args: list[str], message: str, tmp_path: Path,
                                           clean_env: dict[str, str]):
    _record(Path(clean_env["FOOTPRINT_DB"]))
    res = run_cli(args, clean_env)
    err = res.stderr.decode()
    assert res.returncode == 2, err
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert res.stdout == b""
    runs = _as_json(run_cli(["report", "--json", "1"], clean_env))
    assert runs is not None
    with sqlite3.connect(clean_env["FOOTPRINT_DB"]) as conn:
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1  # `run` refused before starting


def _as_json(res: subprocess.CompletedProcess[bytes]) -> object:
    import json

    assert res.returncode == 0, res.stderr.decode()
    return json.loads(res.stdout)


def test_add_tokens_refuses_a_total_past_2_63(tmp_path: Path):
    from footprint.probes import FakeProbe

    import footprint
    from footprint.common.errors import FootprintError

    with footprint.track("t", db=str(tmp_path / "t.db"), probes=[FakeProbe()], summary=False) as run:
        with pytest.raises(FootprintError, match=r"^tokens must be a non-negative integer below 2\*\*63"):
            run.add_tokens(2**63)
        run.add_tokens(2**62)
        run.add_tokens(2**62 - 1)
        with pytest.raises(FootprintError, match=r"^run \d+ would count more than 2\*\*63 - 1 tokens") as info:
            run.add_tokens(1)
        assert "\n" not in str(info.value)
    assert run.tokens == 2**63 - 1  # the report still adds up


def _damage(db: Path, which: str, value: object = "abc", run_id: int = 2) -> None:
    """Hand-edit one sample of the run: its last one (a total is made of it) or one in the middle."""
    order, offset = {"last": ("t DESC", 0), "middle": ("t", 2)}[which]
    with sqlite3.connect(db) as conn:
        conn.execute(f"UPDATE samples SET energy_j = ? WHERE rowid = (SELECT s.rowid FROM samples s JOIN devices d "
                     f"ON d.id = s.device_id WHERE d.run_id = ? ORDER BY s.{order} LIMIT 1 OFFSET {offset})",
                     (value, run_id))


@pytest.mark.parametrize("which", ["last", "middle"])
def test_a_text_energy_in_the_samples_is_one_line(which: str, clean_env: dict[str, str]):
    db = Path(clean_env["FOOTPRINT_DB"])
    _record(db, "good")
    _record(db, "bad")
    _damage(db, which)
    expected = "footprint: error: run 2, gpu:0: a sample holds energy_j 'abc', not a number (the DB was edited " \
               "or damaged; fix or delete that row)\n"
    for args in (["report"], ["report", "--json", "2"], ["compare", "1", "2"], ["report", "--format", "csv"]):
        res = run_cli(args, clean_env)
        if which == "middle" and res.returncode == 0:  # a report that never reads that row is right without it
            assert "500" in res.stdout.decode(), args
            continue
        assert res.returncode == 2, (args, res.stderr.decode())
        assert res.stderr.decode() == expected, args
    res = run_cli(["runs"], clean_env)  # the listing keeps the good run and names the bad one
    assert res.returncode == 0, res.stderr.decode()
    lines = res.stdout.decode().splitlines()
    assert any(" good" in line and "completed" in line for line in lines)
    assert any(" bad" in line and "damaged" in line for line in lines)
    assert res.stderr.decode() == expected.replace("error:", "warning:")
    assert report_json(clean_env, "1")["runs"][0]["energy_j"]["gpu"] == pytest.approx(500.0)


@needs_setpriv
@pytest.mark.parametrize("case", ["read-only file", "read-only folder"])
def test_run_refuses_a_db_it_cannot_write_before_starting_the_child(case: str, open_folder: Path,
                                                                     clean_env: dict[str, str]):
    folder = open_folder / "data"
    folder.mkdir()
    db = folder / "fp.db"
    _record(db)
    scratch = open_folder / "scratch"  # where the child would leave its mark
    scratch.mkdir()
    os.chown(scratch, NOBODY, NOBODY)
    if case == "read-only file":
        db.chmod(0o444)  # root's file: nobody may read it, not write it
        message = f"footprint: error: cannot write database {db}: Permission denied\n"
    else:
        db.chmod(0o666)
        folder.chmod(0o555)  # the file is writable, but its -wal cannot be created
        message = (f"footprint: error: cannot write database {db}: folder {folder} is not writable (SQLite keeps "
                   "its write-ahead log next to the DB)\n")
    before = _snapshot(folder)
    res = _as_nobody(["run", "--no-summary", "--db", str(db), "--", PY, "-c", MARK_CHILD,
                      str(scratch / "child-ran")], clean_env)
    assert res.returncode == 2
    assert res.stderr.decode() == message
    assert not (scratch / "child-ran").exists()
    assert _snapshot(folder) == before
    res = _as_nobody(["runs", "--db", str(db)], clean_env)  # still readable
    assert res.returncode == 0 and b"completed" in res.stdout, res.stderr.decode()


@pytest.fixture
def locked_db(clean_env: dict[str, str], request: pytest.FixtureRequest):
    """The DB, held in BEGIN EXCLUSIVE by another client (in WAL or rollback-journal mode)."""
    db = Path(clean_env["FOOTPRINT_DB"])
    _record(db)
    conn = sqlite3.connect(db, isolation_level=None)
    if request.param == "rollback":
        conn.execute("PRAGMA journal_mode = DELETE")
    conn.execute("BEGIN EXCLUSIVE")
    conn.execute("UPDATE runs SET name = name")
    yield request.param
    conn.execute("ROLLBACK")
    conn.close()


@pytest.mark.parametrize("locked_db", ["wal", "rollback"], indirect=True)
def test_a_db_held_exclusively_by_another_client_is_one_line(locked_db: str, tmp_path: Path,
                                                            clean_env: dict[str, str]):
    db = clean_env["FOOTPRINT_DB"]
    env = dict(clean_env, FOOTPRINT_BUSY_TIMEOUT="1")
    message = f"footprint: error: database {db} is locked by another program (waited 1 s; see FOOTPRINT_BUSY_TIMEOUT)\n"
    marker = tmp_path / "child-ran"
    t0 = time.monotonic()
    res = run_cli(["run", "--no-summary", "--", PY, "-c", MARK_CHILD, str(marker)], env)
    assert time.monotonic() - t0 < 20
    assert res.returncode == 2
    assert res.stderr.decode() == message
    assert not marker.exists()
    res = run_cli(["report", "--json"], env)
    if locked_db == "wal":  # WAL readers do not wait for writers
        assert res.returncode == 0, res.stderr.decode()
    else:
        assert res.returncode == 2
        assert res.stderr.decode() == message


# -- interval floor --------------------------------------------------------------------------------------------


def test_run_interval_below_the_floor_is_raised_to_it(powercap: PowercapTree, clean_env: dict[str, str]):
    env = dict(clean_env, FOOTPRINT_POWERCAP=str(powercap.root))
    res = run_cli(["run", "--no-summary", "--interval", "1e-9", "--", PY, "-c", "import time; time.sleep(1)"], env)
    err = res.stderr.decode()
    assert res.returncode == 0, err
    assert err.count("interval 1e-09 s is below") == 1, err
    assert "using 0.01 s" in err
    with sqlite3.connect(clean_env["FOOTPRINT_DB"]) as conn:
        assert conn.execute("SELECT interval_s FROM runs").fetchone()[0] == 0.01
        per_device = conn.execute("SELECT MAX(c) FROM (SELECT COUNT(*) AS c FROM samples GROUP BY device_id)"
                                  ).fetchone()[0]
        span = conn.execute("SELECT ended_at - started_at FROM runs").fetchone()[0]
    assert per_device <= span / 0.01 + 10  # at most one read per 10 ms (plus the edges), not millions


def test_track_interval_below_the_floor_warns_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    from footprint.probes import FakeProbe

    import footprint

    for _ in range(3):
        with footprint.track("t", db=str(tmp_path / "t.db"), probes=[FakeProbe()], interval=1e-9,
                             summary=False):
            time.sleep(0.05)
    assert capsys.readouterr().err.count("interval 1e-09 s is below") == 1  # once per process
    with sqlite3.connect(tmp_path / "t.db") as conn:
        assert [r[0] for r in conn.execute("SELECT interval_s FROM runs")] == [0.01] * 3


def test_odd_characters_in_the_db_path(tmp_path: Path, clean_env: dict[str, str]):
    folder = tmp_path / "a ?#%&=b é"
    folder.mkdir()
    db = folder / "fp?mode=rw#x.db"
    res = run_cli(["run", "--no-summary", "--db", str(db), "--", PY, "-c", "pass"], clean_env)
    assert res.returncode == 0, res.stderr.decode()
    assert sorted(p.name for p in folder.iterdir()) == ["fp?mode=rw#x.db"]  # that very file, nothing else
    out = tmp_path / "merged.db"
    assert run_cli(["merge", str(db), "-o", str(out)], clean_env).returncode == 0
    for target in (db, out):
        env = dict(clean_env, FOOTPRINT_DB=str(target))
        assert report_json(env)["runs"][0]["status"] == "completed"
