"""CodeCarbon's packaged data files (CPU TDP table, carbon intensity), found without importing codecarbon."""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path


def codecarbon_data_dir() -> Path | None:
    """codecarbon's packaged data folder, found without importing codecarbon (its import starts
    NVML and pandas)."""
    try:
        spec = importlib.util.find_spec("codecarbon")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        data = Path(loc) / "data"
        if data.is_dir():
            return data
    return None


# where codecarbon 3.x keeps each file: looked at before searching its whole data folder
KNOWN_PLACES = {
    "cpu_power.csv": "hardware", "impact.csv": "cloud", "global_energy_mix.json": "private_infra",
    "carbon_intensity_per_source.json": "private_infra",
}


@cache
def find_data_file(name: str) -> Path | None:
    """A codecarbon data file by name, wherever this version keeps it (the layout has moved)."""
    data = codecarbon_data_dir()
    if data is None:
        return None
    known = data / KNOWN_PLACES.get(name, "") / name
    if known.is_file():
        return known
    hits = sorted(data.rglob(name))
    return hits[0] if hits else None
