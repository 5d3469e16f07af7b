"""What footprint reads of OpenAI-compatible traffic: the model, whether it streams, and token usage. No I/O.

Only counts and timings are kept; no prompt or completion text is stored or logged.

Streams: a chat or completions request that streams is asked for `stream_options.include_usage`, so the server
ends the stream with a chunk that carries the usage (and no choices). A client that did not ask for it never
sees that chunk. Servers that ignore the option (llama-cpp-python's sends no usage in streams) get their
completion tokens counted from the chunks that carry text, and the request says they were counted.
"""

from __future__ import annotations

import json
import re

from footprint.common.record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# endpoints whose usage footprint reads; every other path passes through untouched (and is still timed)
TRACKED = ("/chat/completions", "/completions", "/embeddings")


class RequestInfo(Record):
    """What the request says about itself. `injected`: footprint asked upstream for stream usage."""

    __slots__ = ("endpoint", "model", "stream", "injected")

    def __init__(self, endpoint: str, model: str | None = None, stream: bool = False,
                 injected: bool = False) -> None:
        self.endpoint = endpoint
        self.model = model
        self.stream = stream
        self.injected = injected


class Usage(Record):
    """Token counts of a response; `source` is 'reported' (the server's usage), 'counted' or 'none'."""

    __slots__ = ("prompt_tokens", "completion_tokens", "source")

    def __init__(self, prompt_tokens: int | None = None, completion_tokens: int | None = None,
                 source: str = "none") -> None:
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.source = source


def tracked(path: str) -> bool:
    path = path.split("?", 1)[0].rstrip("/")
    return path.endswith(TRACKED)


def endpoint_of(target: str) -> str:
    return target.split("?", 1)[0]


def prepare(target: str, body: bytes) -> tuple[RequestInfo, bytes | None]:
    """Read a request body; returns its info and, when footprint asks upstream for stream usage, the new body
    (None: send the body unchanged)."""
    info = RequestInfo(endpoint_of(target))
    try:
        doc = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError, RecursionError):
        return info, None  # not JSON (or nested past the parser's depth): upstream will say what is wrong with it
    if not isinstance(doc, dict):
        return info, None
    model = doc.get("model")
    info.model = model if isinstance(model, str) else None
    info.stream = doc.get("stream") is True
    if not info.stream or info.endpoint.rstrip("/").endswith("/embeddings"):
        return info, None
    options = doc.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage") is True:
        return info, None  # the client asked for it itself: it sees the usage chunk
    doc["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
    info.injected = True
    return info, json.dumps(doc, separators=(",", ":")).encode()


def usage_of(doc: Any) -> Usage | None:
    """The usage object of a response or chunk, if it has one with counts."""
    if not isinstance(doc, dict):
        return None
    u = doc.get("usage")
    if not isinstance(u, dict):
        return None
    prompt, completion = u.get("prompt_tokens"), u.get("completion_tokens")
    prompt = prompt if isinstance(prompt, int) and not isinstance(prompt, bool) and prompt >= 0 else None
    completion = completion if isinstance(completion, int) and not isinstance(completion, bool) \
        and completion >= 0 else None
    if prompt is None and completion is None:
        return None
    return Usage(prompt, completion, "reported")


def response_usage(body: bytes) -> tuple[Usage, str | None]:
    """(usage, model) of a whole JSON response."""
    try:
        doc = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError, RecursionError):
        return Usage(), None
    model = doc.get("model") if isinstance(doc, dict) else None
    return usage_of(doc) or Usage(), model if isinstance(model, str) else None


def _has_text(chunk: dict[str, Any]) -> bool:
    for choice in chunk.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta")
        if isinstance(delta, dict) and (delta.get("content") or delta.get("reasoning_content")
                                        or delta.get("tool_calls")):
            return True
        if choice.get("text"):
            return True
    return False


class StreamReader:
    """Follows a server-sent-events response as it passes: `feed(bytes)` returns the bytes to send on at once
    (everything but a usage chunk the client did not ask for), and keeps the usage, the number of chunks that
    carried text, and whether the first of them has passed (`tokens_seen`).

    Only a trailing incomplete event is held back, and only when it may be the usage chunk to hide; servers
    send whole events, so nothing waits in practice.
    """

    def __init__(self, *, hide_usage: bool) -> None:
        self.hide_usage = hide_usage
        self.usage: Usage | None = None
        self.text_chunks = 0
        self.model: str | None = None
        self._pending = b""

    @property
    def tokens_seen(self) -> bool:
        return self.text_chunks > 0

    def feed(self, data: bytes) -> bytes:
        buf = self._pending + data
        events, rest = _split_events(buf)
        if not self.hide_usage:  # all of it goes on now; events are read once whole
            self._pending = rest
            for event in events:
                self._read(event)
            return data
        self._pending = rest  # may be the start of the usage chunk: held until its end
        return b"".join(e for e in events if not self._read(e))

    def finish(self) -> bytes:
        """The end of the stream: whatever was held back goes on (without hiding: already sent)."""
        rest, self._pending = self._pending, b""
        if rest:
            hidden = self._read(rest)
            if self.hide_usage and not hidden:
                return rest
        return b""

    def _read(self, event: bytes) -> bool:
        """Note what an event says; True when it is the usage chunk to hide. Most events are a token of text:
        those are recognised by a byte search, and only the first event (for the model), events that may carry a
        usage object and ones the search cannot tell are parsed as JSON: parsing each chunk was most of the
        proxy's cost per streamed token."""
        if self.model is not None and _USAGE.search(event) is None:
            if _TEXT.search(event) is not None:
                self.text_chunks += 1
                return False
            if _EMPTY.search(event) is not None or b"data:" not in event:
                return False  # a role-only or finishing chunk, or a comment/keep-alive line
        lines = [ln[5:].lstrip() for ln in event.splitlines() if ln.startswith(b"data:")]
        if not lines:
            return False
        payload = b"\n".join(lines)
        if payload.strip() == b"[DONE]":
            return False
        try:
            doc = json.loads(payload)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return False
        if not isinstance(doc, dict):
            return False
        if self.model is None and isinstance(doc.get("model"), str):
            self.model = doc["model"]
        if _has_text(doc):
            self.text_chunks += 1
        usage = usage_of(doc)
        if usage is not None:
            self.usage = usage
            return self.hide_usage and not doc.get("choices")
        return False

    def result(self) -> Usage:
        """The usage reported, else the text chunks counted as completion tokens (one token per chunk, as the
        servers that send no usage stream them)."""
        if self.usage is not None:
            return self.usage
        if self.text_chunks:
            return Usage(None, self.text_chunks, "counted")
        return Usage()


# a choice with text or tool calls: "content": "x...", "text": "x...", "reasoning_content": "x...", "tool_calls": [
_TEXT = re.compile(rb'"(?:content|text|reasoning_content)"\s*:\s*"(?!")|"tool_calls"\s*:\s*\[\s*\{')
_USAGE = re.compile(rb'"usage"\s*:\s*\{')  # may be the usage chunk (or text that mentions one): parsed
# no text: every text field empty or null, and no tool call
_EMPTY = re.compile(rb'"delta"\s*:\s*\{\s*(?:"role"\s*:\s*"[a-z]+"\s*)?\}|"finish_reason"\s*:\s*"')


def _split_events(buf: bytes) -> tuple[list[bytes], bytes]:
    """Whole SSE events (each with the blank line that ends it) and the incomplete rest."""
    events: list[bytes] = []
    start = 0
    while True:
        best, size = -1, 0
        for sep in (b"\n\n", b"\r\n\r\n", b"\r\r"):
            i = buf.find(sep, start)
            if i >= 0 and (best < 0 or i < best):
                best, size = i, len(sep)
        if best < 0:
            return events, buf[start:]
        events.append(buf[start:best + size])
        start = best + size
