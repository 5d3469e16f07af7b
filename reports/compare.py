"""`footprint compare`: runs side by side with ratios to the first, the "is the small model enough?" table."""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass

from footprint.core.model import Report, RunReport, economics_of
from footprint.core.sweep import REQUESTS

from .base import Renderer
from .console import fmt_j


@dataclass
class CompareRow:
    id: int
    name: str
    energy_j: float | None
    j_per_token: float | None
    co2e_g_per_1k_tokens: float | None
    cost_per_1m_tokens: float | None
    tokens_per_s: float | None
    quality: float | None
    ratios: dict[str, float | None]  # this run's figure / the first run's
    # what "token" means in the per-token columns: "generated" when every compared run counted generated tokens
    # (inference: prompt tokens are input, not output), else "all" (every kind counted)
    per: str = "all"
    tokens: int | None = None
    # what the CO2e column counts: "total" (operational + embodied) where the run counts embodied carbon, else
    # "operational"
    co2e: str = "operational"
    # requests the run served (the `requests` table of `footprint serve`), else counted as tokens of kind
    # "requests" (a sweep's workload); J/request is the whole run's energy over them, idle time included
    requests: int | None = None
    j_per_request: float | None = None
    requests_source: str | None = None  # "served" | "counted"


METRICS = ("energy_j", "j_per_token", "co2e_g_per_1k_tokens", "cost_per_1m_tokens", "tokens_per_s", "quality",
           "requests", "j_per_request")
PER_REQUEST = "the whole run's energy over the requests it served"


def requests_of(run: RunReport, served: dict[int, int]) -> tuple[int | None, str | None]:
    """(requests, where the count came from): the served requests first, else those counted as tokens."""
    if served.get(run.id):
        return served[run.id], "served"
    counted = run.tokens_by_kind.get(REQUESTS)
    return (counted, "counted") if counted else (None, None)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b not in (None, 0) else None


def compare_rows(runs: list[RunReport], quality: dict[int, float] | None = None,
                 requests: dict[int, int] | None = None) -> list[CompareRow]:
    """One row per run. Per-token figures are per generated token when every run counted generated tokens (the
    answer to "is the smaller model enough?" is energy per token of output), else per token of any kind but
    requests. `requests`: how many requests each run served (Store.request_counts); J/request is the whole run's
    energy over them, or over the requests it counted as tokens of kind "requests"."""
    quality = quality or {}
    served = requests or {}
    generated = bool(runs) and all(r.tokens_by_kind.get("generated") for r in runs)
    rows = []
    for r in runs:
        # requests counted as tokens are not tokens of output: left out of "all"
        tokens = r.tokens_by_kind["generated"] if generated else \
            (sum(n for k, n in r.tokens_by_kind.items() if k != REQUESTS) or None)
        # the total CO2e (operational + embodied) where embodied is on; the operational figure where it is off
        co2 = r.total_co2e_g if r.embodied.on else r.co2e_g
        ec = economics_of(r.energy_j["total"], co2, r.cost, tokens, r.duration_s)
        rows.append(CompareRow(r.id, r.name, r.energy_j["total"], ec.j_per_token, ec.co2e_g_per_1k_tokens,
                               ec.cost_per_1m_tokens, ec.tokens_per_s, quality.get(r.id), {},
                               "generated" if generated else "all", ec.tokens,
                               "total" if r.embodied.on else "operational"))
        n, source = requests_of(r, served)
        energy = r.energy_j["total"]
        rows[-1].requests, rows[-1].requests_source = n, source
        rows[-1].j_per_request = energy / n if energy is not None and n else None
    base = rows[0]
    for row in rows:
        row.ratios = {m: _ratio(getattr(row, m), getattr(base, m)) for m in METRICS}
    return rows


def _ratio_text(ratio: float) -> str:
    # three significant figures, so a small ratio stays readable (×0.000154, not ×0.00)
    return f"×{ratio:.3g}"


def _cell(value: float | None, ratio: float | None, fmt: str, first: bool) -> str:
    if value is None:
        return "–"
    text = format(value, fmt)
    return text if first or ratio is None else f"{text} ({_ratio_text(ratio)})"


class CompareRenderer(Renderer):
    name = "compare"

    def __init__(self, quality: dict[int, float] | None = None, *, as_json: bool = False,
                 requests: dict[int, int] | None = None) -> None:
        """`requests`: requests served per run id (Store.request_counts), for the J/request column."""
        self.quality = quality or {}
        self.as_json = as_json
        self.requests = requests or {}

    def render(self, report: Report) -> str:
        rows = compare_rows(report.runs, self.quality, self.requests)
        per_request = any(r.requests for r in rows)
        if self.as_json:
            head: dict[str, object] = {"baseline_run": rows[0].id, "per_token": rows[0].per}
            if per_request:
                head["per_request"] = PER_REQUEST
            return json.dumps({**head, "rows": [asdict(r) for r in rows]}, indent=2) + "\n"
        scopes = {r.co2e for r in rows}
        from rich.console import Console
        from rich.table import Table

        currency = next((r.cost.currency for r in report.runs if r.cost), "")
        table = Table(title=f"compared with run {rows[0].id} '{rows[0].name}' (ratios: ×this/first)",
                      title_justify="left")
        tok = "gen tok" if rows[0].per == "generated" else "tok"
        co2e_col = f"g CO2e/1k {tok}" + (" (op+emb)" if scopes == {"total"} else "")
        cols = ["run", "energy", f"J/{tok}", *(("requests", "J/request") if per_request else ()), co2e_col,
                f"cost/1M {tok} {currency}".strip(), f"{tok}/s", "quality"]
        for col in cols:
            table.add_column(col, justify="left" if col == "run" else "right")
        for i, r in enumerate(rows):
            first = i == 0
            request_cells = (_cell(r.requests, r.ratios["requests"], ",d", first),
                             _cell(r.j_per_request, r.ratios["j_per_request"], ".4g", first)) if per_request else ()
            table.add_row(
                f"{r.id} {r.name}",
                (fmt_j(r.energy_j) + ("" if first or r.ratios["energy_j"] is None
                                      else f" ({_ratio_text(r.ratios['energy_j'])})")),
                _cell(r.j_per_token, r.ratios["j_per_token"], ".4g", first),
                *request_cells,
                _cell(r.co2e_g_per_1k_tokens, r.ratios["co2e_g_per_1k_tokens"], ".4g", first),
                _cell(r.cost_per_1m_tokens, r.ratios["cost_per_1m_tokens"], ".4g", first),
                _cell(r.tokens_per_s, r.ratios["tokens_per_s"], ",.1f", first),
                _cell(r.quality, r.ratios["quality"], ".4g", first),
            )
        buf = io.StringIO()
        Console(file=buf, width=140, no_color=True, highlight=False).print(table)
        if rows[0].per == "generated":
            buf.write("per-token figures are per generated token (the whole run's energy over its output tokens)\n")
        if len(scopes) > 1:
            buf.write("CO2e: operational + embodied for runs that count embodied carbon, operational alone for the "
                      "others (--embodied on|off makes them alike)\n")
        if per_request:
            buf.write("J/request is the whole run's energy over its requests (idle time between them included)"
                      + (": requests counted by the workload (tokens of kind 'requests') where none were served"
                         if any(r.requests_source == "counted" for r in rows) else "") + "\n")
            if any(r.requests is None for r in rows):
                buf.write("runs without requests have no J/request\n")
        if any(r.j_per_token is None for r in rows):
            buf.write("runs without token counts have no per-token figures (add_tokens / --tokens)\n")
        return buf.getvalue()
