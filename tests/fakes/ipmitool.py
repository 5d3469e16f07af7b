"""A stand-in `ipmitool` that answers `ipmitool dcmi power reading` in ipmitool's own output format
(lib/ipmi_dcmi.c, ipmi_dcmi_pwr_rd(): the labels padded to one column, "%8d Watts", the sampling period as
"%08u Seconds."), with the power of a known profile at the time of the call.

FAKE_IPMI_PROFILE: "W" (constant watts) or "W0,T1=W1,T2=W2" (W0 until epoch time T1, then W1, ...).
FAKE_IPMI_DELAY: seconds the BMC takes to answer (default 0.05); the power is taken halfway.
FAKE_IPMI_DOWN: a file; while it exists the device cannot be opened, as when the ipmi driver is unloaded.
FAKE_IPMI_STATE: "deactivated" for a BMC whose power reading is switched off.
"""

import os
import sys
import time


def watts_at(profile: str, t: float) -> float:
    first, *steps = profile.split(",")
    watts = float(first)
    for step in steps:
        at, _, w = step.partition("=")
        if t >= float(at):
            watts = float(w)
    return watts


def main() -> int:
    if sys.argv[1:] != ["dcmi", "power", "reading"]:
        print("ipmitool: this stand-in answers `dcmi power reading` only", file=sys.stderr)
        return 1
    down = os.environ.get("FAKE_IPMI_DOWN")
    if down and os.path.exists(down):
        print("Could not open device at /dev/ipmi0 or /dev/ipmi/0 or /dev/ipmidev/0: No such file or directory",
              file=sys.stderr)
        return 1
    delay = float(os.environ.get("FAKE_IPMI_DELAY", "0.05"))
    time.sleep(delay / 2)
    now = time.time()
    watts = round(watts_at(os.environ.get("FAKE_IPMI_PROFILE", "250"), now))
    time.sleep(delay / 2)
    state = os.environ.get("FAKE_IPMI_STATE", "activated")
    print()
    print(f"    Instantaneous power reading:              {watts:8d} Watts")
    print(f"    Minimum during sampling period:           {max(0, watts - 20):8d} Watts")
    print(f"    Maximum during sampling period:           {watts + 30:8d} Watts")
    print(f"    Average power reading over sample period: {watts:8d} Watts")
    print(f"    IPMI timestamp:                           {time.strftime('%a %b %d %H:%M:%S %Y', time.gmtime(now))}")
    print(f"    Sampling period:                          {1:08d} Seconds.")
    print(f"    Power reading state is:                   {state}")
    print()
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
