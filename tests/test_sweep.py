"""`footprint sweep` and `footprint compare --sweep`: the grid, the maths (frontiers, the cheapest point within a
margin, confidence intervals) and the real command over a stand-in workload whose energy per point is exact
(tests/fakes/sweep_workload.py draws known power from a fake powercap tree that only it advances)."""

from __future__ import annotations

import json
import math
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from footprint.common import pareto, stats
from footprint.common.errors import FootprintError
from footprint.core.sweep import grid
from footprint.sweep import parse_params, placeholders, read_quality, substitute
from tests.conftest import footprint_cmd, run_cli
from tests.fakes.powercap import PowercapTree, Zone
from tests.fakes.sweep_workload import TABLE, TOKENS_PER_REQUEST

PY = sys.executable
WORKLOAD = str(Path(__file__).parent / "fakes" / "sweep_workload.py")
CMD = ["--", PY, WORKLOAD, "--model", "{model}", "--batch", "{batch}"]


# -- the grid ---------------------------------------------------------------------------------------------

def test_params_grid_and_placeholders():
    params = parse_params(["model=s, m", "batch=1,8"])
    assert params == {"model": ["s", "m"], "batch": ["1", "8"]}
    assert grid(params) == [{"model": "s", "batch": "1"}, {"model": "s", "batch": "8"},
                            {"model": "m", "batch": "1"}, {"model": "m", "batch": "8"}]
    assert grid({}) == [{}]
    point = {"model": "s", "batch": "8"}
    assert substitute("--out=runs/{model}-b{batch}.json", point) == "--out=runs/s-b8.json"
    assert substitute("print({1: 2}, {}, {{model}})", point) == "print({1: 2}, {}, {model})"  # other braces stay
    assert placeholders(["{model}", "x{batch}{model}", "{{size}}"]) == ["model", "batch"]
    with pytest.raises(FootprintError, match=r"unknown placeholder \{size\}"):
        substitute("--size {size}", point)


@pytest.mark.parametrize("item, message", [
    ("model", "takes NAME=VALUE1,VALUE2"),
    ("model=", "gives an empty value"),
    ("model=a,,b", "gives an empty value"),
    ("model=a,a", "repeats a value"),
    ("9lives=a", "name must be"),
])
def test_bad_params_are_refused(item: str, message: str):
    with pytest.raises(FootprintError, match=message):
        parse_params([item])
    with pytest.raises(FootprintError, match="given twice"):
        parse_params(["a=1", "a=2"])


# -- the maths --------------------------------------------------------------------------------------------

def test_confidence_interval_is_students_t():
    mean, hw = stats.mean_ci95([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5
    assert hw == pytest.approx(3.182 * math.sqrt(5 / 3) / 2)  # t(0.975, 3) · s / √n, s² = 5/3
    assert stats.mean_ci95([7.0]) == (7.0, None)  # one run: no interval, not a zero-width one
    assert stats.t975(1) == 12.706 and stats.t975(30) == 2.042
    assert stats.t975(40) == pytest.approx(2.021) and stats.t975(50) == pytest.approx(2.009, abs=0.002)
    assert stats.t975(1000) == pytest.approx(1.9623, abs=5e-4)  # tables give 1.9623
    with pytest.raises(ValueError):
        stats.t975(0)


def test_frontier_and_cheapest_within_margin():
    # (key, J per token, quality)
    pts = [("a", 1.0, 0.70), ("b", 2.0, 0.80), ("c", 3.0, 0.79), ("d", 4.0, 0.85), ("e", 1.0, 0.70),
           ("f", 1.5, 0.60)]
    assert pareto.frontier(pts) == {"a", "e", "b", "d"}  # c costs more than b for less; f: a is better in both
    assert pareto.cheapest_within(pts, 0.0) == "d"
    assert pareto.cheapest_within(pts, 0.05) == "b"  # 0.80 is within 0.05 of 0.85 (float-safe)
    assert pareto.cheapest_within(pts, 0.06) == "b"
    assert pareto.cheapest_within(pts, 0.15) == "a"  # a and e tie: the earlier one
    assert pareto.cheapest_within([], 0.1) is None
    assert pareto.cheapest_within([("x", 2.0, 0.8), ("y", 2.0, 0.9)], 0.2) == "y"  # same cost: the better one


def test_quality_file_formats(tmp_path: Path):
    f = tmp_path / "q.json"
    assert read_quality(str(f), time.time()) is None  # no file: no quality, not a zero
    f.write_text("0.5")
    assert read_quality(str(f), time.time()) == (0.5, None)
    f.write_text('{"quality": 0.75, "metric": "accuracy"}')
    assert read_quality(str(f), time.time()) == (0.75, "accuracy")
    for bad in ('"high"', '{"score": 1}', "NaN", "{", "true"):
        f.write_text(bad)
        with pytest.raises(FootprintError, match="neither a number"):
            read_quality(str(f), time.time())
    f.write_text("0.5")
    with pytest.raises(FootprintError, match="not written by this point"):
        read_quality(str(f), time.time() + 60)


def test_set_quality_records_the_latest_and_refuses_non_numbers(tmp_path: Path):
    import footprint
    from footprint.core.store import Store

    with footprint.track("scored", db=str(tmp_path / "q.db"), summary=False) as run:
        run.set_quality(0.5)
        run.set_quality(0.625, metric="accuracy")
        for bad in (float("nan"), float("inf"), True, "0.7", None):
            with pytest.raises(FootprintError, match="quality must be a finite number"):
                run.set_quality(bad)  # type: ignore[arg-type]
    with pytest.raises(FootprintError, match="has ended"):
        run.set_quality(0.9)
    with Store(tmp_path / "q.db") as store:
        assert store.run_quality([run.id]) == {run.id: (0.625, "accuracy", "set_quality")}


# -- the real command -------------------------------------------------------------------------------------

@pytest.fixture
def standin(tmp_path: Path, clean_env: dict[str, str]) -> dict[str, str]:
    """clean_env with a fake powercap tree (package-0 and its dram) that nothing but the stand-in advances."""
    PowercapTree(tmp_path / "powercap", [Zone("intel-rapl:0", "package-0", 0.0),
                                         Zone("intel-rapl:0:0", "dram", 0.0)])
    env = dict(clean_env, FOOTPRINT_POWERCAP=str(tmp_path / "powercap"), STANDIN_LOG=str(tmp_path / "standin.log"),
               STANDIN_MARKER=str(tmp_path / "marker"))
    return env


def log(env: dict[str, str]) -> list[dict[str, Any]]:
    path = Path(env["STANDIN_LOG"])
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def db_rows(env: dict[str, str], sql: str) -> list[sqlite3.Row]:
    conn = sqlite3.connect(env["FOOTPRINT_DB"])
    conn.row_factory = sqlite3.Row
    try:
        return list(conn.execute(sql))
    finally:
        conn.close()


def compare(env: dict[str, str], *args: str) -> dict[str, Any]:
    res = run_cli(["compare", "--sweep", "last", "--json", *args], env)
    assert res.returncode == 0, res.stderr.decode()
    out: dict[str, Any] = json.loads(res.stdout)
    return out


def test_sweep_energy_exact_per_point_frontiers_and_cheapest_within(standin: dict[str, str], tmp_path: Path):
    res = run_cli(["sweep", "--name", "sizes", "--param", "model=s,m", "--param", "batch=1,8", "--within", "0.05",
                   *CMD], standin, timeout=180)
    assert res.returncode == 0, res.stderr.decode()
    err = res.stderr.decode()
    assert "point 4/4 model=m batch=8: completed" in err
    assert "cheapest within 0.05 of the best quality, by J per generated token: point 3 model=m batch=8" in err

    ran = log(standin)
    assert [(r["model"], r["batch"]) for r in ran] == [("s", 1), ("s", 8), ("m", 1), ("m", 8)]  # in grid order
    assert [r["param_env"] for r in ran] == ["s", "s", "m", "m"]  # FOOTPRINT_PARAM_MODEL reached the command
    out = compare(standin)
    assert out["per"] == "generated" and out["reference"] == 0 and out["status"] == "completed"
    by_point = {(p["point"]["model"], int(p["point"]["batch"])): p for p in out["points"]}
    for r in ran:
        p = by_point[(r["model"], r["batch"])]
        exact_j = (r["cpu_w"] + r["ram_w"]) * r["busy_s"]  # the stand-in's power × the time it drew it
        f = p["figures"]
        assert p["status"] == "completed" and f["energy_j"]["n"] == 1 and f["energy_j"]["ci95"] is None
        # µJ counters and one rounding per write: far below 1e-6 of joules here
        assert f["energy_j"]["mean"] == pytest.approx(exact_j, rel=1e-6)
        assert f["j_per_token"]["mean"] == pytest.approx(exact_j / (TOKENS_PER_REQUEST * r["batch"]), rel=1e-6)
        assert f["j_per_request"]["mean"] == pytest.approx(exact_j / r["batch"], rel=1e-6)
        assert f["quality"]["mean"] == TABLE[(r["model"], r["batch"])][2]
        assert not p["estimated"]
    ref = by_point[("s", 1)]["figures"]["j_per_token"]["mean"]
    m8 = by_point[("m", 8)]
    assert m8["ratios"]["j_per_token"] == pytest.approx(m8["figures"]["j_per_token"]["mean"] / ref)
    # J/gen token: s8 1.16, m8 1.26, s1 2.4, m1 4.2; quality .70, .80, .70, .85; m8 is far faster than s8
    assert {k for k, p in by_point.items() if p["quality_frontier"]} == {("s", 8), ("m", 8), ("m", 1)}
    assert {k for k, p in by_point.items() if p["throughput_frontier"]} == {("s", 8), ("m", 8)}
    assert out["best_quality"] == 2 and out["choice"] is None  # no margin asked for
    within = compare(standin, "--within", "0.05")
    assert within["choice"] == 3 and within["choice_by"] == "j_per_token"
    assert compare(standin, "--within", "0")["choice"] == 2  # only the best itself
    assert compare(standin, "--within", "0.15")["choice"] == 1  # s8: all qualify, the cheapest per token

    # each point is a run, tagged with its point and the sweep
    points = db_rows(standin, "SELECT sp.*, r.name AS run_name FROM sweep_points sp JOIN runs r ON r.id = sp.run_id "
                              "ORDER BY sp.id")
    assert [json.loads(p["point"]) for p in points] == [dict(model=m, batch=b) for m, b in
                                                         (("s", "1"), ("s", "8"), ("m", "1"), ("m", "8"))]
    assert points[0]["run_name"] == "sizes [model=s batch=1]" and {p["sweep_id"] for p in points} == {1}
    q = db_rows(standin, "SELECT * FROM quality ORDER BY id")
    assert [(r["value"], r["metric"], r["source"]) for r in q][0] == (0.70, "stand-in", "set_quality")

    # the renderers: the terminal table marks the frontiers, the HTML page has the charts
    text = run_cli(["compare", "--sweep", "1"], standin).stdout.decode()
    assert "J/gen tok" in text and "QT" in text and "(×" in text
    assert "energy J" not in text  # J per token stands for the energy where every point has tokens
    page = tmp_path / "sweep.html"
    assert run_cli(["compare", "--sweep", "1", "--html", str(page)], standin).returncode == 0
    html = page.read_text()
    assert html.count("<svg") == 2 and "Energy and quality" in html and "model=m batch=8" in html
    # a plain compare of two of the runs takes the quality they recorded
    res = run_cli(["compare", "--json", str(points[0]["run_id"]), str(points[3]["run_id"])], standin)
    assert [r["quality"] for r in json.loads(res.stdout)["rows"]] == [0.70, 0.80]


def test_points_without_tokens_show_their_energy(standin: dict[str, str], tmp_path: Path):
    """A sweep of a job that counts no tokens (training by steps, a power-limit sweep): the table shows each
    point's energy, exact, and its ratio, where the per-token columns can only say "–"."""
    res = run_cli(["sweep", "--param", "model=s,m", "--param", "batch=1", *CMD, "--no-tokens"], standin, timeout=120)
    assert res.returncode == 0, res.stderr.decode()
    ran = {r["model"]: (r["cpu_w"] + r["ram_w"]) * r["busy_s"] for r in log(standin)}
    text = run_cli(["compare", "--sweep", "last"], standin).stdout.decode()
    assert "energy J" in text
    rows = {line.split("│")[2].strip(): line.split("│")[5].strip() for line in text.splitlines()
            if line.startswith("│")}
    assert float(rows["model=s batch=1"]) == pytest.approx(ran["s"], rel=1e-3)  # 4 significant digits
    assert rows["model=m batch=1"] == f"{ran['m']:.4g} (×{ran['m'] / ran['s']:.3g})"
    page = tmp_path / "sweep.html"
    assert run_cli(["compare", "--sweep", "last", "--html", str(page)], standin).returncode == 0
    assert "<th>energy J</th>" in page.read_text()


def test_failed_point_is_recorded_and_the_sweep_goes_on(standin: dict[str, str]):
    res = run_cli(["sweep", "--param", "model=s,x,m", "--param", "batch=1", *CMD], standin, timeout=120)
    assert res.returncode == 1, res.stderr.decode()
    assert "1 of 3 point(s) failed: model=x batch=1" in res.stderr.decode()
    assert [r["model"] for r in log(standin)] == ["s", "m"]
    out = compare(standin)
    assert [p["status"] for p in out["points"]] == ["completed", "failed", "completed"]
    assert out["points"][1]["runs"][0]["exit_code"] == 3 and out["points"][1]["figures"]["energy_j"] is None
    assert out["status"] == "completed"  # every point ran
    (run,) = db_rows(standin, "SELECT r.status, r.exit_code FROM runs r JOIN sweep_points sp ON sp.run_id = r.id "
                              "WHERE sp.point_index = 1")
    assert (run["status"], run["exit_code"]) == ("failed", 3)
    # failed points are results, not gaps: a resume has nothing to do
    res = run_cli(["sweep", "--resume", "1"], standin, timeout=60)
    assert res.returncode == 1 and "0 run(s) to do" in res.stderr.decode()


def test_ctrl_c_keeps_finished_points_and_resume_runs_only_the_rest(standin: dict[str, str]):
    env = dict(standin, STANDIN_HOLD="m")
    proc = subprocess.Popen([*footprint_cmd(), "sweep", "--param", "model=s,m,x", "--param", "batch=1", *CMD],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    marker = Path(standin["STANDIN_MARKER"])
    deadline = time.monotonic() + 120
    while not marker.exists():  # point 2 is running (and holding)
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode() if proc.stderr else ""
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()
    assert "finish it with: footprint sweep --resume 1" in err.decode()
    out = compare(standin)
    assert out["status"] == "interrupted"
    assert [p["status"] for p in out["points"]] == ["completed", "interrupted", "missing"]
    assert [r["model"] for r in log(standin)] == ["s"]

    res = run_cli(["sweep", "--resume", "1"], standin, timeout=120)  # without the hold this time
    assert res.returncode == 1, res.stderr.decode()  # model x fails, as it should
    assert "2 run(s) to do" in res.stderr.decode()
    assert [r["model"] for r in log(standin)] == ["s", "m"]  # s is not run again
    out = compare(standin)
    assert out["status"] == "completed"
    assert [p["status"] for p in out["points"]] == ["completed", "completed", "failed"]
    assert [r["status"] for r in out["points"][1]["runs"]] == ["interrupted", "completed"]  # both kept
    assert out["points"][1]["figures"]["energy_j"]["n"] == 1  # the figures are the completed run's


def test_repeats_give_a_t_based_confidence_interval(standin: dict[str, str]):
    res = run_cli(["sweep", "--repeat", "3", "--cooldown", "0.1", "--param", "model=s", "--param", "batch=8", *CMD],
                  standin, timeout=120)
    assert res.returncode == 0, res.stderr.decode()
    ran = log(standin)
    assert len(ran) == 3
    per_token = [(r["cpu_w"] + r["ram_w"]) * r["busy_s"] / (TOKENS_PER_REQUEST * 8) for r in ran]
    (p,) = compare(standin)["points"]
    f = p["figures"]["j_per_token"]
    mean = sum(per_token) / 3
    sd = math.sqrt(sum((v - mean) ** 2 for v in per_token) / 2)
    assert f["n"] == 3 and f["mean"] == pytest.approx(mean, rel=1e-6)
    assert f["ci95"] == pytest.approx(4.303 * sd / math.sqrt(3), rel=1e-3, abs=1e-9)
    assert [r["repeat"] for r in p["runs"]] == [1, 2, 3]


def test_quality_from_a_file_the_command_writes(standin: dict[str, str], tmp_path: Path):
    qfile = str(tmp_path / "q-{model}.json")
    res = run_cli(["sweep", "--quality-from", qfile, "--baseline", "0.2", "--param", "model=s,m", "--param",
                   "batch=1", *CMD, "--quality-file"], standin, timeout=120)
    assert res.returncode == 0, res.stderr.decode()
    # --baseline reached every point's run: idle power measured first (0 W: nothing advances the counters then)
    assert [r["baseline_w"] for r in db_rows(standin, "SELECT baseline_w FROM devices ORDER BY id")] == [0.0] * 4
    assert json.loads((tmp_path / "q-m.json").read_text())["quality"] == 0.85
    rows = db_rows(standin, "SELECT value, metric, source FROM quality ORDER BY id")
    assert [(r["value"], r["metric"], r["source"]) for r in rows] == [
        (0.70, "stand-in", f"file:{tmp_path / 'q-s.json'}"), (0.85, "stand-in", f"file:{tmp_path / 'q-m.json'}")]
    assert [p["figures"]["quality"]["mean"] for p in compare(standin)["points"]] == [0.70, 0.85]


@pytest.mark.parametrize("args, message", [
    (["--param", "model", *CMD], "--param takes NAME=VALUE1,VALUE2"),
    (["--param", "model=", *CMD], "gives an empty value"),
    (["--param", "model=s", *CMD], r"unknown placeholder {batch}"),
    (["--param", "model=s"], "needs a command"),
    (["--resume", "7"], "no sweep with id '7'"),
    (["--resume", "1", "--param", "model=s"], "drop --param"),
    (["--repeat", "0", "--param", "model=s", "--param", "batch=1", *CMD], "--repeat must be 1 or more"),
])
def test_bad_input_is_one_line_and_exit_2(standin: dict[str, str], args: list[str], message: str):
    res = run_cli(["sweep", *args], standin)
    err = res.stderr.decode()
    assert res.returncode == 2, err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
    assert log(standin) == []  # nothing ran


def test_compare_bad_input(standin: dict[str, str]):
    assert run_cli(["sweep", "--param", "model=s", "--param", "batch=1", *CMD], standin).returncode == 0
    for args, message in ((["compare"], "needs runs to compare, or --sweep"),
                          (["compare", "--sweep", "9"], "no sweep with id '9'"),
                          (["compare", "1", "--sweep", "1"], "not both"),
                          (["compare", "1", "--within", "0.1"], "are for --sweep")):
        res = run_cli(args, standin)
        assert res.returncode == 2 and res.stderr.decode().count("\n") == 1, (args, res.stderr)
        assert message in res.stderr.decode(), (args, res.stderr)


def test_merge_copies_sweeps_once(standin: dict[str, str], tmp_path: Path):
    assert run_cli(["sweep", "--param", "model=s,m", "--param", "batch=1", *CMD], standin).returncode == 0
    merged = tmp_path / "merged.db"
    for _ in range(2):  # merging twice copies nothing twice
        res = run_cli(["merge", standin["FOOTPRINT_DB"], "-o", str(merged)], standin)
        assert res.returncode == 0, res.stderr.decode()
    original = compare(standin)
    copy = compare(dict(standin, FOOTPRINT_DB=str(merged)))
    assert copy["points"] == original["points"] and copy["name"] == original["name"]
    conn = sqlite3.connect(merged)
    assert conn.execute("SELECT COUNT(*) FROM sweeps").fetchone()[0] == 1
    assert conn.execute("SELECT COUNT(*) FROM quality").fetchone()[0] == 2
    conn.close()
