"""The workload's steps, and the forecast of the run's totals made from them.

A run that knows how many steps it will take (`run.expect(steps=N)` or `epochs=N`, the Trainer callbacks from
`max_steps`, `footprint run --expect-steps N`) records it in runs.meta["expect"]: {"count": N, "span": NAME},
where NAME (a glob) names the spans that are its steps ("step", the callbacks' per-step spans; "epoch-*" for
epochs). From the steps that have ended, footprint.common.forecast projects energy and time; CO2e and cost
follow from them as from any energy. The forecast as it stood when the first 10 % of the steps had ended
(at least 2) is made again from the stored readings, which never change once written (span edges are boundary
reads that compaction keeps), so a finished run says how far that early forecast was from its final total.
"""

from __future__ import annotations

import math
from fnmatch import fnmatchcase

from footprint.common import forecast as maths
from footprint.common import units
from footprint.common.record import Record
from footprint.core.store import Store

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

EXPECT = "expect"
STEP_SPAN = "step"
EPOCH_SPANS = "epoch-*"
EARLY_SHARE = 0.10  # the early forecast, whose error a finished run reports, is made at 10 % of the steps


def expectation(meta: dict[str, Any]) -> tuple[int, str] | None:
    """(steps expected, the glob naming their spans) from runs.meta, if the run recorded one."""
    found = meta.get(EXPECT)
    if not isinstance(found, dict) or not isinstance(found.get("count"), int) or found["count"] < 1:
        return None
    span = found.get("span")
    return found["count"], span if isinstance(span, str) and span else STEP_SPAN


def expect_meta(steps: int | None = None, epochs: int | None = None, span: str | None = None) -> dict[str, Any]:
    """What `expect()` records: exactly one of steps or epochs, a whole number >= 1."""
    from footprint.common.errors import FootprintError

    if (steps is None) == (epochs is None):
        raise FootprintError("expect() takes one of steps= or epochs=")
    count = steps if steps is not None else epochs
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise FootprintError(f"the expected number of {'steps' if steps is not None else 'epochs'} must be a whole "
                             f"number >= 1, got {count!r}")
    return {"count": count, "span": span or (STEP_SPAN if steps is not None else EPOCH_SPANS)}


class ForecastReport(Record):
    """Predicted totals of a run with an expected number of steps (each with a 95 % low-high interval once two
    steps' cycles are known), the steps it is made from, and for a finished run the error of the early forecast.
    CO2e is operational (`co2e_g`) and with embodied carbon (`total_co2e_g`)."""

    __slots__ = ("span", "steps_done", "steps_expected", "energy_j", "energy_j_low", "energy_j_high", "kwh",
                 "kwh_low", "kwh_high", "duration_s", "duration_s_low", "duration_s_high", "co2e_g", "co2e_g_low",
                 "co2e_g_high", "total_co2e_g", "total_co2e_g_low", "total_co2e_g_high", "cost", "cost_low",
                 "cost_high", "interval", "early", "error_pct", "note")

    def __init__(self, span: str, steps_done: int, steps_expected: int, *, interval: str | None = None,
                 early: dict[str, Any] | None = None, error_pct: float | None = None, note: str | None = None) -> None:
        self.span = span
        self.steps_done = steps_done
        self.steps_expected = steps_expected
        self.energy_j: float | None = None
        self.energy_j_low: float | None = None
        self.energy_j_high: float | None = None
        self.kwh: float | None = None
        self.kwh_low: float | None = None
        self.kwh_high: float | None = None
        self.duration_s: float | None = None
        self.duration_s_low: float | None = None
        self.duration_s_high: float | None = None
        self.co2e_g: float | None = None
        self.co2e_g_low: float | None = None
        self.co2e_g_high: float | None = None
        self.total_co2e_g: float | None = None
        self.total_co2e_g_low: float | None = None
        self.total_co2e_g_high: float | None = None
        self.cost: float | None = None
        self.cost_low: float | None = None
        self.cost_high: float | None = None
        self.interval = interval
        self.early = early  # the forecast made when 10 % of the steps had ended (at least 2)
        self.error_pct = error_pct  # that early forecast's energy against the final total, in %
        self.note = note


class Forecaster:
    """Forecasts of one run. Keeps the cumulative energy at step edges it has read whose readings are final
    (a reading at or after the edge is stored), so a budget check each second reads only the new edges."""

    def __init__(self, store: Store, run_id: int) -> None:
        self.store = store
        self.run_id = run_id
        self._at: dict[float, float] = {}
        self._first: dict[int, float] = {}

    def cumulative(self, dev_rows: Sequence[Any], t: float) -> float | None:
        """Energy of every device from its first reading to instant t (interpolated between readings)."""
        if t in self._at:
            return self._at[t]
        total, final = 0.0, True
        for d in dev_rows:
            if d["first_t"] is None:
                continue
            e = self.store.energy_at(d["id"], t)
            first = self._first.get(d["id"])
            if first is None:
                first = self.store.energy_at(d["id"], d["first_t"])
                if first is not None:
                    self._first[d["id"]] = first
            if e is None or first is None:
                return None
            total += e - first
            final = final and d["last_t"] is not None and d["last_t"] >= t
        if final:
            self._at[t] = total
        return total

    def forecast(self, *, meta: dict[str, Any], started: float | None, dev_rows: Sequence[Any],
                 spans: Sequence[Any], money: Callable[[float, float], tuple[float | None, float | None, float | None]],
                 final_energy_j: float | None = None) -> ForecastReport | None:
        """The forecast for a run with an expectation, else None. `dev_rows`: its devices (id, first_t, last_t);
        `spans`: its span rows (name, started_at, ended_at); `money(energy_j, duration_s)`: (operational CO2e,
        total CO2e, cost) by the run's settings; `final_energy_j`: its total once it has ended, for the early
        forecast's error."""
        expected = expectation(meta)
        if expected is None or started is None:
            return None
        count, pattern = expected
        # a live run stores its readings in batches, every device's together: a step that ended after the last
        # stored batch counts once the next one is stored (its energy would be cut short before)
        lasts = [d["last_t"] for d in dev_rows if d["last_t"] is not None]
        covered = max(lasts) if lasts else None
        steps = sorted(((s["started_at"], s["ended_at"]) for s in spans
                        if s["ended_at"] is not None and fnmatchcase(str(s["name"]), pattern)
                        and covered is not None and s["ended_at"] <= covered), key=lambda p: p[1])
        report = ForecastReport(pattern, len(steps), count, interval=maths.INTERVAL)
        if not steps:
            report.note = f"no '{pattern}' span has ended yet: the forecast starts after the first"
            return report
        points = self._points(dev_rows, steps)
        if points is None:
            report.note = "the steps' energy is unknown (no readings around them)"
            return report
        self._fill(report, points, started, count, money)
        early_at = min(count, max(2, math.ceil(EARLY_SHARE * count)))
        if len(steps) >= early_at:
            early = ForecastReport(pattern, early_at, count)
            self._fill(early, (points[0][:early_at], points[1][:early_at]), started, count, money)
            report.early = {"steps_done": early_at, "energy_j": early.energy_j, "energy_j_low": early.energy_j_low,
                            "energy_j_high": early.energy_j_high, "duration_s": early.duration_s,
                            "made_at_s": steps[early_at - 1][1] - started}
            if final_energy_j is not None and len(steps) >= count and early.energy_j is not None:
                report.error_pct = maths.error_pct(early.energy_j, final_energy_j)
        if len(steps) > count:
            report.note = f"{len(steps)} '{pattern}' spans ended, more than the {count} expected"
        return report

    def _points(self, dev_rows: Sequence[Any], steps: list[tuple[float, float]]) \
            -> tuple[list[tuple[float, float]], list[tuple[float, float]]] | None:
        """((t, cumulative J) at each step's start, the same at each step's end)."""
        starts, ends = [], []
        for a, b in steps:
            ea, eb = self.cumulative(dev_rows, a), self.cumulative(dev_rows, b)
            if ea is None or eb is None:
                return None
            starts.append((a, ea))
            ends.append((b, eb))
        return starts, ends

    @staticmethod
    def _fill(report: ForecastReport, points: tuple[list[tuple[float, float]], list[tuple[float, float]]],
              started: float, count: int,
              money: Callable[[float, float], tuple[float | None, float | None, float | None]]) -> None:
        starts, ends = points
        remaining = max(0, count - len(ends))
        energy = maths.project(ends[-1][1], maths.cycles([e for _, e in starts], [e for _, e in ends]), remaining)
        time = maths.project(ends[-1][0] - started, maths.cycles([t for t, _ in starts], [t for t, _ in ends]),
                             remaining)
        for suffix, e, d in (("", energy[0], time[0]), ("_low", energy[1], time[1]), ("_high", energy[2], time[2])):
            setattr(report, f"energy_j{suffix}", e)
            setattr(report, f"duration_s{suffix}", d)
            setattr(report, f"kwh{suffix}", None if e is None else units.j_to_kwh(e))
            if e is not None and d is not None:
                co2, total, cost = money(e, d)
                setattr(report, f"co2e_g{suffix}", co2)
                setattr(report, f"total_co2e_g{suffix}", total)
                setattr(report, f"cost{suffix}", cost)
