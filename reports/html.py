"""One self-contained HTML file: timeline, breakdown and span table. Charts are matplotlib SVG inlined
in the page (text as paths), so nothing is fetched when it is viewed."""

from __future__ import annotations

import html
import io
from datetime import datetime
from typing import Any

from footprint.common.errors import FootprintError
from footprint.core.model import Report, RunReport, components

from .base import Renderer
from .console import fmt_g, fmt_j, fmt_money, fmt_s
from .csv import span_path

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#1b1f24}
h1{font-size:1.5rem} h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5rem 0} td,th{padding:.25rem .6rem;border-bottom:1px solid #eee;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums} .est{color:#9a6700} .warn{color:#9a6700}
.kpi{display:inline-block;margin:.3rem 1.2rem .3rem 0} .kpi b{display:block;font-size:1.3rem}
svg{max-width:100%;height:auto}
"""


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    # drop the RDF metadata block (creator, date): noise in a page, and namespace URLs a reader may mistake
    # for remote resources
    start, end = text.find("<metadata>"), text.find("</metadata>")
    if start != -1 and end != -1:
        text = text[:start] + text[end + len("</metadata>"):]
    return text


def _charts(run: RunReport) -> tuple[str, str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise FootprintError("HTML reports need matplotlib: pip install 'footprint-profiler[html]'") from None
    plt.rcParams["svg.fonttype"] = "path"  # no font files needed by the viewer
    t0 = run.started_at or 0.0
    fig, ax = plt.subplots(figsize=(10, 3.4))
    for key, series in run.power.items():
        if series:
            ax.step([t - t0 for t, _ in series], [p for _, p in series], where="pre", label=key)
    for s in run.spans:
        if s.parent is None and s.ended_at is not None:
            ax.axvspan(s.started_at - t0, s.ended_at - t0, alpha=0.08, color="tab:gray")
            ax.text(s.started_at - t0, 0, f" {s.name}", fontsize=7, va="bottom")
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("power (W)")
    ax.grid(alpha=0.3)
    if run.power:
        ax.legend(fontsize=8, loc="upper right")
    timeline = _svg(fig)
    plt.close(fig)
    kinds = [k for k in components(run.energy_j) if run.energy_j.get(k) is not None]
    fig, ax = plt.subplots(figsize=(6, 0.5 + 0.5 * max(1, len(kinds))))
    ax.barh([f"{k.upper()} ({run.sources[k]})" for k in kinds], [run.energy_j[k] or 0.0 for k in kinds],
            color=[{"gpu": "tab:green", "cpu": "tab:blue", "ram": "tab:orange"}.get(k, "tab:gray") for k in kinds])
    ax.set_xlabel("energy (J)")
    ax.invert_yaxis()
    breakdown = _svg(fig)
    plt.close(fig)
    return timeline, breakdown


def _e(text: object) -> str:
    return html.escape("" if text is None else str(text))


class HtmlRenderer(Renderer):
    name = "html"
    extensions = (".html", ".htm")

    def render(self, report: Report) -> str:
        body = "".join(self._run(r) for r in report.runs)
        title = "footprint report" if len(report.runs) != 1 else f"footprint · {report.runs[0].name}"
        return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{_e(title)}</title>"
                f"<style>{CSS}</style></head><body>{body}"
                f"<p><small>made by footprint from {_e(report.db)}</small></p></body></html>\n")

    def _run(self, run: RunReport) -> str:
        timeline, breakdown = _charts(run)
        when = datetime.fromtimestamp(run.started_at).strftime("%Y-%m-%d %H:%M:%S") if run.started_at else "?"
        kpis = [("energy", fmt_j(run.energy_j["total"])), ("duration", fmt_s(run.duration_s)),
                ("CO2e", fmt_g(run.co2e_g))]
        if run.cost is not None:
            kpis.append(("cost", fmt_money(run.cost.total, run.cost.currency)))
        if run.j_per_token is not None:
            kpis.append(("J/token", f"{run.j_per_token:.4g}"))
        if run.economics.tokens_per_s is not None:
            kpis.append(("tokens/s", f"{run.economics.tokens_per_s:,.1f}"))
        out = [f"<h1>Run {run.id} · {_e(run.name)} · {_e(run.status)}</h1><p>started {when}</p>",
               "".join(f"<span class=kpi>{_e(k)}<b>{_e(v)}</b></span>" for k, v in kpis)]
        out.append("<h2>Where the energy went</h2><table><tr><th>device</th><th>name</th><th>energy</th>"
                   "<th>source</th></tr>")
        for d in run.devices:
            cls = "" if d.measured else " class=est"
            label = "measured" if d.measured else "estimated"
            out.append(f"<tr><td>{d.kind}:{d.index}</td><td>{_e(d.name)}</td><td class=n>{fmt_j(d.energy_j)}</td>"
                       f"<td{cls}>{_e(d.source)} ({label})</td></tr>")
        out.append(f"</table>{breakdown}")
        out.append(f"<p>CO2e at {_e(run.carbon_intensity_g_per_kwh)} g/kWh: {_e(run.carbon_source)}; "
                   f"PUE {run.pue:g}.</p>")
        out.append(f"<h2>Power over time</h2>{timeline}")
        if run.spans:
            by_id = {s.id: s for s in run.spans}
            out.append("<h2>Spans</h2><table><tr><th>span</th><th>duration</th><th>energy</th><th>CO2e</th>"
                       "<th>tokens</th><th>J/token</th><th>tokens/s</th></tr>")
            for s in run.spans:
                flag = "" if s.reliable else " <span class=warn>(shorter than a counter's update period)</span>"
                out.append(
                    f"<tr><td>{_e(span_path(s, by_id))}{flag}</td><td class=n>{fmt_s(s.duration_s)}</td>"
                    f"<td class=n>{fmt_j(s.energy_j['total'])}</td><td class=n>{fmt_g(s.co2e_g)}</td>"
                    f"<td class=n>{_e(s.tokens if s.tokens is not None else '–')}</td>"
                    f"<td class=n>{_e(f'{s.j_per_token:.4g}' if s.j_per_token is not None else '–')}</td>"
                    f"<td class=n>{_e(f'{s.economics.tokens_per_s:,.1f}' if s.economics.tokens_per_s else '–')}"
                    "</td></tr>")
            out.append("</table>")
        if run.warnings:
            out.append("<h2>Notes</h2><ul>" + "".join(f"<li class=warn>{_e(w)}</li>" for w in run.warnings)
                       + "</ul>")
        return "".join(out)


RENDERERS = (HtmlRenderer,)
