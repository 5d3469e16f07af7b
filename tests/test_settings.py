"""The one settings resolver: flag > FOOTPRINT_* > config file > default, and one validator for all three."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from footprint.common.errors import FootprintError
from footprint.core import carbon
from footprint.core.costs import resolve_costs
from footprint.core.settings import CONFIG, ENV, FLAG, OPTIONS, Resolver, load_config, validate
from tests.conftest import footprint_cmd, run_cli


def resolver(tmp_path: Path, env: dict[str, str], toml: str, monkeypatch: pytest.MonkeyPatch) -> Resolver:
    cfg = tmp_path / "footprint.toml"
    cfg.write_text(toml)
    monkeypatch.setenv("FOOTPRINT_CONFIG", str(cfg))
    return Resolver(environ=env, config=load_config())


def test_precedence_flag_then_env_then_file_then_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    r = resolver(tmp_path, {"FOOTPRINT_PUE": "1.3"}, "pue = 1.2\nprice_kwh = 0.3\n", monkeypatch)
    assert (r.resolve("pue", 1.5).value, r.resolve("pue", 1.5).origin) == (1.5, FLAG)
    assert (r.resolve("pue").value, r.resolve("pue").origin, r.resolve("pue").where) == (1.3, ENV, "FOOTPRINT_PUE")
    assert (r.resolve("price_kwh").value, r.resolve("price_kwh").origin) == (0.3, CONFIG)
    assert r.resolve("price_hour").value is None and r.value("currency", None, "USD") == "USD"
    costs = resolve_costs(resolver=r)
    assert (costs.pue, costs.price_kwh, costs.price_hour, costs.currency) == (1.3, 0.3, None, "USD")


@pytest.mark.parametrize("name, bad", [("carbon_intensity", "-5"), ("pue", "0.9"), ("price_kwh", "nan"),
                                       ("price_hour", "inf"), ("carbon_intensity", "lots")])
def test_every_source_is_validated_alike(tmp_path: Path, name: str, bad: str):
    env = {OPTIONS[name].env: bad}
    with pytest.raises(FootprintError, match=OPTIONS[name].env):
        Resolver(environ=env, config=({}, None)).resolve(name)
    with pytest.raises(FootprintError, match=f"{name}"):
        validate(name, bad, f"footprint.toml: {name}")
    with pytest.raises(FootprintError):
        Resolver(environ={}, config=({}, None)).resolve(name, bad)


def test_carbon_sources_keep_their_order_within_and_across_sources():
    # within one source: intensity > region > country; across sources: flag > env > file
    r = Resolver(environ={"FOOTPRINT_COUNTRY": "SWE", "FOOTPRINT_CARBON_INTENSITY": "33"}, config=({}, None))
    assert carbon.resolve(resolver=r).g_per_kwh == 33.0
    assert carbon.resolve(country="FRA", resolver=r).country == "FRA"  # a flag beats any variable
    r2 = Resolver(environ={}, config=({"region": "gcp:us-east1", "country": "SWE"}, "f.toml"))
    assert carbon.resolve(resolver=r2).source.endswith("(from f.toml)") and "us-east1" in carbon.resolve(
        resolver=r2).source


def test_a_negative_intensity_from_the_environment_is_a_one_line_error(clean_env: dict[str, str]):
    res = run_cli(["run", "--", "true"], dict(clean_env, FOOTPRINT_CARBON_INTENSITY="-5"))
    err = res.stderr.decode()
    assert res.returncode == 2 and "FOOTPRINT_CARBON_INTENSITY must be a number >= 0" in err and err.count("\n") == 1
    flag = run_cli(["run", "--carbon-intensity", "-5", "--", "true"], clean_env)
    assert flag.returncode == 2 and "expected a number >= 0" in flag.stderr.decode()


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root and setpriv to run footprint as another user")
def test_an_unreadable_home_is_no_config_file_not_a_traceback(clean_env: dict[str, str]):
    # sudo -u without -H: HOME is a folder this user cannot enter; footprint reads no config from there
    import tempfile

    top = Path(tempfile.mkdtemp(prefix="fp-home-"))  # pytest's tmp_path sits in a folder only root can enter
    top.chmod(0o755)
    home = top / "home"
    home.mkdir(mode=0o700)
    work = top / "work"
    work.mkdir()
    os.chown(work, 65534, 65534)
    env = {k: v for k, v in clean_env.items() if k not in ("XDG_CONFIG_HOME", "FOOTPRINT_CONFIG")}
    env.update(HOME=str(home), FOOTPRINT_DB=str(work / "fp.db"))
    res = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *footprint_cmd(), "run",
                          "--no-summary", "--carbon-intensity", "100", "--", "true"], env=env, capture_output=True,
                         timeout=60, cwd=work)
    shutil.rmtree(top)
    assert res.returncode == 0, res.stderr.decode()
