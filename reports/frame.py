"""pandas loaders: runs, spans or samples of a footprint DB as DataFrames (pandas: the [pandas] extra).

Times are timezone-aware UTC datetimes; ids, counts and exit codes are nullable integers (Int64), flags
booleans; energies, powers and ratios floats, NaN where unknown."""

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
            df = pd.DataFrame([tuple(r) for r in store.sample_rows(ids)] if ids else [], columns=columns)
            df["t"] = pd.to_datetime(df["t"].astype("float64"), unit="s", utc=True)
            return df.astype({"run_id": "int64", "device_index": "int64", "energy_j": "float64",
                              "power_w": "float64", "mark": "bool"})
        renderer = {"runs": CsvRenderer, "spans": SpanCsvRenderer}.get(what)
        if renderer is None:
            raise ValueError(f"what must be 'runs', 'spans' or 'samples', not {what!r}")
        text = renderer().render(load_report(store, ids))
        df = pd.read_csv(io.StringIO(text))
    finally:
        store.close()
    for col in ("started_at", "ended_at"):
        df[col] = pd.to_datetime(df[col], utc=True, format="ISO8601")
    ints = [c for c in INTEGERS if c in df.columns]
    df = df.astype({c: "Int64" for c in ints})
    if "reliable" in df.columns:
        df["reliable"] = df["reliable"].astype("boolean")
    return df


INTEGERS = ("id", "exit_code", "tokens", "run_id", "span_id", "parent_id")
