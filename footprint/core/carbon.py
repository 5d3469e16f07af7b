"""Carbon intensity (g CO2e per kWh), resolved offline from CodeCarbon's data.

Data: CodeCarbon's `global_energy_mix.json` (per-country intensity, from Our World in Data / Ember),
`impact.csv` (cloud regions, from the providers' own figures) and `carbon_intensity_per_source.json`
(world average, IEA 2019), read through footprint.common.data: footprint's own copy of them, or an
installed codecarbon's files (MIT; attribution kept in every source string). codecarbon is never imported.
The time zone's country comes from the system's (or the tzdata package's) zone.tab, mapped to ISO3 with
pycountry's ISO 3166 table (copied likewise).

Resolution order, first match wins: explicit g/kWh, cloud region, country (flags, then
FOOTPRINT_CARBON_INTENSITY / FOOTPRINT_CLOUD_REGION / FOOTPRINT_COUNTRY, then the config file, all through
footprint.core.settings), the local time zone's country, the world average. Never the network.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from footprint.common.data import table
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


def _countries() -> dict[str, list[Any]]:
    """ISO3 -> [g CO2e/kWh, country name, year]."""
    found: dict[str, list[Any]] | None = table("countries")[0]
    return found or {}


def country_name(iso3: str) -> str | None:
    """The country's name in CodeCarbon's table (FRA -> France), or None."""
    row = _countries().get(iso3.strip().upper())
    return str(row[1]) if row else None


def world_average() -> float:
    found = table("world_average")[0]
    return float(found) if isinstance(found, (int, float)) else WORLD_AVERAGE_G_PER_KWH


def country_intensity(iso3: str) -> Intensity:
    code = iso3.strip().upper()
    countries = _countries()
    if len(code) == 2 and code.isalpha():  # ISO 3166 alpha-2 (FR): the same country's alpha-3
        code = _iso2_to_iso3(code) or code
    if code in countries:
        g, name, year = countries[code]
        return Intensity(float(g), code,
                         f"{name} ({code}) grid mix {year or '?'}, CodeCarbon global_energy_mix.json")
    names = {str(v[1]).upper(): k for k, v in countries.items()}
    if code in names:  # a full country name was given
        return country_intensity(names[code])
    import difflib

    close = difflib.get_close_matches(code, list(countries) + list(names), n=6, cutoff=0.5)
    codes = list(dict.fromkeys(names.get(c, c) for c in close))[:3]  # a code and its country's name: once
    hint = f"; did you mean {', '.join(codes)}?" if codes else ""
    raise FootprintError(f"unknown country code '{iso3}' (expected ISO 3166 alpha-3 or alpha-2, e.g. FRA, FR, USA)"
                         f"{hint}")


def _regions() -> dict[str, list[Any]]:
    """'provider:region' -> [g/kWh, ISO3 or '', source]."""
    found: dict[str, list[Any]] | None = table("regions")[0]
    return found or {}


def region_intensity(region: str) -> Intensity:
    """A cloud region as 'provider:region', e.g. 'gcp:europe-west1' (as many as CodeCarbon's impact.csv
    lists: GCP's regions in codecarbon 3.x)."""
    key = region.strip().lower()
    regions = _regions()
    if key in regions:
        g, iso3, src = regions[key]
        return Intensity(float(g), iso3 or None, f"cloud region {key} (CodeCarbon impact.csv, from {src})")
    providers = sorted({k.split(":", 1)[0] for k in regions})
    provider = key.split(":", 1)[0] if ":" in key else None
    if provider is not None and providers and provider not in providers:
        raise FootprintError(f"unknown cloud region '{region}': no data for {provider} regions: CodeCarbon's "
                             f"impact.csv has {', '.join(providers)} only; pass --country or --carbon-intensity")
    import difflib

    close = difflib.get_close_matches(key, list(regions), n=3, cutoff=0.6)
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
    codes: dict[str, str] | None = table("iso3166")[0]
    return (codes or {}).get(iso2)


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
                     f"world average (IEA 2019): no country given and {why}; pass --country (ISO3 or ISO2, "
                     "e.g. FRA or FR) for your grid")
