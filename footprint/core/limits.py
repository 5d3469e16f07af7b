"""The read model of GPU power limits: what `footprint run --power-limit` set or the tuner profiled and chose,
and whether every GPU got its original limit back (footprint.powerlimit writes these rows)."""

from __future__ import annotations

from footprint.common.record import Record
from footprint.core.store import Store

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class PowerLimitReport(Record):
    """`chosen_w`: the limit the run kept (tuned or set); `objective` and `source` (profiled, profile:<path>,
    --power-limit); `profiled`: each profiled limit (limit_w, steps, energy_j, time_s, gpus, score, chosen);
    `changes`: every change and restore (t, gpu, limit_w, previous_w, action, actor, restore_command);
    `restored`: every GPU's last change put its original limit back."""

    __slots__ = ("chosen_w", "objective", "source", "profiled", "changes", "restored")

    def __init__(self, chosen_w: float | None, objective: str | None, source: str | None,
                 profiled: list[dict[str, Any]], changes: list[dict[str, Any]], restored: bool) -> None:
        self.chosen_w = chosen_w
        self.objective = objective
        self.source = source
        self.profiled = profiled
        self.changes = changes
        self.restored = restored


def load_power_limits(store: Store, run_id: int, *, live: bool = False) -> tuple[PowerLimitReport | None, list[str]]:
    """The run's power limits (None if it changed none) and the warnings they call for: a GPU left at a limit
    footprint set (its process killed with no watchdog, or a restore that failed), with the command to undo it.
    `live`: the run is still going, so a limit not restored yet is no warning."""
    rows = store.power_limits(run_id)
    changes = store.power_limit_changes(run_id)
    if not rows and not changes:
        return None, []
    chosen = next((r for r in rows if r["chosen"]), None)
    profiled = [{k: r[k] for k in ("limit_w", "steps", "energy_j", "time_s", "gpus", "score")}
                | {"chosen": bool(r["chosen"])} for r in rows if r["steps"] is not None]
    last: dict[int, dict[str, Any]] = {}
    for c in changes:
        last[int(c["idx"])] = c
    warnings = [f"gpu:{idx}'s power limit was left at {c['limit_w'] if c['action'] == 'set' else c['previous_w']:g} W "
                f"(footprint's restore did not happen): put it back with {c['restore_command']}"
                for idx, c in sorted(last.items()) if c["action"] != "restored" and not live]
    report = PowerLimitReport(
        chosen_w=chosen["limit_w"] if chosen else None, objective=chosen["objective"] if chosen else None,
        source=chosen["source"] if chosen else None, profiled=profiled,
        changes=[{"t": c["t"], "gpu": f"gpu:{c['idx']}", "limit_w": c["limit_w"], "previous_w": c["previous_w"],
                  "action": c["action"], "actor": c["actor"], "restore_command": c["restore_command"]}
                 for c in changes],
        restored=all(c["action"] == "restored" for c in last.values()))
    return report, warnings
