"""The `footprint` command: run, report, runs, probes."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys

from footprint.common.errors import FootprintError

TYPE_CHECKING = False  # typing costs start-up time, paid by every `footprint run`
if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import FrameType
    from typing import Any

EPILOG = "Data goes to ./footprint.db unless --db or FOOTPRINT_DB says otherwise."


def _float_arg(text: str, *, positive: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if not (value > 0 if positive else value >= 0) or value == float("inf"):  # NaN fails both comparisons
        raise argparse.ArgumentTypeError(
            f"expected a {'positive number' if positive else 'number >= 0'}, got '{text}'")
    return value


def _positive_float(text: str) -> float:
    return _float_arg(text, positive=True)


def _non_negative_float(text: str) -> float:
    return _float_arg(text, positive=False)


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got '{text}'")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # one line, no usage dump: the usage is one `--help` away
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _economics_options(p: argparse.ArgumentParser, *, at_report: bool = False) -> None:
    when = " (overrides what the run recorded)" if at_report else ""
    p.add_argument("--country", help=f"ISO 3166 alpha-3 code of the grid, for CO2e (e.g. FRA){when}")
    p.add_argument("--region", help=f"cloud region as provider:region, e.g. gcp:europe-west1{when}")
    p.add_argument("--carbon-intensity", type=_non_negative_float, metavar="G_PER_KWH",
                   help=f"grid carbon intensity in g CO2e/kWh (overrides --country and --region){when}")
    p.add_argument("--pue", type=_pue, help=f"data-centre PUE, >= 1 (default 1.0: hardware only){when}")
    p.add_argument("--price-kwh", type=_non_negative_float, metavar="PRICE",
                   help=f"electricity price per kWh{when}")
    p.add_argument("--price-hour", type=_non_negative_float, metavar="PRICE",
                   help=f"instance price per hour{when}")
    p.add_argument("--currency", help=f"currency code for prices (default USD){when}")


def _pue(text: str) -> float:
    value = _non_negative_float(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"a PUE is >= 1, got '{text}'")
    return value


def _settings(args: argparse.Namespace) -> Any:
    from footprint.core.model import Settings

    return Settings(country=args.country, region=args.region, carbon_intensity=args.carbon_intensity, pue=args.pue,
                    price_kwh=args.price_kwh, price_hour=args.price_hour, currency=args.currency)


COMMANDS = ("run", "report", "compare", "merge", "watch", "runs", "probes")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole CLI, or with `only` just that command's subparser: building every subparser (argparse
    looks up translations for each) was the largest part of a short `footprint run`'s overhead."""
    p = _Parser(prog="footprint", description="Energy, carbon and cost per token for ML workloads.",
                epilog=EPILOG)
    p.add_argument("--version", action="version", version="footprint 0.1.0")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    if only in (None, "run"):
        r = sub.add_parser("run", help="run a command and profile it",
                           description="Run CMD (no shell) and profile it until it exits; stdin/stdout/stderr pass "
                                       "through, the summary goes to stderr, and footprint exits with CMD's code. "
                                       "footprint.track() inside CMD joins this run.", epilog=EPILOG)
        r.add_argument("--db", help="SQLite file to record to (default: $FOOTPRINT_DB or ./footprint.db)")
        r.add_argument("--name", help="run name (default: the command's name)")
        r.add_argument("--interval", type=_positive_float, default=0.5,
                       help="seconds between reads of the hardware counters (default 0.5); estimates are read at "
                            "run and span edges and every 2 s")
        _economics_options(r)
        r.add_argument("--baseline", type=_positive_float, metavar="SECONDS",
                       help="measure idle power for this long before starting CMD, to report dynamic energy")
        r.add_argument("--tokens", type=_non_negative_int, metavar="N",
                       help="tokens the command processes, for J/token when it does not count them itself")
        r.add_argument("--prometheus", metavar="[HOST:]PORT",
                       help="serve live metrics in Prometheus text format (host defaults to 127.0.0.1)")
        r.add_argument("--prometheus-linger", type=_non_negative_float, default=0.0, metavar="SECONDS",
                       help="keep serving the final metrics this long after CMD exits (default 0)")
        r.add_argument("--no-summary", action="store_true", help="do not print the summary")
        r.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ARGS", help="the command to run")

    if only in (None, "report"):
        rep = sub.add_parser("report", help="show recorded runs (default: the last one)",
                             description="Show one or more recorded runs: ids, names, or 'last'.", epilog=EPILOG)
        rep.add_argument("runs", nargs="*", metavar="RUN", help="run id or name (default: last)")
        rep.add_argument("--db", help="SQLite file to read (default: $FOOTPRINT_DB or ./footprint.db)")
        rep.add_argument("--json", action="store_true", help="print the JSON contract instead of the summary")
        rep.add_argument("--format", help="renderer by name: console, json, csv, csv-spans, emissions-csv, html")
        rep.add_argument("-o", "--output", help="write to this file; the renderer follows its extension")
        rep.add_argument("--html", metavar="FILE", help="write a self-contained HTML report to FILE")
        rep.add_argument("--job", nargs="?", const="", metavar="JOB_ID",
                         help="one job-wide view of a distributed job's runs (default: the last run's job)")
        _economics_options(rep, at_report=True)

    if only in (None, "compare"):
        cmp = sub.add_parser("compare", help="compare runs side by side, with ratios to the first",
                             description="Energy, J/token, CO2e and cost per token, tokens/s and an optional quality "
                                         "score, each with its ratio to the first run.", epilog=EPILOG)
        cmp.add_argument("runs", nargs="+", metavar="RUN", help="run ids or names; the first is the reference")
        cmp.add_argument("--db", help="SQLite file to read (default: $FOOTPRINT_DB or ./footprint.db)")
        cmp.add_argument("--quality", action="append", default=[], metavar="RUN=VALUE",
                         help="a quality score for a run (accuracy, win rate...), repeatable")
        cmp.add_argument("--json", action="store_true", help="print JSON")
        _economics_options(cmp, at_report=True)

    if only in (None, "merge"):
        m = sub.add_parser("merge", help="combine per-node DBs into one",
                           description="Copy every run of the given DBs into OUTPUT, e.g. the per-node files of a "
                                       "distributed job; runs already in OUTPUT are skipped.", epilog=EPILOG)
        m.add_argument("sources", nargs="+", metavar="DB", help="footprint DBs to read")
        m.add_argument("-o", "--output", required=True, help="the DB to write (created if missing)")

    if only in (None, "watch"):
        w = sub.add_parser("watch", help="live power and energy of running runs",
                           description="Show the runs being recorded in a DB, updating in place, while another "
                                       "process writes it. Ctrl-C to stop.", epilog=EPILOG)
        w.add_argument("--db", help="SQLite file to read (default: $FOOTPRINT_DB or ./footprint.db)")
        w.add_argument("--every", type=_positive_float, default=1.0, help="refresh period in seconds (default 1)")
        w.add_argument("--once", action="store_true", help="print one frame and exit")

    if only in (None, "runs"):
        ls = sub.add_parser("runs", help="list recorded runs", description="List recorded runs, newest first.",
                            epilog=EPILOG)
        ls.add_argument("--db", help="SQLite file to read (default: $FOOTPRINT_DB or ./footprint.db)")
        ls.add_argument("--limit", type=int, default=20, help="how many runs (default 20)")

    if only in (None, "probes"):
        sub.add_parser("probes", help="say which probes work here and why not",
                       description="Which energy sources this machine offers, and how to enable missing ones.")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv[0] if argv and argv[0] in COMMANDS else None)
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            return cmd_run(args)
        if args.command == "report":
            return cmd_report(args)
        if args.command == "runs":
            return cmd_runs(args)
        if args.command == "probes":
            return cmd_probes()
        if args.command == "merge":
            from .merge import merge

            copied, skipped = merge(args.sources, args.output)
            print(f"footprint: merged {copied} run(s) into {args.output}"
                  + (f", skipped {skipped} already there" if skipped else ""), file=sys.stderr)
            return 0
        if args.command == "compare":
            return cmd_compare(args)
        if args.command == "watch":
            from .watch import watch

            return watch(args.db, every=args.every, once=args.once)
        parser.print_help()
        return 2
    except FootprintError as exc:
        print(f"footprint: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


def _write(text: str, output: str | None) -> None:
    if output is None:
        sys.stdout.write(text)
        return
    try:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        raise FootprintError(f"cannot write {output}: {exc.strerror}") from None
    print(f"footprint: wrote {output}", file=sys.stderr)


def cmd_report(args: argparse.Namespace) -> int:
    from footprint.core.store import Store, default_db_path

    from .reports import load_report, render, renderer_for

    store = Store(args.db or default_db_path(), create=False)
    if args.job is not None:
        return _report_job(store, args)
    ids = [store.resolve_run(ref) for ref in (args.runs or ["last"])]
    report = load_report(store, ids, _settings(args))
    if args.html:
        _write(renderer_for("html").render(report), args.html)
        if not (args.json or args.format or args.output):
            return 0
    if args.json:
        text = renderer_for("json").render(report)
    elif args.format:
        text = renderer_for(args.format).render(report)
    elif args.output:
        text = renderer_for(args.output).render(report)
    else:
        text = render(report, "console", color=sys.stdout.isatty())
    _write(text, args.output)
    return 0


def _report_job(store: Any, args: argparse.Namespace) -> int:
    from .reports import load_report
    from .reports.job import job_report, render_job

    job = args.job
    if not job:
        rows = store.query("SELECT job_id FROM runs WHERE job_id IS NOT NULL ORDER BY id DESC LIMIT 1")
        if not rows:
            raise FootprintError(f"no distributed job in {store.path}")
        job = rows[0][0]
    ids = [int(r[0]) for r in store.query("SELECT id FROM runs WHERE job_id = ? ORDER BY id", (job,))]
    if not ids:
        raise FootprintError(f"no runs of job '{job}' in {store.path}")
    runs = [r.to_dict() for r in load_report(store, ids, _settings(args)).runs]
    _write(render_job(job_report(runs, job), as_json=args.json), args.output)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from footprint.core.store import Store, default_db_path

    from .reports import CompareRenderer, load_report

    store = Store(args.db or default_db_path(), create=False)
    ids = [store.resolve_run(ref) for ref in args.runs]
    quality: dict[int, float] = {}
    for item in args.quality:
        ref, sep, value = item.partition("=")
        if not sep:
            raise FootprintError(f"--quality takes RUN=VALUE, got '{item}'")
        try:
            quality[store.resolve_run(ref)] = float(value)
        except ValueError:
            raise FootprintError(f"--quality value must be a number, got '{value}'") from None
    report = load_report(store, ids, _settings(args))
    sys.stdout.write(CompareRenderer(quality, as_json=args.json).render(report))
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from datetime import datetime

    from footprint.core.model import load_run
    from footprint.core.store import Store, default_db_path

    from .reports.console import fmt_j, fmt_s

    store = Store(args.db or default_db_path(), create=False)
    ids = store.run_ids(max(1, args.limit))
    if not ids:
        print(f"no runs in {store.path}")
        return 0
    print(f"{'id':>5}  {'started':19}  {'status':11}  {'duration':>10}  {'energy':>11}  name")
    for rid in ids:
        r = load_run(store, rid)
        when = datetime.fromtimestamp(r.started_at).strftime("%Y-%m-%d %H:%M:%S") if r.started_at else "-"
        print(f"{r.id:>5}  {when:19}  {r.status:11}  {fmt_s(r.duration_s):>10}  "
              f"{fmt_j(r.energy_j['total']):>11}  {r.name}")
    return 0


def cmd_probes() -> int:
    from .probes import probe_status

    for name, av in probe_status():
        print(f"{name:6} {'yes' if av.ok else 'no ':3}  {av.reason}")
    print("cpu/ram estimates are used where RAPL is missing, and are labelled estimated")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    import sqlite3
    import subprocess

    from .reports import render
    from .run import ENV_DB, ENV_RUN_ID, ENV_WAKE_FD, finish_run, start_run, wake_fd_token

    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise FootprintError("footprint run needs a command: footprint run [options] -- CMD ARGS...")
    server = None
    if args.prometheus:
        from .exporter import MetricsServer

        server = MetricsServer(args.prometheus)  # a bad address or a busy port is refused before any run exists
    from .distributed import run_options

    rank = run_options(args.db)  # one rank of a job: its own GPUs, CPU/RAM on local rank 0, its node's DB
    db = os.path.abspath(rank.pop("db", None) or args.db or os.environ.get("FOOTPRINT_DB") or "footprint.db")
    run = start_run(args.name or _default_name(cmd), db=db, interval_s=args.interval, country=args.country,
                    carbon_g_per_kwh=args.carbon_intensity, region=args.region, pue=args.pue,
                    price_kwh=args.price_kwh, price_hour=args.price_hour, currency=args.currency,
                    baseline_s=args.baseline, command=cmd, **rank)
    assert run.sampler is not None
    wake_fd = run.sampler.wake_fd
    if server is not None:
        server.serve(run)
        print(f"footprint: Prometheus metrics on http://{server.address}/metrics", file=sys.stderr, flush=True)
    env = dict(os.environ, **{ENV_RUN_ID: str(run.id), ENV_DB: db, ENV_WAKE_FD: wake_fd_token(wake_fd)})

    received: list[int] = []
    child: subprocess.Popen[bytes] | None = None

    def forward(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)
        if child is None or child.poll() is not None:
            return
        if signum == signal.SIGINT and _foreground():
            return  # Ctrl-C at a terminal already reached the child: it shares our process group
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    status, code = "failed", 1
    try:
        try:
            child = subprocess.Popen(cmd, env=env, pass_fds=(wake_fd,))
        except FileNotFoundError:
            print(f"footprint: {cmd[0]}: command not found", file=sys.stderr)
            status, code = "failed", 127
        except PermissionError:
            print(f"footprint: {cmd[0]}: permission denied", file=sys.stderr)
            status, code = "failed", 126
        except OSError as exc:
            print(f"footprint: {cmd[0]}: {exc.strerror}", file=sys.stderr)
            status, code = "failed", 126
        else:
            while True:
                try:
                    rc = child.wait()
                    break
                except KeyboardInterrupt:  # pragma: no cover - handler above swallows SIGINT
                    continue
            code = 128 - rc if rc < 0 else rc
            if received or (rc < 0 and -rc in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)):
                status = "interrupted"
            else:
                status = "completed" if rc == 0 else "failed"
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        unfinished: str | None = None
        try:
            if args.tokens is not None:
                run.add_tokens(args.tokens)
            finish_run(run, status=status, exit_code=code)
        except (FootprintError, sqlite3.Error) as exc:
            unfinished = str(exc)
        if server is not None:  # after the last reading, so the final stretch is served too
            server.close(args.prometheus_linger)
    if unfinished is not None:  # the child's exit code still wins
        print(f"footprint: error: {unfinished}", file=sys.stderr)
        return code
    if not args.no_summary:
        sys.stderr.write(render(run.report(power=True), "console", color=sys.stderr.isatty()))
    return code


def _default_name(cmd: list[str]) -> str:
    """The script's name for `python train.py`, else the program's."""
    prog = os.path.basename(cmd[0])
    if prog.startswith("python") and len(cmd) > 1 and not cmd[1].startswith("-"):
        return os.path.basename(cmd[1])
    if prog.startswith("python") and len(cmd) > 2 and cmd[1] == "-m":
        return cmd[2]
    return prog


def _foreground() -> bool:
    """True when we are the terminal's foreground process group (so a Ctrl-C hit the child too)."""
    for stream in (sys.stdin, sys.stderr, sys.stdout):
        try:
            return os.tcgetpgrp(stream.fileno()) == os.getpgrp()
        except (OSError, ValueError, AttributeError):
            continue
    return False
