"""Embodied carbon in the read model: the settings a run records (through the one resolver) and a run's
embodied figure, made from its devices and `runs.meta` with footprint.common.embodied's table and formula."""

from __future__ import annotations

from footprint.common import embodied
from footprint.common.record import Record
from footprint.core.settings import Resolver, Settings

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any


def resolve_embodied(*, embodied_on: bool | None = None, lifetime_years: float | None = None,
                     utilisation: float | None = None, resolver: Resolver | None = None) -> dict[str, Any]:
    """What a run records in meta["embodied"]: on, lifetime_years, utilisation (flag, then FOOTPRINT_EMBODIED*,
    then the config file, then the defaults) and where each came from when it was not the default."""
    r = resolver or Resolver()
    out: dict[str, Any] = {
        "on": r.value("embodied", embodied_on, True),
        "lifetime_years": r.value("embodied_lifetime_years", lifetime_years, embodied.DEFAULT_LIFETIME_YEARS),
        "utilisation": r.value("embodied_utilisation", utilisation, embodied.DEFAULT_UTILISATION),
    }
    given = {name: r.origin_text(option, value) for name, option, value in (
        ("on", "embodied", embodied_on), ("lifetime_years", "embodied_lifetime_years", lifetime_years),
        ("utilisation", "embodied_utilisation", utilisation))}
    origins = {k: v for k, v in given.items() if v is not None}
    if origins:
        out["origins"] = origins
    return out


class EmbodiedReport(Record):
    """A run's embodied CO2e: grams (with a low-high range), the settings used and one item per device (or host
    part) with its figure's source. `on` False: nothing computed (`--embodied off`), every figure None."""

    __slots__ = ("on", "lifetime_years", "utilisation", "co2e_g", "low_g", "high_g", "items", "settings_source")

    def __init__(self, on: bool, lifetime_years: float | None = None, utilisation: float | None = None,
                 co2e_g: float | None = None, low_g: float | None = None, high_g: float | None = None,
                 items: list[embodied.Item] | None = None, settings_source: str | None = None) -> None:
        self.on = on
        self.lifetime_years = lifetime_years
        self.utilisation = utilisation
        self.co2e_g = co2e_g
        self.low_g = low_g
        self.high_g = high_g
        self.items = items if items is not None else []
        self.settings_source = settings_source  # "defaults", or where a setting came from


def run_embodied(devices: Iterable[tuple[str, int, str | None]], meta: dict[str, Any], duration_s: float | None,
                 settings: Settings, warnings: list[str]) -> EmbodiedReport:
    """The embodied figure of a run: what it recorded in meta["embodied"] (defaults for a run recorded before
    embodied carbon was), overridden by report-time settings; warnings for devices without a figure go to
    `warnings`."""
    recorded = meta.get("embodied") if isinstance(meta.get("embodied"), dict) else {}
    assert isinstance(recorded, dict)
    on = settings.embodied if settings.embodied is not None else bool(recorded.get("on", True))
    if not on:
        return EmbodiedReport(False)
    years = settings.embodied_lifetime_years or float(recorded.get("lifetime_years")
                                                      or embodied.DEFAULT_LIFETIME_YEARS)
    use = settings.embodied_utilisation or float(recorded.get("utilisation") or embodied.DEFAULT_UTILISATION)
    origins = dict(recorded.get("origins") or {})
    for key, value in (("lifetime_years", settings.embodied_lifetime_years),
                       ("utilisation", settings.embodied_utilisation)):
        if value is not None:
            origins[key] = "given at report time"
    source = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in origins.items()) or "defaults"
    if duration_s is None:
        warnings.append("embodied: the run's duration is unknown, so is its embodied CO2e")
        return EmbodiedReport(True, years, use, settings_source=source)
    ram = meta.get("ram_total_gb")
    packages = meta.get("cpu_packages")
    items, missing = embodied.embodied_items(
        devices, duration_s=duration_s, lifetime_years=years, utilisation=use,
        ram_gb=float(ram) if isinstance(ram, (int, float)) else None,
        cpu_packages=int(packages) if isinstance(packages, int) else None)
    warnings.extend(missing)
    grams, low, high = embodied.total_g(items)
    return EmbodiedReport(True, years, use, grams if items else None, low if items else None,
                          high if items else None, items, source)
