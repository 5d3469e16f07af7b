"""`footprint watch`: running runs' power and energy so far, updated in place while others write the DB."""

from __future__ import annotations

import sys
import time
from typing import Any

from footprint.core.store import Store, default_db_path


def snapshot(store: Store) -> list[dict[str, Any]]:
    """Each running run: name, elapsed, per-device power (from its last two samples), energy so far and, for a run
    that expects a number of steps, the forecast of its totals (footprint.core.steps)."""
    from footprint.core.model import effective_status, load_forecast

    out = []
    for row in store.running_runs():
        if effective_status(row) != "running":
            continue
        devices = []
        for d in store.run_devices(row["id"]):
            last = store.latest_samples(d["id"], 2)
            first = store.first_sample(d["id"])
            power = ((last[0][1] - last[1][1]) / (last[0][0] - last[1][0])
                     if len(last) == 2 and last[0][0] > last[1][0] else None)
            energy = last[0][1] - first[1] if last and first else None
            devices.append({"device": f"{d['kind']}:{d['idx']}", "source": d["source"], "power_w": power,
                            "energy_j": energy})
        forecast = load_forecast(store, row["id"])
        out.append({"id": row["id"], "name": row["name"], "elapsed_s": time.time() - (row["started_at"] or
                                                                                      row["created_at"]),
                    "devices": devices, "forecast": forecast.to_dict() if forecast is not None else None})
    return out


def _table(runs: list[dict[str, Any]], db: str) -> Any:
    from rich.table import Table

    from .reports.console import fmt_j, fmt_s

    table = Table(title=f"footprint watch · {db} · {time.strftime('%H:%M:%S')}", title_justify="left")
    for col in ("run", "elapsed", "device", "power", "energy so far", "source"):
        table.add_column(col, justify="right" if col in ("power", "energy so far", "elapsed") else "left")
    if not runs:
        table.add_row("no run is recording", "", "", "", "", "")
    for r in runs:
        for i, d in enumerate(r["devices"] or [{"device": "-", "power_w": None, "energy_j": None, "source": ""}]):
            table.add_row(f"{r['id']} {r['name']}" if i == 0 else "", fmt_s(r["elapsed_s"]) if i == 0 else "",
                          d["device"], f"{d['power_w']:,.1f} W" if d["power_w"] is not None else "…",
                          fmt_j(d["energy_j"]), d["source"])
        f = r.get("forecast")
        if f is not None:
            steps = f"{f['steps_done']}/{f['steps_expected']} {f['span']}"
            if f["energy_j"] is None:
                table.add_row("", "", "forecast", "", "…", steps)
                continue
            spread = f" ({fmt_j(f['energy_j_low'])}–{fmt_j(f['energy_j_high'])})" if f["energy_j_low"] is not None \
                else ""
            # the forecast's row: its predicted time under elapsed, its predicted energy under energy
            table.add_row("", fmt_s(f["duration_s"]), "forecast", "", fmt_j(f["energy_j"]) + spread,
                          steps + (f" · {f['total_co2e_g']:.4g} g CO2e" if f["total_co2e_g"] is not None else ""))
    return table


def watch(db: str | None, *, every: float = 1.0, once: bool = False) -> int:
    from rich.console import Console
    from rich.live import Live

    store = Store(db or default_db_path(), create=False, readonly=True)
    # a pipe or file has no width of its own: do not squeeze names into 80 columns
    console = Console(file=sys.stdout, width=None if sys.stdout.isatty() else 120)
    if once:
        console.print(_table(snapshot(store), store.path))
        return 0
    try:
        with Live(_table(snapshot(store), store.path), console=console, auto_refresh=False) as live:
            while True:
                time.sleep(every)
                live.update(_table(snapshot(store), store.path), refresh=True)
    except KeyboardInterrupt:
        return 0
