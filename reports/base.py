"""The renderer interface: one `render(report)` method, renderers chosen by name or file extension."""

from __future__ import annotations

import abc

from footprint.core.model import Report, RunReport


class Renderer(abc.ABC):
    """`name` picks it (`footprint report --format NAME`), `extensions` pick it for `-o FILE`; options are
    keyword arguments of `__init__`. A module lists its renderers in `RENDERERS` (see footprint.reports)."""

    name: str = ""
    extensions: tuple[str, ...] = ()

    @abc.abstractmethod
    def render(self, report: Report) -> str:
        """The whole output for these runs."""


def as_report(report: Report | RunReport, db: str = "") -> Report:
    return report if isinstance(report, Report) else Report([report], db)
