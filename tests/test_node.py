"""The node figure: a whole-machine meter (wall meter, BMC, battery, phone) beside the components, never added to
them; unattributed = node - sum(components); kWh, CO2e, cost and per-token figures use the node when there is one.

The canned node run (tests/canned.py) is recorded on a fake clock: every energy is watts x fake seconds, exact."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from footprint.reports import render, renderer_names

from footprint.common import units
from footprint.core.model import components
from footprint.core.store import Store
from tests.canned import NODE_WATTS, node_report, record_node
from tests.test_renderers import check_golden, utc  # noqa: F401 (utc: the goldens' time zone)

COMPONENT_W = NODE_WATTS["gpu:0"] + NODE_WATTS["cpu:0"] + NODE_WATTS["ram:0"]  # 371 W


def test_node_is_beside_the_components_not_added_to_them():
    rep = node_report()
    assert "node" not in rep.energy_j and "node" not in components(rep.energy_j)
    assert rep.energy_j["total"] == pytest.approx(COMPONENT_W * 5.0, rel=1e-9)
    assert rep.node_energy_j == pytest.approx(500.0 * 5.0, rel=1e-9)
    assert rep.unattributed_j == pytest.approx((500.0 - COMPONENT_W) * 5.0, rel=1e-9)
    assert rep.energy_basis == "node"
    assert rep.sources["node"] == "fake"
    assert [d.kind for d in rep.devices].count("node") == 1  # the device itself is listed, with its source


def test_kwh_co2e_cost_and_per_token_use_the_node_figure():
    rep = node_report()
    node_j = 2500.0
    assert rep.kwh == pytest.approx(units.j_to_kwh(node_j), rel=1e-9)
    assert rep.co2e_g == pytest.approx(units.co2e_g(node_j, 50.0, 1.2), rel=1e-9)
    assert rep.cost is not None and rep.cost.energy == pytest.approx(units.energy_cost(node_j, 0.25, 1.2), rel=1e-9)
    assert rep.j_per_token == pytest.approx(node_j / 192, rel=1e-9)
    assert rep.j_per_generated_token == pytest.approx(node_j / 192, rel=1e-9)
    assert rep.economics.wh_per_1k_tokens == pytest.approx(units.j_to_wh(node_j) / 192 * 1000, rel=1e-9)
    assert any("node meter" in w and "kWh" in w for w in rep.warnings) is False  # said by energy_basis, no warning


def test_spans_get_their_node_figure_too():
    (decode,) = node_report().spans
    assert decode.energy_j["total"] == pytest.approx(COMPONENT_W * 3.0, rel=1e-6)
    assert decode.node_energy_j == pytest.approx(500.0 * 3.0, rel=1e-6)
    assert decode.unattributed_j == pytest.approx((500.0 - COMPONENT_W) * 3.0, rel=1e-6)
    assert decode.energy_basis == "node"
    assert decode.j_per_token == pytest.approx(1500.0 / 192, rel=1e-6)
    assert decode.co2e_g == pytest.approx(units.co2e_g(1500.0, 50.0, 1.2), rel=1e-6)


def test_a_node_below_its_components_is_said_not_clipped():
    rep = node_report(node_w=300.0)
    assert rep.unattributed_j == pytest.approx((300.0 - COMPONENT_W) * 5.0, rel=1e-9)  # negative, kept
    assert any("less than the sum of its components" in w for w in rep.warnings), rep.warnings


def test_without_a_node_meter_the_components_are_the_basis():
    from tests.canned import canned_report

    rep = canned_report()
    assert rep.energy_basis == "components" and rep.node_energy_j is None and rep.unattributed_j is None
    assert all(s.energy_basis == "components" for s in rep.spans)


def _rows(path: Path, sql: str) -> list[dict[str, Any]]:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql)]
    finally:
        conn.close()


def test_sql_views_keep_node_out_of_the_component_total(tmp_path: Path):
    path = tmp_path / "fp.db"
    store = Store(path)
    rid = record_node(store)
    rep = node_report(store)  # a second run in the same file: the views are per run
    store.close()
    (view,) = _rows(path, f"SELECT * FROM run_figures WHERE run_id = {rid}")
    assert view["energy_j_other"] is None  # node is not an "other" component
    assert view["energy_j_total"] == pytest.approx(COMPONENT_W * 5.0, rel=1e-9)
    assert view["energy_j_node"] == pytest.approx(2500.0, rel=1e-9)
    assert view["unattributed_j"] == pytest.approx((500.0 - COMPONENT_W) * 5.0, rel=1e-9)
    assert view["energy_basis"] == "node"
    assert view["kwh"] == pytest.approx(rep.kwh, rel=1e-12) and view["co2e_g"] == pytest.approx(rep.co2e_g, rel=1e-12)
    assert view["j_per_token"] == pytest.approx(rep.j_per_token, rel=1e-12)
    (span,) = _rows(path, f"SELECT * FROM span_figures WHERE run_id = {rid}")
    assert span["energy_j_node"] == pytest.approx(1500.0, rel=1e-6) and span["energy_basis"] == "node"
    assert span["j_per_token"] == pytest.approx(1500.0 / 192, rel=1e-6)


@pytest.mark.parametrize("name", [n for n in renderer_names() if n not in ("html", "emissions-csv")])
def test_renderers_show_node_and_unattributed(name: str):
    text = render(node_report(), name)
    check_golden(f"node.{name}.txt", text)
    assert re.search(r"node", text, re.I) and re.search(r"unattributed", text, re.I), name


def test_json_and_html_carry_the_node_figures():
    data = json.loads(render(node_report(), "json"))["runs"][0]
    assert data["node_energy_j"] == pytest.approx(2500.0) and data["energy_basis"] == "node"
    assert data["unattributed_j"] == pytest.approx((500.0 - COMPONENT_W) * 5.0)
    assert set(data["energy_j"]) == {"cpu", "ram", "gpu", "total"}
    pytest.importorskip("matplotlib")
    html = render(node_report(), "html")
    assert "unattributed" in html and "node" in html.lower()


def test_emissions_csv_counts_the_node_energy():
    text = render(node_report(), "emissions-csv")
    row = dict(zip(*[line.split(",") for line in text.splitlines()], strict=True))
    assert float(row["energy_consumed"]) == pytest.approx(2500.0 / 3.6e6)
