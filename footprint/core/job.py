"""The job-wide read model of a distributed job: per node, per GPU, total, and J/token with every rank's tokens.

Built from run dicts (RunReport.to_dict()): the same code serves rank 0 at the end of a job (payloads gathered
from every rank) and `footprint report --job` over merged per-node DBs. `footprint.reports.job` renders it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from footprint.common import units
from footprint.core.model import COMPONENTS, components


def _add(a: float | None, b: float | None) -> float | None:
    return b if a is None else (a if b is None else a + b)


@dataclass
class NodeTotals:
    node: str
    ranks: list[int] = field(default_factory=list)
    energy_j: dict[str, float | None] = field(default_factory=lambda: dict.fromkeys([*COMPONENTS, "total"]))
    sources: dict[str, str] = field(default_factory=dict)


@dataclass
class JobReport:
    job_id: str | None
    runs: list[int]
    started_at: float | None
    ended_at: float | None
    duration_s: float | None
    nodes: list[NodeTotals]
    gpus: list[dict[str, Any]]
    energy_j: dict[str, float | None]
    kwh: float | None
    co2e_g: float | None
    tokens: int | None
    j_per_token: float | None
    warnings: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def job_report(runs: list[dict[str, Any]], job_id: str | None = None) -> JobReport:
    nodes: dict[str, NodeTotals] = {}
    gpus: list[dict[str, Any]] = []
    total: dict[str, float | None] = dict.fromkeys([*COMPONENTS, "total"])
    tokens: int | None = None
    co2: float | None = None
    warnings: list[str] = []
    seen_gpus: dict[tuple[str, str], int | None] = {}
    for r in sorted(runs, key=lambda r: (r.get("rank") is None, r.get("rank") or 0, r["id"])):
        node = r.get("node") or r.get("host") or "?"
        nt = nodes.setdefault(node, NodeTotals(node))
        if r.get("rank") is not None:
            nt.ranks.append(int(r["rank"]))
        for kind in [*components(r["energy_j"]), "total"]:  # every kind a rank measured, not a fixed list
            nt.energy_j[kind] = _add(nt.energy_j.get(kind), r["energy_j"][kind])
            total[kind] = _add(total.get(kind), r["energy_j"][kind])
        for kind in components(r["energy_j"]):
            src = r["sources"].get(kind, "none")
            if src != "none":
                nt.sources[kind] = src
        for d in r["devices"]:
            if d["kind"] != "gpu":
                continue
            key = (node, d.get("uuid") or str(d["index"]))
            if key in seen_gpus:
                warnings.append(f"GPU {key[1]} on {node} measured by ranks {seen_gpus[key]} and {r.get('rank')}: "
                                "counted twice (set FOOTPRINT_GPUS per rank)")
            seen_gpus[key] = r.get("rank")
            gpus.append({"node": node, "rank": r.get("rank"), "index": d["index"], "name": d["name"],
                         "energy_j": d["energy_j"], "source": d["source"]})
        if r.get("tokens") is not None:
            tokens = (tokens or 0) + int(r["tokens"])
        co2 = _add(co2, r.get("co2e_g"))
        if r.get("status") not in ("completed", None):
            warnings.append(f"run {r['id']} (rank {r.get('rank')}) is {r.get('status')}")
    starts = [r["started_at"] for r in runs if r.get("started_at") is not None]
    ends = [r["ended_at"] for r in runs if r.get("ended_at") is not None]
    start, end = (min(starts) if starts else None), (max(ends) if ends else None)
    nodes_without_cpu = [n.node for n in nodes.values() if n.energy_j["cpu"] is None]
    if nodes_without_cpu:
        warnings.append("no CPU figure from node(s) " + ", ".join(nodes_without_cpu)
                        + " (local rank 0 measures CPU and RAM: was it part of this job?)")
    return JobReport(
        job_id=job_id or next((r.get("job_id") for r in runs if r.get("job_id")), None),
        runs=[r["id"] for r in runs], started_at=start, ended_at=end,
        duration_s=(end - start) if start is not None and end is not None else None,
        nodes=list(nodes.values()), gpus=gpus, energy_j=total,
        kwh=units.j_to_kwh(total["total"]) if total["total"] is not None else None, co2e_g=co2, tokens=tokens,
        j_per_token=units.per_token(total["total"], tokens), warnings=warnings,
    )
