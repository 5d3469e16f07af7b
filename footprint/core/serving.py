"""The read model of served requests: each request's share of the run's energy, and figures per model.

The shares come from footprint.core.attribution (its docstring is the model); they add up, with the idle
energy, to the run's total. CO2e and cost use the run's carbon intensity, PUE and prices, as its own figures
do; an instance price is shared among requests by the same attribution as the energy.
"""

from __future__ import annotations

from footprint.common import units
from footprint.common.record import Record
from footprint.core.attribution import Phase, attribute, phases
from footprint.core.store import Store

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from footprint.core.settings import Settings

ATTRIBUTION = ("each request's energy is its share of the energy measured while it ran, split among the requests "
               "active at each instant by the tokens each was processing then (prompt tokens over its prefill, "
               "completion tokens over its decode); under batching this is an attribution, not a measurement; "
               "energy with no request active is idle")


class RequestReport(Record):
    __slots__ = ("id", "model", "endpoint", "status", "stream", "started_at", "ended_at", "duration_s", "ttft_s",
                 "prompt_tokens", "completion_tokens", "usage_source", "error", "energy_j", "co2e_g", "cost")

    def __init__(self, id: int, model: str | None, endpoint: str | None, status: int | None, stream: bool,
                 started_at: float, ended_at: float, ttft_s: float | None, prompt_tokens: int | None,
                 completion_tokens: int | None, usage_source: str | None, error: str | None,
                 energy_j: dict[str, float], co2e_g: float | None = None, cost: float | None = None) -> None:
        self.id = id
        self.model = model
        self.endpoint = endpoint
        self.status = status
        self.stream = stream
        self.started_at = started_at
        self.ended_at = ended_at
        self.duration_s = ended_at - started_at
        self.ttft_s = ttft_s
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.usage_source = usage_source
        self.error = error
        self.energy_j = energy_j
        self.co2e_g = co2e_g
        self.cost = cost


class ModelReport(Record):
    """One model's requests. Per-token figures are None where no tokens were counted, never 0."""

    __slots__ = ("model", "requests", "failed", "prompt_tokens", "completion_tokens", "counted_requests",
                 "energy_j", "j_per_request_p50", "j_per_request_p95", "j_per_output_token", "co2e_g",
                 "co2e_g_per_1k_tokens", "cost", "cost_per_1m_tokens", "tokens_per_s", "ttft_p50_s",
                 "latency_p50_s", "latency_p95_s", "share_of_energy")

    def __init__(self, model: str, requests: int, failed: int, prompt_tokens: int, completion_tokens: int,
                 counted_requests: int, energy_j: float, j_per_request_p50: float | None,
                 j_per_request_p95: float | None, j_per_output_token: float | None, co2e_g: float | None,
                 co2e_g_per_1k_tokens: float | None, cost: float | None, cost_per_1m_tokens: float | None,
                 tokens_per_s: float | None, ttft_p50_s: float | None, latency_p50_s: float | None,
                 latency_p95_s: float | None, share_of_energy: float | None) -> None:
        self.model = model
        self.requests = requests
        self.failed = failed
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.counted_requests = counted_requests
        self.energy_j = energy_j
        self.j_per_request_p50 = j_per_request_p50
        self.j_per_request_p95 = j_per_request_p95
        self.j_per_output_token = j_per_output_token
        self.co2e_g = co2e_g
        self.co2e_g_per_1k_tokens = co2e_g_per_1k_tokens
        self.cost = cost
        self.cost_per_1m_tokens = cost_per_1m_tokens
        self.tokens_per_s = tokens_per_s
        self.ttft_p50_s = ttft_p50_s
        self.latency_p50_s = latency_p50_s
        self.latency_p95_s = latency_p95_s
        self.share_of_energy = share_of_energy


class ServingReport(Record):
    __slots__ = ("run_id", "run_name", "status", "energy_j", "idle_energy_j", "idle_share", "models", "requests",
                 "currency", "attribution", "warnings")

    def __init__(self, run_id: int, run_name: str, status: str, energy_j: float | None, idle_energy_j: float,
                 idle_share: float | None, models: list[ModelReport], requests: list[RequestReport],
                 currency: str, warnings: list[str]) -> None:
        self.run_id = run_id
        self.run_name = run_name
        self.status = status
        self.energy_j = energy_j
        self.idle_energy_j = idle_energy_j
        self.idle_share = idle_share
        self.models = models
        self.requests = requests
        self.currency = currency
        self.attribution = ATTRIBUTION
        self.warnings = warnings


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100), linear between closest ranks (numpy's default); None for no values."""
    if not values:
        return None
    v = sorted(values)
    pos = (len(v) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def busy_seconds(windows: Sequence[tuple[float, float]]) -> float:
    """Length of the union of time windows."""
    total, end = 0.0, float("-inf")
    for a, b in sorted(windows):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def _work(row: Any) -> list[Phase]:
    return phases(row["started_at"], row["ended_at"], first_token_at=row["first_token_at"],
                  prompt_tokens=row["prompt_tokens"], completion_tokens=row["completion_tokens"])


def attribute_run(store: Store, run_id: int, rows: Sequence[Any] | None = None,
                  ) -> tuple[list[dict[str, float]], dict[str, float]]:
    """Each request's energy per device kind (in `rows` order, default the run's requests) and the idle energy
    per kind."""
    rows = store.requests(run_id) if rows is None else rows
    work = [_work(r) for r in rows]
    shares: list[dict[str, float]] = [{} for _ in rows]
    idle: dict[str, float] = {}
    for d in store.run_devices(run_id):
        kind = d["kind"]
        got, rest = attribute(store.series(d["id"]), work)
        for out, j in zip(shares, got, strict=True):
            out[kind] = out.get(kind, 0.0) + j
        idle[kind] = idle.get(kind, 0.0) + rest
    return shares, idle


def write_attribution(store: Store, run_id: int) -> None:
    """Store the shares for SQL readers (the request_energy table); footprint's reports compute them again."""
    rows = store.requests(run_id)
    if not rows:
        return
    shares, idle = attribute_run(store, run_id, rows)
    out: list[tuple[int | None, str, float]] = [
        (int(r["id"]), k, j) for r, s in zip(rows, shares, strict=True) for k, j in s.items()]
    out += [(None, k, j) for k, j in idle.items()]
    store.set_request_energy(run_id, out)


def provisional_energies(store: Store, run_id: int, reqs: Sequence[Any], finished: Sequence[Any],
                         running: Sequence[Any], *, now: float) -> list[float]:
    """Requests' energy as known at their ends, for response headers or live metrics: each one's share over
    the reads stored so far, beside the finished requests that overlap it and the ones still running. A running
    request's work so far is its streamed chunks, or (not streamed) the mean work rate of the finished ones: its
    tokens are not known yet. The figures stored when the run ends may differ a little.

    Several requests at once (those one counter read serves) cost one attribution per device: the sharing is
    local in time, so over the reads around all of them each gets the share it would get alone."""
    def own(r: Any, end: float) -> list[Phase]:
        u = r.usage
        return phases(r.started_at, end, first_token_at=r.first_token_at,
                      prompt_tokens=u.prompt_tokens if u else None,
                      completion_tokens=u.completion_tokens if u else None)

    if not reqs:
        return []
    assert all(r.ended_at is not None for r in reqs)
    them = {id(r) for r in reqs}
    known = [own(r, r.ended_at) for r in reqs] + [own(r, r.ended_at) for r in finished if id(r) not in them]
    units_, seconds = sum(p.units for w in known for p in w), sum(p.end - p.start for w in known for p in w)
    rate = units_ / seconds if seconds > 0 else 1.0
    work = list(known)
    for r in running:
        if r.tokens_so_far:
            work.append(phases(r.started_at, now, first_token_at=r.first_token_at, completion_tokens=r.tokens_so_far))
        elif now > r.started_at:
            work.append([Phase(r.started_at, now, rate * (now - r.started_at))])
    totals = [0.0] * len(reqs)
    since, until = min(r.started_at for r in reqs), max(r.ended_at for r in reqs)
    devices = store.run_devices(run_id)
    node = any(d["kind"] == "node" for d in devices)  # then the node meter alone is the figure (see load_serving)
    for d in devices:
        if (d["kind"] == "node") != node:
            continue
        series = store.series(d["id"], since=since, until=until)
        if len(series) < 2:
            continue
        got, _ = attribute(series, work)
        for i in range(len(reqs)):
            totals[i] += got[i]
    return totals


def load_serving(store: Store, run_id: int, settings: Settings | None = None) -> ServingReport | None:
    """The run's requests with their energy, and per-model figures; None if it served none."""
    from footprint.core.model import load_run

    rows = store.requests(run_id)
    if not rows:
        return None
    run = load_run(store, run_id, settings, power=False)
    shares, idle = attribute_run(store, run_id, rows)
    intensity, pue = run.carbon_intensity_g_per_kwh, run.pue
    price_kwh = run.cost.price_kwh if run.cost is not None else None
    price_hour = run.cost.price_hour if run.cost is not None else None
    currency = run.cost.currency if run.cost is not None else "USD"
    instance: list[float] | None = None
    if price_hour is not None and run.started_at is not None and run.ended_at is not None:
        # the instance's price accrues evenly over the run: shared like a constant power
        per_s = price_hour / 3600.0
        line = [(run.started_at, 0.0), (run.ended_at, per_s * (run.ended_at - run.started_at))]
        instance, _ = attribute(line, [_work(r) for r in rows])

    # a whole-node meter is beside the components, never added to them: with one, it is the total (the run's basis)
    node_basis = run.energy_basis == "node"

    def total_of(per_kind: dict[str, float]) -> float:
        if node_basis:
            return per_kind.get("node", 0.0)
        return sum(j for k, j in per_kind.items() if k != "node")

    reports: list[RequestReport] = []
    for i, (r, s) in enumerate(zip(rows, shares, strict=True)):
        total = total_of(s)
        energy = {**s, "total": total}
        co2 = units.co2e_g(total, intensity, pue) if intensity is not None else None
        cost = None
        if price_kwh is not None or instance is not None:
            cost = (units.energy_cost(total, price_kwh, pue) if price_kwh is not None else 0.0) \
                + (instance[i] if instance is not None else 0.0)
        ttft = r["first_token_at"] - r["started_at"] if r["first_token_at"] is not None else None
        reports.append(RequestReport(
            id=int(r["id"]), model=r["model"], endpoint=r["endpoint"], status=r["status"], stream=bool(r["stream"]),
            started_at=r["started_at"], ended_at=r["ended_at"], ttft_s=ttft, prompt_tokens=r["prompt_tokens"],
            completion_tokens=r["completion_tokens"], usage_source=r["usage_source"], error=r["error"],
            energy_j=energy, co2e_g=co2, cost=cost))

    run_total = run.node_energy_j if node_basis else run.energy_j.get("total")
    idle_total = total_of(idle)
    models = [_model(name, [q for q in reports if (q.model or "(none)") == name], run_total)
              for name in sorted({q.model or "(none)" for q in reports})]
    warnings: list[str] = []
    counted = sum(m.counted_requests for m in models)
    if counted:
        warnings.append(f"{counted} streamed request(s) got no usage from the server: their completion tokens were "
                        "counted from the chunks that carried text (one token per chunk), their prompt tokens are "
                        "unknown")
    if any(not d.measured for d in run.devices):
        warnings.append("estimated, not measured: " + ", ".join(sorted({f"{d.kind} ({d.source})"
                                                                        for d in run.devices if not d.measured})))
    return ServingReport(run_id=run_id, run_name=run.name, status=run.status, energy_j=run_total,
                         idle_energy_j=idle_total, idle_share=idle_total / run_total if run_total else None,
                         models=models, requests=reports, currency=currency, warnings=warnings)


def _model(name: str, reqs: list[RequestReport], run_total: float | None) -> ModelReport:
    ok = [q for q in reqs if q.status is not None and 200 <= q.status < 300 and q.error is None]
    energy = sum(q.energy_j["total"] for q in reqs)
    prompt = sum(q.prompt_tokens or 0 for q in reqs)
    completion = sum(q.completion_tokens or 0 for q in reqs)
    co2 = None if any(q.co2e_g is None for q in reqs) else sum(q.co2e_g or 0.0 for q in reqs)
    cost = None if any(q.cost is None for q in reqs) else sum(q.cost or 0.0 for q in reqs)
    busy = busy_seconds([(q.started_at, q.ended_at) for q in reqs])
    per_request = [q.energy_j["total"] for q in ok]
    return ModelReport(
        model=name, requests=len(reqs), failed=len(reqs) - len(ok), prompt_tokens=prompt,
        completion_tokens=completion, counted_requests=sum(q.usage_source == "counted" for q in reqs),
        energy_j=energy, j_per_request_p50=percentile(per_request, 50), j_per_request_p95=percentile(per_request, 95),
        j_per_output_token=units.per_token(energy, completion), co2e_g=co2,
        co2e_g_per_1k_tokens=None if co2 is None else units.per_token(co2 * 1000, prompt + completion),
        cost=cost, cost_per_1m_tokens=units.per_million_tokens(cost, prompt + completion),
        tokens_per_s=completion / busy if busy > 0 and completion else None,
        ttft_p50_s=percentile([q.ttft_s for q in ok if q.ttft_s is not None], 50),
        latency_p50_s=percentile([q.duration_s for q in ok], 50),
        latency_p95_s=percentile([q.duration_s for q in ok], 95),
        share_of_energy=energy / run_total if run_total else None)
