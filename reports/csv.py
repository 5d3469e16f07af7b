"""CSV exports: one row per run, one row per span, and CodeCarbon's emissions.csv layout."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import datetime, timezone
from typing import Any

from footprint.common import units
from footprint.core.model import COMPONENTS, Report, RunReport, SpanReport, components

from .base import Renderer


def _table(header: list[str], rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(["" if v is None else v for v in row] for row in rows)
    return buf.getvalue()


def _iso(t: float | None) -> str | None:
    return datetime.fromtimestamp(t, timezone.utc).isoformat() if t is not None else None


NODE_COLUMNS = ["energy_j_node", "unattributed_j", "energy_basis"]  # only when a run or span has a node figure


def _extra_kinds(energies: list[dict[str, float | None]]) -> list[str]:
    """Device kinds beyond COMPONENTS found in these rows: they get columns of their own, after the fixed ones."""
    return sorted({k for e in energies for k in components(e)} - set(COMPONENTS))


RUN_COLUMNS = [
    "id", "name", "status", "exit_code", "started_at", "ended_at", "duration_s",
    *(f"energy_j_{k}" for k in COMPONENTS), "energy_j_total", *(f"source_{k}" for k in COMPONENTS),
    "kwh", "pue", "carbon_intensity_g_per_kwh", "co2e_g", "cost_total", "currency", "tokens", "tokens_per_s",
    "j_per_token", "wh_per_1k_tokens", "co2e_g_per_1k_tokens", "cost_per_1m_tokens",
    # co2e_g is operational; embodied adds the devices' manufacturing share (empty with embodied off)
    "embodied_co2e_g", "total_co2e_g", "embodied_co2e_g_per_1k_tokens", "total_co2e_g_per_1k_tokens",
]


class CsvRenderer(Renderer):
    """One row per run."""

    name = "csv"
    extensions = (".csv",)

    def render(self, report: Report) -> str:
        extra = _extra_kinds([r.energy_j for r in report.runs])
        node = any(r.node_energy_j is not None for r in report.runs)
        rows = []
        for r in report.runs:
            e = r.economics
            rows.append([
                r.id, r.name, r.status, r.exit_code, _iso(r.started_at), _iso(r.ended_at), r.duration_s,
                *(r.energy_j[k] for k in COMPONENTS), r.energy_j["total"], *(r.sources[k] for k in COMPONENTS),
                r.kwh, r.pue, r.carbon_intensity_g_per_kwh,
                r.co2e_g, r.cost.total if r.cost else None, r.cost.currency if r.cost else None, r.tokens,
                e.tokens_per_s, e.j_per_token, e.wh_per_1k_tokens, e.co2e_g_per_1k_tokens, e.cost_per_1m_tokens,
                r.embodied_co2e_g, r.total_co2e_g, e.embodied_co2e_g_per_1k_tokens, e.total_co2e_g_per_1k_tokens,
                *(r.energy_j.get(k) for k in extra), *(r.sources.get(k, "none") for k in extra),
                *([r.node_energy_j, r.unattributed_j, r.energy_basis, r.sources.get("node", "none")] if node else []),
            ])
        columns = [*RUN_COLUMNS, *(f"energy_j_{k}" for k in extra), *(f"source_{k}" for k in extra),
                   *([*NODE_COLUMNS, "source_node"] if node else [])]
        return _table(columns, rows)


SPAN_COLUMNS = [
    "run_id", "run_name", "span_id", "name", "parent_id", "path", "started_at", "ended_at", "duration_s",
    *(f"energy_j_{k}" for k in COMPONENTS), "energy_j_total", "co2e_g", "cost_total", "tokens",
    "tokens_per_s", "j_per_token", "reliable",
]


def span_path(span: SpanReport, by_id: dict[int, SpanReport]) -> str:
    names = [span.name]
    parent = span.parent
    while parent is not None and parent in by_id:
        names.append(by_id[parent].name)
        parent = by_id[parent].parent
    return "/".join(reversed(names))


class SpanCsvRenderer(Renderer):
    """One row per span, with its path (train/epoch/step) for grouping."""

    name = "csv-spans"

    def render(self, report: Report) -> str:
        extra = _extra_kinds([s.energy_j for r in report.runs for s in r.spans])
        node = any(s.node_energy_j is not None for r in report.runs for s in r.spans)
        rows = []
        for r in report.runs:
            by_id = {s.id: s for s in r.spans}
            for s in r.spans:
                rows.append([
                    r.id, r.name, s.id, s.name, s.parent, span_path(s, by_id), _iso(s.started_at),
                    _iso(s.ended_at), s.duration_s, *(s.energy_j[k] for k in COMPONENTS),
                    s.energy_j["total"], s.co2e_g, s.cost.total if s.cost else None, s.tokens,
                    s.economics.tokens_per_s, s.j_per_token, int(s.reliable), *(s.energy_j.get(k) for k in extra),
                    *([s.node_energy_j, s.unattributed_j, s.energy_basis] if node else []),
                ])
        return _table([*SPAN_COLUMNS, *(f"energy_j_{k}" for k in extra), *(NODE_COLUMNS if node else [])], rows)


# CodeCarbon's EmissionsData fields, in its order (codecarbon/output_methods/emissions_data.py).
EMISSIONS_COLUMNS = [
    "timestamp", "project_name", "run_id", "experiment_id", "duration", "emissions", "emissions_rate",
    "cpu_power", "gpu_power", "ram_power", "cpu_energy", "gpu_energy", "ram_energy", "energy_consumed",
    "water_consumed", "country_name", "country_iso_code", "region", "cloud_provider", "cloud_region", "os",
    "python_version", "codecarbon_version", "cpu_count", "cpu_model", "gpu_count", "gpu_model", "longitude",
    "latitude", "ram_total_size", "tracking_mode", "cpu_utilization_percent", "gpu_utilization_percent",
    "ram_utilization_percent", "ram_used_gb", "on_cloud", "pue", "wue",
]


def _kwh(j: float | None) -> float:
    return units.j_to_kwh(j) if j is not None else 0.0


def _watts(j: float | None, s: float | None) -> float:
    return j / s if j is not None and s else 0.0


# CodeCarbon's experiment_id when none is configured (its emissions_tracker default)
CODECARBON_DEFAULT_EXPERIMENT = "5b0fa12a-3dd7-45bb-9766-cc326314d9f1"
# the namespace of footprint's run and job UUIDs (uuid5)
UUID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://pypi.org/project/footprint-profiler/")
# the country code and name written for a run whose intensity is the world average (no country known)
WORLD = ("WLD", "World")


def run_uuid(r: RunReport) -> str:
    """A UUID for the run, the same at every export: uuid5 of its host, id and creation time."""
    return str(uuid.uuid5(UUID_NAMESPACE, f"run:{r.host}:{r.id}:{r.created_at!r}"))


def _version() -> str:
    from importlib import metadata

    try:
        return f"footprint-profiler {metadata.version('footprint-profiler')}"
    except metadata.PackageNotFoundError:
        return "footprint-profiler"


def _local_stamp(t: float | None) -> str:
    """CodeCarbon's timestamp: local time, to the second, no zone (datetime.now().strftime("%Y-%m-%dT%H:%M:%S"))."""
    return datetime.fromtimestamp(t).strftime("%Y-%m-%dT%H:%M:%S") if t is not None else ""


def emissions_row(r: RunReport) -> list[Any]:
    """A CodeCarbon-compatible row: energies in kWh, emissions in kg, power in W (means over the run).

    Every cell CodeCarbon always fills is filled, with CodeCarbon's own value for "not measured" where
    footprint has none: 0 for the energies and powers of absent devices, water and WUE, and the utilisation
    columns (footprint records energy, not utilisation); its default experiment id unless the run belongs to a
    distributed job (then a UUID of the job id). Without a country the world average was used: the country is
    "WLD", "World". Longitude, latitude and region stay empty, as in CodeCarbon's offline rows."""
    from footprint.core.carbon import country_name

    gpus = [d for d in r.devices if d.kind == "gpu"]
    cpus = [d for d in r.devices if d.kind == "cpu"]
    provider, _, cloud_region = (r.region or "").partition(":")
    iso3, name = (r.country, country_name(r.country) or r.country) if r.country else WORLD
    co2_kg = r.co2e_g / 1000 if r.co2e_g is not None else 0.0
    experiment = str(uuid.uuid5(UUID_NAMESPACE, f"job:{r.job_id}")) if r.job_id else CODECARBON_DEFAULT_EXPERIMENT
    ram_gb = r.meta.get("ram_total_gb")
    return [
        _local_stamp(r.ended_at or r.started_at), r.name, run_uuid(r), experiment, r.duration_s or 0.0, co2_kg,
        co2_kg / r.duration_s if r.duration_s else 0.0,
        _watts(r.energy_j["cpu"], r.duration_s), _watts(r.energy_j["gpu"], r.duration_s),
        _watts(r.energy_j["ram"], r.duration_s), _kwh(r.energy_j["cpu"]), _kwh(r.energy_j["gpu"]),
        _kwh(r.energy_j["ram"]), r.kwh if r.kwh is not None else 0.0, 0.0, name, iso3, None, provider or None,
        cloud_region or None, r.meta.get("os") or "", r.meta.get("python") or "", _version(),
        r.meta.get("cpu_count") or 0, cpus[0].name if cpus else "", len(gpus), gpus[0].name if gpus else "",
        None, None, float(ram_gb) if ram_gb is not None else 0.0, "machine", 0.0, 0.0, 0.0, 0.0,
        "Y" if r.region else "N", r.pue, 0.0,
    ]


class EmissionsCsvRenderer(Renderer):
    """CodeCarbon's emissions.csv layout, for users migrating from it. Written with `-o` to a file CodeCarbon
    (or footprint) already wrote, the rows are appended in the file's column order, skipping runs already in it."""

    name = "emissions-csv"

    def render(self, report: Report) -> str:
        return _table(EMISSIONS_COLUMNS, [emissions_row(r) for r in report.runs])


def append_emissions(existing: str, rendered: str) -> str | None:
    """What to append to an emissions.csv holding `existing` for the rows of `rendered` (this renderer's output):
    the rows in the file's column order, without a header and without the runs (run_id) already in it. None when
    the file is no emissions.csv (other columns): then it is rewritten."""
    old = list(csv.reader(io.StringIO(existing)))
    if not old:
        return None
    header = old[0]
    if sorted(header) != sorted(EMISSIONS_COLUMNS):
        return None
    at = header.index("run_id")
    seen = {row[at] for row in old[1:] if len(row) > at}
    new = list(csv.DictReader(io.StringIO(rendered)))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerows([row[c] for c in header] for row in new if row["run_id"] not in seen)
    lead = "" if existing.endswith("\n") else "\n"
    return lead + buf.getvalue() if buf.getvalue() else ""


RENDERERS = (CsvRenderer, SpanCsvRenderer, EmissionsCsvRenderer)
