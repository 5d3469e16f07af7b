"""The DB file: concurrent creation, path safety (symlinks, devices, modes), read-only readers, one-line errors."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from footprint.core.store import Store
from tests.conftest import footprint_cmd, report_json

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


def test_sixteen_concurrent_writers_on_a_new_file(clean_env: dict[str, str]):
    procs = [subprocess.Popen(footprint_cmd() + ["run", "--no-summary", "--interval", "0.05", "--name", f"w{i}",
                                                 "--", PY, "-c", "import time; time.sleep(1.5)"],
                              env=clean_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(16)]
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err.decode()
        assert b"locked" not in err
    runs = report_json(clean_env, *[str(i) for i in range(1, 17)])["runs"]
    assert sorted(r["name"] for r in runs) == sorted(f"w{i}" for i in range(16))
    assert all(r["status"] == "completed" and r["energy_j"]["total"] is not None for r in runs)
