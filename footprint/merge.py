"""`footprint merge`: combine per-node DBs of a distributed job (or any DBs) into one file."""

from __future__ import annotations

import os

from footprint.common.errors import FootprintError
from footprint.core import dbfile
from footprint.core.store import Store, connect, transaction

# table -> {column: how to shift it}: ids are renumbered past what the target already holds
SHIFTS: dict[str, dict[str, str]] = {
    "runs": {"id": "runs"},
    "devices": {"id": "devices", "run_id": "runs"},
    "samples": {"device_id": "devices"},
    "spans": {"id": "spans", "run_id": "runs", "parent_id": "spans"},
    "tokens": {"id": "tokens", "run_id": "runs", "span_id": "spans"},
    "events": {"id": "events", "run_id": "runs", "device_id": "devices"},
}


def merge(sources: list[str], output: str) -> tuple[int, int]:
    """Copy every run of `sources` into `output` (created if needed). Runs already there (same host, pid,
    start and name) are skipped, so merging twice never double-counts. Returns (copied, skipped)."""
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
    copied = skipped = 0
    conn = target.conn
    try:
        for uri in uris:  # read-only: merging never writes its inputs
            conn.execute("ATTACH DATABASE ? AS src", (uri,))
            try:
                with transaction(conn):
                    dup = conn.execute(
                        "SELECT COUNT(*) FROM src.runs s WHERE EXISTS (SELECT 1 FROM main.runs m WHERE "
                        "m.host IS s.host AND m.pid IS s.pid AND m.created_at = s.created_at AND m.name = s.name)"
                    ).fetchone()[0]
                    skipped += dup
                    conn.execute(
                        "CREATE TEMP TABLE keep AS SELECT id FROM src.runs s WHERE NOT EXISTS (SELECT 1 FROM "
                        "main.runs m WHERE m.host IS s.host AND m.pid IS s.pid AND m.created_at = s.created_at "
                        "AND m.name = s.name)")
                    offsets = {t: conn.execute(f"SELECT COALESCE(MAX(id), 0) FROM main.{t}").fetchone()[0]
                               for t in ("runs", "devices", "spans", "tokens", "events")}
                    for table, shifts in SHIFTS.items():
                        cols = [r[1] for r in conn.execute(f"PRAGMA main.table_info({table})")]
                        src_cols = {r[1] for r in conn.execute(f"PRAGMA src.table_info({table})")}
                        exprs = []
                        for c in cols:
                            if c not in src_cols:
                                exprs.append("NULL")
                            elif c in shifts:
                                exprs.append(f"t.{c} + {int(offsets[shifts[c]])}")
                            else:
                                exprs.append(f"t.{c}")
                        where = {
                            "runs": "t.id IN (SELECT id FROM temp.keep)",
                            "samples": "t.device_id IN (SELECT id FROM src.devices WHERE run_id IN "
                                       "(SELECT id FROM temp.keep))",
                        }.get(table, "t.run_id IN (SELECT id FROM temp.keep)")
                        conn.execute(f"INSERT INTO main.{table} ({', '.join(cols)}) "
                                     f"SELECT {', '.join(exprs)} FROM src.{table} t WHERE {where}")
                    copied += conn.execute("SELECT COUNT(*) FROM temp.keep").fetchone()[0]
                    conn.execute("DROP TABLE temp.keep")
            finally:
                conn.execute("DETACH DATABASE src")
    finally:
        target.close()
    return copied, skipped
