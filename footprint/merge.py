"""`footprint merge`: combine per-node DBs of a distributed job (or any DBs) into one file."""

from __future__ import annotations

from pathlib import Path

from footprint.common.errors import FootprintError
from footprint.core.store import Store, connect


def merge(sources: list[str], output: str) -> tuple[int, int]:
    """Copy every run of `sources` into `output` (created if needed). Runs already there (same host, pid,
    start and name) are skipped, so merging twice never double-counts. Returns (copied, skipped)."""
    out_path = Path(output).resolve()
    for src in sources:
        if Path(src).resolve() == out_path:
            raise FootprintError(f"{src} is both an input and the output")
        connect(src, create=False).close()  # checks it exists and is a footprint DB of a known schema
    target = Store(output)
    copied = skipped = 0
    try:
        for src in sources:
            c, k = target.merge_from(src)
            copied, skipped = copied + c, skipped + k
    finally:
        target.close()
    return copied, skipped
