"""The DB answers questions on its own: SQL views with each run's and span's energy, kWh, CO2e, tokens and
J/token, equal to the read model's figures; a migration that adds them to older DBs; datasette metadata."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from footprint import cli
from footprint.core.model import COMPONENTS, load_run
from footprint.core.store import SCHEMA_VERSION, VIEWS, Store
from tests.canned import record


def _db(tmp_path: Path) -> tuple[Path, list[int]]:
    path = tmp_path / "fp.db"
    store = Store(path)
    ids = [record(store)[0] for _ in range(2)]
    # the second: another pue and intensity, and a run whose ended_at is unknown (crashed): ends at its last read
    store.conn.execute("UPDATE runs SET pue = NULL, carbon_g_per_kwh = 420.5, ended_at = NULL WHERE id = ?",
                       (ids[1],))
    store.close()
    return path, ids


def rows(path: Path, sql: str, *args: Any) -> list[dict[str, Any]]:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, args)]
    finally:
        conn.close()


def _other(energy: dict[str, float | None]) -> float | None:
    known = [v for k, v in energy.items() if k not in (*COMPONENTS, "total") and v is not None]
    return sum(known) if known else None


def check_figures(path: Path, ids: list[int]) -> None:
    store = Store(path, create=False, readonly=True)
    for rid in ids:
        rep = load_run(store, rid)
        (view,) = rows(path, "SELECT * FROM run_figures WHERE run_id = ?", rid)
        assert view["name"] == rep.name and view["duration_s"] == rep.duration_s
        for k in COMPONENTS:
            assert view[f"energy_j_{k}"] == rep.energy_j[k]
        assert view["energy_j_other"] == _other(rep.energy_j)
        assert view["energy_j_total"] == rep.energy_j["total"] and view["kwh"] == rep.kwh
        assert view["co2e_g"] == rep.co2e_g and view["pue"] == rep.pue
        assert view["tokens"] == rep.tokens and view["j_per_token"] == rep.j_per_token
        assert view["tokens_per_s"] == rep.economics.tokens_per_s
        assert view["started_at_iso"].startswith("2025-") and view["started_at_iso"].endswith("Z")
        by_kind = {r["kind"]: r["energy_j"] for r in rows(path, "SELECT * FROM run_energy WHERE run_id = ?", rid)}
        assert by_kind == {k: v for k, v in rep.energy_j.items() if k != "total" and v is not None}
        spans = {r["span_id"]: r for r in rows(path, "SELECT * FROM span_figures WHERE run_id = ?", rid)}
        assert set(spans) == {s.id for s in rep.spans}
        for s in rep.spans:
            v = spans[s.id]
            assert (v["name"], v["parent_id"], v["path"]) == (s.name, s.parent, v["path"])
            assert v["duration_s"] == s.duration_s
            for k in COMPONENTS:
                assert v[f"energy_j_{k}"] == s.energy_j[k], (s.name, k)
            assert v["energy_j_other"] == _other(s.energy_j)
            assert v["energy_j_total"] == s.energy_j["total"] and v["co2e_g"] == s.co2e_g
            assert v["tokens"] == s.tokens and v["j_per_token"] == s.j_per_token
            assert v["kwh"] == (s.energy_j["total"] / 3.6e6 if s.energy_j["total"] is not None else None)
    store.close()


def test_views_give_the_read_model_figures(tmp_path: Path):
    path, ids = _db(tmp_path)
    check_figures(path, ids)
    paths = {r["name"]: r["path"] for r in rows(path, "SELECT name, path FROM span_figures WHERE run_id = 1")}
    assert paths["decode"] == "generate/decode"


def test_old_db_stays_readable_and_gets_the_views_when_opened_for_writing(tmp_path: Path):
    path, ids = _db(tmp_path)
    conn = sqlite3.connect(path)
    for name in VIEWS:
        conn.execute(f"DROP VIEW {name}")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    store = Store(path, create=False, readonly=True)  # a report on a schema-1 DB: read as it is
    assert load_run(store, ids[0]).energy_j["total"] == pytest.approx(3125.0)
    store.close()
    assert not rows(path, "SELECT name FROM sqlite_master WHERE type = 'view'")
    Store(path).close()  # a writer migrates: views only
    assert rows(path, "PRAGMA user_version")[0]["user_version"] == SCHEMA_VERSION == 3
    assert {r["name"] for r in rows(path, "SELECT name FROM sqlite_master WHERE type = 'view'")} == set(VIEWS)
    check_figures(path, ids)


def test_datasette_metadata_describes_every_column_with_units(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    path, _ = _db(tmp_path)
    assert cli.main(["report", "--db", str(path), "--datasette-metadata"]) == 0
    meta = json.loads(capsys.readouterr().out)
    tables = meta["databases"]["fp"]["tables"]
    found = rows(path, "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite%'")
    for name in (r["name"] for r in found):
        cols = {r["name"] for r in rows(path, f"PRAGMA table_info({name})")}
        assert set(tables[name]["columns"]) == cols, name
        assert tables[name]["description"] and all(tables[name]["columns"].values()), name
    assert tables["run_figures"]["units"]["energy_j_total"] == "J"
    assert tables["run_figures"]["units"]["kwh"] == "kWh" and tables["run_figures"]["units"]["co2e_g"] == "g"
    out = tmp_path / "metadata.json"
    assert cli.main(["report", "--db", str(path), "--datasette-metadata", "-o", str(out)]) == 0
    assert json.loads(out.read_text()) == meta


def test_dataframes_have_datetimes_integers_and_booleans(tmp_path: Path):
    pd = pytest.importorskip("pandas")
    from footprint.reports import to_dataframe

    path, _ = _db(tmp_path)
    def utc(col: Any) -> bool:
        return isinstance(col.dtype, pd.DatetimeTZDtype) and str(col.dtype.tz) == "UTC"

    runs = to_dataframe(str(path), "runs")
    assert utc(runs["started_at"]) and utc(runs["ended_at"])
    assert runs["started_at"][0] == pd.Timestamp("2025-06-15T15:06:40", tz="UTC")
    assert str(runs["id"].dtype) == "Int64" and str(runs["tokens"].dtype) == "Int64"
    assert str(runs["exit_code"].dtype) == "Int64"
    spans = to_dataframe(str(path), "spans")
    assert str(spans["reliable"].dtype) == "boolean" and str(spans["parent_id"].dtype) == "Int64"
    assert utc(spans["started_at"]) and utc(spans["ended_at"])
    samples = to_dataframe(str(path), "samples")
    assert utc(samples["t"]) and str(samples["mark"].dtype) == "bool"
    assert str(samples["device_index"].dtype) == "int64"
