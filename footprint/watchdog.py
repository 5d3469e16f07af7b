"""`python -m footprint.watchdog`: puts GPU power limits back when the process that set them dies.

footprint.powerlimit starts it, in a session of its own, before changing any limit, and writes one JSON
line to its stdin: {"pid": ..., "gpus": {"<NVML index>": original W}, "db": ..., "run_id": ...}. Then it
waits. A line "done" means the limits were restored: it exits. The end of its stdin without "done" means
that process ended without restoring them (SIGKILL, a crash, the OOM killer; the kernel closes the pipe
whatever the way): it sets each GPU back to its original limit, says so on stderr and records it with the
run (power_limit_changes, actor "watchdog").
"""

from __future__ import annotations

import json
import signal
import sys

from footprint.common.clock import SYSTEM
from footprint.probes.gpulimit import LimitError, NvmlLimits, restore_command


def restore(order: dict[str, object]) -> int:
    """Set each GPU of `order` back to its original limit; 0 when all of them are."""
    gpus = order.get("gpus")
    assert isinstance(gpus, dict)
    done: list[tuple[int, float, float | None]] = []
    failed: list[str] = []
    with NvmlLimits() as nv:
        for key, watts in gpus.items():
            idx, original = int(key), float(watts)
            try:
                before: float | None = nv.read(idx).current_w
                nv.set(idx, original)
                done.append((idx, original, before))
            except LimitError as exc:
                failed.append(f"{exc} (by hand: {restore_command(idx, original)})")
    pid = order.get("pid")
    if done:
        print(f"footprint: process {pid} ended without restoring the GPU power limit: "
              + ", ".join(f"gpu:{i} restored to {w:g} W" for i, w, _ in done), file=sys.stderr)
    if failed:
        print(f"footprint: process {pid} ended without restoring the GPU power limit, and this could not either: "
              + "; ".join(failed), file=sys.stderr)
    _record(order, done)
    return 1 if failed else 0


def _record(order: dict[str, object], done: list[tuple[int, float, float | None]]) -> None:
    db, run_id = order.get("db"), order.get("run_id")
    if not isinstance(db, str) or not isinstance(run_id, int) or not done:
        return
    try:
        from footprint.core.store import Store

        with Store(db, create=False) as store:
            for idx, watts, before in done:
                store.add_power_limit_change(run_id, t=SYSTEM.now(), idx=idx, limit_w=watts, previous_w=before,
                                             action="restored", actor="watchdog",
                                             restore_command=restore_command(idx, watts))
    except Exception as exc:  # the limits are back; only the record of it is lost
        print(f"footprint: the watchdog could not record the restore in {db}: {exc}", file=sys.stderr)


def main() -> int:
    # the terminal's signals are the watched process's business: this one ends with its pipe
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_IGN)
    line = sys.stdin.buffer.readline()
    if not line.strip():
        return 0  # told nothing: nothing to restore
    order = json.loads(line)
    for rest in sys.stdin.buffer:
        if rest.strip() == b"done":
            return 0
    return restore(order)


if __name__ == "__main__":
    sys.exit(main())
