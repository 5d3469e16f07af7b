"""The real `footprint` command in subprocesses."""

from __future__ import annotations

import os
import re
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from footprint.cli import build_parser
from footprint.core.store import SCHEMA_VERSION
from tests.conftest import ROOT, report_json, run_cli

PY = sys.executable


def test_exit_code_and_streams_pass_through_untouched(clean_env: dict[str, str]):
    payload = bytes(range(256)) * 64
    child = ("import sys; data = sys.stdin.buffer.read(); sys.stdout.buffer.write(data[::-1]); "
             "sys.stderr.write('child-err\\n'); sys.exit(3)")
    res = run_cli(["run", "--no-summary", "--", PY, "-c", child], clean_env, input=payload)
    assert res.returncode == 3
    assert res.stdout == payload[::-1]  # byte for byte: nothing of ours on stdout
    assert res.stderr == b"child-err\n"
    run = report_json(clean_env)["runs"][0]
    assert run["status"] == "failed" and run["exit_code"] == 3


def test_summary_goes_to_stderr_and_says_estimated(clean_env: dict[str, str]):
    res = run_cli(["run", "--", PY, "-c", "print('hello')"], clean_env)
    assert res.returncode == 0
    assert res.stdout == b"hello\n"
    err = res.stderr.decode()
    assert "estimate:tdp-utilisation (estimated)" in err
    assert "estimated, not measured" in err
    assert "world average" in err


def test_json_contract(clean_env: dict[str, str]):
    res = run_cli(["run", "--name", "contract", "--country", "FRA", "--", PY, "-c", "import time; time.sleep(0.6)"],
                  clean_env)
    assert res.returncode == 0, res.stderr.decode()
    data = report_json(clean_env)
    assert len(data["runs"]) == 1
    run = data["runs"][0]
    for key in ("id", "name", "status", "exit_code", "started_at", "ended_at", "duration_s", "energy_j", "sources",
                "devices", "kwh", "co2e_g", "carbon_intensity_g_per_kwh", "tokens", "j_per_token", "spans"):
        assert key in run, key
    assert run["name"] == "contract" and run["status"] == "completed" and run["exit_code"] == 0
    assert set(run["energy_j"]) == {"cpu", "ram", "gpu", "total"}
    assert run["energy_j"]["gpu"] is None  # not measured is null, never 0
    assert run["energy_j"]["total"] == pytest.approx(run["energy_j"]["cpu"] + run["energy_j"]["ram"])
    assert run["sources"] == {"cpu": "estimate:tdp-utilisation", "ram": "estimate:ram-w-per-gb", "gpu": "none"}
    assert run["duration_s"] == pytest.approx(run["ended_at"] - run["started_at"])
    assert run["duration_s"] >= 0.6
    assert run["kwh"] == pytest.approx(run["energy_j"]["total"] / 3.6e6)
    assert run["carbon_intensity_g_per_kwh"] > 0 and "FRA" in run["carbon_source"]
    assert run["co2e_g"] == pytest.approx(run["kwh"] * run["carbon_intensity_g_per_kwh"])
    assert run["tokens"] is None and run["j_per_token"] is None
    for d in run["devices"]:
        assert set(d) >= {"kind", "index", "name", "energy_j", "source"}


CHILD_WITH_SPANS = """
import time, footprint
with footprint.track("inner") as run:
    with run.span("prefill", tokens=100):
        time.sleep(0.3)
    with run.span("decode"):
        for _ in range(4):
            with run.span("step"):
                time.sleep(0.05)
                run.add_tokens(25)
"""


def test_code_inside_the_command_attaches_to_the_parent_run(clean_env: dict[str, str]):
    res = run_cli(["run", "--name", "outer", "--", PY, "-c", CHILD_WITH_SPANS], clean_env)
    assert res.returncode == 0, res.stderr.decode()
    data = report_json(clean_env)
    run = data["runs"][0]
    with sqlite3.connect(clean_env["FOOTPRINT_DB"]) as conn:
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1  # no second run started
        # span edges in the child woke the parent for immediate reads of the counters (edges that come
        # together, like prefill's end and decode's start, may share one read)
        marks = conn.execute("SELECT COUNT(*) FROM samples s JOIN devices d ON d.id = s.device_id "
                             "WHERE s.mark = 1 AND d.kind = 'cpu'").fetchone()[0]
    # run start and end, and one read per group of edges that come together: inner+prefill start, prefill end+
    # decode start+step 1 start, the three step-to-step edges, and step 4 end+decode end+inner end (edges 50 ms
    # or more apart always get reads of their own; edges together may share one, as the comment above says)
    assert marks >= 2 + 6
    assert run["name"] == "outer"
    assert run["tokens"] == 200
    assert run["j_per_token"] == pytest.approx(run["energy_j"]["total"] / 200)
    names = [s["name"] for s in run["spans"]]
    assert names == ["inner", "prefill", "decode", "step", "step", "step", "step"]
    spans = {s["name"]: s for s in run["spans"]}
    assert spans["prefill"]["tokens"] == 100
    assert spans["decode"]["tokens"] == 100
    assert spans["inner"]["tokens"] == 200
    by_id = {s["id"]: s for s in run["spans"]}
    assert by_id[spans["prefill"]["parent"]]["name"] == "inner"
    steps = [s for s in run["spans"] if s["name"] == "step"]
    assert all(by_id[s["parent"]]["name"] == "decode" for s in steps)
    assert spans["inner"]["energy_j"]["total"] <= run["energy_j"]["total"] + 1e-9
    assert spans["prefill"]["duration_s"] >= 0.3


def test_no_command_is_a_one_line_error(clean_env: dict[str, str]):
    for args in (["run"], ["run", "--"]):
        res = run_cli(args, clean_env)
        assert res.returncode == 2
        assert res.stderr.decode().count("\n") == 1 and "needs a command" in res.stderr.decode()
        assert b"Traceback" not in res.stderr


def test_missing_command_exits_127_and_is_recorded_failed(clean_env: dict[str, str]):
    res = run_cli(["run", "--no-summary", "--", "no-such-command-xyz"], clean_env)
    assert res.returncode == 127
    assert res.stderr.decode().strip() == "footprint: no-such-command-xyz: command not found"
    run = report_json(clean_env)["runs"][0]
    assert run["status"] == "failed" and run["exit_code"] == 127


def test_non_executable_exits_126(clean_env: dict[str, str], tmp_path: Path):
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    res = run_cli(["run", "--no-summary", "--", str(script)], clean_env)
    assert res.returncode == 126
    assert "permission denied" in res.stderr.decode()
    assert report_json(clean_env)["runs"][0]["exit_code"] == 126


def test_arguments_reach_the_child_without_a_shell(clean_env: dict[str, str], tmp_path: Path):
    marker = tmp_path / "pwned"
    arg = f"x; touch {marker}; $(touch {marker})"
    res = run_cli(["run", "--no-summary", "--", PY, "-c", "import sys; print(sys.argv[1])", arg], clean_env)
    assert res.returncode == 0
    assert res.stdout.decode().strip() == arg
    assert not marker.exists()


def test_runs_and_report_by_id_and_name(clean_env: dict[str, str]):
    for name in ("first", "second"):
        assert run_cli(["run", "--no-summary", "--name", name, "--", PY, "-c", "pass"], clean_env).returncode == 0
    res = run_cli(["runs"], clean_env)
    assert res.returncode == 0
    lines = res.stdout.decode().splitlines()
    assert "second" in lines[1] and "first" in lines[2]
    both = report_json(clean_env, "1", "second")
    assert [r["name"] for r in both["runs"]] == ["first", "second"]
    res = run_cli(["report", "first"], clean_env)
    assert res.returncode == 0 and "run 1 'first'" in res.stdout.decode()


def test_unknown_run_is_a_one_line_error(clean_env: dict[str, str]):
    assert run_cli(["run", "--no-summary", "--", PY, "-c", "pass"], clean_env).returncode == 0
    res = run_cli(["report", "42"], clean_env)
    assert res.returncode == 2
    assert res.stderr.decode().count("\n") == 1 and "no run with id 42" in res.stderr.decode()


def test_db_is_private_wal_and_readable_by_sqlite_utils(clean_env: dict[str, str]):
    import sqlite_utils

    assert run_cli(["run", "--no-summary", "--", PY, "-c", "pass"], clean_env).returncode == 0
    path = clean_env["FOOTPRINT_DB"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    db = sqlite_utils.Database(path)
    tables = {"runs", "devices", "samples", "spans", "tokens", "events", "requests", "request_energy"}
    assert tables <= set(db.table_names())
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert {"run_figures", "span_figures", "run_energy"} <= set(db.view_names())
    (row,) = db.query("SELECT energy_j_total, kwh FROM run_figures")  # sqlite-utils users get figures directly
    assert row["energy_j_total"] is not None and row["kwh"] == row["energy_j_total"] / 3.6e6
    assert db["samples"].count >= 2 * db["devices"].count  # start and end reads of every device


def test_python_dash_m_and_console_script_both_work(clean_env: dict[str, str]):
    script = Path(sys.executable).parent / "footprint"
    if not script.exists():
        pytest.skip("console script not installed next to this interpreter")
    res = subprocess.run([str(script), "--version"], capture_output=True, env=clean_env)
    assert res.returncode == 0 and res.stdout.startswith(b"footprint ")
    res = subprocess.run([PY, "-m", "footprint", "--version"], capture_output=True, env=clean_env)
    assert res.returncode == 0 and res.stdout.startswith(b"footprint ")


def _commands() -> list[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return sorted(sub.choices)  # type: ignore[attr-defined]


@pytest.mark.parametrize("command", _commands())
def test_every_command_has_help_and_is_documented(command: str, clean_env: dict[str, str]):
    res = run_cli([command, "--help"], clean_env)
    assert res.returncode == 0 and b"usage: footprint " + command.encode() in res.stdout
    readme = (ROOT / "README.md").read_text()
    assert re.search(rf"`footprint {command}\b", readme), f"README does not document `footprint {command}`"


def test_example_runs_on_this_machine_and_says_estimated(clean_env: dict[str, str]):
    res = run_cli(["run", "--", PY, str(ROOT / "examples" / "busy_loop.py")], clean_env)
    assert res.returncode == 0, res.stderr.decode()
    err = res.stderr.decode()
    assert "(estimated)" in err and "J/token" in err
    run = report_json(clean_env)["runs"][0]
    assert run["name"] == "busy_loop.py" and run["tokens"] == 4096
    assert [s["name"] for s in run["spans"]] == ["busy-loop", "warmup", "steady"]


def test_every_command_is_in_the_fast_path_list():
    # main() builds only the named command's subparser; a command missing from COMMANDS would still work
    # (the full parser is built) but lose that speed-up, and one listed but absent would build nothing
    import argparse

    from footprint.cli import COMMANDS, build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert tuple(sub.choices) == COMMANDS
    for name in COMMANDS:
        only = next(a for a in build_parser(name)._actions if isinstance(a, argparse._SubParsersAction))
        assert list(only.choices) == [name]


def test_probes_lists_every_probe_in_aligned_columns(clean_env: dict[str, str]):
    from footprint.probes import probe_status

    res = run_cli(["probes"], clean_env)
    assert res.returncode == 0, res.stderr.decode()
    lines = res.stdout.decode().splitlines()[:-1]  # the last line says where estimates come in
    names = [name for name, _ in probe_status()]
    assert [line.split()[0] for line in lines] == names
    width = max(map(len, names))
    assert width > 6  # names longer than the shortest ones ("rpi-estimate", "powermetrics")
    for line in lines:
        assert line[width] == " " and line[width + 1:width + 4] in ("yes", "no "), line
