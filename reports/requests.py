"""Served requests (`footprint report --requests`, `footprint compare --requests`): figures per model, and each
request's attributed energy. Renders footprint.core.serving's ServingReport; computes nothing of its own."""

from __future__ import annotations

import csv
import io
import json
import shutil

from footprint.core.serving import ModelReport, ServingReport

from .console import fmt_g, fmt_j, fmt_money

MODEL_METRICS = ("j_per_request_p50", "j_per_request_p95", "j_per_output_token", "co2e_g_per_1k_tokens",
                 "cost_per_1m_tokens", "tokens_per_s")


def _num(value: float | None, fmt: str = ".4g") -> str:
    return "–" if value is None else format(value, fmt)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f} %"


def _table(title: str, columns: list[str], rows: list[list[str]]) -> str:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i == 0 else "right", no_wrap=i == 1)
    for row in rows:
        table.add_row(*row)
    buf = io.StringIO()
    # as wide as the terminal (a pipe or file gets 160 columns, so saved output is stable)
    width = shutil.get_terminal_size((160, 24)).columns
    Console(file=buf, width=max(width, 80), no_color=True, highlight=False).print(table)
    return buf.getvalue()


def _model_row(m: ModelReport, currency: str) -> list[str]:
    return [m.model, f"{m.requests}" + (f" ({m.failed} failed)" if m.failed else ""), f"{m.prompt_tokens:,}",
            f"{m.completion_tokens:,}", fmt_j(m.energy_j), _num(m.j_per_request_p50), _num(m.j_per_request_p95),
            _num(m.j_per_output_token), _num(m.co2e_g_per_1k_tokens),
            _num(m.cost_per_1m_tokens) + (f" {currency}" if m.cost_per_1m_tokens is not None else ""),
            _num(m.tokens_per_s, ",.1f"), _num(m.ttft_p50_s, ".3f"), _num(m.latency_p50_s, ".3f")]


MODEL_COLUMNS = ["model", "requests", "tokens in", "tokens out", "energy", "J/req p50", "J/req p95", "J/out tok",
                 "g CO2e/1k tok", "cost/1M tok", "out tok/s", "TTFT p50 s", "latency p50 s"]


def render_console(report: ServingReport) -> str:
    out = [_table(f"run {report.run_id} '{report.run_name}' ({report.status}): requests by model", MODEL_COLUMNS,
                  [_model_row(m, report.currency) for m in report.models])]
    total = sum(m.energy_j for m in report.models)
    out.append(f"requests: {fmt_j(total)}; idle (no request active): {fmt_j(report.idle_energy_j)} "
               f"({_pct(report.idle_share)} of {fmt_j(report.energy_j)})\n")
    out.append(f"attribution: {report.attribution}\n")
    out += [f"warning: {w}\n" for w in report.warnings]
    return "".join(out)


def render_json(report: ServingReport) -> str:
    return json.dumps(report.to_dict(), indent=2) + "\n"


REQUEST_FIELDS = ("id", "model", "endpoint", "status", "stream", "started_at", "ended_at", "duration_s", "ttft_s",
                  "prompt_tokens", "completion_tokens", "usage_source", "error", "energy_j", "co2e_g", "cost")


def render_csv(report: ServingReport) -> str:
    """One row per request; energy per device kind in its own column."""
    kinds = sorted({k for r in report.requests for k in r.energy_j if k != "total"})
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["run_id", *[f for f in REQUEST_FIELDS if f != "energy_j"], "started_at_iso", "ended_at_iso",
                *[f"energy_j_{k}" for k in kinds], "energy_j_total"])
    for r in report.requests:
        d = r.to_dict()
        w.writerow([report.run_id, *["" if d[f] is None else d[f] for f in REQUEST_FIELDS if f != "energy_j"],
                    _iso(r.started_at), _iso(r.ended_at), *[r.energy_j.get(k, "") for k in kinds],
                    r.energy_j["total"]])
    return buf.getvalue()


def _iso(t: float) -> str:
    """ISO 8601 UTC, as the other CSV exports and the SQL views write times (epoch seconds stay beside it)."""
    from datetime import datetime, timezone

    return datetime.fromtimestamp(t, tz=timezone.utc).isoformat()


def render(report: ServingReport, fmt: str = "console") -> str:
    if fmt == "json":
        return render_json(report)
    if fmt == "csv":
        return render_csv(report)
    return render_console(report)


def summary_lines(report: ServingReport) -> str:
    """After `footprint serve`'s run summary: one line per model."""
    lines = []
    for m in report.models:
        cost = fmt_money(m.cost, report.currency) if m.cost is not None else "no price"
        lines.append(f"footprint: {m.model}: {m.requests} request(s), {m.completion_tokens:,} tokens out, "
                     f"{_num(m.j_per_request_p50)} J/request (p50), {_num(m.j_per_output_token)} J/output token, "
                     f"{fmt_g(m.co2e_g)} CO2e, {cost}\n")
    lines.append(f"footprint: idle {_pct(report.idle_share)} of the energy; "
                 "footprint report --requests for the details\n")
    return "".join(lines)


def compare_models(reports: list[ServingReport], *, as_json: bool = False) -> str:
    """Every (run, model) side by side, with ratios to the first: the production answer to "is the small model
    enough?"."""
    rows = [(r, m) for r in reports for m in r.models]
    # the reference: the first run's model that generated the most (an embedding model has no J per output token)
    first = [m for r, m in rows if r is reports[0]]
    base = max(first, key=lambda m: (m.completion_tokens, m.requests))
    rows.sort(key=lambda rm: (rm[0] is not reports[0] or rm[1] is not base))

    def ratio(m: ModelReport, key: str) -> float | None:
        a, b = getattr(m, key), getattr(base, key)
        return a / b if a is not None and b else None

    if as_json:
        return json.dumps({"baseline": {"run_id": reports[0].run_id, "model": base.model}, "rows": [
            {"run_id": r.run_id, "run_name": r.run_name, "idle_share": r.idle_share, **m.to_dict(),
             "ratios": {k: ratio(m, k) for k in MODEL_METRICS}} for r, m in rows]}, indent=2) + "\n"
    table_rows = []
    for i, (r, m) in enumerate(rows):
        cells = _model_row(m, r.currency)
        if i:
            for col, key in ((5, "j_per_request_p50"), (6, "j_per_request_p95"), (7, "j_per_output_token"),
                             (8, "co2e_g_per_1k_tokens"), (9, "cost_per_1m_tokens"), (10, "tokens_per_s")):
                q = ratio(m, key)
                if q is not None:
                    cells[col] += f" (×{q:.3g})"
        table_rows.append([f"{r.run_id}: {cells[0]}", *cells[1:], _pct(r.idle_share)])
    return _table(f"compared with run {reports[0].run_id}'s {base.model}, the model that generated most in it "
                  "(ratios: ×this/that)",
                  ["run: model", *MODEL_COLUMNS[1:], "idle (run)"], table_rows) + \
        "per-request figures are attributions (footprint report --requests says how)\n"
