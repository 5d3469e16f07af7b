"""The probe contract (`Probe`), the records probes produce, and power integration for power-only sources."""

from __future__ import annotations

import abc

from footprint.common.clock import SYSTEM
from footprint.common.record import FrozenRecord, Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Protocol

    class Clock(Protocol):
        fake: bool

        def now(self) -> float: ...

        def monotonic(self) -> float: ...


class ProbeError(Exception):
    """A probe could not read a device; the run goes on with the other probes."""


class Availability(FrozenRecord):
    __slots__ = ("ok", "reason", "kinds")

    def __init__(self, ok: bool, reason: str, kinds: tuple[str, ...] = ()) -> None:
        self.ok = ok
        self.reason = reason
        self.kinds = kinds  # what it would measure here: ("cpu", "ram") for RAPL with dram zones


class Device(FrozenRecord):
    """One thing that draws power: a GPU, a CPU package, the RAM of a socket.

    `source` names where its figures come from: `nvml-energy`, `nvml-power`, `rapl`,
    `estimate:<model>`. `measured` is False for estimates. `update_period_s` is how often the
    underlying counter changes (for an estimate: the shortest window it resolves, such as the CPU estimate's
    utilisation ticks): windows shorter than that are flagged as unreliable.
    """

    __slots__ = ("kind", "index", "name", "source", "measured", "update_period_s", "uuid", "power_limit_w", "note",
                 "_key")

    def __init__(self, kind: str, index: int, name: str, source: str, measured: bool, update_period_s: float = 0.0,
                 uuid: str | None = None, power_limit_w: float | None = None, note: str | None = None) -> None:
        self.kind = kind  # "gpu" | "cpu" | "ram" | any other ("soc", "module", ...)
        self.index = index
        self.name = name
        self.source = source
        self.measured = measured
        self.update_period_s = update_period_s
        self.uuid = uuid
        self.power_limit_w = power_limit_w
        self.note = note
        self._key = f"{kind}:{index}"  # looked up for every sample: built once

    @property
    def key(self) -> str:
        return self._key


class Reading(FrozenRecord):
    """One read of one device.

    `energy_j` is cumulative since the probe was opened (unwrapped, never decreasing); probes that
    only see power integrate it themselves. `power_w` is the instantaneous power where known.
    """

    __slots__ = ("device", "t", "energy_j", "power_w")

    def __init__(self, device: Device, t: float, energy_j: float, power_w: float | None = None) -> None:
        self.device = device
        self.t = t  # wall-clock seconds at the read (the probe's clock: immune to wall-clock jumps)
        self.energy_j = energy_j
        self.power_w = power_w


class PowerIntegrator(Record):
    """Trapezoidal integration of power readings into cumulative energy, for power-only sources."""

    __slots__ = ("energy_j", "last_t", "last_p")

    def __init__(self, energy_j: float = 0.0, last_t: float | None = None, last_p: float | None = None) -> None:
        self.energy_j = energy_j
        self.last_t = last_t
        self.last_p = last_p

    def add(self, t: float, power_w: float) -> float:
        if self.last_t is not None and self.last_p is not None:
            dt = t - self.last_t
            if dt > 0:  # a backwards step adds nothing rather than negative energy
                self.energy_j += 0.5 * (power_w + self.last_p) * dt
        self.last_t, self.last_p = t, power_w
        return self.energy_j


class EnergyCounter:
    """A hardware energy counter that wraps (RAPL, hwmon, AMD SMI): its last raw value, and the unwrapped total.

    The counter counts units of `scale_uj` µJ: 1 for the µJ counters of sysfs, AMD SMI's counter resolution
    (15.3 µJ on MI200 and MI300) for its accumulator. `last_uj`, `total_uj` and the `unwrap` function's
    arguments are in those counts.
    """

    __slots__ = ("counter", "last_uj", "last_t", "total_uj", "power_w", "scale_uj")

    def __init__(self, counter: str, last_uj: int, last_t: float, scale_uj: float = 1.0) -> None:
        self.counter = counter  # the file (or function) it is read from
        self.last_uj = last_uj
        self.last_t = last_t
        self.total_uj = 0
        self.power_w: float | None = None  # recent mean power: what tells a wrap from a restart
        self.scale_uj = scale_uj

    def advance(self, cur_uj: int, t: float, unwrap: Callable[[int, int, float | None], int]) -> float:
        """Take a new raw read at time t; `unwrap(prev, cur, expected)` gives the counts in between. Returns the
        total energy in joules."""
        dt = t - self.last_t
        expected = self.power_w * dt * 1e6 / self.scale_uj if self.power_w is not None and dt > 0 else None
        delta = unwrap(self.last_uj, cur_uj, expected)
        if dt >= 0.005:  # shorter windows give a noisy power, useless for unwrapping
            self.power_w = delta * self.scale_uj / 1e6 / dt
        self.total_uj += delta
        self.last_uj, self.last_t = cur_uj, t
        return self.total_uj * self.scale_uj / 1e6


class Probe(abc.ABC):
    """A source of energy readings for one or more devices. The whole contract is here:

    - `name` (class attribute): how `footprint probes`, errors and the registry call it.
    - `kinds`: the device kinds it can measure ("gpu", "cpu", "ram", or any other: every kind is counted in
      totals). `estimate = True` marks a labelled model rather than a counter; estimates are used only for
      kinds that no available measuring probe covers.
    - `availability()` (classmethod, no side effects worth mentioning): can it work here, and if not, what
      could the user do; `Availability.kinds` says which kinds it would measure on this machine.
    - `create(cuda_ordinals=...)` (classmethod): an instance for this process; override to take the
      selection (e.g. the GPUs a rank uses).
    - `open()` discovers devices, stores them in `self.devices` and returns them; raises ProbeError if none.
    - `read()` reads every device now: one `Reading` per device with cumulative, never-decreasing energy;
      raises ProbeError only if nothing could be read. A device that failed while others were read goes into
      `self.errors` (device key -> why), which the sampler collects with `take_errors()`.
    - `close()` releases what `open()` took.
    - `polled = False` for probes whose energy between two reads is exact however far apart they are (the
      estimates): the sampler reads them at run and span edges and at flushes only.
    - `clock`: where reading times come from (`footprint.common.clock.SYSTEM`, or a fake clock in tests).
    - `only_kinds`: set by `default_probes()` to the kinds this probe is to measure, when a probe earlier in
      the registry already measures the others (or a rank must not measure them); a probe whose kinds come
      from separate counters opens devices of those of its `kinds` only. None (the default): every kind.
    - `node_kinds`: kinds this probe measures for the whole node, beyond cpu and ram (which always are): GPUs
      that cannot be matched to a rank's CUDA ordinals, a board's power rails. In a distributed job only the
      rank that measures the node (`default_probes(node=True)`) measures them.

    Subclasses call `super().__init__()`. A probe module lists its probes in `PROBES`, and its module name
    goes into `footprint.probes.PROBE_MODULES`.
    """

    name: str = "probe"
    kinds: tuple[str, ...] = ()
    estimate: bool = False
    polled: bool = True
    node_kinds: tuple[str, ...] = ()
    only_kinds: frozenset[str] | None = None
    devices: list[Device]

    def __init__(self, *, clock: Clock | None = None) -> None:
        self.devices = []
        self.errors: dict[str, str] = {}
        self.clock: Clock = clock if clock is not None else SYSTEM

    @classmethod
    def create(cls, *, cuda_ordinals: list[int] | None = None) -> Probe:
        return cls()

    def open(self) -> list[Device]:
        return self.devices

    @abc.abstractmethod
    def read(self) -> list[Reading]:
        """Read every device now. Raise ProbeError if nothing could be read."""

    def close(self) -> None:
        return None

    def take_errors(self) -> dict[str, str]:
        """The per-device errors since the last call (and forget them)."""
        errors = getattr(self, "errors", None)  # a user's probe may have skipped Probe.__init__
        if not errors:
            return {}
        taken = dict(errors)
        errors.clear()
        return taken

    @classmethod
    def availability(cls) -> Availability:
        return Availability(True, "always available")
