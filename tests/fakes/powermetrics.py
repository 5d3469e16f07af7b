"""A stand-in `powermetrics` for tests: `powermetrics --samplers cpu_power,gpu_power,ane_power -f plist -i MS
[-n N] [-b 0]` streams plist samples, each followed by a NUL byte, as the real one does on Apple Silicon.

The sample's layout is a real one's (macOS 13.3, MacBookPro17,1; the M1 sample in graelo/pumas,
`tests/data/powermetrics-output-m1.xml`), cut to the keys a power reader meets: `elapsed_ns` (the sample's own
window), `processor` with its `clusters` and `cpu_energy`/`gpu_energy`/`ane_energy` (mJ over the window, whole
numbers) and `cpu_power`/`gpu_power`/`ane_power`/`combined_power` (mean mW, printed as %g: six significant
digits), then `thermal_pressure` and the `gpu` dict. Streams of several samples are split at NUL bytes (as
asitop reads them). Like the real tool, it refuses to run unless invoked as the superuser.

Settings (tools.py): FAKE_POWERMETRICS_POWER / FAKE_POWERMETRICS_RAMP (kinds cpu, gpu, ane; W);
FAKE_POWERMETRICS_LOG: where each window's end is written (seconds since start); FAKE_POWERMETRICS_SAMPLES=N: stop
after N samples (as -n N); FAKE_POWERMETRICS_EXIT_AFTER=N: fail after N samples; FAKE_POWERMETRICS_UID: the user
id it believes it runs as (not 0: it refuses, as without sudo).
"""

import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.fakes.tools import Profile  # noqa: E402

SAMPLE = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
<key>is_delta</key><true/>
<key>elapsed_ns</key><integer>{elapsed_ns}</integer>
<key>hw_model</key><string>MacBookPro17,1</string>
<key>kern_osversion</key><string>22E252</string>
<key>kern_bootargs</key><string></string>
<key>kern_boottime</key><integer>1680201708</integer>
<key>timestamp</key><date>{timestamp}</date>
<key>processor</key>
<dict>
<key>clusters</key>
<array>
<dict>
<key>name</key><string>E-Cluster</string>
<key>hw_resid_counters</key><true/>
<key>freq_hz</key><real>1.02287e+09</real>
<key>idle_ns</key><integer>1560486833</integer>
<key>idle_ratio</key><real>0.772993</real>
<key>dvfm_states</key>
<array>
<dict>
<key>freq</key><integer>972</integer>
<key>used_ns</key><integer>1856923416</integer>
<key>used_ratio</key><real>0.919834</real>
</dict>
</array>
<key>cpus</key>
<array>
<dict>
<key>cpu</key><integer>0</integer>
<key>freq_hz</key><real>1.04615e+09</real>
<key>idle_ns</key><integer>1832463458</integer>
<key>idle_ratio</key><real>0.907821</real>
</dict>
</array>
</dict>
</array>
<key>inst_retired</key><real>9.14962e+08</real>
<key>inst_per_clk</key><real>1.18317</real>
<key>cpu_energy</key>
<integer>{cpu_energy}</integer>
<key>cpu_power</key>
<real>{cpu_power}</real>
<key>gpu_energy</key>
<integer>{gpu_energy}</integer>
<key>gpu_power</key>
<real>{gpu_power}</real>
<key>ane_energy</key>
<integer>{ane_energy}</integer>
<key>ane_power</key>
<real>{ane_power}</real>
<key>combined_power</key>
<real>{combined_power}</real>
</dict>
<key>thermal_pressure</key><string>Nominal</string>
<key>gpu</key>
<dict>
<key>freq_hz</key><real>714.836</real>
<key>idle_ns</key><integer>1980028458</integer>
<key>idle_ratio</key><real>0.983341</real>
<key>gpu_energy</key><integer>{gpu_energy}</integer>
</dict>
</dict>
</plist>
"""


def main(argv: list[str]) -> int:
    if int(os.environ.get("FAKE_POWERMETRICS_UID", os.geteuid())) != 0:
        print("powermetrics must be invoked as the superuser", file=sys.stderr)
        return 1
    interval_ms, count_max, fmt, samplers = 5000, int(os.environ.get("FAKE_POWERMETRICS_SAMPLES", "-1")), "text", ""
    args = list(argv)
    while args:
        opt = args.pop(0)
        if opt in ("-i", "--sample-rate"):
            interval_ms = int(args.pop(0))
        elif opt in ("-n", "--sample-count"):
            count_max = int(args.pop(0))
        elif opt in ("-f", "--format"):
            fmt = args.pop(0)
        elif opt in ("-s", "--samplers"):
            samplers = args.pop(0)
        elif opt in ("-b", "--buffer-size"):
            args.pop(0)
        else:
            print(f"powermetrics: unrecognized option '{opt}'", file=sys.stderr)
            return 1
    if fmt != "plist" or not {"cpu_power", "gpu_power"} <= set(samplers.split(",")):
        print("this stand-in streams plist samples of the cpu_power and gpu_power samplers only", file=sys.stderr)
        return 1
    interval = interval_ms / 1000
    profile = Profile.from_env("POWERMETRICS")
    log = os.environ.get("FAKE_POWERMETRICS_LOG")
    exit_after = int(os.environ.get("FAKE_POWERMETRICS_EXIT_AFTER", "0"))
    start = time.monotonic()
    prev, prev_ns, count = 0.0, 0, 0
    out = sys.stdout.buffer
    while count_max < 0 or count < count_max:
        delay = start + prev + interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        now_ns = int((time.monotonic() - start) * 1e9)
        elapsed_ns = now_ns - prev_ns
        now = now_ns / 1e9
        mw = {k: profile.mean(k, prev, now) * 1000 for k in ("cpu", "gpu", "ane")}
        fields = {f"{k}_power": f"{v:g}" for k, v in mw.items()}
        fields.update({f"{k}_energy": str(round(v * elapsed_ns / 1e9)) for k, v in mw.items()})
        sample = SAMPLE.format(elapsed_ns=elapsed_ns, combined_power=f"{sum(mw.values()):g}",
                               timestamp=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), **fields)
        out.write(sample.encode() + b"\x00")
        out.flush()
        if log:
            with open(log, "a") as f:
                f.write(f"{now!r}\n")
        prev, prev_ns = now, now_ns
        count += 1
        if exit_after and count >= exit_after:
            print("powermetrics: sampler cpu_power stopped unexpectedly", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (BrokenPipeError, KeyboardInterrupt):
        sys.exit(1)
