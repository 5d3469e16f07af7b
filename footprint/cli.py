"""The `footprint` command: run, report, runs, probes."""

from __future__ import annotations

import argparse
import os
import sys

from footprint.common.errors import FootprintError

TYPE_CHECKING = False  # typing costs start-up time, paid by every `footprint run`
if TYPE_CHECKING:
    from collections.abc import Sequence
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
    if value >= 2**63:  # SQLite's INTEGER
        raise argparse.ArgumentTypeError(f"expected a whole number below 2**63, got '{text}'")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # one line, no usage dump: the usage is one `--help` away
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _economics_options(parser: argparse.ArgumentParser, *, at_report: bool = False) -> None:
    """The settings with a flag, a FOOTPRINT_* variable and a config key: one validator for all three."""
    from footprint.core.settings import flag_type

    p = parser.add_argument_group(
        "carbon and cost", "each overrides what the run recorded" if at_report
        else "flag, then FOOTPRINT_* variable, then footprint.toml")
    p.add_argument("--country", type=flag_type("country"),
                   help="ISO 3166 alpha-3 or alpha-2 code of the grid, for CO2e (e.g. FRA or FR)")
    p.add_argument("--region", type=flag_type("region"),
                   help="cloud region as provider:region, e.g. gcp:europe-west1 (data for GCP regions only)")
    p.add_argument("--carbon-intensity", type=flag_type("carbon_intensity"), metavar="G_PER_KWH",
                   help="grid carbon intensity in g CO2e/kWh (overrides --country and --region)")
    p.add_argument("--pue", type=flag_type("pue"), help="data-centre PUE, >= 1 (default 1.0: hardware only)")
    p.add_argument("--price-kwh", type=flag_type("price_kwh"), metavar="PRICE",
                   help="electricity price per kWh")
    p.add_argument("--price-hour", type=flag_type("price_hour"), metavar="PRICE",
                   help="instance price per hour")
    p.add_argument("--currency", type=flag_type("currency"), help="currency code for prices (default USD)")


def _settings(args: argparse.Namespace) -> Any:
    from footprint.core.settings import Settings

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
        from footprint.core.sampler import DEFAULT_INTERVAL_S, FLUSH_EVERY_S  # `run` loads these next anyway

        r = sub.add_parser("run", help="run a command and profile it",
                           description="Run CMD (no shell) and profile it until it exits; stdin/stdout/stderr pass "
                                       "through, the summary goes to stderr, and footprint exits with CMD's code. "
                                       "footprint.track() inside CMD joins this run.", epilog=EPILOG)
        r.add_argument("--db", help="SQLite file to record to (default: $FOOTPRINT_DB or ./footprint.db)")
        r.add_argument("--name", help="run name (default: the command's name)")
        r.add_argument("--interval", type=_positive_float, default=DEFAULT_INTERVAL_S,
                       help=f"seconds between reads of the hardware counters (default {DEFAULT_INTERVAL_S:g}); "
                            f"estimates are read at run and span edges and every {FLUSH_EVERY_S:g} s")
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
        r.add_argument("--kill-group", action="store_true",
                       help="run CMD in a process group of its own and send the signals footprint passes on to the "
                            "whole group, so what CMD leaves running is signalled too (default: CMD only); the "
                            "group is not the terminal's foreground, so not for commands that read the terminal")
        node = r.add_argument_group("whole-node meters (reported as the node figure, beside the components)")
        node.add_argument("--ipmi", action="store_true", default=None,
                          help="also read the node's power from the BMC (ipmitool dcmi power reading, about once a "
                               "second; also FOOTPRINT_IPMI=1 or ipmi = true in footprint.toml)")
        node.add_argument("--adb", nargs="?", const="", metavar="SERIAL",
                          help="measure the Android phone SERIAL (default: the only one attached) instead of this "
                               "host: its power monitor rails, else its battery; for CMD = adb shell ...")
        r.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ARGS", help="the command to run")

    if only in (None, "report"):
        rep = sub.add_parser("report", help="show recorded runs (default: the last one)",
                             description="Show one or more recorded runs: ids, names, or 'last'.", epilog=EPILOG)
        rep.add_argument("runs", nargs="*", metavar="RUN", help="run id or name (default: last)")
        rep.add_argument("--db", help="SQLite file to read (default: $FOOTPRINT_DB or ./footprint.db)")
        rep.add_argument("--json", action="store_true", help="print the JSON contract instead of the summary")
        from .reports import renderer_names

        rep.add_argument("--format", help=f"renderer by name: {', '.join(renderer_names())}")
        rep.add_argument("-o", "--output", help="write to this file; the renderer follows its extension")
        rep.add_argument("--html", metavar="FILE", help="write a self-contained HTML report to FILE")
        rep.add_argument("--datasette-metadata", action="store_true",
                         help="print datasette's metadata.json for the DB (descriptions and units of every table, "
                              "view and column): datasette footprint.db -m metadata.json")
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
                                       "distributed job; runs already in OUTPUT are skipped, or brought up to date "
                                       "if they have moved on since (merged while still recording).", epilog=EPILOG)
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
        ls.add_argument("--limit", type=_non_negative_int, default=20, help="how many runs (default 20)")

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

            copied, skipped, updated = merge(args.sources, args.output)
            print(f"footprint: merged {copied} run(s) into {args.output}"
                  + (f" ({updated} brought up to date)" if updated else "")
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
    except Exception as exc:
        if type(exc).__module__ == "sqlite3":  # sqlite3.Error, without importing sqlite3 for every command
            return _sqlite_error(args, exc)
        damage = _damage_in(args) if isinstance(exc, (TypeError, ValueError)) else None
        if damage is None:  # not a value no footprint wrote: a bug, with its traceback
            raise
        print(f"footprint: error: {damage}", file=sys.stderr)
        return 2


def _sqlite_error(args: argparse.Namespace, exc: Exception) -> int:
    """An SQLite error that escaped (a lock held past the busy timeout, a failing disk): one line, exit 2."""
    import sqlite3

    from footprint.core import dbfile
    from footprint.core.store import default_db_path

    assert isinstance(exc, sqlite3.Error)
    path = args.output if args.command == "merge" else (getattr(args, "db", None) or default_db_path())
    print(f"footprint: error: {dbfile.explain(exc, path, readonly=args.command not in ('run', 'merge'))}",
          file=sys.stderr)
    return 2


def _damage_in(args: argparse.Namespace) -> FootprintError | None:
    """For a reading command that failed on a bad value: which row of its DB is not what footprint writes."""
    if args.command not in ("report", "runs", "compare", "watch"):
        return None
    from footprint.core.integrity import find_damage
    from footprint.core.store import Store, default_db_path

    try:
        with Store(args.db or default_db_path(), create=False, readonly=True) as store:
            return find_damage(store)
    except FootprintError:
        return None


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
    from footprint.core.integrity import check_endpoints
    from footprint.core.model import load_report
    from footprint.core.store import Store, default_db_path

    from .reports import render, renderer_for

    if args.json and args.format and args.format != "json":
        raise FootprintError(f"--json and --format {args.format} ask for two formats: give one")
    store = Store(args.db or default_db_path(), create=False, readonly=True)
    if args.datasette_metadata:
        import json

        from footprint.core.dbdocs import datasette_metadata

        name = os.path.splitext(os.path.basename(store.path))[0]
        _write(json.dumps(datasette_metadata(name, store.columns()), indent=2) + "\n", args.output)
        return 0
    if args.job is not None:
        return _report_job(store, args)
    ids = [store.resolve_run(ref) for ref in (args.runs or ["last"])]
    check_endpoints(store, ids)
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
    if args.format == "emissions-csv" and args.output:
        _write_emissions(text, args.output)
        return 0
    _write(text, args.output)
    return 0


def _write_emissions(text: str, output: str) -> None:
    """Append to an emissions.csv that CodeCarbon (or footprint) wrote, as CodeCarbon's own file output does."""
    from .reports.csv import append_emissions

    try:
        with open(output, encoding="utf-8", newline="") as fh:
            existing = fh.read()
    except FileNotFoundError:
        existing = ""
    except (OSError, UnicodeDecodeError) as exc:
        raise FootprintError(f"cannot read {output}: {getattr(exc, 'strerror', None) or exc}") from None
    rows = append_emissions(existing, text) if existing else None
    if rows is None:
        _write(text, output)
        return
    try:
        with open(output, "a", encoding="utf-8", newline="") as fh:
            fh.write(rows)
    except OSError as exc:
        raise FootprintError(f"cannot write {output}: {exc.strerror}") from None
    print(f"footprint: appended {rows.count(chr(10)) - rows.startswith(chr(10))} run(s) to {output}", file=sys.stderr)


def _report_job(store: Any, args: argparse.Namespace) -> int:
    from footprint.core.job import job_report
    from footprint.core.model import load_report

    from .reports.job import render_job

    job = args.job
    if not job:
        job = store.last_job_id()
        if job is None:
            raise FootprintError(f"no distributed job in {store.path}")
    ids = store.job_run_ids(job)
    if not ids:
        raise FootprintError(f"no runs of job '{job}' in {store.path}")
    from footprint.core.integrity import check_endpoints

    check_endpoints(store, ids)
    runs = [r.to_dict() for r in load_report(store, ids, _settings(args)).runs]
    _write(render_job(job_report(runs, job), as_json=args.json), args.output)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from footprint.core.model import load_report
    from footprint.core.store import Store, default_db_path

    from .reports import CompareRenderer

    store = Store(args.db or default_db_path(), create=False, readonly=True)
    ids = [store.resolve_run(ref) for ref in args.runs]
    quality: dict[int, float] = {}
    for item in args.quality:
        ref, sep, value = item.partition("=")
        if not sep:
            raise FootprintError(f"--quality takes RUN=VALUE, got '{item}'")
        try:
            score = float(value)
        except ValueError:
            raise FootprintError(f"--quality value must be a number, got '{value}'") from None
        if ref.strip().isdigit() and int(ref) not in ids:  # an id that is not compared, recorded or not
            raise FootprintError(f"--quality names run {ref}, which is not compared (compared: "
                                 f"{', '.join(map(str, ids))})")
        rid = store.resolve_run(ref)
        if rid not in ids:
            raise FootprintError(f"--quality names run {ref} (id {rid}), which is not compared (compared: "
                                 f"{', '.join(map(str, ids))})")
        if rid in quality:
            raise FootprintError(f"--quality gives run {ref} twice")
        quality[rid] = score
    from footprint.core.integrity import check_endpoints

    check_endpoints(store, ids)
    report = load_report(store, ids, _settings(args))
    sys.stdout.write(CompareRenderer(quality, as_json=args.json).render(report))
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from datetime import datetime

    from footprint.core.model import load_run
    from footprint.core.store import Store, default_db_path

    from .reports.console import fmt_j, fmt_s

    store = Store(args.db or default_db_path(), create=False, readonly=True)
    ids = store.run_ids(max(1, args.limit))
    if not ids:
        print(f"no runs in {store.path}")
        return 0
    from footprint.core.integrity import check_endpoints, find_damage

    print(f"{'id':>5}  {'started':19}  {'status':11}  {'duration':>10}  {'energy':>11}  name")
    damaged: list[str] = []
    for rid in ids:
        try:
            check_endpoints(store, [rid])
            r = load_run(store, rid)
        except (FootprintError, TypeError, ValueError) as exc:  # list the others; say which one cannot be read
            damage = exc if isinstance(exc, FootprintError) else find_damage(store, [rid])
            if damage is None:
                raise
            damaged.append(str(damage))
            name = store.run_name(rid)
            print(f"{rid:>5}  {'-':19}  {'damaged':11}  {'-':>10}  {'-':>11}  {name}")
            continue
        when = datetime.fromtimestamp(r.started_at).strftime("%Y-%m-%d %H:%M:%S") if r.started_at else "-"
        print(f"{r.id:>5}  {when:19}  {r.status:11}  {fmt_s(r.duration_s):>10}  "
              f"{fmt_j(r.energy_j['total']):>11}  {r.name}")
    for message in damaged:
        print(f"footprint: warning: {message}", file=sys.stderr)
    return 0


def cmd_probes() -> int:
    from .probes import probe_status

    for name, av in probe_status():
        print(f"{name:6} {'yes' if av.ok else 'no ':3}  {av.reason}")
    print("cpu/ram estimates are used where no probe above measures them, and are labelled estimated")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    import sqlite3

    from footprint.core.store import ENV_DB, default_db_path

    from .child import Interrupted, SpawnError, Supervisor, guard_output
    from .run import ENV_RUN_ID, ENV_WAKE_FD, finish_run, start_run, wake_fd_token
    from .summary import print_summary

    guard_output()  # from here no write of footprint's can fail loudly: the child's exit code always wins
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise FootprintError("footprint run needs a command: footprint run [options] -- CMD ARGS...")
    server = None
    if args.prometheus:
        from .exporter import MetricsServer

        server = MetricsServer(args.prometheus)  # a bad address or a busy port is refused before any run exists
    from footprint.core.settings import switch_probes

    from .distributed import run_options

    switch_probes(ipmi=args.ipmi)  # before the probes are chosen (run_options chooses a rank's)
    rank = run_options(args.db)  # one rank of a job: its own GPUs, CPU/RAM on local rank 0, its node's DB
    if args.adb is not None:  # the phone is measured, not this host: none of the host's probes
        from .probes.adb import AdbProbe, choose_serial
        from .probes.base import ProbeError

        try:
            serial = choose_serial(args.adb or None)
        except ProbeError as exc:
            raise FootprintError(str(exc)) from None
        rank["probes"] = [AdbProbe(serial)]
        rank["meta"] = {"measured": f"Android phone {serial} over adb"}
    db = os.path.abspath(rank.pop("db", None) or args.db or default_db_path())
    with Supervisor(kill_group=args.kill_group) as sup:  # signals, see footprint/child.py
        run = None
        try:
            run = start_run(args.name or _default_name(cmd), db=db, interval=args.interval, country=args.country,
                            carbon_intensity=args.carbon_intensity, region=args.region, pue=args.pue,
                            price_kwh=args.price_kwh, price_hour=args.price_hour, currency=args.currency,
                            baseline=args.baseline, command=cmd, **rank)
            sup.ready()
        except Interrupted as exc:  # during set-up or --baseline: start_run has finished the run
            if run is not None:  # it came just after start_run returned
                finish_run(run, status="interrupted", exit_code=exc.exit_code)
            if server is not None:
                server.close()
            return exc.exit_code
        assert run.sampler is not None
        wake_fd = run.sampler.wake_fd
        if server is not None:
            server.serve(run)
            print(f"footprint: Prometheus metrics on http://{server.address}/metrics", file=sys.stderr, flush=True)
        env = dict(os.environ, **{ENV_RUN_ID: str(run.id), ENV_DB: db, ENV_WAKE_FD: wake_fd_token(wake_fd)})

        started = False
        status, code = "failed", 1
        try:
            if sup.held is not None:  # a signal came before the command started: it is not started
                status, code = "interrupted", 128 + sup.held
            else:
                try:
                    sup.spawn(cmd, env, pass_fds=(wake_fd,))
                    started = True
                except SpawnError as exc:
                    print(exc, file=sys.stderr)
                    status, code = "failed", exc.code
                else:
                    status, code = sup.outcome(sup.wait())
        finally:
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
        # no summary for a command that never ran, nor after a signal that came once it had ended
        if started and not args.no_summary and not sup.late:
            print_summary(run)
        return code


def _default_name(cmd: list[str]) -> str:
    """The script's name for `python train.py`, else the program's."""
    prog = os.path.basename(cmd[0])
    if prog.startswith("python") and len(cmd) > 1 and not cmd[1].startswith("-"):
        return os.path.basename(cmd[1])
    if prog.startswith("python") and len(cmd) > 2 and cmd[1] == "-m":
        return cmd[2]
    return prog
