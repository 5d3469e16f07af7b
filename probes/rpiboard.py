"""Raspberry Pi 4 and older: a labelled estimate from published whole-board measurements.

These boards have no power ADC (the Pi 5's PMIC readings are in `rpi.py`), and the generic CPU estimate would
take CodeCarbon's 85 W default for their unlisted ARM CPU, twenty times what the board draws. The board is
named by the device tree's model string (`/sys/firmware/devicetree/base/model`, which `/proc/device-tree`
links to; under `FOOTPRINT_SYSFS` like every sysfs probe), e.g. "Raspberry Pi 4 Model B Rev 1.4", and looked up
in `BOARDS`: the whole board's power at idle and with every core busy, measured at its 5 V input.

Model: P = idle + (max - idle) x utilisation, utilisation from /proc/stat as for the CPU estimate. Published
figures are for the whole board only (no rail is measured on these boards), so no SoC share is assumed; the
model is split by what depends on load:
- `cpu`: (max - idle) x utilisation, what CPU load adds over idle (the SoC's cores, and the memory and
  regulator losses that follow them);
- `board`: the idle floor, constant: the SoC at idle, the RAM, the USB / Ethernet controllers, the regulators.
The RAM is inside the board figure, so no RAM estimate is added. USB devices, HATs, a fan and the power
supply's own loss are not in the figures. Linear in utilisation, so exact between any two reads
(`polled = False`), like the CPU estimate.
"""

from __future__ import annotations

from footprint.common.record import FrozenRecord

from .base import Availability, Device, Probe, ProbeError, Reading
from .estimate import CpuTimes, utilisation_period_s
from .hwmon import DEFAULT_SYSFS, sysfs_root

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

    from .base import Clock

SOURCE = "estimate:rpi-board-model"
MODEL_FILE = "firmware/devicetree/base/model"
PROC_MODEL = "/proc/device-tree/model"  # the same file, where /sys/firmware is not mounted
EXCLUDES = "USB devices, HATs, a fan and the power supply's loss are not included"


class BoardPower(FrozenRecord):
    """A board's whole power at its 5 V input: idle, and with every core busy; where the figures come from."""

    __slots__ = ("idle_w", "max_w", "source")

    def __init__(self, idle_w: float, max_w: float, source: str) -> None:
        self.idle_w = idle_w
        self.max_w = max_w
        self.source = source


_PIDRAMBLE = ("Jeff Geerling, pidramble.com/wiki/benchmarks/power-consumption: Raspberry Pi OS Lite, no peripherals, "
              "idle and `stress --cpu 4`")
# board (the model string without " Rev x.y") -> its power. Only boards with a published measurement: any other
# board (Pi 1, Zero W, 3 A+, 400, Compute Modules) falls back to the generic estimates, said by `footprint probes`
BOARDS: dict[str, BoardPower] = {
    "Raspberry Pi 4 Model B": BoardPower(2.7, 6.4, f"{_PIDRAMBLE}: 540 mA and 1280 mA at 5 V"),
    "Raspberry Pi 3 Model B Plus": BoardPower(1.9, 5.1, f"{_PIDRAMBLE}: 350 mA and 980 mA at 5 V"),
    "Raspberry Pi 3 Model B": BoardPower(1.4, 3.7, f"{_PIDRAMBLE}: 260 mA and 730 mA at 5 V"),
    "Raspberry Pi 2 Model B": BoardPower(1.1, 2.1, f"{_PIDRAMBLE}: 220 mA and 400 mA at 5 V"),
    "Raspberry Pi Zero": BoardPower(0.4, 1.2, f"{_PIDRAMBLE}: 80 mA and 240 mA at 5 V (one core)"),
    "Raspberry Pi Zero 2 W": BoardPower(
        0.6, 3.0, "idle: CNX Software, 'A deep dive into Raspberry Pi Zero 2 W's power consumption' (2021-12-09), "
                  "120 mA at 5 V on Raspberry Pi OS Bullseye; full load: about 3 W, an uncertain figure (commonly "
                  "quoted, not checked against a published stress measurement)"),
}
MEASURED_ELSEWHERE = {"Raspberry Pi 5": "a Raspberry Pi 5 is measured through its PMIC (the rpi probe), not estimated"}


def board_model() -> str | None:
    """The device tree's model string ("Raspberry Pi 4 Model B Rev 1.4"), or None where there is none."""
    root = sysfs_root()
    paths: list[Path | str] = [root / MODEL_FILE]
    if str(root) == DEFAULT_SYSFS:
        paths.append(PROC_MODEL)
    for path in paths:
        try:
            with open(path, "rb") as fh:
                text = fh.read(256).decode(errors="replace")
        except OSError:
            continue
        model = text.split("\x00", 1)[0].strip()  # a device-tree string ends with a NUL
        if model:
            return model
    return None


def board_name(model: str) -> str:
    """'Raspberry Pi 4 Model B Rev 1.4' -> 'Raspberry Pi 4 Model B': the revision does not change the power."""
    return model.split(" Rev ", 1)[0].strip()


def board_power(model: str) -> BoardPower | None:
    return BOARDS.get(board_name(model))


def load_w(board: BoardPower, utilisation: float) -> float:
    """What CPU load adds over idle: (max - idle) x utilisation."""
    return (board.max_w - board.idle_w) * utilisation


class RpiBoardEstimateProbe(Probe):
    """The board model of a Raspberry Pi without a power ADC; only on the boards in `BOARDS`."""

    name = "rpi-estimate"
    kinds = ("cpu", "board")
    node_kinds = kinds  # a board: once per node
    estimate = True
    polled = False

    def __init__(self, *, stat_path: str = "/proc/stat", clock: Clock | None = None) -> None:
        super().__init__(clock=clock)
        self._stat_path = stat_path
        self._cpu: CpuTimes | None = None
        self._energy_j: dict[str, float] = {}
        self._last_t = 0.0

    @classmethod
    def availability(cls) -> Availability:
        model = board_model()
        if model is None:
            return Availability(False, f"not a Raspberry Pi (no device-tree model in {sysfs_root() / MODEL_FILE})")
        board = board_power(model)
        if board is None:
            for prefix, why in MEASURED_ELSEWHERE.items():
                if board_name(model).startswith(prefix):
                    return Availability(False, f"{model}: {why}")
            if not model.startswith("Raspberry Pi"):
                return Availability(False, f"not a Raspberry Pi ({model})")
            return Availability(False, f"{model}: no published power figures for this board in the table: the "
                                       "generic CPU and RAM estimates are used")
        return Availability(True, f"{model} (device tree): whole board {board.idle_w:g} W idle + "
                                  f"{board.max_w - board.idle_w:g} W x CPU utilisation up to {board.max_w:g} W "
                                  f"({board.source}), in place of the generic CPU and RAM estimates",
                            ("cpu", "ram", "board"))

    def open(self) -> list[Device]:
        model = board_model()
        board = board_power(model) if model is not None else None
        if model is None or board is None:
            raise ProbeError("not a Raspberry Pi board in the table (see `footprint probes`)")
        self.board = board
        where = f"{board.source}; {EXCLUDES}"
        wanted = [k for k in self.kinds if self.only_kinds is None or k in self.only_kinds]
        for kind in wanted:
            if kind == "cpu":
                dev = Device(kind="cpu", index=0, name=f"{model}: CPU load (board model)", source=SOURCE,
                             measured=False, update_period_s=utilisation_period_s(),
                             note=f"what CPU load adds over idle: ({board.max_w:g} - {board.idle_w:g}) W x "
                                  f"utilisation; the SoC's idle draw is in the board device; {where}")
            else:
                dev = Device(kind="board", index=0, name=f"{model}: board at idle (board model)", source=SOURCE,
                             measured=False, update_period_s=0.0,
                             note=f"the whole board at idle, {board.idle_w:g} W, constant (SoC at idle, RAM, USB "
                                  f"and Ethernet controllers, regulators); {where}")
            self.devices.append(dev)
            self._energy_j[kind] = 0.0
        if not self.devices:
            raise ProbeError("nothing left to estimate: the CPU and the board are measured")
        self._cpu = CpuTimes(self._stat_path)
        self._last_t = self.clock.now()
        return self.devices

    def read(self) -> list[Reading]:
        if self._cpu is None:
            raise ProbeError("read before open")
        util = self._cpu.utilisation()  # the mean since the last read
        t = self.clock.now()
        power = {"cpu": load_w(self.board, util), "board": self.board.idle_w}
        dt = t - self._last_t
        if dt > 0:
            for kind in self._energy_j:
                self._energy_j[kind] += power[kind] * dt
            self._last_t = t
        return [Reading(dev, t, self._energy_j[dev.kind], power[dev.kind]) for dev in self.devices]

    def close(self) -> None:
        if self._cpu is not None:
            self._cpu.close()


PROBES = (RpiBoardEstimateProbe,)
