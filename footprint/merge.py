"""`footprint merge`: combine per-node DBs of a distributed job (or any DBs) into one file."""

from __future__ import annotations

import os

from footprint.common.errors import FootprintError
from footprint.core import dbfile
from footprint.core.store import Store, connect


def merge(sources: list[str], output: str) -> tuple[int, int, int]:
    """Copy every run of `sources` into `output` (created if needed). Runs already there (same host, pid,
    start and name) are skipped, so merging twice never double-counts; a run that has moved on since it was
    merged (it was still recording) is brought up to date. Returns (copied, skipped, updated)."""
    out_real = dbfile.resolve(output)
    try:
        out_st = os.stat(out_real)
        out_id: tuple[int, int] | None = (out_st.st_dev, out_st.st_ino)
    except OSError:
        out_id = None
    uris = []
    for src in sources:
        connect(src, create=False, readonly=True).close()  # it exists and is a footprint DB of a known schema
        uri, real = dbfile.readonly_uri(src)
        st = os.stat(real)
        if real == out_real or (st.st_dev, st.st_ino) == out_id:  # the same file, also by a hard link
            raise FootprintError(f"{src} is both an input and the output")
        uris.append(uri)
    target = Store(output)
    copied = skipped = updated = 0
    try:
        for uri in uris:  # read-only: merging never writes its inputs
            c, k, u = target.merge_from(uri)
            copied, skipped, updated = copied + c, skipped + k, updated + u
    finally:
        target.close()
    return copied, skipped, updated
