"""A stand-in `macmon` for tests: `macmon pipe [-i MS] [-s N]` prints one JSON object per line, as the real one.

The format is macmon's (github.com/vladkens/macmon, v0.8: `src_app/main.rs` prints `Metrics` of
`src_lib/metrics.rs` with serde_json, one object per line, plus `timestamp` in RFC 3339; the readme's "Output
format" shows a whole sample). Each sample's powers, in W, are the means over the interval since the previous
one: `cpu_power`, `gpu_power`, `ane_power`, `ram_power`, `gpu_ram_power`, `all_power` (= cpu + gpu + ane)
and `sys_power` (the whole machine, SMC's PSTR, at least all_power). As in macmon, the interval is clamped to
at least 100 ms and the next sample is due one interval after the previous one.

Settings (tools.py): FAKE_MACMON_POWER / FAKE_MACMON_RAMP (kinds cpu, gpu, ane, ram, gpu_ram, sys);
FAKE_MACMON_LOG: a file where the end of each sample's window is written (seconds since start), the ground
truth the test integrates over; FAKE_MACMON_SAMPLES=N: stop after N samples, as `-s N` does (for a reader that
does not pass -s); FAKE_MACMON_EXIT_AFTER=N: fail after N samples (exit 1, a message on stderr),
like a tool that dies mid-run.
"""

import json
import os
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.fakes.tools import Profile  # noqa: E402


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("pipe", "raw"):
        print("error: this stand-in only knows `macmon pipe`", file=sys.stderr)
        return 2
    interval_ms, samples = 1000, int(os.environ.get("FAKE_MACMON_SAMPLES", "0"))
    args = argv[1:]
    while args:
        opt = args.pop(0)
        if opt in ("-i", "--interval"):
            interval_ms = int(args.pop(0))
        elif opt in ("-s", "--samples"):
            samples = int(args.pop(0))
        else:
            print(f"error: unexpected argument '{opt}' found", file=sys.stderr)
            return 2
    interval = max(interval_ms, 100) / 1000
    profile = Profile.from_env("MACMON")
    log = os.environ.get("FAKE_MACMON_LOG")
    exit_after = int(os.environ.get("FAKE_MACMON_EXIT_AFTER", "0"))
    start, wall0 = time.monotonic(), datetime.now(timezone.utc)
    prev = 0.0
    count = 0
    while True:
        delay = start + prev + interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        now = time.monotonic() - start

        def mean(kind: str, a: float = prev, b: float = now) -> float:
            return float(f"{profile.mean(kind, a, b):.8g}")  # macmon's figures are f32: ~8 digits

        cpu, gpu, ane = mean("cpu"), mean("gpu"), mean("ane")
        sample = {
            "temp": {"cpu_temp_avg": 43.73614, "gpu_temp_avg": 36.95167},
            "memory": {"ram_total": 25769803776, "ram_usage": 20985479168, "swap_total": 4294967296,
                       "swap_usage": 2602434560},
            "fans": [],
            "cpu_scaled_ratio": 0.036854, "cpu_active_ratio": 0.092,
            "ecpu_freq_mhz": 1100, "ecpu_scaled_ratio": 0.082656614, "ecpu_active_ratio": 0.18,
            "pcpu_freq_mhz": 1800, "pcpu_scaled_ratio": 0.015181795, "pcpu_active_ratio": 0.04,
            "ecpu_cores": [], "pcpu_cores": [],
            "gpu_freq_mhz": 461, "gpu_scaled_ratio": 0.021497859, "gpu_active_ratio": 0.09,
            "cpu_power": cpu, "gpu_power": gpu, "ane_power": ane, "all_power": float(f"{cpu + gpu + ane:.8g}"),
            "sys_power": max(mean("sys"), cpu + gpu + ane), "ram_power": mean("ram"),
            "gpu_ram_power": mean("gpu_ram"),
            "cpu_usage_pct": 0.036854, "ecpu_usage": [1100, 0.082656614], "pcpu_usage": [1800, 0.015181795],
            "gpu_usage": [461, 0.021497859],
            # printed at the window's end: the interval between two timestamps is the window
            "timestamp": (wall0 + timedelta(seconds=now)).isoformat(),
        }
        sys.stdout.write(json.dumps(sample, separators=(",", ":")) + "\n")
        sys.stdout.flush()
        if log:
            with open(log, "a") as f:
                f.write(f"{now!r}\n")
        prev = now
        count += 1
        if exit_after and count >= exit_after:
            print("Error: IOReport subscription failed", file=sys.stderr)
            return 1
        if samples and count >= samples:
            return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (BrokenPipeError, KeyboardInterrupt):
        sys.exit(1)
