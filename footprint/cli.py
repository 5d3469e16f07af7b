"""The `footprint` command: run, report, runs, probes."""

from __future__ import annotations

import argparse
import os
import sys

from footprint.common.errors import FootprintError
from footprint.output import write_output

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


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got '{text}'")
    return value


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


def _tokens_from(text: str) -> Any:
    from .runtimes import parse_tokens_from

    try:
        return parse_tokens_from(text)
    except FootprintError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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
    e = parser.add_argument_group("embodied carbon", "the devices' manufacturing CO2e, amortised over their life "
                                  "(docs/embodied.md)")
    e.add_argument("--embodied", type=flag_type("embodied"), metavar="on|off",
                   help="add embodied CO2e beside the operational figure (default on)")
    e.add_argument("--embodied-lifetime-years", type=flag_type("embodied_lifetime_years"), metavar="YEARS",
                   help="years the manufacturing CO2e is spread over (default 4)")
    e.add_argument("--embodied-utilisation", type=flag_type("embodied_utilisation"), metavar="FRACTION",
                   help="share of that life the devices are in use, in (0, 1] (default 0.85)")


def _settings(args: argparse.Namespace) -> Any:
    from footprint.core.settings import Settings

    return Settings(country=args.country, region=args.region, carbon_intensity=args.carbon_intensity, pue=args.pue,
                    price_kwh=args.price_kwh, price_hour=args.price_hour, currency=args.currency,
                    embodied=args.embodied, embodied_lifetime_years=args.embodied_lifetime_years,
                    embodied_utilisation=args.embodied_utilisation)


def _run_options(r: argparse.ArgumentParser) -> None:
    """The options of `footprint run`, which `footprint serve` shares."""
    from footprint.core.sampler import DEFAULT_INTERVAL_S, FLUSH_EVERY_S  # `run` loads these next anyway

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
    r.add_argument("--tokens-from", type=_tokens_from, metavar="FORMAT[:STREAM]",
                   help="count prompt and generated tokens from what CMD prints: llama.cpp (its timing lines, "
                        "stderr), llama-bench (-o json/jsonl, stdout) or ollama (API JSON or run --verbose); "
                        "the stream(s) read reach footprint's own unchanged but CMD sees a pipe there; "
                        ":stdout, :stderr or :both picks others")
    r.add_argument("--prometheus", metavar="[HOST:]PORT",
                   help="serve live metrics in Prometheus text format (host defaults to 127.0.0.1)")
    r.add_argument("--prometheus-linger", type=_non_negative_float, default=0.0, metavar="SECONDS",
                   help="keep serving the final metrics this long after CMD exits (default 0)")
    f = r.add_argument_group("forecast and budget", "the run's totals forecast from its steps (spans), and "
                             "limits on that forecast")
    f.add_argument("--expect-steps", type=_positive_int, metavar="N",
                   help="the command will take N steps: forecast the run's totals from the steps measured so far")
    f.add_argument("--step-span", metavar="NAME", default="step",
                   help="the spans that are its steps, a glob (default 'step', the Trainer and Lightning "
                        "callbacks' per-step spans)")
    f.add_argument("--budget-kwh", type=_positive_float, metavar="KWH", help="warn when the forecast exceeds it")
    f.add_argument("--budget-co2e-g", type=_positive_float, metavar="GRAMS",
                   help="warn when the forecast CO2e (with embodied carbon, where it is on) exceeds it")
    f.add_argument("--budget-cost", type=_positive_float, metavar="PRICE",
                   help="warn when the forecast cost exceeds it (needs --price-kwh or --price-hour)")
    f.add_argument("--on-budget", choices=("warn", "stop"), default="warn",
                   help="warn (default), or stop: end the command with a SIGINT, as Ctrl-C would")
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
    r.add_argument("--power-limit", type=_positive_float, metavar="WATTS",
                   help="set every measured NVIDIA GPU's power limit to WATTS for the run, and put the original "
                        "back when CMD ends, however it ends (needs root or CAP_SYS_ADMIN; without, CMD runs "
                        "with the limit as it is)")


COMMANDS = ("run", "serve", "sweep", "report", "compare", "merge", "watch", "runs", "probes")


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
        _run_options(r)
        r.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ARGS", help="the command to run")

    if only in (None, "serve"):
        sv = sub.add_parser(
            "serve", help="measure an inference server per request: a proxy in front of it, optionally starting it",
            description="Start CMD (an OpenAI-compatible inference server) under footprint, as `footprint run` "
                        "does, and a reverse proxy in front of it that records every completion, chat and "
                        "embedding request: timings, tokens and its share of the energy. Without CMD, the proxy "
                        "fronts a server started elsewhere on this machine, until Ctrl-C. Only counts and timings "
                        "are stored, never request content. See docs/serving.md.", epilog=EPILOG)
        sv.add_argument("--listen", default="127.0.0.1:8001", metavar="[HOST:]PORT",
                        help="where clients connect (default 127.0.0.1:8001; another host is served on the "
                             "network: an explicit choice, warned about)")
        sv.add_argument("--upstream", default="http://127.0.0.1:8000", metavar="URL",
                        help="the server's address (default http://127.0.0.1:8000)")
        sv.add_argument("--headers", action="store_true",
                        help="add X-Footprint-Energy-J and X-Footprint-CO2e-G to non-streamed responses: the "
                             "request's provisional share, from a counter read at its end")
        _run_options(sv)
        sv.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ARGS", help="the server command to start")
    if only in (None, "sweep"):
        from footprint.core.sampler import DEFAULT_INTERVAL_S

        sw = sub.add_parser("sweep", help="run a command over a grid of parameters, each point a run",
                            description="Run CMD once per combination of the --param values (one after another), "
                                        "each a `footprint run` with {NAME} in CMD replaced by the value and "
                                        "FOOTPRINT_PARAM_NAME set; then compare the points. A failed point is "
                                        "recorded and the sweep goes on; Ctrl-C stops after the current point.",
                            epilog=EPILOG)
        sw.add_argument("--param", action="append", default=[], metavar="NAME=V1,V2",
                        help="a parameter and its values, repeatable: the grid is every combination")
        sw.add_argument("--repeat", type=_non_negative_int, metavar="N",
                        help="runs per point (default 1); 2 or more give each figure a 95%% confidence interval")
        sw.add_argument("--resume", metavar="SWEEP_ID", help="run the points of that sweep that did not finish")
        sw.add_argument("--db", help="SQLite file to record to (default: $FOOTPRINT_DB or ./footprint.db)")
        sw.add_argument("--name", help="sweep name (default: the command's name)")
        sw.add_argument("--quality-from", metavar="FILE.json",
                        help="file the command writes its quality to ({\"quality\": X} or a number; {NAME} "
                             "placeholders allowed); the command finds it in FOOTPRINT_QUALITY_FILE")
        sw.add_argument("--within", type=_non_negative_float, metavar="MARGIN",
                        help="name the cheapest point whose quality is within MARGIN of the best")
        sw.add_argument("--cooldown", type=_non_negative_float, metavar="SECONDS",
                        help="idle wait between points, so one point's heat does not bill the next")
        sw.add_argument("--baseline", type=_positive_float, metavar="SECONDS",
                        help="measure idle power this long before each point, to report dynamic energy")
        sw.add_argument("--interval", type=_positive_float, default=DEFAULT_INTERVAL_S,
                        help=f"seconds between reads of the hardware counters (default {DEFAULT_INTERVAL_S:g})")
        sw.add_argument("--kill-group", action="store_true", help="as for footprint run, for every point")
        _economics_options(sw)
        sw.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ARGS", help="the command, with {NAME}s")

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
        rep.add_argument("--requests", action="store_true",
                         help="the requests a `footprint serve` run served: figures per model, and with --json "
                              "or -o FILE.csv each request's attributed energy")
        rep.add_argument("--job", nargs="?", const="", metavar="JOB_ID",
                         help="one job-wide view of a distributed job's runs (default: the last run's job)")
        _economics_options(rep, at_report=True)

    if only in (None, "compare"):
        cmp = sub.add_parser("compare", help="compare runs side by side, with ratios to the first",
                             description="Energy, J/token, CO2e and cost per token, tokens/s and an optional quality "
                                         "score, each with its ratio to the first run.", epilog=EPILOG)
        cmp.add_argument("runs", nargs="*", metavar="RUN", help="run ids or names; the first is the reference")
        cmp.add_argument("--sweep", metavar="SWEEP_ID", help="compare the points of a sweep (an id, or 'last')")
        cmp.add_argument("--within", type=_non_negative_float, metavar="MARGIN",
                         help="with --sweep: name the cheapest point whose quality is within MARGIN of the best")
        cmp.add_argument("--html", metavar="FILE", help="with --sweep: write an HTML page with the frontier charts")
        cmp.add_argument("--db", help="SQLite file to read (default: $FOOTPRINT_DB or ./footprint.db)")
        cmp.add_argument("--quality", action="append", default=[], metavar="RUN=VALUE",
                         help="a quality score for a run (accuracy, win rate...), repeatable")
        cmp.add_argument("--json", action="store_true", help="print JSON")
        cmp.add_argument("--requests", action="store_true",
                         help="compare the models served in these `footprint serve` runs, per request and per token")
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
        if args.command == "serve":
            return cmd_serve(args)
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
            if args.sweep is not None:
                from .sweep import cmd_compare_sweep

                return cmd_compare_sweep(args, _settings(args))
            return cmd_compare(args)
        if args.command == "sweep":
            from .sweep import cmd_sweep

            return cmd_sweep(args, _default_name)
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
    writes = args.command in ("run", "serve", "merge", "sweep")
    print(f"footprint: error: {dbfile.explain(exc, path, readonly=not writes)}", file=sys.stderr)
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
        write_output(json.dumps(datasette_metadata(name, store.columns()), indent=2) + "\n", args.output)
        return 0
    if args.job is not None:
        return _report_job(store, args)
    if args.requests:
        return _report_requests(store, args)
    ids = [store.resolve_run(ref) for ref in (args.runs or ["last"])]
    check_endpoints(store, ids)
    report = load_report(store, ids, _settings(args))
    if args.html:
        write_output(renderer_for("html").render(report), args.html)
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
    write_output(text, args.output)
    return 0


def _serving_reports(store: Any, ids: list[int], args: argparse.Namespace) -> list[Any]:
    from footprint.core.integrity import check_endpoints
    from footprint.core.serving import load_serving

    check_endpoints(store, ids)
    out = []
    for rid in ids:
        report = load_serving(store, rid, _settings(args))
        if report is None:
            raise FootprintError(f"run {rid} served no requests (`footprint serve` records them)")
        out.append(report)
    return out


def _report_requests(store: Any, args: argparse.Namespace) -> int:
    from .reports.requests import render

    if args.html or (args.format and args.format not in ("console", "json", "csv")):
        raise FootprintError("--requests renders as console, json or csv")
    fmt = "json" if args.json else args.format or (
        "csv" if (args.output or "").lower().endswith(".csv") else
        "json" if (args.output or "").lower().endswith(".json") else "console")
    ids = [store.resolve_run(ref) for ref in (args.runs or ["last"])]
    write_output("".join(render(r, fmt) for r in _serving_reports(store, ids, args)), args.output)
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
        write_output(text, output)
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
    write_output(render_job(job_report(runs, job), as_json=args.json), args.output)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from footprint.core.model import load_report
    from footprint.core.store import Store, default_db_path

    from .reports import CompareRenderer

    if not args.runs:
        raise FootprintError("footprint compare needs runs to compare, or --sweep ID")
    if args.within is not None or args.html:
        raise FootprintError("--within and --html are for --sweep ID")
    store = Store(args.db or default_db_path(), create=False, readonly=True)
    ids = [store.resolve_run(ref) for ref in args.runs]
    if args.requests:
        from .reports.requests import compare_models

        if args.quality:
            raise FootprintError("--quality compares runs, not served models: leave it out with --requests")
        sys.stdout.write(compare_models(_serving_reports(store, ids, args), as_json=args.json))
        return 0
    # what the runs recorded (run.set_quality), unless --quality says otherwise
    quality: dict[int, float] = {rid: q[0] for rid, q in store.run_quality(ids).items()}
    given: set[int] = set()
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
        if rid in given:
            raise FootprintError(f"--quality gives run {ref} twice")
        given.add(rid)
        quality[rid] = score
    from footprint.core.integrity import check_endpoints

    check_endpoints(store, ids)
    report = load_report(store, ids, _settings(args))
    sys.stdout.write(CompareRenderer(quality, as_json=args.json, requests=store.request_counts(ids)).render(report))
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

    status = probe_status()
    width = max(len(name) for name, _ in status)  # one column, however long a probe's name
    for name, av in status:
        print(f"{name:{width}} {'yes' if av.ok else 'no ':3}  {av.reason}")
    print("cpu/ram estimates are used where no probe above measures them, and are labelled estimated")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .proxy import LOOPBACK, Upstream, bind, parse_listen
    from .service import ProxyService

    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    upstream = Upstream(args.upstream)
    host, port = parse_listen(args.listen)
    sock = bind(host, port)  # a busy port is refused before any run exists
    if host not in LOOPBACK:
        print(f"footprint: warning: the proxy listens on {host}: anyone who reaches this host on port "
              f"{sock.getsockname()[1]} can use the inference server through it", file=sys.stderr)
    service = ProxyService(sock, upstream, headers=args.headers)
    if not cmd:
        args.name = args.name or f"serve {upstream.netloc}"
    return cmd_run(args, services=[service], cmd=cmd)


def cmd_run(args: argparse.Namespace, *, services: list[Any] | None = None, cmd: list[str] | None = None) -> int:
    """`footprint run`; with `services` (the proxy of `footprint serve`), they serve the run while CMD runs,
    or, with no CMD, until a signal."""
    import sqlite3

    from footprint.core.store import ENV_DB, default_db_path

    from .child import Interrupted, SpawnError, Supervisor, guard_output
    from .run import ENV_RUN_ID, ENV_WAKE_FD, finish_run, start_run, wake_fd_token
    from .summary import print_summary

    guard_output()  # from here no write of footprint's can fail loudly: the child's exit code always wins
    services = list(services or [])
    if cmd is None:
        cmd = list(args.cmd)
        if cmd and cmd[0] == "--":
            cmd = cmd[1:]
    if not cmd and not services:
        raise FootprintError("footprint run needs a command: footprint run [options] -- CMD ARGS...")
    server = None
    if args.prometheus:
        from .exporter import MetricsServer

        server = MetricsServer(args.prometheus)  # a bad address or a busy port is refused before any run exists
        for service in services:
            service.metrics_server = server
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
    tap = _token_tap(args.tokens_from)
    with Supervisor(kill_group=args.kill_group) as sup:  # signals, see footprint/child.py
        run = None
        try:
            run = start_run(args.name or _default_name(cmd), db=db, interval=args.interval, country=args.country,
                            carbon_intensity=args.carbon_intensity, region=args.region, pue=args.pue,
                            price_kwh=args.price_kwh, price_hour=args.price_hour, currency=args.currency,
                            baseline=args.baseline, command=cmd or None, embodied=args.embodied,
                            embodied_lifetime_years=args.embodied_lifetime_years,
                            embodied_utilisation=args.embodied_utilisation,
                            meta={**rank.pop("meta", {}), **({"expect": {"count": args.expect_steps,
                                                                        "span": args.step_span}}
                                                             if args.expect_steps else {})} or None, **rank)
            sup.ready()
        except Interrupted as exc:  # during set-up or --baseline: start_run has finished the run
            if run is not None:  # it came just after start_run returned
                finish_run(run, status="interrupted", exit_code=exc.exit_code)
            if server is not None:
                server.close()
            for service in services:
                service.close()
            if tap is not None:
                tap.finish()
            return exc.exit_code
        assert run.sampler is not None
        wake_fd = run.sampler.wake_fd
        if server is not None:
            server.serve(run)
            print(f"footprint: Prometheus metrics on http://{server.address}/metrics", file=sys.stderr, flush=True)
        for service in services:
            service.serve(run)
        env = dict(os.environ, **{ENV_RUN_ID: str(run.id), ENV_DB: db, ENV_WAKE_FD: wake_fd_token(wake_fd)})

        limit = None
        if args.power_limit is not None:
            from .powerlimit import limit_run

            try:
                limit = limit_run(run, args.power_limit)
            except FootprintError:  # a limit the GPUs do not accept: the command is not started
                finish_run(run, status="failed", exit_code=2)
                if server is not None:
                    server.close()
                raise
        started = False
        status, code = "failed", 1
        watch = _budget_watch(args, db, run.id, sup)
        from .gpu_use import ProcessWatch
        from .gpu_use import record as record_gpus_used

        gpu_watch: ProcessWatch | None = None
        try:
            if not cmd:  # a service alone (footprint serve without CMD): until Ctrl-C or SIGTERM
                sup.wait_for_signal()
                started = True
                status, code = "completed", 0
            elif sup.held is not None:  # a signal came before the command started: it is not started
                status, code = "interrupted", 128 + sup.held
            else:
                if tap is not None:
                    tap.add = run.add_tokens
                try:
                    sup.spawn(cmd, env, pass_fds=(wake_fd,), stdio=tap.tee.child_fds() if tap else None)
                    started = True
                except SpawnError as exc:
                    print(exc, file=sys.stderr)
                    status, code = "failed", exc.code
                else:
                    if tap is not None:
                        tap.tee.started()
                    if watch is not None:
                        watch.start()
                    gpu_watch = ProcessWatch(run.sampler.probes, run.sampler.interval_s)  # the GPUs it used
                    gpu_watch.start()
                    status, code = sup.outcome(sup.wait())
        finally:
            if watch is not None:
                watch.close()
            if gpu_watch is not None:
                record_gpus_used(run.store, run.id, gpu_watch.close(), "nvml-processes")
            if limit is not None:  # the command has ended, whatever the way: its GPUs get their limits back
                limit.restore()
            unfinished: str | None = None
            for service in services:  # what it recorded reaches the DB before the run's end attributes it
                service.stop()
            if tap is not None:  # the last counts go in before the run ends
                warnings = tap.finish()
                for warning in warnings if started else ():  # a command that never ran printed nothing
                    print(f"footprint: warning: {warning}", file=sys.stderr)
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
            for service in services:
                service.summary(run)
        return code


def _token_tap(spec: Any) -> Any:
    """--tokens-from: the pipes the command's streams go through, made before any run exists."""
    if spec is None:
        return None
    from .tee import TokenTap

    fmt, streams = spec
    try:
        return TokenTap(fmt, streams)
    except OSError as exc:
        raise FootprintError(f"--tokens-from: cannot make a pipe: {exc.strerror}") from None


def _budget_watch(args: argparse.Namespace, db: str, run_id: int, sup: Any) -> Any:
    """The thread that checks the forecast against --budget-*, if any is given (footprint/budget.py)."""
    from .budget import BudgetWatch, budgets

    limits = budgets(args.budget_kwh, args.budget_co2e_g, args.budget_cost)
    if not limits:
        return None
    return BudgetWatch(db, run_id, limits, on_budget=args.on_budget, stop=sup.interrupt)


def _default_name(cmd: list[str]) -> str:
    """The script's name for `python train.py`, else the program's."""
    prog = os.path.basename(cmd[0])
    if prog.startswith("python") and len(cmd) > 1 and not cmd[1].startswith("-"):
        return os.path.basename(cmd[1])
    if prog.startswith("python") and len(cmd) > 2 and cmd[1] == "-m":
        return cmd[2]
    return prog
