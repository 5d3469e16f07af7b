"""`footprint serve`'s proxy as a service of the run: started once the run exists, stopped before it ends."""

from __future__ import annotations

import contextlib
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket

    from .exporter import MetricsServer
    from .proxy import Proxy, Upstream
    from .run import Run
    from .serving import RequestLog


class ProxyService:
    def __init__(self, sock: socket.socket, upstream: Upstream, *, headers: bool = False) -> None:
        self.sock = sock
        self.upstream = upstream
        self.headers = headers
        self.metrics_server: MetricsServer | None = None  # set by the CLI with --prometheus
        self.proxy: Proxy | None = None
        self.log: RequestLog | None = None

    def serve(self, run: Run) -> None:
        from .exporter import ServingMetrics
        from .proxy import Proxy
        from .serving import RequestLog

        metrics = None
        if self.metrics_server is not None:
            metrics = ServingMetrics(run)
            self.metrics_server.serving = metrics
        self.log = RequestLog(run, provisional=self.headers, metrics=metrics)
        row = run.store.run_row(run.id)
        self.proxy = Proxy(self.upstream, self.log, headers=self.headers,
                           carbon_intensity=row["carbon_g_per_kwh"] if row is not None else None,
                           pue=(row["pue"] or 1.0) if row is not None else 1.0)
        self.proxy.start(self.sock)
        host, port = self.sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        print(f"footprint: proxy on http://{shown}:{port} -> {self.upstream.url} (run {run.id})", file=sys.stderr,
              flush=True)

    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()
        if self.log is not None:
            self.log.close()
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def summary(self, run: Run) -> None:
        """One line per model after the run's summary."""
        from footprint.core.serving import load_serving

        try:
            report = load_serving(run.store, run.id)
        except Exception as exc:
            print(f"footprint: requests not summarised: {exc}", file=sys.stderr)
            return
        if report is None:
            print("footprint: no requests were served through the proxy", file=sys.stderr)
            return
        from .reports.requests import summary_lines

        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(summary_lines(report))
            sys.stderr.flush()
