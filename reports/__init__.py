"""Reports: the model built from the store, and renderers (console, json) chosen by name or extension."""

from __future__ import annotations

from pathlib import Path

from footprint.errors import FootprintError

from .base import Renderer, as_report
from .compare import CompareRenderer
from .console import ConsoleRenderer
from .csv import CsvRenderer, EmissionsCsvRenderer, SpanCsvRenderer
from .frame import to_dataframe
from .html import HtmlRenderer
from .json import JsonRenderer
from .model import Report, RunReport, Settings, load_report, load_run

__all__ = ["CompareRenderer", "ConsoleRenderer", "CsvRenderer", "EmissionsCsvRenderer", "HtmlRenderer",
           "JsonRenderer", "Renderer", "Report", "RunReport", "Settings", "SpanCsvRenderer", "load_report",
           "load_run", "render", "renderer_for", "to_dataframe"]

RENDERERS: dict[str, type[Renderer]] = {
    r.name: r for r in (ConsoleRenderer, JsonRenderer, CsvRenderer, SpanCsvRenderer, EmissionsCsvRenderer,
                        HtmlRenderer)
}


def renderer_for(name_or_path: str) -> Renderer:
    """A renderer by name ('json') or by an output file's extension ('out.json')."""
    if name_or_path in RENDERERS:
        return RENDERERS[name_or_path]()
    ext = Path(name_or_path).suffix.lower()
    for cls in RENDERERS.values():
        if ext in cls.extensions:
            return cls()
    known = ", ".join(sorted(RENDERERS))
    raise FootprintError(f"no renderer for '{name_or_path}' (known: {known})")


def render(report: Report | RunReport, name: str = "console", **options: object) -> str:
    if name == "console":
        return ConsoleRenderer(**options).render(as_report(report))  # type: ignore[arg-type]
    return renderer_for(name).render(as_report(report))
