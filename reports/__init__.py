"""Renderers: they get a plain report (footprint.core.model) and only render, chosen by name or file extension.

Renderers are registered by declaration: each module named in `RENDERER_MODULES` lists its renderer classes
in `RENDERERS`. Adding one is one new module plus its name here; it then shows in `footprint report --format`
and is picked for its file extensions. Modules load on first use (PEP 562), so showing one summary does not
pay for every exporter.
"""

from __future__ import annotations

import os
from importlib import import_module

from footprint.common.errors import FootprintError

from .base import Renderer, as_report

TYPE_CHECKING = False  # typing costs start-up time, and reports are built at every run's end
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    from footprint.core.model import Report, RunReport

    from .compare import CompareRenderer
    from .console import ConsoleRenderer
    from .csv import CsvRenderer, EmissionsCsvRenderer, SpanCsvRenderer
    from .frame import to_dataframe
    from .html import HtmlRenderer
    from .json import JsonRenderer

# searched in this order, for names and for extensions; "console" first: it is the one every run shows
RENDERER_MODULES = ("console", "json", "csv", "html")

__all__ = ["CompareRenderer", "ConsoleRenderer", "CsvRenderer", "EmissionsCsvRenderer", "HtmlRenderer",
           "JsonRenderer", "RENDERER_MODULES", "Renderer", "SpanCsvRenderer", "render", "renderer_for",
           "renderer_names", "to_dataframe"]

_LAZY = {
    "CompareRenderer": "compare", "ConsoleRenderer": "console", "CsvRenderer": "csv",
    "EmissionsCsvRenderer": "csv", "SpanCsvRenderer": "csv", "HtmlRenderer": "html", "JsonRenderer": "json",
    "to_dataframe": "frame",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _registered() -> Iterator[type[Renderer]]:
    """Each registered renderer class, module by module, loading a module only when the search reaches it."""
    for module in RENDERER_MODULES:
        yield from import_module(f".{module}", __name__).RENDERERS


def renderer_names() -> list[str]:
    return [cls.name for cls in _registered()]


def renderer_for(name_or_path: str, **options: Any) -> Renderer:
    """A renderer by name ('json') or by an output file's extension ('out.json'); `options` go to it."""
    for cls in _registered():
        if cls.name == name_or_path:
            return cls(**options)
    ext = os.path.splitext(name_or_path)[1].lower()
    if ext:
        for cls in _registered():
            if ext in cls.extensions:
                return cls(**options)
    raise FootprintError(f"no renderer for '{name_or_path}' (known: {', '.join(sorted(renderer_names()))})")


def render(report: Report | RunReport, name: str = "console", **options: Any) -> str:
    return renderer_for(name, **options).render(as_report(report))
