"""AMD GPUs (Instinct, Radeon) through AMD SMI: the real `amdsmi` package and ROCm's libamd_smi.so.

- Energy from `amdsmi_get_energy_count`: a 64-bit accumulator in counts of `counter_resolution` µJ (15.3 µJ
  on MI200 and MI300), unwrapped at 2^64 (a drop that the recent power cannot explain is a restart of the
  counter, a driver reload). Where a GPU has no accumulator: `current_socket_power` (instantaneous, MI300),
  else `average_socket_power` (the mean of the last second, MI200 and older), in whole watts, integrated
  over the reads.
- Indices are HIP's (amdsmi_get_gpu_enumeration_info's hip_id where the library has it, else AMD SMI's
  order), the numbers ROCR_VISIBLE_DEVICES, HIP_VISIBLE_DEVICES and torch's cuda:N refer to.
  ROCR_VISIBLE_DEVICES (indices or GPU-<serial> UUIDs) selects first; HIP_VISIBLE_DEVICES, or
  CUDA_VISIBLE_DEVICES when it is unset, then selects among those, as the ROCm runtime does.
- MI250 and MI250X cards hold two dies, each a GPU of its own to HIP, but AMD SMI reports the card's power and
  energy on one die and 0 W on the other. footprint measures such a card once, as one device, through the die
  that reports, whichever of its dies a process uses, and says so in the device's note.

The amdsmi package binds libamd_smi.so when imported and prints to stdout when it cannot find it, so the
library is looked for first (where amdsmi looks: $ROCM_HOME or $ROCM_PATH/lib, the linker's path,
/opt/rocm/lib) and the package is imported with its stdout kept off the user's.
"""

from __future__ import annotations

import contextlib
import os
import sys

from .base import Availability, Device, EnergyCounter, PowerIntegrator, Probe, ProbeError, Reading
from .nvml import visible_gpus

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from .base import Clock

SOURCE_ENERGY = "amdsmi-energy"
SOURCE_CURRENT = "amdsmi-power-current"
SOURCE_AVERAGE = "amdsmi-power-average"
# Not published. The driver refreshes its gpu_metrics table, where the accumulator lives, at most every 1 ms.
ENERGY_PERIOD_S = 0.001
PERIOD_S = {SOURCE_ENERGY: ENERGY_PERIOD_S, SOURCE_CURRENT: 0.1, SOURCE_AVERAGE: 1.0}
POWER_FIELD = {SOURCE_CURRENT: "current_socket_power", SOURCE_AVERAGE: "average_socket_power"}
COUNTER_RANGE = 1 << 64
DUAL_DIE = ("MI250",)  # market names of cards whose two dies report power on one die (MI250, MI250X)
INSTALL_HINT = "pip install footprint-profiler[amd]"


def mi250_note(primary: int, secondary: int, seen: list[int]) -> str:
    """The note on an MI250-class card measured through die `primary`; `seen`: its dies this process uses."""
    note = (f"MI250-class card: AMD SMI reports the power of both its dies (GPUs {primary} and {secondary}) on "
            f"GPU {primary} only, so this figure is the whole card")
    if len(seen) == 1:
        note += f"; this process sees GPU {seen[0]} only, and the figure includes the other die's work"
    return note


def unwrap_counts(prev: int, cur: int, expected: float | None) -> int:
    """Counts between two reads of a 64-bit accumulator. A read below the last is a wrap at 2^64 when the
    energy that gives agrees with `expected` (the recent power times the time between reads, in counts);
    otherwise the counter restarted (a driver reload): the counts since, and at least `expected`. With no
    power known yet, only what is certain (the smaller of the two)."""
    if cur >= prev:
        return cur - prev
    wrapped = COUNTER_RANGE - prev + cur
    if expected is None:
        return min(cur, wrapped)
    if wrapped <= 4 * expected + (1 << 24):  # a real wrap is near what the power predicts; a restart is ~2^64 off
        return wrapped
    return max(cur, round(expected))


def visible_hip_indices(env: Mapping[str, str], uuids: list[str]) -> list[int]:
    """HIP indices this process sees, in its device order (cuda:0 first), from the GPUs' ROCm UUIDs (by HIP
    index). Entries are indices, UUIDs or unique UUID prefixes; a list stops at its first entry that matches
    nothing, as with CUDA."""
    rocr = visible_gpus(env.get("ROCR_VISIBLE_DEVICES"), uuids)
    hip = env.get("HIP_VISIBLE_DEVICES")
    picked = visible_gpus(hip if hip is not None else env.get("CUDA_VISIBLE_DEVICES"), [uuids[i] for i in rocr])
    return [rocr[p] for p in picked]


def library_path() -> str | None:
    """Where amdsmi would load libamd_smi.so from, in its own order; None if nowhere."""
    import ctypes

    rocm = os.environ.get("ROCM_HOME", os.environ.get("ROCM_PATH"))
    places = [os.path.join(rocm, "lib", "libamd_smi.so")] if rocm else []
    places += ["libamd_smi.so", os.path.join(os.environ.get("ROCM_PATH", "/opt/rocm"), "lib", "libamd_smi.so")]
    for place in places:
        try:
            ctypes.CDLL(place)
        except OSError:
            continue
        return place
    return None


def _installed() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("amdsmi") is not None
    except (ImportError, ValueError):
        return False


def _amdsmi() -> Any:
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # it prints when it cannot load the library
        import amdsmi  # deferred: a large ctypes binding, loaded only where ROCm is
    return amdsmi


def _why(exc: BaseException) -> str:
    """One line for an amdsmi error: its status name and meaning, not its multi-line str()."""
    info = getattr(exc, "get_error_info", None)
    text = str(info()) if callable(info) else str(exc)
    return " ".join(text.split()) or type(exc).__name__


class _Gpu:
    __slots__ = ("hip", "handle", "uuid", "name", "board")

    def __init__(self, hip: int, handle: Any, uuid: str | None, name: str, board: str | None) -> None:
        self.hip = hip
        self.handle = handle
        self.uuid = uuid
        self.name = name
        self.board = board  # the board's serial: the two dies of an MI250 share it


def _inventory(smi: Any) -> list[_Gpu]:
    """Every GPU AMD SMI sees, in HIP order."""
    handles = list(smi.amdsmi_get_processor_handles())
    hips: list[int] = []
    gpus: list[_Gpu] = []
    for k, h in enumerate(handles):
        hip: Any = k
        uuid: str | None = None
        with contextlib.suppress(Exception):  # older amdsmi releases have no enumeration info
            enum = smi.amdsmi_get_gpu_enumeration_info(h)
            hip = enum["hip_id"]
            uuid = enum["hip_uuid"] if str(enum["hip_uuid"]).startswith("GPU-") else None
        hips.append(hip if isinstance(hip, int) else k)
        name = "AMD GPU"
        with contextlib.suppress(Exception):
            asic = smi.amdsmi_get_gpu_asic_info(h)
            name = str(asic["market_name"]) if asic["market_name"] != "N/A" else name
            serial = str(asic["asic_serial"])
            if uuid is None and serial.startswith("0x"):
                uuid = "GPU-" + serial[2:].lower()  # the ROCm runtime's UUID: its unique id in hex
        board = None
        with contextlib.suppress(Exception):
            product_serial = str(smi.amdsmi_get_gpu_board_info(h)["product_serial"])
            board = product_serial if product_serial != "N/A" else None
        gpus.append(_Gpu(0, h, uuid, name, board))
    if sorted(hips) != list(range(len(handles))):
        hips = list(range(len(handles)))  # not a numbering of every GPU: keep AMD SMI's order
    for gpu, hip in zip(gpus, hips, strict=True):
        gpu.hip = hip
    return sorted(gpus, key=lambda g: g.hip)


def _dies(gpus: list[_Gpu]) -> dict[int, tuple[int, int]]:
    """HIP index -> (first die, second die) of its card, for the GPUs of dual-die cards."""
    dual = [g for g in gpus if any(model in g.name for model in DUAL_DIE)]
    pairs: list[list[_Gpu]] = []
    by_board: dict[str, list[_Gpu]] = {}
    for g in dual:
        if g.board is not None:
            by_board.setdefault(g.board, []).append(g)
    if dual and all(g.board is not None for g in dual) and all(len(p) == 2 for p in by_board.values()):
        pairs = list(by_board.values())
    else:  # no board serials: HIP numbers a card's dies one after the other
        pairs = [dual[i:i + 2] for i in range(0, len(dual) - 1, 2)]
    out: dict[int, tuple[int, int]] = {}
    for pair in pairs:
        a, b = sorted(g.hip for g in pair)
        out[a] = out[b] = (a, b)
    return out


def _reported_watts(smi: Any, handle: Any) -> float:
    try:
        info = smi.amdsmi_get_power_info(handle)
    except Exception:
        return 0.0
    for field in ("current_socket_power", "average_socket_power"):
        if isinstance(info.get(field), int) and info[field] > 0:
            return float(info[field])
    return 0.0


def _pick_mode(smi: Any, handle: Any) -> tuple[str, float] | None:
    """(source, counter resolution in µJ; 0 for power) for a GPU; None if it reports neither."""
    try:
        e = smi.amdsmi_get_energy_count(handle)
        resolution = float(e["counter_resolution"])
        if resolution > 0 and isinstance(e.get("energy_accumulator", e.get("power")), int):
            return SOURCE_ENERGY, resolution
    except Exception:
        pass
    try:
        info = smi.amdsmi_get_power_info(handle)
    except Exception:
        return None
    for source in (SOURCE_CURRENT, SOURCE_AVERAGE):
        if isinstance(info.get(POWER_FIELD[source]), int):  # "N/A" where the GPU does not report it
            return source, 0.0
    return None


def _visible() -> tuple[list[int], list[_Gpu]] | None:
    """(HIP indices this process sees, in its order; every GPU), None without AMD SMI."""
    if library_path() is None:
        return None
    try:
        smi = _amdsmi()
        smi.amdsmi_init(smi.AmdSmiInitFlags.INIT_AMD_GPUS)
    except Exception:
        return None
    try:
        gpus = _inventory(smi)
        return visible_hip_indices(os.environ, [g.uuid or "" for g in gpus]), gpus
    except Exception:
        return None
    finally:
        with contextlib.suppress(Exception):
            smi.amdsmi_shut_down()


def visible_layout() -> tuple[int, int] | None:
    """(GPUs this process sees through ROCR/HIP_VISIBLE_DEVICES, GPUs on the machine); None without AMD SMI.
    The dies of an MI250 count as two, as HIP counts them."""
    found = _visible()
    return None if found is None else (len(found[0]), len(found[1]))


def cuda_ordinals_of(hip_indices: list[int]) -> set[int]:
    """The cuda:N ordinals (HIP's, in this process) of measured GPUs' indices; an MI250 card's index stands for
    both its dies. GPUs this process cannot see are left out."""
    found = _visible()
    if found is None:
        return set(hip_indices)
    visible, gpus = found
    dies = _dies(gpus)
    covered = {d for i in hip_indices for d in dies.get(i, (i,))}
    return {visible.index(i) for i in covered if i in visible}


class AmdSmiProbe(Probe):
    """Energy from amdsmi_get_energy_count where the GPU has an accumulator, else its socket power integrated
    over the reads; one device per MI250-class card."""

    name = "amdsmi"
    kinds = ("gpu",)

    @classmethod
    def create(cls, *, cuda_ordinals: list[int] | None = None) -> AmdSmiProbe:
        return cls(cuda_ordinals=cuda_ordinals)

    def __init__(self, indices: list[int] | None = None, *, cuda_ordinals: list[int] | None = None,
                 clock: Clock | None = None) -> None:
        """`indices`: HIP indices to measure. `cuda_ordinals`: positions among the GPUs this process sees (what
        a rank calls cuda:N; torch on ROCm numbers HIP devices so). Neither: every visible GPU."""
        super().__init__(clock=clock)
        self._indices = indices
        self._ordinals = cuda_ordinals
        self._handles: list[Any] = []
        self._modes: list[str] = []
        self._resolutions: list[float] = []
        self._counters: list[EnergyCounter | None] = []
        self._integrators: list[PowerIntegrator] = []
        self._smi: Any = None  # the amdsmi module while open

    @classmethod
    def availability(cls) -> Availability:
        lib = library_path()
        if lib is None:
            if _installed():
                return Availability(False, "amdsmi is installed but libamd_smi.so was not found: install ROCm "
                                           "(its amd-smi-lib package), or set ROCM_PATH to the ROCm folder")
            return Availability(False, "AMD SMI unavailable: libamd_smi.so not found (no ROCm here?)")
        try:
            smi = _amdsmi()
        except ImportError:
            return Availability(False, f"{lib} is there but the amdsmi package is not installed ({INSTALL_HINT})")
        except Exception as exc:  # a symbol the package binds that this library lacks, and friends
            return Availability(False, f"the amdsmi package does not match {lib} ({type(exc).__name__}: {exc}): "
                                       "install the amdsmi of this ROCm version (pip install "
                                       f"{os.environ.get('ROCM_PATH', '/opt/rocm')}/share/amd_smi)")
        try:
            smi.amdsmi_init(smi.AmdSmiInitFlags.INIT_AMD_GPUS)
        except Exception as exc:
            return Availability(False, f"AMD SMI could not start: {_why(exc)} (is the amdgpu driver loaded, and "
                                       "may this user open /dev/kfd and /dev/dri?)")
        try:
            count = len(smi.amdsmi_get_processor_handles())
        except Exception as exc:
            return Availability(False, f"AMD SMI could not list GPUs: {_why(exc)}")
        finally:
            with contextlib.suppress(Exception):
                smi.amdsmi_shut_down()
        if count == 0:
            return Availability(False, "AMD SMI found no GPU")
        return Availability(True, f"AMD SMI sees {count} GPU(s)", ("gpu",))

    def _chosen(self, gpus: list[_Gpu]) -> list[int]:
        """HIP indices to measure, in this process's order."""
        if self._indices is not None:
            return [i for i in self._indices if 0 <= i < len(gpus)]
        visible = visible_hip_indices(os.environ, [g.uuid or "" for g in gpus])
        if self._ordinals is None:
            return visible
        absent = [o for o in self._ordinals if not 0 <= o < len(visible)]
        if absent:
            print(f"footprint: {', '.join(f'cuda:{o}' for o in absent)} not among the {len(visible)} GPU(s) this "
                  "process sees: not measured here (a rank sharing a GPU leaves it to the lower rank; else set "
                  "FOOTPRINT_GPUS)", file=sys.stderr)
        return [visible[o] for o in self._ordinals if 0 <= o < len(visible)]

    def open(self) -> list[Device]:
        try:
            smi = _amdsmi()
            smi.amdsmi_init(smi.AmdSmiInitFlags.INIT_AMD_GPUS)
        except Exception as exc:
            raise ProbeError(f"AMD SMI unavailable: {_why(exc)}") from exc
        self._smi = smi
        gpus = _inventory(smi)
        dies = _dies(gpus)
        cards: dict[int, list[int]] = {}  # the card's first die (or the GPU) -> the dies of it this process uses
        for i in self._chosen(gpus):
            cards.setdefault(dies[i][0] if i in dies else i, []).append(i)
        for first, seen in cards.items():
            gpu, note = gpus[first], None
            if first in dies:
                a, b = dies[first]
                # the die that reports is the first on every MI250 so far; follow the power if it is not
                silent_first = _reported_watts(smi, gpus[a].handle) == 0 < _reported_watts(smi, gpus[b].handle)
                reporting = b if silent_first else a
                gpu, note = gpus[reporting], mi250_note(reporting, b if reporting == a else a, seen)
            mode = _pick_mode(smi, gpu.handle)
            if mode is None:
                self.errors[f"gpu:{gpu.hip}"] = "AMD SMI reports neither an energy counter nor a power for it"
                continue
            limit: float | None = None
            with contextlib.suppress(Exception):
                limit = float(smi.amdsmi_get_power_cap_info(gpu.handle)["power_cap"]) / 1e6  # µW
            source, resolution = mode
            self.devices.append(Device(kind="gpu", index=gpu.hip, name=gpu.name, source=source, measured=True,
                                       update_period_s=PERIOD_S[source], uuid=gpu.uuid, power_limit_w=limit,
                                       note=note))
            self._handles.append(gpu.handle)
            self._modes.append(source)
            self._resolutions.append(resolution)
            self._counters.append(None)
            self._integrators.append(PowerIntegrator())
        return self.devices

    def read(self) -> list[Reading]:
        smi = self._smi
        out: list[Reading] = []
        for k, dev in enumerate(self.devices):
            h = self._handles[k]
            try:
                t = self.clock.now()  # before the call, which lets go of the GIL (see NvmlProbe.read)
                if self._modes[k] == SOURCE_ENERGY:
                    e = smi.amdsmi_get_energy_count(h)
                    count = int(e.get("energy_accumulator", e.get("power")))  # "power" before amdsmi 6.2.1
                    counter = self._counters[k]
                    if counter is None:
                        self._counters[k] = EnergyCounter("amdsmi_get_energy_count", count, t, self._resolutions[k])
                        out.append(Reading(dev, t, 0.0))
                        continue
                    out.append(Reading(dev, t, counter.advance(count, t, unwrap_counts), counter.power_w))
                    continue
                field = POWER_FIELD[self._modes[k]]
                watts = smi.amdsmi_get_power_info(h)[field]
                if not isinstance(watts, int):
                    raise ProbeError(f"{field} is {watts}")
                p = float(watts)
                out.append(Reading(dev, t, self._integrators[k].add(t, p), p))
            except Exception as exc:  # one GPU failing must not stop the others
                self.errors[dev.key] = _why(exc)
        if self.devices and not out:
            raise ProbeError("no GPU could be read: " + "; ".join(f"{k}: {v}" for k, v in self.errors.items()))
        return out

    def close(self) -> None:
        smi, self._smi = self._smi, None
        if smi is not None:
            with contextlib.suppress(Exception):
                smi.amdsmi_shut_down()


PROBES = (AmdSmiProbe,)
