"""Prometheus text-format exporter for a live run: per-device power and energy counters, and tokens.

Opt-in (`footprint run --prometheus 127.0.0.1:9464`), bound to localhost unless told otherwise, served
from the sampler's latest readings in memory (the DB is asked only for the token count).
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

from footprint.common.errors import FootprintError

if TYPE_CHECKING:
    from .run import Run


def parse_address(text: str) -> tuple[str, int]:
    """'9464', ':9464', 'host:9464' or '[::1]:9464' -> (host, port); the host defaults to 127.0.0.1."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise FootprintError(f"--prometheus takes [HOST:]PORT, got '{text}'")
    return host, int(port)


def _label(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def metrics_text(run: Run) -> str:
    sampler = run.sampler
    assert sampler is not None
    base = f'run="{run.id}",name="{_label(run.name)}"'
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
    return "\n".join(lines + power_lines + time_lines + tokens) + "\n"


class MetricsServer:
    def __init__(self, address: str, run: Run) -> None:
        host, port = parse_address(address)
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if self.path.split("?")[0] not in ("/metrics", "/"):
                    self.send_error(404)
                    return
                body = metrics_text(exporter.run).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:  # keep the child's stderr clean
                return

        self.run = run
        try:
            self.server = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            raise FootprintError(f"cannot serve metrics on {host}:{port}: {exc.strerror}") from None
        self.address = f"{host}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="footprint-metrics", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
