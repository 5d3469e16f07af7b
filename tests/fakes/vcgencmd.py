"""A stand-in `vcgencmd` for tests: `vcgencmd pmic_read_adc` prints a Raspberry Pi 5's PMIC readings.

The lines are the real ones of a Pi 5 (firmware's `pmic_read_adc`, as captured on boards and quoted by Pi 5
power tools): twelve rails with a current line `   VDD_CORE_A current(7)=0.56259000A` and a voltage line
`  VDD_CORE_V volt(15)=0.76798460V`, names right-aligned, channel numbers as the PMIC numbers them, then the
voltage-only EXT5V_V (the 5 V input) and BATT_V (the RTC battery), eight decimals. On an older board the
firmware has no such command and answers `error=1 error_msg="Command not registered"`.

Power per rail follows tools.py's profile (FAKE_VCGENCMD_POWER / FAKE_VCGENCMD_RAMP, keyed by rail name:
VDD_CORE=2.5,DDR_VDD2=0.3): each rail keeps its voltage and its current is power / voltage, at the instant it
runs, s seconds after FAKE_VCGENCMD_T0 (epoch, default 0) by the wall clock, or by the number in the file
FAKE_VCGENCMD_CLOCK when a test drives time itself. FAKE_VCGENCMD_BOARD=pi4 gives the older board's answer;
FAKE_VCGENCMD_FAIL_AFTER=PATH fails (as when /dev/vcio goes away) once that file exists.
"""

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.fakes.tools import Profile  # noqa: E402

# (rail, current channel, voltage channel, volts): a Pi 5's, in the order its firmware prints them
RAILS = [
    ("3V7_WL_SW", 0, 8, 3.70720000), ("3V3_SYS", 1, 9, 3.32580900), ("1V8_SYS", 2, 10, 1.80415000),
    ("DDR_VDD2", 3, 11, 1.11135400), ("DDR_VDDQ", 4, 12, 0.60329610), ("1V1_SYS", 5, 13, 1.11282000),
    ("0V8_SW", 6, 14, 0.80512740), ("VDD_CORE", 7, 15, 0.76798460), ("3V3_DAC", 17, 20, 3.32142500),
    ("3V3_ADC", 18, 21, 3.32966700), ("0V8_AON", 16, 19, 0.80175740), ("HDMI", 22, 23, 5.11746000),
]
VOLT_ONLY = [("EXT5V", 24, 5.14158000), ("BATT", 25, 3.28033900)]


def now_s() -> float:
    clock = os.environ.get("FAKE_VCGENCMD_CLOCK")
    if clock:
        return float(Path(clock).read_text())
    return time.time() - float(os.environ.get("FAKE_VCGENCMD_T0", "0"))


def pmic_read_adc() -> str:
    profile = Profile.from_env("VCGENCMD")
    s = now_s()
    lines = [f"{name + '_A':>12} current({ch})={profile.power(name, s) / volts:.8f}A" for name, ch, _, volts in RAILS]
    lines += [f"{name + '_V':>12} volt({ch})={volts:.8f}V" for name, _, ch, volts in RAILS]
    lines += [f"{name + '_V':>12} volt({ch})={volts:.8f}V" for name, ch, volts in VOLT_ONLY]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    fail = os.environ.get("FAKE_VCGENCMD_FAIL_AFTER")
    if fail and Path(fail).exists():
        print("VCHI initialization failed", file=sys.stderr)
        return 1
    if argv != ["pmic_read_adc"] or os.environ.get("FAKE_VCGENCMD_BOARD") == "pi4":
        print('error=1 error_msg="Command not registered"')
        return 1
    sys.stdout.write(pmic_read_adc())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
