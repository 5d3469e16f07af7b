"""footprint's copy of CodeCarbon's (and pycountry's) tables: what it holds, that it matches the installed
packages, that lookups work without them, and that nothing reads it before a figure is needed."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from footprint.probes import estimate

from footprint.common import data
from footprint.core import carbon

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import build_data  # noqa: E402


def _clear() -> None:
    data.find_data_file.cache_clear()
    data.table.cache_clear()
    data.shipped.cache_clear()


@pytest.fixture
def without_codecarbon(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """As in a default install: neither codecarbon nor pycountry can be found."""
    real = data._package_dir
    monkeypatch.setattr(data, "_package_dir", lambda name: None if name in ("codecarbon", "pycountry") else real(name))
    _clear()
    yield
    monkeypatch.undo()
    _clear()


def test_shipped_tables_are_what_the_build_script_makes_from_the_installed_codecarbon():
    built = build_data.dumps(build_data.build())
    assert data.SHIPPED.read_text(encoding="utf-8") == built, \
        "footprint-data.json is stale: run python tools/build_data.py"


def test_shipped_file_names_its_sources_and_their_licences():
    content = json.loads(data.SHIPPED.read_text(encoding="utf-8"))
    from importlib import metadata

    cc, pc = content["sources"]["codecarbon"], content["sources"]["pycountry"]
    assert cc["version"] == metadata.version("codecarbon") and pc["version"] == metadata.version("pycountry")
    assert cc["license"] == "MIT" and "Permission is hereby granted" in cc["notice"] and "Code Carbon" in cc["notice"]
    assert pc["license"] == "LGPL-2.1-only" and "GNU LESSER GENERAL PUBLIC LICENSE" in pc["notice"]
    assert set(content["tables"]) == set(data.TABLES)
    assert data.SHIPPED.stat().st_size < 250_000  # CodeCarbon's data folder is 792 KB, its install ~240 MB


def test_installed_codecarbon_is_preferred():
    _clear()
    _, where = data.table("countries")
    assert where.endswith("global_energy_mix.json") and "codecarbon" in where


def test_lookups_work_without_codecarbon(without_codecarbon: None):
    for name in data.TABLES:
        assert data.table(name)[1] == str(data.SHIPPED)
    assert carbon.country_intensity("FRA").country == "FRA"
    assert carbon.region_intensity("gcp:europe-west1").country == "BEL"
    assert carbon.timezone_country("Europe/Paris") == "FRA"
    assert estimate._lookup_tdp("Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz")[0] == 150.0


def test_figures_from_the_copy_equal_those_from_codecarbon(monkeypatch: pytest.MonkeyPatch):
    def figures() -> tuple[object, ...]:
        _clear()
        return (carbon.country_intensity("FRA"), carbon.country_intensity("germany"),
                carbon.region_intensity("gcp:europe-west1"), carbon.timezone_country("Europe/Paris"),
                estimate._lookup_tdp("Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz"), carbon.world_average(),
                data.table("cpu_tdp")[0], data.table("iso3166")[0])

    installed = figures()
    real = data._package_dir
    monkeypatch.setattr(data, "_package_dir", lambda name: None if name in ("codecarbon", "pycountry") else real(name))
    copied = figures()
    monkeypatch.undo()
    _clear()
    assert data.table("countries")[1] != str(data.SHIPPED)
    assert copied == installed
    fra, _, region, iso3, tdp, world, _, _ = copied
    assert fra.country == "FRA" and 0 < fra.g_per_kwh < 200 and "CodeCarbon global_energy_mix.json" in fra.source
    assert region.country == "BEL" and iso3 == "FRA" and tdp[0] == 150.0 and world == 475.0


def test_import_reads_no_table():
    code = ("import sys\n"
            "opened = []\n"
            "sys.addaudithook(lambda ev, args: opened.append(str(args[0])) if ev == 'open' else None)\n"
            "import footprint, footprint.run, footprint.core.carbon, footprint.probes.estimate, footprint.cli\n"
            "print([p for p in opened if p.endswith(('.json', '.csv'))])\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert res.stdout.strip() == "[]"


def test_default_install_declares_no_codecarbon_and_ships_the_tables(tmp_path: Path):
    tomllib = pytest.importorskip("tomllib")
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = meta["project"]
    deps = " ".join(project["dependencies"]).lower()
    for heavy in ("codecarbon", "pandas", "numpy", "pycountry"):
        assert heavy not in deps
    extras = project["optional-dependencies"]
    assert any(d.startswith("codecarbon") for d in extras["codecarbon"])
    assert any(d.startswith("codecarbon") for d in extras["dev"])
    assert any(d.startswith("pandas") for d in extras["pandas"])
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(ROOT),
                    "-w", str(tmp_path)], check=True, capture_output=True)
    names = zipfile.ZipFile(next(tmp_path.glob("*.whl"))).namelist()
    assert "footprint/common/footprint-data.json" in names
    for mod in ("footprint/common/data.py", "footprint/core/carbon.py", "footprint/core/store.py",
                "footprint/probes/estimate.py", "footprint/reports/csv.py"):
        assert mod in names
