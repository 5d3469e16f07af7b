"""footprint's emissions-csv export in a file CodeCarbon also writes to, read back by CodeCarbon's own code:
its EmissionsData record, its FileOutput (which appends to the file), and carbonboard's data layer
(codecarbon.viz.data), as its dashboard calls them."""

from __future__ import annotations

import csv
import dataclasses
import sys
import types
import uuid
from pathlib import Path
from typing import Any

import pytest

pd = pytest.importorskip("pandas")
pytest.importorskip("codecarbon")
from codecarbon.output_methods.emissions_data import EmissionsData  # noqa: E402
from codecarbon.output_methods.file import FileOutput  # noqa: E402
from footprint.reports.csv import EMISSIONS_COLUMNS  # noqa: E402

from footprint import cli  # noqa: E402
from footprint.core.store import Store  # noqa: E402
from tests.canned import record  # noqa: E402

# A row as CodeCarbon 3.3.2's OfflineEmissionsTracker(country_iso_code="FRA") wrote it (values as text)
RECORDED = dict(zip(EMISSIONS_COLUMNS, next(csv.reader([
    "2026-12-01T10:17:58,codecarbon,a35fce2c-b763-40a4-a1c9-2e7cf913f96a,5b0fa12a-3dd7-45bb-9766-cc326314d9f1,"
    "1.5219743110001218,4.854818728034113e-07,3.1898164725552486e-07,0.8000106907441883,0.0,20.0,"
    "3.338575252358591e-07,0.0,8.329428272216117e-06,8.663285797451977e-06,0.0,France,FRA,,,,"
    "Linux-6.18.44-fc-v669-x86_64-with-glibc2.36,3.11.7,3.3.2,2,AMD EPYC,0,,,,23.540576934814453,machine,0.0,0,"
    "2.8,0.6608543395996094,N,1.0,0.0"])), strict=True))
FLOATS = [f.name for f in dataclasses.fields(EmissionsData) if f.type in (float, "float")]


def typed(row: dict[str, str]) -> dict[str, Any]:
    """A CSV row as EmissionsData's fields: float() for its float fields (an empty cell stays None)."""
    return {k: (float(v) if v != "" else None) if k in FLOATS else v for k, v in row.items()}


def codecarbon_appends(path: Path, row: dict[str, str]) -> None:
    """CodeCarbon's own file output writes (or appends) this row."""
    FileOutput(path.name, str(path.parent)).out(EmissionsData(**typed(row)), None)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """Three footprint runs: with a country, with none (world average), on a cloud region."""
    path = tmp_path / "fp.db"
    store = Store(path)
    ids = [record(store)[0] for _ in range(3)]
    store.conn.execute("UPDATE runs SET country = NULL, carbon_source = 'world average' WHERE id = ?", (ids[1],))
    store.conn.execute("UPDATE runs SET region = 'gcp:europe-west1', country = 'BEL' WHERE id = ?", (ids[2],))
    store.close()
    return path


@pytest.fixture
def mixed(tmp_path: Path, db: Path) -> Path:
    """CodeCarbon writes a row, footprint appends its three runs, CodeCarbon appends another row."""
    out = tmp_path / "emissions.csv"
    codecarbon_appends(out, RECORDED)
    assert cli.main(["report", "1", "2", "3", "--db", str(db), "--format", "emissions-csv", "-o", str(out)]) == 0
    later = dict(RECORDED, run_id=str(uuid.uuid4()), timestamp="2026-12-01T11:00:00")
    codecarbon_appends(out, later)
    return out


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_footprint_appends_to_codecarbon_file_and_codecarbon_appends_after(mixed: Path, db: Path):
    found = rows(mixed)
    assert [r["project_name"] for r in found] == ["codecarbon", "canned", "canned", "canned", "codecarbon"]
    assert len(list(mixed.parent.glob("emissions.csv*"))) == 1  # CodeCarbon found its header: no backup made
    # exporting again adds nothing: the runs' UUIDs are already in the file
    assert cli.main(["report", "1", "2", "3", "--db", str(db), "--format", "emissions-csv", "-o", str(mixed)]) == 0
    assert len(rows(mixed)) == 5


def test_every_row_loads_in_emissions_data_with_the_cells_codecarbon_fills(mixed: Path):
    empty_in_codecarbon = {k for k, v in RECORDED.items() if v == ""}
    for row in rows(mixed):
        data = EmissionsData(**typed(row))
        assert {k for k, v in row.items() if v == ""} <= empty_in_codecarbon, row["project_name"]
        uuid.UUID(data.run_id)
        uuid.UUID(data.experiment_id)
        assert data.country_iso_code and data.country_name and data.codecarbon_version


def test_footprint_row_values(mixed: Path, db: Path):
    ours = [r for r in rows(mixed) if r["project_name"] == "canned"]
    fra, world, cloud = ours
    assert (fra["country_iso_code"], fra["country_name"], fra["on_cloud"]) == ("FRA", "France", "N")
    assert (world["country_iso_code"], world["country_name"]) == ("WLD", "World")
    assert (cloud["cloud_provider"], cloud["cloud_region"], cloud["on_cloud"]) == ("gcp", "europe-west1", "Y")
    assert cloud["country_name"] == "Belgium"
    assert len({r["run_id"] for r in ours}) == 3
    assert fra["codecarbon_version"].startswith("footprint-profiler ")
    # one UUID per run, the same at every export
    again = mixed.parent / "again.csv"
    assert cli.main(["report", "1", "--db", str(db), "--format", "emissions-csv", "-o", str(again)]) == 0
    assert rows(again)[0]["run_id"] == fra["run_id"]
    assert float(fra["energy_consumed"]) == pytest.approx(3125.0 / 3.6e6)


@pytest.fixture
def viz_data(monkeypatch: pytest.MonkeyPatch) -> Any:
    """codecarbon.viz.data (carbonboard's data layer). It imports dash only for a DataTable holding `data` and
    `columns`; the dashboard's web stack is not installed here, so that one class stands in for it."""
    dash = types.ModuleType("dash")
    table = types.ModuleType("dash.dash_table")

    class DataTable:
        def __init__(self, data: list[dict[str, Any]], columns: list[dict[str, str]]) -> None:
            self.data, self.columns = data, columns

    table.DataTable = DataTable  # type: ignore[attr-defined]
    dash.dash_table = table  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "dash", dash)
    monkeypatch.setitem(sys.modules, "dash.dash_table", table)
    monkeypatch.delitem(sys.modules, "codecarbon.viz.data", raising=False)
    from codecarbon.viz import data

    return data


def test_carbonboard_loads_the_mixed_file(mixed: Path, viz_data: Any):
    df = pd.read_csv(mixed)  # carbonboard's viz(): pd.read_csv(filepath)
    stamps = pd.to_datetime(df["timestamp"])
    assert stamps.is_monotonic_increasing or len(stamps) == 5
    data = viz_data.Data()
    for project in df.project_name.unique():
        table = data.get_project_data(df, project)
        summary = data.get_project_summary(table.data)
        # what its callbacks do with the summary (the regional one failed on an empty country code)
        assert isinstance(summary["country_iso_code"], str) and isinstance(summary["country_name"], str)
        data.get_regional_emissions_choropleth_data(summary["total"]["energy_consumed"], summary["country_iso_code"])
        data.get_global_emissions_choropleth_data(summary["total"]["energy_consumed"])
        name, bars = data.get_cloud_emissions_barchart_data(
            summary["total"]["energy_consumed"], summary["on_cloud"], summary["cloud_provider"],
            summary["cloud_region"])
        assert float(sum(df["energy_consumed"])) > 0 and float(sum(df["emissions"])) > 0
    canned = df[df.project_name == "canned"].to_dict("records")
    for row in canned:  # each of footprint's runs as the last run of its project
        summary = data.get_project_summary([row])
        data.get_regional_emissions_choropleth_data(1.0, summary["country_iso_code"])
        data.get_cloud_emissions_barchart_data(1.0, summary["on_cloud"], summary["cloud_provider"],
                                               summary["cloud_region"])
