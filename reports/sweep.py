"""A sweep's comparison as a terminal table, JSON or one self-contained HTML page with the frontier charts;
`footprint.core.sweep` computes every figure, ratio and frontier, this only renders them."""

from __future__ import annotations

import html
import io
import json

from footprint.core.sweep import Estimate, PointReport, SweepReport

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# (figure, column title, format); "tok" becomes "gen tok" when per-token figures are per generated token
COLUMNS = (("j_per_token", "J/{tok}", ".4g"), ("j_per_request", "J/request", ".4g"),
           ("tokens_per_s", "{tok}/s", ".4g"), ("duration_s", "duration s", ".3g"), ("quality", "quality", ".4g"),
           ("cost_per_1m_tokens", "cost/1M {tok}", ".4g"))
# the energy itself, as a column only where J per token cannot stand for it: a point with energy but no tokens
# (a training job that counts none, a power-limit sweep) would otherwise show no energy figure at all
ENERGY_COLUMN = ("energy_j", "energy J", ".4g")
LEGEND = ("Q: on the Pareto frontier of J per token and quality; T: of J per token and tokens/s. "
          "± is the half-width of the t-based 95 % confidence interval over a point's runs; (×r) is the ratio "
          "to the reference point.")


def render_sweep(report: SweepReport, fmt: str = "console") -> str:
    if fmt == "json":
        return json.dumps(report.to_dict(), indent=2) + "\n"
    if fmt == "html":
        return _html(report)
    return _console(report)


def _tok(report: SweepReport) -> str:
    return "gen tok" if report.per == "generated" else "tok"


def columns(report: SweepReport) -> tuple[tuple[str, str, str], ...]:
    untokened = any(p.figures["j_per_token"] is None and p.figures["energy_j"] is not None for p in report.points)
    return (ENERGY_COLUMN, *COLUMNS) if untokened else COLUMNS


def _titles(report: SweepReport) -> list[str]:
    tok = _tok(report)
    return [(f"{title} {report.currency}" if m == "cost_per_1m_tokens" and report.currency else title).format(tok=tok)
            for m, title, _ in columns(report)]


def cell(e: Estimate | None, ratio: float | None, fmt: str, reference: bool) -> str:
    if e is None:
        return "–"
    text = format(e.mean, fmt) + (f" ±{e.ci95:.2g}" if e.ci95 is not None else "")
    return text if reference or ratio is None else f"{text} (×{ratio:.3g})"


def marks(p: PointReport) -> str:
    return ("Q" if p.quality_frontier else "") + ("T" if p.throughput_frontier else "")


def runs_text(report: SweepReport, p: PointReport) -> str:
    done = sum(1 for r in p.runs if r["status"] == "completed")
    return f"{done}/{report.repeats}"


def choice_lines(report: SweepReport) -> list[str]:
    """The answers: the best quality, and the cheapest point within the margin of it."""
    out: list[str] = []
    tok = "generated token" if report.per == "generated" else "token"
    if report.best_quality is not None:
        best = report.points[report.best_quality]
        q = best.figures["quality"]
        assert q is not None
        out.append(f"best quality: point {best.index} {best.label()} ({q.mean:.4g})")
    if report.within is not None:
        if report.choice is None:
            out.append(f"no point has a quality, so none is within {report.within:g} of the best "
                       "(set_quality / FOOTPRINT_QUALITY_FILE)")
        else:
            p = report.points[report.choice]
            by = report.choice_by or "j_per_token"
            e = p.figures[by]
            what = f"cost per 1M {tok}s" if by == "cost_per_1m_tokens" else f"J per {tok}"
            value = f"{e.mean:.4g}" if e is not None else "?"
            out.append(f"cheapest within {report.within:g} of the best quality, by {what}: point {p.index} "
                       f"{p.label()} ({value})")
    return out


def _console(report: SweepReport) -> str:
    from rich.console import Console
    from rich.table import Table

    ref = report.points[report.reference] if report.reference is not None else None
    title = (f"sweep {report.id} '{report.name}' · {report.status} · {len(report.points)} point(s) × "
             f"{report.repeats} run(s)" + (f" · ratios to point {ref.index} ({ref.label()})" if ref else ""))
    table = Table(title=title, title_justify="left")
    cols = columns(report)
    for col in ("#", "point", "status", "runs", *_titles(report), "frontier"):
        table.add_column(col, justify="left" if col in ("point", "status", "frontier") else "right")
    for p in report.points:
        is_ref = p.index == report.reference
        table.add_row(str(p.index), p.label() + (" *" if p.estimated else ""), p.status, runs_text(report, p),
                      *(cell(p.figures[m], p.ratios.get(m), f, is_ref) for m, _, f in cols), marks(p))
    buf = io.StringIO()
    Console(file=buf, width=180, no_color=True, highlight=False).print(table)
    buf.write(LEGEND + "\n")
    if report.per == "generated":
        buf.write("per-token figures are per generated token (each run's whole energy over its output tokens)\n")
    if any(p.estimated for p in report.points):
        buf.write("* some of this point's energy is estimated, not measured\n")
    for line in choice_lines(report):
        buf.write(line + "\n")
    return buf.getvalue()


# -- HTML ---------------------------------------------------------------------------------------------------

def _e(text: object) -> str:
    return html.escape("" if text is None else str(text))


def frontier_figure(report: SweepReport, benefit: str, label: str, flag: str) -> Any:
    """J per token (x, lower is better) against `benefit` (y, higher is better): every point with its 95 %
    interval, the frontier's points joined and filled in."""
    from .html import _plt

    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    have = [p for p in report.points if p.figures["j_per_token"] is not None and p.figures[benefit] is not None]
    for p in have:
        x, y = p.figures["j_per_token"], p.figures[benefit]
        assert x is not None and y is not None
        on = bool(getattr(p, flag))
        ax.errorbar([x.mean], [y.mean], xerr=[x.ci95 or 0.0], yerr=[y.ci95 or 0.0], fmt="o" if on else "x",
                    color="#0a7d32" if on else "#888888", capsize=3)
        ax.annotate(f"{p.index}: {p.label()}", (x.mean, y.mean), textcoords="offset points", xytext=(5, 4),
                    fontsize=8)
    front = sorted((p for p in have if getattr(p, flag)), key=lambda p: p.figures["j_per_token"].mean)  # type: ignore[union-attr]
    if len(front) > 1:
        ax.plot([p.figures["j_per_token"].mean for p in front],  # type: ignore[union-attr]
                [p.figures[benefit].mean for p in front], color="#0a7d32", lw=1)  # type: ignore[union-attr]
    ax.set_xlabel(f"J per {'generated token' if report.per == 'generated' else 'token'} (lower is better)")
    ax.set_ylabel(f"{label} (higher is better)")
    ax.grid(alpha=0.3)
    return fig


def _charts(report: SweepReport) -> str:
    from .html import _plt, _svg

    out = []
    for benefit, label, flag, title in (("quality", "quality", "quality_frontier", "Energy and quality"),
                                        ("tokens_per_s", "tokens/s", "throughput_frontier", "Energy and throughput")):
        if not any(p.figures["j_per_token"] is not None and p.figures[benefit] is not None for p in report.points):
            out.append(f"<h2>{title}</h2><p>No point has both J per token and {label}.</p>")
            continue
        fig = frontier_figure(report, benefit, label, flag)
        out.append(f"<h2>{title}</h2>{_svg(fig)}")
        _plt().close(fig)
    return "".join(out)


def _html(report: SweepReport) -> str:
    from .html import CSS

    charts = _charts(report)
    rows = []
    cols = columns(report)
    for p in report.points:
        is_ref = p.index == report.reference
        cells = "".join(f"<td class=n>{_e(cell(p.figures[m], p.ratios.get(m), f, is_ref))}</td>" for m, _, f in cols)
        est = " <span class=est>(estimated)</span>" if p.estimated else ""
        rows.append(f"<tr><td>{p.index}</td><td>{_e(p.label())}{est}</td><td>{_e(p.status)}</td>"
                    f"<td class=n>{_e(runs_text(report, p))}</td>{cells}<td>{_e(marks(p))}</td></tr>")
    head = "".join(f"<th>{_e(c)}</th>" for c in ("#", "point", "status", "runs", *_titles(report), "frontier"))
    answers = "".join(f"<p><b>{_e(line)}</b></p>" for line in choice_lines(report))
    command = " ".join(report.command)
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>footprint · sweep {report.id}</title>"
            f"<style>{CSS}</style></head><body><h1>Sweep {report.id} · {_e(report.name)} · {_e(report.status)}</h1>"
            f"<p><code>{_e(command)}</code></p><table><tr>{head}</tr>{''.join(rows)}</table>"
            f"<p><small>{_e(LEGEND)}</small></p>{answers}{charts}"
            f"<p><small>made by footprint from {_e(report.db)}</small></p></body></html>\n")
