"""pandas loaders: runs, spans or samples of a footprint DB as DataFrames."""

from __future__ import annotations

import io
from typing import Any

from footprint.core.model import load_report
from footprint.core.store import Store

from .csv import CsvRenderer, SpanCsvRenderer


def to_dataframe(db: str, what: str = "runs", runs: list[int] | None = None) -> Any:
    """A pandas DataFrame of 'runs' (one row each), 'spans' or 'samples' (t, energy, power per device).

        df = footprint.reports.to_dataframe("footprint.db", "spans")
        df.groupby("name")["j_per_token"].median()
    """
    import pandas as pd

    store = Store(db, create=False, readonly=True)
    try:
        ids = runs if runs is not None else sorted(store.run_ids())
        if what == "samples":
            marks = ",".join("?" * len(ids)) or "NULL"
            return pd.read_sql_query(
                "SELECT d.run_id, d.kind, d.idx AS device_index, d.source, s.t, s.energy_j, s.power_w, s.mark "
                f"FROM samples s JOIN devices d ON d.id = s.device_id WHERE d.run_id IN ({marks}) "
                "ORDER BY d.run_id, d.kind, d.idx, s.t", store.conn, params=ids)
        renderer = {"runs": CsvRenderer, "spans": SpanCsvRenderer}.get(what)
        if renderer is None:
            raise ValueError(f"what must be 'runs', 'spans' or 'samples', not {what!r}")
        text = renderer().render(load_report(store, ids))
        return pd.read_csv(io.StringIO(text))
    finally:
        store.close()
