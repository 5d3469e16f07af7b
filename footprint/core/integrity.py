"""Values a hand-edited or damaged DB can hold that no footprint wrote: text where numbers belong.

SQLite lets any column hold any type, and its arithmetic reads 'abc' as 0, so such a value would give a
report wrong totals without a word, or a TypeError deep inside one. Reports check the samples their
totals come from (two index seeks per device) before they compute anything, and, when a computation
still fails, scan the rest to say which row is at fault.
"""

from __future__ import annotations

from collections.abc import Sequence

from footprint.common.errors import FootprintError
from footprint.core.store import Store

NUMERIC = "('real', 'integer')"


def _bad_sample(a: str) -> str:
    """SQL: the sample of alias `a` holds a non-number."""
    return (f"(typeof({a}.t) NOT IN {NUMERIC} OR typeof({a}.energy_j) NOT IN {NUMERIC} "
            f"OR ({a}.power_w IS NOT NULL AND typeof({a}.power_w) NOT IN {NUMERIC}))")


# a row of these tables is damaged when its check holds
CHECKS = {
    "tokens": "typeof(n) != 'integer' OR typeof(t) NOT IN " + NUMERIC,
    "spans": f"typeof(started_at) NOT IN {NUMERIC} OR (ended_at IS NOT NULL AND typeof(ended_at) NOT IN {NUMERIC})",
}
HINT = "the DB was edited or damaged; fix or delete that row"


def _sample_error(row: Sequence[object]) -> FootprintError:
    run_id, kind, idx, t, energy, power = row
    bad = next((f"{name} {value!r}" for name, value in (("t", t), ("energy_j", energy), ("power_w", power))
                if value is not None and not isinstance(value, (int, float))), "a value")
    return FootprintError(f"run {run_id}, {kind}:{idx}: a sample holds {bad}, not a number ({HINT})")


def check_endpoints(store: Store, run_ids: Sequence[int]) -> None:
    """The first and last sample of each device of these runs, what their totals are made of, are numbers."""
    if not run_ids:
        return
    marks = ",".join("?" * len(run_ids))
    rows = store.query(
        f"""
        SELECT d.run_id, d.kind, d.idx, s.t, s.energy_j, s.power_w FROM devices d JOIN samples s
          ON s.rowid IN ((SELECT rowid FROM samples WHERE device_id = d.id ORDER BY t LIMIT 1),
                         (SELECT rowid FROM samples WHERE device_id = d.id ORDER BY t DESC LIMIT 1))
        WHERE d.run_id IN ({marks}) AND {_bad_sample("s")}
        LIMIT 1
        """, list(run_ids))
    if rows:
        raise _sample_error(tuple(rows[0]))


def find_damage(store: Store, run_ids: Sequence[int] | None = None) -> FootprintError | None:
    """A full scan (of these runs, or all) for a non-number where a number belongs, to explain a failed report."""
    ids = list(run_ids) if run_ids is not None else None
    only = f" AND run_id IN ({','.join('?' * len(ids))})" if ids else ""
    rows = store.query(f"SELECT d.run_id, d.kind, d.idx, s.t, s.energy_j, s.power_w FROM samples s "
                       f"JOIN devices d ON d.id = s.device_id WHERE {_bad_sample('s')}"
                       f"{only.replace('run_id', 'd.run_id')} LIMIT 1", ids or ())
    if rows:
        return _sample_error(tuple(rows[0]))
    for table in ("tokens", "spans"):
        rows = store.query(f"SELECT run_id FROM {table} WHERE ({CHECKS[table]}){only} LIMIT 1", ids or ())
        if rows:
            return FootprintError(f"run {rows[0][0]}: the {table} table holds a non-number where a number "
                                  f"belongs ({HINT})")
    return None
