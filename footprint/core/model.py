"""The report model: what a run cost, computed from the store with SQL, ready for any renderer."""

from __future__ import annotations

import os
import time

from footprint.common import units
from footprint.common.record import Record
from footprint.core.embodied import EmbodiedReport, run_embodied
from footprint.core.settings import Settings
from footprint.core.steps import Forecaster, ForecastReport
from footprint.core.store import Store

TYPE_CHECKING = False  # typing and dataclasses would cost start-up time: reports are built at every stop
if TYPE_CHECKING:
    from typing import Any

    from footprint.core.limits import PowerLimitReport

# Device kinds every report shows, in this order, even when nothing measured them (the JSON contract's keys);
# any other kind a probe reports (an SoC, an accelerator...) follows them and counts in the total.
COMPONENTS = ("cpu", "ram", "gpu")
# A whole-machine figure (a wall meter, the BMC, a laptop's battery, a phone): it covers every component and what
# none of them sees (fans, PSU loss, disks, NICs), so it is reported beside them and never added to them.
NODE = "node"
ENERGY_BASES = ("node", "components")  # what kWh, CO2e, cost and per-token figures are computed from
STALE_AFTER_S = 15.0  # a 'running' run whose heartbeat is older than this (and whose process is gone) is incomplete


class DeviceReport(Record):
    __slots__ = ("kind", "index", "name", "energy_j", "source", "measured", "uuid", "power_limit_w", "note",
                 "mean_power_w", "first_read_at", "last_read_at", "used")

    def __init__(self, kind: str, index: int, name: str, energy_j: float | None, source: str, measured: bool,
                 uuid: str | None = None, power_limit_w: float | None = None, note: str | None = None,
                 mean_power_w: float | None = None, first_read_at: float | None = None,
                 last_read_at: float | None = None, used: bool | None = None) -> None:
        self.kind = kind
        self.index = index
        self.name = name
        self.energy_j = energy_j
        self.source = source
        self.measured = measured
        self.uuid = uuid
        self.power_limit_w = power_limit_w
        self.note = note
        self.mean_power_w = mean_power_w
        self.first_read_at = first_read_at
        self.last_read_at = last_read_at
        # a GPU: whether the run's processes used it (runs.meta "gpus_used"); None: not known, or not a GPU
        self.used = used


class Economics(Record):
    """Per-token figures; None wherever tokens (or the price) are unknown, never 0."""

    __slots__ = ("tokens", "tokens_per_s", "j_per_token", "wh_per_1k_tokens", "co2e_g_per_1k_tokens",
                 "cost_per_1m_tokens", "embodied_co2e_g_per_1k_tokens", "total_co2e_g_per_1k_tokens")

    def __init__(self, tokens: int | None = None, tokens_per_s: float | None = None,
                 j_per_token: float | None = None, wh_per_1k_tokens: float | None = None,
                 co2e_g_per_1k_tokens: float | None = None, cost_per_1m_tokens: float | None = None,
                 embodied_co2e_g_per_1k_tokens: float | None = None,
                 total_co2e_g_per_1k_tokens: float | None = None) -> None:
        self.tokens = tokens
        self.tokens_per_s = tokens_per_s
        self.j_per_token = j_per_token
        self.wh_per_1k_tokens = wh_per_1k_tokens
        self.co2e_g_per_1k_tokens = co2e_g_per_1k_tokens
        self.cost_per_1m_tokens = cost_per_1m_tokens
        # co2e_g_per_1k_tokens is operational (energy); these add the devices' manufacturing share
        self.embodied_co2e_g_per_1k_tokens = embodied_co2e_g_per_1k_tokens
        self.total_co2e_g_per_1k_tokens = total_co2e_g_per_1k_tokens


class Cost(Record):
    __slots__ = ("energy", "instance", "total", "currency", "price_kwh", "price_hour")

    def __init__(self, energy: float | None, instance: float | None, total: float | None, currency: str,
                 price_kwh: float | None, price_hour: float | None) -> None:
        self.energy = energy
        self.instance = instance
        self.total = total
        self.currency = currency
        self.price_kwh = price_kwh
        self.price_hour = price_hour


class SpanReport(Record):
    """One span's figures. `energy_j` holds the components; `node_energy_j` the whole-node meter's figure over the
    span when there is one, `unattributed_j` the node less the components, and `energy_basis` which of the two
    CO2e, cost and J/token are computed from."""

    __slots__ = ("id", "name", "parent", "started_at", "ended_at", "duration_s", "energy_j", "tokens",
                 "j_per_token", "reliable", "co2e_g", "cost", "economics", "node_energy_j", "unattributed_j",
                 "energy_basis")

    def __init__(self, id: int, name: str, parent: int | None, started_at: float, ended_at: float | None,
                 duration_s: float | None, energy_j: dict[str, float | None], tokens: int | None,
                 j_per_token: float | None, reliable: bool = True, co2e_g: float | None = None,
                 cost: Cost | None = None, economics: Economics | None = None, node_energy_j: float | None = None,
                 unattributed_j: float | None = None, energy_basis: str = "components") -> None:
        self.id = id
        self.name = name
        self.parent = parent
        self.started_at = started_at
        self.ended_at = ended_at
        self.duration_s = duration_s
        self.energy_j = energy_j
        self.tokens = tokens
        self.j_per_token = j_per_token
        self.reliable = reliable
        self.co2e_g = co2e_g
        self.cost = cost
        self.economics = economics if economics is not None else Economics()
        self.node_energy_j = node_energy_j
        self.unattributed_j = unattributed_j
        self.energy_basis = energy_basis


class RunReport(Record):
    """One run's figures. `energy_j` holds the components (cpu, ram, gpu, any other kind) and their "total";
    `node_energy_j` is the whole-node figure (wall meter, BMC, battery, phone) when one was read, never part of
    that total; `unattributed_j` = node - total (negative: said in a warning, not clipped); `energy_basis` says
    whether kwh, co2e_g, cost, j_per_token and economics come from the node figure or the components' total."""

    __slots__ = ("id", "name", "status", "exit_code", "started_at", "ended_at", "duration_s", "energy_j", "sources",
                 "devices", "kwh", "co2e_g", "carbon_intensity_g_per_kwh", "carbon_source", "country", "tokens",
                 "j_per_token", "spans", "host", "command", "warnings", "events", "region", "pue", "cost",
                 "economics", "baseline_w", "dynamic_energy_j", "power", "meta", "tokens_by_kind",
                 "j_per_generated_token", "j_per_prompt_token", "job_id", "rank", "node", "created_at", "pue_source",
                 "power_limits", "embodied", "embodied_co2e_g", "total_co2e_g", "forecast", "node_energy_j",
                 "unattributed_j", "energy_basis", "gpu_used_j", "gpu_idle_j", "j_per_token_used_gpus")

    def __init__(self, id: int, name: str, status: str, exit_code: int | None, started_at: float | None,
                 ended_at: float | None, duration_s: float | None, energy_j: dict[str, float | None],
                 sources: dict[str, str], devices: list[DeviceReport], kwh: float | None, co2e_g: float | None,
                 carbon_intensity_g_per_kwh: float | None, carbon_source: str | None, country: str | None,
                 tokens: int | None, j_per_token: float | None, spans: list[SpanReport] | None = None,
                 host: str | None = None, command: list[str] | None = None, warnings: list[str] | None = None,
                 events: list[dict[str, Any]] | None = None, region: str | None = None, pue: float = 1.0,
                 cost: Cost | None = None, economics: Economics | None = None,
                 baseline_w: dict[str, float | None] | None = None,
                 dynamic_energy_j: dict[str, float | None] | None = None,
                 power: dict[str, list[tuple[float, float]]] | None = None, meta: dict[str, Any] | None = None,
                 tokens_by_kind: dict[str, int] | None = None, j_per_generated_token: float | None = None,
                 j_per_prompt_token: float | None = None,
                 job_id: str | None = None, rank: int | None = None, node: str | None = None,
                 created_at: float | None = None, pue_source: str | None = None,
                 power_limits: PowerLimitReport | None = None,
                 embodied: EmbodiedReport | None = None, embodied_co2e_g: float | None = None,
                 total_co2e_g: float | None = None, forecast: ForecastReport | None = None,
                 node_energy_j: float | None = None, unattributed_j: float | None = None,
                 energy_basis: str = "components", gpu_used_j: float | None = None,
                 gpu_idle_j: float | None = None, j_per_token_used_gpus: float | None = None) -> None:
        self.id = id
        self.name = name
        self.status = status
        self.exit_code = exit_code
        self.started_at = started_at
        self.ended_at = ended_at
        self.duration_s = duration_s
        self.energy_j = energy_j
        self.sources = sources
        self.devices = devices
        self.kwh = kwh
        self.co2e_g = co2e_g
        self.carbon_intensity_g_per_kwh = carbon_intensity_g_per_kwh
        self.carbon_source = carbon_source
        self.country = country
        self.tokens = tokens
        self.j_per_token = j_per_token
        self.spans = spans if spans is not None else []
        self.host = host
        self.command = command
        self.warnings = warnings if warnings is not None else []
        self.events = events if events is not None else []
        self.region = region
        self.pue = pue
        self.cost = cost
        self.economics = economics if economics is not None else Economics()
        self.baseline_w = baseline_w
        self.dynamic_energy_j = dynamic_energy_j
        self.power = power if power is not None else {}
        self.meta = meta if meta is not None else {}
        self.tokens_by_kind = tokens_by_kind if tokens_by_kind is not None else {}
        self.j_per_generated_token = j_per_generated_token
        self.j_per_prompt_token = j_per_prompt_token
        self.job_id = job_id
        self.rank = rank
        self.node = node
        self.created_at = created_at  # when the run was created (identifies it, with host and id)
        self.pue_source = pue_source  # where the PUE came from: "given", "from FOOTPRINT_PUE", "from <file>"
        self.power_limits = power_limits  # footprint.core.limits.PowerLimitReport, when GPU limits were changed
        # co2e_g stays the operational figure (energy × PUE × intensity); embodied adds the devices' manufacturing
        # share, and total_co2e_g is their sum (the operational figure alone with embodied off)
        self.embodied = embodied if embodied is not None else EmbodiedReport(False)
        self.embodied_co2e_g = embodied_co2e_g
        self.total_co2e_g = total_co2e_g
        self.forecast = forecast  # with an expected number of steps: the predicted totals (footprint.core.steps)
        self.node_energy_j = node_energy_j
        self.unattributed_j = unattributed_j
        self.energy_basis = energy_basis
        # where the run's processes were seen on some GPUs (runs.meta "gpus_used"): the energy of those GPUs and of
        # the others, measured all the same, and J/token with the idle GPUs' energy left out; else None
        self.gpu_used_j = gpu_used_j
        self.gpu_idle_j = gpu_idle_j
        self.j_per_token_used_gpus = j_per_token_used_gpus

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out.pop("power")  # a chart's data, not part of the JSON contract
        out.pop("created_at")  # an identity field, not a figure: not part of the JSON contract either
        if out["power_limits"] is None:  # present only for a run that set or tuned a GPU power limit
            out.pop("power_limits")
        return out


class Report(Record):
    __slots__ = ("runs", "db")

    def __init__(self, runs: list[RunReport], db: str) -> None:
        self.runs = runs
        self.db = db

    def to_dict(self) -> dict[str, Any]:
        return {"db": self.db, "runs": [r.to_dict() for r in self.runs]}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def effective_status(row: Any, now: float | None = None) -> str:
    status = str(row["status"])
    if status != "running":
        return status
    now = _owner_now(row) if now is None else now
    if row["host"] == os.uname().nodename and row["pid"] and not _pid_alive(int(row["pid"])):
        return "incomplete"
    if row["heartbeat_at"] is not None and now - float(row["heartbeat_at"]) > STALE_AFTER_S:
        return "incomplete"
    return "running"


def _owner_now(row: Any) -> float:
    """Now on the timeline of the process that owns the run (the one its heartbeat is on), when this process
    shares its boot and so its monotonic clock; else this process's wall clock."""
    import json

    from footprint.common.clock import owner_clock

    try:
        text = row["meta"]
        meta = json.loads(text) if text else {}
    except (IndexError, KeyError, TypeError, ValueError):  # a row without meta (sqlite3.Row: IndexError)
        meta = {}
    clock = owner_clock(meta.get("clock_anchor")) if isinstance(meta, dict) else None
    return clock.now() if clock is not None else time.time()


def _sum(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def kinds_of(kinds: object) -> list[str]:
    """The components to show for these device kinds: COMPONENTS, then any other kind, sorted."""
    return [*COMPONENTS, *sorted({str(k) for k in kinds} - set(COMPONENTS))]  # type: ignore[attr-defined]


def basis(components_j: float | None, node_j: float | None) -> tuple[float | None, float | None, str]:
    """(the energy that kWh, CO2e, cost and per-token figures use, unattributed J, the basis): the node figure
    when a whole-node meter was read, else the components' total. Unattributed is node - components, unclipped."""
    if node_j is None:
        return components_j, None, "components"
    return node_j, (node_j - components_j) if components_j is not None else None, "node"


def components(energy_j: dict[str, float | None]) -> list[str]:
    """The component rows of an energy dict (a run's, a span's, a job's), in display order: what renderers
    iterate, so that no kind is ever left out."""
    return [k for k in energy_j if k != "total"]


def _components(per_kind: dict[str, list[float | None]]) -> dict[str, float | None]:
    out: dict[str, float | None] = {k: _sum(per_kind.get(k, [])) for k in kinds_of(per_kind)}
    out["total"] = _sum([out[k] for k in components(out)])
    return out


def cost_of(energy_j: float | None, duration_s: float | None, pue: float, price_kwh: float | None,
            price_hour: float | None, currency: str) -> Cost | None:
    if price_kwh is None and price_hour is None:
        return None
    energy = units.energy_cost(energy_j, price_kwh, pue) if price_kwh is not None and energy_j is not None else None
    instance = units.instance_cost(duration_s, price_hour) if price_hour is not None and duration_s is not None \
        else None
    parts = [c for c in (energy, instance) if c is not None]
    return Cost(energy, instance, sum(parts) if parts else None, currency, price_kwh, price_hour)


def economics_of(energy_j: float | None, co2e_g: float | None, cost: Cost | None, tokens: int | None,
                 duration_s: float | None, embodied_g: float | None = None,
                 total_g: float | None = None) -> Economics:
    wh = units.j_to_wh(energy_j) if energy_j is not None else None
    return Economics(
        tokens=tokens,
        tokens_per_s=(tokens / duration_s) if tokens and duration_s else None,
        j_per_token=units.per_token(energy_j, tokens),
        wh_per_1k_tokens=None if wh is None or not tokens else wh / tokens * 1000,
        co2e_g_per_1k_tokens=None if co2e_g is None or not tokens else co2e_g / tokens * 1000,
        cost_per_1m_tokens=units.per_million_tokens(cost.total if cost else None, tokens),
        embodied_co2e_g_per_1k_tokens=None if embodied_g is None or not tokens else embodied_g / tokens * 1000,
        total_co2e_g_per_1k_tokens=None if total_g is None or not tokens else total_g / tokens * 1000,
    )


def _intensity(row: Any, settings: Settings) -> tuple[float | None, str | None, str | None]:
    if settings.carbon_intensity is not None or settings.region or settings.country:
        from footprint.core import carbon

        found = carbon.resolve(settings.country, settings.carbon_intensity, settings.region)
        return found.g_per_kwh, found.source + " (given at report time)", found.country
    return row["carbon_g_per_kwh"], row["carbon_source"], row["country"]


def load_run(store: Store, run_id: int, settings: Settings | None = None, *, power: bool = True) -> RunReport:
    """Everything reports show about one run; `power=False` skips the per-device power curves (used by
    charts and sparklines only), which is most of the cost for a quick look."""
    import json

    settings = settings or Settings()
    row = store.run_row(run_id)
    if row is None:
        from footprint.common.errors import FootprintError

        raise FootprintError(f"no run with id {run_id} in {store.path}")
    status = effective_status(row)
    warnings: list[str] = []

    devices: list[DeviceReport] = []
    per_kind: dict[str, list[float | None]] = {}
    node_parts: list[float | None] = []
    first_t: list[float] = []
    last_t: list[float] = []
    max_period = 0.0
    dev_rows = store.device_totals(run_id)
    for d in dev_rows:
        e = d["energy_j"]
        span_t = (d["last_t"] - d["first_t"]) if d["first_t"] is not None else None
        devices.append(DeviceReport(
            kind=d["kind"], index=d["idx"], name=d["name"], energy_j=e, source=d["source"],
            measured=bool(d["measured"]), uuid=d["uuid"], power_limit_w=d["power_limit_w"], note=d["note"],
            mean_power_w=(e / span_t) if e is not None and span_t else None,
            first_read_at=d["first_t"], last_read_at=d["last_t"],
        ))
        if d["kind"] == NODE:
            node_parts.append(e)
        else:
            per_kind.setdefault(d["kind"], []).append(e)
        if d["first_t"] is not None:
            first_t.append(d["first_t"])
            last_t.append(d["last_t"])
        # a counter's update period, or an estimate's resolution (the CPU estimate's utilisation ticks)
        max_period = max(max_period, d["update_period_s"] or 0.0)
        if e is None:
            warnings.append(f"{d['kind']}:{d['idx']} has no samples; its energy is unknown")
    energy = _components(per_kind)
    sources = {k: "+".join(sorted({d.source for d in devices if d.kind == k})) or "none" for k in components(energy)}
    node_j = _sum(node_parts)
    if node_parts:
        sources[NODE] = "+".join(sorted({d.source for d in devices if d.kind == NODE}))

    started = row["started_at"] if row["started_at"] is not None else (min(first_t) if first_t else None)
    ended = row["ended_at"] if row["ended_at"] is not None else (max(last_t) if last_t else None)
    duration = (ended - started) if started is not None and ended is not None else None
    for dev in devices:
        if ended is not None and started is not None and dev.last_read_at is not None \
                and ended - dev.last_read_at > max(2 * (row["interval_s"] or 0.0), 1.0):
            warnings.append(f"{dev.kind}:{dev.index}: no reading after +{dev.last_read_at - started:.1f} s "
                            f"(of {ended - started:.1f} s): its energy covers only that part")
    if duration is not None and max_period and duration < max_period:
        warnings.append(f"run lasted {duration:.3f} s, shorter than a counter's update period "
                        f"({max_period:g} s): its energy is unreliable")
    if any(not d.measured for d in devices):
        est = sorted({f"{d.kind} ({d.source})" for d in devices if not d.measured})
        warnings.append("estimated, not measured: " + ", ".join(est))
    if status == "incomplete":
        warnings.append("the profiler stopped without finishing this run (crash or kill): "
                        "figures cover the samples saved up to then")

    by_span, by_kind = store.token_totals(run_id)
    tokens_total = sum(by_span.values()) if by_span else None
    intensity, carbon_source, country = _intensity(row, settings)
    pue = settings.pue if settings.pue is not None else (row["pue"] or 1.0)
    meta = json.loads(row["meta"]) if row["meta"] else {}
    gpu_used_j, gpu_idle_j = gpu_use(devices, meta.get("gpus_used"))
    pue_source = "given at report time" if settings.pue is not None else meta.get("pue_source")
    price_kwh = settings.price_kwh if settings.price_kwh is not None else row["price_kwh"]
    price_hour = settings.price_hour if settings.price_hour is not None else row["price_hour"]
    currency = settings.currency or row["currency"] or "USD"
    total, unattributed, energy_basis = basis(energy["total"], node_j)
    if unattributed is not None and unattributed < 0:
        warnings.append(f"the node meter read {-unattributed:.1f} J less than the sum of its components "
                        f"({node_j:.1f} J against {energy['total']:.1f} J): a component is over-counted (an estimate, "
                        "or two probes reading one thing), or the meter does not see all of them; kWh, CO2e and "
                        "per-token figures use the node figure")
    kwh = units.j_to_kwh(total) if total is not None else None
    co2 = units.co2e_g(total, intensity, pue) if total is not None and intensity is not None else None
    cost = cost_of(total, duration, pue, price_kwh, price_hour, currency)

    baseline: dict[str, float | None] | None = None
    dynamic: dict[str, float | None] | None = None
    if any(d["baseline_w"] is not None for d in dev_rows):
        base_kind: dict[str, list[float | None]] = {}
        dyn_kind: dict[str, list[float | None]] = {}
        for d, dev in zip(dev_rows, devices, strict=True):
            if dev.kind == NODE:  # the components' idle and dynamic energy: a node meter is not one of them
                continue
            b = d["baseline_w"]
            base_kind.setdefault(dev.kind, []).append(b)
            span_t = (dev.last_read_at - dev.first_read_at) if dev.first_read_at is not None \
                and dev.last_read_at is not None else None
            dyn = dev.energy_j - b * span_t if dev.energy_j is not None and b is not None and span_t else None
            dyn_kind.setdefault(dev.kind, []).append(dyn)
        baseline, dynamic = _components(base_kind), _components(dyn_kind)
        # below by more than rounding: a constant estimate (the RAM's) is its own baseline, give or take 1e-9
        below = [k for k in components(dynamic)
                 if (dynamic[k] or 0.0) < -1e-6 * max(abs(energy.get(k) or 0.0), 1.0)]
        if below:  # kept as it is, never clipped to a zero: the figure that says the baseline is off
            warnings.append("dynamic energy is below zero for " + ", ".join(below) + ": the run drew less than "
                            "the idle baseline measured before it (the machine was busier then, or the figures "
                            "are estimates that follow load elsewhere); take the baseline on an idle machine")

    def span_money(e: float | None, d: float | None) -> tuple[float | None, Cost | None]:
        c = units.co2e_g(e, intensity, pue) if e is not None and intensity is not None else None
        return c, cost_of(e, d, pue, price_kwh, price_hour, currency)

    spans = _spans(store, run_id, dev_rows, by_span, ended, max_period, warnings, live=status == "running")
    for sp in spans:
        sp_total = basis(sp.energy_j["total"], sp.node_energy_j)[0]
        sp.co2e_g, sp.cost = span_money(sp_total, sp.duration_s)
        sp.economics = economics_of(sp_total, sp.co2e_g, sp.cost, sp.tokens, sp.duration_s)
    curves = {f"{d['kind']}:{d['idx']}": store.power_series(d["id"]) for d in dev_rows} if power else {}
    from footprint.core.limits import load_power_limits

    power_limits, limit_warnings = load_power_limits(store, run_id, live=status == "running")
    warnings.extend(limit_warnings)
    emb = run_embodied([(d.kind, d.index, d.name) for d in devices], meta, duration, settings, warnings)
    emb_g = emb.co2e_g
    total_co2 = co2 if not emb.on else (co2 + emb_g if co2 is not None and emb_g is not None else None)
    fc = _forecast(store, run_id, meta, started, dev_rows, duration, emb, intensity, pue, price_kwh, price_hour,
                   currency, total if status != "running" else None)
    events = store.events(run_id)
    for ev in events:
        warnings.append(f"{ev['kind']} at +{ev['t'] - started:.1f} s: {ev['message']}" if started
                        else f"{ev['kind']}: {ev['message']}")
    return RunReport(
        id=run_id, name=row["name"], status=status, exit_code=row["exit_code"], started_at=started,
        ended_at=ended, duration_s=duration, energy_j=energy, sources=sources, devices=devices, kwh=kwh,
        co2e_g=co2, carbon_intensity_g_per_kwh=intensity, carbon_source=carbon_source,
        country=country, tokens=tokens_total, j_per_token=units.per_token(total, tokens_total),
        spans=spans, host=row["host"], command=json.loads(row["command"]) if row["command"] else None,
        warnings=warnings, events=events, region=row["region"], pue=pue, cost=cost,
        economics=economics_of(total, co2, cost, tokens_total, duration, emb_g, total_co2), baseline_w=baseline,
        dynamic_energy_j=dynamic, power=curves, meta=meta,
        tokens_by_kind=by_kind, j_per_generated_token=units.per_token(total, by_kind.get("generated")),
        j_per_prompt_token=units.per_token(total, by_kind.get("prompt")),
        job_id=row["job_id"], rank=row["rank"], node=row["node"], created_at=row["created_at"],
        pue_source=pue_source, power_limits=power_limits, embodied=emb, embodied_co2e_g=emb_g,
        total_co2e_g=total_co2, forecast=fc, node_energy_j=node_j, unattributed_j=unattributed,
        energy_basis=energy_basis, gpu_used_j=gpu_used_j, gpu_idle_j=gpu_idle_j,
        j_per_token_used_gpus=units.per_token(total - gpu_idle_j, tokens_total)
        if total is not None and gpu_idle_j is not None else None,
    )


def gpu_use(devices: list[DeviceReport], gpus_used: object) -> tuple[float | None, float | None]:
    """Mark each GPU used or idle from the NVML indices the run's processes were seen on (runs.meta "gpus_used",
    None: not known) and return (J of the used GPUs, J of the idle ones); (None, None) when not known."""
    if not isinstance(gpus_used, list) or not gpus_used:
        return None, None
    used = {int(i) for i in gpus_used if isinstance(i, int)}
    gpus = [d for d in devices if d.kind == "gpu"]
    for d in gpus:
        d.used = d.index in used

    def energy(group: list[DeviceReport]) -> float | None:
        return _sum([d.energy_j for d in group]) if group else 0.0  # no GPU in the group: exactly 0 J

    return energy([d for d in gpus if d.used]), energy([d for d in gpus if not d.used])


def _forecast(store: Store, run_id: int, meta: dict[str, Any], started: float | None, dev_rows: list[Any],
              duration: float | None, emb: EmbodiedReport, intensity: float | None, pue: float,
              price_kwh: float | None, price_hour: float | None, currency: str, final_energy_j: float | None,
              forecaster: Forecaster | None = None) -> ForecastReport | None:
    if "expect" not in meta:
        return None
    # embodied CO2e grows with time held: the forecast's is the run's rate so far times its predicted duration
    rate = emb.co2e_g / duration if emb.on and emb.co2e_g is not None and duration else None

    def money(energy_j: float, duration_s: float) -> tuple[float | None, float | None, float | None]:
        co2 = units.co2e_g(energy_j, intensity, pue) if intensity is not None else None
        total = co2 if not emb.on else (co2 + rate * duration_s if co2 is not None and rate is not None else None)
        cost = cost_of(energy_j, duration_s, pue, price_kwh, price_hour, currency)
        return co2, total, cost.total if cost is not None else None

    return (forecaster or Forecaster(store, run_id)).forecast(
        meta=meta, started=started, dev_rows=dev_rows, spans=store.spans(run_id), money=money,
        final_energy_j=final_energy_j)


def load_forecast(store: Store, run_id: int, forecaster: Forecaster | None = None) -> ForecastReport | None:
    """A running run's forecast alone, cheaply (what a budget check reads every second): the run's own settings,
    no spans' or power figures; `forecaster` keeps the step edges already read."""
    import json

    row = store.run_row(run_id)
    if row is None:
        return None
    meta = json.loads(row["meta"]) if row["meta"] else {}
    if "expect" not in meta:
        return None
    dev_rows = store.device_totals(run_id)
    firsts = [d["first_t"] for d in dev_rows if d["first_t"] is not None]
    lasts = [d["last_t"] for d in dev_rows if d["last_t"] is not None]
    started = row["started_at"] if row["started_at"] is not None else (min(firsts) if firsts else None)
    ended = row["ended_at"] if row["ended_at"] is not None else (max(lasts) if lasts else None)
    duration = ended - started if started is not None and ended is not None else None
    emb = run_embodied([(d["kind"], d["idx"], d["name"]) for d in dev_rows], meta, duration, Settings(), [])
    return _forecast(store, run_id, meta, started, dev_rows, duration, emb, row["carbon_g_per_kwh"],
                     row["pue"] or 1.0, row["price_kwh"], row["price_hour"], row["currency"] or "USD", None,
                     forecaster)


def _spans(store: Store, run_id: int, dev_rows: list[Any], tokens_by_span: dict[int | None, int],
           run_end: float | None, max_period: float, warnings: list[str], *, live: bool = False) -> list[SpanReport]:
    rows = store.spans(run_id)
    firsts = [d["first_t"] for d in dev_rows if d["first_t"] is not None]
    lasts = [d["last_t"] for d in dev_rows if d["last_t"] is not None]
    read_from, read_to = (min(firsts), max(lasts)) if firsts else (None, None)
    # a live run's newest spans may lie past its last stored reading for a flush or so: not a clock problem
    late_ok = STALE_AFTER_S if live else 1e-6
    children: dict[int | None, list[int]] = {}
    for r in rows:
        children.setdefault(r["parent_id"], []).append(r["id"])

    def subtree(span_id: int) -> list[int]:
        return [span_id, *(s for c in children.get(span_id, []) for s in subtree(c))]

    out: list[SpanReport] = []
    for r in rows:
        start, end = r["started_at"], r["ended_at"] if r["ended_at"] is not None else run_end
        outside = read_from is not None and read_to is not None and (
            start > read_to + late_ok or (end is not None and end < read_from - 1e-6))
        if outside:
            assert read_from is not None and read_to is not None
            where = f"{start - read_to:+.1f} s after the last" if start > read_to else \
                f"{read_from - (end or start):.1f} s before the first"
            warnings.append(f"span '{r['name']}' lies wholly outside the run's readings ({where}): its energy is "
                            "unknown, not 0 (recorded by a process whose clock differs from the owner's?)")
        per_kind: dict[str, list[float | None]] = {}
        node_parts: list[float | None] = []
        for d in dev_rows:
            e: float | None = None
            if end is not None and not outside:
                a, b = store.energy_at(d["id"], start), store.energy_at(d["id"], end)
                e = (b - a) if a is not None and b is not None else None
            (node_parts if d["kind"] == NODE else per_kind.setdefault(d["kind"], [])).append(e)
        energy = _components(per_kind)
        basis_j, unattributed, energy_basis = basis(energy["total"], _sum(node_parts))
        ids = subtree(r["id"])
        counted = [tokens_by_span[s] for s in ids if s in tokens_by_span]
        toks = sum(counted) if counted else None
        duration = (end - start) if end is not None else None
        out.append(SpanReport(
            id=r["id"], name=r["name"], parent=r["parent_id"], started_at=start, ended_at=r["ended_at"],
            duration_s=duration, energy_j=energy, tokens=toks,
            j_per_token=units.per_token(basis_j, toks),
            reliable=not outside and not (duration is not None and max_period and duration < max_period),
            node_energy_j=_sum(node_parts), unattributed_j=unattributed, energy_basis=energy_basis,
        ))
    return out


def load_report(store: Store, run_ids: list[int], settings: Settings | None = None) -> Report:
    return Report([load_run(store, rid, settings) for rid in run_ids], store.path)
