"""Carbon intensity (g CO2e per kWh), resolved offline from CodeCarbon's packaged data.

Data: CodeCarbon's `global_energy_mix.json` (per-country intensity, from Our World in Data / Ember),
`impact.csv` (cloud regions, from the providers' own figures) and `carbon_intensity_per_source.json`
(world average, IEA 2019). They ship with the codecarbon package (MIT; attribution kept in every
source string); we read the files and never import codecarbon. The time zone's country comes from the
system's (or the tzdata package's) zone.tab, mapped to ISO3 with pycountry's ISO 3166 table.

Resolution order, first match wins: explicit g/kWh, cloud region, country (flags, then
FOOTPRINT_CARBON_INTENSITY / FOOTPRINT_CLOUD_REGION / FOOTPRINT_COUNTRY, then the config file, all through
footprint.core.settings), the local time zone's country, the world average. Never the network.
"""

from __future__ import annotations

import importlib.util
import json
import os
from functools import lru_cache
from pathlib import Path

from footprint.common.data import find_data_file
from footprint.common.errors import FootprintError
from footprint.common.record import FrozenRecord
from footprint.core.settings import CONFIG, ENV, FLAG, Resolver

TYPE_CHECKING = False  # typing itself costs start-up time; annotations need it only when checked
if TYPE_CHECKING:
    from typing import Any

WORLD_AVERAGE_G_PER_KWH = 475.0  # IEA 2019, as in CodeCarbon; used if its data file is missing


class Intensity(FrozenRecord):
    __slots__ = ("g_per_kwh", "country", "source")

    def __init__(self, g_per_kwh: float, country: str | None, source: str) -> None:
        self.g_per_kwh = g_per_kwh
        self.country = country  # ISO3 when known
        self.source = source  # where the figure came from and why it was chosen


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
    if len(code) == 2 and code.isalpha():  # ISO 3166 alpha-2 (FR): the same country's alpha-3
        code = _iso2_to_iso3(code) or code
    if code in table:
        row = table[code]
        year = row.get("year", "?")
        return Intensity(float(row["carbon_intensity"]), code,
                         f"{row.get('country_name', code)} ({code}) grid mix {year}, CodeCarbon global_energy_mix.json")
    names = {str(v.get("country_name", "")).upper(): k for k, v in table.items()}
    if code in names:  # a full country name was given
        return country_intensity(names[code])
    import difflib

    close = difflib.get_close_matches(code, list(table) + list(names), n=6, cutoff=0.5)
    codes = list(dict.fromkeys(names.get(c, c) for c in close))[:3]  # a code and its country's name: once
    hint = f"; did you mean {', '.join(codes)}?" if codes else ""
    raise FootprintError(f"unknown country code '{iso3}' (expected ISO 3166 alpha-3 or alpha-2, e.g. FRA, FR, USA)"
                         f"{hint}")


@lru_cache(maxsize=1)
def _regions() -> dict[str, tuple[float, str, str]]:
    """'provider:region' -> (g/kWh, ISO3, source)."""
    import csv

    path = find_data_file("impact.csv")
    out: dict[str, tuple[float, str, str]] = {}
    if path is None:
        return out
    with path.open(newline="", encoding="utf-8-sig") as fh:
        for row in csv.DictReader(fh):
            try:
                key = f"{row['provider'].strip().lower()}:{row['region'].strip().lower()}"
                out[key] = (float(row["impact"]), row.get("countryIsoCode", "") or "",
                            row.get("source", "") or "provider data")
            except (KeyError, ValueError, AttributeError):
                continue
    return out


def region_intensity(region: str) -> Intensity:
    """A cloud region as 'provider:region', e.g. 'gcp:europe-west1' (as many as CodeCarbon's impact.csv
    lists: GCP's regions in codecarbon 3.x)."""
    key = region.strip().lower()
    table = _regions()
    if key in table:
        g, iso3, src = table[key]
        return Intensity(g, iso3 or None, f"cloud region {key} (CodeCarbon impact.csv, from {src})")
    providers = sorted({k.split(":", 1)[0] for k in table})
    provider = key.split(":", 1)[0] if ":" in key else None
    if provider is not None and providers and provider not in providers:
        raise FootprintError(f"unknown cloud region '{region}': no data for {provider} regions: CodeCarbon's "
                             f"impact.csv has {', '.join(providers)} only; pass --country or --carbon-intensity")
    import difflib

    close = difflib.get_close_matches(key, list(table), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else " (expected provider:region, e.g. gcp:europe-west1)"
    raise FootprintError(f"unknown cloud region '{region}'{hint}")


def local_timezone() -> str | None:
    tz = os.environ.get("TZ", "").lstrip(":")
    if tz and "/" in tz:
        return tz
    try:
        text = Path("/etc/timezone").read_text().strip()
        if text:
            return text
    except OSError:
        pass
    try:
        target = os.readlink("/etc/localtime")
    except OSError:
        return None
    return target.split("zoneinfo/", 1)[1] if "zoneinfo/" in target else None


def _zone_tab() -> Path | None:
    system = Path("/usr/share/zoneinfo/zone.tab")
    if system.is_file():
        return system
    spec = importlib.util.find_spec("tzdata")
    if spec and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            p = Path(loc) / "zoneinfo" / "zone.tab"
            if p.is_file():
                return p
    return None


def _iso2_to_iso3(iso2: str) -> str | None:
    spec = importlib.util.find_spec("pycountry")
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = Path(loc) / "databases" / "iso3166-1.json"
        if p.is_file():
            for row in json.loads(p.read_text(encoding="utf-8"))["3166-1"]:
                if row.get("alpha_2") == iso2:
                    return str(row["alpha_3"])
    return None


def timezone_country(tz: str | None) -> str | None:
    """ISO3 country of an IANA time zone (Europe/Paris -> FRA), or None (UTC, unknown)."""
    tab = _zone_tab()
    if not tz or tab is None:
        return None
    for line in tab.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) >= 3 and parts[2] == tz:
            return _iso2_to_iso3(parts[0])
    return None


def resolve(country: str | None = None, g_per_kwh: float | None = None, region: str | None = None, *,
            resolver: Resolver | None = None) -> Intensity:
    """The carbon intensity to use, and why (see the module's docstring for the order).

    The three ways to name it (an intensity, a cloud region, a country) are looked up together, source by
    source: anything given as a flag beats the environment, which beats the config file; within one source
    an explicit intensity beats a region, which beats a country.
    """
    r = resolver or Resolver()
    found = {name: r.resolve(name, given) for name, given in
             (("carbon_intensity", g_per_kwh), ("region", region), ("country", country))}
    for origin in (FLAG, ENV, CONFIG):
        g, reg, ctry = (found[n] if found[n].origin == origin else None
                        for n in ("carbon_intensity", "region", "country"))
        if g is not None:
            if origin == FLAG:
                code = found["country"].value if found["country"].origin == FLAG else None
                return Intensity(g.value, code, "given explicitly")
            return Intensity(g.value, None, str(g.where) if origin == ENV else f"given in {g.where}")
        if reg is not None:
            hit = region_intensity(reg.value)
            return hit if origin == FLAG else Intensity(hit.g_per_kwh, hit.country, f"{hit.source} (from {reg.where})")
        if ctry is not None:
            hit = country_intensity(ctry.value)
            return hit if origin == FLAG else Intensity(hit.g_per_kwh, hit.country,
                                                        f"{hit.source} (from {ctry.where})")
    tz = local_timezone()
    iso3 = timezone_country(tz)
    if iso3 and iso3 in _countries():
        found_tz = country_intensity(iso3)
        return Intensity(found_tz.g_per_kwh, found_tz.country,
                         f"{found_tz.source} (guessed from time zone {tz}; pass --country to be sure)")
    why = f"time zone {tz} names no country" if tz else "no time zone set"
    return Intensity(world_average(), None,
                     f"world average (IEA 2019): no country given and {why}; pass --country ISO3 for your grid")
