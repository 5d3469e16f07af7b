"""Carbon, cost, per-token economics, compare, exports and plots."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from footprint.probes import FakeProbe
from footprint.reports.console import sparkline

from footprint.common.errors import FootprintError
from footprint.common.fakeclock import FakeClock
from footprint.core import carbon
from footprint.core.store import Store
from footprint.run import finish_run, start_run
from tests.conftest import report_json, run_cli

PY = sys.executable


def fake_run(db: Path, name: str, watts: float, tokens: int, seconds: float = 0.3, **kw: object) -> int:
    """A run with one fake GPU at constant power, `tokens` in a decode span after a prefill span, on a fake
    clock: it lasts exactly `seconds`."""
    clock = FakeClock()
    run = start_run(name, db=str(db), probes=[FakeProbe(powers_w={"gpu:0": watts}, clock=clock)], interval=0.05,
                    clock=clock, **kw)  # type: ignore[arg-type]
    with run.span("prefill", tokens=tokens // 4):
        clock.advance(seconds / 3)
    with run.span("decode", tokens=tokens - tokens // 4):
        clock.advance(2 * seconds / 3)
    finish_run(run)
    return run.id


# -- carbon intensity -----------------------------------------------------------------------------

def test_country_region_and_world_average_resolution(monkeypatch: pytest.MonkeyPatch):
    for var in ("FOOTPRINT_CARBON_INTENSITY", "FOOTPRINT_COUNTRY", "FOOTPRINT_CLOUD_REGION"):
        monkeypatch.delenv(var, raising=False)
    fra = carbon.resolve("fra")
    assert fra.country == "FRA" and 0 < fra.g_per_kwh < 200 and "global_energy_mix.json" in fra.source
    gcp = carbon.resolve(region="gcp:europe-west1")
    assert gcp.g_per_kwh == 122.0 and gcp.country == "BEL" and "cloud.google.com" in gcp.source
    assert carbon.resolve("FRA", 12.5).g_per_kwh == 12.5  # an explicit figure wins
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.setattr(carbon, "local_timezone", lambda: "Etc/UTC")
    world = carbon.resolve()
    assert world.g_per_kwh == 475.0 and "world average" in world.source and "Etc/UTC" in world.source


def test_timezone_gives_the_country(monkeypatch: pytest.MonkeyPatch):
    for var in ("FOOTPRINT_CARBON_INTENSITY", "FOOTPRINT_COUNTRY", "FOOTPRINT_CLOUD_REGION"):
        monkeypatch.delenv(var, raising=False)
    if carbon._zone_tab() is None:
        pytest.skip("no zone.tab on this system and no tzdata package")
    assert carbon.timezone_country("Europe/Paris") == "FRA"
    assert carbon.timezone_country("America/Sao_Paulo") == "BRA"
    assert carbon.timezone_country("Etc/UTC") is None
    monkeypatch.setattr(carbon, "local_timezone", lambda: "Europe/Berlin")
    found = carbon.resolve()
    assert found.country == "DEU" and "guessed from time zone Europe/Berlin" in found.source


def test_env_order(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FOOTPRINT_COUNTRY", "SWE")
    monkeypatch.setenv("FOOTPRINT_CLOUD_REGION", "gcp:us-east1")
    assert carbon.resolve().source.endswith("(from FOOTPRINT_CLOUD_REGION)")
    monkeypatch.setenv("FOOTPRINT_CARBON_INTENSITY", "33")
    assert carbon.resolve().g_per_kwh == 33.0
    assert carbon.resolve("FRA").country == "FRA"  # a flag beats every variable


def test_unknown_region_suggests():
    with pytest.raises(FootprintError, match="did you mean gcp:europe-west1"):
        carbon.region_intensity("gcp:europe-wst1")


def test_a_provider_without_data_says_which_have_it():
    with pytest.raises(FootprintError, match=r"no data for aws regions: CodeCarbon's impact.csv has gcp only"):
        carbon.region_intensity("aws:us-east-1")


def test_country_takes_iso2_and_suggests_each_country_once():
    assert carbon.country_intensity("FR").country == "FRA"
    assert carbon.country_intensity("fr").g_per_kwh == carbon.country_intensity("FRA").g_per_kwh
    with pytest.raises(FootprintError) as err:
        carbon.country_intensity("FRNA")
    hint = str(err.value).split("did you mean ", 1)[1].rstrip("?")
    names = hint.split(", ")
    assert "FRA" in names and len(names) == len(set(names))


def test_pue_says_where_it_came_from(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from footprint.probes import FakeProbe
    from footprint.reports import render

    import footprint
    from footprint.common.fakeclock import FakeClock
    from footprint.core.model import Settings, load_run

    monkeypatch.chdir(tmp_path)
    (tmp_path / "footprint.toml").write_text("pue = 1.3\n")
    for kw, env, said in (({}, None, "PUE 1.3 (from footprint.toml)"), ({}, "1.4", "PUE 1.4 (from FOOTPRINT_PUE)"),
                          ({"pue": 1.5}, "1.4", "PUE 1.5 (given)")):
        if env:
            monkeypatch.setenv("FOOTPRINT_PUE", env)
        clock = FakeClock()
        with footprint.track("p", probes=[FakeProbe(clock=clock)], clock=clock, db=str(tmp_path / "p.db"),
                             summary=False, **kw) as run:
            clock.advance(1.0)
        assert said in render(run.report(), "console")
    store = run.store
    assert "PUE 1.1 (given at report time)" in render(load_run(store, run.id, Settings(pue=1.1)), "console")


# -- cost, PUE, per-token economics ------------------------------------------------------------

def test_cost_pue_and_per_token_hand_computed(tmp_path: Path):
    db = tmp_path / "e.db"
    rid = fake_run(db, "econ", 360.0, 1000, carbon_intensity=500.0, pue=1.5, price_kwh=0.2, price_hour=3.6,
                   currency="eur")
    from footprint.core.model import load_run

    r = load_run(Store(db), rid)
    e, d = r.energy_j["total"], r.duration_s
    assert d == pytest.approx(0.3, rel=1e-6) and e == pytest.approx(360.0 * 0.3, rel=1e-6)
    # by hand: kWh x PUE x g/kWh; kWh x PUE x price + hours x hourly price
    assert r.co2e_g == pytest.approx(e / 3.6e6 * 1.5 * 500.0)
    assert r.cost is not None and r.cost.currency == "EUR"
    assert r.cost.energy == pytest.approx(e / 3.6e6 * 1.5 * 0.2)
    assert r.cost.instance == pytest.approx(d / 3600 * 3.6)
    assert r.cost.total == pytest.approx(r.cost.energy + r.cost.instance)
    ec = r.economics
    assert ec.j_per_token == pytest.approx(e / 1000)
    assert ec.wh_per_1k_tokens == pytest.approx(e / 3600)
    assert ec.co2e_g_per_1k_tokens == pytest.approx(r.co2e_g)
    assert ec.cost_per_1m_tokens == pytest.approx(r.cost.total * 1000)
    assert ec.tokens_per_s == pytest.approx(1000 / d)
    spans = {s.name: s for s in r.spans}
    assert spans["prefill"].tokens == 250 and spans["decode"].tokens == 750
    assert spans["decode"].economics.j_per_token == pytest.approx(spans["decode"].energy_j["total"] / 750)
    assert spans["decode"].cost is not None
    assert spans["decode"].co2e_g == pytest.approx(spans["decode"].energy_j["total"] / 3.6e6 * 1.5 * 500)


def test_report_time_overrides(tmp_path: Path, clean_env: dict[str, str]):
    db = tmp_path / "o.db"
    fake_run(db, "o", 100.0, 100, carbon_intensity=400.0)
    env = dict(clean_env, FOOTPRINT_DB=str(db))
    base = report_json(env)["runs"][0]
    assert base["cost"] is None and base["economics"]["cost_per_1m_tokens"] is None  # no price: no cost, not 0
    res = run_cli(["report", "--json", "--carbon-intensity", "100", "--pue", "2", "--price-kwh", "1"], env)
    run = json.loads(res.stdout)["runs"][0]
    assert run["co2e_g"] == pytest.approx(base["co2e_g"] / 4 * 2)
    assert run["cost"]["energy"] == pytest.approx(base["kwh"] * 2 * 1.0)
    assert "given at report time" in run["carbon_source"]


def test_idle_baseline_gives_dynamic_energy(tmp_path: Path, clean_env: dict[str, str]):
    res = run_cli(["run", "--baseline", "0.5", "--", PY, "-c", "import time; time.sleep(0.5)"], clean_env)
    assert res.returncode == 0, res.stderr.decode()
    assert "above an idle baseline of" in res.stderr.decode()
    run = report_json(clean_env)["runs"][0]
    ram_w = run["baseline_w"]["ram"]  # the RAM estimate is constant, so idle == busy for it
    assert ram_w == pytest.approx(next(d for d in run["devices"] if d["kind"] == "ram")["mean_power_w"], rel=1e-3)
    assert run["dynamic_energy_j"]["ram"] == pytest.approx(0.0, abs=1e-6 * run["energy_j"]["ram"] + 1e-6)
    assert run["dynamic_energy_j"]["total"] < run["energy_j"]["total"]


def test_bad_prices_and_pue_are_one_line_errors(clean_env: dict[str, str]):
    for args, msg in ((["--price-kwh", "-1"], "expected a number >= 0"), (["--price-hour", "x"], "expected a number"),
                      (["--pue", "0.5"], "expected a number >= 1"),
                      (["--baseline", "0"], "expected a positive number")):
        res = run_cli(["run", *args, "--", "true"], clean_env)
        assert res.returncode == 2 and msg in res.stderr.decode() and res.stderr.decode().count("\n") == 1


# -- compare --------------------------------------------------------------------------------

def test_compare_small_vs_big(tmp_path: Path, clean_env: dict[str, str]):
    db = tmp_path / "c.db"
    big = fake_run(db, "big-model", 400.0, 1000, price_kwh=0.25)
    small = fake_run(db, "small-model", 100.0, 1000, price_kwh=0.25)
    env = dict(clean_env, FOOTPRINT_DB=str(db))
    res = run_cli(["compare", str(big), "small-model", "--quality", f"{big}=0.8", "--quality", "small-model=0.72",
                   "--json"], env)
    assert res.returncode == 0, res.stderr.decode()
    data = json.loads(res.stdout)
    assert data["baseline_run"] == big
    rows = {r["name"]: r for r in data["rows"]}
    # on a fake clock both runs last exactly 0.3 s, so the ratios are the power ratio
    for name, watts in (("big-model", 400.0), ("small-model", 100.0)):
        assert rows[name]["energy_j"] == pytest.approx(watts * 0.3, rel=1e-6)
        assert rows[name]["tokens_per_s"] == pytest.approx(1000 / 0.3, rel=1e-6)
    assert rows["small-model"]["ratios"]["j_per_token"] == pytest.approx(0.25, rel=1e-6)
    assert rows["small-model"]["ratios"]["quality"] == pytest.approx(0.9)
    assert rows["small-model"]["ratios"]["cost_per_1m_tokens"] == pytest.approx(0.25, rel=1e-6)
    assert rows["big-model"]["ratios"]["energy_j"] == 1.0
    text = run_cli(["compare", str(big), str(small)], env).stdout.decode()
    assert "small-model" in text and "(×0.2" in text
    bad = run_cli(["compare", str(big), "--quality", "oops"], env)
    assert bad.returncode == 2 and "RUN=VALUE" in bad.stderr.decode()


# -- exports --------------------------------------------------------------------------------

def test_csv_exports(tmp_path: Path, clean_env: dict[str, str]):
    db = tmp_path / "x.db"
    rid = fake_run(db, "csv", 200.0, 400, carbon_intensity=300.0)
    env = dict(clean_env, FOOTPRINT_DB=str(db))
    out = tmp_path / "runs.csv"
    assert run_cli(["report", "-o", str(out)], env).returncode == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 1 and rows[0]["name"] == "csv" and rows[0]["tokens"] == "400"
    j = report_json(env)["runs"][0]
    assert float(rows[0]["energy_j_total"]) == pytest.approx(j["energy_j"]["total"])
    assert rows[0]["energy_j_cpu"] == ""  # unknown stays empty, not 0
    spans = list(csv.DictReader(io.StringIO(run_cli(["report", "--format", "csv-spans"], env).stdout.decode())))
    assert [s["path"] for s in spans] == ["prefill", "decode"] and spans[1]["tokens"] == "300"
    em = list(csv.DictReader(io.StringIO(run_cli(["report", "--format", "emissions-csv"], env).stdout.decode())))
    assert list(em[0])[:7] == ["timestamp", "project_name", "run_id", "experiment_id", "duration", "emissions",
                               "emissions_rate"]
    assert float(em[0]["energy_consumed"]) == pytest.approx(j["kwh"])
    assert float(em[0]["emissions"]) == pytest.approx(j["co2e_g"] / 1000)
    assert float(em[0]["gpu_energy"]) == pytest.approx(j["energy_j"]["gpu"] / 3.6e6)
    assert uuid.UUID(em[0]["run_id"]).version == 5  # CodeCarbon's run_id is a UUID: one per run, stable
    assert rid == j["id"]


def test_dataframe_loader(tmp_path: Path):
    from footprint.reports import to_dataframe

    db = tmp_path / "df.db"
    fake_run(db, "a", 100.0, 100)
    fake_run(db, "b", 50.0, 100)
    runs = to_dataframe(str(db), "runs")
    assert list(runs["name"]) == ["a", "b"]
    spans = to_dataframe(str(db), "spans")
    assert len(spans) == 4 and set(spans["name"]) == {"prefill", "decode"}
    samples = to_dataframe(str(db), "samples")
    assert set(samples["run_id"]) == {1, 2} and (samples["kind"] == "gpu").all()


# -- plots ----------------------------------------------------------------------------------

def test_sparkline():
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█"
    assert sparkline([5, 5, 5]) == "███"  # bars are heights above zero: a constant draw is a full, flat line
    assert len(sparkline(list(range(500)), width=40)) == 40


def test_sparkline_scales_from_zero_so_noise_stays_flat():
    # a run at a steady 47 W, read with a few tenths of a watt of noise, must not draw peaks and troughs
    assert sparkline([47.0, 47.2, 46.9, 47.1, 47.0]) == "█████"
    assert sparkline([50.0, 100.0]) == "▄█"  # half the power, half the height
    assert sparkline([0.0, 0.0]) == "▁▁"


def test_power_series_from_cumulative_energy(tmp_path: Path):
    db = tmp_path / "p.db"
    rid = fake_run(db, "p", 250.0, 10, seconds=0.6)
    store = Store(db)
    dev = store.query("SELECT id FROM devices WHERE run_id = ?", (rid,))[0][0]
    series = store.power_series(dev, points=10)
    assert 3 <= len(series) <= 10
    assert all(p == pytest.approx(250.0, rel=1e-3) for _, p in series)


def test_html_report_is_self_contained(tmp_path: Path, clean_env: dict[str, str]):
    db = tmp_path / "h.db"
    fake_run(db, "html <run>", 150.0, 200)
    env = dict(clean_env, FOOTPRINT_DB=str(db))
    out = tmp_path / "report.html"
    res = run_cli(["report", "--html", str(out)], env)
    assert res.returncode == 0, res.stderr.decode()
    page = out.read_text()
    assert page.startswith("<!doctype html>") and page.count("<svg") == 2
    assert "html &lt;run&gt;" in page  # names are escaped
    assert "decode" in page and "prefill" in page
    for remote in ("http://", "https://", "src=", "<script", "@import", "<link"):
        assert remote not in page.replace("http://www.w3.org", ""), remote


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


BROWSER_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--enable-logging=stderr", "--v=0"]


def _browse(page: Path, tmp: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    chromium = _chromium()
    assert chromium is not None
    profile = tmp / f"profile-{page.stem}-{len(list(tmp.iterdir()))}"
    return subprocess.run([chromium, *BROWSER_FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()],
                          capture_output=True, timeout=120)


@pytest.mark.slow
@pytest.mark.skipif(_chromium() is None, reason="no chromium here (Debian package 'chromium')")
def test_html_renders_in_headless_browser(tmp_path: Path, clean_env: dict[str, str]):
    """The report of a fake run with spans, of a 0.6 s run with only two reads per device, and of the canned
    run: each loads with no console message, and its screenshot is not blank and shows coloured charts."""
    import numpy as np
    from footprint.reports import render
    from PIL import Image

    from tests.canned import canned_report
    from tests.test_html import short_run

    db = tmp_path / "b.db"
    fake_run(db, "browser", 150.0, 200)
    env = dict(clean_env, FOOTPRINT_DB=str(db))
    pages = {"spans": tmp_path / "r.html", "short": tmp_path / "short.html", "canned": tmp_path / "canned.html"}
    assert run_cli(["report", "-o", str(pages["spans"])], env).returncode == 0
    pages["short"].write_text(render(short_run(tmp_path / "s.db"), "html"))
    pages["canned"].write_text(render(canned_report(), "html"))
    for name, page in pages.items():
        shot = tmp_path / f"{name}.png"
        res = _browse(page, tmp_path, f"--screenshot={shot}", "--window-size=1200,1600")
        assert res.returncode == 0, res.stderr.decode()[-2000:]
        log = res.stderr.decode(errors="replace")
        assert ":CONSOLE" not in log, f"{name}: the page logged to its console:\n{log[-2000:]}"
        data = shot.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000  # a page with charts, not a blank one
        px = np.asarray(Image.open(shot).convert("RGB")).astype(int)
        inked = int((px.min(axis=2) < 200).sum())
        coloured = int((px.max(axis=2) - px.min(axis=2) > 80).sum())  # curves, bars, bands
        assert inked > 0.01 * px.shape[0] * px.shape[1], f"{name}: the screenshot is nearly blank"
        assert coloured > 2000, f"{name}: no coloured chart in the screenshot"
        dom = _browse(page, tmp_path, "--dump-dom")
        assert b"Power over time" in dom.stdout and dom.stdout.count(b"<svg") == 2
        assert ":CONSOLE" not in dom.stderr.decode(errors="replace")


# -- live view ------------------------------------------------------------------------------

def test_watch_shows_a_running_run_from_another_process(clean_env: dict[str, str]):
    proc = subprocess.Popen([PY, "-m", "footprint", "run", "--interval", "0.1", "--name", "live-one", "--", PY, "-c",
                             "import time; print('ready', flush=True); time.sleep(5)"],
                            env=clean_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    import time

    time.sleep(2.5)  # samples reach the DB within 2 s
    res = run_cli(["watch", "--once"], clean_env)
    proc.communicate(timeout=30)
    out = res.stdout.decode()
    assert res.returncode == 0, res.stderr.decode()
    assert "live-one" in out and "cpu:0" in out and " W" in out
    after = run_cli(["watch", "--once"], clean_env).stdout.decode()
    assert "no run is recording" in after


# -- config file --------------------------------------------------------------------------------

def test_config_file_sets_defaults_below_flags_and_env(tmp_path: Path, clean_env: dict[str, str]):
    cfg = tmp_path / "fp.toml"
    cfg.write_text('country = "FRA"\npue = 1.5\nprice_kwh = 0.2\ncurrency = "eur"\n')
    env = dict(clean_env, FOOTPRINT_CONFIG=str(cfg))
    assert run_cli(["run", "--no-summary", "--", "true"], env).returncode == 0
    run = report_json(env)["runs"][0]
    assert run["country"] == "FRA" and run["carbon_source"].endswith(f"(from {cfg})")
    assert run["pue"] == 1.5 and run["cost"]["price_kwh"] == 0.2 and run["cost"]["currency"] == "EUR"
    env2 = dict(env, FOOTPRINT_COUNTRY="DEU")
    assert run_cli(["run", "--no-summary", "--pue", "1.1", "--", "true"], env2).returncode == 0
    run = report_json(env2)["runs"][0]
    assert run["country"] == "DEU" and run["pue"] == 1.1  # env and flags win over the file


def test_bad_config_file_is_one_line(tmp_path: Path, clean_env: dict[str, str]):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('colour = "blue"\n')
    res = run_cli(["run", "--", "true"], dict(clean_env, FOOTPRINT_CONFIG=str(cfg)))
    assert res.returncode == 2 and "unknown key 'colour'" in res.stderr.decode()
    cfg.write_text("pue = 'high'\n")
    res = run_cli(["run", "--", "true"], dict(clean_env, FOOTPRINT_CONFIG=str(cfg)))
    assert res.returncode == 2 and "pue must be a number, got 'high'" in res.stderr.decode()
    assert res.stderr.decode().count("\n") == 1


def test_compare_is_per_generated_token_and_keeps_small_ratios(tmp_path: Path, clean_env: dict[str, str]):
    db = tmp_path / "g.db"

    def gen_run(name: str, watts: float, prompt: int, generated: int) -> int:
        clock = FakeClock()
        run = start_run(name, db=str(db), probes=[FakeProbe(powers_w={"gpu:0": watts}, clock=clock)], clock=clock)
        with run.span("generate"):
            run.add_tokens(prompt, kind="prompt")
            run.add_tokens(generated, kind="generated")
            clock.advance(1.0)
        finish_run(run)
        return run.id

    big = gen_run("big", 400.0, 600, 400)  # 400 J: 1 J per generated token, 0.4 J per token of any kind
    small = gen_run("small", 100.0, 900, 100)  # 100 J: 1 J per generated token too, though 0.1 J per token
    env = dict(clean_env, FOOTPRINT_DB=str(db))
    res = run_cli(["compare", str(big), str(small), "--quality", f"{big}=0.8", "--quality", f"{small}=0.000123",
                   "--json"], env)
    data = json.loads(res.stdout)
    assert data["per_token"] == "generated"
    rows = {r["name"]: r for r in data["rows"]}
    assert rows["big"]["j_per_token"] == pytest.approx(1.0, rel=1e-6)
    assert rows["small"]["j_per_token"] == pytest.approx(1.0, rel=1e-6)  # not the 0.25 all-token figure
    assert rows["small"]["ratios"]["j_per_token"] == pytest.approx(1.0, rel=1e-6)
    assert rows["small"]["tokens"] == 100
    text = run_cli(["compare", str(big), str(small), "--quality", f"{big}=0.8", "--quality", f"{small}=0.000123"],
                   env).stdout.decode()
    assert "J/gen tok" in text and "0.000123 (×0.000154)" in text


def test_a_baseline_above_the_run_says_so_and_keeps_the_negative_figure():
    """Idle power measured while something else was busy (or an estimate that follows load elsewhere): the
    dynamic energy is below zero, shown as it is, with a warning; never clipped to a silent zero."""
    from footprint.core.model import load_run
    from footprint.core.store import Store
    from tests.canned import WATTS, record

    store = Store(":memory:")
    rid, _ = record(store)
    ids = {f"{d['kind']}:{d['idx']}": d["id"] for d in store.run_devices(rid)}
    store.set_baseline(ids["cpu:0"], WATTS["cpu:0"] + 10.0)  # 10 W above what the CPU drew all run
    store.set_baseline(ids["ram:0"], WATTS["ram:0"])  # exactly its own power: zero, give or take rounding
    rep = load_run(store, rid)
    assert rep.dynamic_energy_j is not None
    assert rep.dynamic_energy_j["cpu"] == pytest.approx(-10.0 * 5.0)  # the canned run's 5 s
    assert rep.dynamic_energy_j["ram"] == pytest.approx(0.0, abs=1e-9)
    (warning,) = [w for w in rep.warnings if "below zero" in w]
    assert "for cpu:" in warning and "ram" not in warning.split(":")[0]
