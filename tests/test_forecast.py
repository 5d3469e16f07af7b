"""The forecast: its maths against hand-computed values, and whole runs under a fake clock whose energy is the
exact integral of constant power, so every predicted figure is known in closed form."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from footprint.probes import FakeProbe
from footprint.reports import render

from footprint.common import forecast as maths
from footprint.common.errors import FootprintError
from footprint.common.fakeclock import FakeClock
from footprint.core.model import Report, load_forecast, load_run
from footprint.run import Run, finish_run, start_run

P = 250.0  # W: 200 on the GPU, 50 on the CPU
# the fake clock counts epoch seconds (about 1.7e9) in doubles, 2.4e-7 s apart: every span edge carries that
# rounding (2e-7 of a 1.2 s cycle), which the interval multiplies by t × remaining / sqrt(n) (about 70 at 10 of
# 100 steps): figures agree with the closed form to 1e-6 relative, not to the last digit
TIME_REL = 1e-6


def test_t_quantiles_are_the_tables_and_interpolate_towards_the_normal():
    assert (maths.t_975(1), maths.t_975(3), maths.t_975(30), maths.t_975(120)) == (12.706, 3.182, 2.042, 1.980)
    # between rows, linear in 1/df: df 35 lies between 30 (2.042) and 40 (2.021)
    assert maths.t_975(35) == pytest.approx(2.021 + (2.042 - 2.021) * (1 / 35 - 1 / 40) / (1 / 30 - 1 / 40))
    assert 1.960 < maths.t_975(10_000) < 1.961
    with pytest.raises(ValueError):
        maths.t_975(0)


def test_project_is_spent_plus_remaining_mean_with_the_t_interval():
    samples = [1.4, 1.0, 1.4, 1.0]
    mean, sd = 1.2, math.sqrt(4 * 0.2 ** 2 / 3)
    half = 3.182 * sd / 2  # t_0.975 with 3 degrees of freedom, over sqrt(4)
    point, low, high = maths.project(10.0, samples, 15)
    assert point == pytest.approx(10.0 + 15 * mean, rel=1e-12)
    assert low == pytest.approx(10.0 + 15 * (mean - half), rel=1e-12)
    assert high == pytest.approx(10.0 + 15 * (mean + half), rel=1e-12)
    assert maths.project(10.0, [2.0], 3) == (16.0, None, None)  # one sample: no interval
    assert maths.project(10.0, samples, 0) == (10.0, 10.0, 10.0)  # nothing left: what is spent
    assert maths.cycles([0.0, 5.0, 9.0], [2.0, 6.0, 11.0]) == [4.0, 5.0]  # end to end: gaps included
    assert maths.cycles([1.0], [3.0]) == [2.0]


def _start(tmp_path: Path, **kw: object) -> tuple[Run, FakeClock]:
    clock = FakeClock()
    run = start_run("train", db=str(tmp_path / "f.db"), clock=clock, carbon_intensity=100.0, price_kwh=0.5,
                    probes=[FakeProbe({"gpu:0": 200.0, "cpu:0": 50.0}, clock=clock)], **kw)  # type: ignore[arg-type]
    return run, clock


def test_a_steady_workload_is_forecast_within_2_percent_of_its_final_total(tmp_path: Path):
    """2 s of set-up, 100 steps of 1 s with 0.2 s between them, 1 s of tear-down: the forecast at 10 steps
    (10 %) is E(end of step 10) + 90 cycles of 1.2 s, exactly P × 121.8 s, against a final P × 122.8 s."""
    run, clock = _start(tmp_path)
    run.expect(steps=100)
    clock.advance(2.0)
    for i in range(100):
        with run.span("step"):
            clock.advance(1.0)
        if i < 99:
            clock.advance(0.2)
        if i == 9:
            assert load_forecast(run.store, run.id).steps_done < 10  # type: ignore[union-attr]  # not stored yet
            assert run.sampler is not None
            run.sampler.flush()  # as the sampler does every 2 s
            live = load_forecast(run.store, run.id)
            assert live is not None and live.steps_done == 10
            assert live.energy_j == pytest.approx(P * 121.8, rel=TIME_REL)
            assert live.duration_s == pytest.approx(121.8, rel=TIME_REL)
            # every cycle is the same: the interval has no width
            assert live.energy_j_low == pytest.approx(live.energy_j, rel=TIME_REL)
            assert live.energy_j_high == pytest.approx(live.energy_j, rel=TIME_REL)
            assert live.kwh == pytest.approx(P * 121.8 / 3.6e6, rel=TIME_REL)
            assert live.co2e_g == pytest.approx(P * 121.8 / 3.6e6 * 100.0, rel=TIME_REL)
            assert live.cost == pytest.approx(P * 121.8 / 3.6e6 * 0.5, rel=TIME_REL)
            # embodied carbon at the run's rate so far, over the predicted time
            so_far = load_run(run.store, run.id)
            rate = so_far.embodied_co2e_g / so_far.duration_s
            assert live.total_co2e_g == pytest.approx(live.co2e_g + rate * live.duration_s, rel=1e-12)
    clock.advance(1.0)
    finish_run(run)
    r = load_run(run.store, run.id)
    f = r.forecast
    assert f is not None and (f.steps_done, f.steps_expected, f.span) == (100, 100, "step")
    assert r.energy_j["total"] == pytest.approx(P * 122.8, rel=TIME_REL)
    assert f.early is not None and f.early["steps_done"] == 10 and f.early["made_at_s"] == pytest.approx(13.8)
    assert f.early["energy_j"] == pytest.approx(P * 121.8, rel=TIME_REL)
    assert f.error_pct == pytest.approx((121.8 - 122.8) / 122.8 * 100, abs=1e-4)  # % points: TIME_REL × 100
    assert abs(f.error_pct) < 2.0
    assert f.energy_j == pytest.approx(P * 121.8, rel=TIME_REL)  # all steps done: the energy at the last step's end
    text = render(Report([r], "x"), "console")
    assert "forecast from 100 of 100 'step'" in text and "forecast at 10 steps was 30.45 kJ: -0.81 %" in text
    assert r.to_dict()["forecast"]["error_pct"] == pytest.approx(f.error_pct)


def test_uneven_steps_give_the_t_interval(tmp_path: Path):
    run, clock = _start(tmp_path)
    run.expect(steps=20)
    for d in (1.0, 1.4, 1.0, 1.4, 1.0):
        with run.span("step"):
            clock.advance(d)
    assert run.sampler is not None
    run.sampler.flush()
    f = load_forecast(run.store, run.id)
    assert f is not None and f.steps_done == 5
    spent = 5.8  # s (and P × 5.8 J): no gaps, no set-up
    mean, half = 1.2, 3.182 * math.sqrt(4 * 0.2 ** 2 / 3) / 2
    assert f.duration_s == pytest.approx(spent + 15 * mean, rel=TIME_REL)
    assert f.energy_j == pytest.approx(P * (spent + 15 * mean), rel=TIME_REL)
    assert f.energy_j_low == pytest.approx(P * (spent + 15 * (mean - half)), rel=TIME_REL)
    assert f.energy_j_high == pytest.approx(P * (spent + 15 * (mean + half)), rel=TIME_REL)
    assert f.duration_s_high == pytest.approx(spent + 15 * (mean + half), rel=TIME_REL)
    finish_run(run, status="interrupted", exit_code=130)
    ended = load_run(run.store, run.id).forecast
    assert ended is not None and ended.error_pct is None  # it stopped at 5 of 20: no error to give
    assert ended.early is not None and ended.early["steps_done"] == 2


def test_epochs_and_named_spans(tmp_path: Path):
    run, clock = _start(tmp_path)
    run.expect(epochs=4)
    with run.span("epoch-1"):
        clock.advance(10.0)
    assert run.sampler is not None
    run.sampler.flush()
    f = load_forecast(run.store, run.id)
    # one epoch: a point forecast from it alone, no interval yet
    assert f is not None and f.span == "epoch-*" and f.energy_j == pytest.approx(P * 40.0, rel=TIME_REL)
    assert f.energy_j_low is None
    run.expect(steps=3, span="batch")
    assert load_forecast(run.store, run.id).steps_done == 0  # type: ignore[union-attr]
    assert "no 'batch' span has ended yet" in (load_forecast(run.store, run.id).note or "")  # type: ignore[union-attr]
    finish_run(run)


@pytest.mark.parametrize("kwargs", [{}, {"steps": 0}, {"steps": 2, "epochs": 1}, {"steps": 1.5}, {"epochs": True}])
def test_bad_expectations_are_one_line_errors(tmp_path: Path, kwargs: dict[str, object]):
    run, _ = _start(tmp_path)
    with pytest.raises(FootprintError):
        run.expect(**kwargs)  # type: ignore[arg-type]
    finish_run(run)


def test_no_expectation_no_forecast(tmp_path: Path):
    run, clock = _start(tmp_path)
    with run.span("step"):
        clock.advance(1.0)
    finish_run(run)
    assert load_run(run.store, run.id).forecast is None and load_forecast(run.store, run.id) is None
