"""CSV exports: one row per run, one row per span, and CodeCarbon's emissions.csv layout."""

from __future__ import annotations

import csv
import io
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


def _extra_kinds(energies: list[dict[str, float | None]]) -> list[str]:
    """Device kinds beyond COMPONENTS found in these rows: they get columns of their own, after the fixed ones."""
    return sorted({k for e in energies for k in components(e)} - set(COMPONENTS))


RUN_COLUMNS = [
    "id", "name", "status", "exit_code", "started_at", "ended_at", "duration_s",
    *(f"energy_j_{k}" for k in COMPONENTS), "energy_j_total", *(f"source_{k}" for k in COMPONENTS),
    "kwh", "pue", "carbon_intensity_g_per_kwh", "co2e_g", "cost_total", "currency", "tokens", "tokens_per_s",
    "j_per_token", "wh_per_1k_tokens", "co2e_g_per_1k_tokens", "cost_per_1m_tokens",
]


class CsvRenderer(Renderer):
    """One row per run."""

    name = "csv"
    extensions = (".csv",)

    def render(self, report: Report) -> str:
        extra = _extra_kinds([r.energy_j for r in report.runs])
        rows = []
        for r in report.runs:
            e = r.economics
            rows.append([
                r.id, r.name, r.status, r.exit_code, _iso(r.started_at), _iso(r.ended_at), r.duration_s,
                *(r.energy_j[k] for k in COMPONENTS), r.energy_j["total"], *(r.sources[k] for k in COMPONENTS),
                r.kwh, r.pue, r.carbon_intensity_g_per_kwh,
                r.co2e_g, r.cost.total if r.cost else None, r.cost.currency if r.cost else None, r.tokens,
                e.tokens_per_s, e.j_per_token, e.wh_per_1k_tokens, e.co2e_g_per_1k_tokens, e.cost_per_1m_tokens,
                *(r.energy_j.get(k) for k in extra), *(r.sources.get(k, "none") for k in extra),
            ])
        columns = [*RUN_COLUMNS, *(f"energy_j_{k}" for k in extra), *(f"source_{k}" for k in extra)]
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
        rows = []
        for r in report.runs:
            by_id = {s.id: s for s in r.spans}
            for s in r.spans:
                rows.append([
                    r.id, r.name, s.id, s.name, s.parent, span_path(s, by_id), _iso(s.started_at),
                    _iso(s.ended_at), s.duration_s, *(s.energy_j[k] for k in COMPONENTS),
                    s.energy_j["total"], s.co2e_g, s.cost.total if s.cost else None, s.tokens,
                    s.economics.tokens_per_s, s.j_per_token, int(s.reliable), *(s.energy_j.get(k) for k in extra),
                ])
        return _table([*SPAN_COLUMNS, *(f"energy_j_{k}" for k in extra)], rows)


# CodeCarbon's EmissionsData fields, in its order (codecarbon/output_methods/emissions_data.py).
EMISSIONS_COLUMNS = [
    "timestamp", "project_name", "run_id", "experiment_id", "duration", "emissions", "emissions_rate",
    "cpu_power", "gpu_power", "ram_power", "cpu_energy", "gpu_energy", "ram_energy", "energy_consumed",
    "water_consumed", "country_name", "country_iso_code", "region", "cloud_provider", "cloud_region", "os",
    "python_version", "codecarbon_version", "cpu_count", "cpu_model", "gpu_count", "gpu_model", "longitude",
    "latitude", "ram_total_size", "tracking_mode", "cpu_utilization_percent", "gpu_utilization_percent",
    "ram_utilization_percent", "ram_used_gb", "on_cloud", "pue", "wue",
]


def _kwh(j: float | None) -> float | None:
    return units.j_to_kwh(j) if j is not None else None


def _watts(j: float | None, s: float | None) -> float | None:
    return j / s if j is not None and s else None


def emissions_row(r: RunReport) -> list[Any]:
    """A CodeCarbon-compatible row: energies in kWh, emissions in kg, power in W. Fields CodeCarbon
    fills from its own probes that footprint does not track are left empty rather than invented."""
    gpus = [d for d in r.devices if d.kind == "gpu"]
    cpus = [d for d in r.devices if d.kind == "cpu"]
    provider, _, cloud_region = (r.region or "").partition(":")
    return [
        _iso(r.ended_at or r.started_at), r.name, r.id, None, r.duration_s,
        r.co2e_g / 1000 if r.co2e_g is not None else None,
        (r.co2e_g / 1000 / r.duration_s) if r.co2e_g is not None and r.duration_s else None,
        _watts(r.energy_j["cpu"], r.duration_s), _watts(r.energy_j["gpu"], r.duration_s),
        _watts(r.energy_j["ram"], r.duration_s), _kwh(r.energy_j["cpu"]), _kwh(r.energy_j["gpu"]),
        _kwh(r.energy_j["ram"]), _kwh(r.energy_j["total"]), None, None, r.country, None, provider or None,
        cloud_region or None, r.meta.get("os"), r.meta.get("python"), None, r.meta.get("cpu_count"),
        cpus[0].name if cpus else None, len(gpus) or None, gpus[0].name if gpus else None, None, None,
        None, "machine", None, None, None, None, "Y" if r.region else "N", r.pue, None,
    ]


class EmissionsCsvRenderer(Renderer):
    """CodeCarbon's emissions.csv layout, for users migrating from it."""

    name = "emissions-csv"

    def render(self, report: Report) -> str:
        return _table(EMISSIONS_COLUMNS, [emissions_row(r) for r in report.runs])


RENDERERS = (CsvRenderer, SpanCsvRenderer, EmissionsCsvRenderer)
