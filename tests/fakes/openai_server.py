"""A stand-in OpenAI-compatible inference server for tests and the proxy benchmark, on loopback.

It answers POST /v1/chat/completions, /v1/completions and /v1/embeddings in the OpenAI wire format, streamed
(server-sent events, chunked) or not, and GET /v1/models. Work is simulated: prompt tokens are the prompt's
words, each taking PREFILL_S; each completion token takes TOKEN_S. Models with special names misbehave:
`fail` answers 500, `hang` never answers, `cut` closes the connection mid-stream.

    python openai_server.py PORT [--usage always|asked|never] [--token-s S] [--prefill-s S]

--usage: `asked` (default, as the OpenAI API and vLLM do) sends the usage chunk of a stream only when
stream_options.include_usage is set; `never` sends none (as llama-cpp-python's server does); `always`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def words(doc: dict[str, Any]) -> int:
    if "messages" in doc:
        return sum(len(str(m.get("content", "")).split()) for m in doc["messages"])
    prompt = doc.get("prompt", doc.get("input", ""))
    return sum(len(str(p).split()) for p in prompt) if isinstance(prompt, list) else len(str(prompt).split())


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("port", type=int)
    p.add_argument("--usage", default="asked", choices=("always", "asked", "never"))
    p.add_argument("--token-s", type=float, default=0.002)
    p.add_argument("--prefill-s", type=float, default=0.0005)
    opts = p.parse_args()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # as uvicorn does: small chunks go at once

        def log_message(self, *args: object) -> None:
            return

        def _json(self, status: int, doc: Any) -> None:
            body = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _until_closed(self, deadline: float) -> None:
            import select
            import socket

            while time.monotonic() < deadline:
                if select.select([self.connection], [], [], 0.05)[0]:
                    try:
                        gone = self.connection.recv(1, socket.MSG_PEEK) == b""
                    except OSError:
                        gone = True
                    if gone:
                        log = os.environ.get("FAKE_UPSTREAM_LOG")
                        if log:
                            with open(log, "a", encoding="utf-8") as fh:
                                fh.write(f"hang: connection closed at {time.time():.3f}\n")
                        self.close_connection = True
                        return
            self.close_connection = True

        def do_GET(self) -> None:  # noqa: N802
            if self.path.startswith("/v1/models"):
                self._json(200, {"object": "list", "data": [{"id": "fake", "object": "model"}]})
            else:
                self._json(404, {"error": "not found"})

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            doc = json.loads(self.rfile.read(length) or b"{}")
            model = doc.get("model", "fake")
            if model == "fail":
                self._json(500, {"error": {"message": "failed"}})
                return
            if model == "hang":  # never answers; says in $FAKE_UPSTREAM_LOG when its connection is closed
                self._until_closed(time.monotonic() + 3600)
                return
            prompt = words(doc)
            time.sleep(min(prompt * opts.prefill_s, 0.1))
            if self.path.startswith("/v1/embeddings"):
                self._json(200, {"object": "list", "model": model, "data": [{"embedding": [0.0, 1.0]}],
                                 "usage": {"prompt_tokens": prompt, "total_tokens": prompt}})
                return
            n = int(doc.get("max_tokens") or 8)
            chat = self.path.startswith("/v1/chat/completions")
            usage = {"prompt_tokens": prompt, "completion_tokens": n, "total_tokens": prompt + n}
            if not doc.get("stream"):
                time.sleep(n * opts.token_s)
                choice = {"index": 0, "finish_reason": "length"}
                text = "tok " * n
                choice.update({"message": {"role": "assistant", "content": text}} if chat else {"text": text})
                self._json(200, {"id": "x", "object": "chat.completion" if chat else "text_completion",
                                 "model": model, "choices": [choice], "usage": usage})
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()

            def event(payload: str) -> None:
                data = f"data: {payload}\n\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

            kind = "chat.completion.chunk" if chat else "text_completion"
            for i in range(n):
                time.sleep(opts.token_s)
                if model == "cut" and i == n // 2:
                    self.connection.shutdown(2)
                    return
                delta = {"delta": {"content": "tok "}} if chat else {"text": "tok "}
                # "sent": when the chunk left the server (epoch s), for the proxy benchmark's per-chunk latency
                event(json.dumps({"id": "x", "object": kind, "model": model, "sent": time.time(),
                                  "choices": [{"index": 0, **delta, "finish_reason": None}], "usage": None}))
            asked = (doc.get("stream_options") or {}).get("include_usage") is True
            if opts.usage == "always" or (opts.usage == "asked" and asked):
                event(json.dumps({"id": "x", "object": kind, "model": model, "choices": [], "usage": usage}))
            event("[DONE]")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 256

        def handle_error(self, request: Any, client_address: Any) -> None:
            if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that left: nothing to say
                super().handle_error(request, client_address)

    server = Server(("127.0.0.1", opts.port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"fake server on {server.server_address[1]}", file=sys.stderr, flush=True)
    with contextlib.suppress(SystemExit):  # SIGTERM ends it with 0; SIGINT kills it, as it would a real server
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
