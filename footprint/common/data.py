"""The reference tables footprint looks figures up in: carbon intensity per country, per cloud region, the world
average, CPU TDPs and ISO 3166 alpha-2 -> alpha-3 codes.

They come from CodeCarbon's packaged data files (and pycountry's ISO 3166 table). footprint ships a compact
copy of them, `footprint-data.json` beside this module (built by `tools/build_data.py`, with its sources'
versions and licences inside), so that the default install needs neither package. Where codecarbon (the
`footprint-profiler[codecarbon]` extra) or pycountry is installed, its own files are read instead: they may be
newer than the copy. Neither package is ever imported (codecarbon's import starts NVML and pandas).

Every table is read on first use and kept: `import footprint` reads nothing.
"""

from __future__ import annotations

import importlib.util
import json
from functools import cache
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SHIPPED = Path(__file__).with_name("footprint-data.json")
TABLES = ("countries", "regions", "world_average", "cpu_tdp", "iso3166")


def _package_dir(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        if Path(loc).is_dir():
            return Path(loc)
    return None


def codecarbon_data_dir() -> Path | None:
    """codecarbon's packaged data folder, found without importing codecarbon."""
    pkg = _package_dir("codecarbon")
    return pkg / "data" if pkg is not None and (pkg / "data").is_dir() else None


# where codecarbon 3.x keeps each file: looked at before searching its whole data folder
KNOWN_PLACES = {
    "cpu_power.csv": "hardware", "impact.csv": "cloud", "global_energy_mix.json": "private_infra",
    "carbon_intensity_per_source.json": "private_infra",
}


@cache
def find_data_file(name: str) -> Path | None:
    """An installed codecarbon's data file by name, wherever this version keeps it (the layout has moved)."""
    data = codecarbon_data_dir()
    if data is None:
        return None
    known = data / KNOWN_PLACES.get(name, "") / name
    if known.is_file():
        return known
    hits = sorted(data.rglob(name))
    return hits[0] if hits else None


def find_iso3166_file() -> Path | None:
    pkg = _package_dir("pycountry")
    p = pkg / "databases" / "iso3166-1.json" if pkg is not None else None
    return p if p is not None and p.is_file() else None


def installed_version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


# -- parsers: one per source file, used both at run time (installed files) and by tools/build_data.py ------------

def parse_countries(path: Path) -> dict[str, list[Any]]:
    """global_energy_mix.json -> {ISO3: [g CO2e/kWh, country name, year]}."""
    with path.open(encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return {k.upper(): [float(v["carbon_intensity"]), str(v.get("country_name") or k.upper()), v.get("year")]
            for k, v in sorted(data.items()) if isinstance(v, dict) and v.get("carbon_intensity") is not None}


def parse_regions(path: Path) -> dict[str, list[Any]]:
    """impact.csv -> {'provider:region': [g CO2e/kWh, ISO3 or '', source]}."""
    import csv

    out: dict[str, list[Any]] = {}
    with path.open(newline="", encoding="utf-8-sig") as fh:
        for row in csv.DictReader(fh):
            try:
                key = f"{row['provider'].strip().lower()}:{row['region'].strip().lower()}"
                out[key] = [float(row["impact"]), (row.get("countryIsoCode") or "").strip(),
                            (row.get("source") or "").strip() or "provider data"]
            except (KeyError, ValueError, AttributeError):
                continue
    return dict(sorted(out.items()))


def parse_world_average(path: Path) -> float:
    """carbon_intensity_per_source.json -> the world average, g CO2e/kWh."""
    return float(json.loads(path.read_text(encoding="utf-8"))["world_average"])


def parse_cpu_tdp(path: Path) -> dict[str, float]:
    """cpu_power.csv ("Name,TDP" rows) -> {lower-cased name: TDP in W}."""
    table: dict[str, float] = {}
    # plain string splitting: the csv module costs start-up time here
    for line in path.read_text(encoding="utf-8", errors="replace").lower().splitlines()[1:]:
        name, _, tdp = line.rpartition(",")
        try:
            # the table's names are already plain ("intel xeon gold 6148"): lower-casing is enough
            table[" ".join(name.strip('"').split())] = float(tdp)
        except ValueError:
            continue
    return table


def parse_iso3166(path: Path) -> dict[str, str]:
    """pycountry's iso3166-1.json -> {alpha-2: alpha-3}."""
    rows = json.loads(path.read_text(encoding="utf-8"))["3166-1"]
    return {str(r["alpha_2"]): str(r["alpha_3"]) for r in sorted(rows, key=lambda r: str(r["alpha_2"]))}


# table -> (the installed file it is read from, its parser)
SOURCES: dict[str, tuple[Any, Any]] = {
    "countries": (lambda: find_data_file("global_energy_mix.json"), parse_countries),
    "regions": (lambda: find_data_file("impact.csv"), parse_regions),
    "world_average": (lambda: find_data_file("carbon_intensity_per_source.json"), parse_world_average),
    "cpu_tdp": (lambda: find_data_file("cpu_power.csv"), parse_cpu_tdp),
    "iso3166": (find_iso3166_file, parse_iso3166),
}


@cache
def shipped() -> dict[str, Any]:
    """footprint's own copy of the tables (empty if the file is missing or damaged)."""
    try:
        with SHIPPED.open(encoding="utf-8") as fh:
            data: dict[str, Any] = json.load(fh)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@cache
def table(name: str) -> tuple[Any, str]:
    """(table, where it came from): the installed package's file where there is one, else footprint's copy.
    The table is None when neither has it."""
    find, parse = SOURCES[name]
    path = find()
    if path is not None:
        try:
            return parse(path), str(path)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass
    data = shipped()
    return data.get("tables", {}).get(name), str(SHIPPED)


def stamp(name: str) -> str:
    """What identifies the file a table comes from (path and modification time), for caches keyed on it."""
    find, _ = SOURCES[name]
    path = find() or SHIPPED
    try:
        return f"{path}:{path.stat().st_mtime_ns}"
    except OSError:
        return "none"
