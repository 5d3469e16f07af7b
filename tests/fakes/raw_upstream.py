"""A raw-socket upstream for the proxy's edge cases (the query string, else the path's last part, picks the
behaviour):

    python raw_upstream.py PORT
    /early      a 103 Early Hints, then the real 200
    /deepjson   a 200 whose JSON is nested past any parser's depth
    /sse        a short chunked event stream (a usage chunk included)
    anything    200 {"ok": true, "path": PATH}
"""

from __future__ import annotations

import json
import socket
import sys
import threading


def chunk(b: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(b), b)


def reply(c: socket.socket, body: bytes) -> None:
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


def handle(c: socket.socket) -> None:
    f = c.makefile("rb")
    while True:
        line = f.readline()
        if not line:
            return
        headers = {}
        while (h := f.readline()) not in (b"\r\n", b""):
            k, _, v = h.decode().partition(":")
            headers[k.strip().lower()] = v.strip()
        f.read(int(headers.get("content-length", 0)))
        path = line.split()[1].decode()
        mode = path.split("?", 1)[1] if "?" in path else path.rsplit("/", 1)[-1]
        if mode == "early":
            c.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n")
            reply(c, b'{"early": true}')
        elif mode == "deepjson":
            reply(c, b"[" * 100_000 + b"]" * 100_000)
        elif mode == "sse":
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
            for doc in ({"model": "r", "choices": [{"index": 0, "delta": {"content": "a"}}]},
                        {"model": "r", "choices": [{"index": 0, "delta": {"content": "b"}}]},
                        {"model": "r", "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2}}):
                c.sendall(chunk(b"data: " + json.dumps(doc).encode() + b"\n\n"))
            c.sendall(chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        else:
            reply(c, json.dumps({"ok": True, "path": path}).encode())


def main() -> None:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", int(sys.argv[1])))
    s.listen(64)
    while True:
        c, _ = s.accept()
        threading.Thread(target=handle, args=(c,), daemon=True).start()


if __name__ == "__main__":
    main()
