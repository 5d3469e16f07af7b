"""GPU power-limit tuning: `footprint run --power-limit W` and `PowerLimitTuner` for training loops.

    tuner = footprint.PowerLimitTuner(objective="cost", eta=0.5)     # Zeus' cost; or "energy", "time", "slowdown"
    for batch in loader:
        tuner.on_step_begin()
        train_step(batch)
        tuner.on_step_end()
    tuner.close()                                                      # the original limits are back

From the highest limit the GPU accepts down by `step_w`, each limit gets `warmup_steps` steps and then
`profile_steps` measured ones (GPU energy from NVML's counter, time); then the best limit for the objective
(footprint.common.objective) is kept for the rest of training. In a torch.distributed job every rank applies the
same limit to its own GPU(s): at each limit, energy is summed over the ranks and time is the slowest rank's.

The original limits always come back: `close()` (the callbacks and `with` call it), at interpreter exit, and,
when the process dies without either (SIGKILL, a segfault, the OOM killer), from a small watchdog process that
notices the end of its pipe (`python -m footprint.watchdog`). Each change is stored with the run
(power_limit_changes), with the command that undoes it by hand. Without root or CAP_SYS_ADMIN, one line says
so and the training is measured as it is.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import subprocess
import sys

from footprint.common import objective as obj
from footprint.common.clock import SYSTEM
from footprint.common.errors import FootprintError
from footprint.probes.gpulimit import GpuLimit, LimitError, NoPermission, NvmlLimits, restore_command

from .run import Run, attach_from_env, current_run

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from footprint.probes.base import Clock
    from footprint.probes.nvml import NvmlProbe

PROFILE_FORMAT = "footprint-power-limit-profile"


def no_permission_line(detail: str) -> str:
    return (f"footprint: cannot set the GPU power limit (needs root or CAP_SYS_ADMIN): {detail}; "
            "measuring without it")


def _gpus_text(indices: list[int]) -> str:
    return ", ".join(f"gpu:{i}" for i in indices)


class LimitGuard:
    """Sets one power limit on some GPUs (NVML indices) and puts each GPU's original limit back.

    `set(watts)` returns False (having said why in one line) when the limit cannot be set; nothing is
    changed then. `restore()` is idempotent. With `watchdog`, a watchdog process restores the originals if
    this process dies before `restore()`. `run` records each change. `quiet_sets`: say nothing at each set
    (the tuner changes limits often and says what it does itself, with `announce`)."""

    def __init__(self, indices: list[int], *, actor: str, run: Run | None = None, watchdog: bool = True,
                 quiet_sets: bool = False) -> None:
        self.indices = list(indices)
        self.actor = actor
        self.run = run
        self.watchdog = watchdog
        self.quiet_sets = quiet_sets
        self.original: dict[int, GpuLimit] = {}
        self.current_w: float | None = None
        self.disabled: str | None = None  # why limits are not set (no permission...)
        self._nv = NvmlLimits()
        self._dog: subprocess.Popen[bytes] | None = None
        self._announced = False
        self._exit_hook = False

    def limits(self) -> dict[int, GpuLimit]:
        """Each GPU's limit and range as found before footprint changed anything."""
        if not self.original:
            self._nv.open()
            self.original = {i: self._nv.read(i) for i in self.indices}
        return self.original

    def check(self, watts: float) -> None:
        """FootprintError when a GPU does not accept `watts`."""
        for i, lim in self.limits().items():
            if not lim.min_w - 1e-9 <= watts <= lim.max_w + 1e-9:
                raise FootprintError(f"power limit {watts:g} W is outside what gpu:{i} accepts "
                                     f"({lim.min_w:g}-{lim.max_w:g} W)")

    def set(self, watts: float) -> bool:
        if self.disabled is not None:
            return False
        if not self.indices:
            self.disabled = "no GPU measured"
            return False
        self.check(watts)
        if self.current_w is None:
            self._start_watchdog()
            if not self._exit_hook:
                atexit.register(self.restore)
                self._exit_hook = True
        done: list[int] = []
        for i in self.indices:
            try:
                self._nv.set(i, watts)
            except NoPermission as exc:
                self._undo(done)
                self.disabled = str(exc)
                print(no_permission_line(str(exc)), file=sys.stderr)
                self._stop_watchdog()
                return False
            except LimitError as exc:
                self._undo(done)
                self.disabled = str(exc)
                print(f"footprint: {exc}; measuring with the limits as they were", file=sys.stderr)
                self._stop_watchdog()
                return False
            done.append(i)
            self._record(i, watts, self.current_w if self.current_w is not None else self.original[i].current_w,
                         "set")
        self.current_w = watts
        if not self.quiet_sets:
            self.announce(f"GPU power limit set to {watts:g} W on {_gpus_text(self.indices)}")
        return True

    def announce(self, what: str) -> None:
        """One line on stderr: what was done, and the by-hand restore command the first time."""
        back = "; ".join(restore_command(i, g.current_w) for i, g in self.original.items())
        tail = "" if self._announced else f" (was {self._was()}; put back at the end, by hand: {back})"
        self._announced = True
        print(f"footprint: {what}{tail}", file=sys.stderr)

    def _was(self) -> str:
        values = sorted({g.current_w for g in self.original.values()})
        return "/".join(f"{w:g}" for w in values) + " W"

    def _undo(self, done: list[int]) -> None:
        for i in done:
            with contextlib.suppress(LimitError):
                self._nv.set(i, self.original[i].current_w)

    def restore(self) -> None:
        """Put every GPU's original limit back (nothing if footprint changed none)."""
        if self.current_w is None:
            self._stop_watchdog()
            self._nv.close()
            return
        failed: list[str] = []
        for i, lim in self.original.items():
            try:
                self._nv.set(i, lim.current_w)
                self._record(i, lim.current_w, self.current_w, "restored")
            except LimitError as exc:
                failed.append(f"{exc} (by hand: {restore_command(i, lim.current_w)})")
                self._record(i, None, self.current_w, "restore-failed")
        self.current_w = None
        if failed:
            print("footprint: could not restore the GPU power limit: " + "; ".join(failed), file=sys.stderr)
            # the watchdog tries again when told nothing: leave it running to do so
            self._release_watchdog()
        else:
            print(f"footprint: GPU power limit restored to {self._was()} on {_gpus_text(self.indices)}",
                  file=sys.stderr)
            self._stop_watchdog()
        self._nv.close()

    def _record(self, idx: int, limit_w: float | None, previous_w: float | None, action: str) -> None:
        run = self.run
        if run is None:
            return
        with contextlib.suppress(Exception):  # a DB problem must not stop limits from being set or restored
            original = self.original[idx].current_w
            run.store.add_power_limit_change(run.id, t=run.clock.now(), idx=idx, limit_w=limit_w,
                                             previous_w=previous_w, action=action, actor=self.actor,
                                             restore_command=restore_command(idx, original))

    # -- the watchdog -------------------------------------------------------------------------------

    def _start_watchdog(self) -> None:
        if not self.watchdog or self._dog is not None:
            return
        run = self.run
        order = {"pid": os.getpid(), "gpus": {str(i): g.current_w for i, g in self.limits().items()},
                 "db": os.path.abspath(run.store.path) if run is not None and run.store.path != ":memory:" else None,
                 "run_id": run.id if run is not None else None}
        try:
            # a session of its own: the terminal's Ctrl-C and a kill of the process group leave it alone, so it
            # is there when this process dies; it learns of that from the end of its stdin
            dog = subprocess.Popen([sys.executable, "-m", "footprint.watchdog"], stdin=subprocess.PIPE,
                                   stdout=subprocess.DEVNULL, start_new_session=True)
            assert dog.stdin is not None
            dog.stdin.write(json.dumps(order).encode() + b"\n")
            dog.stdin.flush()
        except OSError as exc:
            print(f"footprint: no watchdog for the GPU power limit ({exc.strerror or exc}): if this process is "
                  "killed, restore it by hand", file=sys.stderr)
            return
        self._dog = dog

    def _stop_watchdog(self) -> None:
        dog, self._dog = self._dog, None
        if dog is None or dog.stdin is None:
            return
        with contextlib.suppress(OSError):
            dog.stdin.write(b"done\n")
            dog.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            dog.wait(timeout=5)

    def _release_watchdog(self) -> None:
        dog, self._dog = self._dog, None
        if dog is not None and dog.stdin is not None:
            with contextlib.suppress(OSError):
                dog.stdin.close()  # end of file without "done": it restores


def limit_run(run: Run, watts: float) -> LimitGuard | None:
    """`footprint run --power-limit`: set the run's measured NVIDIA GPUs to `watts`; the caller restores with the
    returned guard's restore(). None when nothing was set (said in one line); FootprintError (nothing set) for a
    limit a GPU does not accept."""
    sampler = run.sampler
    indices = [d.index for p in (sampler.probes if sampler is not None else []) if p.name == "nvml" for d in p.devices]
    if not indices:
        print("footprint: --power-limit: no NVIDIA GPU is measured here; running without it", file=sys.stderr)
        return None
    guard = LimitGuard(indices, actor="footprint run", run=run)
    try:
        ok = guard.set(watts)
    except LimitError as exc:
        print(f"footprint: --power-limit: {exc}; running without it", file=sys.stderr)
        return None
    if not ok:
        return None
    with contextlib.suppress(Exception):
        run.store.add_power_limits(run.id, [{"t": run.clock.now(), "limit_w": watts, "gpus": len(indices),
                                             "chosen": 1, "source": "--power-limit"}])
    return guard


def _distributed() -> Any:
    """torch.distributed when this process is in an initialised process group, else None."""
    torch = sys.modules.get("torch")
    dist = getattr(torch, "distributed", None) if torch is not None else None
    try:
        if dist is not None and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            return dist
    except Exception:
        return None
    return None


def _reduce(values: list[float], op: str) -> list[float]:
    """All-reduce (op "sum", "max" or "min") over the process group, or the values themselves alone."""
    dist = _distributed()
    if dist is None:
        return values
    import torch

    device = torch.device("cpu")
    if dist.get_backend() == "nccl":  # NCCL reduces CUDA tensors only
        device = torch.device("cuda", torch.cuda.current_device())
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op={"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}[op])
    return [float(v) for v in t.tolist()]


def _agree(ok: bool) -> bool:
    """True when it is true on every rank."""
    return _reduce([1.0 if ok else 0.0], "min")[0] == 1.0


def _rank() -> int:
    dist = _distributed()
    return int(dist.get_rank()) if dist is not None else 0


class PowerLimitTuner:
    """Find the GPU power limit that minimises `objective` during training, then keep it.

    objective: "energy", "time", "cost" (Zeus' eta * energy + (1 - eta) * max_power * time, `eta` in [0, 1]) or
    "slowdown" (least energy at most `max_slowdown` slower than the fastest limit; 0.1 is 10 %).
    warmup_steps / profile_steps: steps run at each limit before / while it is measured. step_w: watts between
    profiled limits, from the highest the GPUs accept down to the lowest. gpus: CUDA ordinals (cuda:N) to tune;
    default: a rank's own GPU(s) in a distributed job, else every visible GPU. profile: a JSON file; if it exists,
    its measurements are reused and nothing is profiled, else the profile is saved there. run: the run to store
    the profile with (default: the active one, if any). watchdog: restore the limits if the process dies.
    clock: for tests. Call `on_step_begin()` / `on_step_end()` around each step, `on_epoch_end()` at the end of an
    epoch (a measurement an epoch end cut short is made again), and `close()` at the end (or use `with`).
    """

    def __init__(self, *, objective: str = "cost", eta: float = 0.5, max_slowdown: float = 0.1,
                 warmup_steps: int = 10, profile_steps: int = 40, step_w: float = 25.0,
                 gpus: list[int] | None = None, profile: str | os.PathLike[str] | None = None,
                 run: Run | None = None, watchdog: bool = True, clock: Clock | None = None) -> None:
        try:
            obj.check_objective(objective, eta, max_slowdown)
        except ValueError as exc:
            raise FootprintError(str(exc)) from None
        if warmup_steps < 0 or profile_steps < 1:
            raise FootprintError(f"warmup_steps must be >= 0 and profile_steps >= 1, got {warmup_steps} and "
                                 f"{profile_steps}")
        if not step_w > 0:
            raise FootprintError(f"step_w must be a positive number of watts, got {step_w!r}")
        self.objective, self.eta, self.max_slowdown = objective, eta, max_slowdown
        self.warmup_steps, self.profile_steps, self.step_w = warmup_steps, profile_steps, step_w
        self.profile_path = os.fspath(profile) if profile is not None else None
        self.clock = clock if clock is not None else SYSTEM
        self.run = run
        self.profiles: list[obj.LimitProfile] = []
        self.chosen_w: float | None = None
        self.state = "new"  # new -> warmup <-> profile -> done; off: limits cannot be set here
        self._gpus = gpus
        self._watchdog = watchdog
        self._probe: NvmlProbe | None = None
        self._guard: LimitGuard | None = None
        self._limits: list[float] = []
        self._range = (0.0, 0.0)  # (lowest, highest) limit this process's GPUs accept, W
        self._period_s = 0.0  # the energy counters' update period
        self._warned_short = False
        self._i = 0
        self._count = 0
        self._window: tuple[float, float] | None = None
        self._reused: list[obj.LimitProfile] | None = None
        self._ended: list[float] = []  # when each profile's window ended (epoch seconds)
        if self.profile_path is not None and os.path.exists(self.profile_path):
            self._reused = load_profile(self.profile_path)

    def __enter__(self) -> PowerLimitTuner:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- set-up -------------------------------------------------------------------------------------

    def _open(self) -> bool:
        """Open NVML for its GPUs; False (said in one line) when there is nothing to tune."""
        from footprint.probes.base import ProbeError
        from footprint.probes.nvml import NvmlProbe

        from . import distributed

        ordinals = self._gpus
        if ordinals is None:
            ident = distributed.identity()
            if ident is not None:
                ordinals = distributed.gpu_ordinals(ident)
        probe = NvmlProbe(cuda_ordinals=ordinals, clock=self.clock)
        try:
            devices = probe.open()
        except ProbeError as exc:
            print(f"footprint: power-limit tuning off: {exc}", file=sys.stderr)
            return False
        self._probe = probe
        coarse = [d for d in devices if d.source != "nvml-energy"]
        if coarse:  # two reads of a power figure at a window's edges are no measure of the energy between them
            print(f"footprint: power-limit tuning off: {_gpus_text([d.index for d in coarse])} has no energy counter "
                  "(NVML's total energy needs a Volta or newer GPU)", file=sys.stderr)
            return False
        self._period_s = max((d.update_period_s for d in devices), default=0.0)
        if self.run is None:
            self.run = current_run() or attach_from_env()
        self._guard = LimitGuard([d.index for d in devices], actor="tuner", run=self.run, watchdog=self._watchdog,
                                 quiet_sets=True)
        try:
            found = self._guard.limits()
        except LimitError as exc:
            print(f"footprint: power-limit tuning off: {exc}", file=sys.stderr)
            return False
        ranges = {(g.min_w, g.max_w) for g in found.values()}
        if len(ranges) > 1:
            raise FootprintError("the GPUs accept different power-limit ranges ("
                                 + ", ".join(f"gpu:{i}: {g.min_w:g}-{g.max_w:g} W" for i, g in found.items())
                                 + "): tune them in separate processes")
        if not ranges:
            print("footprint: power-limit tuning off: no GPU to tune", file=sys.stderr)
            return False
        (self._range,) = ranges
        return True

    def _start(self) -> None:
        # every rank must take the same path, or one would wait for the others in a collective forever
        ok = _agree(self._open())
        if ok:
            lo, hi = _reduce([-self._range[0], self._range[1]], "min")
            self._limits = obj.limits_to_profile(-lo, hi, self.step_w)  # the limits every rank's GPUs accept
            first = self._choose(self._reused) if self._reused is not None else self._limits[0]
            ok = _agree(self._try_set(first))
        if ok and self._reused is None and _rank() == 0:
            assert self._guard is not None
            self._guard.announce(f"GPU power-limit tuning on {_gpus_text(self._guard.indices)}: profiling "
                                 f"{len(self._limits)} limits from {self._limits[0]:g} W down to "
                                 f"{self._limits[-1]:g} W, {self.warmup_steps} + {self.profile_steps} steps each")
        if not ok:
            self.state = "off"
            if self._guard is not None:
                self._guard.restore()
            return
        if self._reused is not None:
            self.profiles = self._reused
            self._finish(source=f"profile:{self.profile_path}")
            return
        self.state, self._i, self._count = "warmup", 0, 0

    def _try_set(self, watts: float) -> bool:
        assert self._guard is not None
        try:
            return self._guard.set(watts)
        except FootprintError as exc:  # a saved profile's limit this GPU does not accept
            print(f"footprint: power-limit tuning off: {exc}", file=sys.stderr)
            return False

    def _choose(self, profiles: list[obj.LimitProfile]) -> float:
        return profiles[obj.best(profiles, self.objective, eta=self.eta, max_slowdown=self.max_slowdown)].limit_w

    # -- the steps ----------------------------------------------------------------------------------

    def on_step_begin(self) -> None:
        if self.state == "new":
            self._start()
        if self.state == "warmup" and self._count >= self.warmup_steps:
            self._window = self._read()
            self.state, self._count = "profile", 0

    def on_step_end(self) -> None:
        if self.state == "warmup":
            self._count += 1
        elif self.state == "profile":
            self._count += 1
            if self._count >= self.profile_steps:
                self._measured()

    def on_epoch_end(self) -> None:
        """A measurement an epoch's end cut short is dropped: that limit is warmed up and measured again."""
        if self.state == "profile":
            self.state, self._count, self._window = "warmup", 0, None

    def _read(self) -> tuple[float, float]:
        """(GPU energy so far in J, summed over this process's GPUs; monotonic time), once queued GPU work is done."""
        from . import cuda

        with contextlib.suppress(Exception):
            cuda.synchronize()
        assert self._probe is not None
        energy = sum(r.energy_j for r in self._probe.read())
        return energy, self.clock.monotonic()

    def _measured(self) -> None:
        assert self._window is not None and self._guard is not None
        e1, t1 = self._read()
        e0, t0 = self._window
        energy, gpus, time_s = *_reduce([e1 - e0, float(len(self._guard.indices))], "sum"), \
            _reduce([t1 - t0], "max")[0]
        self.profiles.append(obj.LimitProfile(self._limits[self._i], self._count, energy, time_s, int(gpus)))
        if time_s < 10 * self._period_s and not self._warned_short and _rank() == 0:
            self._warned_short = True  # the counter's steps are then more than a tenth of what is compared
            print(f"footprint: power-limit profiles of {time_s:.3g} s are short for an energy counter that updates "
                  f"every {self._period_s:g} s: their energies are unreliable (raise profile_steps)", file=sys.stderr)
        self._ended.append(self.clock.now())
        self._i += 1
        self._count, self._window = 0, None
        if self._i < len(self._limits):
            if _agree(self._guard.set(self._limits[self._i])):
                self.state = "warmup"
                return
            self.state = "off"  # a limit the GPU took a moment ago is refused now: stop, put the original back
            self._guard.restore()
            return
        self._finish(source="profiled")

    def _finish(self, *, source: str) -> None:
        assert self._guard is not None
        chosen = self._choose(self.profiles)
        if not _agree(self._guard.current_w == chosen or self._guard.set(chosen)):
            self.state = "off"
            self._guard.restore()
            return
        self.chosen_w = chosen
        self.state = "done"
        what = obj.describe(self.objective, self.eta, self.max_slowdown)
        if _rank() == 0:
            how = f"from {source}" if source != "profiled" else f"{len(self.profiles)} limits profiled"
            self._guard.announce(f"GPU power limit tuned for {what}: {chosen:g} W on "
                                 f"{_gpus_text(self._guard.indices)} ({how})")
            if source == "profiled" and self.profile_path is not None:
                save_profile(self.profile_path, self.profiles, chosen_w=chosen, objective=what)
        self._store(source, what)

    def _store(self, source: str, what: str) -> None:
        run = self.run
        if run is None:
            return
        values = obj.scores(self.profiles, self.objective, eta=self.eta, max_slowdown=self.max_slowdown)
        now = self.clock.now()
        rows = [{"t": self._ended[k] if k < len(self._ended) else now, "limit_w": p.limit_w, "steps": p.steps,
                 "energy_j": p.energy_j, "time_s": p.time_s, "gpus": p.gpus, "score": values[k], "objective": what,
                 "chosen": int(p.limit_w == self.chosen_w), "source": source}
                for k, p in enumerate(self.profiles)]
        try:
            run.store.add_power_limits(run.id, rows)
        except Exception as exc:  # the tuning stands; only its record is lost
            print(f"footprint: the power-limit profile could not be stored with run {run.id}: {exc}", file=sys.stderr)

    def close(self) -> None:
        """Put the original limits back (the tuned one is kept until then) and close NVML."""
        if self._guard is not None:
            self._guard.restore()
        if self._probe is not None:
            self._probe.close()
            self._probe = None
        if self.state not in ("done", "off"):
            self.state = "off"


def save_profile(path: str, profiles: list[obj.LimitProfile], *, chosen_w: float, objective: str) -> None:
    data = {"format": PROFILE_FORMAT, "version": 1, "objective": objective, "chosen_w": chosen_w,
            "measurements": [p.to_dict() for p in profiles]}
    try:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2)
            fh.write("\n")
    except OSError as exc:
        print(f"footprint: cannot save the power-limit profile to {path}: {exc.strerror}", file=sys.stderr)


def load_profile(path: str) -> list[obj.LimitProfile]:
    """The measurements of a saved profile (FootprintError, one line, for a file that is not one)."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        if not isinstance(data, dict) or data.get("format") != PROFILE_FORMAT:
            raise ValueError("not a footprint power-limit profile")
        out = [obj.LimitProfile(float(m["limit_w"]), int(m["steps"]), float(m["energy_j"]), float(m["time_s"]),
                                int(m.get("gpus", 1))) for m in data["measurements"]]
        if not out or any(p.steps < 1 or p.energy_j < 0 or p.time_s <= 0 for p in out):
            raise ValueError("no usable measurement in it")
    except OSError as exc:
        raise FootprintError(f"cannot read the power-limit profile {path}: {exc.strerror}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise FootprintError(f"{path} is not a usable power-limit profile: {exc}") from None
    return out
