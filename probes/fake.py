"""An in-memory probe for tests and examples: constant power per device, on a clock the test may drive."""

from __future__ import annotations

from .base import Device, Probe, Reading

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from .base import Clock


class _CallableClock:
    """Adapts a plain `() -> seconds` function (the older FakeProbe argument) to the clock interface."""

    fake = True

    def __init__(self, func: Callable[[], float]) -> None:
        self.now = func
        self.monotonic = func


class FakeProbe(Probe):
    """Devices named "kind:index" at constant watts: energy is exactly watts x time since `open()`."""

    name = "fake"

    def __init__(self, powers_w: dict[str, float] | None = None, measured: bool = True,
                 clock: Clock | Callable[[], float] | None = None, name: str = "fake",
                 update_period_s: float = 0.0) -> None:
        if callable(clock) and not hasattr(clock, "now"):
            clock = _CallableClock(clock)
        super().__init__(clock=clock)  # type: ignore[arg-type]
        self.powers_w = {"cpu:0": 50.0} if powers_w is None else powers_w
        self.measured = measured
        self.name = name
        self.update_period_s = update_period_s
        self._t0: float | None = None

    def open(self) -> list[Device]:
        self.devices = []
        for key in self.powers_w:
            kind, _, idx = key.partition(":")
            self.devices.append(Device(kind=kind, index=int(idx or 0), name=f"fake {kind}", source="fake",
                                       measured=self.measured, update_period_s=self.update_period_s))
        self._t0 = self.clock.now()
        return self.devices

    def read(self) -> list[Reading]:
        t = self.clock.now()
        t0 = self._t0 if self._t0 is not None else t
        return [Reading(d, t, self.powers_w[d.key] * (t - t0), self.powers_w[d.key]) for d in self.devices]
