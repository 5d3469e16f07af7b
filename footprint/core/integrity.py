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

HINT = "the DB was edited or damaged; fix or delete that row"


def _sample_error(row: Sequence[object]) -> FootprintError:
    run_id, kind, idx, t, energy, power = row
    bad = next((f"{name} {value!r}" for name, value in (("t", t), ("energy_j", energy), ("power_w", power))
                if value is not None and not isinstance(value, (int, float))), "a value")
    return FootprintError(f"run {run_id}, {kind}:{idx}: a sample holds {bad}, not a number ({HINT})")


def check_endpoints(store: Store, run_ids: Sequence[int]) -> None:
    """The first and last sample of each device of these runs, what their totals are made of, are numbers."""
    row = store.damaged_endpoint(run_ids)
    if row is not None:
        raise _sample_error(row)


def find_damage(store: Store, run_ids: Sequence[int] | None = None) -> FootprintError | None:
    """A full scan (of these runs, or all) for a non-number where a number belongs, to explain a failed report."""
    row = store.damaged_sample(run_ids)
    if row is not None:
        return _sample_error(row)
    for table in ("tokens", "spans"):
        run_id = store.damaged_row(table, run_ids)
        if run_id is not None:
            return FootprintError(f"run {run_id}: the {table} table holds a non-number where a number "
                                  f"belongs ({HINT})")
    return None
