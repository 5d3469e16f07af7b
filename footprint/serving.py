"""Recording served requests into a run: what the proxy (footprint.proxy) and the ASGI middleware
(footprint.asgi) share.

A request is begun when its head arrives and finished when its response ends (or fails); its row, with its
token counts, is written in batches by a background thread, so the server's event loop never waits on the
DB. Its energy is attributed when the run ends (footprint.core.serving), and on the spot, provisionally, for
response headers and live metrics when those are asked for: from a counter read taken at or after the request's
end, which requests ending together share (one read begun after they ended serves them all, in one thread).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import itertools
import sys
import threading
from concurrent.futures import Future, InvalidStateError

from footprint.core.serving import provisional_energies

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .exporter import ServingMetrics
    from .run import Run
    from .wire import RequestInfo, Usage

FLUSH_EVERY_S = 1.0


class Request:
    """One request in flight: times on the run's clock, what it asked, what it got."""

    __slots__ = ("key", "info", "started_at", "first_token_at", "ended_at", "status", "usage", "error",
                 "tokens_so_far")

    def __init__(self, key: int, info: RequestInfo, started_at: float) -> None:
        self.key = key
        self.info = info
        self.started_at = started_at
        self.first_token_at: float | None = None
        self.ended_at: float | None = None
        self.status: int | None = None
        self.usage: Usage | None = None
        self.error: str | None = None
        self.tokens_so_far = 0  # streamed text chunks, for provisional figures of requests still running

    def usage_so_far(self) -> Usage:
        """What is known of a request cut short: its streamed text chunks, counted (else nothing)."""
        from .wire import Usage

        return Usage(None, self.tokens_so_far, "counted") if self.tokens_so_far else Usage()

    def row(self) -> dict[str, Any]:
        u = self.usage
        return {"started_at": self.started_at, "first_token_at": self.first_token_at, "ended_at": self.ended_at,
                "model": self.info.model, "endpoint": self.info.endpoint, "status": self.status,
                "stream": int(self.info.stream), "prompt_tokens": u.prompt_tokens if u else None,
                "completion_tokens": u.completion_tokens if u else None,
                "usage_source": u.source if u else "none", "error": self.error}


class RequestLog:
    """Requests of one run: begin/first_token/finish from any thread or event loop; rows written in batches."""

    def __init__(self, run: Run, *, provisional: bool = False, metrics: ServingMetrics | None = None,
                 flush_every_s: float = FLUSH_EVERY_S) -> None:
        self.run = run
        self.clock = run.clock
        self.provisional = provisional or metrics is not None
        self.metrics = metrics
        self._keys = itertools.count(1)
        self._lock = threading.Lock()
        self._active: dict[int, Request] = {}
        self._recent: list[Request] = []  # finished, kept while they may overlap an active request's window
        self._waiting: dict[int, Request] = {}  # ended, their provisional figure not worked out yet
        self._pending: list[dict[str, Any]] = []
        self._flush_every_s = flush_every_s
        self._wake = threading.Event()
        self._closed = False
        self.write_error: str | None = None
        self._thread = threading.Thread(target=self._loop, name="footprint-requests", daemon=True)
        self._thread.start()
        # provisional figures: requests waiting for a counter read after their end, served by one thread
        self._due: list[tuple[Request, Future[float | None]]] = []
        self._due_cond = threading.Condition()
        self._reader: threading.Thread | None = None
        self._reader_done = not self.provisional
        if self.provisional:
            self._reader = threading.Thread(target=self._read_loop, name="footprint-provisional", daemon=True)
            self._reader.start()
        atexit.register(self.close)

    def begin(self, info: RequestInfo) -> Request:
        req = Request(next(self._keys), info, self.clock.now())
        with self._lock:
            self._active[req.key] = req
        return req

    def token(self, req: Request) -> None:
        """A streamed chunk with text went to the client."""
        if req.first_token_at is None:
            req.first_token_at = self.clock.now()
        req.tokens_so_far += 1

    def finish(self, req: Request, *, status: int | None, usage: Usage, error: str | None = None) -> None:
        """The response has ended: its row is queued for the DB, and (headers or metrics asked for) its
        provisional figure is worked out in the background, for the metrics. Never waits."""
        self._end(req, status, usage, error)

    async def finish_async(self, req: Request, *, status: int | None, usage: Usage,
                           error: str | None = None) -> float | None:
        """finish() for a response that carries its figure: returns the request's provisional energy in J (None
        without headers or metrics, or if it could not be worked out). An attribution over the counter reads up
        to a read taken at or after its end, with requests still running counted at the work they have done so
        far. The wait holds no thread: the read is shared with every request that ends before it begins."""
        due = self._end(req, status, usage, error)
        if due is None:
            return None
        return await asyncio.wrap_future(due)

    def _end(self, req: Request, status: int | None, usage: Usage, error: str | None) -> Future[float | None] | None:
        req.ended_at = self.clock.now()
        req.status, req.usage, req.error = status, usage, error
        with self._lock:
            self._active.pop(req.key, None)
            self._pending.append(req.row())
            if self.provisional:
                self._recent.append(req)
                self._waiting[req.key] = req  # from the same instant as it leaves the active ones
        if not self.provisional:
            return None
        due: Future[float | None] = Future()
        with self._due_cond:
            if self._reader_done:  # closed: no read will come
                self._figured([req])
                due.set_result(None)
                return due
            self._due.append((req, due))
            self._due_cond.notify()
        return due

    def _read_loop(self) -> None:
        """One counter read at a time, for every request that had ended when it began; then their figures."""
        while True:
            with self._due_cond:
                while not self._due and not self._closed:
                    self._due_cond.wait()
                if not self._due:
                    self._reader_done = True
                    return
                # those queued by now had ended before this read begins: it covers them (by queue order, not
                # by time stamps, which a wall-clock step could put after the read's)
                batch = len(self._due)
            try:
                self._read_counters()
                failed = None
            except Exception as exc:  # a figure for a header must never fail the response
                failed = f"{type(exc).__name__}: {exc}"
            with self._due_cond:  # only this thread takes from the queue; others only append to it
                ready, self._due = self._due[:batch], self._due[batch:]
            if failed is not None:
                self.write_error = failed
            try:
                energies = self._provisional([r for r, _ in ready]) if failed is None else [None] * len(ready)
                for (req, due), energy in zip(ready, energies, strict=True):
                    if self.metrics is not None and req.usage is not None:
                        self.metrics.observe(req.info.model, req.usage, energy)
                    with contextlib.suppress(InvalidStateError):  # its waiter was cancelled (the client left)
                        due.set_result(energy)
            except Exception as exc:  # the thread goes on: later requests still get their figures
                self.write_error = f"{type(exc).__name__}: {exc}"
            finally:  # whatever went wrong, no response is left waiting for its figure
                self._figured([r for r, _ in ready])
                for _, due in ready:
                    with contextlib.suppress(InvalidStateError):
                        due.set_result(None)

    def _read_counters(self) -> None:
        run = self.run
        if run.sampler is not None:
            run.sampler.mark()  # a counter read after the requests' ends
            run.sampler.flush()
        else:  # the run's owner (footprint run/serve) reads the counters: ask it to, and wait for the read
            run._mark()
            run._await_owner()

    def _figured(self, reqs: list[Request]) -> None:
        with self._lock:
            for r in reqs:
                self._waiting.pop(r.key, None)

    def _provisional(self, reqs: list[Request]) -> list[float | None]:
        if not reqs:  # close() took them while the read was under way
            return []
        run = self.run
        with self._lock:
            now = self.clock.now()
            # a finished request is kept while it may overlap one whose figure is still to come: one running, or
            # one that has ended and waits (a read may be under way for others)
            oldest = min(r.started_at for r in itertools.chain(self._active.values(), self._waiting.values(), reqs))
            self._recent = [r for r in self._recent if (r.ended_at or now) >= oldest]
            # only those around the batch: a request open for hours must not make each batch attribute every
            # request served since it began (the sharing is local in time)
            since, until = min(r.started_at for r in reqs), max(r.ended_at or now for r in reqs)
            finished = [r for r in self._recent if (r.ended_at or now) > since and r.started_at < until]
            running = [r for r in self._active.values() if r.started_at < until]
        try:
            return list(provisional_energies(run.store, run.id, reqs, finished, running, now=now))
        except Exception as exc:  # a figure for a header must never fail the response
            self.write_error = f"{type(exc).__name__}: {exc}"
            return [None] * len(reqs)

    # -- writing ------------------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._closed:
            self._wake.wait(self._flush_every_s)
            self._wake.clear()
            self.flush()

    def flush(self) -> None:
        with self._lock:
            rows, self._pending = self._pending, []
        if not rows:
            return
        try:
            self.run.store.add_requests(self.run.id, rows)
            self.write_error = None
        except Exception as exc:  # kept for the next flush: a busy or full disk must not lose requests
            self.write_error = f"{type(exc).__name__}: {exc}"
            with self._lock:
                self._pending[:0] = rows

    def close(self) -> None:
        """Write what is left: before the run is finished, so its end attributes every request."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        with self._due_cond:
            self._due_cond.notify()
        for thread in (self._reader, self._thread):  # the reader first: its waiters get their figures
            if thread is not None and thread.is_alive() and threading.current_thread() is not thread:
                thread.join(timeout=5)
        with self._due_cond:
            left, self._due = self._due, []
        self._figured([r for r, _ in left])
        for _, due in left:  # the reader did not finish in time: no figure, but no waiter left hanging
            with contextlib.suppress(InvalidStateError):
                due.set_result(None)
        for _ in range(3):
            self.flush()
            if not self._pending:
                break
        with self._lock:
            unfinished = list(self._active.values())
        for req in unfinished:  # still running at the end (the server stopped mid-response): kept, with its time
            req.ended_at = self.clock.now()
            req.error = "still running when the run ended"
            req.usage = req.usage or req.usage_so_far()
            self._pending.append(req.row())
        if unfinished:
            self.flush()
        if self._pending:
            print(f"footprint: warning: {len(self._pending)} request(s) could not be recorded: {self.write_error}",
                  file=sys.stderr)
        with contextlib.suppress(Exception):
            atexit.unregister(self.close)
