"""`footprint sweep`: one workload over a grid of configurations.

Each point of the grid (every combination of the `--param` values) is a `footprint run` of the command with
its `{name}` placeholders filled in; the values also reach the command as `FOOTPRINT_PARAM_<NAME>`. Points run
one after another, never together: two workloads on one machine would be billed each other's energy. With
`--repeat N` every point runs N times, in rounds (every point once, then again), so slow drift of the machine
(heat, other load) spreads over all points instead of biasing the last ones.

A point that fails is recorded as failed and the sweep goes on. A signal (Ctrl-C, SIGTERM, SIGHUP) reaches the
running point's command as it would from a shell (through `footprint run`, see footprint/child.py); the sweep
then stops after that point, keeps every point that finished, and says how to resume it: `--resume ID` runs
only the points that did not finish (never run, or interrupted). Failed points are results (a batch size that
runs out of memory) and are not run again.

Quality per point comes from the workload: `footprint.track()` joins the point's run and `run.set_quality(x)`
stores it, or the command writes `{"quality": x}` (or a bare number) to the file named by
`FOOTPRINT_QUALITY_FILE` (`--quality-from FILE` chooses that file; by default it is a temporary one).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time

from footprint.common.errors import FootprintError
from footprint.output import write_output

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable
    from types import FrameType
    from typing import Any

    from footprint.core.settings import Settings
    from footprint.core.store import Store

ENV_PARAM_PREFIX = "FOOTPRINT_PARAM_"
ENV_QUALITY_FILE = "FOOTPRINT_QUALITY_FILE"
ECONOMICS = ("country", "region", "carbon_intensity", "pue", "price_kwh", "price_hour", "currency")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# {name} is a placeholder; {{name}} stands for the text {name}; any other brace is left alone ({1: 2}, {})
_PLACEHOLDER = re.compile(r"(\{?)\{([A-Za-z_][A-Za-z0-9_]*)\}(\}?)")


# -- the grid: pure functions -----------------------------------------------------------------------------

def parse_params(items: list[str]) -> dict[str, list[str]]:
    """`--param NAME=V1,V2,...` items as {name: [values]}, in the order given."""
    params: dict[str, list[str]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        name = name.strip()
        if not sep:
            raise FootprintError(f"--param takes NAME=VALUE1,VALUE2,..., got '{item}'")
        if not _NAME.match(name):
            raise FootprintError(f"--param name must be letters, digits and _ (not starting with a digit), "
                                 f"got '{name}'")
        if name in params:
            raise FootprintError(f"--param {name} is given twice: list all its values in one --param")
        vals = [v.strip() for v in values.split(",")]
        if not values.strip() or any(not v for v in vals):
            raise FootprintError(f"--param {name} gives an empty value: '{item}' (values are separated by commas)")
        if len(set(vals)) != len(vals):
            raise FootprintError(f"--param {name} repeats a value: '{item}' (use --repeat to run a point again)")
        params[name] = vals
    return params


def placeholders(cmd: list[str]) -> list[str]:
    """The placeholder names the command uses, in order of first use."""
    seen: list[str] = []
    for arg in cmd:
        for m in _PLACEHOLDER.finditer(arg):
            if not (m.group(1) and m.group(3)) and m.group(2) not in seen:
                seen.append(m.group(2))
    return seen


def substitute(text: str, point: dict[str, str]) -> str:
    """`text` with each {name} replaced by the point's value ({{name}} gives {name})."""
    def fill(m: re.Match[str]) -> str:
        if m.group(1) and m.group(3):
            return "{" + m.group(2) + "}"
        if m.group(2) not in point:
            raise FootprintError(f"unknown placeholder {{{m.group(2)}}} (parameters: "
                                 f"{', '.join(point) or 'none'}; give it with --param {m.group(2)}=...)")
        return m.group(1) + point[m.group(2)] + m.group(3)

    return _PLACEHOLDER.sub(fill, text)


def env_name(name: str) -> str:
    return ENV_PARAM_PREFIX + name.upper()


def point_label(point: dict[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in point.items()) or "(no parameters)"


def read_quality(path: str, since: float) -> tuple[float, str | None] | None:
    """The quality a point's command wrote to `path`: a JSON number, or an object with a number under
    "quality" (and, optionally, a text under "metric"). None when there is no file; a FootprintError
    (reported as a warning) for a file older than the point, or one that holds something else."""
    try:
        st = os.stat(path)
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise FootprintError(f"cannot read quality file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if st.st_mtime < since - 1.0:  # a second of slack: file systems keep coarse times
        raise FootprintError(f"quality file {path} was not written by this point (it is older): ignored")
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    metric = None
    if isinstance(data, dict):
        metric = data.get("metric")
        data = data.get("quality")
    import math

    if isinstance(data, bool) or not isinstance(data, (int, float)) or not math.isfinite(data) \
            or not (metric is None or isinstance(metric, str)):
        raise FootprintError(f"quality file {path} holds neither a number nor {{\"quality\": NUMBER}}: ignored")
    return float(data), metric


# -- signals between points ---------------------------------------------------------------------------------

class _StopOnSignal:
    """Between points (cool-down, bookkeeping), a signal only asks the sweep to stop; while a point runs, its
    Supervisor takes the signals and passes them on to the point's command."""

    def __init__(self) -> None:
        from .child import FORWARDED

        self.signum: int | None = None
        self._old: dict[int, Any] = {}
        self._signals = [s for s in FORWARDED if signal.getsignal(s) not in (signal.SIG_IGN, None)]

    def _handler(self, signum: int, _frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum

    def __enter__(self) -> _StopOnSignal:
        for s in self._signals:
            self._old[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *_: object) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)

    def sleep(self, seconds: float) -> None:
        """Sleep, ending early on a signal."""
        end = time.monotonic() + seconds
        while self.signum is None and (left := end - time.monotonic()) > 0:
            time.sleep(min(left, 0.05))


# -- running a sweep ----------------------------------------------------------------------------------------

class Plan:
    """What one `footprint sweep` invocation runs: a new sweep, or the rest of one (`--resume`)."""

    def __init__(self, sweep_id: int, name: str, command: list[str], params: dict[str, list[str]], repeats: int,
                 options: dict[str, Any]) -> None:
        self.sweep_id = sweep_id
        self.name = name
        self.command = command
        self.params = params
        self.repeats = repeats
        self.options = options


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """The options every point's `footprint run` gets, stored with the sweep so that a resume uses the same."""
    quality_from = args.quality_from
    if quality_from is not None:
        quality_from = os.path.abspath(quality_from)
    return {"interval": args.interval, "baseline": args.baseline, "cooldown": args.cooldown,
            "kill_group": bool(args.kill_group), "quality_from": quality_from,
            "economics": {k: getattr(args, k) for k in ECONOMICS if getattr(args, k) is not None}}


def new_plan(store: Store, args: argparse.Namespace, default_name: Callable[[list[str]], str]) -> Plan:
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise FootprintError("footprint sweep needs a command: footprint sweep --param NAME=V1,V2 -- CMD ARGS...")
    params = parse_params(args.param)
    probe = {n: v[0] for n, v in params.items()}
    for arg in cmd:  # every placeholder named by a --param, before anything runs
        substitute(arg, probe)
    if args.quality_from is not None:
        substitute(args.quality_from, probe)
    repeats = 1 if args.repeat is None else args.repeat
    if repeats < 1:
        raise FootprintError(f"--repeat must be 1 or more, got {repeats}")
    name = args.name or default_name(cmd)
    sweep_id = store.create_sweep(name, created_at=time.time(), host=os.uname().nodename, pid=os.getpid(),
                                  command=cmd, params=params, repeats=repeats, options=_options(args))
    return Plan(sweep_id, name, cmd, params, repeats, _options(args))


def resume_plan(store: Store, args: argparse.Namespace) -> Plan:
    given = [flag for flag, value in (("a command", [c for c in args.cmd if c != "--"]), ("--param", args.param),
                                      ("--repeat", args.repeat), ("--name", args.name),
                                      ("--quality-from", args.quality_from), ("--baseline", args.baseline),
                                      ("--cooldown", args.cooldown)) if value]
    given += [f"--{k.replace('_', '-')}" for k in ECONOMICS if getattr(args, k) is not None]
    if given:
        raise FootprintError(f"--resume runs the sweep's own command with its own options: drop {', '.join(given)}")
    from footprint.core.sweep import sweep_status

    sweep_id = store.resolve_sweep(str(args.resume))
    row = store.sweep_row(sweep_id)
    assert row is not None
    if sweep_status(row) == "running":
        raise FootprintError(f"sweep {sweep_id} is still running (pid {row['pid']} on {row['host']})")
    return Plan(sweep_id, str(row["name"]), json.loads(row["command"]), json.loads(row["params"]),
                int(row["repeats"]), json.loads(row["options"] or "{}"))


def _run_command(plan: Plan, db: str, name: str, cmd: list[str]) -> list[str]:
    """The `footprint run` of one point."""
    o = plan.options
    out = [sys.executable, "-m", "footprint", "run", "--db", db, "--name", name, "--no-summary",
           "--interval", repr(float(o.get("interval") or 0.5))]
    if o.get("baseline"):
        out += ["--baseline", repr(float(o["baseline"]))]
    if o.get("kill_group"):
        out.append("--kill-group")
    for key, value in (o.get("economics") or {}).items():
        out += [f"--{key.replace('_', '-')}", str(value)]
    return [*out, "--", *cmd]


def _todo(plan: Plan, store: Store) -> list[tuple[int, dict[str, str], int]]:
    """(point index, point, repeat) still to run, in rounds: every point's first run, then every second one."""
    from footprint.core.sweep import grid

    done = {(int(r["point_index"]), int(r["repeat"])) for r in store.sweep_point_rows(plan.sweep_id)
            if r["status"] in ("completed", "failed")}
    points = grid(plan.params)
    return [(i, p, k) for k in range(1, plan.repeats + 1) for i, p in enumerate(points) if (i, k) not in done]


def run_point(plan: Plan, store: Store, db: str, index: int, point: dict[str, str], repeat: int,
              quality_path: str) -> tuple[str, int, int | None, list[int]]:
    """Run one point as a `footprint run` and record it. Returns (status, exit code, run id, signals taken)."""
    from .child import Interrupted, SpawnError, Supervisor

    cmd = [substitute(a, point) for a in plan.command]
    name = f"{plan.name} [{point_label(point)}]" + (f" #{repeat}" if plan.repeats > 1 else "")
    env = dict(os.environ, **{env_name(k): v for k, v in point.items()}, **{ENV_QUALITY_FILE: quality_path})
    after = store.last_run_id()
    started = time.time()
    code, run_id = 1, None
    sup = Supervisor()
    taken: list[int] = []
    try:
        with sup:
            sup.ready()
            if sup.held is None:
                try:
                    child = sup.spawn(_run_command(plan, db, name, cmd), env, pass_fds=())
                except SpawnError as exc:
                    print(exc, file=sys.stderr)
                    code = exc.code
                else:
                    code = sup.outcome(sup.wait())[1]
                    run_id = store.run_of_process(child.pid, os.uname().nodename, after)
    except Interrupted as exc:  # came while the signal handling was being set up: the point never started
        taken.append(exc.signum)
    taken += sup.signals
    ended = time.time()
    status = (store.run_status(run_id) or "failed") if run_id is not None else "failed"
    if run_id is None and (taken or sup.held is not None):
        status = "interrupted"
    if status == "running":  # its footprint run was killed before it could finish the run
        status = "interrupted" if taken else "failed"
    if run_id is not None and status == "completed":
        try:
            found = read_quality(quality_path, started)
        except FootprintError as exc:
            print(f"footprint: warning: {exc}", file=sys.stderr)
            found = None
        if found is not None:
            store.add_quality(run_id, ended, found[0], metric=found[1], source=f"file:{quality_path}")
    store.add_sweep_point(plan.sweep_id, run_id=run_id, point_index=index, point=point, repeat=repeat,
                          status=status, exit_code=code, started_at=started, ended_at=ended)
    return status, code, run_id, taken


def _progress(store: Store, n: int, total: int, point: dict[str, str], repeat: int, repeats: int, status: str,
              code: int, run_id: int | None) -> str:
    from footprint.core.model import load_run

    from .reports.console import fmt_j, fmt_s

    where = f"point {n}/{total} {point_label(point)}" + (f" (run {repeat} of {repeats})" if repeats > 1 else "")
    if run_id is None:
        return f"{where}: {status} (exit {code}), no run recorded"
    run = load_run(store, run_id, power=False)
    gen = run.tokens_by_kind.get("generated")
    per = f", {run.energy_j['total'] / gen:.4g} J/generated token" if gen and run.energy_j["total"] else ""
    return (f"{where}: {status}" + (f" (exit {code})" if code else "")
            + f" in {fmt_s(run.duration_s)}, {fmt_j(run.energy_j['total'])}{per} (run {run_id})")


def cmd_sweep(args: argparse.Namespace, default_name: Callable[[list[str]], str]) -> int:
    from footprint.core.store import Store, default_db_path

    from .child import guard_output

    guard_output()  # as in `footprint run`: our own writes never fail loudly
    if args.within is not None and args.within < 0:
        raise FootprintError(f"--within must be >= 0, got {args.within:g}")
    db = os.path.abspath(args.db or default_db_path())
    store = Store(db)
    plan = resume_plan(store, args) if args.resume is not None else new_plan(store, args, default_name)
    todo = _todo(plan, store)
    total = len(todo)
    verb = "resuming" if args.resume is not None else "running"
    print(f"footprint: {verb} sweep {plan.sweep_id} '{plan.name}': {total} run(s) to do", file=sys.stderr, flush=True)
    store.set_sweep_status(plan.sweep_id, "running", pid=os.getpid())
    tmp = tempfile.mkdtemp(prefix="footprint-sweep-")
    stopped: int | None = None
    cooldown = float(plan.options.get("cooldown") or 0.0)
    try:
        with _StopOnSignal() as stop:
            for n, (index, point, repeat) in enumerate(todo, 1):
                if n > 1 and cooldown:
                    stop.sleep(cooldown)
                if stop.signum is not None:
                    break
                template = plan.options.get("quality_from")
                qpath = substitute(template, point) if template else os.path.join(tmp, f"quality-{n}.json")
                status, code, run_id, taken = run_point(plan, store, db, index, point, repeat, qpath)
                print("footprint: " + _progress(store, n, total, point, repeat, plan.repeats, status, code, run_id),
                      file=sys.stderr, flush=True)
                if taken and stop.signum is None:
                    stop.signum = taken[0]
                if stop.signum is not None:
                    break
            stopped = stop.signum
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        left = len(_todo(plan, store))
        store.set_sweep_status(plan.sweep_id, "completed" if not left else "interrupted")
    return _finish(store, plan, args, stopped, left)


def _finish(store: Store, plan: Plan, args: argparse.Namespace, stopped: int | None, left: int) -> int:
    from footprint.core.sweep import load_sweep

    from .reports.sweep import render_sweep

    report = load_sweep(store, plan.sweep_id, within=args.within)
    sys.stderr.write(render_sweep(report, "console"))
    db_flag = f" --db {args.db}" if args.db else ""
    if left:
        print(f"footprint: sweep {plan.sweep_id} stopped with {left} run(s) to do; finish it with: "
              f"footprint sweep{db_flag} --resume {plan.sweep_id}", file=sys.stderr)
    print(f"footprint: compare it again with: footprint compare{db_flag} --sweep {plan.sweep_id} "
          "[--within MARGIN] [--json] [--html FILE]", file=sys.stderr)
    if stopped is not None:
        return 128 + stopped
    failed = [p for p in report.points if p.status == "failed"]
    if failed:
        print(f"footprint: {len(failed)} of {len(report.points)} point(s) failed: "
              + "; ".join(p.label() for p in failed), file=sys.stderr)
        return 1
    return 0


# -- footprint compare --sweep ------------------------------------------------------------------------------

def cmd_compare_sweep(args: argparse.Namespace, settings: Settings) -> int:
    from footprint.core.store import Store, default_db_path
    from footprint.core.sweep import load_sweep

    from .reports.sweep import render_sweep

    if args.runs:
        raise FootprintError("give runs or --sweep ID, not both")
    if args.quality:
        raise FootprintError("--quality is for runs; a sweep's quality comes from its points' runs")
    if args.within is not None and args.within < 0:
        raise FootprintError(f"--within must be >= 0, got {args.within:g}")
    store = Store(args.db or default_db_path(), create=False, readonly=True)
    report = load_sweep(store, store.resolve_sweep(args.sweep), settings, within=args.within)
    if args.html:
        write_output(render_sweep(report, "html"), args.html)
        if not args.json:
            return 0
    sys.stdout.write(render_sweep(report, "json" if args.json else "console"))
    return 0
