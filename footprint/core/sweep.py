"""The read model of a sweep: every point of the grid with its figures over its repeats (mean and t-based 95 %
interval), each as a ratio to the reference point, the Pareto frontiers on (J per token, quality) and (J per
token, tokens/s), and the cheapest point whose quality is within a margin of the best."""

from __future__ import annotations

import itertools
import json
import os

from footprint.common import pareto, stats
from footprint.common.errors import FootprintError
from footprint.common.record import Record
from footprint.core.model import RunReport, load_run
from footprint.core.settings import Settings
from footprint.core.store import Store

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# per point, over its completed runs; every one but tokens_per_s and quality is better lower
METRICS = ("energy_j", "j_per_token", "j_per_request", "tokens_per_s", "duration_s", "quality", "cost_per_1m_tokens")
HIGHER_IS_BETTER = ("tokens_per_s", "quality")
REQUESTS = "requests"  # the token kind a workload counts its requests as: J per request, never counted as tokens


class Estimate(Record):
    """A figure over a point's runs: the mean and the half-width of its t-based 95 % confidence interval (None
    for fewer than two runs), from `n` runs (`values`)."""

    __slots__ = ("mean", "ci95", "n", "values")

    def __init__(self, mean: float, ci95: float | None, n: int, values: list[float]) -> None:
        self.mean = mean
        self.ci95 = ci95
        self.n = n
        self.values = values


class PointReport(Record):
    __slots__ = ("index", "point", "status", "runs", "figures", "ratios", "quality_frontier",
                 "throughput_frontier", "estimated", "quality_metric", "warnings")

    def __init__(self, index: int, point: dict[str, str], status: str, runs: list[dict[str, Any]],
                 figures: dict[str, Estimate | None], ratios: dict[str, float | None] | None = None,
                 quality_frontier: bool | None = None, throughput_frontier: bool | None = None,
                 estimated: bool = False, quality_metric: str | None = None,
                 warnings: list[str] | None = None) -> None:
        self.index = index
        self.point = point
        self.status = status  # completed | failed | interrupted | missing (not run yet)
        self.runs = runs  # {run_id, repeat, status, exit_code} per recorded run, in the order they ran
        self.figures = figures
        self.ratios = ratios if ratios is not None else {}
        self.quality_frontier = quality_frontier  # None: the point lacks J per token or quality
        self.throughput_frontier = throughput_frontier
        self.estimated = estimated  # some of its energy is an estimate, not a measurement
        self.quality_metric = quality_metric
        self.warnings = warnings if warnings is not None else []

    def label(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.point.items()) or "(no parameters)"


class SweepReport(Record):
    __slots__ = ("id", "name", "status", "command", "params", "repeats", "created_at", "points", "per",
                 "reference", "within", "choice", "choice_by", "best_quality", "currency", "db")

    def __init__(self, id: int, name: str, status: str, command: list[str], params: dict[str, list[str]],
                 repeats: int, created_at: float, points: list[PointReport], per: str, reference: int | None,
                 within: float | None = None, choice: int | None = None, choice_by: str | None = None,
                 best_quality: int | None = None, currency: str | None = None, db: str = "") -> None:
        self.id = id
        self.name = name
        self.status = status
        self.command = command
        self.params = params
        self.repeats = repeats
        self.created_at = created_at
        self.points = points
        self.per = per  # what "token" means in the per-token figures: "generated" or "all" (every kind but requests)
        self.reference = reference  # index of the point the ratios are to
        self.within = within  # the quality margin asked for, if any
        self.choice = choice  # index of the cheapest point within `within` of the best quality
        self.choice_by = choice_by  # the figure "cheapest" was judged on: cost_per_1m_tokens or j_per_token
        self.best_quality = best_quality
        self.currency = currency
        self.db = db


def grid(params: dict[str, list[str]]) -> list[dict[str, str]]:
    """Every combination of the parameters' values, the last parameter varying fastest."""
    names = list(params)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*(params[n] for n in names))]


def run_figures(run: RunReport, quality: float | None, *, generated: bool) -> dict[str, float | None]:
    """One run's figures. Tokens are the generated ones when `generated`, else every kind but requests."""
    energy = run.energy_j["total"]
    kinds = run.tokens_by_kind
    tokens = kinds.get("generated") if generated else (sum(n for k, n in kinds.items() if k != REQUESTS) or None)
    requests = kinds.get(REQUESTS) or None
    cost = run.cost.total if run.cost is not None else None
    duration = run.duration_s
    return {
        "energy_j": energy,
        "j_per_token": energy / tokens if energy is not None and tokens else None,
        "j_per_request": energy / requests if energy is not None and requests else None,
        "tokens_per_s": tokens / duration if tokens and duration else None,
        "duration_s": duration,
        "quality": quality,
        "cost_per_1m_tokens": cost / tokens * 1e6 if cost is not None and tokens else None,
    }


def estimate(values: list[float]) -> Estimate | None:
    if not values:
        return None
    mean, ci = stats.mean_ci95(values)
    return Estimate(mean, ci, len(values), values)


def sweep_status(row: Any) -> str:
    """The status column, or incomplete for a running sweep whose process is gone."""
    status = str(row["status"])
    if status == "running" and row["host"] == os.uname().nodename and row["pid"]:
        try:
            os.kill(int(row["pid"]), 0)
        except ProcessLookupError:
            return "incomplete"  # its process is gone: killed, or the machine went down
        except PermissionError:
            pass
    return status


def point_status(statuses: list[str], repeats: int) -> str:
    """A point is completed when `repeats` of its runs completed; else failed if a run failed; else interrupted
    if one was; else missing."""
    if statuses.count("completed") >= repeats:
        return "completed"
    for s in ("failed", "interrupted"):
        if s in statuses:
            return s
    return "missing"


def load_sweep(store: Store, sweep_id: int, settings: Settings | None = None, *, within: float | None = None,
               reference: int | None = None) -> SweepReport:
    row = store.sweep_row(sweep_id)
    if row is None:
        raise FootprintError(f"no sweep with id {sweep_id} in {store.path}")
    params: dict[str, list[str]] = json.loads(row["params"])
    repeats = int(row["repeats"])
    recorded = store.sweep_point_rows(sweep_id)
    by_point: dict[int, list[Any]] = {}
    for r in recorded:
        by_point.setdefault(int(r["point_index"]), []).append(r)
    done_ids = [int(r["run_id"]) for r in recorded if r["run_id"] is not None and r["status"] == "completed"]
    runs = {rid: load_run(store, rid, settings, power=False) for rid in done_ids}
    quality = store.run_quality(done_ids)
    generated = bool(runs) and all(r.tokens_by_kind.get("generated") for r in runs.values())

    points: list[PointReport] = []
    for index, point in enumerate(grid(params)):
        rows = by_point.get(index, [])
        per_metric: dict[str, list[float]] = {m: [] for m in METRICS}
        estimated = False
        metric: str | None = None
        warnings: list[str] = []
        for r in rows:
            rid = r["run_id"]
            if rid is None or r["status"] != "completed":
                continue
            run = runs[int(rid)]
            q = quality.get(int(rid))
            metric = metric or (q[1] if q else None)
            for m, v in run_figures(run, q[0] if q else None, generated=generated).items():
                if v is not None:
                    per_metric[m].append(v)
            estimated = estimated or any(not d.measured for d in run.devices)
            warnings.extend(w for w in run.warnings if w not in warnings and not w.startswith("estimated, not"))
        status = point_status([str(r["status"]) for r in rows], repeats)
        points.append(PointReport(
            index, point, status,
            [{"run_id": r["run_id"], "repeat": r["repeat"], "status": r["status"], "exit_code": r["exit_code"]}
             for r in rows],
            {m: estimate(v) for m, v in per_metric.items()}, estimated=estimated, quality_metric=metric,
            warnings=warnings))
    ref = _reference(points, reference)
    for p in points:
        p.ratios = {m: _ratio(p.figures[m], points[ref].figures[m] if ref is not None else None) for m in METRICS}
    _frontiers(points)
    choice, by, best = _choose(points, within)
    currency = next((r.cost.currency for r in runs.values() if r.cost is not None), None)
    return SweepReport(sweep_id, str(row["name"]), sweep_status(row), json.loads(row["command"]), params, repeats,
                       float(row["created_at"]), points, "generated" if generated else "all", ref, within,
                       choice, by, best, currency, store.path)


def _mean(p: PointReport, metric: str) -> float | None:
    e = p.figures.get(metric)
    return e.mean if e is not None else None


def _ratio(value: Estimate | None, base: Estimate | None) -> float | None:
    return value.mean / base.mean if value is not None and base is not None and base.mean else None


def _reference(points: list[PointReport], reference: int | None) -> int | None:
    if reference is not None:
        if not 0 <= reference < len(points):
            raise FootprintError(f"no point {reference} in this sweep (points 0 to {len(points) - 1})")
        return reference
    return next((p.index for p in points if _mean(p, "energy_j") is not None), None)


def _frontiers(points: list[PointReport]) -> None:
    for attr, benefit in (("quality_frontier", "quality"), ("throughput_frontier", "tokens_per_s")):
        known = [(p.index, _mean(p, "j_per_token"), _mean(p, benefit)) for p in points]
        have = [(i, c, b) for i, c, b in known if c is not None and b is not None]
        front = pareto.frontier(have)
        for p in points:
            if _mean(p, "j_per_token") is not None and _mean(p, benefit) is not None:
                setattr(p, attr, p.index in front)


def _choose(points: list[PointReport], within: float | None) -> tuple[int | None, str | None, int | None]:
    """(cheapest point within the margin, the figure judged on, best-quality point). Cheapest is by cost per 1M
    tokens when every candidate has a price, else by J per token."""
    rated = [p for p in points if _mean(p, "quality") is not None]
    best = max(rated, key=lambda p: (_mean(p, "quality"), -p.index)).index if rated else None
    if within is None or not rated:
        return None, None, best
    by = "cost_per_1m_tokens" if all(_mean(p, "cost_per_1m_tokens") is not None for p in rated) else "j_per_token"
    have = [(p.index, _mean(p, by), _mean(p, "quality")) for p in rated if _mean(p, by) is not None]
    choice = pareto.cheapest_within([(i, c, q) for i, c, q in have if c is not None and q is not None], within)
    return (int(choice) if choice is not None else None), by, best  # type: ignore[call-overload]
