"""GPU power limits through NVML: read them (current, default, constraints) and set them.

Setting a limit needs root or CAP_SYS_ADMIN; NVML then answers NO_PERMISSION, raised here as
`NoPermission` so callers can say so in one line and carry on measuring. A limit is global to the GPU:
every process on the machine sees it, and it stays after the process that set it has ended, hence
footprint's restore (footprint/powerlimit.py) and its watchdog.
"""

from __future__ import annotations

import contextlib

from footprint.common.record import Record

from .base import ProbeError
from .nvml import _nvml, _text

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

NO_PERMISSION = 4  # NVML_ERROR_NO_PERMISSION


class LimitError(ProbeError):
    """A limit could not be read or set (message says which GPU and why)."""


class NoPermission(LimitError):
    """Setting a limit needs root or CAP_SYS_ADMIN."""


class GpuLimit(Record):
    """One GPU's power limit now, its default and the range the driver accepts, in W (NVML index)."""

    __slots__ = ("index", "current_w", "default_w", "min_w", "max_w")

    def __init__(self, index: int, current_w: float, default_w: float | None, min_w: float, max_w: float) -> None:
        self.index = index
        self.current_w = current_w
        self.default_w = default_w
        self.min_w = min_w
        self.max_w = max_w


def restore_command(index: int, watts: float) -> str:
    """The command that puts a GPU's limit back by hand (nvidia-smi's -i is the NVML index, as here)."""
    return f"sudo nvidia-smi -i {index} -pl {watts:g}"


class NvmlLimits:
    """NVML opened once for reading and setting limits: `with NvmlLimits() as nv: nv.set(0, 300.0)`."""

    def __init__(self) -> None:
        self._nv: Any = None
        self._handles: dict[int, Any] = {}

    def __enter__(self) -> NvmlLimits:
        self.open()
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def open(self) -> None:
        if self._nv is not None:
            return
        try:
            nv = _nvml()
            nv.nvmlInit()
        except Exception as exc:
            raise LimitError(f"NVML unavailable: {_text(exc) or type(exc).__name__}") from None
        self._nv = nv

    def close(self) -> None:
        if self._nv is not None:
            with contextlib.suppress(Exception):
                self._nv.nvmlShutdown()
            self._nv, self._handles = None, {}

    def _handle(self, index: int) -> Any:
        self.open()
        if index not in self._handles:
            try:
                self._handles[index] = self._nv.nvmlDeviceGetHandleByIndex(index)
            except Exception as exc:
                raise LimitError(f"gpu:{index}: {_text(exc) or type(exc).__name__}") from None
        return self._handles[index]

    def read(self, index: int) -> GpuLimit:
        h = self._handle(index)
        nv = self._nv
        try:
            current = nv.nvmlDeviceGetPowerManagementLimit(h) / 1000.0
            lo, hi = nv.nvmlDeviceGetPowerManagementLimitConstraints(h)
        except Exception as exc:
            raise LimitError(f"gpu:{index}: cannot read its power limit: {_text(exc) or type(exc).__name__}") \
                from None
        default: float | None
        try:
            default = nv.nvmlDeviceGetPowerManagementDefaultLimit(h) / 1000.0
        except Exception:
            default = None
        return GpuLimit(index, current, default, lo / 1000.0, hi / 1000.0)

    def set(self, index: int, watts: float) -> None:
        """Set gpu:index's limit to `watts` (W); NoPermission without root or CAP_SYS_ADMIN."""
        h = self._handle(index)
        try:
            self._nv.nvmlDeviceSetPowerManagementLimit(h, int(round(watts * 1000)))
        except Exception as exc:
            if getattr(exc, "value", None) == NO_PERMISSION:
                raise NoPermission(f"gpu:{index}: {_text(exc)}") from None
            raise LimitError(f"gpu:{index}: cannot set its power limit to {watts:g} W: "
                             f"{_text(exc) or type(exc).__name__}") from None
