"""The accounting of `footprint serve` as ASGI middleware, for servers that are Starlette or FastAPI apps: no
proxy hop.

    # vLLM's OpenAI server takes a middleware class by import path
    footprint run -- vllm serve MODEL --middleware footprint.asgi.FootprintMiddleware
    # any FastAPI/Starlette app (llama-cpp-python's server, LiteLLM's proxy)
    app.add_middleware(FootprintMiddleware)

Inside `footprint run` (or `footprint serve -- CMD`) the requests join that run, whose process measures the
hardware; elsewhere the middleware starts a run of its own in the server's process, finished when it exits.
Requests are recorded exactly as the proxy records them (footprint.serving, footprint.wire): only counts and
timings, never content. `headers=True` (or FOOTPRINT_HEADERS=1, for servers that take the class by name) adds
X-Footprint-Energy-J / -CO2e-G to non-streamed responses.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import threading

from . import wire

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, MutableMapping
    from typing import Any

    from .run import Run
    from .serving import Request, RequestLog

    Scope = MutableMapping[str, Any]
    Message = MutableMapping[str, Any]
    Receive = Callable[[], Awaitable[Message]]
    Send = Callable[[Message], Awaitable[None]]
    App = Callable[[Scope, Receive, Send], Awaitable[None]]

ENV_HEADERS = "FOOTPRINT_HEADERS"


class FootprintMiddleware:
    def __init__(self, app: App, *, headers: bool | None = None, name: str | None = None,
                 db: str | None = None) -> None:
        self.app = app
        self.headers = os.environ.get(ENV_HEADERS, "") not in ("", "0") if headers is None else headers
        self.name = name
        self.db = db
        self._log: RequestLog | None = None
        self._lock = threading.Lock()
        self._own_run: Run | None = None

    def _request_log(self) -> RequestLog:
        with self._lock:
            if self._log is None:
                from .run import attach_from_env, start_run
                from .serving import RequestLog

                run = attach_from_env()
                if run is None:  # not under footprint: this process measures itself
                    run = self._own_run = start_run(self.name or "asgi-server", db=self.db)
                    atexit.register(self._finish_own_run)
                self._log = RequestLog(run, provisional=self.headers)
            return self._log

    def _lifespan(self, send: Send) -> Send:
        """The server's shutdown: what is recorded reaches the DB before it says it is done (a server that then
        dies of the signal it was stopped with, as uvicorn does, runs no exit handlers)."""
        async def wrapped(message: Message) -> None:
            if message.get("type") == "lifespan.shutdown.complete":
                await asyncio.to_thread(self._finish_own_run)
            await send(message)
        return wrapped

    def _finish_own_run(self) -> None:
        from .run import finish_run

        with self._lock:
            log, run, self._own_run = self._log, self._own_run, None
        if log is not None:
            log.close()
        if run is not None:
            finish_run(run)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._lifespan(send))
            return
        if scope["type"] != "http" or scope.get("method") != "POST" or not wire.tracked(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        log = self._request_log()
        chunks: list[bytes] = []
        while True:  # the body is read whole, to find the model and the stream flag (and ask for stream usage)
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        info, rewritten = wire.prepare(scope.get("path", ""), body)
        body = rewritten if rewritten is not None else body
        req = log.begin(info)
        handled = _Exchange(log, req, send, headers=self.headers)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # then: the client's disconnect, as the app would have seen it

        try:
            await self.app(scope, replay, handled.send)
        except BaseException as exc:
            handled.failed(f"{type(exc).__name__} in the app")
            raise
        handled.failed("the app ended without finishing its response")


class _Exchange:
    """One request's response as it passes out: streamed bodies go on chunk by chunk (minus the usage chunk the
    client did not ask for); whole bodies are held until complete, to read their usage and add headers."""

    def __init__(self, log: RequestLog, req: Request, send: Send, *, headers: bool) -> None:
        self.log = log
        self.req = req
        self._send = send
        self.headers = headers
        self.start: Message | None = None
        self.status: int | None = None
        self.reader: wire.StreamReader | None = None
        self.body: list[bytes] = []
        self.done = False

    def failed(self, error: str) -> None:
        if not self.done:
            self.done = True
            usage = self.reader.result() if self.reader is not None else wire.Usage()
            self.log.finish(self.req, status=self.status or 500, usage=usage, error=error)

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
            content_type = next((v for k, v in message.get("headers", []) if k.lower() == b"content-type"), b"")
            if content_type.startswith(b"text/event-stream"):
                self.reader = wire.StreamReader(hide_usage=self.req.info.injected)
                await self._send(message)
            else:
                self.start = message
            return
        if message["type"] != "http.response.body":
            await self._send(message)
            return
        more = bool(message.get("more_body", False))
        data = message.get("body", b"")
        if self.reader is not None:
            seen = self.reader.text_chunks
            out = self.reader.feed(data)
            for _ in range(self.reader.text_chunks - seen):
                self.log.token(self.req)
            if not more:
                out += self.reader.finish()
                if self.req.info.model is None:
                    self.req.info.model = self.reader.model
                await self._finish(self.reader.result())
            try:
                await self._send({"type": "http.response.body", "body": out, "more_body": more})
            except OSError:
                self._client_gone()
                raise
            return
        self.body.append(data)
        if more:
            return
        whole = b"".join(self.body)
        usage, model = wire.response_usage(whole)
        if self.req.info.model is None:
            self.req.info.model = model
        energy = await self._finish(usage, figure=self.headers)
        start = self.start
        assert start is not None
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(whole)).encode()))
        if self.headers and energy is not None:
            headers.append((b"x-footprint-energy-j", f"{energy:.6g}".encode()))
            headers.append((b"x-footprint-attribution", b"provisional; see footprint report --requests"))
            row = self.log.run.store.run_row(self.log.run.id)
            if row is not None and row["carbon_g_per_kwh"] is not None:
                grams = energy / 3.6e6 * (row["pue"] or 1.0) * row["carbon_g_per_kwh"]
                headers.append((b"x-footprint-co2e-g", f"{grams:.6g}".encode()))
        await self._send({**start, "headers": headers})
        await self._send({"type": "http.response.body", "body": whole, "more_body": False})

    async def _finish(self, usage: wire.Usage, *, figure: bool = False) -> float | None:
        """Record the end; with `figure`, wait for the provisional energy (for the headers), else wait for
        nothing."""
        if self.done:
            return None
        self.done = True
        status = self.status
        error = None if status is None or status < 400 else f"status {status}"
        if figure:
            return await self.log.finish_async(self.req, status=status, usage=usage, error=error)
        self.log.finish(self.req, status=status, usage=usage, error=error)
        return None

    def _client_gone(self) -> None:
        if not self.done:
            self.done = True
            usage = self.reader.result() if self.reader is not None else wire.Usage()
            self.log.finish(self.req, status=499, usage=usage, error="the client disconnected mid-stream")
