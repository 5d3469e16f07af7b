"""The probe interface: one abstract method, `read`, plus optional open/close."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

from footprint import clock


class ProbeError(Exception):
    """A probe could not read a device; the run goes on with the other probes."""


@dataclass(frozen=True)
class Availability:
    ok: bool
    reason: str
    kinds: tuple[str, ...] = ()  # what it would measure here: ("cpu", "ram") for RAPL with dram zones


@dataclass(frozen=True)
class Device:
    """One thing that draws power: a GPU, a CPU package, the RAM of a socket.

    `source` names where its figures come from: `nvml-energy`, `nvml-power`, `rapl`,
    `estimate:<model>`. `measured` is False for estimates. `update_period_s` is how often the
    underlying counter changes: windows shorter than that are flagged as unreliable.
    """

    kind: str  # "gpu" | "cpu" | "ram"
    index: int
    name: str
    source: str
    measured: bool
    update_period_s: float = 0.0
    uuid: str | None = None
    power_limit_w: float | None = None
    note: str | None = None

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.index}"


@dataclass(frozen=True)
class Reading:
    """One read of one device.

    `energy_j` is cumulative since the probe was opened (unwrapped, never decreasing); probes that
    only see power integrate it themselves. `power_w` is the instantaneous power where known.
    """

    device: Device
    t: float  # wall-clock seconds at the read (footprint.clock.now(): immune to clock jumps)
    energy_j: float
    power_w: float | None = None


@dataclass
class PowerIntegrator:
    """Trapezoidal integration of power readings into cumulative energy, for power-only sources."""

    energy_j: float = 0.0
    last_t: float | None = None
    last_p: float | None = None

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

    def __init__(self) -> None:
        self.devices = []

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


@dataclass
class FakeProbe(Probe):
    """An in-memory probe for tests: constant power per device on a clock the test may drive."""

    powers_w: dict[str, float] = field(default_factory=lambda: {"cpu:0": 50.0})
    measured: bool = True
    clock: object = None  # callable returning seconds; time.time by default
    name: str = "fake"

    def __post_init__(self) -> None:
        super().__init__()
        self._t0: float | None = None

    def _now(self) -> float:
        return self.clock() if callable(self.clock) else clock.now()

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
