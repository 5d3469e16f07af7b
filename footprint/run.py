"""`Run`: one profiled piece of work, with spans and token counts; `track()` starts or joins one."""

from __future__ import annotations

import contextlib
import functools
import math
import os
import sqlite3
import sys
import threading
import time
import weakref
from pathlib import Path

from footprint.common.clock import SYSTEM, owner_clock
from footprint.common.clock import anchor as clock_anchor
from footprint.common.errors import FootprintError
from footprint.common.record import FrozenRecord
from footprint.core import carbon
from footprint.core.costs import resolve_costs
from footprint.core.embodied import resolve_embodied
from footprint.core.sampler import DEFAULT_INTERVAL_S, FLUSH_EVERY_S, Sampler
from footprint.core.settings import Resolver, Settings, switch_probes
from footprint.core.store import ENV_DB, Store, default_db_path

from . import cuda, distributed
from .distributed import Identity
from .probes import default_probes
from .probes.base import Probe, ProbeError

TYPE_CHECKING = False  # importing typing costs start-up time; annotations need it only when checked
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from typing import Any, TypeVar

    from footprint.core.model import RunReport
    from footprint.core.steps import ForecastReport
    from footprint.probes.base import Clock

    F = TypeVar("F", bound=Callable[..., Any])

ENV_RUN_ID = "FOOTPRINT_RUN_ID"
ENV_WAKE_FD = "FOOTPRINT_WAKE_FD"

_active = threading.local()
# The run the outermost active track() of this process opened or joined: what threads that did not enter a
# track() of their own find (the usual Thread(target=model.generate) beside a streamer), so they join it.
_process_run: Run | None = None
_enter_lock = threading.Lock()  # two threads entering track() at once: one starts the run, the other joins
_runs: weakref.WeakSet[Run] = weakref.WeakSet()  # every Run of this process, for the fork handler
_fork_kept: list[Store] = []  # the parent's DB connections in a forked child: never used nor closed there


def current_run() -> Run | None:
    """The run that `track()` opened or joined in this thread, else the one this process's outermost active
    `track()` opened or joined (from any thread), if any."""
    run: Run | None = getattr(_active, "run", None)
    return run if run is not None else _process_run


# The floor for the sampling interval: NVML's energy counter updates at about 10-100 Hz; reads any faster
# add nothing to the totals (run and span edges are read anyway) and only burn CPU and fill the DB.
MIN_INTERVAL_S = 0.01
_interval_warned = False


def check_interval(interval_s: float) -> float:
    global _interval_warned
    if not isinstance(interval_s, (int, float)) or interval_s != interval_s or interval_s <= 0:
        raise FootprintError(f"interval must be a positive number of seconds, got {interval_s!r}")
    if interval_s < MIN_INTERVAL_S:
        if not _interval_warned:
            _interval_warned = True
            print(f"footprint: interval {interval_s:g} s is below what the energy counters can serve; using "
                  f"{MIN_INTERVAL_S:g} s", file=sys.stderr)
        return MIN_INTERVAL_S
    return float(interval_s)


class Run:
    """A profiled run. Owns the sampler when it started the run; else it is attached to a run
    another process owns (code inside `footprint run`) and only records spans and tokens."""

    def __init__(self, store: Store, run_id: int, name: str, *, sampler: Sampler | None = None,
                 wake_fd: int | None = None, sync_cuda: bool | None = None, clock: Clock | None = None) -> None:
        self._store = store
        self._reopen: str | None = None  # a forked child opens its own connection at its first use of the DB
        # an attached run stamps its spans on the owner's timeline (attach_from_env gives it the owner's clock)
        self.clock: Clock = sampler.clock if sampler is not None else clock if clock is not None else SYSTEM
        # spans synchronise CUDA so queued kernels are billed where they were launched; off switch:
        # sync_cuda=False or FOOTPRINT_SYNC_CUDA=0
        self.sync_cuda = cuda.enabled_by_env() if sync_cuda is None else sync_cuda
        self.id = run_id
        self.name = name
        self.sampler = sampler
        self._wake_fd = wake_fd
        self._spans = threading.local()  # a span stack per thread
        self._home: list[int] = self._stack()  # the stack of the thread that made it: other threads' default
        self._open: set[int] = set()  # spans open in any thread
        self._foreign: set[int] = set()  # in a forked child: spans its parent opened (the parent ends them)
        self._unusable: str | None = None
        self._report: RunReport | None = None
        self._report_final = False  # _report was read after the run ended: it cannot change any more
        self._tokens_total: int | None = None  # what this run counts, read from the DB at the first add_tokens
        self.finished = False
        # attached: the latest span edge this process marked and whether the owner was woken to read it;
        # report() waits (bounded) until the owner has stored a reading at or after it
        self._edge: float | None = None
        self._edge_woken = False
        self.await_s = 2 * FLUSH_EVERY_S + 1.0  # attach_from_env adds the owner's interval
        _runs.add(self)

    @property
    def store(self) -> Store:
        if self._reopen is not None:
            path, self._reopen = self._reopen, None
            try:
                self._store = Store(path, create=False)
            except Exception as exc:
                self._unusable = f"run {self.id} cannot be used in this forked process: {exc}"
                raise FootprintError(self._unusable) from None
        return self._store

    @store.setter
    def store(self, store: Store) -> None:
        self._store, self._reopen = store, None

    @property
    def attached(self) -> bool:
        return self.sampler is None

    # -- boundaries -----------------------------------------------------------------------------

    def _mark(self) -> float:
        if self.sync_cuda:
            with contextlib.suppress(Exception):
                cuda.synchronize()
        if self.sampler is not None:
            return self.sampler.mark()
        # the edge's time is taken before the owner is asked to read, so the owner's read comes at or after it
        t = self.clock.now()
        woken = False
        if self._wake_fd is not None:  # ask the owning process to read its counters now
            # a full pipe (OSError): the owner is reading already; its periodic reads cover this edge
            with contextlib.suppress(OSError):
                woken = os.write(self._wake_fd, b"m") == 1
        if self._edge is None or t >= self._edge:
            self._edge, self._edge_woken = t, woken
        return t

    def _await_owner(self) -> str | None:
        """Attached: wait until the owning process has stored a reading at or after this process's latest span
        edge (a read it was woken for, else a periodic one), so the figures read now are the ones the DB
        will hold. Bounded: returns a warning if the owner did not store one in time."""
        edge, woken = self._edge, self._edge_woken
        if edge is None:
            return None
        deadline = time.monotonic() + self.await_s
        delay = 0.001
        while not self.store.reading_stored_since(self.id, edge, mark=woken):
            if time.monotonic() >= deadline:
                return (f"the process that owns run {self.id} stored no reading after this process's last span "
                        f"edge within {self.await_s:.1f} s: the latest spans' figures may be low")
            time.sleep(delay)
            delay = min(2 * delay, 0.05)
        if self._edge == edge:
            self._edge = None
        return None

    def _check_open(self) -> None:
        """Spans and tokens after the run has ended would be stored outside it, and after the report it gave:
        refuse them. An attached run asks the DB whether its owner has ended it."""
        if self._unusable is not None:
            raise FootprintError(self._unusable)
        ended = self.finished
        if not ended and self.attached:
            status = self.store.run_status(self.id)
            ended = status is not None and status != "running"
            if ended:
                self.finished = True
        if ended:
            raise FootprintError(f"run {self.id} ('{self.name}') has ended: spans and tokens can no longer be "
                                 "added to it (start another with footprint.track())")

    def _stack(self) -> list[int]:
        stack: list[int] | None = getattr(self._spans, "stack", None)
        if stack is None:
            stack = self._spans.stack = []
        return stack

    def _innermost(self, stack: list[int]) -> int | None:
        """The span new spans and tokens of this thread go in: its own innermost open span, else (a thread
        that opened none, such as a generation thread) the innermost one of the thread that made the run."""
        for s in (stack, self._home):
            with contextlib.suppress(IndexError):  # another thread's stack may shrink while we look
                return s[-1]
        return None

    @contextlib.contextmanager
    def span(self, name: str, *, tokens: int | None = None) -> Iterator[Run]:
        """A named phase. Spans nest; tokens given here (or added inside) are billed to it."""
        span_id = self.begin_span(name)
        try:
            if tokens is not None:
                self.add_tokens(tokens)
            yield self
        finally:
            self.end_span(span_id)

    def begin_span(self, name: str) -> int:
        """Open a span inside the innermost open one (for phases that do not fit a with-block, such as
        prefill ending when the first token streams out); close it with end_span."""
        self._check_open()
        stack = self._stack()
        span_id = self.store.start_span(self.id, name, self._innermost(stack), self._mark())
        stack.append(span_id)
        self._open.add(span_id)
        return span_id

    def end_span(self, span_id: int) -> None:
        stack = self._stack()
        if span_id in self._foreign:  # a forked child leaving its parent's span: the parent ends it
            if span_id in stack:
                stack.remove(span_id)
            return
        self._check_open()
        if span_id in stack:
            stack.remove(span_id)
        self._open.discard(span_id)
        self.store.end_span(span_id, self._mark())

    def switch_span(self, span_id: int, name: str) -> int:
        """End `span_id` and open `name` in its place at the same instant, from one read of the counters:
        consecutive phases (prefill, then decode) share their edge, so their energies add up to the whole."""
        self._check_open()
        stack = self._stack()
        at = stack.index(span_id) if span_id in stack else len(stack)
        parent = stack[at - 1] if at > 0 else None  # the new phase is a sibling of the one it ends
        t = self._mark()
        self.store.end_span(span_id, t)
        new_id = self.store.start_span(self.id, name, parent, t)
        stack[at:at + 1] = [new_id]  # in the ended span's place on the stack
        self._open.discard(span_id)
        self._open.add(new_id)
        return new_id

    def add_tokens(self, n: int, *, kind: str = "tokens", span: int | None = None) -> None:
        """Count n tokens toward the run and the innermost open span (or `span`, an id from begin_span).

        `kind` tells them apart in reports: e.g. "prompt" and "generated" for inference, "train" for
        training; per-token figures use all kinds unless a report picks one.
        """
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n < 2**63:
            raise FootprintError(f"tokens must be a non-negative integer below 2**63, got {n!r}")
        self._check_open()
        if span is None:
            span = self._innermost(self._stack())
        with self.store.lock:  # reports add the counts up in SQLite's 64-bit INTEGER: keep the total below 2**63
            if self._tokens_total is None:
                self._tokens_total = self.store.tokens_total(self.id)
            if n > 2**63 - 1 - self._tokens_total:
                raise FootprintError(f"run {self.id} would count more than 2**63 - 1 tokens "
                                     f"({self._tokens_total} so far, adding {n})")
            self.store.add_tokens(self.id, span, self.clock.now(), n, kind)
            self._tokens_total += n

    def set_quality(self, value: float, *, metric: str | None = None) -> None:
        """Record how good this run's output was, higher is better (accuracy, win rate, exp(-NLL)...), named by
        `metric` if you like. `footprint compare` shows it, and `footprint sweep` picks the cheapest point whose
        quality is within a margin of the best. Called again, the latest value counts."""
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise FootprintError(f"quality must be a finite number, got {value!r}")
        if metric is not None and not isinstance(metric, str):
            raise FootprintError(f"metric must be a text, got {metric!r}")
        self._check_open()
        self.store.add_quality(self.id, self.clock.now(), float(value), metric=metric, source="set_quality")

    def _forked(self) -> None:
        """In a child made by os.fork(): the sampler thread, and any lock another thread held, stayed in the
        parent, and the parent's DB connection must not be used here. The child becomes a process that joined
        the run: its own connection, spans on the same timeline, span edges written into the parent's wake
        pipe; the spans open at the fork are the parent's to end."""
        old = self._store
        _fork_kept.append(old)
        old.lock = threading.RLock()
        self._reopen = old.path  # no I/O while forking: the new connection is opened at the first use
        self._home = self._stack()  # the forking thread's stack (the only thread the child has)
        self._foreign = set(self._open)
        self._tokens_total = None
        self._report, self._report_final, self._edge = None, False, None
        if self.sampler is not None:
            self._wake_fd = self.sampler.wake_fd  # inherited: the parent's sampler reads the other end
            self.await_s += self.sampler.interval_s
            self.sampler = None

    def expect(self, *, steps: int | None = None, epochs: int | None = None, span: str | None = None,
               replace: bool = True) -> None:
        """Say how many steps (or epochs) the workload will take: the report, the summary, `footprint watch` and
        the JSON then forecast the run's total energy, kWh, CO2e, cost and time from the steps measured so far
        (with a 95 % interval), and a finished run says how far the forecast made at 10 % of the steps was from
        its final total. Steps are the spans named `span` (a glob; default "step", the per-step spans of the
        Trainer and Lightning callbacks, or "epoch-*" with `epochs`). `replace=False` keeps an expectation the
        run has already (what the callbacks pass, so the user's own call wins)."""
        from footprint.core.steps import EXPECT, expect_meta

        wanted = expect_meta(steps, epochs, span)
        self._check_open()
        self.store.update_meta(self.id, {EXPECT: wanted}, keep=not replace)

    @property
    def forecast(self) -> ForecastReport | None:
        """The forecast of the run's totals, once `expect()` was called and a step has ended."""
        return self.report().forecast

    # -- results --------------------------------------------------------------------------------

    def report(self, *, power: bool = False) -> RunReport:
        """The run's figures (read from the store). `power=True` adds per-device power curves, for charts."""
        from footprint.core.model import load_run

        # a report is kept only once the run has ended (one taken before is stale by then)
        if not self._report_final or self._report is None or (power and not self._report.power):
            final = self.finished
            late = None
            if self.attached:
                late = self._await_owner()
            elif not self.finished and self.sampler is not None:
                self.sampler.flush()  # the reads at this run's span edges are in the DB before it is read
            self._report = load_run(self.store, self.id, power=power)
            if late:
                self._report.warnings.append(late)
            self._report_final = final and not late
        return self._report

    @property
    def energy_j(self) -> float | None:
        return self.report().energy_j["total"]

    @property
    def kwh(self) -> float | None:
        return self.report().kwh

    @property
    def co2e_g(self) -> float | None:
        return self.report().co2e_g

    @property
    def tokens(self) -> int | None:
        return self.report().tokens

    @property
    def j_per_token(self) -> float | None:
        return self.report().j_per_token

    @property
    def duration_s(self) -> float | None:
        return self.report().duration_s


def _cpu_packages() -> int | None:
    """CPU packages (sockets), for embodied carbon: CPUs over those sharing cpu0's package (one file read)."""
    try:
        text = Path("/sys/devices/system/cpu/cpu0/topology/package_cpus_list").read_text()
    except OSError:
        return None
    in_package = 0
    for part in text.strip().split(","):
        lo, _, hi = part.partition("-")
        if not lo.strip().isdigit() or (hi and not hi.strip().isdigit()):
            return None
        in_package += (int(hi) - int(lo) + 1) if hi else 1
    count = os.cpu_count()
    return max(1, round(count / in_package)) if count and in_package else None


def _ram_gb() -> float | None:
    """Installed memory in GiB (what CodeCarbon writes as ram_total_size, in "GB"), from sysconf: no import."""
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 3)
    except (ValueError, OSError, AttributeError):
        return None


def start_run(name: str, *, db: str | None = None, interval: float = DEFAULT_INTERVAL_S,
              country: str | None = None, carbon_intensity: float | None = None, region: str | None = None,
              pue: float | None = None, price_kwh: float | None = None, price_hour: float | None = None,
              currency: str | None = None, baseline: float | None = None, sync_cuda: bool | None = None,
              ident: Identity | None = None, probes: list[Probe] | None = None, command: list[str] | None = None,
              meta: dict[str, Any] | None = None, clock: Clock | None = None, embodied: bool | None = None,
              embodied_lifetime_years: float | None = None, embodied_utilisation: float | None = None) -> Run:
    """Create a run, open its probes, optionally measure idle power for `baseline` seconds, take the first
    reading and start the sampler. Options have the names of `track()`'s and the CLI's flags; `clock` is for
    tests (a FakeClock: no sampler thread, time moves when the test says). `embodied` (on/off),
    `embodied_lifetime_years` and `embodied_utilisation` say how the devices' manufacturing CO2e is amortised."""
    interval_s = check_interval(interval)
    if baseline is not None and not (baseline > 0 and baseline < float("inf")):
        raise FootprintError(f"baseline must be a positive number of seconds, got {baseline!r}")
    resolver = Resolver()
    switch_probes(resolver)  # before the probes are chosen: the BMC is read only when asked for
    intensity = carbon.resolve(country, carbon_intensity, region, resolver=resolver)
    costs = resolve_costs(pue=pue, price_kwh=price_kwh, price_hour=price_hour, currency=currency, resolver=resolver)
    amortised = resolve_embodied(embodied_on=embodied, lifetime_years=embodied_lifetime_years,
                                 utilisation=embodied_utilisation, resolver=resolver)
    clock = clock if clock is not None else SYSTEM
    store = Store(db or default_db_path())
    u = os.uname()  # platform.platform() and socket.gethostname() cost start-up time; this says the same
    host = u.nodename
    opened: list[Probe] = []
    devices = []
    for probe in probes if probes is not None else default_probes():
        try:
            devices.extend(probe.open())
            opened.append(probe)
        except ProbeError as exc:
            print(f"footprint: {probe.name} probe skipped: {exc}", file=sys.stderr)
    meta = {"os": f"{u.sysname}-{u.release}-{u.machine}", "python": sys.version.split()[0],
            "cpu_count": os.cpu_count(), "ram_total_gb": _ram_gb(), "cpu_packages": _cpu_packages(),
            "embodied": amortised, **(meta or {})}
    pue_source = resolver.origin_text("pue", pue)
    if pue_source is not None:
        meta["pue_source"] = pue_source  # flag, variable or file: the summary says which
    if clock is SYSTEM:  # processes that join the run put their spans on this process's timeline with it
        meta["clock_anchor"] = clock_anchor()
    run_id = store.create_run(name, created_at=clock.now(), host=host, pid=os.getpid(), command=command,
                              interval_s=interval_s, country=intensity.country,
                              carbon_g_per_kwh=intensity.g_per_kwh, carbon_source=intensity.source,
                              region=region.lower() if region else None, pue=costs.pue, price_kwh=costs.price_kwh,
                              price_hour=costs.price_hour, currency=costs.currency, meta=meta,
                              job_id=ident.job_id if ident else None, rank=ident.rank if ident else None,
                              node=ident.node if ident else None)
    sampler: Sampler | None = None
    try:
        ids = store.add_devices(run_id, devices, host)
        if baseline:
            for key, watts in measure_idle(opened, baseline).items():
                store.set_baseline(ids[key], watts)
        sampler = Sampler(store, run_id, opened, ids, interval_s=interval_s, clock=clock)
        run = Run(store, run_id, name, sampler=sampler, sync_cuda=sync_cuda)
        store.set_started(run_id, run._mark())
        sampler.start()
    except BaseException as exc:  # Ctrl-C or a signal during --baseline: the run ends here, not "running"
        _abandon(store, run_id, opened, sampler, exc)
        raise
    return run


def _after_fork_in_child() -> None:
    global _enter_lock
    _enter_lock = threading.Lock()
    for run in list(_runs):
        if not run.finished:
            run._forked()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _abandon(store: Store, run_id: int, probes: list[Probe], sampler: Sampler | None, exc: BaseException) -> None:
    interrupted = isinstance(exc, KeyboardInterrupt)  # footprint.child.Interrupted carries the signal's code
    with contextlib.suppress(Exception):
        if sampler is not None:
            sampler.stop()
        for probe in probes:
            with contextlib.suppress(Exception):
                probe.close()
        store.finish_run(run_id, status="interrupted" if interrupted else "failed",
                         exit_code=getattr(exc, "exit_code", 130) if interrupted else None, ended_at=SYSTEM.now())


def measure_idle(probes: list[Probe], seconds: float) -> dict[str, float]:
    """Mean power of every device over `seconds` of doing nothing (before the workload starts)."""
    def read() -> dict[str, tuple[float, float]]:
        out: dict[str, tuple[float, float]] = {}
        for probe in probes:
            with contextlib.suppress(ProbeError):
                out.update({r.device.key: (r.t, r.energy_j) for r in probe.read()})
        return out

    first = read()
    end = time.monotonic() + seconds
    while time.monotonic() < end:  # estimates integrate power, so they need reads along the way
        time.sleep(min(0.25, max(0.0, end - time.monotonic())))
        read()
    last = read()
    return {k: (last[k][1] - first[k][1]) / (last[k][0] - first[k][0])
            for k in last if k in first and last[k][0] > first[k][0]}


def finish_run(run: Run, *, status: str = "completed", exit_code: int | None = None) -> None:
    """Take the last reading, stop the sampler, flush, and record the outcome."""
    if run.finished:
        return
    sampler = run.sampler
    assert sampler is not None, "attached runs are finished by their owner"
    ended = run._mark()
    sampler.stop()
    for probe in sampler.probes:
        with contextlib.suppress(Exception):
            probe.close()
    run.finished = True
    from .gpu_use import record as record_gpus_used
    from .gpu_use import torch_used

    with contextlib.suppress(Exception):  # in-process: the GPUs torch holds memory on (a bonus, never a failure)
        record_gpus_used(run.store, run.id, torch_used(sampler.probes), "torch")
    for attempt in range(3):
        try:
            if sampler.last_flush_error is not None:
                sampler.flush()
            run.store.finish_run(run.id, status=status, exit_code=exit_code, ended_at=ended)
            if sampler.last_flush_error is None:
                _attribute_requests(run)
                return
        except sqlite3.Error as exc:
            sampler.last_flush_error = str(exc)
        time.sleep(0.2 * (attempt + 1))
    raise FootprintError(f"could not finish run {run.id} in {run.store.path}: {sampler.last_flush_error}; "
                         "samples written before this are kept (the run shows as incomplete)")


def _attribute_requests(run: Run) -> None:
    """A run that served requests stores each one's share of its energy (reports compute it again, so a
    failure here loses nothing)."""
    from footprint.core.serving import write_attribution

    try:
        write_attribution(run.store, run.id)
    except Exception as exc:
        print(f"footprint: warning: the requests' energy was not stored ({type(exc).__name__}: {exc}); "
              "`footprint report --requests` computes it from the samples", file=sys.stderr)


def attach_from_env() -> Run | None:
    """The run of a parent `footprint run`, if this process was started inside one."""
    run_id = os.environ.get(ENV_RUN_ID)
    if not run_id:
        return None
    try:
        rid = int(run_id)
    except ValueError:
        raise FootprintError(f"{ENV_RUN_ID} must be a run id, got '{run_id}'") from None
    store = Store(os.environ.get(ENV_DB) or default_db_path(), create=False)
    row = store.run_row(rid)
    if row is None:
        raise FootprintError(f"{ENV_RUN_ID}={rid} names no run in {store.path}")
    name = str(row["name"])
    from footprint.core.model import effective_status

    status = effective_status(row)
    if status != "running":  # left over from a process that has ended: joining would count nothing
        print(f"footprint: {ENV_RUN_ID}={rid} names a run that has ended ({status}) in {store.path}; "
              "starting a new run", file=sys.stderr)
        store.close()
        return None
    clock = owner_clock(_meta(row).get("clock_anchor"))
    if clock is None and row["heartbeat_at"] is not None and abs(SYSTEM.now() - row["heartbeat_at"]) > CLOCK_SLACK_S:
        # no shared monotonic clock (another boot, or an owner that recorded no anchor): say what we see
        print(f"footprint: this process's clock is {SYSTEM.now() - row['heartbeat_at']:+.0f} s from that of the "
              f"process that owns run {rid}: its spans may fall outside the run's readings", file=sys.stderr)
    run = Run(store, rid, name, wake_fd=inherited_wake_fd(os.environ.get(ENV_WAKE_FD)), clock=clock)
    if row["interval_s"]:
        run.await_s += float(row["interval_s"])
    return run


CLOCK_SLACK_S = 5.0  # a live owner's heartbeat is at most a flush (1 s, more on a loaded machine) old


def _meta(row: Any) -> dict[str, Any]:
    import json

    try:
        meta = json.loads(row["meta"]) if row["meta"] else {}
    except (TypeError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def wake_fd_token(fd: int) -> str:
    """What the parent puts in FOOTPRINT_WAKE_FD: the fd and its pipe's inode, so a process that did not
    inherit it (and may hold an unrelated file under that number) never writes into the wrong file."""
    return f"{fd}:{os.fstat(fd).st_ino}"


def inherited_wake_fd(token: str | None) -> int | None:
    import stat

    fd_text, _, ino = (token or "").partition(":")
    if not fd_text.isdigit() or not ino.isdigit():
        return None
    fd = int(fd_text)
    try:
        st = os.fstat(fd)
        if not stat.S_ISFIFO(st.st_mode) or st.st_ino != int(ino):
            return None
        os.set_blocking(fd, False)  # a full pipe must never stall the workload: skip that wake-up
    except OSError:
        return None  # not inherited: span edges are interpolated from the parent's samples instead
    return fd


ENV_EXPORTED = (ENV_RUN_ID, ENV_DB, ENV_WAKE_FD)


def _export(run: Run) -> dict[str, str | None] | None:
    """While a run track() started is active, the processes this one starts (subprocess, multiprocessing's
    spawn and forkserver workers, os.fork) find it in the environment and join it, as code inside
    `footprint run` does, instead of starting runs that count the same machine again. Returns what the
    variables were, for `_restore_env` when the run ends. Runs on a test clock or in memory are not shared."""
    sampler = run.sampler
    if sampler is None or sampler.clock.fake or run.store.path == ":memory:":
        return None
    saved = {k: os.environ.get(k) for k in ENV_EXPORTED}
    os.environ[ENV_RUN_ID] = str(run.id)
    os.environ[ENV_DB] = os.path.abspath(run.store.path)
    os.environ[ENV_WAKE_FD] = wake_fd_token(sampler.wake_fd)  # reaches children that inherit the pipe only
    return saved


def _restore_env(saved: dict[str, str | None] | None) -> None:
    for key, value in (saved or {}).items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


class RunOptions(FrozenRecord):
    """What `track()` passes to `start_run` when it starts a run: never changed after construction, so one
    decorator's calls can share it. The economics settings are the read model's `Settings` record."""

    __slots__ = ("db", "interval", "baseline", "probes", "clock", "settings")

    def __init__(self, db: str | None = None, interval: float = DEFAULT_INTERVAL_S, baseline: float | None = None,
                 probes: tuple[Probe, ...] | None = None, clock: Clock | None = None,
                 settings: Settings | None = None) -> None:
        self.db = db
        self.interval = interval
        self.baseline = baseline
        self.probes = probes
        self.clock = clock
        self.settings = settings if settings is not None else Settings()

    def __hash__(self) -> int:
        return id(self)  # probes and clocks are not hashable values; identity is what matters here

    def start_kwargs(self) -> dict[str, Any]:
        """start_run's keyword arguments."""
        return {"db": self.db, "interval": self.interval, "baseline": self.baseline,
                "probes": list(self.probes) if self.probes is not None else None, "clock": self.clock,
                **self.settings.to_dict()}


class track(contextlib.ContextDecorator):
    """Profile a block or a function.

        with footprint.track("finetune") as run:
            with run.span("epoch-1"):
                ...
                run.add_tokens(batch_tokens)
        print(run.energy_j, run.kwh, run.j_per_token)

    Inside `footprint run -- ...` (or inside another `track`), it joins that run as a span instead
    of starting its own, so nothing is counted twice.
    """

    def __init__(self, name: str | None = None, *, db: str | None = None,
                 interval: float = DEFAULT_INTERVAL_S, country: str | None = None, region: str | None = None,
                 carbon_intensity: float | None = None, pue: float | None = None, price_kwh: float | None = None,
                 price_hour: float | None = None, currency: str | None = None, baseline: float | None = None,
                 probes: list[Probe] | None = None, sync_cuda: bool | None = None, summary: bool = True,
                 clock: Clock | None = None, embodied: bool | None = None,
                 embodied_lifetime_years: float | None = None, embodied_utilisation: float | None = None) -> None:
        self.name = name
        self.summary = summary
        self.sync_cuda = sync_cuda
        self.options = RunOptions(db=db, interval=interval, baseline=baseline,
                                  probes=tuple(probes) if probes is not None else None, clock=clock,
                                  settings=Settings(country=country, region=region, carbon_intensity=carbon_intensity,
                                                    pue=pue, price_kwh=price_kwh, price_hour=price_hour,
                                                    currency=currency, embodied=embodied,
                                                    embodied_lifetime_years=embodied_lifetime_years,
                                                    embodied_utilisation=embodied_utilisation))
        self.run: Run | None = None
        self._span: contextlib.AbstractContextManager[Run] | None = None
        self._owner = False
        self._ident: Identity | None = None
        self._prev_active: Run | None = None
        self._sets_process = False
        self._saved_env: dict[str, str | None] | None = None

    def __call__(self, func: F) -> F:
        if self.name is None:
            self.name = getattr(func, "__qualname__", "run")

        import inspect

        def fresh() -> track:
            # a fresh tracker per call, so recursive or repeated calls each get their own run
            t = track(self.name, summary=self.summary, sync_cuda=self.sync_cuda)
            t.options = self.options
            return t

        # calling these returns a coroutine or generator at once: measure the awaiting or the iterating
        if inspect.iscoroutinefunction(func):
            @functools.wraps(func)
            async def awaited(*args: Any, **kwargs: Any) -> Any:
                with fresh():
                    return await func(*args, **kwargs)

            return awaited  # type: ignore[return-value]
        if inspect.isasyncgenfunction(func):
            @functools.wraps(func)
            async def iterated_async(*args: Any, **kwargs: Any) -> Any:
                with fresh():
                    async for item in func(*args, **kwargs):
                        yield item

            return iterated_async  # type: ignore[return-value]
        if inspect.isgeneratorfunction(func):
            @functools.wraps(func)
            def iterated(*args: Any, **kwargs: Any) -> Any:
                with fresh():
                    return (yield from func(*args, **kwargs))

            return iterated  # type: ignore[return-value]

        @functools.wraps(func)
        def inner(*args: Any, **kwargs: Any) -> Any:
            with fresh():
                return func(*args, **kwargs)

        return inner  # type: ignore[return-value]

    def __enter__(self) -> Run:
        global _process_run
        self._prev_active = getattr(_active, "run", None)
        with _enter_lock:
            outer = current_run()
            if outer is not None and outer.finished:
                outer = None
            outer = outer or attach_from_env()
            if outer is None:
                return self._start()
            if _process_run is None:
                _process_run, self._sets_process = outer, True
        if self.sync_cuda is not None:
            outer.sync_cuda = self.sync_cuda
        self.run = outer
        # a rank joining a run another process owns (footprint run -- torchrun ...) says which rank it is
        name = self.name or "run"
        self._span = outer.span(distributed.span_name(name) if outer.attached else name)
        self._span.__enter__()
        _active.run = outer
        return outer

    def _start(self) -> Run:
        global _process_run
        name = self.name or "run"
        options = self.options.start_kwargs()
        self._ident = distributed.identity()
        if self._ident is not None:
            # one run per rank: its own GPU(s), CPU and RAM on local rank 0 only, one DB per node
            if options["probes"] is None:
                options["probes"] = default_probes(node=self._ident.measures_node,
                                                   cuda_ordinals=distributed.gpu_ordinals(self._ident))
            options["db"] = options["db"] or distributed.default_db(self._ident)
            options["ident"] = self._ident
        run = self.run = start_run(name, meta={"argv": sys.argv}, sync_cuda=self.sync_cuda, **options)
        self._owner = True
        _active.run = run
        if _process_run is None:
            _process_run, self._sets_process = run, True
        self._saved_env = _export(run)
        return run

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        global _process_run
        run = self.run
        assert run is not None
        _active.run = self._prev_active  # a nested track() leaves the outer one's run current
        if self._sets_process and _process_run is run:
            _process_run = None
        if self._span is not None:
            self._span.__exit__(exc_type, exc, tb)
            return
        _restore_env(self._saved_env)
        if run.attached:  # a forked child leaving the block its parent started the run in: the parent ends it
            return
        if exc_type is None:
            status, code = "completed", 0
        elif issubclass(exc_type, KeyboardInterrupt):
            status, code = "interrupted", 130
        elif issubclass(exc_type, SystemExit):
            exit_code = getattr(exc, "code", 1)
            code = exit_code if isinstance(exit_code, int) else (0 if exit_code is None else 1)
            status = "completed" if code == 0 else "failed"
        else:
            status, code = "failed", 1
        finish_run(run, status=status, exit_code=code)
        if self._ident is not None:
            distributed.finish_job(lambda: run.report().to_dict(), self._ident, failed=exc_type is not None,
                                   summary=self.summary)
        if self._ident is not None and exc_type is None:
            return
        if self.summary:
            from .summary import print_summary

            print_summary(run)


def end_training(run: Run | None, spans: Iterable[int | None], tracker: track | None,
                 exc: BaseException | None = None) -> None:
    """What a training callback (HF Trainer, Lightning) does at the end, or on an exception: end its open spans,
    innermost first, then the run it started itself, if it did (failed or interrupted when `exc` is given)."""
    if run is not None:
        for span in spans:
            if span is not None:
                run.end_span(span)
    if tracker is not None:
        tracker.__exit__(type(exc) if exc is not None else None, exc, exc.__traceback__ if exc is not None else None)
