"""Settings that turn energy into money and facility energy: PUE, electricity and instance prices."""

from __future__ import annotations

from footprint.common.record import FrozenRecord
from footprint.core.settings import Resolver

DEFAULT_CURRENCY = "USD"


class CostSettings(FrozenRecord):
    __slots__ = ("pue", "price_kwh", "price_hour", "currency")

    def __init__(self, pue: float = 1.0, price_kwh: float | None = None, price_hour: float | None = None,
                 currency: str = DEFAULT_CURRENCY) -> None:
        self.pue = pue
        self.price_kwh = price_kwh
        self.price_hour = price_hour
        self.currency = currency


def resolve_costs(*, pue: float | None = None, price_kwh: float | None = None, price_hour: float | None = None,
                  currency: str | None = None, resolver: Resolver | None = None) -> CostSettings:
    """Flags first, then FOOTPRINT_PUE / FOOTPRINT_PRICE_KWH / FOOTPRINT_PRICE_HOUR / FOOTPRINT_CURRENCY,
    then the config file (through footprint.core.settings)."""
    r = resolver or Resolver()
    return CostSettings(pue=r.value("pue", pue, 1.0), price_kwh=r.value("price_kwh", price_kwh),
                        price_hour=r.value("price_hour", price_hour),
                        currency=r.value("currency", currency, DEFAULT_CURRENCY))
