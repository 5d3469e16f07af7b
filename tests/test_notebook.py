"""`%%footprint` in a real Jupyter kernel: a notebook built with nbformat, run by nbclient on an ipykernel
started from this interpreter. One summary per cell, the cell's value shown once, no terminal escape
codes, and a cell that raises recorded as failed."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ESC = "\x1b"


def texts(output: dict[str, Any]) -> list[str]:
    """Every text an output carries: a stream's text, each mime type of a display or result."""
    if output["output_type"] == "stream":
        return [output["text"]]
    return [v if isinstance(v, str) else json.dumps(v) for v in output.get("data", {}).values()]


@pytest.fixture
def kernel_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernel spec for this interpreter (the venv's python), found through JUPYTER_PATH; the kernel's
    runtime files and IPython profile in tmp_path."""
    spec = tmp_path / "jupyter" / "kernels" / "footprint-test"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "footprint test", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    for key in [k for k in __import__("os").environ if k.startswith("FOOTPRINT_")]:
        monkeypatch.delenv(key)
    return "footprint-test"


def test_cell_magic_in_a_real_kernel(tmp_path: Path, kernel_env: str):
    db = tmp_path / "nb.db"
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext footprint"),
        nbformat.v4.new_code_cell(f"%%footprint nb-ok --db {db} --tokens 10\nx = 21 * 2\nx"),
        nbformat.v4.new_code_cell(f"%%footprint nb-bad --db {db}\ny = 1\nraise ValueError('boom')"),
        nbformat.v4.new_code_cell("print(_footprint_run.report().status, y)"),
    ]
    client = nbclient.NotebookClient(nb, timeout=180, kernel_name=kernel_env, allow_errors=True,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    ok, bad, after = nb.cells[1].outputs, nb.cells[2].outputs, nb.cells[3].outputs

    # one summary, then the value, once
    assert [o["output_type"] for o in ok] == ["display_data", "execute_result"], ok
    summary = ok[0]["data"]
    assert "run 1 'nb-ok' · completed" in summary["text/plain"] and "J/token" in summary["text/plain"]
    assert "<pre" in summary["text/html"] and "nb-ok" in summary["text/html"]
    assert ok[1]["data"]["text/plain"] == "42"
    assert sum(t == "42" for o in nb.cells[1].outputs for t in texts(o)) == 1
    assert not any(ESC in t for o in ok for t in texts(o))

    # the failed cell: its summary, then its traceback, once
    assert [o["output_type"] for o in bad] == ["display_data", "error"], bad
    assert "run 2 'nb-bad' · failed" in bad[0]["data"]["text/plain"]
    assert not any(ESC in t for t in texts(bad[0]))
    assert bad[1]["ename"] == "ValueError" and bad[1]["evalue"] == "boom"
    assert after == [{"output_type": "stream", "name": "stdout", "text": "failed 1\n"}]

    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT name, status FROM runs ORDER BY id").fetchall()
        tokens = con.execute("SELECT SUM(n) FROM tokens").fetchone()[0]
    assert rows == [("nb-ok", "completed"), ("nb-bad", "failed")]
    assert tokens == 10
