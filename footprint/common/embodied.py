"""Embodied carbon: the manufacturing CO2e of the devices a run held, amortised over their life and shared by
the time the run held them. Pure maths and the shipped table (`embodied-data.json`); no I/O but that file.

    embodied_g = kgco2e × 1000 × duration_s / (lifetime × utilisation)

with the lifetime in seconds (years × 8,760 h, Boavizta's year: its servers' 35,040 h are 4 years) and the
utilisation the share of that life the device is in use. Defaults: 4 years (Boavizta's server archetypes) and
0.85 (the BLOOM study's average use of its cluster, arXiv:2211.02001); both are settings.

Which devices count:
- each GPU: the first model figure whose pattern its name matches (NVML's name, e.g. "NVIDIA H100 80GB HBM3"),
  else the GPU class figure, labelled as a class figure;
- the host, once, when the run measured it (it has a CPU or RAM device; in a distributed job the rank that
  measures the node): its CPU packages, its installed RAM per GB and the rest of the server;
- any other kind has no figure: it is named in a warning, never counted as a silent 0.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

from .record import FrozenRecord, Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

SHIPPED = Path(__file__).with_name("embodied-data.json")
HOURS_PER_YEAR = 8760.0
DEFAULT_LIFETIME_YEARS = 4.0
DEFAULT_UTILISATION = 0.85
DEFAULT_RAM_GB = 32.0  # Boavizta's default RAM module, when the run did not record the installed RAM
HOST_KINDS = ("cpu", "ram")  # a run with one of these measured the host


def embodied_g(kgco2e: float, duration_s: float, lifetime_years: float, utilisation: float) -> float:
    """Grams CO2e of a device of `kgco2e` manufacturing CO2e held for `duration_s`, over a life of
    `lifetime_years` of which it is in use `utilisation` (0 < utilisation <= 1)."""
    return kgco2e * 1000.0 * duration_s / (lifetime_years * HOURS_PER_YEAR * 3600.0 * utilisation)


class Figure(FrozenRecord):
    """One row of the table: kg CO2e per `unit` ("device", "GB" or "server") of a `kind`, for names matching
    `pattern` (a case-insensitive regular expression), or the kind's class figure when `pattern` is None."""

    __slots__ = ("kind", "pattern", "model", "unit", "kgco2e", "low", "high", "source", "date")

    def __init__(self, kind: str, pattern: str | None, model: str, unit: str, kgco2e: float,
                 low: float | None, high: float | None, source: str, date: str) -> None:
        self.kind = kind
        self.pattern = pattern
        self.model = model
        self.unit = unit
        self.kgco2e = kgco2e
        self.low = low
        self.high = high
        self.source = source
        self.date = date

    @property
    def is_class(self) -> bool:
        return self.pattern is None


@cache
def table(path: Path = SHIPPED) -> tuple[Figure, ...]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return tuple(Figure(f["kind"], f["pattern"], f["model"], f["unit"], float(f["kgco2e"]),
                        None if f["low"] is None else float(f["low"]), None if f["high"] is None else float(f["high"]),
                        f["source"], f["date"]) for f in data["figures"])


def figure_for(kind: str, name: str | None = None, figures: Iterable[Figure] | None = None) -> Figure | None:
    """The first model figure of `kind` whose pattern matches `name`, else the kind's class figure, else None."""
    rows = tuple(table() if figures is None else figures)
    for f in rows:
        if f.kind == kind and f.pattern is not None and name and re.search(f.pattern, name, re.IGNORECASE):
            return f
    return next((f for f in rows if f.kind == kind and f.pattern is None), None)


class Item(Record):
    """One line of a run's embodied figure: what (`device`: "gpu:0", "cpu", "ram", "server"), how many units,
    the figure used and the grams it gives (low/high where the figure has a range)."""

    __slots__ = ("device", "kind", "name", "units", "kgco2e", "co2e_g", "low_g", "high_g", "model", "match",
                 "source", "date", "note")

    def __init__(self, device: str, kind: str, name: str | None, units: float, kgco2e: float, co2e_g: float,
                 low_g: float | None, high_g: float | None, model: str, match: str, source: str, date: str,
                 note: str | None = None) -> None:
        self.device = device
        self.kind = kind
        self.name = name
        self.units = units
        self.kgco2e = kgco2e
        self.co2e_g = co2e_g
        self.low_g = low_g
        self.high_g = high_g
        self.model = model
        self.match = match  # "model" (its pattern matched the name) or "class" (the kind's class figure)
        self.source = source
        self.date = date
        self.note = note


def _item(device: str, name: str | None, units: float, f: Figure, share: float, note: str | None = None) -> Item:
    """`share`: grams per kg CO2e of device (1000 × duration / (lifetime × utilisation))."""
    return Item(device, f.kind, name, units, f.kgco2e, f.kgco2e * units * share,
                None if f.low is None else f.low * units * share, None if f.high is None else f.high * units * share,
                f.model, "class" if f.is_class else "model", f.source, f.date, note)


def embodied_items(devices: Iterable[tuple[str, int, str | None]], *, duration_s: float, lifetime_years: float,
                   utilisation: float, ram_gb: float | None = None, cpu_packages: int | None = None,
                   figures: Iterable[Figure] | None = None) -> tuple[list[Item], list[str]]:
    """The embodied items of a run that held `devices` ((kind, index, name)) for `duration_s`, and a warning
    for each device no figure covers. `ram_gb` (installed) and `cpu_packages` describe its host."""
    rows = tuple(table() if figures is None else figures)
    share = embodied_g(1.0, duration_s, lifetime_years, utilisation)
    items: list[Item] = []
    warnings: list[str] = []
    kinds: set[str] = set()
    for kind, index, name in devices:
        kinds.add(kind)
        if kind in HOST_KINDS:
            continue
        f = figure_for(kind, name, rows)
        if f is None:
            warnings.append(f"embodied: no figure for {kind}:{index} ({name or 'unnamed'}); not counted")
            continue
        items.append(_item(f"{kind}:{index}", name, 1.0, f, share))
    if kinds & set(HOST_KINDS):
        cpu, ram, rest = figure_for("cpu", None, rows), figure_for("ram", None, rows), figure_for("server", None, rows)
        if cpu is not None:
            packages = cpu_packages if cpu_packages else 1
            items.append(_item("cpu", None, float(packages), cpu, share,
                               None if cpu_packages else "package count unknown: 1 assumed"))
        if ram is not None:
            gb = ram_gb if ram_gb else DEFAULT_RAM_GB
            items.append(_item("ram", f"{gb:g} GB", gb, ram, share,
                               None if ram_gb else "size unknown: assumed"))
        if rest is not None:
            items.append(_item("server", None, 1.0, rest, share))
    return items, warnings


def total_g(items: Iterable[Item]) -> tuple[float, float, float]:
    """(grams, low, high) of these items; an item without a range counts its central figure in both bounds."""
    listed = list(items)
    return (sum(i.co2e_g for i in listed), sum(i.co2e_g if i.low_g is None else i.low_g for i in listed),
            sum(i.co2e_g if i.high_g is None else i.high_g for i in listed))
