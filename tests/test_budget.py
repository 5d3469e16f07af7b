"""Budgets end to end: the real `footprint run` supervising a real child that makes step spans, with the NVML
stand-in (100 W) and a fake powercap tree (70 W of packages, 10 W of DRAM) as its only devices, so the run draws
a known 180 W and every forecast's energy is 180 W × its predicted time."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.conftest import nvml_env, report_json, run_cli
from tests.fakes.powercap import PowercapTree

WATTS = 180.0
RAPL_W = 80.0


def edge_j(powercap: PowercapTree) -> float:
    """How far off one edge's reading can be. NVML's stand-in is exact at any instant; the powercap writer updates
    every 2 ms, later on a busy machine (the lag it kept is measured), so an edge's reading is up to that lag ×
    80 W off. The mean cycle is (E(end k) - E(end 1)) / (k - 1): two edges' error over k - 1, which the forecast
    multiplies by the remaining steps, and its anchor E(end k) adds two more."""
    return max(powercap.max_lag_s, powercap.period_s) * RAPL_W

CHILD = """
import sys, time, footprint
done = 0
with footprint.track("train") as run:
    try:
        for _ in range(int(sys.argv[1])):
            with run.span("step"):
                time.sleep(0.05)
            done += 1
    except KeyboardInterrupt:  # a graceful stop: the loop ends where it is, the script exits normally
        print(f"stopped after {done} steps", flush=True)
        sys.exit(0)
print(f"finished {done} steps", flush=True)
"""


@pytest.fixture
def env(nvml_lib_dir: Path, powercap: PowercapTree, clean_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    (tmp_path / "child.py").write_text(CHILD)
    return nvml_env(dict(clean_env, FOOTPRINT_POWERCAP=str(powercap.root)), nvml_lib_dir, power=100)


def test_budget_stop_sends_sigint_and_is_recorded(env: dict[str, str], powercap: PowercapTree, tmp_path: Path):
    # 400 steps of 50 ms: about 20 s and 3.6 kJ (0.001 kWh); a 0.0002 kWh budget is exceeded from the first forecast
    res = run_cli(["run", "--no-summary", "--expect-steps", "400", "--budget-kwh", "0.0002", "--on-budget", "stop",
                   "--", sys.executable, str(tmp_path / "child.py"), "400"], env, timeout=60)
    out, err = res.stdout.decode(), res.stderr.decode()
    assert res.returncode == 0, err  # the child's own exit code: it handled the SIGINT and ended normally
    assert out.startswith("stopped after ") and int(out.split()[2]) < 400, out
    warnings = [line for line in err.splitlines() if line.startswith("footprint: warning:")]
    assert len(warnings) == 1 and "exceeds the budget of 0.0002 kWh" in warnings[0] and "stopping" in warnings[0]
    run = report_json(env)["runs"][0]
    assert run["status"] == "interrupted"
    assert run["meta"]["stopped_by"] == "budget" and run["meta"]["budget"]["name"] == "kwh"
    assert run["meta"]["budget"]["forecast"] > 0.0002
    events = [e for e in run["events"] if e["kind"] == "budget"]
    assert len(events) == 1 and events[0]["message"].endswith("; stopped")
    f = run["forecast"]
    assert f["steps_expected"] == 400 and 0 < f["steps_done"] < 400
    # constant power: the predicted energy is the run's power times the predicted time, to the counters' resolution
    done, left = f["steps_done"], f["steps_expected"] - f["steps_done"]
    assert done >= 2
    edge = edge_j(powercap)
    assert f["energy_j"] == pytest.approx(WATTS * f["duration_s"], abs=edge * (2 + 2 * left / (done - 1)))
    assert f["kwh"] > 0.0002 and f["error_pct"] is None  # it did not run to the end: nothing to compare with
    assert run["energy_j"]["total"] == pytest.approx(WATTS * run["duration_s"], abs=2 * edge)


def test_budget_warns_once_and_lets_the_command_finish(env: dict[str, str], powercap: PowercapTree, tmp_path: Path):
    res = run_cli(["run", "--no-summary", "--expect-steps", "80", "--budget-co2e-g", "0.00001", "--", sys.executable,
                   str(tmp_path / "child.py"), "80"], env, timeout=60)
    err = res.stderr.decode()
    assert res.returncode == 0 and res.stdout.decode() == "finished 80 steps\n", err
    warnings = [line for line in err.splitlines() if line.startswith("footprint: warning:")]
    assert len(warnings) == 1 and "exceeds the budget of 1e-05 g CO2e" in warnings[0], err
    run = report_json(env)["runs"][0]
    assert run["status"] == "completed" and "stopped_by" not in run["meta"]
    f = run["forecast"]
    assert (f["steps_done"], f["steps_expected"]) == (80, 80)
    # the forecast made at 10 % of the steps (8), against the final total: sleeps on a loaded machine are not steady
    # steps, so the 2 % bound is tests/test_forecast.py's (a fake clock); here the figures must be the closed form
    early, final = f["early"], run["energy_j"]["total"]
    assert early["steps_done"] == 8, json.dumps(f)
    assert early["energy_j"] == pytest.approx(WATTS * early["duration_s"], abs=edge_j(powercap) * (2 + 2 * 72 / 7))
    assert f["error_pct"] == pytest.approx((early["energy_j"] - final) / final * 100, rel=1e-9)


def test_budget_flags_are_checked(clean_env: dict[str, str]):
    for args in (["--budget-kwh", "0"], ["--budget-cost", "-1"], ["--on-budget", "maybe"], ["--expect-steps", "0"]):
        res = run_cli(["run", *args, "--", "true"], clean_env)
        err = res.stderr.decode()
        assert res.returncode == 2 and err.count("\n") == 1 and "Traceback" not in err, err


def test_watch_shows_the_forecast_of_a_running_run(env: dict[str, str], tmp_path: Path):
    import subprocess
    import time

    from tests.conftest import footprint_cmd

    proc = subprocess.Popen([*footprint_cmd(), "run", "--no-summary", "--expect-steps", "100", "--", sys.executable,
                             str(tmp_path / "child.py"), "100"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        time.sleep(3.0)  # 60 steps of 50 ms, and their readings flushed (every 2 s)
        res = run_cli(["watch", "--once"], env)
    finally:
        proc.communicate(timeout=30)
    out = res.stdout.decode()
    assert res.returncode == 0, res.stderr.decode()
    line = next(x for x in out.splitlines() if "│ forecast" in x)
    assert "/100 step" in line and "g CO2e" in line and "J (" in line, out  # energy, then its interval
