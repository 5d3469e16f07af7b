"""GPU power limits: the tuner and `footprint run --power-limit`, against the stand-in NVML (tests/fakes/fake_nvml.c,
loaded by the real pynvml) whose GPUs draw min(demand, limit), and a stand-in training loop whose steps take
longer at lower limits (tests/fakes/limit_train.py). The stand-in's clock is a file the loop advances, so every
energy and time below is exact, and the true optimum of each objective is known in closed form."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from footprint.common import objective as obj
from tests.conftest import FAKES, nvml_env, report_json, run_cli
from tests.fakes.limit_train import step_s

PY = sys.executable
DEMAND_W = 800.0  # above every limit: the GPU draws exactly its limit
GRID = [700.0, 600.0, 500.0, 400.0, 300.0, 200.0]  # the stand-in's 200-700 W range, 100 W apart
PROFILE_STEPS = 3
NO_PERMISSION = "footprint: cannot set the GPU power limit (needs root or CAP_SYS_ADMIN)"


def limit_env(clean_env: dict[str, str], lib: Path, tmp_path: Path, *, allow: bool = True, gpus: int = 1,
              time_file: bool = True) -> dict[str, str]:
    state = tmp_path / "gpu-state"
    state.mkdir(exist_ok=True)
    settings: dict[str, Any] = {"gpus": gpus, "power": DEMAND_W, "state": state}
    if allow:
        settings["allow_set"] = 1
    env = nvml_env(clean_env, lib, **settings)
    if time_file:
        clock = tmp_path / "clock"
        clock.write_text(f"{float(env['FAKE_NVML_T0']) + 100:.6f}")
        env["TEST_TIME_FILE"] = str(clock)
    return env


def limit_now(tmp_path: Path, gpu: int = 0) -> float | None:
    """The limit in the stand-in's shared state (what any process on the machine would read), W."""
    f = tmp_path / "gpu-state" / f"gpu{gpu}"
    return int(f.read_text().split()[0]) / 1000.0 if f.exists() else None


def train(env: dict[str, str], *args: str, steps: int = 40, fake_time: bool = True,
          check: bool = True) -> subprocess.CompletedProcess[bytes]:
    cmd = [PY, str(FAKES / "limit_train.py"), str(steps), "--profile-steps", str(PROFILE_STEPS), *args]
    if fake_time:
        cmd += ["--time-file", env["TEST_TIME_FILE"]]
    res = subprocess.run(cmd, env=env, capture_output=True, timeout=120)
    if check:
        assert res.returncode == 0, res.stderr.decode()
    return res


def out_json(res: subprocess.CompletedProcess[bytes]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(res.stdout.decode().strip().splitlines()[-1])
    return data


# -- the objective's maths --------------------------------------------------------------------------

def test_objective_maths():
    assert obj.zeus_cost(100.0, 2.0, eta=0.25, max_power_w=300.0) == 0.25 * 100 + 0.75 * 300 * 2
    ps = [obj.LimitProfile(300, 10, 3000, 10.0, 2), obj.LimitProfile(200, 10, 2400, 12.0, 2),
          obj.LimitProfile(100, 10, 2500, 25.0, 2)]
    assert [ps[obj.best(ps, o)].limit_w for o in ("energy", "time")] == [200, 300]
    # Zeus: max_power is the highest limit times the GPUs: 600 W
    assert obj.scores(ps, "cost", eta=0.5) == [0.5 * 300 + 0.5 * 600 * 1.0, 0.5 * 240 + 0.5 * 600 * 1.2,
                                              0.5 * 250 + 0.5 * 600 * 2.5]
    assert obj.scores(ps, "slowdown", max_slowdown=0.1) == [300, None, None]
    assert ps[obj.best(ps, "slowdown", max_slowdown=0.2)].limit_w == 200
    assert obj.best([obj.LimitProfile(300, 1, 5, 1), obj.LimitProfile(200, 1, 5, 1)], "energy") == 1  # tie: lower
    assert obj.limits_to_profile(200, 700, 100) == GRID
    assert obj.limits_to_profile(210, 300, 25) == [300, 275, 250, 225, 210]
    with pytest.raises(ValueError, match="eta"):
        obj.scores(ps, "cost", eta=1.5)


# -- the stand-in NVML's limits ----------------------------------------------------------------------

STAND_IN = """
import json, os, sys, pynvml
pynvml.nvmlInit()
h = pynvml.nvmlDeviceGetHandleByIndex(0)
out = {"limit": pynvml.nvmlDeviceGetPowerManagementLimit(h),
       "default": pynvml.nvmlDeviceGetPowerManagementDefaultLimit(h),
       "range": pynvml.nvmlDeviceGetPowerManagementLimitConstraints(h)}
clock = os.environ["FAKE_NVML_TIME_FILE"]
def at(t):
    open(clock, "w").write(repr(t))
    return pynvml.nvmlDeviceGetTotalEnergyConsumption(h)
t = float(open(clock).read())
e0 = at(t)
e1 = at(t + 2.0)
for w in sys.argv[1:]:
    try:
        pynvml.nvmlDeviceSetPowerManagementLimit(h, int(w))
        out[w] = "ok"
    except pynvml.NVMLError as exc:
        out[w] = str(exc)
e2 = at(t + 5.0)
out.update(first=e1 - e0, second=e2 - e1, instant=pynvml.nvmlDeviceGetFieldValues(h, [186])[0].value.uiVal)
print(json.dumps(out))
"""


def stand_in(env: dict[str, str], *watts: int) -> dict[str, Any]:
    env = dict(env, FAKE_NVML_TIME_FILE=env["TEST_TIME_FILE"])
    res = subprocess.run([PY, "-c", STAND_IN, *map(str, watts)], env=env, capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr.decode()
    data: dict[str, Any] = json.loads(res.stdout)
    return data


def test_stand_in_limits(nvml_lib_dir: Path, clean_env: dict[str, str], tmp_path: Path):
    denied = stand_in(limit_env(clean_env, nvml_lib_dir, tmp_path, allow=False), 300000)
    assert denied["300000"] == "Insufficient Permissions"
    assert (denied["limit"], denied["default"], denied["range"]) == (700000, 700000, [200000, 700000])
    assert limit_now(tmp_path) is None  # nothing changed

    env = limit_env(clean_env, nvml_lib_dir, tmp_path)
    got = stand_in(env, 100000, 300000)
    assert got["100000"] == "Invalid Argument" and got["300000"] == "ok"
    # 2 s at the default 700 W (the demand is 800 W), then 3 s at 300 W: mJ, exactly
    assert (got["first"], got["second"], got["instant"]) == (1_400_000, 900_000, 300_000)
    again = stand_in(env)  # another process sees the limit the first one set: it is the GPU's
    assert again["limit"] == 300000 and again["second"] == 900_000


# -- the tuner ---------------------------------------------------------------------------------------

def true_optimum(objective: str, eta: float = 0.5, max_slowdown: float = 0.1) -> float:
    """The optimum in closed form: per step, the GPU draws L (its limit, below the demand) for step_s(L)."""
    t = {L: step_s(L) for L in GRID}
    e = {L: L * t[L] for L in GRID}
    if objective == "energy":
        return min(GRID, key=e.__getitem__)
    if objective == "time":
        return min(GRID, key=t.__getitem__)
    if objective == "cost":
        return min(GRID, key=lambda L: eta * e[L] + (1 - eta) * max(GRID) * t[L])
    fastest = min(t.values())
    return min((L for L in GRID if t[L] <= (1 + max_slowdown) * fastest), key=e.__getitem__)


@pytest.mark.parametrize("args, expected", [
    (["--objective", "energy"], 400.0),
    (["--objective", "time"], 700.0),
    (["--objective", "cost", "--eta", "0.5"], 700.0),
    (["--objective", "cost", "--eta", "0.7"], 400.0),
    (["--objective", "slowdown", "--max-slowdown", "0.2"], 500.0),
    (["--objective", "slowdown", "--max-slowdown", "0.1"], 600.0),
])
def test_tuner_finds_the_known_optimum(nvml_lib_dir: Path, clean_env: dict[str, str], tmp_path: Path,
                                       args: list[str], expected: float):
    knobs = {"eta": 0.5, "max_slowdown": 0.1}
    for k in knobs:
        flag = "--" + k.replace("_", "-")
        if flag in args:
            knobs[k] = float(args[args.index(flag) + 1])
    assert true_optimum(args[1], **knobs) == expected  # the model puts each objective's optimum there
    env = limit_env(clean_env, nvml_lib_dir, tmp_path)
    res = train(env, *args, "--track")
    out = out_json(res)
    assert out["state"] == "done" and out["chosen_w"] == expected
    assert out["limit_at_end_w"] == expected  # kept for the rest of training
    assert out["limit_after_close_w"] == 700.0 and limit_now(tmp_path) == 700.0  # and the original is back
    assert [p["limit_w"] for p in out["profiles"]] == GRID
    for p in out["profiles"]:
        exact_t = PROFILE_STEPS * step_s(p["limit_w"])
        assert p["time_s"] == pytest.approx(exact_t, rel=1e-5)  # the clock file keeps ~1e-7 s at epoch times
        assert p["energy_j"] == pytest.approx(p["limit_w"] * exact_t, rel=1e-5)  # NVML's counter: mJ
    assert NO_PERMISSION not in res.stderr.decode()
    assert f"GPU power limit tuned for {obj.describe(args[1], knobs['eta'], knobs['max_slowdown'])}: " \
           f"{expected:g} W on gpu:0 (6 limits profiled)" in res.stderr.decode()

    with sqlite3.connect(env["FOOTPRINT_DB"]) as db:
        rows = db.execute("SELECT limit_w, steps, energy_j, time_s, gpus, chosen, source FROM power_limits "
                          "WHERE run_id = ? ORDER BY id", (out["run_id"],)).fetchall()
        changes = db.execute("SELECT idx, limit_w, previous_w, action, actor FROM power_limit_changes "
                             "ORDER BY id").fetchall()
    assert [(r[0], r[1], r[4], r[5], r[6]) for r in rows] == [
        (L, PROFILE_STEPS, 1, int(expected == L), "profiled") for L in GRID]
    assert changes[0] == (0, 700.0, 700.0, "set", "tuner")
    assert changes[-1] == (0, 700.0, expected, "restored", "tuner")
    report = " ".join(run_cli(["report", str(out["run_id"])], env).stdout.decode().split())  # as if unwrapped
    what = obj.describe(args[1], knobs["eta"], knobs["max_slowdown"])
    assert f"GPU power limit {expected:g} W, tuned for {what}, 6 limits profiled; original restored" in report
    per_step = {L: f"{PROFILE_STEPS * L * step_s(L) / PROFILE_STEPS:.2f} J" for L in GRID}
    assert all(f"{L:g} W" in report and per_step[L] in report for L in GRID)


def test_sigkill_of_the_workload_restores_the_limit(nvml_lib_dir: Path, clean_env: dict[str, str], tmp_path: Path):
    env = limit_env(clean_env, nvml_lib_dir, tmp_path, time_file=False)
    # real time here: the watchdog is another process, on the machine's clock; step 6 is 600 W's warm-up
    res = train(env, "--track", "--kill-at", "6", fake_time=False, check=False)
    assert res.returncode == -9
    assert json.loads(res.stdout.decode().splitlines()[0]) == {"killing": 6, "limit_w": 600.0}
    deadline = time.monotonic() + 20
    while limit_now(tmp_path) != 700.0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert limit_now(tmp_path) == 700.0
    with sqlite3.connect(env["FOOTPRINT_DB"]) as db:
        while time.monotonic() < deadline:
            last = db.execute("SELECT idx, limit_w, previous_w, action, actor, restore_command FROM "
                              "power_limit_changes ORDER BY id DESC LIMIT 1").fetchone()
            if last is not None and last[4] == "watchdog":
                break
            time.sleep(0.05)
    assert last == (0, 700.0, 600.0, "restored", "watchdog", "sudo nvidia-smi -i 0 -pl 700")
    report = report_json(env)["runs"][0]
    assert report["power_limits"]["restored"] is True and report["power_limits"]["chosen_w"] is None
    assert not any("power limit" in w for w in report["warnings"])


def test_no_permission_says_one_line_and_training_goes_on(nvml_lib_dir: Path, clean_env: dict[str, str],
                                                          tmp_path: Path):
    env = limit_env(clean_env, nvml_lib_dir, tmp_path, allow=False)
    res = train(env, "--objective", "energy")
    out = out_json(res)
    assert out["state"] == "off" and out["chosen_w"] is None and out["profiles"] == []
    lines = [ln for ln in res.stderr.decode().splitlines() if ln.startswith("footprint:")]
    assert lines == [f"{NO_PERMISSION}: gpu:0: Insufficient Permissions; measuring without it"]
    assert out["limit_at_end_w"] == 700.0 and limit_now(tmp_path) is None


def test_saved_profile_is_reused(nvml_lib_dir: Path, clean_env: dict[str, str], tmp_path: Path):
    env = limit_env(clean_env, nvml_lib_dir, tmp_path)
    profile = tmp_path / "profile.json"
    first = out_json(train(env, "--objective", "energy", "--profile", str(profile)))
    saved = json.loads(profile.read_text())
    assert saved["chosen_w"] == 400.0 and saved["measurements"] == first["profiles"]
    # the same measurements, chosen again for another objective: no profiling, the limit is set at once
    res = train(env, "--objective", "time", "--profile", str(profile), "--track", steps=2)
    second = out_json(res)
    assert second["chosen_w"] == 700.0 and second["profiles"] == first["profiles"]
    assert "from profile:" in res.stderr.decode()
    with sqlite3.connect(env["FOOTPRINT_DB"]) as db:
        sources = {r[0] for r in db.execute("SELECT source FROM power_limits WHERE run_id = ?", (second["run_id"],))}
    assert sources == {f"profile:{profile}"}
    profile.write_text("{}")
    bad = train(env, "--profile", str(profile), check=False)
    assert bad.returncode != 0 and b"is not a usable power-limit profile" in bad.stderr


# -- footprint run --power-limit --------------------------------------------------------------------

SHOW_LIMITS = """
import json, os, signal, sys, time, pynvml
pynvml.nvmlInit()
print(json.dumps([pynvml.nvmlDeviceGetPowerManagementLimit(pynvml.nvmlDeviceGetHandleByIndex(i)) / 1000
                  for i in range(pynvml.nvmlDeviceGetCount())]), flush=True)
time.sleep(float(sys.argv[1]))
if sys.argv[2] == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
sys.exit(int(sys.argv[2]))
"""


def run_limited(env: dict[str, str], watts: str, *child: str) -> subprocess.CompletedProcess[bytes]:
    return run_cli(["run", "--interval", "0.05", "--power-limit", watts, "--", PY, "-c", SHOW_LIMITS, *child], env)


def test_footprint_run_sets_the_limit_and_restores_it(nvml_lib_dir: Path, clean_env: dict[str, str], tmp_path: Path):
    env = limit_env(clean_env, nvml_lib_dir, tmp_path, gpus=2, time_file=False)
    res = run_limited(env, "300", "1.0", "3")
    assert res.returncode == 3, res.stderr.decode()  # the command's own exit code
    assert json.loads(res.stdout) == [300.0, 300.0]  # the command ran under the limit
    assert limit_now(tmp_path, 0) == limit_now(tmp_path, 1) == 700.0
    err = res.stderr.decode()
    assert ("footprint: GPU power limit set to 300 W on gpu:0, gpu:1 (was 700 W; put back at the end, by hand: "
            "sudo nvidia-smi -i 0 -pl 700; sudo nvidia-smi -i 1 -pl 700)") in err
    assert "footprint: GPU power limit restored to 700 W on gpu:0, gpu:1" in err
    run = report_json(env)["runs"][0]
    with sqlite3.connect(env["FOOTPRINT_DB"]) as db:
        changes = db.execute("SELECT idx, t, limit_w, action, actor FROM power_limit_changes ORDER BY id").fetchall()
    assert [(c[0], c[2], c[3], c[4]) for c in changes] == [
        (0, 300.0, "set", "footprint run"), (1, 300.0, "set", "footprint run"),
        (0, 700.0, "restored", "footprint run"), (1, 700.0, "restored", "footprint run")]
    for gpu in (0, 1):
        t_set, t_back = (c[1] for c in changes if c[0] == gpu)
        a, b = run["started_at"], run["ended_at"]
        exact = 700.0 * (t_set - a) + 300.0 * (t_back - t_set) + 700.0 * (b - t_back)  # min(800 W, limit)
        device = next(d for d in run["devices"] if d["kind"] == "gpu" and d["index"] == gpu)
        assert device["energy_j"] == pytest.approx(exact, rel=0.01)
    assert run["power_limits"]["chosen_w"] == 300.0 and run["power_limits"]["source"] == "--power-limit"
    assert run["power_limits"]["restored"] is True and run["power_limits"]["profiled"] == []
    console = run_cli(["report"], env).stdout.decode()
    assert "GPU power limit 300 W, set by --power-limit; original restored" in console


def test_footprint_run_restores_after_sigkill_of_the_command(nvml_lib_dir: Path, clean_env: dict[str, str],
                                                            tmp_path: Path):
    env = limit_env(clean_env, nvml_lib_dir, tmp_path, time_file=False)
    res = run_limited(env, "250", "0.2", "kill")
    assert res.returncode == 137 and json.loads(res.stdout) == [250.0]
    assert limit_now(tmp_path) == 700.0  # footprint outlived its command and put the limit back


def test_footprint_run_without_permission_runs_the_command_as_is(nvml_lib_dir: Path, clean_env: dict[str, str],
                                                                 tmp_path: Path):
    env = limit_env(clean_env, nvml_lib_dir, tmp_path, allow=False, time_file=False)
    res = run_limited(env, "300", "0", "0")
    assert res.returncode == 0 and json.loads(res.stdout) == [700.0]
    assert [ln for ln in res.stderr.decode().splitlines() if "power limit" in ln] == [
        f"{NO_PERMISSION}: gpu:0: Insufficient Permissions; measuring without it"]
    assert "power_limits" not in report_json(env)["runs"][0] or report_json(env)["runs"][0]["power_limits"] is None


def test_footprint_run_refuses_a_limit_out_of_range(nvml_lib_dir: Path, clean_env: dict[str, str], tmp_path: Path):
    env = limit_env(clean_env, nvml_lib_dir, tmp_path, time_file=False)
    res = run_limited(env, "150", "0", "0")
    assert res.returncode == 2 and res.stdout == b""  # the command did not run
    assert res.stderr.decode().splitlines()[-1] == \
        "footprint: error: power limit 150 W is outside what gpu:0 accepts (200-700 W)"
    assert limit_now(tmp_path) is None


# -- the trainers' callbacks -----------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("trainer", ["hf", "lightning"])
def test_trainer_callbacks_tune_and_restore(nvml_lib_dir: Path, clean_env: dict[str, str], tmp_path: Path,
                                            trainer: str):
    pytest.importorskip("transformers" if trainer == "hf" else "lightning")
    env = limit_env(clean_env, nvml_lib_dir, tmp_path)
    res = subprocess.run([PY, str(FAKES / "limit_trainers.py"), trainer, env["TEST_TIME_FILE"]], env=env,
                         capture_output=True, timeout=300)
    assert res.returncode == 0, res.stderr.decode()
    out = out_json(res)
    assert out["state"] == "done" and out["chosen_w"] == true_optimum("energy") == 400.0
    # every step ran under the limit being profiled (1 warm-up + 3 measured each), then under the chosen one
    assert out["seen"][:24] == [L for L in GRID for _ in range(4)] and set(out["seen"][24:]) == {400.0}
    for p in out["profiles"]:
        assert p["energy_j"] == pytest.approx(p["limit_w"] * PROFILE_STEPS * step_s(p["limit_w"]), rel=1e-4)
    assert out["after_w"] == 700.0 and limit_now(tmp_path) == 700.0


# -- a distributed job ------------------------------------------------------------------------------

@pytest.mark.slow
def test_ranks_apply_the_same_limit_summing_energy_and_taking_the_slowest_time(nvml_lib_dir: Path,
                                                                               clean_env: dict[str, str],
                                                                               tmp_path: Path):
    pytest.importorskip("torch")
    env = limit_env(clean_env, nvml_lib_dir, tmp_path, gpus=2)
    for rank in (0, 1):  # each rank's GPU on a clock of its own (the rank's steps drive it)
        Path(f"{env['TEST_TIME_FILE']}.{rank}").write_text(Path(env["TEST_TIME_FILE"]).read_text())
    eta = 0.6
    res = subprocess.run([PY, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          str(FAKES / "limit_train.py"), "40", "--distributed", "--objective", "cost", "--eta",
                          str(eta), "--profile-steps", str(PROFILE_STEPS), "--time-file", env["TEST_TIME_FILE"]],
                         env=env, capture_output=True, timeout=300, cwd=tmp_path)
    assert res.returncode == 0, res.stderr.decode()[-3000:]
    outs = [json.loads(line) for line in res.stdout.decode().splitlines() if line.startswith('{"chosen_w"')]
    assert len(outs) == 2
    # rank 1's steps take 1.25 times as long: energy adds both GPUs', time is rank 1's
    t = {L: PROFILE_STEPS * step_s(L) for L in GRID}
    energy = {L: L * t[L] * (1.0 + 1.25) for L in GRID}
    time_s = {L: t[L] * 1.25 for L in GRID}
    cost = {L: eta * energy[L] + (1 - eta) * max(GRID) * 2 * time_s[L] for L in GRID}  # Zeus: max power x GPUs
    expected = min(GRID, key=cost.__getitem__)
    for out in outs:
        assert out["chosen_w"] == expected and out["limit_at_end_w"] == expected
        assert [p["limit_w"] for p in out["profiles"]] == GRID and {p["gpus"] for p in out["profiles"]} == {2}
        for p in out["profiles"]:
            assert p["energy_j"] == pytest.approx(energy[p["limit_w"]], rel=1e-5)
            assert p["time_s"] == pytest.approx(time_s[p["limit_w"]], rel=1e-5)
    assert limit_now(tmp_path, 0) == limit_now(tmp_path, 1) == 700.0


def test_power_limits_travel_with_merge(nvml_lib_dir: Path, clean_env: dict[str, str], tmp_path: Path):
    env = limit_env(clean_env, nvml_lib_dir, tmp_path, time_file=False)
    assert run_limited(env, "300", "0", "0").returncode == 0
    old = tmp_path / "old.db"  # a DB from before these tables: merging it still works
    assert run_cli(["run", "--db", str(old), "--", PY, "-c", "pass"], env).returncode == 0
    with sqlite3.connect(old) as db:
        db.execute("DROP TABLE power_limits")
        db.execute("DROP TABLE power_limit_changes")
    out = tmp_path / "merged.db"
    res = run_cli(["merge", str(old), env["FOOTPRINT_DB"], "-o", str(out)], env)
    assert res.returncode == 0, res.stderr.decode()
    runs = report_json(dict(env, FOOTPRINT_DB=str(out)), "1", "2")["runs"]
    assert "power_limits" not in runs[0]
    assert runs[1]["power_limits"]["chosen_w"] == 300.0 and runs[1]["power_limits"]["restored"] is True
    assert [c["action"] for c in runs[1]["power_limits"]["changes"]] == ["set", "restored"]


def test_tuner_needs_an_energy_counter(nvml_lib_dir: Path, clean_env: dict[str, str], tmp_path: Path):
    env = dict(limit_env(clean_env, nvml_lib_dir, tmp_path), FAKE_NVML_NO_ENERGY="1")  # a pre-Volta GPU
    res = train(env, "--objective", "energy")
    assert out_json(res)["state"] == "off" and limit_now(tmp_path) is None
    assert "footprint: power-limit tuning off: gpu:0 has no energy counter" in res.stderr.decode()


def test_footprint_run_restores_after_sigterm(nvml_lib_dir: Path, clean_env: dict[str, str], tmp_path: Path):
    import signal

    from tests.conftest import footprint_cmd

    env = limit_env(clean_env, nvml_lib_dir, tmp_path, time_file=False)
    proc = subprocess.Popen(footprint_cmd() + ["run", "--power-limit", "350", "--", PY, "-c", SHOW_LIMITS, "30", "0"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    assert json.loads(proc.stdout.readline()) == [350.0]  # the command is running under the limit
    proc.send_signal(signal.SIGTERM)  # footprint passes it on; the command dies of it
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err.decode()
    assert limit_now(tmp_path) == 700.0 and b"GPU power limit restored to 700 W on gpu:0" in err
