"""Reports: the model built from the store, and renderers chosen by name or output file extension.

Renderers load on first use (PEP 562), so reading a run's figures does not pay for every exporter.
"""

from __future__ import annotations

import os
from importlib import import_module

from footprint.common.errors import FootprintError
from footprint.core.model import Report, RunReport, Settings, load_report, load_run

from .base import Renderer, as_report

TYPE_CHECKING = False  # typing costs start-up time, and reports are built at every run's end
if TYPE_CHECKING:
    from typing import Any

    from .compare import CompareRenderer
    from .console import ConsoleRenderer
    from .csv import CsvRenderer, EmissionsCsvRenderer, SpanCsvRenderer
    from .frame import to_dataframe
    from .html import HtmlRenderer
    from .json import JsonRenderer

__all__ = ["CompareRenderer", "ConsoleRenderer", "CsvRenderer", "EmissionsCsvRenderer", "HtmlRenderer",
           "JsonRenderer", "Renderer", "Report", "RunReport", "Settings", "SpanCsvRenderer", "load_report",
           "load_run", "render", "renderer_for", "to_dataframe"]

_LAZY = {
    "CompareRenderer": "compare", "ConsoleRenderer": "console", "CsvRenderer": "csv",
    "EmissionsCsvRenderer": "csv", "SpanCsvRenderer": "csv", "HtmlRenderer": "html", "JsonRenderer": "json",
    "to_dataframe": "frame",
}
# renderer name -> (module, class); extensions are matched in this order
RENDERERS: dict[str, tuple[str, str]] = {
    "console": ("console", "ConsoleRenderer"), "json": ("json", "JsonRenderer"), "csv": ("csv", "CsvRenderer"),
    "csv-spans": ("csv", "SpanCsvRenderer"), "emissions-csv": ("csv", "EmissionsCsvRenderer"),
    "html": ("html", "HtmlRenderer"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _cls(name: str) -> type[Renderer]:
    module, cls = RENDERERS[name]
    found: type[Renderer] = getattr(import_module(f".{module}", __name__), cls)
    return found


def renderer_for(name_or_path: str) -> Renderer:
    """A renderer by name ('json') or by an output file's extension ('out.json')."""
    if name_or_path in RENDERERS:
        return _cls(name_or_path)()
    ext = os.path.splitext(name_or_path)[1].lower()
    for name in RENDERERS:
        cls = _cls(name)
        if ext in cls.extensions:
            return cls()
    known = ", ".join(sorted(RENDERERS))
    raise FootprintError(f"no renderer for '{name_or_path}' (known: {known})")


def render(report: Report | RunReport, name: str = "console", **options: object) -> str:
    if name == "console":
        from .console import ConsoleRenderer

        return ConsoleRenderer(**options).render(as_report(report))  # type: ignore[arg-type]
    return renderer_for(name).render(as_report(report))
