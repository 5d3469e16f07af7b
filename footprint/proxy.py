"""The reverse proxy of `footprint serve`: HTTP/1.1 in front of an OpenAI-compatible server, on asyncio.

Completions, chat completions and embeddings (POST) are recorded as requests (footprint.serving); anything
else passes through untouched and unrecorded. Streams pass through as they come: each chunk is sent on as
soon as it arrives, never gathered. Non-streamed responses of recorded requests are read whole before they
go on (the server sends them at once when it has finished), which is what lets `--headers` add their energy.
A client that goes away, an upstream that fails and a body of any size are recorded, and never stop the proxy;
each request runs on its own, so a slow or hung upstream request holds up no other. A client that leaves while
its answer is still being made is seen within CLIENT_WATCH_S, and the upstream connection is closed then, as
nginx does, so the server can stop generating for nobody.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import sys
import threading
import urllib.parse
from typing import TypeVar

from footprint.common.address import parse_address
from footprint.common.errors import FootprintError

from . import wire

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable

    from .serving import Request, RequestLog

MAX_HEAD = 64 * 1024  # request or response head
MAX_BODY = 256 * 1024 * 1024  # a recorded request's body is read whole (to find its model and stream flag)
IDLE_UPSTREAM = 32  # kept-alive upstream connections kept for reuse
IDLE_CLIENT_S = 75.0  # a client connection with no complete request head for this long is closed (as nginx's 75 s)
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
                        "upgrade", "proxy-authenticate", "proxy-authorization", "content-length", "expect"})
LOOPBACK = ("127.0.0.1", "::1", "localhost")
T = TypeVar("T")
CLIENT_GONE = 499  # nginx's status for a client that closed the connection before the response ended
CLIENT_WATCH_S = 0.1  # how often a client waiting for its answer's head (or a whole answer) is checked for EOF


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ClientBodyError(Exception):
    """The client's request body was malformed or cut short while it was being passed on."""


class ClientGone(ConnectionError):
    """The client closed its connection while its answer was still being made upstream."""


def _client_left(reader: asyncio.StreamReader) -> bool:
    # the transport reads the socket whatever the proxy is doing, so an EOF (or a reset) shows here unread;
    # bytes of a pipelined next request keep at_eof() False, and then the answer is awaited as before
    return reader.at_eof() or reader.exception() is not None


async def _unless_client_leaves(client: asyncio.StreamReader, work: Awaitable[T]) -> T:
    """`work`'s result, or ClientGone (with `work` cancelled) if the client leaves first.

    `work` runs in the caller's task, as asyncio.timeout runs its block: a timer looks at the client every
    CLIENT_WATCH_S and cancels the task when it has gone, so a request answered sooner costs one timer. (A task
    of its own for `work` added a quarter of a millisecond to every proxied request.)"""
    current = asyncio.current_task()
    assert current is not None
    loop = asyncio.get_running_loop()
    left = False
    timer: asyncio.TimerHandle | None = None

    def look() -> None:
        nonlocal timer, left
        if _client_left(client):
            left = True
            current.cancel()  # raised inside `work`, whose own clean-up closes the upstream connection
        else:
            timer = loop.call_later(CLIENT_WATCH_S, look)

    timer = loop.call_later(CLIENT_WATCH_S, look)
    try:
        return await work
    except asyncio.CancelledError:
        if not left:
            raise  # footprint is stopping
        if hasattr(current, "uncancel"):  # Python 3.11+: the cancel was ours, not a request to stop the task
            current.uncancel()
        raise ClientGone("the client closed the connection before the response") from None
    finally:
        if timer is not None:
            timer.cancel()


class UpstreamError(Exception):
    """The upstream could not be reached or broke off before sending a response head."""


def parse_listen(text: str) -> tuple[str, int]:
    """'8001', ':8001', 'host:8001' or '[::1]:8001' -> (host, port); the host defaults to 127.0.0.1."""
    return parse_address(text, "--listen")


class Upstream:
    """Where requests go: http://host:port[/prefix]."""

    def __init__(self, url: str) -> None:
        try:
            parts = urllib.parse.urlsplit(url if "//" in url else f"http://{url}")
        except ValueError as exc:
            raise FootprintError(f"--upstream is not a URL ({exc}): '{url}'") from None
        if parts.scheme != "http":
            raise FootprintError(f"--upstream must be an http:// URL (footprint does not speak TLS to the upstream), "
                                 f"got '{url}'")
        try:
            port = parts.port if parts.port is not None else 80
        except ValueError:
            raise FootprintError(f"--upstream has a bad port: '{url}'") from None
        if port == 0 or parts.query or parts.fragment or parts.username:
            raise FootprintError(f"--upstream takes http://HOST[:PORT][/PREFIX], with a port above 0 and no query, "
                                 f"fragment or credentials: '{url}'")
        if not parts.hostname:
            raise FootprintError(f"--upstream needs a host: '{url}'")
        self.host = parts.hostname
        self.port = port
        self.prefix = parts.path.rstrip("/")
        self.netloc = f"[{self.host}]:{port}" if ":" in self.host else f"{self.host}:{port}"
        self.url = f"http://{self.netloc}{self.prefix}"


class _Head:
    __slots__ = ("first", "headers")

    def __init__(self, first: str, headers: list[tuple[str, str]]) -> None:
        self.first = first
        self.headers = headers

    def get(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    def tokens(self, name: str) -> set[str]:
        return {t.strip().lower() for k, v in self.headers if k.lower() == name for t in v.split(",")}


async def _read_head(reader: asyncio.StreamReader) -> _Head | None:
    try:
        data = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None  # closed between requests
        raise BadRequest(400, "incomplete request head") from None
    except asyncio.LimitOverrunError:
        raise BadRequest(431, "request head too large") from None
    lines = data.decode("latin-1").split("\r\n")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequest(400, "malformed header line")
        headers.append((name, value.strip()))
    return _Head(lines[0], headers)


async def _body(reader: asyncio.StreamReader, head: _Head, *, until_close: bool) -> AsyncIterator[bytes]:
    """The body's bytes as they arrive, de-chunked: by Transfer-Encoding chunked, Content-Length, or (a
    response without either) up to the connection's end."""
    if "chunked" in head.tokens("transfer-encoding"):
        while True:
            line = await reader.readuntil(b"\r\n")
            digits = line.split(b";", 1)[0].strip()
            if not _HEX.fullmatch(digits):  # int() would take -5, +5, 0x10 and 1_0
                raise BadRequest(400, "bad chunk size")
            size = int(digits, 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers: dropped
                    pass
                return
            async for piece in _pieces(reader, size):
                yield piece
            await reader.readexactly(2)
        return
    length = head.get("content-length")
    if length is not None:
        if not _DIGITS.fullmatch(length.encode("latin-1")):
            raise BadRequest(400, "bad Content-Length")
        left = int(length)
        async for piece in _pieces(reader, left):
            yield piece
        return
    if until_close:
        while piece := await reader.read(65536):
            yield piece


async def _pieces(reader: asyncio.StreamReader, left: int) -> AsyncIterator[bytes]:
    """Exactly `left` bytes, as they arrive."""
    while left:
        piece = await reader.read(min(left, 65536))
        if not piece:
            raise asyncio.IncompleteReadError(b"", left)
        left -= len(piece)
        yield piece


_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
_DIGITS = re.compile(rb"[0-9]{1,19}")


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _forward_headers(head: _Head) -> list[tuple[str, str]]:
    drop = HOP_BY_HOP | head.tokens("connection")
    return [(k, v) for k, v in head.headers if k.lower() not in drop]


def _head_bytes(first: str, headers: list[tuple[str, str]]) -> bytes:
    return (first + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n").encode("latin-1")


def _error_body(status: int, message: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": "footprint_proxy_error", "code": status}}).encode()


_REASONS = {400: "Bad Request", 413: "Payload Too Large", 431: "Request Header Fields Too Large",
            502: "Bad Gateway", 504: "Gateway Timeout"}


class Proxy:
    """Serves on `sock` (bound by the caller) until `stop()`; requests go to `upstream`."""

    def __init__(self, upstream: Upstream, log: RequestLog | None, *, headers: bool = False,
                 carbon_intensity: float | None = None, pue: float = 1.0) -> None:
        self.upstream = upstream
        self.log = log
        self.headers = headers
        self.carbon_intensity = carbon_intensity
        self.pue = pue
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._clients: set[asyncio.Task[None]] = set()
        self.errors = 0  # upstream failures, for the closing line
        self._said: dict[str, float] = {}

    # -- life cycle ---------------------------------------------------------------------------------

    def start(self, sock: socket.socket) -> None:
        """Serve on `sock` from a thread of its own (the main thread keeps watching signals and the child)."""
        ready = threading.Event()
        failed: list[BaseException] = []

        def main() -> None:
            loop = asyncio.new_event_loop()
            loop.set_exception_handler(self._loop_error)
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._client, sock=sock, limit=MAX_HEAD))
            except BaseException as exc:
                failed.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=main, name="footprint-proxy", daemon=True)
        self._thread.start()
        ready.wait()
        if failed:
            raise FootprintError(f"cannot start the proxy: {failed[0]}")

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
        """asyncio's errors outside a request (accept() out of file descriptors, under a flood of connections):
        one line per kind every 10 s, never a traceback per attempt."""
        import time

        message = str(context.get("message") or context.get("exception") or "error")
        exc = context.get("exception")
        key = f"{message}: {exc}" if exc is not None else message
        now = time.monotonic()
        if now - self._said.get(key, -1e9) >= 10.0:
            self._said[key] = now
            print(f"footprint: proxy: {key}", file=sys.stderr)

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop accepting, give requests in flight `grace_s` to end (the server is gone by now, usually), then
        close every connection."""
        loop = self._loop
        if loop is None or self._thread is None:
            return

        async def shut() -> None:
            if self._server is not None:
                self._server.close()
            pending = [t for t in self._clients if not t.done()]
            if pending:
                await asyncio.wait(pending, timeout=grace_s)
            for t in self._clients:
                t.cancel()
            for _, w in self._idle:
                w.close()
            self._idle.clear()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shut(), loop).result(timeout=grace_s + 5)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(timeout=10)

    # -- one client connection ------------------------------------------------------------------------

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        _no_delay(writer)
        try:
            while await self._one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        except Exception as exc:  # a bug must cost one connection, never the proxy
            print(f"footprint: proxy error: {type(exc).__name__}: {exc}", file=sys.stderr)
        finally:
            self._clients.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _reply(self, writer: asyncio.StreamWriter, status: int, message: str, *, close: bool) -> None:
        body = _error_body(status, message)
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        if close:
            headers.append(("Connection", "close"))
        writer.write(_head_bytes(f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}", headers) + body)
        await writer.drain()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """One request on the client's connection; False when the connection should end."""
        try:
            # a kept-alive connection may idle this long between requests; a head must arrive whole within it
            head = await asyncio.wait_for(_read_head(reader), IDLE_CLIENT_S)
        except asyncio.TimeoutError:
            return False
        except BadRequest as exc:
            await self._reply(writer, exc.status, str(exc), close=True)
            return False
        if head is None:
            return False
        parts = head.first.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            await self._reply(writer, 400, "malformed request line", close=True)
            return False
        method, target, version = parts
        lengths = {v for k, v in head.headers if k.lower() == "content-length"}
        if len(lengths) > 1 or (lengths and not _DIGITS.fullmatch(next(iter(lengths)).encode("latin-1"))):
            await self._reply(writer, 400, "bad or conflicting Content-Length", close=True)
            return False
        if not target.startswith("/"):  # origin-form only: this is a reverse proxy, not a forward one
            await self._reply(writer, 400, "the request target must be a path", close=True)
            return False
        conn_tokens = head.tokens("connection")
        keep = "close" not in conn_tokens if version == "HTTP/1.1" else "keep-alive" in conn_tokens
        if "100-continue" in head.tokens("expect"):
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # the body is read here, not upstream
        recorded = self.log is not None and method == "POST" and wire.tracked(target)
        body: bytes | None = None
        info = wire.RequestInfo(wire.endpoint_of(target))
        if recorded:
            try:
                pieces, size = [], 0
                async for piece in _body(reader, head, until_close=False):
                    size += len(piece)
                    if size > MAX_BODY:
                        raise BadRequest(413, f"request body over {MAX_BODY // 2**20} MiB")
                    pieces.append(piece)
            except BadRequest as exc:
                await self._reply(writer, exc.status, str(exc), close=True)
                return False
            body = b"".join(pieces)
            info, rewritten = wire.prepare(target, body)
            body = rewritten if rewritten is not None else body
        req = self.log.begin(info) if recorded and self.log is not None else None
        try:
            return await self._exchange(method, target, head, body, reader, writer, req,
                                        http10=version == "HTTP/1.0") and keep
        except BaseException as exc:
            if req is not None and req.ended_at is None and self.log is not None:
                usage = req.usage_so_far()
                if isinstance(exc, asyncio.CancelledError):  # footprint is stopping: not the client's doing
                    self.log.finish(req, status=None, usage=usage, error="still running when the run ended")
                else:
                    await self._finish(req, CLIENT_GONE, usage, "the connection ended before the response")
            raise

    async def _connect(self, *, reuse: bool) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bool]:
        while reuse and self._idle:
            r, w = self._idle.pop()
            if not r.at_eof() and not w.is_closing():
                return r, w, True
            w.close()
        try:
            r, w = await asyncio.open_connection(self.upstream.host, self.upstream.port, limit=MAX_HEAD)
        except OSError as exc:
            raise UpstreamError(f"upstream {self.upstream.url} unreachable: {exc.strerror or exc}") from None
        _no_delay(w)
        return r, w, False

    def _release(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        if len(self._idle) < IDLE_UPSTREAM and not w.is_closing():
            self._idle.append((r, w))
        else:
            w.close()

    async def _send_request(self, method: str, target: str, head: _Head, body: bytes | None,
                            client: asyncio.StreamReader) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, _Head]:
        headers = [(k, v) for k, v in _forward_headers(head) if k.lower() != "host"]
        headers.insert(0, ("Host", self.upstream.netloc))
        chunked = body is None and "chunked" in head.tokens("transfer-encoding")
        length = len(body) if body is not None else head.get("content-length")
        if chunked:
            headers.append(("Transfer-Encoding", "chunked"))
        elif length is not None:
            headers.append(("Content-Length", str(length)))
        request = _head_bytes(f"{method} {self.upstream.prefix}{target} HTTP/1.1", headers)
        # a buffered (or empty) body can be sent again on a fresh connection if a kept-alive one had gone stale
        replayable = body is not None or (not chunked and length in (None, "0"))
        for attempt in (0, 1):
            r, w, reused = await self._connect(reuse=replayable and attempt == 0)
            try:
                w.write(request)
                if body is not None:
                    w.write(body)
                elif chunked or length not in (None, "0"):
                    try:
                        async for piece in _body(client, head, until_close=False):
                            w.write(_chunk(piece) if chunked else piece)
                            await w.drain()
                    except (BadRequest, asyncio.IncompleteReadError) as exc:
                        w.close()
                        raise ClientBodyError(str(exc) or "the request body ended early") from None
                    if chunked:
                        w.write(b"0\r\n\r\n")
                await w.drain()
                while True:
                    resp = await _read_head(r)
                    if resp is None:
                        raise ConnectionResetError("upstream closed the connection")
                    code = resp.first.split(" ")[1:2]
                    # interim responses (100 Continue, 103 Early Hints...) are not the answer: read past them
                    if not (code and len(code[0]) == 3 and code[0].startswith("1") and code[0] != "101"):
                        return r, w, resp
            except (ConnectionError, asyncio.IncompleteReadError, BadRequest) as exc:
                w.close()
                if reused and attempt == 0:
                    continue
                raise UpstreamError(f"upstream {self.upstream.url} failed: {exc}") from None
            except BaseException:  # cancelled (its client left, or footprint stops): the upstream must see it
                w.close()
                raise
        raise UpstreamError(f"upstream {self.upstream.url} failed")  # pragma: no cover - the loop returns

    async def _finish(self, req: Request, status: int | None, usage: wire.Usage, error: str | None, *,
                      figure: bool = False) -> float | None:
        """Record the request's end; with `figure`, wait for its provisional energy (for its headers). Without,
        nothing waits: live metrics get their figure in the background."""
        assert self.log is not None
        if figure:
            return await self.log.finish_async(req, status=status, usage=usage, error=error)
        self.log.finish(req, status=status, usage=usage, error=error)
        return None

    async def _exchange(self, method: str, target: str, head: _Head, body: bytes | None,
                        client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter, req: Request | None, *,
                        http10: bool = False) -> bool:
        try:
            sending = self._send_request(method, target, head, body, client_r)
            # a buffered body: the client has nothing more to send, so an EOF from it now means it has left
            up_r, up_w, resp = await (_unless_client_leaves(client_r, sending) if body is not None else sending)
        except ClientBodyError as exc:
            await self._reply(client_w, 400, f"bad request body: {exc}", close=True)
            return False
        except UpstreamError as exc:
            self.errors += 1
            if req is not None:
                await self._finish(req, 502, wire.Usage(), str(exc))
            # a body not passed on is still unread on the connection: never read it as the next request
            unread = body is None and ("chunked" in head.tokens("transfer-encoding")
                                       or head.get("content-length") not in (None, "0"))
            await self._reply(client_w, 502, str(exc), close=unread)
            return not unread
        parts = resp.first.split(" ", 2)
        if len(parts) > 1:  # footprint speaks HTTP/1.1 to the client, whatever the upstream spoke
            resp.first = "HTTP/1.1 " + resp.first.split(" ", 1)[1]
        try:
            status = int(parts[1])
        except (IndexError, ValueError):
            up_w.close()
            if req is not None:
                await self._finish(req, 502, wire.Usage(), "malformed upstream status line")
            await self._reply(client_w, 502, "malformed upstream status line", close=False)
            return True
        no_body = method == "HEAD" or status in (204, 304) or 100 <= status < 200
        framed = no_body or "chunked" in resp.tokens("transfer-encoding") or resp.get("content-length") is not None
        up_keep = framed and "close" not in resp.tokens("connection")
        headers = _forward_headers(resp)
        sse = (resp.get("content-type") or "").startswith("text/event-stream")
        ok = True
        try:
            if no_body:
                client_w.write(_head_bytes(resp.first, headers + self._length(resp)))
                await client_w.drain()
                if req is not None:
                    await self._finish(req, status, wire.Usage(), None)
            elif req is not None and not sse:
                ok = await self._whole(resp, headers, up_r, client_r, client_w, req, status)
            elif req is not None:
                ok = await self._stream(resp, headers, up_r, client_w, req, status, http10=http10)
            else:
                ok = await self._relay(resp, headers, up_r, client_w, http10=http10)
        except BaseException:
            up_w.close()
            raise
        if ok and up_keep:
            self._release(up_r, up_w)
        else:
            up_w.close()
        return ok

    @staticmethod
    def _length(resp: _Head) -> list[tuple[str, str]]:
        length = resp.get("content-length")
        return [("Content-Length", length)] if length is not None else []

    async def _whole(self, resp: _Head, headers: list[tuple[str, str]], up_r: asyncio.StreamReader,
                     client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter, req: Request, status: int) -> bool:
        async def whole() -> bytes:
            return b"".join([p async for p in _body(up_r, resp, until_close=True)])

        try:
            data = await _unless_client_leaves(client_r, whole())
        except ClientGone:
            raise
        except (ConnectionError, asyncio.IncompleteReadError, BadRequest) as exc:
            await self._finish(req, 502, wire.Usage(), f"upstream broke off the response: {exc}")
            await self._reply(client_w, 502, "upstream broke off the response", close=True)
            return False
        usage, model = wire.response_usage(data)
        if req.info.model is None:
            req.info.model = model
        energy = await self._finish(req, status, usage, None if status < 400 else f"upstream status {status}",
                                    figure=self.headers)
        extra = [("Content-Length", str(len(data)))]
        if self.headers and energy is not None:
            extra.append(("X-Footprint-Energy-J", f"{energy:.6g}"))
            if self.carbon_intensity is not None:
                grams = energy / 3.6e6 * self.pue * self.carbon_intensity
                extra.append(("X-Footprint-CO2e-G", f"{grams:.6g}"))
            extra.append(("X-Footprint-Attribution", "provisional; see footprint report --requests"))
        client_w.write(_head_bytes(resp.first, headers + extra) + data)
        await client_w.drain()
        return True

    async def _stream(self, resp: _Head, headers: list[tuple[str, str]], up_r: asyncio.StreamReader,
                      client_w: asyncio.StreamWriter, req: Request, status: int, *, http10: bool = False) -> bool:
        log = self.log
        assert log is not None
        reader = wire.StreamReader(hide_usage=req.info.injected)
        # an HTTP/1.0 client knows no chunked encoding: its stream ends with the connection
        frame = (lambda data: data) if http10 else _chunk
        framing = ("Connection", "close") if http10 else ("Transfer-Encoding", "chunked")
        client_w.write(_head_bytes(resp.first, headers + [framing]))
        await client_w.drain()
        seen = 0
        try:
            async for piece in _body(up_r, resp, until_close=True):
                out = reader.feed(piece)
                for _ in range(reader.text_chunks - seen):
                    log.token(req)
                seen = reader.text_chunks
                if out:
                    try:
                        client_w.write(frame(out))
                        await client_w.drain()
                    except ConnectionError:
                        await self._finish(req, CLIENT_GONE, reader.result(), "the client disconnected mid-stream")
                        return False
        except (ConnectionError, asyncio.IncompleteReadError, BadRequest) as exc:
            await self._finish(req, status, reader.result(), f"upstream broke off the stream: {exc}")
            return False  # the client's connection is closed without the last chunk: it sees the stream cut
        if req.info.model is None:
            req.info.model = reader.model
        tail = reader.finish()
        await self._finish(req, status, reader.result(), None if status < 400 else f"upstream status {status}")
        try:
            client_w.write((frame(tail) if tail else b"") + (b"" if http10 else b"0\r\n\r\n"))
            await client_w.drain()
        except ConnectionError:
            return False
        return not http10

    async def _relay(self, resp: _Head, headers: list[tuple[str, str]], up_r: asyncio.StreamReader,
                     client_w: asyncio.StreamWriter, *, http10: bool = False) -> bool:
        chunked = "chunked" in resp.tokens("transfer-encoding") and not http10
        length = self._length(resp)
        until_close = not chunked and not length
        extra = [("Transfer-Encoding", "chunked")] if chunked else length
        if until_close:
            extra = [("Connection", "close")]
        client_w.write(_head_bytes(resp.first, headers + extra))
        try:
            async for piece in _body(up_r, resp, until_close=True):
                client_w.write(_chunk(piece) if chunked else piece)
                await client_w.drain()
        except (asyncio.IncompleteReadError, BadRequest):
            return False
        if chunked:
            client_w.write(b"0\r\n\r\n")
        await client_w.drain()
        return not until_close


def _no_delay(writer: asyncio.StreamWriter) -> None:
    """Each chunk goes out at once. asyncio sets TCP_NODELAY only on sockets whose protocol number says TCP, which
    sockets accepted from a listener made with protocol 0 do not: without it, Nagle's algorithm held every chunk
    after the first until the client's delayed ACK (40 ms)."""
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound now so that a busy port fails before any run exists."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise FootprintError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    family = socket.AF_INET if any(i[0] == socket.AF_INET for i in infos) else infos[0][0]
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(1024)
    except OSError as exc:
        sock.close()
        raise FootprintError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.setblocking(False)
    return sock
