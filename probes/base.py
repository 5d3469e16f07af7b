"""The probe interface: one abstract method, `read`, plus optional open/close."""

from __future__ import annotations

import abc

from footprint.common import clock
from footprint.common.record import FrozenRecord, Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


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
    underlying counter changes: windows shorter than that are flagged as unreliable.
    """

    __slots__ = ("kind", "index", "name", "source", "measured", "update_period_s", "uuid", "power_limit_w", "note",
                 "_key")

    def __init__(self, kind: str, index: int, name: str, source: str, measured: bool, update_period_s: float = 0.0,
                 uuid: str | None = None, power_limit_w: float | None = None, note: str | None = None) -> None:
        self.kind = kind  # "gpu" | "cpu" | "ram"
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
        self.t = t  # wall-clock seconds at the read (footprint.common.clock.now(): immune to clock jumps)
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


class Probe(abc.ABC):
    """A source of energy readings for one or more devices.

    Subclasses implement `read`; `open` discovers devices (and may raise ProbeError), `close`
    releases them. `availability()` says, without side effects worth mentioning, whether the
    probe can work here and, if not, what the user could do about it.
    """

    name: str = "probe"
    devices: list[Device]
    # False for probes whose energy between two reads is exact however far apart the reads are (the
    # estimates): the sampler reads them at run and span edges and at each flush, not at every interval
    polled: bool = True

    def __init__(self) -> None:
        self.devices = []
        self.errors: dict[str, str] = {}  # device key -> why it could not be read (the others were)

    def open(self) -> list[Device]:
        return self.devices

    @abc.abstractmethod
    def read(self) -> list[Reading]:
        """Read every device now. Raise ProbeError if nothing could be read."""

    def close(self) -> None:
        return None

    @classmethod
    def availability(cls) -> Availability:
        return Availability(True, "always available")


class FakeProbe(Probe):
    """An in-memory probe for tests: constant power per device on a clock the test may drive."""

    def __init__(self, powers_w: dict[str, float] | None = None, measured: bool = True,
                 clock: Callable[[], float] | None = None, name: str = "fake") -> None:
        super().__init__()
        self.powers_w = {"cpu:0": 50.0} if powers_w is None else powers_w
        self.measured = measured
        self.clock = clock  # seconds; footprint.common.clock.now by default
        self.name = name
        self._t0: float | None = None

    def _now(self) -> float:
        return self.clock() if self.clock is not None else clock.now()

    def open(self) -> list[Device]:
        self.devices = []
        for key, _ in self.powers_w.items():
            kind, _, idx = key.partition(":")
            self.devices.append(
                Device(kind=kind, index=int(idx or 0), name=f"fake {kind}", source="fake",
                       measured=self.measured)
            )
        self._t0 = self._now()
        return self.devices

    def read(self) -> list[Reading]:
        t = self._now()
        t0 = self._t0 if self._t0 is not None else t
        return [Reading(d, t, self.powers_w[d.key] * (t - t0), self.powers_w[d.key]) for d in self.devices]
