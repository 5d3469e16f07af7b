"""Optional defaults from a TOML file, below flags and environment variables in precedence.

The file is FOOTPRINT_CONFIG if set, else ./footprint.toml, else $XDG_CONFIG_HOME/footprint/config.toml
(~/.config/...). Keys: country, region, carbon_intensity, pue, price_kwh, price_hour, currency.

    country = "FRA"
    pue = 1.2
    price_kwh = 0.18
    currency = "EUR"
"""

from __future__ import annotations

import os
from pathlib import Path

from footprint.common.errors import FootprintError

TYPE_CHECKING = False  # importing typing costs start-up time; annotations need it only when checked
if TYPE_CHECKING:
    from typing import Any

KEYS: dict[str, type] = {"country": str, "region": str, "carbon_intensity": float, "pue": float,
                         "price_kwh": float, "price_hour": float, "currency": str}


def config_path() -> Path | None:
    given = os.environ.get("FOOTPRINT_CONFIG")
    if given:
        if not Path(given).is_file():
            raise FootprintError(f"FOOTPRINT_CONFIG names {given}, which is not a file")
        return Path(given)
    local = Path("footprint.toml")
    if local.is_file():
        return local
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    user = Path(base) / "footprint" / "config.toml"
    return user if user.is_file() else None


def load() -> tuple[dict[str, Any], str | None]:
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
        kind = KEYS.get(key)
        if kind is None:
            raise FootprintError(f"{path}: unknown key '{key}' (known: {', '.join(sorted(KEYS))})")
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind):
            raise FootprintError(f"{path}: '{key}' must be a {kind.__name__}, got {value!r}")
        out[key] = value
    return out, str(path)
