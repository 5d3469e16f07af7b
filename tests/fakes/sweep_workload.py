"""A stand-in generation workload for `footprint sweep` whose energy depends on its parameters, exactly.

While it "generates", it draws a known power from a fake powercap tree ($FOOTPRINT_POWERCAP, see
tests/fakes/powercap.py; nothing else advances that tree's counters): package-0 (cpu) at the watts of its
(model, batch) in TABLE and dram (ram) at RAM_W, for the busy seconds of TABLE. It writes the counters every
2 ms and once more at the very end, so the energy a `footprint run` around it reads is exactly
(cpu_w + RAM_W) × the busy time it measured, which it appends to $STANDIN_LOG as one JSON line.

It counts 4 × batch generated tokens and batch requests into the run it joins, and reports its quality:
with run.set_quality, or (--quality-file) as {"quality": q} in $FOOTPRINT_QUALITY_FILE.
Model "x" fails (exit 3) before doing anything. With $STANDIN_HOLD set to a model, that model writes
$STANDIN_MARKER and then waits (up to 60 s) to be interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

RAM_W = 2.0
# (model, batch) -> (cpu watts, busy seconds, quality)
TABLE = {
    ("s", 1): (30.0, 0.3, 0.70),
    ("s", 8): (60.0, 0.6, 0.70),
    ("m", 1): (40.0, 0.4, 0.85),
    ("m", 8): (400.0, 0.1, 0.80),
}
TOKENS_PER_REQUEST = 4


def zone_files(root: Path) -> dict[str, Path]:
    return {"cpu": root / "intel-rapl:0" / "energy_uj", "ram": root / "intel-rapl:0" / "intel-rapl:0:0" / "energy_uj"}


def burn(files: dict[str, Path], watts: dict[str, float], seconds: float) -> float:
    """Advance the counters at `watts` for about `seconds`; returns the exact busy time the counters hold."""
    start_uj = {k: int(p.read_text()) for k, p in files.items()}
    fds = {k: os.open(p, os.O_WRONLY) for k, p in files.items()}
    t0 = time.time()

    def write(t: float) -> None:
        for k, fd in fds.items():
            os.pwrite(fd, f"{start_uj[k] + round(watts[k] * (t - t0) * 1e6):<20}\n".encode(), 0)

    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            write(time.time())
            time.sleep(0.002)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    time.sleep(seconds)
    stop.set()
    thread.join()
    t1 = time.time()
    write(t1)  # the last write: what the counters hold from now on
    for fd in fds.values():
        os.close(fd)
    return t1 - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--quality-file", action="store_true", help="report quality through FOOTPRINT_QUALITY_FILE")
    ap.add_argument("--no-tokens", action="store_true", help="count nothing (a job whose unit is not a token)")
    args = ap.parse_args()
    if args.model == "x":
        print("model x: no such model", file=sys.stderr)
        return 3
    if os.environ.get("STANDIN_HOLD") == args.model:
        Path(os.environ["STANDIN_MARKER"]).write_text("started\n")
        time.sleep(60)
        return 0
    cpu_w, busy_s, quality = TABLE[(args.model, args.batch)]
    import footprint

    with footprint.track() as run:  # joins the run of the `footprint run` around us
        busy = burn(zone_files(Path(os.environ["FOOTPRINT_POWERCAP"])), {"cpu": cpu_w, "ram": RAM_W}, busy_s)
        if not args.no_tokens:
            run.add_tokens(TOKENS_PER_REQUEST * args.batch, kind="generated")
            run.add_tokens(args.batch, kind="requests")
        if args.quality_file:
            Path(os.environ["FOOTPRINT_QUALITY_FILE"]).write_text(json.dumps({"quality": quality,
                                                                               "metric": "stand-in"}))
        else:
            run.set_quality(quality, metric="stand-in")
    with open(os.environ["STANDIN_LOG"], "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"model": args.model, "batch": args.batch, "busy_s": busy, "cpu_w": cpu_w,
                             "ram_w": RAM_W, "param_env": os.environ.get("FOOTPRINT_PARAM_MODEL")}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
