"""The terminal summary (rich): energy per component with its source, kWh, CO2e, tokens, spans."""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from datetime import datetime

from footprint.core.model import Report, RunReport, SpanReport, components

from .base import Renderer

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rich.console import Console

    from footprint.core.limits import PowerLimitReport


def fmt_j(j: float | None) -> str:
    if j is None:
        return "unknown"
    for unit, scale in (("MJ", 1e6), ("kJ", 1e3)):
        if abs(j) >= scale:
            return f"{j / scale:,.2f} {unit}"
    return f"{j:,.2f} J"


def fmt_g(g: float | None) -> str:
    if g is None:
        return "unknown"
    if abs(g) >= 1000:
        return f"{g / 1000:,.3f} kg"
    return f"{g:,.3f} g" if abs(g) >= 1 else f"{g:.3g} g"  # 0.000123 g, never a rounded 0.000


SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], width: int = 40) -> str:
    """Power over time in block characters, averaged into `width` columns. Heights are measured from zero
    (a bar's height is its share of the highest reading), so a steady draw with a little noise is a flat line,
    not peaks and troughs stretched over the noise's range."""
    if not values:
        return ""
    if len(values) > width:
        step = len(values) / width
        values = [sum(values[int(i * step):int((i + 1) * step)] or [values[int(i * step)]])
                  / max(1, len(values[int(i * step):int((i + 1) * step)])) for i in range(width)]
    hi = max(values)
    if hi <= 0:
        return SPARKS[0] * len(values)
    # SPARKS[i] is (i + 1) eighths high: the block whose height is the reading's share of the maximum, rounded up
    return "".join(SPARKS[max(0, min(7, math.ceil(v / hi * 8) - 1))] for v in values)


def fmt_money(value: float | None, currency: str) -> str:
    if value is None:
        return "unknown"
    # small amounts keep 4 significant figures: a per-run cost of 0.00003 must not print as 0.0000
    return f"{value:.4g} {currency}" if abs(value) < 1 else f"{value:,.2f} {currency}"


def fmt_s(s: float | None) -> str:
    if s is None:
        return "unknown"
    if s >= 3600:
        return f"{int(s // 3600)} h {int(s % 3600 // 60)} min"
    if s >= 60:
        return f"{int(s // 60)} min {s % 60:.0f} s"
    return f"{s:.2f} s"


def embodied_lines(run: RunReport) -> list[str]:
    """The embodied CO2e beside the operational figure, its total, and where each device's figure came from."""
    emb = run.embodied
    if not emb.on:
        return ["embodied CO2e not counted (embodied off): total CO2e is the operational figure"]
    if emb.co2e_g is None:
        return ["embodied CO2e unknown"]
    span = f" ({fmt_g(emb.low_g)} to {fmt_g(emb.high_g)})" if emb.low_g != emb.high_g else ""
    lines = [f"embodied CO2e {fmt_g(emb.co2e_g)}{span}: manufacturing over {emb.lifetime_years:g} years at "
             f"{emb.utilisation:.0%} use ({emb.settings_source})",
             f"total CO2e {fmt_g(run.total_co2e_g)} (operational + embodied)"]
    for item in emb.items:
        what = f"{item.units:g} × {item.kgco2e:g} kg" if item.units != 1 else f"{item.kgco2e:g} kg"
        label = item.model if item.match == "model" else f"class: {item.model}"
        lines.append(f"[dim]  {item.device} {item.name or ''}".rstrip() + f" {fmt_g(item.co2e_g)} · {what}, {label}"
                     + (f" ({item.note})" if item.note else "") + "[/]")
    return lines


def _range(low: float | None, high: float | None, fmt: Callable[[float | None], str]) -> str:
    return f" (95 %: {fmt(low)} to {fmt(high)})" if low is not None and high is not None and low != high else ""


def forecast_lines(run: RunReport) -> list[str]:
    """The predicted totals of a run that expects a number of steps, and, once it has ended, how far the forecast
    made at 10 % of its steps was from the final total."""
    f = run.forecast
    if f is None:
        return []
    head = f"forecast from {f.steps_done} of {f.steps_expected} '{f.span}'"
    if f.energy_j is None:
        return [f"{head}: none yet" + (f" ({f.note})" if f.note else "")]
    parts = [fmt_j(f.energy_j) + _range(f.energy_j_low, f.energy_j_high, fmt_j), fmt_s(f.duration_s)
             + _range(f.duration_s_low, f.duration_s_high, fmt_s)]
    if f.co2e_g is not None:
        parts.append(f"CO2e {fmt_g(f.co2e_g)}" + (f" (total {fmt_g(f.total_co2e_g)})" if run.embodied.on
                                                  and f.total_co2e_g is not None else ""))
    if f.cost is not None and run.cost is not None:
        parts.append(f"cost {fmt_money(f.cost, run.cost.currency)}")
    lines = [f"{head}: " + " · ".join(parts)]
    if f.early is not None and f.error_pct is not None:
        lines.append(f"forecast at {f.early['steps_done']} steps was {fmt_j(f.early['energy_j'])}: "
                     f"{f.error_pct:+.2f} % from the final {fmt_j(run.energy_j.get('total'))}")
    if f.note:
        lines.append(f"[dim]forecast: {f.note}[/]")
    return lines


def gpu_use_line(run: RunReport) -> str:
    """The GPUs the run's processes used and the idle ones (measured all the same), with J/token without them."""
    def keys(used: bool) -> str:
        return ", ".join(f"gpu:{d.index}" for d in run.devices if d.kind == "gpu" and d.used is used) or "none"

    line = f"GPUs used: {keys(True)} ({fmt_j(run.gpu_used_j)}) · idle: {keys(False)} ({fmt_j(run.gpu_idle_j)})"
    if run.j_per_token_used_gpus is not None:
        line += f" · {run.j_per_token_used_gpus:.4g} J/token without the idle GPUs"
    return line


class ConsoleRenderer(Renderer):
    name = "console"
    extensions = (".txt",)

    def __init__(self, *, color: bool = False, width: int = 100) -> None:
        self.color = color
        self.width = width

    def render(self, report: Report) -> str:
        from rich.console import Console

        buf = io.StringIO()
        # force_jupyter=False: inside a notebook kernel rich would otherwise send each print to the notebook
        # as its own output and leave this buffer empty
        console = Console(file=buf, force_terminal=self.color, no_color=not self.color, width=self.width,
                          highlight=False, soft_wrap=False, force_jupyter=False)
        for run in report.runs:
            self._run(console, run)
        return buf.getvalue()

    def _run(self, console: object, run: RunReport) -> None:
        from rich.console import Console
        from rich.table import Table
        from rich.tree import Tree

        assert isinstance(console, Console)
        when = datetime.fromtimestamp(run.started_at).strftime("%Y-%m-%d %H:%M:%S") if run.started_at else "?"
        title = f"footprint · run {run.id} '{run.name}' · {run.status}"
        if run.exit_code is not None and run.status != "completed":
            title += f" (exit {run.exit_code})"
        table = Table(title=title, title_justify="left", show_header=True, header_style="bold")
        table.add_column("component")
        table.add_column("energy", justify="right")
        table.add_column("source")
        for kind in components(run.energy_j):
            devs = [d for d in run.devices if d.kind == kind]
            src = run.sources.get(kind, "none")
            label = "measured" if devs and all(d.measured for d in devs) else ("estimated" if devs else "")
            table.add_row(kind.upper(), fmt_j(run.energy_j.get(kind)) if devs else "not measured",
                          f"{src} ({label})" if devs else "no probe")
            if len(devs) > 1 or kind == "gpu":
                for d in devs:
                    use = "" if d.used is None else (" · used" if d.used else " · idle")
                    table.add_row(f"  {kind}:{d.index}", fmt_j(d.energy_j), (d.name or "") + use)
        table.add_row("[bold]total[/]", f"[bold]{fmt_j(run.energy_j.get('total'))}[/]", "")
        if run.energy_basis == "node":  # the whole machine, beside the components: never added to them
            table.add_row("NODE", fmt_j(run.node_energy_j), f"{run.sources.get('node', 'none')} (whole machine)")
            meters = [d for d in run.devices if d.kind == "node"]
            if len(meters) > 1:
                for d in meters:
                    table.add_row(f"  node:{d.index}", fmt_j(d.energy_j), d.name or "")
            table.add_row("  unattributed", fmt_j(run.unattributed_j), "node − total (fans, PSU loss, disks, NICs…)")
        console.print(table)
        lines = [
            f"started {when} · duration {fmt_s(run.duration_s)}",
            (f"energy {run.kwh * 1000:.4g} Wh ({run.kwh:.4g} kWh)" if run.kwh is not None else "energy unknown")
            + (" · from the node meter: CO2e, cost and per-token figures use it" if run.energy_basis == "node"
               else ""),
            f"CO2e {fmt_g(run.co2e_g)} at {run.carbon_intensity_g_per_kwh:g} g/kWh — {run.carbon_source}"
            if run.carbon_intensity_g_per_kwh is not None else "CO2e unknown",
            f"PUE {run.pue:g}" + (" (default: hardware energy only; pass --pue for your data centre)"
                                  if run.pue == 1.0 and run.pue_source is None else f" ({run.pue_source or 'given'})"),
        ]
        lines.extend(embodied_lines(run))
        lines.extend(forecast_lines(run))
        if run.cost is not None:
            c = run.cost
            parts = []
            if c.energy is not None:
                parts.append(f"electricity {fmt_money(c.energy, c.currency)} at {c.price_kwh:g}/kWh")
            if c.instance is not None:
                parts.append(f"instance {fmt_money(c.instance, c.currency)} at {c.price_hour:g}/h")
            lines.append(f"cost {fmt_money(c.total, c.currency)} (" + " + ".join(parts) + ")")
        if run.dynamic_energy_j is not None and run.baseline_w is not None:
            idle = run.baseline_w.get("total")
            lines.append(f"dynamic energy {fmt_j(run.dynamic_energy_j.get('total'))} above an idle baseline of "
                         f"{idle:.1f} W" if idle is not None else "idle baseline unknown")
        e = run.economics
        if run.tokens is not None:
            jpt = f"{run.j_per_token:.4g} J/token" if run.j_per_token is not None else "J/token unknown"
            kinds = ""
            if len(run.tokens_by_kind) > 1 or "tokens" not in run.tokens_by_kind:
                kinds = " (" + ", ".join(f"{n:,} {k}" for k, n in run.tokens_by_kind.items()) + ")"
            lines.append(f"tokens {run.tokens:,}{kinds} · {jpt}"
                         + (f" · {e.tokens_per_s:,.1f} tokens/s" if e.tokens_per_s is not None else ""))
            per_kind = [f"per {k} token: {j:.4g} J" for k, j in (("generated", run.j_per_generated_token),
                                                                  ("prompt", run.j_per_prompt_token)) if j is not None]
            if per_kind:
                lines.append(" · ".join(per_kind) + " (whole run's energy)")
            per = []
            if e.wh_per_1k_tokens is not None:
                per.append(f"{e.wh_per_1k_tokens:.4g} Wh")
            if e.co2e_g_per_1k_tokens is not None:
                per.append(f"{e.co2e_g_per_1k_tokens:.4g} g CO2e"
                           + (f" + {e.embodied_co2e_g_per_1k_tokens:.4g} embodied = "
                              f"{e.total_co2e_g_per_1k_tokens:.4g} g"
                              if e.embodied_co2e_g_per_1k_tokens is not None
                              and e.total_co2e_g_per_1k_tokens is not None else ""))
            if per:
                lines.append("per 1k tokens: " + " · ".join(per)
                             + (f" · per 1M tokens: {fmt_money(e.cost_per_1m_tokens, run.cost.currency)}"
                                if e.cost_per_1m_tokens is not None and run.cost else ""))
        if run.gpu_idle_j is not None:
            lines.append(gpu_use_line(run))
        for line in lines:
            console.print(line)
        if run.power_limits is not None:
            self._power_limits(console, run.power_limits)
        for key, series in run.power.items():
            if len(series) >= 2:
                watts = [p for _, p in series]
                console.print(f"[dim]{key:6}[/] {sparkline(watts)} {min(watts):,.0f}–{max(watts):,.0f} W")
        if run.spans:
            tree = Tree("spans")
            nodes: dict[int | None, Tree] = {None: tree}
            for s in run.spans:
                parent = nodes.get(s.parent, tree)
                nodes[s.id] = parent.add(self._span_label(s))
            console.print(tree)
        for w in run.warnings:
            console.print(f"[yellow]! {w}[/]")
        for d in run.devices:
            if d.note:
                console.print(f"[dim]{d.kind}:{d.index}: {d.note}[/]")

    @staticmethod
    def _power_limits(console: Console, pl: PowerLimitReport) -> None:
        """The GPU power limit the run kept, how it was chosen, and each profiled limit's figures per step."""
        from rich.table import Table

        if pl.chosen_w is not None:
            how = "set by --power-limit" if pl.source == "--power-limit" else f"tuned for {pl.objective}, " + (
                f"{len(pl.profiled)} limits profiled" if pl.source == "profiled" else f"from {pl.source}")
            back = {c["actor"] for c in pl.changes if c["action"] == "restored"}
            tail = ("original restored" + (" by the watchdog" if back == {"watchdog"} else "")) if pl.restored \
                else "original NOT restored"
            console.print(f"GPU power limit {pl.chosen_w:g} W, {how}; {tail}")
        if pl.profiled:
            table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
            for col in ("limit", "steps", "energy/step", "time/step", "score", ""):
                table.add_column(col, justify="right" if col else "left")
            for p in pl.profiled:
                score = "ruled out" if p["score"] is None else f"{p['score']:.4g}"
                table.add_row(f"{p['limit_w']:g} W", str(p["steps"]), fmt_j(p["energy_j"] / p["steps"]),
                              f"{p['time_s'] / p['steps'] * 1000:.4g} ms", score, "chosen" if p["chosen"] else "")
            console.print(table)

    @staticmethod
    def _span_label(s: SpanReport) -> str:
        parts = [f"[bold]{s.name}[/]", fmt_s(s.duration_s), fmt_j(s.energy_j.get("total"))]
        if s.energy_basis == "node":
            parts.append(f"node {fmt_j(s.node_energy_j)} (unattributed {fmt_j(s.unattributed_j)})")
        if s.tokens is not None:
            parts.append(f"{s.tokens:,} tokens")
            if s.j_per_token is not None and s.reliable:
                parts.append(f"{s.j_per_token:.4g} J/token")
            elif s.j_per_token is not None:  # a figure from a window the counter could not resolve: none given
                parts.append("J/token unreliable")
        if not s.reliable:
            parts.append("[yellow](shorter than a counter's update period: unreliable)[/]")
        if s.ended_at is None:
            parts.append("[yellow](not finished)[/]")
        return " · ".join(parts)


RENDERERS = (ConsoleRenderer,)
