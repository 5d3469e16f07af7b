"""Settings that turn energy into money and facility energy: PUE, electricity and instance prices."""

from __future__ import annotations

import math
import os

from footprint.common.errors import FootprintError
from footprint.common.record import FrozenRecord

TYPE_CHECKING = False  # typing itself costs start-up time; annotations need it only when checked
if TYPE_CHECKING:
    from typing import Any

DEFAULT_CURRENCY = "USD"


class CostSettings(FrozenRecord):
    __slots__ = ("pue", "price_kwh", "price_hour", "currency")

    def __init__(self, pue: float = 1.0, price_kwh: float | None = None, price_hour: float | None = None,
                 currency: str = DEFAULT_CURRENCY) -> None:
        self.pue = pue
        self.price_kwh = price_kwh
        self.price_hour = price_hour
        self.currency = currency


def _number(name: str, value: float | str | None, *, minimum: float, env: str, key: str,
            cfg: dict[str, Any], cfg_path: str | None) -> float | None:
    if value is None:
        value = os.environ.get(env) or None
        name = env if value is not None else name
    if value is None:
        value = cfg.get(key)
        name = f"{cfg_path}: {key}" if value is not None else name
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise FootprintError(f"{name} must be a number, got '{value}'") from None
    if math.isnan(number) or math.isinf(number) or number < minimum:
        raise FootprintError(f"{name} must be a number >= {minimum:g}, got '{value}'")
    return number


def resolve_costs(*, pue: float | None = None, price_kwh: float | None = None, price_hour: float | None = None,
                  currency: str | None = None) -> CostSettings:
    """Flags first, then FOOTPRINT_PUE / FOOTPRINT_PRICE_KWH / FOOTPRINT_PRICE_HOUR / FOOTPRINT_CURRENCY,
    then the config file (footprint.core.config)."""
    from . import config

    cfg, path = config.load()  # once: each figure below falls back to the same file
    p = _number("PUE", pue, minimum=1.0, env="FOOTPRINT_PUE", key="pue", cfg=cfg, cfg_path=path)
    return CostSettings(
        pue=1.0 if p is None else p,
        price_kwh=_number("price per kWh", price_kwh, minimum=0.0, env="FOOTPRINT_PRICE_KWH", key="price_kwh",
                          cfg=cfg, cfg_path=path),
        price_hour=_number("price per hour", price_hour, minimum=0.0, env="FOOTPRINT_PRICE_HOUR", key="price_hour",
                           cfg=cfg, cfg_path=path),
        currency=(currency or os.environ.get("FOOTPRINT_CURRENCY") or cfg.get("currency")
                  or DEFAULT_CURRENCY).upper(),
    )
