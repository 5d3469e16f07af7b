"""Build footprint/common/footprint-data.json from the installed CodeCarbon and pycountry.

    python tools/build_data.py           # write the file
    python tools/build_data.py --check   # exit 1 if the shipped file differs from what would be built

The file holds the tables footprint looks figures up in (see footprint/common/data.py), parsed by the same
functions that read CodeCarbon's own files when it is installed, plus where each came from: the source
packages' versions, CodeCarbon's MIT notice and pycountry's licence.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from footprint.common import data  # noqa: E402

CODECARBON_FILES = {
    "countries": "global_energy_mix.json", "regions": "impact.csv",
    "world_average": "carbon_intensity_per_source.json", "cpu_tdp": "cpu_power.csv",
}


def _licence(dist: str) -> str:
    d = metadata.distribution(dist)
    for f in d.files or ():
        if "licen" in f.name.lower() or "copying" in f.name.lower():
            return Path(str(d.locate_file(f))).read_text(encoding="utf-8").strip()
    raise SystemExit(f"no licence file found in the installed {dist}")


def build() -> dict[str, Any]:
    """The file's content, from the installed packages (codecarbon and pycountry must be installed)."""
    if data.codecarbon_data_dir() is None or data.find_iso3166_file() is None:
        raise SystemExit("install codecarbon and pycountry first: pip install -e '.[dev]'")
    tables: dict[str, Any] = {}
    files: dict[str, str] = {}
    cc_dir = data.codecarbon_data_dir()
    assert cc_dir is not None
    for name, file in CODECARBON_FILES.items():
        path = data.find_data_file(file)
        if path is None:
            raise SystemExit(f"codecarbon {metadata.version('codecarbon')} has no {file}")
        tables[name] = data.SOURCES[name][1](path)
        files[name] = "codecarbon/data/" + path.relative_to(cc_dir).as_posix()
    iso = data.find_iso3166_file()
    assert iso is not None
    tables["iso3166"] = data.parse_iso3166(iso)
    return {
        "about": "Reference tables for footprint, built by tools/build_data.py from the packages below. "
                 "countries: ISO3 -> [g CO2e/kWh, country name, year]; regions: provider:region -> "
                 "[g CO2e/kWh, ISO3, source]; world_average: g CO2e/kWh; cpu_tdp: CPU name -> TDP W; "
                 "iso3166: alpha-2 -> alpha-3.",
        "sources": {
            "codecarbon": {
                "version": metadata.version("codecarbon"), "tables": files,
                "license": "MIT", "notice": _licence("codecarbon"),
            },
            "pycountry": {
                "version": metadata.version("pycountry"), "tables": {"iso3166": "pycountry/databases/iso3166-1.json"},
                "license": "LGPL-2.1-only", "notice": _licence("pycountry"),
            },
        },
        "tables": tables,
    }


def dumps(content: dict[str, Any]) -> str:
    # one entry a line, no indentation: small, and a data update reads as a diff of the rows that changed
    return json.dumps(content, indent=0, separators=(",", ":"), ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the shipped file instead of writing it")
    args = ap.parse_args(argv)
    text = dumps(build())
    if args.check:
        same = data.SHIPPED.is_file() and data.SHIPPED.read_text(encoding="utf-8") == text
        print(f"{data.SHIPPED}: {'up to date' if same else 'differs from what the installed packages build'}")
        return 0 if same else 1
    data.SHIPPED.write_text(text, encoding="utf-8")
    print(f"wrote {data.SHIPPED} ({len(text.encode()):,} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
