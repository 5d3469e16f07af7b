"""The one settings resolver: every option that has a flag, an environment variable and a config-file key.

Precedence, first found wins: the flag (or keyword argument), then `FOOTPRINT_<NAME>`, then the config file
(below), then the default. Every source goes through the same validator, so a value the
flag refuses (a negative carbon intensity, say) is refused from the environment and the file too, with a
one-line error that names where it came from.

The config file:
The file is FOOTPRINT_CONFIG if set, else ./footprint.toml, else $XDG_CONFIG_HOME/footprint/config.toml
(~/.config/...). Keys: country, region, carbon_intensity, pue, price_kwh, price_hour, currency, embodied,
embodied_lifetime_years, embodied_utilisation, ipmi.

    country = "FRA"
    pue = 1.2
    price_kwh = 0.18
    currency = "EUR"
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from footprint.common.errors import FootprintError
from footprint.common.record import FrozenRecord

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

ENV_CONFIG = "FOOTPRINT_CONFIG"
FLAG, ENV, CONFIG = "flag", "env", "config"  # where a value came from, strongest first


class Option(FrozenRecord):
    """One setting. `kind` is "number" (with `minimum`, inclusive unless `positive`, and an inclusive `maximum`),
    "switch" (on/off: a TOML boolean, or on, off, true, false, yes, no, 1, 0) or "text" (`upper` to normalise
    codes such as FRA or EUR)."""

    __slots__ = ("name", "env", "key", "kind", "minimum", "upper", "description", "positive", "maximum")

    def __init__(self, name: str, env: str, key: str, kind: str, minimum: float = 0.0, upper: bool = False,
                 description: str = "", positive: bool = False, maximum: float | None = None) -> None:
        self.name = name
        self.env = env
        self.key = key
        self.kind = kind
        self.minimum = minimum
        self.upper = upper
        self.description = description
        self.positive = positive
        self.maximum = maximum


OPTIONS: dict[str, Option] = {o.name: o for o in (
    Option("country", "FOOTPRINT_COUNTRY", "country", "text", upper=True,
           description="ISO 3166 alpha-3 (or alpha-2) code of the grid, for CO2e"),
    Option("region", "FOOTPRINT_CLOUD_REGION", "region", "text", description="cloud region as provider:region"),
    Option("carbon_intensity", "FOOTPRINT_CARBON_INTENSITY", "carbon_intensity", "number",
           description="grid carbon intensity in g CO2e/kWh"),
    Option("pue", "FOOTPRINT_PUE", "pue", "number", minimum=1.0, description="data-centre PUE"),
    Option("price_kwh", "FOOTPRINT_PRICE_KWH", "price_kwh", "number", description="electricity price per kWh"),
    Option("price_hour", "FOOTPRINT_PRICE_HOUR", "price_hour", "number", description="instance price per hour"),
    Option("currency", "FOOTPRINT_CURRENCY", "currency", "text", upper=True, description="currency code"),
    # embodied carbon (footprint/common/embodied.py): on by default, amortised over a lifetime at a utilisation
    Option("embodied", "FOOTPRINT_EMBODIED", "embodied", "switch",
           description="add the devices' manufacturing CO2e, amortised over their life (on or off)"),
    Option("embodied_lifetime_years", "FOOTPRINT_EMBODIED_LIFETIME_YEARS", "embodied_lifetime_years", "number",
           positive=True, description="years of life the devices' manufacturing CO2e is spread over"),
    Option("embodied_utilisation", "FOOTPRINT_EMBODIED_UTILISATION", "embodied_utilisation", "number",
           positive=True, maximum=1.0, description="share of their life the devices are in use, in (0, 1]"),
    Option("ipmi", "FOOTPRINT_IPMI", "ipmi", "switch",
           description="read the whole node's power from the BMC (ipmitool dcmi power reading)"),
)}

SWITCH = {"on": True, "true": True, "yes": True, "1": True, "off": False, "false": False, "no": False, "0": False}


def validate(name: str, value: object, where: str | None = None) -> Any:
    """`value` for option `name` from any source (a flag's text, an environment string, a TOML value),
    checked and normalised; a FootprintError naming `where` (default: the option) otherwise."""
    opt = OPTIONS[name]
    label = where or name.replace("_", " ")
    if opt.kind == "number":
        if isinstance(value, bool):
            raise FootprintError(f"{label} must be a number, got {value!r}")
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise FootprintError(f"{label} must be a number, got '{value}'") from None
        low_ok = number > opt.minimum if opt.positive else number >= opt.minimum
        if math.isnan(number) or math.isinf(number) or not low_ok or (opt.maximum is not None and number > opt.maximum):
            raise FootprintError(f"{label} must be a number {'>' if opt.positive else '>='} {opt.minimum:g}"
                                 + (f" and <= {opt.maximum:g}" if opt.maximum is not None else "") + f", got '{value}'")
        return number
    if opt.kind == "switch":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in SWITCH:
            return SWITCH[value.strip().lower()]
        raise FootprintError(f"{label} must be on or off (true or false, yes/no, 1/0), got {value!r}")
    if not isinstance(value, str) or not value.strip():
        raise FootprintError(f"{label} must be a non-empty text, got {value!r}")
    return value.strip().upper() if opt.upper else value.strip()


def config_path() -> Path | None:
    given = os.environ.get(ENV_CONFIG)
    if given:
        if not Path(given).is_file():
            raise FootprintError(f"{ENV_CONFIG} names {given}, which is not a file")
        return Path(given)
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    for candidate in (Path("footprint.toml"), Path(base) / "footprint" / "config.toml"):
        try:
            if candidate.is_file():
                return candidate
        except OSError:  # a HOME this user cannot read (another user's, under sudo -u): no file there for us
            continue
    return None


def load_config() -> tuple[dict[str, Any], str | None]:
    """(settings, the file they came from); ({}, None) without a file."""
    path = config_path()
    if path is None:
        return {}, None
    try:
        import tomllib
    except ImportError:  # Python 3.10
        raise FootprintError(f"reading {path} needs Python >= 3.11 (tomllib)") from None
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FootprintError(f"cannot read config {path}: {exc}") from None
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key not in OPTIONS:
            raise FootprintError(f"{path}: unknown key '{key}' (known: {', '.join(sorted(OPTIONS))})")
        out[key] = validate(key, value, f"{path}: {key}")  # the same checks as the flag and the variable
    return out, str(path)


class Settings(FrozenRecord):
    """Report-time overrides of what the run recorded (None: keep the recorded value)."""

    __slots__ = ("country", "region", "carbon_intensity", "pue", "price_kwh", "price_hour", "currency", "embodied",
                 "embodied_lifetime_years", "embodied_utilisation")

    def __init__(self, country: str | None = None, region: str | None = None, carbon_intensity: float | None = None,
                 pue: float | None = None, price_kwh: float | None = None, price_hour: float | None = None,
                 currency: str | None = None, embodied: bool | None = None,
                 embodied_lifetime_years: float | None = None, embodied_utilisation: float | None = None) -> None:
        self.country = country
        self.region = region
        self.carbon_intensity = carbon_intensity
        self.pue = pue
        self.price_kwh = price_kwh
        self.price_hour = price_hour
        self.currency = currency
        self.embodied = embodied
        self.embodied_lifetime_years = embodied_lifetime_years
        self.embodied_utilisation = embodied_utilisation


class Resolved(FrozenRecord):
    """A setting's value and its origin: FLAG, ENV (then `where` is the variable) or CONFIG (the file)."""

    __slots__ = ("name", "value", "origin", "where")

    def __init__(self, name: str, value: Any, origin: str | None, where: str | None) -> None:
        self.name = name
        self.value = value
        self.origin = origin
        self.where = where


class Resolver:
    """Resolves options against one snapshot of the environment and one read of the config file."""

    def __init__(self, environ: Mapping[str, str] | None = None,
                 config: tuple[dict[str, Any], str | None] | None = None) -> None:
        self.environ = os.environ if environ is None else environ
        self._config = config

    @property
    def config(self) -> tuple[dict[str, Any], str | None]:
        if self._config is None:
            self._config = load_config()  # once: every option below falls back to the same file
        return self._config

    def resolve(self, name: str, given: object = None) -> Resolved:
        opt = OPTIONS[name]
        if given is not None:
            return Resolved(name, validate(name, given), FLAG, None)
        raw = self.environ.get(opt.env)
        if raw:
            return Resolved(name, validate(name, raw, opt.env), ENV, opt.env)
        cfg, path = self.config
        if cfg.get(opt.key) is not None:
            return Resolved(name, validate(name, cfg[opt.key], f"{path}: {opt.key}"), CONFIG, path)
        return Resolved(name, None, None, None)

    def origin_text(self, name: str, given: object = None) -> str | None:
        """Where the value of `name` comes from, for a summary: "given" (flag or argument), "from FOOTPRINT_PUE",
        "from footprint.toml"; None for the default."""
        found = self.resolve(name, given)
        if found.origin is None:
            return None
        return "given" if found.origin == FLAG else f"from {found.where}"

    def value(self, name: str, given: object = None, default: Any = None) -> Any:
        found = self.resolve(name, given).value
        return default if found is None else found


def flag_type(name: str) -> Any:
    """An argparse `type=` for option `name`: the same validator, as a one-line argparse error."""
    import argparse

    def parse(text: str) -> Any:
        try:
            return validate(name, text, f"'{text}'")
        except FootprintError as exc:
            raise argparse.ArgumentTypeError(str(exc).replace(f"'{text}' must be", "expected")) from None

    parse.__name__ = name  # argparse names the type in some messages
    return parse


def switch_probes(resolver: Resolver | None = None, *, ipmi: bool | None = None) -> None:
    """Opt-in probes read their switch from the environment (the probe layer has no settings): set
    FOOTPRINT_IPMI from the flag, the variable or the config file's `ipmi`, checked like every option."""
    on = (resolver or Resolver()).value("ipmi", ipmi)
    if on is not None:
        os.environ[OPTIONS["ipmi"].env] = "1" if on else "0"
