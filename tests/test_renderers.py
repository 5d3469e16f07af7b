"""Every renderer on one canned run (tests/canned.py), recorded under a fake clock: golden outputs.

After an intended change to a renderer's output, regenerate with
`FOOTPRINT_UPDATE_GOLDEN=1 python -m pytest tests/test_renderers.py` and review the diff.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from footprint.reports import render, renderer_for, renderer_names

from footprint.core.model import Report, load_report
from footprint.core.store import Store
from tests.canned import WATTS, canned_report, record

GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("FOOTPRINT_UPDATE_GOLDEN") == "1"


@pytest.fixture(autouse=True)
def utc() -> Iterator[None]:
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if old is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = old
    time.tzset()


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.write_text(text)
    assert path.exists(), f"no golden file {path}: run with FOOTPRINT_UPDATE_GOLDEN=1 to create it"
    assert text == path.read_text()


def test_canned_run_is_exact():
    rep = canned_report()
    assert rep.duration_s == pytest.approx(5.0, abs=1e-6)
    for key, watts in WATTS.items():
        dev = next(d for d in rep.devices if f"{d.kind}:{d.index}" == key)
        assert dev.energy_j == pytest.approx(watts * 5.0, rel=1e-9)
    assert rep.energy_j["total"] == pytest.approx(sum(WATTS.values()) * 5.0, rel=1e-9)
    assert rep.energy_j["npu"] == pytest.approx(20.0)  # a kind reports do not know still counts in the total
    prefill = next(s for s in rep.spans if s.name == "prefill")
    assert prefill.reliable is False and prefill.energy_j["total"] == pytest.approx(625.0 * 0.05, rel=1e-5)


@pytest.mark.parametrize("name", [n for n in renderer_names() if n != "html"])
def test_renderer_output_is_stable(name: str):
    text = render(canned_report(), name)
    check_golden(f"canned.{name}.txt", text)


def test_every_renderer_shows_every_device_kind():
    rep = canned_report()
    for name in renderer_names():
        text = render(rep, name)
        if name == "emissions-csv":  # CodeCarbon's columns: the npu has none, but counts in energy_consumed
            row = dict(zip(*[line.split(",") for line in text.splitlines()], strict=True))
            assert float(row["energy_consumed"]) == pytest.approx(3125.0 / 3.6e6)
            continue
        assert re.search(r"npu", text, re.I), f"{name} leaves out the npu device"


def test_json_is_the_contract():
    data = json.loads(render(canned_report(), "json"))
    run = data["runs"][0]
    assert set(run["energy_j"]) == {"cpu", "ram", "gpu", "npu", "total"}
    assert run["energy_j"]["total"] == pytest.approx(3125.0)
    assert run["tokens_by_kind"] == {"generated": 192, "prompt": 64}
    assert run["j_per_generated_token"] == pytest.approx(3125.0 / 192)
    assert run["j_per_prompt_token"] == pytest.approx(3125.0 / 64)


def test_html_report_is_self_contained():
    pytest.importorskip("matplotlib")
    html = render(canned_report(), "html")
    assert html.lower().startswith("<!doctype html>") and "<svg" in html and "canned" in html
    assert "http://" not in html.replace("http://www.w3.org", "")  # no external resources
    assert "NPU" in html


def test_compare_and_job_views_render_the_canned_runs():
    from footprint.reports.job import render_job

    from footprint.core.job import job_report

    store = Store(":memory:")
    first, _ = record(store)
    second, _ = record(store)
    report = load_report(store, [first, second])
    text = renderer_for("json").render(report)
    assert len(json.loads(text)["runs"]) == 2
    from footprint.reports import CompareRenderer

    table = CompareRenderer({first: 0.5, second: 0.000123}).render(report)
    check_golden("canned.compare.txt", table)
    job = render_job(job_report([r.to_dict() for r in report.runs], "job-1"))
    assert "NPU" in job
    check_golden("canned.job.txt", job)


def test_report_object_renders_like_a_run():
    rep = canned_report()
    assert render(rep, "json") == render(Report([rep], ""), "json")
