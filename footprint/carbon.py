"""Carbon intensity (g CO2e per kWh), resolved offline from CodeCarbon's packaged data.

Data: CodeCarbon's `global_energy_mix.json` (per-country intensity, from Our World in Data / Ember)
and `carbon_intensity_per_source.json` (world average, IEA 2019). Both ship with the codecarbon
package (MIT); we read the files and never import codecarbon.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from .errors import FootprintError
from .probes.estimate import find_data_file

WORLD_AVERAGE_G_PER_KWH = 475.0  # IEA 2019, as in CodeCarbon; used if its data file is missing


@dataclass(frozen=True)
class Intensity:
    g_per_kwh: float
    country: str | None  # ISO3 when known
    source: str  # where the figure came from and why it was chosen


@lru_cache(maxsize=1)
def _countries() -> dict[str, dict[str, Any]]:
    path = find_data_file("global_energy_mix.json")
    if path is None:
        return {}
    with path.open() as fh:
        data: dict[str, dict[str, Any]] = json.load(fh)
    return {k.upper(): v for k, v in data.items() if isinstance(v, dict) and "carbon_intensity" in v}


def world_average() -> float:
    path = find_data_file("carbon_intensity_per_source.json")
    if path is not None:
        try:
            return float(json.loads(path.read_text())["world_average"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    return WORLD_AVERAGE_G_PER_KWH


def country_intensity(iso3: str) -> Intensity:
    code = iso3.strip().upper()
    table = _countries()
    if code in table:
        row = table[code]
        year = row.get("year", "?")
        return Intensity(float(row["carbon_intensity"]), code,
                         f"{row.get('country_name', code)} ({code}) grid mix {year}, CodeCarbon global_energy_mix.json")
    names = {str(v.get("country_name", "")).upper(): k for k, v in table.items()}
    if code in names:  # a full country name was given
        return country_intensity(names[code])
    close = difflib.get_close_matches(code, list(table) + list(names), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(names.get(c, c) for c in close)}?" if close else ""
    raise FootprintError(f"unknown country code '{iso3}' (expected ISO 3166 alpha-3, e.g. FRA, USA){hint}")


def resolve(country: str | None = None, g_per_kwh: float | None = None) -> Intensity:
    """Explicit g/kWh, else explicit country, else FOOTPRINT_CARBON_INTENSITY / FOOTPRINT_COUNTRY,
    else the world average. Never asks the network."""
    if g_per_kwh is not None:
        if g_per_kwh < 0:
            raise FootprintError(f"carbon intensity must be >= 0 g/kWh, got {g_per_kwh:g}")
        return Intensity(g_per_kwh, country.upper() if country else None, "given explicitly")
    if country:
        return country_intensity(country)
    env_g = os.environ.get("FOOTPRINT_CARBON_INTENSITY")
    if env_g:
        try:
            value = float(env_g)
        except ValueError:
            raise FootprintError(f"FOOTPRINT_CARBON_INTENSITY must be a number of g/kWh, got '{env_g}'") from None
        return Intensity(value, None, "FOOTPRINT_CARBON_INTENSITY")
    env_c = os.environ.get("FOOTPRINT_COUNTRY")
    if env_c:
        found = country_intensity(env_c)
        return Intensity(found.g_per_kwh, found.country, found.source + " (from FOOTPRINT_COUNTRY)")
    return Intensity(world_average(), None,
                     "world average (IEA 2019): no country given; pass --country ISO3 for your grid")
