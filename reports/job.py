"""The job-wide view of a distributed job as text or JSON; `footprint.core.job` builds it from the ranks' runs."""

from __future__ import annotations

import io
import json

from footprint.core.job import JobReport
from footprint.core.model import components

from .console import fmt_g, fmt_j, fmt_s


def render_job(job: JobReport, *, as_json: bool = False) -> str:
    if as_json:
        return json.dumps(job.to_dict(), indent=2) + "\n"
    from rich.console import Console
    from rich.table import Table

    buf = io.StringIO()
    console = Console(file=buf, width=110, no_color=True, highlight=False)
    table = Table(title=f"footprint · job {job.job_id} · {len(job.nodes)} node(s), {len(job.runs)} rank run(s)",
                  title_justify="left")
    kinds = components(job.energy_j)
    for col in ("node", "ranks", *(k.upper() for k in kinds), "total"):
        table.add_column(col, justify="left" if col in ("node", "ranks") else "right")
    for n in job.nodes:
        table.add_row(n.node, ",".join(map(str, sorted(n.ranks))) or "-",
                      *(fmt_j(n.energy_j.get(k)) for k in kinds), fmt_j(n.energy_j["total"]))
    table.add_row("[bold]job[/]", "", *(fmt_j(job.energy_j[k]) for k in kinds),
                  f"[bold]{fmt_j(job.energy_j['total'])}[/]")
    console.print(table)
    for g in job.gpus:
        console.print(f"  gpu {g['node']}:{g['index']} (rank {g['rank']}) {fmt_j(g['energy_j'])} · {g['source']}")
    console.print(f"duration {fmt_s(job.duration_s)} · CO2e {fmt_g(job.co2e_g)}"
                  + (f" · tokens {job.tokens:,} (all ranks) · {job.j_per_token:.4g} J/token"
                     if job.tokens and job.j_per_token is not None else ""))
    for w in job.warnings:
        console.print(f"! {w}")
    return buf.getvalue()
