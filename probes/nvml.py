"""NVIDIA GPUs through NVML (the real pynvml, from the nvidia-ml-py package)."""

from __future__ import annotations

import contextlib
import os
import sys

from .base import Availability, Device, PowerIntegrator, Probe, ProbeError, Reading

TYPE_CHECKING = False  # importing typing costs start-up time; annotations need it only when checked
if TYPE_CHECKING:
    from typing import Any

    from .base import Clock

MIG_NOTE = (
    "MIG mode is on: NVML reports energy for the whole GPU only, so per-slice energy is not "
    "measurable; this figure covers every MIG slice on the card"
)


def _nvml() -> Any:
    import pynvml  # deferred: importing it costs start-up time on machines without GPUs

    return pynvml


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def visible_gpus(env: str | None, uuids: list[str]) -> list[int]:
    """NVML indices selected by a CUDA_VISIBLE_DEVICES value (None: all).

    Like CUDA, entries are indices, full UUIDs or unique UUID prefixes, and the list stops at the
    first entry that matches nothing. MIG-<uuid> entries select nothing whole-GPU-wise here: the
    caller sees the parent GPU through the UUID list only if it is also named.
    """
    if env is None:
        return list(range(len(uuids)))
    chosen: list[int] = []
    for raw in env.split(","):
        entry = raw.strip()
        if not entry:
            break
        if entry.isdigit():
            idx = int(entry)
            if idx >= len(uuids):
                break
            chosen.append(idx)
            continue
        prefix = entry if entry.startswith("GPU-") else "GPU-" + entry
        matches = [i for i, u in enumerate(uuids) if u.startswith(prefix)]
        if len(matches) != 1:
            break
        chosen.append(matches[0])
    # CUDA ignores repeats; so do we
    return list(dict.fromkeys(chosen))


def _layout() -> tuple[list[int], int] | None:
    """(NVML indices CUDA_VISIBLE_DEVICES selects, in CUDA order; GPUs on the machine), None without NVML."""
    try:
        nv = _nvml()
        nv.nvmlInit()
    except Exception:
        return None
    try:
        count = int(nv.nvmlDeviceGetCount())
        uuids = [_text(nv.nvmlDeviceGetUUID(nv.nvmlDeviceGetHandleByIndex(i))) for i in range(count)]
    except Exception:
        return None
    finally:
        with contextlib.suppress(Exception):
            nv.nvmlShutdown()
    return visible_gpus(os.environ.get("CUDA_VISIBLE_DEVICES"), uuids), count


def visible_layout() -> tuple[int, int] | None:
    """(GPUs this process sees through CUDA_VISIBLE_DEVICES, GPUs on the machine); None without NVML."""
    layout = _layout()
    return None if layout is None else (len(layout[0]), layout[1])


def cuda_ordinals_of(nvml_indices: list[int]) -> set[int]:
    """The CUDA ordinals (cuda:N in this process) of NVML GPU indices; GPUs it cannot see are left out."""
    layout = _layout()
    visible = layout[0] if layout is not None else list(range(max(nvml_indices, default=-1) + 1))
    return {visible.index(i) for i in nvml_indices if i in visible}


class NvmlProbe(Probe):
    """Energy from nvmlDeviceGetTotalEnergyConsumption (mJ, Volta and newer) where supported, else
    power (NVML_FI_DEV_POWER_INSTANT where available, else nvmlDeviceGetPowerUsage) integrated over
    the reads."""

    name = "nvml"
    kinds = ("gpu",)

    @classmethod
    def create(cls, *, cuda_ordinals: list[int] | None = None) -> NvmlProbe:
        return cls(cuda_ordinals=cuda_ordinals)

    def __init__(self, indices: list[int] | None = None, *, cuda_ordinals: list[int] | None = None,
                 clock: Clock | None = None) -> None:
        """`indices`: NVML indices to measure. `cuda_ordinals`: positions in CUDA_VISIBLE_DEVICES (what a
        rank calls cuda:N). Neither: every visible GPU."""
        super().__init__(clock=clock)
        self._indices = indices
        self._ordinals = cuda_ordinals
        self._handles: list[Any] = []
        self._modes: list[str] = []
        self._first_mj: list[int | None] = []
        self._integrators: list[PowerIntegrator] = []
        self._open = False

    @classmethod
    def availability(cls) -> Availability:
        import ctypes

        try:
            # fast path: no driver library, no need to import pynvml (which costs start-up time)
            ctypes.CDLL("libnvidia-ml.so.1")
        except OSError:
            return Availability(False, "NVML unavailable: libnvidia-ml.so.1 not found (no NVIDIA driver here?)")
        try:
            nv = _nvml()
            nv.nvmlInit()
        except ImportError:
            return Availability(False, "pynvml is not installed (pip install nvidia-ml-py)")
        except Exception as exc:  # NVMLError_LibraryNotFound and friends
            return Availability(False, f"NVML unavailable: {_text(exc)} (no NVIDIA driver here?)")
        try:
            count = int(nv.nvmlDeviceGetCount())
        finally:
            nv.nvmlShutdown()
        if count == 0:
            return Availability(False, "NVML found no GPU")
        return Availability(True, f"NVML sees {count} GPU(s)")

    def open(self) -> list[Device]:
        nv = _nvml()
        try:
            nv.nvmlInit()
        except Exception as exc:
            raise ProbeError(f"NVML unavailable: {_text(exc)}") from exc
        self._open = True
        count = int(nv.nvmlDeviceGetCount())
        handles = [nv.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        uuids = [_text(nv.nvmlDeviceGetUUID(h)) for h in handles]
        indices = self._indices
        if indices is None:
            indices = visible_gpus(os.environ.get("CUDA_VISIBLE_DEVICES"), uuids)
            if self._ordinals is not None:
                absent = [o for o in self._ordinals if not 0 <= o < len(indices)]
                if absent:
                    print(f"footprint: {', '.join(f'cuda:{o}' for o in absent)} not among the {len(indices)} "
                          "GPU(s) this process sees: not measured here (a rank sharing a GPU leaves it to the "
                          "lower rank; else set FOOTPRINT_GPUS)", file=sys.stderr)
                indices = [indices[o] for o in self._ordinals if 0 <= o < len(indices)]
        for i in indices:
            h = handles[i]
            mode, period = self._pick_mode(nv, h)
            limit: float | None
            try:
                limit = nv.nvmlDeviceGetEnforcedPowerLimit(h) / 1000.0
            except Exception:
                limit = None
            note = None
            try:
                if nv.nvmlDeviceGetMigMode(h)[0] == 1:
                    note = MIG_NOTE
            except Exception:
                pass  # not MIG-capable
            self.devices.append(
                Device(kind="gpu", index=i, name=_text(nv.nvmlDeviceGetName(h)), source=mode,
                       measured=True, update_period_s=period, uuid=uuids[i], power_limit_w=limit,
                       note=note)
            )
            self._handles.append(h)
            self._modes.append(mode)
            self._first_mj.append(None)
            self._integrators.append(PowerIntegrator())
        return self.devices

    @staticmethod
    def _pick_mode(nv: Any, h: Any) -> tuple[str, float]:
        try:
            nv.nvmlDeviceGetTotalEnergyConsumption(h)
            # The counter advances about every 20-100 ms depending on the GPU generation.
            return "nvml-energy", 0.1
        except Exception:
            pass
        try:
            v = nv.nvmlDeviceGetFieldValues(h, [nv.NVML_FI_DEV_POWER_INSTANT])[0]
            if v.nvmlReturn == 0:
                return "nvml-power-instant", 0.1
        except Exception:
            pass
        # nvmlDeviceGetPowerUsage is a 1-second average on Ampere and newer.
        return "nvml-power", 1.0

    def read(self) -> list[Reading]:
        nv = _nvml()
        out: list[Reading] = []
        for k, dev in enumerate(self.devices):
            h = self._handles[k]
            try:
                if self._modes[k] == "nvml-energy":
                    mj = int(nv.nvmlDeviceGetTotalEnergyConsumption(h))
                    t = self.clock.now()
                    first = self._first_mj[k]
                    if first is None:
                        self._first_mj[k] = first = mj
                    out.append(Reading(dev, t, (mj - first) / 1000.0))
                    continue
                if self._modes[k] == "nvml-power-instant":
                    v = nv.nvmlDeviceGetFieldValues(h, [nv.NVML_FI_DEV_POWER_INSTANT])[0]
                    if v.nvmlReturn != 0:
                        raise ProbeError(f"field value error {v.nvmlReturn}")
                    mw = float(v.value.uiVal)
                else:
                    mw = float(nv.nvmlDeviceGetPowerUsage(h))
                t = self.clock.now()
                p = mw / 1000.0
                out.append(Reading(dev, t, self._integrators[k].add(t, p), p))
            except Exception as exc:  # one GPU failing must not stop the others
                self.errors[dev.key] = _text(exc) or type(exc).__name__
        if self.devices and not out:
            raise ProbeError("no GPU could be read: " + "; ".join(f"{k}: {v}" for k, v in self.errors.items()))
        return out

    def close(self) -> None:
        if self._open:
            self._open = False
            with contextlib.suppress(Exception):
                _nvml().nvmlShutdown()


PROBES = (NvmlProbe,)
