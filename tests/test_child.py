"""`footprint run` as a supervisor: inherited signal dispositions, forwarding, exit codes, start failures."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import footprint_cmd, report_json, run_cli

PY = sys.executable

# A child that reports how it started (dispositions as Python sees them, and the kernel's SigIgn mask),
# then counts the signals that reach it. SIGTERM prints the counts and exits 0.
REPORTER = r"""
import os, signal, sys, time
def disp(s):
    h = signal.getsignal(s)
    return 'ign' if h == signal.SIG_IGN else 'dfl' if h in (signal.SIG_DFL, signal.default_int_handler) else 'other'
status = {l.split(':')[0]: int(l.split()[1], 16) for l in open('/proc/self/status')
          if l.startswith(('SigIgn', 'SigBlk'))}
def bits(mask):
    return ''.join('1' if mask >> (s - 1) & 1 else '0'
                   for s in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGUSR1))
print('start', disp(signal.SIGHUP), disp(signal.SIGINT), disp(signal.SIGTERM),
      bits(status['SigIgn']), bits(status['SigBlk']), flush=True)
got = {signal.SIGHUP: 0, signal.SIGINT: 0}
def count(s, _f):
    got[s] += 1
    print('got', s, flush=True)
def term(_s, _f):
    print('counts', got[signal.SIGHUP], got[signal.SIGINT], flush=True)
    sys.exit(0)
for s in got:
    signal.signal(s, count)
signal.signal(signal.SIGTERM, term)
print('ready', flush=True)
time.sleep(60)
sys.exit(5)
"""

# Starts its arguments with SIGHUP and SIGINT ignored, as `nohup cmd &` from a non-interactive shell does,
# and SIGUSR1 blocked.
IGNORING_LAUNCHER = ("import os, signal, sys; signal.signal(signal.SIGHUP, signal.SIG_IGN); "
                     "signal.signal(signal.SIGINT, signal.SIG_IGN); "
                     "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1}); os.execvp(sys.argv[1], sys.argv[1:])")


def _line(proc: subprocess.Popen[bytes]) -> str:
    assert proc.stdout is not None
    return proc.stdout.readline().decode().strip()


def _start(args: list[str], env: dict[str, str], *, launcher: list[str] | None = None,
           **kw: object) -> subprocess.Popen[bytes]:
    kw.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.Popen((launcher or []) + footprint_cmd() + args, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **kw)  # type: ignore[call-overload]


def test_ignored_hangup_and_interrupt_are_inherited_and_not_forwarded(clean_env: dict[str, str]):
    proc = _start(["run", "--no-summary", "--", PY, "-c", REPORTER], clean_env,
                  launcher=[PY, "-c", IGNORING_LAUNCHER])
    # the child starts with exactly what footprint was given: HUP and INT ignored, TERM default, USR1 blocked
    assert _line(proc) == "start ign ign dfl 1100 0001"
    assert _line(proc) == "ready"
    proc.send_signal(signal.SIGHUP)  # what nohup is for: the hangup must not end the job
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    assert proc.poll() is None  # footprint ignored them too
    proc.send_signal(signal.SIGTERM)  # forwarded; any forwarded HUP or INT would have arrived before it
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()
    assert out.decode().splitlines() == ["counts 0 0"]
    run = report_json(clean_env)["runs"][0]
    assert run["status"] == "interrupted" and run["exit_code"] == 0


def test_default_dispositions_are_inherited_as_default(clean_env: dict[str, str]):
    res = run_cli(["run", "--no-summary", "--", PY, "-c", REPORTER.split("got =")[0]], clean_env)
    assert res.returncode == 0, res.stderr.decode()
    # footprint's handlers become the default across exec, and its own blocking of them does not leak
    assert res.stdout.decode().splitlines() == ["start dfl dfl dfl 0000 0000"]
    assert report_json(clean_env)["runs"][0]["status"] == "completed"


def test_nohup_job_survives_hangup(clean_env: dict[str, str], tmp_path: Path):
    if subprocess.run(["sh", "-c", "command -v nohup"], capture_output=True).returncode != 0:
        pytest.skip("no nohup here")
    proc = _start(["run", "--no-summary", "--", PY, "-c", REPORTER], clean_env, launcher=["nohup"],
                  cwd=tmp_path)
    assert _line(proc).startswith("start ign ")
    assert _line(proc) == "ready"
    proc.send_signal(signal.SIGHUP)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()  # not 129: the hangup did not kill the job
    assert out.decode().splitlines() == ["counts 0 0"]


# --- SIGINT with footprint as the terminal's foreground process group ---------------------------------

# Puts footprint in a new session whose controlling terminal is the pty slave named by argv[1] (stdin),
# so footprint's process group is the terminal's foreground group, as in an interactive shell.
PTY_LAUNCHER = ("import os, sys; fd = os.open(sys.argv[1], os.O_RDWR); os.dup2(fd, 0); os.close(fd); "
                "assert os.tcgetpgrp(0) == os.getpgrp(); os.execvp(sys.argv[2], sys.argv[2:])")

SIGINT_DIES = ("import os, signal, sys, time; signal.signal(signal.SIGINT, signal.SIG_DFL); {setsid}"
               "print('ready', flush=True); time.sleep(60); sys.exit(5)")


def _start_on_pty(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    master, slave = os.openpty()
    name = os.ttyname(slave)
    proc = subprocess.Popen([PY, "-c", PTY_LAUNCHER, name] + footprint_cmd() + args, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    os.close(slave)
    return proc, master


def test_ctrl_c_at_the_terminal_reaches_the_child_once(clean_env: dict[str, str]):
    proc, master = _start_on_pty(["run", "--no-summary", "--", PY, "-c", REPORTER], clean_env)
    try:
        assert _line(proc).startswith("start ")
        assert _line(proc) == "ready"
        os.write(master, b"\x03")  # Ctrl-C: the terminal signals the whole foreground group
        assert _line(proc) == f"got {int(signal.SIGINT)}"
        proc.send_signal(signal.SIGTERM)  # a forwarded second SIGINT would arrive before this
        out, err = proc.communicate(timeout=30)
    finally:
        os.close(master)
    assert proc.returncode == 0, err.decode()
    assert out.decode().splitlines() == ["counts 0 1"]
    assert report_json(clean_env)["runs"][0]["status"] == "interrupted"


def test_kill_int_to_a_foreground_footprint_is_forwarded(clean_env: dict[str, str]):
    proc, master = _start_on_pty(["run", "--no-summary", "--", PY, "-c", SIGINT_DIES.format(setsid="")],
                                 clean_env)
    try:
        assert _line(proc) == "ready"
        proc.send_signal(signal.SIGINT)  # `kill -INT <footprint>` from elsewhere: the child did not get it
        _, err = proc.communicate(timeout=30)
    finally:
        os.close(master)
    assert proc.returncode == 130, err.decode()
    run = report_json(clean_env)["runs"][0]
    assert run["status"] == "interrupted" and run["exit_code"] == 130


def test_ctrl_c_reaches_a_child_in_its_own_session(clean_env: dict[str, str]):
    proc, master = _start_on_pty(["run", "--no-summary", "--", PY, "-c",
                                  SIGINT_DIES.format(setsid="os.setsid(); ")], clean_env)
    try:
        assert _line(proc) == "ready"
        os.write(master, b"\x03")  # reaches footprint only: the child left the terminal's group
        _, err = proc.communicate(timeout=30)
    finally:
        os.close(master)
    assert proc.returncode == 130, err.decode()
    assert report_json(clean_env)["runs"][0]["status"] == "interrupted"


def test_signal_the_child_survives_is_not_reported_as_its_death(clean_env: dict[str, str]):
    # the child catches SIGINT and carries on to its own end: footprint's code is the child's
    child = ("import signal, sys, time\ncaught = []\n"
             "signal.signal(signal.SIGINT, lambda s, f: caught.append(print('caught', flush=True)))\n"
             "print('ready', flush=True)\nwhile not caught:\n    time.sleep(0.05)\nsys.exit(4)\n")
    proc = _start(["run", "--no-summary", "--", PY, "-c", child], clean_env)
    assert _line(proc) == "ready"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 4, err.decode()
    assert out.decode().splitlines() == ["caught"]
    run = report_json(clean_env)["runs"][0]
    assert run["status"] == "interrupted" and run["exit_code"] == 4  # the signal reached it: not "failed"


# --- footprint's own stderr broken ---------------------------------------------------------------------

EXIT3 = ["run", "--", "sh", "-c", "exit 3"]


def test_exit_code_survives_a_broken_stderr_pipe(clean_env: dict[str, str]):
    r, w = os.pipe()
    os.close(r)  # `... 2>&1 | true`: nobody reads footprint's stderr
    try:
        res = subprocess.run(footprint_cmd() + EXIT3, env=clean_env, stderr=w, stdout=subprocess.PIPE, timeout=60)
    finally:
        os.close(w)
    assert res.returncode == 3
    run = report_json(clean_env)["runs"][0]
    assert run["status"] == "failed" and run["exit_code"] == 3


def test_exit_code_survives_a_full_stderr(clean_env: dict[str, str]):
    with open("/dev/full", "wb") as full:
        res = subprocess.run(footprint_cmd() + EXIT3, env=clean_env, stderr=full, stdout=subprocess.PIPE,
                             timeout=60)
    assert res.returncode == 3
    assert res.stdout == b""
    assert report_json(clean_env)["runs"][0]["exit_code"] == 3


def test_exit_code_survives_a_closed_stderr(clean_env: dict[str, str]):
    res = subprocess.run(["sh", "-c", 'exec "$@" 2>&-', "sh"] + footprint_cmd() + EXIT3, env=clean_env,
                         stdout=subprocess.PIPE, timeout=60)
    assert res.returncode == 3
    assert res.stdout == b""  # no traceback sent anywhere else
    assert report_json(clean_env)["runs"][0]["exit_code"] == 3


def test_a_broken_stderr_does_not_change_what_the_child_sees(clean_env: dict[str, str]):
    # a child writing to its stderr (the same full device) gets the error itself, and footprint its code
    child = "import sys\ntry:\n    print('x', file=sys.stderr, flush=True)\nexcept OSError:\n    sys.exit(7)\n"
    with open("/dev/full", "wb") as full:
        res = subprocess.run(footprint_cmd() + ["run", "--", PY, "-c", child], env=clean_env, stderr=full,
                             stdout=subprocess.PIPE, timeout=60)
    assert res.returncode == 7


# --- start failures, baseline, process groups ----------------------------------------------------------

def test_a_command_that_never_started_gets_one_line_and_no_summary(clean_env: dict[str, str], tmp_path: Path):
    res = run_cli(["run", "--", "no-such-command-xyz"], clean_env)
    assert res.returncode == 127
    assert res.stderr.decode() == "footprint: no-such-command-xyz: command not found\n"
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    res = run_cli(["run", "--", str(script)], clean_env)
    assert res.returncode == 126
    assert res.stderr.decode() == f"footprint: {script}: permission denied\n"
    bad = tmp_path / "bad-interpreter"
    bad.write_text("#!/nonexistent/interpreter\n")
    bad.chmod(0o755)
    res = run_cli(["run", "--", str(bad)], clean_env)
    assert res.returncode == 126
    assert res.stderr.decode() == f"footprint: {bad}: bad interpreter: No such file or directory\n"
    runs = report_json(clean_env, "1", "2", "3")["runs"]
    assert [(r["status"], r["exit_code"]) for r in runs] == [("failed", 127), ("failed", 126), ("failed", 126)]


def test_a_script_without_shebang_runs_with_sh(clean_env: dict[str, str], tmp_path: Path):
    script = tmp_path / "noshebang"
    script.write_text('echo "ran as $0 with $1"\nexit 6\n')
    script.chmod(0o755)
    res = run_cli(["run", "--no-summary", "--", str(script), "arg1"], clean_env)
    assert res.returncode == 6, res.stderr.decode()
    assert res.stdout.decode() == f"ran as {script} with arg1\n"
    env = dict(clean_env, PATH=f"{tmp_path}:{clean_env.get('PATH', '/usr/bin:/bin')}")
    res = run_cli(["run", "--no-summary", "--", "noshebang", "arg2"], env)  # found on PATH, as execvp does
    assert res.returncode == 6, res.stderr.decode()
    assert res.stdout.decode().endswith("with arg2\n")


def _running_run(db: str, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with sqlite3.connect(db) as conn:
                if conn.execute("SELECT COUNT(*) FROM runs WHERE status = 'running'").fetchone()[0]:
                    return
        except sqlite3.Error:
            pass
        time.sleep(0.05)
    raise AssertionError("the run was never created")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGHUP])
def test_signal_during_baseline_finishes_the_run_interrupted(sig: signal.Signals, clean_env: dict[str, str]):
    proc = _start(["run", "--no-summary", "--baseline", "60", "--", PY, "-c", "print('child ran')"], clean_env)
    _running_run(clean_env["FOOTPRINT_DB"])
    time.sleep(0.3)  # inside the idle measurement
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + sig, err.decode()
    assert b"child ran" not in out and b"Traceback" not in err
    run = report_json(clean_env)["runs"][0]
    assert run["status"] == "interrupted" and run["exit_code"] == 128 + sig


GROUP_CHILD = "sleep 60 >/dev/null 2>&1 & echo $!; echo ready; exec sleep 60"


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _gone_within(pid: int, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_kill_group_signals_the_grandchildren(clean_env: dict[str, str]):
    proc = _start(["run", "--no-summary", "--kill-group", "--", "sh", "-c", GROUP_CHILD], clean_env)
    grandchild = int(_line(proc))
    assert _line(proc) == "ready"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err.decode()
    assert _gone_within(grandchild, 10)
    assert report_json(clean_env)["runs"][0]["status"] == "interrupted"


def test_by_default_only_the_child_is_signalled(clean_env: dict[str, str]):
    proc = _start(["run", "--no-summary", "--", "sh", "-c", GROUP_CHILD], clean_env)
    grandchild = int(_line(proc))
    try:
        assert _line(proc) == "ready"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 143, err.decode()
        assert _alive(grandchild)  # as documented: left running, like a shell's `kill PID`
    finally:
        os.kill(grandchild, signal.SIGKILL)
