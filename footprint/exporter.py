"""Prometheus text-format exporter for a live run: per-device power and energy counters, and tokens.

Opt-in (`footprint run --prometheus 127.0.0.1:9464`), bound to localhost unless told otherwise, served
from the sampler's latest readings in memory (the DB is asked only for the token count). The port is
bound before the run is created, so a busy port leaves nothing behind; `--prometheus-linger S` keeps the
final values up for S seconds after the command exits, for the scrape that sees the last stretch.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from footprint.common.errors import FootprintError

if TYPE_CHECKING:
    from .run import Run


def parse_address(text: str) -> tuple[str, int]:
    """'9464', ':9464', 'host:9464' or '[::1]:9464' -> (host, port); the host defaults to 127.0.0.1."""
    from footprint.common.address import parse_address as parse

    return parse(text, "--prometheus")


def _label(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


ENV_MODEL = "FOOTPRINT_MODEL"
ALL_INTERFACES = ("0.0.0.0", "::", "")


def run_labels(run: Run) -> str:
    """run, name, model (FOOTPRINT_MODEL, else the run's name), and a distributed job's job_id and rank:
    what fleet-wide rules aggregate by."""
    labels = f'run="{run.id}",name="{_label(run.name)}",model="{_label(os.environ.get(ENV_MODEL) or run.name)}"'
    row = run.store.run_row(run.id)
    if row is not None and row["job_id"] is not None:
        labels += f',job_id="{_label(row["job_id"])}",rank="{row["rank"]}"'
    return labels


def metrics_text(run: Run, base: str | None = None, serving: ServingMetrics | None = None) -> str:
    sampler = run.sampler
    assert sampler is not None
    base = run_labels(run) if base is None else base
    lines = [
        "# HELP footprint_energy_joules_total Energy drawn by a device since the run started.",
        "# TYPE footprint_energy_joules_total counter",
    ]
    power_lines = [
        "# HELP footprint_power_watts Mean power of a device over the last sampling interval.",
        "# TYPE footprint_power_watts gauge",
    ]
    # The energy figure is as of the last reading, not the scrape: this says when that was (Unix seconds), so
    # rates can be taken between readings and a stalled sampler shows as an old timestamp.
    time_lines = [
        "# HELP footprint_last_reading_timestamp_seconds When the device's energy figure was read (Unix time).",
        "# TYPE footprint_last_reading_timestamp_seconds gauge",
    ]
    for key, (first, prev, last) in sorted(sampler.snapshot().items()):
        kind, _, idx = key.partition(":")
        d = last.device
        labels = (f'{base},kind="{kind}",device="{idx}",source="{_label(d.source)}",'
                  f'measured="{str(d.measured).lower()}"')
        lines.append(f"footprint_energy_joules_total{{{labels}}} {last.energy_j - first:.6f}")
        time_lines.append(f"footprint_last_reading_timestamp_seconds{{{labels}}} {last.t:.6f}")
        if prev is not None and last.t > prev.t:
            watts = (last.energy_j - prev.energy_j) / (last.t - prev.t)
            power_lines.append(f"footprint_power_watts{{{labels}}} {watts:.3f}")
    tokens_total = run.store.tokens_total(run.id)
    tokens = [
        "# HELP footprint_tokens_total Tokens counted in the run so far.",
        "# TYPE footprint_tokens_total counter",
        f"footprint_tokens_total{{{base}}} {tokens_total}",
    ]
    text = "\n".join(lines + power_lines + time_lines + tokens) + "\n"
    if serving is not None:
        text += serving.text(base, sum(last.energy_j - first for first, _, last in sampler.snapshot().values()))
    return text


# J per request: from a short embedding to a long generation on a large model
ENERGY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 10000.0)


class ServingMetrics:
    """Per-model request metrics of `footprint serve`: a histogram of each request's provisional energy,
    prompt and completion tokens, requests by status, and the energy no request has taken so far (idle)."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self._lock = threading.Lock()
        self._models: dict[str, dict[str, Any]] = {}
        self._attributed = 0.0

    def observe(self, model: str | None, usage: Any, energy_j: float | None) -> None:
        name = model or "(none)"
        with self._lock:
            m = self._models.setdefault(name, {"buckets": [0] * len(ENERGY_BUCKETS), "count": 0, "sum": 0.0,
                                               "prompt": 0, "completion": 0, "requests": 0})
            m["requests"] += 1
            m["prompt"] += usage.prompt_tokens or 0
            m["completion"] += usage.completion_tokens or 0
            if energy_j is not None:
                m["count"] += 1
                m["sum"] += energy_j
                self._attributed += energy_j
                for i, bound in enumerate(ENERGY_BUCKETS):
                    if energy_j <= bound:
                        m["buckets"][i] += 1

    def text(self, base: str, total_j: float) -> str:
        lines = [
            "# HELP footprint_request_energy_joules Energy attributed to each request (provisional: at its end).",
            "# TYPE footprint_request_energy_joules histogram",
        ]
        tokens = ["# HELP footprint_request_tokens_total Tokens of the requests served, by model and kind.",
                  "# TYPE footprint_request_tokens_total counter"]
        requests = ["# HELP footprint_requests_total Requests served, by model.",
                    "# TYPE footprint_requests_total counter"]
        with self._lock:
            for name, m in sorted(self._models.items()):
                labels = f'{base},served_model="{_label(name)}"'
                for bound, n in zip(ENERGY_BUCKETS, m["buckets"], strict=True):
                    lines.append(f'footprint_request_energy_joules_bucket{{{labels},le="{bound:g}"}} {n}')
                lines.append(f'footprint_request_energy_joules_bucket{{{labels},le="+Inf"}} {m["count"]}')
                lines.append(f"footprint_request_energy_joules_sum{{{labels}}} {m['sum']:.6f}")
                lines.append(f"footprint_request_energy_joules_count{{{labels}}} {m['count']}")
                tokens.append(f'footprint_request_tokens_total{{{labels},kind="prompt"}} {m["prompt"]}')
                tokens.append(f'footprint_request_tokens_total{{{labels},kind="completion"}} {m["completion"]}')
                requests.append(f"footprint_requests_total{{{labels}}} {m['requests']}")
            idle = max(total_j - self._attributed, 0.0)
        idle_lines = ["# HELP footprint_idle_energy_joules_total Energy no request has been attributed so far.",
                      "# TYPE footprint_idle_energy_joules_total counter",
                      f"footprint_idle_energy_joules_total{{{base}}} {idle:.6f}"]
        return "\n".join(lines + tokens + requests + idle_lines) + "\n"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64  # socketserver's 5 drops connections when scrapers and probes arrive together

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # a scraper that hung up early (BrokenPipe, reset): nothing to say, every time
        super().handle_error(request, client_address)


class MetricsServer:
    """Binds at construction (so a busy port fails before any run exists); serves once given the run."""

    def __init__(self, address: str, run: Run | None = None) -> None:
        host, port = parse_address(address)
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if self.path.split("?")[0] not in ("/metrics", "/"):
                    self.send_error(404)
                    return
                run = exporter.run
                if run is None:
                    self.send_error(503, "no run yet")
                    return
                body = metrics_text(run, exporter.labels, exporter.serving).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:  # keep the child's stderr clean
                return

        self.run: Run | None = None
        self.labels: str | None = None
        self.serving: ServingMetrics | None = None  # footprint serve's per-request metrics
        try:  # the socket's family follows the address; a name that resolves both ways gets IPv4
            families = {info[0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)}
            family = socket.AF_INET if socket.AF_INET in families else families.pop()
        except socket.gaierror as exc:
            raise FootprintError(f"cannot serve metrics on {host}:{port}: {exc.strerror}") from None
        server_class = type("_Server", (_Server,), {"address_family": family})
        try:
            self.server = server_class((host, port), Handler)
        except OSError as exc:
            raise FootprintError(f"cannot serve metrics on {host}:{port}: {exc.strerror}") from None
        shown = f"[{host}]" if ":" in host else host
        self.address = f"{shown}:{self.server.server_address[1]}"
        if host in ALL_INTERFACES:
            print(f"footprint: warning: metrics on {shown} are served on every network interface: anyone "
                  "who reaches this host on that port can read them", file=sys.stderr)
        # started by serve(): inside `footprint run` that is after its signals are blocked, so that this thread,
        # and the one per scrape it starts, never take a SIGTERM meant for the command (footprint/child.py)
        self.thread = threading.Thread(target=self.server.serve_forever, name="footprint-metrics", daemon=True)
        if run is not None:
            self.serve(run)

    def serve(self, run: Run) -> None:
        self.labels = run_labels(run)
        self.run = run
        if not self.thread.is_alive():
            self.thread.start()

    def close(self, linger_s: float = 0.0) -> None:
        """Stop serving, after `linger_s` seconds of serving the final values (Ctrl-C cuts it short)."""
        if linger_s > 0 and self.run is not None:
            print(f"footprint: serving the final metrics for {linger_s:g} s more", file=sys.stderr, flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                time.sleep(linger_s)
        if self.thread.is_alive():
            self.server.shutdown()
        self.server.server_close()
