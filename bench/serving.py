"""The cost of `footprint serve`'s proxy: the same traffic to a server directly and through the proxy, in one run.

    python bench/serving.py            # full run (a few minutes), writes the serving section of docs/benchmarks.md
    python bench/serving.py --quick    # seconds, tiny sizes, prints only (the test suite runs it so it does not rot)

The server is the stand-in OpenAI-compatible server of tests/fakes/openai_server.py (fast: a token every 1 ms),
so the proxy's own cost is what differs. Measured, in alternating rounds (direct, proxied, direct, ...):
- latency added per request: non-streamed requests one at a time, p50 and p99;
- latency added per streamed chunk: each chunk carries the time the server sent it; the client's receive time
  minus that, median over all chunks, proxied minus direct;
- throughput at 1, 16 and 64 concurrent streams: completion tokens per second;
- non-streamed requests per second at 64 concurrent clients, through the proxy and through a second one with
  `--headers` (each response then waits for a counter read taken after its end);
- the proxy's memory (RSS) after 1,000 and after 10,000 requests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FAKES = ROOT / "tests" / "fakes"
TARGETS = {"added_p50_ms": 1.0, "throughput_loss_64_pct": 5.0, "rss_growth_mb": 10.0}
# seconds per generated token of the stand-in server: 1 ms (faster than any real server: the proxy's ceiling) and
# 20 ms (50 tokens/s per stream, a usual decode speed on a GPU under load)
RATES = (0.001, 0.02)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


async def request(port: int, *, stream: bool, tokens: int, conn: Any = None) -> tuple[float, list[float], int, Any]:
    """One chat completion over a kept-alive connection: (seconds, per-chunk delays, tokens, connection)."""
    body = json.dumps({"model": "bench", "messages": [{"role": "user", "content": "a b c"}], "max_tokens": tokens,
                       "stream": stream}).encode()
    if conn is None:
        conn = await asyncio.open_connection("127.0.0.1", port)
    reader, writer = conn
    t0 = time.perf_counter()
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    delays: list[float] = []
    got = 0
    if b"chunked" in head.lower():
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            data = await reader.readexactly(size + 2)
            now = time.time()
            for line in data.split(b"\n"):
                if line.startswith(b"data: {"):
                    doc = json.loads(line[6:])
                    if doc.get("choices"):
                        got += 1
                        if "sent" in doc:
                            delays.append(now - doc["sent"])
    else:
        length = int(next(h.split(b":")[1] for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")))
        doc = json.loads(await reader.readexactly(length))
        got = doc["usage"]["completion_tokens"]
    return time.perf_counter() - t0, delays, got, conn


async def sequential(port: int, n: int) -> list[float]:
    out, conn = [], None
    for _ in range(n):
        t, _, _, conn = await request(port, stream=False, tokens=1, conn=conn)
        out.append(t)
    conn[1].close()
    return out


async def answers(port: int, concurrency: int, per_client: int, tokens: int) -> float:
    """Non-streamed requests per second with `concurrency` clients at once."""
    async def client() -> None:
        conn = None
        for _ in range(per_client):
            _, _, _, conn = await request(port, stream=False, tokens=tokens, conn=conn)
        conn[1].close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return concurrency * per_client / (time.perf_counter() - t0)


async def streams(port: int, concurrency: int, per_client: int, tokens: int) -> tuple[float, list[float]]:
    """(completion tokens per second, per-chunk delays) with `concurrency` clients streaming at once."""
    delays: list[float] = []

    async def client() -> int:
        conn, total = None, 0
        for _ in range(per_client):
            _, d, got, conn = await request(port, stream=True, tokens=tokens, conn=conn)
            delays.extend(d)
            total += got
        conn[1].close()
        return total

    t0 = time.perf_counter()
    counts = await asyncio.gather(*(client() for _ in range(concurrency)))
    return sum(counts) / (time.perf_counter() - t0), delays


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    quick = args.quick
    rounds = 1 if quick else 3
    tmp = tempfile.mkdtemp(prefix="footprint-bench-serving-")
    env = dict(os.environ, FOOTPRINT_DB=os.path.join(tmp, "bench.db"), PYTHONPATH=str(ROOT))
    procs: list[subprocess.Popen[bytes]] = []
    ports: dict[float, tuple[int, int, int]] = {}  # token time -> (server port, proxy port, proxy pid)
    with_headers: dict[float, int] = {}  # token time -> the port of a proxy with --headers
    for token_s in RATES:
        up, prox, prox_h = free_port(), free_port(), free_port()
        procs.append(subprocess.Popen([sys.executable, str(FAKES / "openai_server.py"), str(up), "--token-s",
                                       str(token_s), "--prefill-s", "0"], stderr=subprocess.DEVNULL))
        for port, extra in ((prox, []), (prox_h, ["--headers"])):
            proxy = subprocess.Popen([sys.executable, "-m", "footprint", "serve", "--listen", str(port), "--upstream",
                                      f"http://127.0.0.1:{up}", "--no-summary", *extra], env=env,
                                     stderr=subprocess.DEVNULL)
            procs.append(proxy)
        ports[token_s] = (up, prox, procs[-2].pid)
        with_headers[token_s] = prox_h
    try:
        for token_s, (up, prox, _) in ports.items():
            wait_port(up)
            wait_port(prox)
            wait_port(with_headers[token_s])
        results: dict[str, Any] = {"rounds": rounds, "latency": {}, "chunk": {}, "throughput": {}, "answers": {},
                                   "memory": {}}
        fast_up, fast_prox, fast_pid = ports[RATES[0]]
        n_seq = 50 if quick else 500
        lat: dict[str, list[float]] = {"direct": [], "proxied": []}
        chunk: dict[str, list[float]] = {"direct": [], "proxied": []}
        tput: dict[str, dict[str, list[float]]] = {}
        answered: dict[str, dict[str, list[float]]] = {}
        for _ in range(rounds):
            for name, port in (("direct", fast_up), ("proxied", fast_prox)):
                lat[name] += asyncio.run(sequential(port, n_seq))
                _, delays = asyncio.run(streams(port, 1, 5 if quick else 50, 32))  # one stream: no queueing
                chunk[name] += delays
            for token_s, (up, prox, _) in ports.items():
                for c in (1, 16, 64):
                    key = f"{c}@{token_s * 1e3:g}ms"
                    by = tput.setdefault(key, {"direct": [], "proxied": []})
                    for name, port in (("direct", up), ("proxied", prox)):
                        per = 2 if quick else max(2, int(256 * 0.001 / token_s) // c or 1)
                        rate, _ = asyncio.run(streams(port, c, per, 8 if quick else 32))
                        by[name].append(rate)
                key = f"64@{token_s * 1e3:g}ms"
                by = answered.setdefault(key, {"direct": [], "proxied": [], "headers": []})
                for name, port in (("direct", up), ("proxied", prox), ("headers", with_headers[token_s])):
                    per = 2 if quick else max(8, int(64 * 0.001 / token_s))
                    by[name].append(asyncio.run(answers(port, 64, per, 8)))
        for name in lat:
            q = statistics.quantiles(lat[name], n=100)
            results["latency"][name] = {"p50_ms": statistics.median(lat[name]) * 1e3, "p99_ms": q[98] * 1e3}
            results["chunk"][name] = {"p50_ms": statistics.median(chunk[name]) * 1e3}
        latency, per_chunk = results["latency"], results["chunk"]
        latency["added_p50_ms"] = latency["proxied"]["p50_ms"] - latency["direct"]["p50_ms"]
        latency["added_p99_ms"] = latency["proxied"]["p99_ms"] - latency["direct"]["p99_ms"]
        per_chunk["added_p50_ms"] = per_chunk["proxied"]["p50_ms"] - per_chunk["direct"]["p50_ms"]
        for key, by in tput.items():
            d, pr = statistics.median(by["direct"]), statistics.median(by["proxied"])
            results["throughput"][key] = {"direct_tok_s": d, "proxied_tok_s": pr, "loss_pct": (1 - pr / d) * 100}
        for key, by in answered.items():
            d, pr, h = (statistics.median(by[n]) for n in ("direct", "proxied", "headers"))
            results["answers"][key] = {"direct_req_s": d, "proxied_req_s": pr, "headers_req_s": h,
                                       "loss_pct": (1 - pr / d) * 100, "headers_loss_pct": (1 - h / d) * 100}
        # memory: RSS after 1,000 requests, then after 10,000 (the proxy keeps no per-request state once written)
        total = 200 if quick else 10_000
        first = 100 if quick else 1_000
        asyncio.run(sequential(fast_prox, first))
        rss_a = rss_mb(fast_pid)
        asyncio.run(sequential(fast_prox, total - first))
        rss_b = rss_mb(fast_pid)
        results["memory"] = {"requests": total, "rss_mb_after_first": rss_a, "rss_mb_after_all": rss_b,
                             "growth_mb": rss_b - rss_a, "after_first": first}
    finally:
        for proc in reversed(procs):
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    import sqlite3

    conn = sqlite3.connect(env["FOOTPRINT_DB"])
    recorded = conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0]
    conn.close()
    results["recorded_requests"] = recorded
    text = render(results)
    print(text)
    if not quick:
        update_docs(text, results)
    return 0


def render(r: dict[str, Any]) -> str:
    lat, ch, mem = r["latency"], r["chunk"], r["memory"]
    lines = [
        "## Serving: footprint serve's proxy against the server directly",
        "",
        "`python bench/serving.py`: the stand-in OpenAI server of `tests/fakes/openai_server.py`, the same traffic "
        f"sent to it directly and through `footprint serve`, in {r['rounds']} alternating rounds. Client, proxy and "
        "server share this machine's cores. The stand-in streams a token every 1 ms (far faster than any real "
        "server: the proxy's ceiling) or every 20 ms (50 tokens/s per stream, a usual decode speed on a busy GPU). "
        f"The proxies recorded every request they passed ({r['recorded_requests']:,} rows).",
        "",
        "| figure | direct | proxied | added | target |",
        "|---|---|---|---|---|",
        f"| request latency p50 (non-streamed, one at a time) | {lat['direct']['p50_ms']:.3f} ms | "
        f"{lat['proxied']['p50_ms']:.3f} ms | {lat['added_p50_ms']:+.3f} ms | < {TARGETS['added_p50_ms']:g} ms |",
        f"| request latency p99 | {lat['direct']['p99_ms']:.3f} ms | {lat['proxied']['p99_ms']:.3f} ms | "
        f"{lat['added_p99_ms']:+.3f} ms | |",
        f"| per streamed chunk (one stream), server send to client receive, p50 | {ch['direct']['p50_ms']:.3f} ms | "
        f"{ch['proxied']['p50_ms']:.3f} ms | {ch['added_p50_ms']:+.3f} ms | < {TARGETS['added_p50_ms']:g} ms |",
    ]
    for key, t in r["throughput"].items():
        c, rate = key.split("@")
        target = f"< {TARGETS['throughput_loss_64_pct']:g} % loss" if c == "64" and rate != "1ms" else ""
        lines.append(f"| throughput, {c} concurrent streams, a token every {rate} | {t['direct_tok_s']:,.0f} tok/s | "
                     f"{t['proxied_tok_s']:,.0f} tok/s | {-t['loss_pct']:+.1f} % | {target} |")
    for key, a in r.get("answers", {}).items():
        c, rate = key.split("@")
        lines.append(f"| non-streamed, {c} concurrent clients, 8 tokens at a token every {rate} | "
                     f"{a['direct_req_s']:,.0f} req/s | {a['proxied_req_s']:,.0f} req/s | {-a['loss_pct']:+.1f} % | |")
        lines.append(f"| the same with `--headers` | {a['direct_req_s']:,.0f} req/s | "
                     f"{a['headers_req_s']:,.0f} req/s | {-a['headers_loss_pct']:+.1f} % | |")
    lines.append(f"| proxy RSS after {mem['after_first']:,} → {mem['requests']:,} requests | | "
                 f"{mem['rss_mb_after_first']:.1f} → {mem['rss_mb_after_all']:.1f} MB | {mem['growth_mb']:+.1f} MB | "
                 f"flat (< {TARGETS['rss_growth_mb']:g} MB) |")
    return "\n".join(lines) + "\n"


def update_docs(text: str, results: dict[str, Any]) -> None:
    doc = ROOT / "docs" / "benchmarks.md"
    body = doc.read_text()
    start = body.find("## Serving: footprint serve's proxy")
    if start >= 0:
        end = body.find("\n## ", start + 3)
        body = body[:start] + text + (body[end + 1:] if end >= 0 else "")
    else:
        marker = body.find("## Targets")
        body = body[:marker] + text + "\n" + body[marker:] if marker >= 0 else body + "\n" + text
    doc.write_text(body)
    (ROOT / "docs" / "benchmarks-serving.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
