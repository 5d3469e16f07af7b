"""One self-contained HTML file: timeline, breakdown and span table. Charts are matplotlib SVG inlined
in the page (text as paths), so nothing is fetched when it is viewed."""

from __future__ import annotations

import html
import io
from collections.abc import Callable
from datetime import datetime
from typing import Any

from footprint.common.errors import FootprintError
from footprint.common.record import Record
from footprint.core.model import Report, RunReport, SpanReport, components

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


def _plt() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise FootprintError("HTML reports need matplotlib: pip install 'footprint-profiler[html]'") from None
    plt.rcParams["svg.fonttype"] = "path"  # no font files needed by the viewer
    return plt


def time_unit(duration_s: float) -> tuple[str, float]:
    """The unit the timeline's axis counts in, and seconds per unit: seconds up to 3 min, then min, then h."""
    if duration_s > 3 * 3600:
        return "h", 3600.0
    if duration_s > 180:
        return "min", 60.0
    return "s", 1.0


def power_steps(run: RunReport) -> dict[str, tuple[list[float], list[float]]]:
    """Per device, the step curve of its mean power between consecutive reads, in seconds since the run's
    start: x holds every read's time (the first read included, so the first interval is drawn too) and y the
    mean power over [x[i], x[i+1]], its last value repeated to close the last step. With only two reads it is
    one flat step from the first read to the last."""
    t0 = run.started_at or 0.0
    first = {f"{d.kind}:{d.index}": d.first_read_at for d in run.devices}
    out: dict[str, tuple[list[float], list[float]]] = {}
    for key, series in run.power.items():
        start = first.get(key)
        if not series or start is None or start >= series[0][0]:
            continue
        xs = [start - t0, *(t - t0 for t, _ in series)]
        ys = [p for _, p in series]
        out[key] = (xs, [*ys, ys[-1]])
    return out


class SpanBox(Record):
    """Where the timeline draws one span: its band [a, b] in lane `row` (0 at the top), and its label's
    anchor x and alignment, or no label (None) where none fits without overlapping another."""

    __slots__ = ("span", "a", "b", "row", "label_x", "align")

    def __init__(self, span: SpanReport, a: float, b: float, row: int) -> None:
        self.span = span
        self.a = a
        self.b = b
        self.row = row
        self.label_x: float | None = None
        self.align = "center"


def span_label(s: SpanReport) -> str:
    return s.name if s.reliable else f"{s.name} \u2020"  # dagger: see the note under the chart


MAX_LANES = 8
LANE_IN = 0.3  # inches per span lane
LABEL_PAD_PX = 4.0


def layout_spans(run: RunReport, x1: float, scale: float, axes_px: float,
                 text_px: Callable[[str], float]) -> list[SpanBox]:
    """Bands in lanes and labels beside or inside them, nothing overlapping. First each band takes the
    highest lane where no other band is, below its parent's; then each label goes inside its band where it
    fits, else just right, else just left of it, clear of every band and label; a span without children
    whose label fits nowhere in its lane moves to a lower lane where it does. Past MAX_LANES a span keeps its
    band and loses its label (the table below the chart lists every span). x1 is the axis's end, in units of
    `scale` seconds; axes_px its width in pixels; text_px measures a label."""
    t0 = run.started_at or 0.0
    end = run.ended_at
    px = x1 / axes_px if axes_px > 0 and x1 > 0 else 1.0  # data units per pixel
    pad = LABEL_PAD_PX * px
    by_id = {s.id: s for s in run.spans}
    parents = {s.parent for s in run.spans}

    def depth(s: SpanReport) -> int:
        d, seen = 0, set()
        while s.parent is not None and s.parent in by_id and s.parent not in seen:
            seen.add(s.parent)
            s, d = by_id[s.parent], d + 1
        return d

    spans = sorted((s for s in run.spans if s.ended_at is not None or end is not None),
                   key=lambda s: (s.started_at, depth(s)))
    bands: list[dict[int, tuple[float, float]]] = [{} for _ in range(MAX_LANES)]  # per lane: span id -> band
    labels: list[list[tuple[float, float]]] = [[] for _ in range(MAX_LANES)]
    boxes: list[SpanBox] = []
    row_of: dict[int, int] = {}

    def free(row: int, lo: float, hi: float, own: int, with_labels: bool = True) -> bool:
        taken = [v for k, v in bands[row].items() if k != own] + (labels[row] if with_labels else [])
        return all(hi <= a or lo >= b for a, b in taken)

    for s in spans:  # pass 1: bands
        stop = s.ended_at if s.ended_at is not None else end
        assert stop is not None
        a, b = (s.started_at - t0) / scale, (stop - t0) / scale
        b = max(b, a + px)  # a span too short to see still gets one pixel
        lowest = min(row_of[s.parent] + 1 if s.parent in row_of else 0, MAX_LANES - 1)
        row = next((r for r in range(lowest, MAX_LANES) if free(r, a, b, s.id, False)), MAX_LANES - 1)
        bands[row][s.id] = (a, b)
        row_of[s.id] = row
        boxes.append(SpanBox(s, a, b, row))
    for bx in boxes:  # pass 2: labels
        w = text_px(span_label(bx.span)) * px
        rows = [bx.row] if bx.span.id in parents else list(range(bx.row, MAX_LANES))
        for row in rows:
            a, b, sid = bx.a, bx.b, bx.span.id
            if row != bx.row and not free(row, a, b, sid):
                continue
            options = [((a + b) / 2, "center", a, b)] if w + 2 * pad <= b - a else []
            options += [(b + pad, "left", b, b + w + 2 * pad), (a - pad, "right", a - w - 2 * pad, a)]
            fit = next((o for o in options if o[2] >= 0 and o[3] <= x1 + pad and free(row, o[2], o[3], sid)), None)
            if fit is not None:
                if row != bx.row:
                    del bands[bx.row][sid]
                    bands[row][sid] = (a, b)
                    bx.row = row
                labels[row].append((fit[2], fit[3]))
                bx.label_x, bx.align = fit[0], fit[1]
                break
    return boxes


SPAN_COLORS = ("#4c78a8", "#f58518", "#54a24b", "#b279a2", "#e45756", "#72b7b2", "#eeca3b", "#9d755d")
DEVICE_COLORS = {"gpu": ("tab:green", "olive", "darkgreen", "limegreen"), "cpu": ("tab:blue", "navy", "steelblue"),
                 "ram": ("tab:orange", "saddlebrown")}


def timeline_figure(run: RunReport) -> Any:
    """Power per device over the whole run (0 at the run's start to its end), and above it the spans as
    labelled bands on the same time axis."""
    plt = _plt()
    steps = power_steps(run)
    duration = run.duration_s
    if not duration or duration <= 0:
        duration = max((xs[-1] for xs, _ in steps.values()), default=1.0) or 1.0
    unit, scale = time_unit(duration)
    x1 = duration / scale
    width_in, left, right = 10.0, 0.07, 0.97
    fig = plt.figure(figsize=(width_in, 3.4))
    renderer = fig.canvas.get_renderer()
    font = {"fontsize": 8}

    def text_px(s: str) -> float:
        t = fig.text(0, 0, s, **font)
        w = float(t.get_window_extent(renderer).width)
        t.remove()
        return w

    boxes = layout_spans(run, x1, scale, width_in * fig.dpi * (right - left), text_px) if run.spans else []
    lanes = 1 + max((bx.row for bx in boxes), default=-1)
    power_in, gap_in = 3.0, 0.12
    height = power_in + (lanes * LANE_IN + gap_in if lanes else 0.0) + 0.1
    fig.set_size_inches(width_in, height)
    top = 1 - 0.05 / height
    if lanes:
        lane_ax = fig.add_axes((left, top - lanes * LANE_IN / height, right - left, lanes * LANE_IN / height))
        ax = fig.add_axes((left, 0.0, right - left, top - (lanes * LANE_IN + gap_in) / height), sharex=lane_ax)
        lane_ax.set_gid("span-lanes")
        lane_ax.set_ylim(lanes, 0)
        lane_ax.set_yticks([])
        lane_ax.tick_params(axis="x", which="both", bottom=False, labelbottom=False)
        for side in ("top", "right", "left"):
            lane_ax.spines[side].set_visible(False)
        lane_ax.spines["bottom"].set_alpha(0.3)
        names = list(dict.fromkeys(bx.span.name for bx in boxes))
        colors = {n: SPAN_COLORS[i % len(SPAN_COLORS)] for i, n in enumerate(names)}
        for bx in boxes:
            c = colors[bx.span.name]
            rect = lane_ax.broken_barh([(bx.a, bx.b - bx.a)], (bx.row + 0.15, 0.7), facecolor=c, alpha=0.55,
                                       edgecolor=c, linewidth=0.6, hatch=None if bx.span.reliable else "////")
            rect.set_gid(f"span-band-{bx.span.id}")
            if bx.label_x is not None:
                t = lane_ax.text(bx.label_x, bx.row + 0.5, span_label(bx.span), ha=bx.align, va="center",
                                 color="#1b1f24", clip_on=False, **font)
                t.set_gid(f"span-label-{bx.span.id}")
    else:
        ax = fig.add_axes((left, 0.0, right - left, top))
    ax.set_gid("power-axes")
    seen: dict[str, int] = {}
    ymax = 0.0
    for key, (xs, ys) in steps.items():
        kind = key.split(":")[0]
        palette = DEVICE_COLORS.get(kind, ("tab:purple", "tab:red", "tab:brown", "tab:pink", "tab:gray"))
        n = seen[kind] = seen.get(kind, -1) + 1
        line, = ax.plot([x / scale for x in xs], ys, drawstyle="steps-post", label=key, linewidth=1.4,
                        color=palette[n % len(palette)])
        line.set_gid(f"power-{key}")
        ymax = max(ymax, *ys)
    ax.set_xlim(0.0, x1)
    ax.set_ylim(0.0, ymax * 1.12 if ymax > 0 else 1.0)
    ax.set_xlabel(f"time since the run's start ({unit})")
    ax.set_ylabel("power (W)")
    ax.grid(alpha=0.3)
    if steps:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, frameon=False)
    else:
        ax.text(0.5, 0.5, "no power readings", transform=ax.transAxes, ha="center", va="center", color="#666")
    return fig


def _charts(run: RunReport) -> tuple[str, str]:
    plt = _plt()
    fig = timeline_figure(run)
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
                ("CO2e" if not run.embodied.on else "CO2e operational", fmt_g(run.co2e_g))]
        if run.embodied.on:
            kpis += [("CO2e embodied", fmt_g(run.embodied_co2e_g)), ("CO2e total", fmt_g(run.total_co2e_g))]
        if run.energy_basis == "node":  # the whole machine: CO2e, cost and per-token figures come from it
            kpis[0:1] = [("node energy", fmt_j(run.node_energy_j)), ("components", fmt_j(run.energy_j["total"])),
                         ("unattributed", fmt_j(run.unattributed_j))]
        if run.cost is not None:
            kpis.append(("cost", fmt_money(run.cost.total, run.cost.currency)))
        # the headline per-token figure is the console's: per generated token where any were counted (the
        # whole run's energy over them), else over all tokens
        if run.j_per_generated_token is not None:
            kpis.append(("J per generated token", f"{run.j_per_generated_token:.4g}"))
        elif run.j_per_token is not None:
            kpis.append(("J/token", f"{run.j_per_token:.4g}"))
        if run.economics.tokens_per_s is not None:
            kpis.append(("tokens/s", f"{run.economics.tokens_per_s:,.1f}"))
        out = [f"<h1>Run {run.id} · {_e(run.name)} · {_e(run.status)}</h1><p>started {when}</p>",
               "".join(f"<span class=kpi>{_e(k)}<b>{_e(v)}</b></span>" for k, v in kpis)]
        if run.tokens is not None:
            kinds = ", ".join(f"{n:,} {k}" for k, n in run.tokens_by_kind.items())
            line = f"tokens {run.tokens:,}" + (f" ({kinds})" if kinds else "")
            if run.j_per_token is not None:
                line += f" · {run.j_per_token:.4g} J/token over all of them"
            if run.j_per_generated_token is not None:
                line += f" · per generated token: {run.j_per_generated_token:.4g} J"
            if run.j_per_prompt_token is not None:
                line += f" · per prompt token: {run.j_per_prompt_token:.4g} J"
            if run.j_per_generated_token is not None or run.j_per_prompt_token is not None:
                line += " (whole run's energy)"
            out.append(f"<p>{_e(line)}</p>")
        out.append("<h2>Where the energy went</h2><table><tr><th>device</th><th>name</th><th>energy</th>"
                   "<th>source</th></tr>")
        for d in run.devices:
            cls = "" if d.measured else " class=est"
            label = "measured" if d.measured else "estimated"
            out.append(f"<tr><td>{d.kind}:{d.index}</td><td>{_e(d.name)}</td><td class=n>{fmt_j(d.energy_j)}</td>"
                       f"<td{cls}>{_e(d.source)} ({label})</td></tr>")
        if run.energy_basis == "node":
            out.append(f"<tr><td>unattributed</td><td>node − components (fans, PSU loss, disks, NICs…)</td>"
                       f"<td class=n>{fmt_j(run.unattributed_j)}</td><td>CO2e, cost and per-token figures use "
                       "the node figure</td></tr>")
        out.append(f"</table>{breakdown}")
        out.append(f"<p>CO2e at {_e(run.carbon_intensity_g_per_kwh)} g/kWh: {_e(run.carbon_source)}; "
                   f"PUE {run.pue:g}.</p>")
        out.append(self._embodied(run))
        out.append(f"<h2>Power over time</h2>{timeline}")
        if any(not s.reliable for s in run.spans):
            out.append("<p><small>\u2020 hatched: shorter than a counter's update period, so its energy is "
                       "unreliable.</small></p>")
        if run.spans:
            by_id = {s.id: s for s in run.spans}
            out.append("<h2>Spans</h2><table><tr><th>span</th><th>duration</th><th>energy</th><th>CO2e</th>"
                       "<th>tokens</th><th>J/token</th><th>tokens/s</th></tr>")
            for s in run.spans:
                flag = "" if s.reliable else " <span class=warn>(shorter than a counter's update period)</span>"
                out.append(
                    f"<tr><td>{_e(span_path(s, by_id))}{flag}</td><td class=n>{fmt_s(s.duration_s)}</td>"
                    f"<td class=n>{fmt_j(s.energy_j['total'])}{self._span_node(s)}</td>"
                    f"<td class=n>{fmt_g(s.co2e_g)}</td>"
                    f"<td class=n>{_e(s.tokens if s.tokens is not None else '–')}</td>"
                    f"<td class=n>{_e(self._span_jpt(s))}</td>"
                    f"<td class=n>{_e(f'{s.economics.tokens_per_s:,.1f}' if s.economics.tokens_per_s else '–')}"
                    "</td></tr>")
            out.append("</table>")
        if run.warnings:
            out.append("<h2>Notes</h2><ul>" + "".join(f"<li class=warn>{_e(w)}</li>" for w in run.warnings)
                       + "</ul>")
        return "".join(out)

    @staticmethod
    def _embodied(run: RunReport) -> str:
        emb = run.embodied
        if not emb.on:
            return "<p>Embodied CO2e not counted (embodied off): the total is the operational figure.</p>"
        e = run.economics
        per = ""
        if e.total_co2e_g_per_1k_tokens is not None:
            per = (f" Per 1k tokens: {e.co2e_g_per_1k_tokens:.4g} g operational + "
                   f"{e.embodied_co2e_g_per_1k_tokens:.4g} g embodied = {e.total_co2e_g_per_1k_tokens:.4g} g total.")
        out = [f"<h2>Embodied carbon</h2><p>{_e(fmt_g(emb.co2e_g))} (range {_e(fmt_g(emb.low_g))} to "
               f"{_e(fmt_g(emb.high_g))}): the devices' manufacturing CO2e over {emb.lifetime_years:g} years at "
               f"{emb.utilisation:.0%} use ({_e(emb.settings_source)}), shared by the run's duration. Total CO2e "
               f"{_e(fmt_g(run.total_co2e_g))}.{_e(per)}</p>"]
        if emb.items:
            out.append("<table><tr><th>device</th><th>figure</th><th>CO2e</th><th>source</th></tr>")
            for i in emb.items:
                what = f"{i.units:g} × {i.kgco2e:g} kg" if i.units != 1 else f"{i.kgco2e:g} kg"
                label = i.model if i.match == "model" else f"class figure: {i.model}"
                out.append(f"<tr><td>{_e(i.device)} {_e(i.name)}</td><td>{_e(what)} ({_e(label)})</td>"
                           f"<td class=n>{_e(fmt_g(i.co2e_g))}</td><td><small>{_e(i.source)} ({_e(i.date)})"
                           + (f"; {_e(i.note)}" if i.note else "") + "</small></td></tr>")
            out.append("</table>")
        return "".join(out)

    @staticmethod
    def _span_node(s: SpanReport) -> str:
        return f" (node {_e(fmt_j(s.node_energy_j))})" if s.energy_basis == "node" else ""

    @staticmethod
    def _span_jpt(s: SpanReport) -> str:
        if s.j_per_token is None:
            return "–"
        return f"{s.j_per_token:.4g}" if s.reliable else "unreliable"  # as the console: no figure then


RENDERERS = (HtmlRenderer,)
