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
            columns = ["run_id", "kind", "device_index", "source", "t", "energy_j", "power_w", "mark"]
            return pd.DataFrame([tuple(r) for r in store.sample_rows(ids)] if ids else [], columns=columns)
        renderer = {"runs": CsvRenderer, "spans": SpanCsvRenderer}.get(what)
        if renderer is None:
            raise ValueError(f"what must be 'runs', 'spans' or 'samples', not {what!r}")
        text = renderer().render(load_report(store, ids))
        return pd.read_csv(io.StringIO(text))
    finally:
        store.close()
