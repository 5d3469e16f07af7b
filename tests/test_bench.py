"""The benchmarks' short mode runs in CI so it cannot rot; it asserts that it ran, not how fast."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow  # each bench starts many processes, torch among them


def test_bench_quick_mode_runs_and_writes_results(tmp_path: Path, clean_env: dict[str, str]):
    md, raw = tmp_path / "bench.md", tmp_path / "bench.json"
    res = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--out", str(md), "--json",
                          str(raw)], env=clean_env, capture_output=True, timeout=600)
    assert res.returncode == 0, res.stderr.decode()[-3000:]
    text = md.read_text()
    for section in ("## Start-up", "## Sampler cost, sensors absent", "## Workload slowdown", "## Store (footprint)"):
        assert section in text
    data = json.loads(raw.read_text())
    assert data["startup"]["footprint"]["n"] == 2
    assert data["store"]["write_samples_per_s"] > 0 and data["store"]["report_s"]["n"] == 3
    assert set(data["workload"]["footprint"]) == {"cpu", "torch"}
    assert set(data["workload"]["none"]) == {"cpu", "torch"}  # the no-tool control runs beside it
    for row in (*data["workload"]["footprint"].values(), *data["workload"]["none"].values()):
        lo, hi = row["ci95"]
        assert row["slowdown"]["n"] == 2 and lo <= row["slowdown"]["median"] <= hi
    if data["isolated"]:  # simulated hardware needs unshare; then footprint's energy must match the integral
        acc = data["accuracy"]["footprint"]
        # over the window footprint says it measured, its energy is the exact integral; over the harness's
        # window it is too, but for the milliseconds a busy machine (this test runs beside others) puts between
        # the harness's clock reads and footprint's first and last counter reads
        assert abs(acc["gpu"]["own_window_error_percent"]) < 0.5 and abs(acc["cpu"]["own_window_error_percent"]) < 1.0
        assert abs(acc["gpu"]["error_percent"]) < 5.0 and abs(acc["cpu"]["error_percent"]) < 5.0


def test_serving_bench_quick_mode_runs_and_the_proxy_recorded_every_request(clean_env: dict[str, str]):
    res = subprocess.run([sys.executable, str(ROOT / "bench" / "serving.py"), "--quick"], env=clean_env,
                         capture_output=True, timeout=300)
    assert res.returncode == 0, res.stderr.decode()[-3000:]
    out = res.stdout.decode()
    assert "## Serving: footprint serve's proxy" in out and "throughput, 64 concurrent streams" in out
    assert out.count("| the same with `--headers` |") == 2
    # 50 sequential, 5 on one stream, streams at 1/16/64 clients x 2 requests at each of 2 token rates, 64
    # clients x 2 non-streamed requests through each of 2 proxies (one with --headers) at each rate, and 200 for
    # memory: all through a proxy
    recorded = int(out.split("The proxies recorded every request they passed (")[1].split(" rows")[0].replace(",", ""))
    assert recorded == 50 + 5 + (1 + 16 + 64) * 2 * 2 + 64 * 2 * 2 * 2 + 200
