"""`footprint compare` with J per request beside J per token: served requests first, else requests counted as tokens
of kind "requests" (what a sweep's workload counts)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from footprint.probes import FakeProbe
from footprint.reports import CompareRenderer

from footprint.common.fakeclock import FakeClock
from footprint.core.model import load_report
from footprint.core.store import Store
from footprint.run import finish_run, start_run
from tests.conftest import run_cli


def served_run(db: Path, name: str, watts: float, requests: int, generated_each: int) -> int:
    """A 2 s run of one fake GPU at `watts` (exactly 2 × watts J) that served `requests` requests."""
    clock = FakeClock()
    run = start_run(name, db=str(db), probes=[FakeProbe(powers_w={"gpu:0": watts}, clock=clock)], clock=clock)
    t0 = clock.now()
    clock.advance(2.0)
    run.store.add_requests(run.id, [
        {"started_at": t0 + 0.1 * i, "first_token_at": None, "ended_at": t0 + 0.1 * i + 0.05, "model": name,
         "endpoint": "/v1/completions", "status": 200, "stream": 0, "prompt_tokens": 3,
         "completion_tokens": generated_each, "usage_source": "reported", "error": None}
        for i in range(requests)])
    finish_run(run)
    return run.id


def counted_run(db: Path, name: str, watts: float, requests: int, generated: int) -> int:
    """A 1 s run (exactly `watts` J) whose workload counted its requests as tokens of kind "requests"."""
    clock = FakeClock()
    run = start_run(name, db=str(db), probes=[FakeProbe(powers_w={"gpu:0": watts}, clock=clock)], clock=clock)
    run.add_tokens(generated, kind="generated")
    if requests:
        run.add_tokens(requests, kind="requests")
    clock.advance(1.0)
    finish_run(run)
    return run.id


def test_j_per_request_of_served_runs_with_ratio(tmp_path: Path, clean_env: dict[str, str]):
    db = tmp_path / "s.db"
    big = served_run(db, "big", 400.0, 8, 10)  # 800 J over 8 requests: 100 J/request, 10 J per generated token
    small = served_run(db, "small", 100.0, 10, 10)  # 200 J over 10 requests: 20 J/request, 2 J/gen token
    env = dict(clean_env, FOOTPRINT_DB=str(db))
    res = run_cli(["compare", str(big), str(small), "--json"], env)
    assert res.returncode == 0, res.stderr.decode()
    data = json.loads(res.stdout)
    rows = {r["name"]: r for r in data["rows"]}
    assert data["per_request"] == "the whole run's energy over the requests it served"
    assert rows["big"]["requests"] == 8 and rows["small"]["requests"] == 10
    assert rows["big"]["requests_source"] == rows["small"]["requests_source"] == "served"
    assert rows["big"]["j_per_request"] == pytest.approx(100.0, rel=1e-9)
    assert rows["small"]["j_per_request"] == pytest.approx(20.0, rel=1e-9)
    assert rows["small"]["ratios"]["j_per_request"] == pytest.approx(0.2, rel=1e-9)
    assert rows["small"]["ratios"]["requests"] == pytest.approx(1.25, rel=1e-9)
    assert rows["big"]["j_per_token"] == pytest.approx(10.0, rel=1e-9)  # still per generated token
    text = run_cli(["compare", str(big), str(small)], env).stdout.decode()
    assert "J/request" in text and "requests" in text
    assert "20 (×0.2)" in text and "10 (×1.25)" in text
    assert "J/request is the whole run's energy over its requests (idle time between them included)" in text


def test_requests_counted_as_tokens_are_used_when_none_were_served(tmp_path: Path, clean_env: dict[str, str]):
    db = tmp_path / "c.db"
    served = served_run(db, "served", 300.0, 6, 5)  # 600 J / 6 = 100 J/request
    counted = counted_run(db, "counted", 250.0, 5, 50)  # 250 J / 5 = 50 J/request; 5 J per generated token
    store = Store(str(db), create=False, readonly=True)
    report = load_report(store, [served, counted])
    data = json.loads(CompareRenderer(requests=store.request_counts([served, counted]), as_json=True).render(report))
    rows = {r["name"]: r for r in data["rows"]}
    assert rows["counted"]["requests"] == 5 and rows["counted"]["requests_source"] == "counted"
    assert rows["counted"]["j_per_request"] == pytest.approx(50.0, rel=1e-9)
    assert rows["counted"]["ratios"]["j_per_request"] == pytest.approx(0.5, rel=1e-9)
    # requests counted as tokens are no tokens: J/token is per generated token, 250 J / 50
    assert rows["counted"]["j_per_token"] == pytest.approx(5.0, rel=1e-9)


def test_no_requests_no_request_columns(tmp_path: Path, clean_env: dict[str, str]):
    db = tmp_path / "n.db"
    a = counted_run(db, "a", 100.0, 0, 10)
    b = counted_run(db, "b", 200.0, 0, 10)
    env = dict(clean_env, FOOTPRINT_DB=str(db))
    data = json.loads(run_cli(["compare", str(a), str(b), "--json"], env).stdout)
    assert [r["requests"] for r in data["rows"]] == [None, None]
    assert [r["j_per_request"] for r in data["rows"]] == [None, None]
    assert "per_request" not in data
    text = run_cli(["compare", str(a), str(b)], env).stdout.decode()
    assert "J/request" not in text


def test_a_run_without_requests_beside_one_with_has_none_not_zero(tmp_path: Path, clean_env: dict[str, str]):
    db = tmp_path / "m.db"
    served = served_run(db, "served", 100.0, 4, 5)
    plain = counted_run(db, "plain", 100.0, 0, 10)
    env = dict(clean_env, FOOTPRINT_DB=str(db))
    data = json.loads(run_cli(["compare", str(served), str(plain), "--json"], env).stdout)
    assert data["rows"][1]["requests"] is None and data["rows"][1]["j_per_request"] is None
    assert data["rows"][1]["ratios"]["j_per_request"] is None
    text = run_cli(["compare", str(served), str(plain)], env).stdout.decode()
    assert "runs without requests have no J/request" in text
