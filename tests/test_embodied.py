"""Embodied carbon: the shipped figures through the formula, device matching and class fallbacks, the settings
(flag > FOOTPRINT_* > footprint.toml > default), and the figures every renderer shows, end to end through the
real `footprint run` with the NVML stand-in and a fake powercap tree."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from footprint.probes import FakeProbe
from footprint.reports import CompareRenderer, renderer_for
from footprint.reports.compare import compare_rows

from footprint.common import embodied
from footprint.common.fakeclock import FakeClock
from footprint.core.model import load_run
from footprint.core.settings import Settings
from footprint.core.store import Store
from footprint.run import finish_run, start_run
from tests.conftest import nvml_env, report_json, run_cli
from tests.fakes.powercap import PowercapTree

# A year is Boavizta's 8,760 h; defaults 4 years at 0.85 use: the grams of 1 kg CO2e held for one second
SECOND_OF_ONE_KG = 1000.0 / (4 * 8760 * 3600 * 0.85)


def test_the_formula_with_the_shipped_figures():
    # 575 kg over 4 years at 85 %: one hour of an H100 SXM is 575 000 g × 3600 s / (4 × 8760 × 3600 s × 0.85)
    assert embodied.embodied_g(575.0, 3600.0, 4.0, 0.85) == pytest.approx(575_000 * 3600 / (4 * 8760 * 3600 * 0.85),
                                                                          rel=1e-15)
    assert embodied.embodied_g(575.0, 3600.0, 4.0, 0.85) == pytest.approx(19.3057, rel=1e-5)  # 575 kg / 29,784 h
    # half the life or half the use doubles it; twice the time doubles it
    base = embodied.embodied_g(275.0, 10.0, 4.0, 0.85)
    assert embodied.embodied_g(275.0, 10.0, 2.0, 0.85) == pytest.approx(2 * base, rel=1e-15)
    assert embodied.embodied_g(275.0, 10.0, 4.0, 0.425) == pytest.approx(2 * base, rel=1e-15)
    assert embodied.embodied_g(275.0, 20.0, 4.0, 0.85) == pytest.approx(2 * base, rel=1e-15)


@pytest.mark.parametrize("name, kg, match, model", [
    ("NVIDIA H100 80GB HBM3", 575.0, "model", "NVIDIA H100 SXM 80 GB"),
    ("NVIDIA H100 SXM5 80GB", 575.0, "model", "NVIDIA H100 SXM 80 GB"),
    ("NVIDIA A100-SXM4-40GB", 275.0, "model", "NVIDIA A100 40 GB"),
    ("NVIDIA A100-PCIE-40GB", 275.0, "model", "NVIDIA A100 40 GB"),
    ("NVIDIA A100-SXM4-80GB", 150.0, "model", "NVIDIA A100 (80 GB)"),
    ("NVIDIA H100 PCIe", 150.0, "class", "generic data-centre GPU"),  # not the SXM card Boavizta's figure is for
    ("NVIDIA GeForce RTX 4090", 150.0, "class", "generic data-centre GPU"),
    (None, 150.0, "class", "generic data-centre GPU"),
])
def test_gpus_match_their_model_else_the_labelled_class_figure(name: str | None, kg: float, match: str, model: str):
    f = embodied.figure_for("gpu", name)
    assert f is not None and (f.kgco2e, "class" if f.is_class else "model", f.model) == (kg, match, model)
    assert f.source and f.date  # every figure says where it came from, and when


def test_every_shipped_figure_has_a_source_a_date_and_a_consistent_range():
    rows = embodied.table()
    assert {f.kind for f in rows if f.is_class} == {"gpu", "cpu", "ram", "server"}
    for f in rows:
        assert f.kgco2e > 0 and f.source and f.date and f.unit in ("device", "GB", "server")
        if f.low is not None and f.high is not None:
            assert f.low <= f.kgco2e <= f.high


def test_a_host_counts_its_packages_ram_and_rest_once_and_other_kinds_are_named_not_zero():
    items, warnings = embodied.embodied_items(
        [("gpu", 0, "NVIDIA H100 80GB HBM3"), ("gpu", 1, "Some Future GPU"), ("cpu", 0, "RAPL package-0"),
         ("cpu", 1, "RAPL package-1"), ("ram", 0, "RAPL dram"), ("ram", 1, "RAPL dram"), ("npu", 0, "an NPU")],
        duration_s=100.0, lifetime_years=4.0, utilisation=0.85, ram_gb=256.0, cpu_packages=2)
    got = {i.device: (i.units, i.kgco2e, i.match, i.co2e_g) for i in items}
    s = 100.0 * SECOND_OF_ONE_KG
    assert got == {
        "gpu:0": (1.0, 575.0, "model", pytest.approx(575.0 * s, rel=1e-12)),
        "gpu:1": (1.0, 150.0, "class", pytest.approx(150.0 * s, rel=1e-12)),
        "cpu": (2.0, 20.72, "class", pytest.approx(2 * 20.72 * s, rel=1e-12)),
        "ram": (256.0, 3.683, "class", pytest.approx(256 * 3.683 * s, rel=1e-12)),
        "server": (1.0, 368.1, "class", pytest.approx(368.1 * s, rel=1e-12)),
    }
    assert warnings == ["embodied: no figure for npu:0 (an NPU); not counted"]
    grams, low, high = embodied.total_g(items)
    assert grams == pytest.approx((575 + 150 + 2 * 20.72 + 256 * 3.683 + 368.1) * s, rel=1e-12)
    # the H100 has no range: its central figure counts in both bounds
    assert low == pytest.approx((575 + 60 + 2 * 9.62 + 256 * 3.561 + 271.4) * s, rel=1e-12)
    assert high == pytest.approx((575 + 575 + 2 * 40.03 + 256 * 8.74 + 465.8) * s, rel=1e-12)
    # a run that did not measure its host (another rank's does) counts its GPUs only
    gpu_only, _ = embodied.embodied_items([("gpu", 0, "NVIDIA A100-SXM4-40GB")], duration_s=100.0,
                                          lifetime_years=4.0, utilisation=0.85)
    assert [i.device for i in gpu_only] == ["gpu:0"]


def _fake_run(tmp_path: Path, **settings: object) -> tuple[Store, int]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    clock = FakeClock()
    run = start_run("fake", db=str(tmp_path / "e.db"), clock=clock, **settings,  # type: ignore[arg-type]
                    probes=[FakeProbe({"gpu:0": 300.0, "cpu:0": 50.0}, clock=clock)])
    clock.advance(36.0)
    with run.span("work", tokens=1000):
        clock.advance(36.0)
    finish_run(run)
    return run.store, run.id


def test_the_run_figures_equal_the_formula_and_per_token_figures_add_up(tmp_path: Path):
    store, rid = _fake_run(tmp_path, carbon_intensity=100.0)
    r = load_run(store, rid)
    meta = r.meta
    gb = meta["ram_total_gb"] or embodied.DEFAULT_RAM_GB
    packages = meta["cpu_packages"] or 1
    expected = (150.0 + packages * 20.72 + gb * 3.683 + 368.1) * 72.0 * SECOND_OF_ONE_KG
    assert r.duration_s == 72.0
    assert r.embodied_co2e_g == pytest.approx(expected, rel=1e-12)
    assert r.co2e_g == pytest.approx(350.0 * 72.0 / 3.6e6 * 100.0, rel=1e-12)  # unchanged: operational
    assert r.total_co2e_g == pytest.approx(r.co2e_g + expected, rel=1e-12)
    e = r.economics
    assert e.embodied_co2e_g_per_1k_tokens == pytest.approx(expected, rel=1e-12)  # 1000 tokens
    assert e.total_co2e_g_per_1k_tokens == pytest.approx(e.co2e_g_per_1k_tokens + expected, rel=1e-12)
    assert r.embodied.settings_source == "defaults"
    # report-time settings override what the run recorded: twice the life halves it; off removes it
    longer = load_run(store, rid, Settings(embodied_lifetime_years=8.0))
    assert longer.embodied_co2e_g == pytest.approx(expected / 2, rel=1e-12)
    assert "lifetime years given at report time" in longer.embodied.settings_source
    off = load_run(store, rid, Settings(embodied=False))
    assert (off.embodied.on, off.embodied_co2e_g, off.total_co2e_g) == (False, None, off.co2e_g)
    assert off.economics.embodied_co2e_g_per_1k_tokens is None


def test_embodied_off_at_the_start_is_recorded(tmp_path: Path):
    store, rid = _fake_run(tmp_path, embodied=False)
    r = load_run(store, rid)
    assert r.meta["embodied"]["on"] is False and r.meta["embodied"]["origins"] == {"on": "given"}
    assert r.embodied_co2e_g is None and r.total_co2e_g == r.co2e_g


def test_env_and_config_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    cfg = tmp_path / "footprint.toml"
    cfg.write_text("embodied_lifetime_years = 6\nembodied_utilisation = 0.5\n")
    monkeypatch.setenv("FOOTPRINT_CONFIG", str(cfg))
    monkeypatch.setenv("FOOTPRINT_EMBODIED_UTILISATION", "0.25")
    store, rid = _fake_run(tmp_path, embodied_lifetime_years=3.0)  # the flag beats the file
    recorded = load_run(store, rid).meta["embodied"]
    assert (recorded["on"], recorded["lifetime_years"], recorded["utilisation"]) == (True, 3.0, 0.25)
    assert recorded["origins"] == {"lifetime_years": "given", "utilisation": "from FOOTPRINT_EMBODIED_UTILISATION"}
    monkeypatch.delenv("FOOTPRINT_EMBODIED_UTILISATION")
    store2, rid2 = _fake_run(tmp_path / "b")
    recorded = load_run(store2, rid2).meta["embodied"]
    assert (recorded["lifetime_years"], recorded["utilisation"]) == (6.0, 0.5)
    assert recorded["origins"] == {"lifetime_years": f"from {cfg}", "utilisation": f"from {cfg}"}
    monkeypatch.setenv("FOOTPRINT_EMBODIED", "off")
    store3, rid3 = _fake_run(tmp_path / "c")
    assert load_run(store3, rid3).embodied.on is False


@pytest.mark.parametrize("args, env, needle", [
    (["--embodied-utilisation", "1.5"], {}, "expected a number > 0 and <= 1"),
    (["--embodied-lifetime-years", "0"], {}, "expected a number > 0"),
    (["--embodied", "maybe"], {}, "expected on or off"),
    ([], {"FOOTPRINT_EMBODIED": "maybe"}, "FOOTPRINT_EMBODIED must be on or off"),
    ([], {"FOOTPRINT_EMBODIED_UTILISATION": "-1"}, "FOOTPRINT_EMBODIED_UTILISATION must be a number > 0"),
])
def test_bad_embodied_settings_are_one_line_errors(clean_env: dict[str, str], args: list[str], env: dict[str, str],
                                                   needle: str):
    res = run_cli(["run", *args, "--", "true"], dict(clean_env, **env))
    err = res.stderr.decode()
    assert res.returncode == 2 and err.count("\n") == 1 and needle in err and "Traceback" not in err, err


def test_cli_end_to_end_with_real_device_names(nvml_lib_dir: Path, powercap: PowercapTree, clean_env: dict[str, str]):
    """Two stand-in GPUs, one a known model and one not, and RAPL packages and DRAM: the JSON's embodied figure is
    the formula on the shipped figures for exactly these devices and the run's own duration."""
    env = nvml_env(dict(clean_env, FOOTPRINT_POWERCAP=str(powercap.root)), nvml_lib_dir, gpus=2,
                   name="NVIDIA A100-SXM4-40GB,NVIDIA L4")
    res = run_cli(["run", "--no-summary", "--carbon-intensity", "200", "--", "python", "-c",
                   "import time; time.sleep(0.5)"], env)
    assert res.returncode == 0, res.stderr.decode()
    run = report_json(env)["runs"][0]
    s = run["duration_s"] * SECOND_OF_ONE_KG
    gb, packages = run["meta"]["ram_total_gb"], run["meta"]["cpu_packages"] or 1
    items = {i["device"]: i for i in run["embodied"]["items"]}
    assert {k: (i["kgco2e"], i["match"]) for k, i in items.items()} == {
        "gpu:0": (275.0, "model"), "gpu:1": (150.0, "class"), "cpu": (20.72, "class"), "ram": (3.683, "class"),
        "server": (368.1, "class")}
    assert items["gpu:0"]["name"] == "NVIDIA A100-SXM4-40GB" and "Boavizta" in items["gpu:0"]["source"]
    assert items["gpu:1"]["model"] == "generic data-centre GPU" and "BLOOM" in items["gpu:1"]["source"]
    expected = (275.0 + 150.0 + packages * 20.72 + gb * 3.683 + 368.1) * s
    assert run["embodied_co2e_g"] == pytest.approx(expected, rel=1e-12)
    assert run["total_co2e_g"] == pytest.approx(run["co2e_g"] + expected, rel=1e-12)
    # the console, CSV and HTML show the three figures
    for fmt, needles in (("console", ["embodied CO2e", "total CO2e", "class: generic data-centre GPU"]),
                         ("csv", ["embodied_co2e_g", "total_co2e_g"]),
                         ("html", ["CO2e embodied", "CO2e total", "NVIDIA A100 40 GB"])):
        out = run_cli(["report", "--format", fmt], env)
        assert out.returncode == 0 and all(n in out.stdout.decode() for n in needles), (fmt, out.stderr)
    csv_lines = run_cli(["report", "--format", "csv"], env).stdout.decode().splitlines()
    row = dict(zip(csv_lines[0].split(","), csv_lines[1].split(","), strict=False))
    assert float(row["embodied_co2e_g"]) == pytest.approx(expected, rel=1e-12)
    off = run_cli(["report", "--json", "--embodied", "off"], env)
    data = json.loads(off.stdout)["runs"][0]
    assert data["embodied_co2e_g"] is None and data["total_co2e_g"] == data["co2e_g"]


def test_compare_uses_the_total_where_embodied_is_on(tmp_path: Path):
    store, rid = _fake_run(tmp_path, carbon_intensity=100.0)
    on, off = load_run(store, rid), load_run(store, rid, Settings(embodied=False))
    rows = compare_rows([on, off])
    assert (rows[0].co2e, rows[1].co2e) == ("total", "operational")
    assert rows[0].co2e_g_per_1k_tokens == pytest.approx(on.total_co2e_g, rel=1e-12)  # 1000 tokens
    assert rows[1].co2e_g_per_1k_tokens == pytest.approx(off.co2e_g, rel=1e-12)
    from footprint.core.model import Report

    text = CompareRenderer().render(Report([on, off], "x"))
    assert "operational + embodied for runs that count embodied carbon" in text
    assert "(op+emb)" in CompareRenderer().render(Report([on, on], "x"))
    assert renderer_for("json").render(Report([off], "x"))
