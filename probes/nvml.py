"""NVIDIA GPUs through NVML (the real pynvml, from the nvidia-ml-py package)."""

from __future__ import annotations

import contextlib
import os
import sys

from .base import Availability, Device, PowerIntegrator, Probe, ProbeError, Reading

TYPE_CHECKING = False  # importing typing costs start-up time; annotations need it only when checked
if TYPE_CHECKING:
    from collections.abc import Callable
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


def mig_note(mig_uuid: str) -> str:
    """The note of a GPU measured for a MIG instance named in CUDA_VISIBLE_DEVICES."""
    return f"MIG instance {mig_uuid}: the whole parent GPU's energy, shared with other instances"


def order_note(value: str) -> str:
    """The note of a GPU picked by index under CUDA_DEVICE_ORDER=FASTEST_FIRST among GPUs of several models."""
    return (f"CUDA_DEVICE_ORDER is FASTEST_FIRST (CUDA's default) and the GPUs are not all one model: CUDA may number "
            f"them otherwise than by PCI bus id, the order footprint assumed for CUDA_VISIBLE_DEVICES={value} (set "
            "CUDA_DEVICE_ORDER=PCI_BUS_ID, or name the GPUs by UUID)")


def pci_key(bus_id: str) -> tuple[int, ...]:
    """A sort key for an NVML PCI bus id ("00000000:3B:00.0": domain, bus, device, function); unreadable ones last."""
    try:
        domain, bus, rest = bus_id.strip().split(":")
        device, function = rest.split(".")
        return (int(domain, 16), int(bus, 16), int(device, 16), int(function, 16))
    except ValueError:
        return (1 << 32,)


def cuda_order(bus_ids: list[str], names: list[str], device_order: str | None) -> tuple[list[int], bool]:
    """(NVML indices in the order CUDA numbers them, whether that order is an assumption).

    With CUDA_DEVICE_ORDER=PCI_BUS_ID CUDA numbers GPUs by PCI bus id (NVML's own order is not guaranteed to be
    that). With FASTEST_FIRST, CUDA's default, the fastest GPU comes first and ties are broken by PCI bus id: GPUs
    all of one model are in PCI order; among several models CUDA's ranking is not known here, so PCI order is
    assumed, and said."""
    order = sorted(range(len(bus_ids)), key=lambda i: (pci_key(bus_ids[i]), i))
    fastest_first = (device_order or "FASTEST_FIRST").strip().upper() != "PCI_BUS_ID"
    return order, fastest_first and len(set(names)) > 1


def select_gpus(env: str | None, uuids: list[str], *, order: list[int] | None = None,
                mig_parent: Callable[[str], int | None] | None = None,
                order_assumed: bool = False) -> tuple[list[int], dict[int, str]]:
    """(NVML indices a CUDA_VISIBLE_DEVICES value selects, in CUDA order; a note per index that needs one).

    Like CUDA, entries are indices (in CUDA's numbering: `order` maps it to NVML's), full UUIDs or unique UUID
    prefixes, and the list stops at the first entry that matches nothing. A MIG-<uuid> entry selects its parent
    GPU (`mig_parent` finds it): NVML counts energy per physical GPU only, so the note says it is shared. None:
    every GPU, in CUDA order."""
    order = list(range(len(uuids))) if order is None else order
    if env is None:
        return list(order), {}
    chosen: list[int] = []
    notes: dict[int, str] = {}
    for raw in env.split(","):
        entry = raw.strip()
        if not entry:
            break
        if entry.isdigit():
            idx = int(entry)
            if idx >= len(order):
                break
            chosen.append(order[idx])
            if order_assumed:
                notes.setdefault(order[idx], order_note(env))
            continue
        if entry.startswith("MIG-"):
            parent = mig_parent(entry) if mig_parent is not None else None
            if parent is None:
                break
            chosen.append(parent)
            notes[parent] = mig_note(entry)
            continue
        prefix = entry if entry.startswith("GPU-") else "GPU-" + entry
        matches = [i for i, u in enumerate(uuids) if u.startswith(prefix)]
        if len(matches) != 1:
            break
        chosen.append(matches[0])
    # CUDA ignores repeats; so do we
    return list(dict.fromkeys(chosen)), notes


def visible_gpus(env: str | None, uuids: list[str], order: list[int] | None = None) -> list[int]:
    """NVML indices selected by a CUDA_VISIBLE_DEVICES value (None: all), in CUDA order (select_gpus)."""
    return select_gpus(env, uuids, order=order)[0]


def torch_uuids() -> list[str] | None:
    """The UUIDs of the CUDA devices torch numbers cuda:0, cuda:1... in this process, when it has initialised
    CUDA (then they are the truth about CUDA's order and CUDA_VISIBLE_DEVICES); else None. Never imports torch."""
    torch = sys.modules.get("torch")
    try:
        if torch is None or not torch.cuda.is_initialized():
            return None
        out = []
        for i in range(torch.cuda.device_count()):
            text = str(torch.cuda.get_device_properties(i).uuid).strip()
            out.append(text if text.startswith(("GPU-", "MIG-")) else "GPU-" + text)
        return out
    except Exception:
        return None


def _mig_parent(nv: Any, uuids: list[str]) -> Callable[[str], int | None]:
    """Finds the NVML index of the GPU a MIG device UUID (or unique prefix) belongs to."""

    def parent(mig_uuid: str) -> int | None:
        if mig_uuid.startswith("MIG-GPU-"):  # the older form, MIG-GPU-<parent uuid>/<gi>/<ci>
            found = [i for i, u in enumerate(uuids) if u == mig_uuid[4:].split("/")[0]]
            return found[0] if found else None
        try:
            handle = nv.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(nv.nvmlDeviceGetHandleByUUID(mig_uuid))
            return uuids.index(_text(nv.nvmlDeviceGetUUID(handle)))
        except Exception:
            pass
        matches: list[int] = []  # not a whole UUID: a prefix of one instance's, as CUDA allows
        for i in range(len(uuids)):
            with contextlib.suppress(Exception):
                h = nv.nvmlDeviceGetHandleByIndex(i)
                for k in range(int(nv.nvmlDeviceGetMaxMigDeviceCount(h))):
                    with contextlib.suppress(Exception):  # no instance k: NVML_ERROR_NOT_FOUND
                        mig = nv.nvmlDeviceGetMigDeviceHandleByIndex(h, k)
                        if _text(nv.nvmlDeviceGetUUID(mig)).startswith(mig_uuid):
                            matches.append(i)
        return matches[0] if len(matches) == 1 else None

    return parent


def selection(nv: Any, handles: list[Any], uuids: list[str]) -> tuple[list[int], dict[int, str]]:
    """What this process sees, as select_gpus says, from NVML and the environment; from torch's own device UUIDs
    when torch has initialised CUDA here."""
    parent = _mig_parent(nv, uuids)
    seen = torch_uuids()
    if seen:
        picked: list[int] = []
        notes: dict[int, str] = {}
        for u in seen:
            i = uuids.index(u) if u in uuids else (parent(u) if u.startswith("MIG-") else None)
            if i is None:
                break
            picked.append(i)
            if u.startswith("MIG-"):
                notes[i] = mig_note(u)
        else:
            return list(dict.fromkeys(picked)), notes
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    bus_ids: list[str] = []
    names: list[str] = []
    for h in handles:
        try:
            bus_ids.append(_text(nv.nvmlDeviceGetPciInfo(h).busId))
        except Exception:
            bus_ids.append("")
        names.append(_text(nv.nvmlDeviceGetName(h)))
    order, assumed = cuda_order(bus_ids, names, os.environ.get("CUDA_DEVICE_ORDER"))
    return select_gpus(env, uuids, order=order, mig_parent=parent, order_assumed=assumed)


def _layout() -> tuple[list[int], int] | None:
    """(NVML indices this process sees, in CUDA order; GPUs on the machine), None without NVML."""
    try:
        nv = _nvml()
        nv.nvmlInit()
    except Exception:
        return None
    try:
        count = int(nv.nvmlDeviceGetCount())
        handles = [nv.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        uuids = [_text(nv.nvmlDeviceGetUUID(h)) for h in handles]
        return selection(nv, handles, uuids)[0], count
    except Exception:
        return None
    finally:
        with contextlib.suppress(Exception):
            nv.nvmlShutdown()


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
        notes: dict[int, str] = {}
        if indices is None:
            indices, notes = selection(nv, handles, uuids)
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
            note = notes.get(i)
            try:
                if note is None and nv.nvmlDeviceGetMigMode(h)[0] == 1:
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
                # stamped before the call: the driver call lets go of the GIL, and getting it back can take a
                # busy Python thread's whole switch interval (5 ms and more seen), which a stamp taken after it
                # would add to the reading's time
                t = self.clock.now()
                if self._modes[k] == "nvml-energy":
                    mj = int(nv.nvmlDeviceGetTotalEnergyConsumption(h))
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
                p = mw / 1000.0
                out.append(Reading(dev, t, self._integrators[k].add(t, p), p))
            except Exception as exc:  # one GPU failing must not stop the others
                self.errors[dev.key] = _text(exc) or type(exc).__name__
        if self.devices and not out:
            raise ProbeError("no GPU could be read: " + "; ".join(f"{k}: {v}" for k, v in self.errors.items()))
        return out

    def processes(self) -> dict[int, set[int]]:
        """NVML index -> the pids holding a compute context on that GPU (nvmlDeviceGetComputeRunningProcesses; pids
        of the host's pid namespace), for the GPUs measured; a GPU that cannot say is left out."""
        nv = _nvml()
        out: dict[int, set[int]] = {}
        for dev, h in zip(self.devices, self._handles, strict=True):
            with contextlib.suppress(Exception):
                out[dev.index] = {int(p.pid) for p in nv.nvmlDeviceGetComputeRunningProcesses(h)}
        return out

    def close(self) -> None:
        if self._open:
            self._open = False
            with contextlib.suppress(Exception):
                _nvml().nvmlShutdown()


PROBES = (NvmlProbe,)
