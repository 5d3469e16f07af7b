"""A stand-in `adb` that answers the commands footprint sends to a phone, in their real output formats, for a
phone whose rails and battery draw known, constant power since FAKE_ADB_T0 (epoch seconds).

- `adb devices`: "List of devices attached", then "SERIAL<TAB>state" lines (adb's own format);
  FAKE_ADB_DEVICES="SERIAL:device,OTHER:unauthorized".
- `adb -s SERIAL shell dumpsys android.hardware.power.stats.IPowerStats/default`: the power stats HAL's dump as
  Pixel's implementation writes it (hardware/google/pixel/powerstats, PowerStats::dumpEnergyMeter): a
  "PowerStats HAL 2.0 energy meter" section with one "  %32s   %14.2f mWs" line per channel, named
  "[RAIL]:subsystem", holding the energy since boot. FAKE_ADB_RAILS="RAIL:subsystem=watts,..."; empty: a
  phone without on-device power monitors ("Can't find service", as dumpsys says). FAKE_ADB_LOG: a file that
  gets the time of each dump, to check the probe against.
- `adb -s SERIAL shell cat /sys/class/power_supply/battery/{current_now,voltage_now,status}`: the battery,
  FAKE_ADB_BATTERY="watts,current unit" with the unit "ua", "ma", "ua_neg" or "ma_neg" (negative while
  discharging, as some vendors report), at 3.85 V in µV; FAKE_ADB_STATUS (default Discharging).
- any other `adb [-s SERIAL] shell CMD`: CMD run here (the wrapped command of `footprint run --adb -- adb shell`).
FAKE_ADB_GONE: a file; while it exists the phone is unplugged ("error: device 'SERIAL' not found").
"""

import os
import subprocess
import sys
import time

SERVICE = "android.hardware.power.stats.IPowerStats/default"
BATTERY = "/sys/class/power_supply/battery/"
VOLTS = 3.85


def devices() -> dict[str, str]:
    out = {}
    for item in os.environ.get("FAKE_ADB_DEVICES", "FA8X31A01234:device").split(","):
        serial, _, state = item.partition(":")
        if serial:
            out[serial] = state or "device"
    return out


def dump(now: float) -> str:
    rails = os.environ.get("FAKE_ADB_RAILS", "")
    if not rails:
        return f"Can't find service: {SERVICE}\n"
    since = now - float(os.environ.get("FAKE_ADB_T0", "0"))
    lines = ["", "============= PowerStats HAL 2.0 state residencies ==============",
             f"  {'Entity':>16}   {'State':>18}   {'Total time':>16}   {'Total entries':>15}   "
             f"{'Last entry tstamp':>17}",
             f"  {'MIF':>16}   {'ACTIVE':>18}   {1000:13d} ms   {3:15d}   {900:14d} ms",
             "========== End of PowerStats HAL 2.0 state residencies ==========", "",
             "============= PowerStats HAL 2.0 energy consumers ==============",
             f"{'CPUCL0':<12} : {1234.5:14.2f} mWs",
             "========== End of PowerStats HAL 2.0 energy consumers ==========", "",
             "============= PowerStats HAL 2.0 energy meter ==============",
             f"  {'Channel':>32}   {'Cumulative Energy':>18}"]  # printf's "  %32s   %18s" and so on
    for item in rails.split(","):
        name, _, watts = item.partition("=")
        rail, _, subsystem = name.partition(":")
        lines.append(f"  {f'[{rail}]:{subsystem}':>32}   {float(watts) * since * 1000:14.2f} mWs")
    lines.append("========== End of PowerStats HAL 2.0 energy meter ==========")
    return "\n".join(lines) + "\n"


def battery(files: list[str]) -> str:
    watts, _, unit = os.environ.get("FAKE_ADB_BATTERY", "3.0,ua").partition(",")
    amps = float(watts) / VOLTS
    current = amps * (1e3 if unit.startswith("ma") else 1e6) * (-1 if unit.endswith("neg") else 1)
    values = {"current_now": str(round(current)), "voltage_now": str(round(VOLTS * 1e6)),
              "status": os.environ.get("FAKE_ADB_STATUS", "Discharging")}
    return "".join(values[f[len(BATTERY):]] + "\n" for f in files)


def main() -> int:
    args = sys.argv[1:]
    if args == ["devices"]:
        print("List of devices attached")
        for serial, state in devices().items():
            print(f"{serial}\t{state}")
        print()
        return 0
    serial = None
    if args[:1] == ["-s"]:
        serial, args = args[1], args[2:]
    attached = [s for s, state in devices().items() if state == "device"]
    gone = os.environ.get("FAKE_ADB_GONE")
    if (gone and os.path.exists(gone)) or (serial is not None and serial not in attached):
        print(f"error: device '{serial or ''}' not found", file=sys.stderr)
        return 1
    if not args or args[0] != "shell":
        print("adb: this stand-in answers devices and shell only", file=sys.stderr)
        return 1
    cmd = args[1:]
    if cmd == ["dumpsys", SERVICE]:
        now = time.time()
        log = os.environ.get("FAKE_ADB_LOG")
        if log:
            with open(log, "a") as f:
                f.write(f"{now!r}\n")
        sys.stdout.write(dump(now))
        return 0
    if cmd[:1] == ["cat"] and all(f.startswith(BATTERY) for f in cmd[1:]):
        sys.stdout.write(battery(cmd[1:]))
        return 0
    return subprocess.call(" ".join(cmd), shell=True)


if __name__ == "__main__":
    sys.exit(main())
