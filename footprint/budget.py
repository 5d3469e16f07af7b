"""Budgets for `footprint run`: `--budget-kwh`, `--budget-co2e-g`, `--budget-cost`, checked against the run's
forecast (footprint.core.steps) every second while the command runs.

As soon as the forecast exceeds a budget, footprint warns once on stderr and records a `budget` event; with
`--on-budget stop` it also stops the command gracefully, with a SIGINT as Ctrl-C would send, and records
`stopped_by: "budget"` in the run's meta (the run's status is then `interrupted`, as after any Ctrl-C). The CO2e
budget is compared with the total CO2e (operational + embodied) where embodied carbon is on.
"""

from __future__ import annotations

import contextlib
import sys
import threading

from footprint.common.clock import SYSTEM
from footprint.common.record import FrozenRecord

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from footprint.core.steps import ForecastReport

CHECK_EVERY_S = 1.0
WARN, STOP = "warn", "stop"


class Budget(FrozenRecord):
    """One limit: `name` (kwh, co2e_g, cost), its value, the forecast field it is compared with and a unit."""

    __slots__ = ("name", "limit", "field", "unit")

    def __init__(self, name: str, limit: float, field: str, unit: str) -> None:
        self.name = name
        self.limit = limit
        self.field = field
        self.unit = unit


def budgets(kwh: float | None = None, co2e_g: float | None = None, cost: float | None = None) -> list[Budget]:
    out = []
    if kwh is not None:
        out.append(Budget("kwh", kwh, "kwh", "kWh"))
    if co2e_g is not None:
        out.append(Budget("co2e_g", co2e_g, "total_co2e_g", "g CO2e"))
    if cost is not None:
        out.append(Budget("cost", cost, "cost", ""))
    return out


def over(forecast: ForecastReport, budget: Budget) -> float | None:
    """The forecast's figure when it exceeds the budget, else None."""
    value = getattr(forecast, budget.field)
    return value if isinstance(value, float) and value > budget.limit else None


class BudgetWatch:
    """A thread that checks the run's forecast against the budgets every `every` seconds. `stop` is called once
    (with --on-budget stop) when one is exceeded; `close()` ends the thread."""

    def __init__(self, db: str, run_id: int, limits: list[Budget], *, on_budget: str = WARN,
                 stop: Callable[[], None] | None = None, every: float = CHECK_EVERY_S) -> None:
        self.db = db
        self.run_id = run_id
        self.limits = limits
        self.on_budget = on_budget
        self.stop = stop
        self.every = every
        self.exceeded: dict[str, float] = {}
        self.stopped = False
        self._said: set[str] = set()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="footprint-budget", daemon=True)

    def start(self) -> BudgetWatch:
        self._thread.start()
        return self

    def close(self) -> None:
        self._done.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        from footprint.core.steps import Forecaster
        from footprint.core.store import Store

        try:
            store = Store(self.db, create=False)
        except Exception as exc:  # the run goes on without its budget: say so once
            print(f"footprint: warning: budgets not checked: {exc}", file=sys.stderr)
            return
        forecaster = Forecaster(store, self.run_id)
        try:
            while not self._done.wait(self.every):
                try:
                    self.check(store, forecaster)
                except Exception as exc:  # a locked DB for longer than the busy timeout: try again next time
                    self._say("error", f"footprint: warning: budget check failed: {exc}")
        finally:
            store.close()

    def _say(self, key: str, text: str) -> None:
        if key not in self._said:
            self._said.add(key)
            print(text, file=sys.stderr, flush=True)

    def check(self, store: object, forecaster: object) -> None:
        from footprint.core.model import load_forecast
        from footprint.core.steps import Forecaster
        from footprint.core.store import Store

        assert isinstance(store, Store) and isinstance(forecaster, Forecaster)
        f = load_forecast(store, self.run_id, forecaster)
        if f is None or f.energy_j is None:
            return
        for b in self.limits:
            if b.name == "cost" and f.cost is None:
                self._say("no-price", "footprint: warning: --budget-cost is not checked: the run has no price "
                                      "(--price-kwh or --price-hour)")
                continue
            value = over(f, b)
            if value is None or b.name in self.exceeded:
                continue
            self.exceeded[b.name] = value
            unit = f" {b.unit}" if b.unit else ""
            message = (f"forecast {value:.4g}{unit} exceeds the budget of {b.limit:g}{unit} "
                       f"(from {f.steps_done} of {f.steps_expected} steps)")
            stopping = self.on_budget == STOP and not self.stopped
            print(f"footprint: warning: {message}" + ("; stopping the command (SIGINT)" if stopping else ""),
                  file=sys.stderr, flush=True)
            with contextlib.suppress(Exception):
                store.add_event(self.run_id, SYSTEM.now(), "budget", message + ("; stopped" if stopping else ""))
            if stopping:
                self.stopped = True
                with contextlib.suppress(Exception):
                    store.update_meta(self.run_id, {"stopped_by": "budget", "budget": {
                        "name": b.name, "limit": b.limit, "forecast": value, "steps_done": f.steps_done}})
                if self.stop is not None:
                    self.stop()
