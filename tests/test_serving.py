"""`footprint serve`: the proxy with the real `openai` client, against a stand-in server, on the stand-in NVML.

Energy is checked exactly: a request that ran alone on a GPU drawing a constant power holds that power times
its duration, and at any concurrency the requests' shares plus the idle energy are the run's total.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from footprint import wire
from tests.conftest import FAKES, footprint_cmd, free_port, lazy_module, nvml_env, requires, run_cli

pytestmark = requires("openai")
openai = lazy_module("openai")

GPU_W = 200.0  # GPU 0 draws this, constantly


class Served:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, db: Path, env: dict[str, str]) -> None:
        self.proc = proc
        self.port = port
        self.db = db
        self.env = env
        self.url = f"http://127.0.0.1:{port}/v1"

    def client(self, **kw: Any) -> Any:
        return openai.OpenAI(base_url=self.url, api_key="none", max_retries=0, **kw)

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=60)
        return self.proc.returncode, err.decode()

    def rows(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        conn = sqlite3.connect(self.db)
        conn.row_factory = sqlite3.Row
        try:
            return list(conn.execute(sql, args))
        finally:
            conn.close()


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"footprint serve exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            with urllib.request.urlopen(f"{url}/models", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("the server did not come up")


def serve(env: dict[str, str], *args: str, usage: str = "asked", upstream_args: tuple[str, ...] = ()) -> Served:
    port, up = free_port(), free_port()
    cmd = [*footprint_cmd(), "serve", "--listen", f"127.0.0.1:{port}", "--upstream", f"http://127.0.0.1:{up}",
           "--interval", "0.05", *args, "--", sys.executable, str(FAKES / "openai_server.py"), str(up),
           "--usage", usage, *upstream_args]
    # SIGINT at its default, as from a shell: test runners' worker processes may ignore it, and footprint (rightly)
    # leaves an inherited SIG_IGN alone
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    s = Served(proc, port, Path(env["FOOTPRINT_DB"]), env)
    wait_ready(s.url, proc)
    return s


@pytest.fixture
def gpu_env(nvml_lib_dir: Path, clean_env: dict[str, str]) -> dict[str, str]:
    # constant powers: a request alone holds exactly power × its duration
    return nvml_env(clean_env, nvml_lib_dir, gpus=2, power=f"{GPU_W},80")


@pytest.fixture
def served(gpu_env: dict[str, str]) -> Iterator[Served]:
    s = serve(gpu_env)
    yield s
    if s.proc.poll() is None:
        s.proc.kill()
        s.proc.wait()


def chat(client: Any, i: int, *, stream: bool, asked: bool = False, model: str = "small") -> dict[str, Any]:
    words = " ".join(["w"] * (3 + i % 5))
    kw: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": words}], "max_tokens": 4 + i % 7}
    if not stream:
        r = client.chat.completions.create(**kw)
        return {"prompt": r.usage.prompt_tokens, "completion": r.usage.completion_tokens,
                "text": r.choices[0].message.content}
    if asked:
        kw["stream_options"] = {"include_usage": True}
    chunks = list(client.chat.completions.create(stream=True, **kw))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return {"chunks": chunks, "text": text, "expect": (3 + i % 5, 4 + i % 7)}


def check_conservation(s: Served) -> None:
    """Per run and device kind: Σ request shares + idle = the device kind's total (last read minus first)."""
    (run,) = s.rows("SELECT id FROM runs")
    totals = {r["kind"]: r["e"] for r in s.rows(
        "SELECT kind, SUM(e) AS e FROM (SELECT d.kind, (SELECT energy_j FROM samples WHERE device_id = d.id "
        "ORDER BY t DESC LIMIT 1) - (SELECT energy_j FROM samples WHERE device_id = d.id ORDER BY t LIMIT 1) AS e "
        "FROM devices d WHERE d.run_id = ?) GROUP BY kind", run["id"])}
    shared = {r["kind"]: r["e"] for r in s.rows(
        "SELECT kind, SUM(energy_j) AS e FROM request_energy WHERE run_id = ? GROUP BY kind", run["id"])}
    assert set(shared) == set(totals) and "gpu" in totals
    for kind, total in totals.items():
        assert shared[kind] == pytest.approx(total, rel=1e-9), kind


@pytest.mark.parametrize("concurrency", [1, 4, 16])
def test_openai_client_through_the_proxy_streams_and_not_energy_conserved(served: Served, concurrency: int):
    client = served.client()
    results: list[dict[str, Any]] = []
    lock = threading.Lock()

    def work(i: int) -> None:
        out = chat(client, i, stream=i % 2 == 1, asked=i % 4 == 1)
        with lock:
            results.append({"i": i, **out})

    n = max(4, concurrency * 2)
    with ThreadPoolExecutor(max_workers=concurrency) as pool:  # at most `concurrency` requests in flight
        list(pool.map(work, range(n)))
    assert len(results) == n
    for r in results:
        i = r["i"]
        assert r["text"] == "tok " * (4 + i % 7), r  # passed through unchanged
        if "chunks" in r:
            last = r["chunks"][-1]
            if i % 4 == 1:  # asked for usage: gets the usage chunk
                assert last.choices == [] and last.usage.completion_tokens == 4 + i % 7
            else:  # did not ask: never sees the chunk footprint asked upstream for
                odd = [c.model_dump() for c in r["chunks"] if not (c.choices and c.usage is None)]
                assert not odd, (i, odd)
    code, err = served.stop()
    assert code == 0, err
    rows = served.rows("SELECT * FROM requests ORDER BY id")
    assert len(rows) == n
    by_tokens = sorted((r["prompt_tokens"], r["completion_tokens"], r["stream"]) for r in rows)
    assert by_tokens == sorted((3 + i % 5, 4 + i % 7, i % 2) for i in range(n))
    assert {r["usage_source"] for r in rows} == {"reported"}  # streams too: footprint asked for the usage
    assert all(r["status"] == 200 and r["model"] == "small" and r["error"] is None for r in rows)
    assert all(r["first_token_at"] is not None for r in rows if r["stream"])
    tokens = {r["kind"]: r["n"] for r in served.rows("SELECT kind, SUM(n) AS n FROM tokens GROUP BY kind")}
    assert tokens == {"prompt": sum(r["prompt_tokens"] for r in rows),
                      "generated": sum(r["completion_tokens"] for r in rows)}
    check_conservation(served)
    if concurrency == 1:  # one at a time on a constant power: each request holds exactly power × its duration
        from footprint.core.attribution import attribute, phases

        gpu0 = served.rows("SELECT id FROM devices WHERE kind = 'gpu' AND idx = 0")[0]["id"]
        samples = served.rows("SELECT t, energy_j FROM samples WHERE device_id = ? ORDER BY t", gpu0)
        # the attribution splits the GPUs' joint energy: take GPU 0's own by re-attributing on its samples
        work = [phases(q["started_at"], q["ended_at"], first_token_at=q["first_token_at"],
                       prompt_tokens=q["prompt_tokens"], completion_tokens=q["completion_tokens"]) for q in rows]
        shares, _ = attribute([(x["t"], x["energy_j"]) for x in samples], work)
        # the exact figures: the same sharing of a line at exactly GPU_W. One at a time is as the client sees it:
        # a client that has read a stream's [DONE] may send its next request before the proxy has read the end of
        # the upstream's response and ended the first, and for that instant the two share the GPU
        t_a, t_b = samples[0]["t"], samples[-1]["t"]
        exact_shares, _ = attribute([(t_a, 0.0), (t_b, GPU_W * (t_b - t_a))], work)
        for r in rows:
            exact = exact_shares[r["id"] - 1]
            # NVML counts whole mJ; and a sample's time is stamped just after its counter was read, later when the
            # thread waits for the CPU or the GIL (77 µs seen under load: 15 mJ at 200 W). The stand-in's counter
            # is exact, so each stamp's lag is measured, t - E / P, against the other samples': between the
            # samples around the request, their spread in lag is what its share can be off by
            before = max(i for i, x in enumerate(samples) if x["t"] <= r["started_at"])
            after = min(i for i, x in enumerate(samples) if x["t"] >= r["ended_at"])
            lags = [x["t"] - x["energy_j"] / GPU_W for x in samples[before:after + 1]]
            bound = 0.005 + GPU_W * (max(lags) - min(lags))
            assert shares[r["id"] - 1] == pytest.approx(exact, abs=bound), r["id"]


def test_report_and_compare_per_model(served: Served):
    client = served.client()
    for i in range(6):
        chat(client, i, stream=i % 2 == 0, model="small" if i < 4 else "large")
    code, err = served.stop()
    assert code == 0, err
    assert "footprint: small: 4 request(s)" in err and "footprint: large: 2 request(s)" in err
    res = run_cli(["report", "--requests", "--json"], served.env)
    assert res.returncode == 0, res.stderr.decode()
    doc = json.loads(res.stdout)
    models = {m["model"]: m for m in doc["models"]}
    assert set(models) == {"small", "large"} and models["small"]["requests"] == 4
    per_request = [r["energy_j"]["total"] for r in doc["requests"]]
    total = doc["energy_j"]
    assert sum(per_request) + doc["idle_energy_j"] == pytest.approx(total, rel=1e-9)
    for name, m in models.items():
        mine = [r for r in doc["requests"] if r["model"] == name]
        assert m["energy_j"] == pytest.approx(sum(r["energy_j"]["total"] for r in mine))
        assert m["j_per_output_token"] == pytest.approx(m["energy_j"] / sum(r["completion_tokens"] for r in mine))
        assert m["tokens_per_s"] is not None and m["j_per_request_p50"] is not None
    assert "under batching this is an attribution" in doc["attribution"]
    console = run_cli(["report", "--requests"], served.env)
    assert console.returncode == 0 and b"idle (no request active)" in console.stdout
    csv_out = run_cli(["report", "--requests", "-o", str(served.db.parent / "req.csv")], served.env)
    assert csv_out.returncode == 0
    lines = (served.db.parent / "req.csv").read_text().splitlines()
    assert len(lines) == 7
    header, first = lines[0].split(","), lines[1].split(",")
    iso, epoch = first[header.index("started_at_iso")], float(first[header.index("started_at")])
    assert iso.endswith("+00:00") and abs(datetime.fromisoformat(iso).timestamp() - epoch) < 1e-3
    cmp = run_cli(["compare", "--requests", "--json", "last", "last"], served.env)
    assert cmp.returncode == 0, cmp.stderr.decode()
    rows = json.loads(cmp.stdout)["rows"]
    # the reference is the first run's model that generated most (small: 22 tokens out, large: 17), then the rest
    assert [r["model"] for r in rows] == ["small", "large", "large", "small"]
    assert json.loads(cmp.stdout)["baseline"]["model"] == "small"
    assert rows[1]["ratios"]["j_per_output_token"] == pytest.approx(
        rows[1]["j_per_output_token"] / rows[0]["j_per_output_token"])


def test_server_that_sends_no_stream_usage_has_its_tokens_counted_and_says_so(gpu_env: dict[str, str]):
    s = serve(gpu_env, usage="never")
    try:
        out = chat(s.client(), 2, stream=True)
        assert out["text"] == "tok " * 6
    finally:
        code, err = s.stop()
    assert code == 0, err
    (row,) = s.rows("SELECT * FROM requests")
    assert (row["usage_source"], row["completion_tokens"], row["prompt_tokens"]) == ("counted", 6, None)
    doc = json.loads(run_cli(["report", "--requests", "--json"], s.env).stdout)
    assert any("counted from the chunks" in w for w in doc["warnings"])


def test_headers_carry_the_provisional_energy_which_matches_the_final_one(gpu_env: dict[str, str]):
    s = serve(gpu_env, "--headers", "--carbon-intensity", "100")
    try:
        raw = s.client().chat.completions.with_raw_response.create(
            model="small", messages=[{"role": "user", "content": "a b c"}], max_tokens=20)
        energy = float(raw.headers["x-footprint-energy-j"])
        co2 = float(raw.headers["x-footprint-co2e-g"])
    finally:
        code, err = s.stop()
    assert code == 0, err
    final = s.rows("SELECT SUM(energy_j) AS e FROM request_energy WHERE request_id IS NOT NULL")[0]["e"]
    assert energy == pytest.approx(final, rel=1e-4)  # alone, so nothing later changes its share
    assert co2 == pytest.approx(energy / 3.6e6 * 100, rel=1e-4)


def test_prometheus_metrics_per_model(gpu_env: dict[str, str]):
    mport = free_port()
    s = serve(gpu_env, "--prometheus", f"127.0.0.1:{mport}")
    try:
        client = s.client()
        for i in range(3):
            chat(client, i, stream=i == 1, model="m1")
        chat(client, 0, stream=False, model="m2")
        with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=10) as r:
            text = r.read().decode()
    finally:
        code, err = s.stop()
    assert code == 0, err
    lines = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))

    def value(prefix: str, *labels: str) -> float:
        (hit,) = [float(v) for k, v in lines.items() if k.startswith(prefix + "{") and all(lb in k for lb in labels)]
        return hit

    assert value("footprint_request_energy_joules_count", 'served_model="m1"') == 3
    assert value("footprint_request_energy_joules_bucket", 'served_model="m1"', 'le="+Inf"') == 3
    assert value("footprint_request_tokens_total", 'served_model="m1"', 'kind="completion"') == 4 + 5 + 6
    assert value("footprint_request_tokens_total", 'served_model="m2"', 'kind="prompt"') == 3
    assert value("footprint_idle_energy_joules_total") > 0
    promtool = __import__("shutil").which("promtool")
    if promtool:
        check = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True)
        assert check.returncode == 0, check.stdout + check.stderr


def raw_request(port: int, body: dict[str, Any], path: str = "/v1/chat/completions") -> socket.socket:
    data = json.dumps(body).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                 % (path.encode(), len(data), data))
    return sock


def test_disconnects_failures_hangs_and_big_bodies_are_recorded_and_block_nothing(gpu_env: dict[str, str]):
    # a square wave on top: conservation holds on a power that varies inside sampling intervals too
    s = serve({**gpu_env, "FAKE_NVML_SQUARE": "0.3,150"}, upstream_args=("--token-s", "0.05"))
    try:
        # a client that goes away mid-stream
        sock = raw_request(s.port, {"model": "gone", "stream": True, "max_tokens": 40,
                                    "messages": [{"role": "user", "content": "x"}]})
        got = b""
        while got.count(b"data:") < 3:
            got += sock.recv(4096)
        sock.close()
        # a hung upstream request holds up nobody else
        hung = raw_request(s.port, {"model": "hang", "messages": [{"role": "user", "content": "x"}]})
        t = time.monotonic()
        fast = chat(s.client(), 0, stream=False)
        assert fast["completion"] == 4 and time.monotonic() - t < 10
        # an upstream that cuts the stream, and one that fails
        with pytest.raises(Exception):  # noqa: B017 - the client's error type varies: the stream is cut
            chat(s.client(), 0, stream=True, model="cut")
        with pytest.raises(openai.InternalServerError):
            chat(s.client(), 0, stream=False, model="fail")
        # a 5 MB prompt passes through whole
        big = " ".join(["w"] * 2_500_000)
        r = s.client().chat.completions.create(model="big", messages=[{"role": "user", "content": big}], max_tokens=1)
        assert r.usage.prompt_tokens == 2_500_000
        hung.close()
        time.sleep(0.3)
    finally:
        code, err = s.stop()
    assert code == 0, err
    assert "Traceback" not in err
    rows = {r["model"]: r for r in s.rows("SELECT * FROM requests")}
    assert rows["gone"]["status"] == 499 and 0 < rows["gone"]["completion_tokens"] < 40
    assert rows["gone"]["usage_source"] == "counted"
    assert rows["cut"]["error"].startswith("upstream broke off") and rows["cut"]["completion_tokens"] == 2
    assert rows["fail"]["status"] == 500
    assert rows["big"]["prompt_tokens"] == 2_500_000
    # its client left, then the server stopped: recorded either way
    assert rows["hang"]["status"] in (499, 502) and rows["hang"]["error"]
    check_conservation(s)


def test_a_client_that_leaves_before_its_answer_is_recorded_at_once_and_the_upstream_told(
        gpu_env: dict[str, str], tmp_path: Path):
    """A non-streamed request whose answer is slow in coming (a long generation, a hung server): its client gives
    up. The proxy sees it within CLIENT_WATCH_S, records the request as the client's leaving (499) there and
    then, and closes the upstream connection, so the server can stop working for nobody (as nginx does)."""
    from footprint.proxy import CLIENT_GONE, CLIENT_WATCH_S

    upstream_log = tmp_path / "upstream.log"
    s = serve({**gpu_env, "FAKE_UPSTREAM_LOG": str(upstream_log)})
    try:
        sock = raw_request(s.port, {"model": "hang", "messages": [{"role": "user", "content": "x"}]})
        time.sleep(0.3)  # upstream has it now
        left = time.time()
        sock.close()
        deadline = time.monotonic() + 20
        while not upstream_log.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert upstream_log.exists(), "the upstream connection was not closed after the client left"
        closed = float(upstream_log.read_text().split(" at ")[1])
        assert closed - left < 10 * CLIENT_WATCH_S + 1.0  # seen at once, not when (if ever) the answer comes
        fine = chat(s.client(), 0, stream=False)  # the proxy goes on serving
        assert fine["completion"] == 4
    finally:
        code, err = s.stop()
    assert code == 0 and "Traceback" not in err, err
    rows = {r["model"]: r for r in s.rows("SELECT * FROM requests")}
    assert rows["hang"]["status"] == CLIENT_GONE
    assert rows["hang"]["error"] == "the connection ended before the response"
    assert rows["small"]["status"] == 200


def test_upstream_down_is_a_502_and_bad_addresses_are_one_line_errors(clean_env: dict[str, str]):
    port, up = free_port(), free_port()
    proc = subprocess.Popen([*footprint_cmd(), "serve", "--listen", str(port), "--upstream", f"127.0.0.1:{up}"],
                            env=clean_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                sock = raw_request(port, {"model": "x", "messages": []})
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        reply = sock.recv(65536)
        assert reply.startswith(b"HTTP/1.1 502 ") and b"unreachable" in reply
        sock.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    conn = sqlite3.connect(clean_env["FOOTPRINT_DB"])
    assert conn.execute("SELECT status FROM requests").fetchall() == [(502,)]
    conn.close()
    for args, message in ((["--upstream", "https://x:1"], b"http:// URL"), (["--listen", "nope"], b"[HOST:]PORT"),
                          (["--listen", f"127.0.0.1:{port}", "--upstream", "http://:9"], b"needs a host")):
        res = run_cli(["serve", *args], clean_env)
        assert res.returncode == 2 and res.stderr.count(b"\n") == 1 and message in res.stderr, res.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        res = run_cli(["serve", "--listen", str(busy.getsockname()[1])], clean_env)
        assert res.returncode == 2 and b"cannot listen" in res.stderr and res.stderr.count(b"\n") == 1


def test_signals_and_exit_code_pass_through_to_the_server(gpu_env: dict[str, str]):
    s = serve(gpu_env)
    os.kill(s.proc.pid, signal.SIGINT)  # forwarded (not from a terminal): the server's Ctrl-C
    _, err = s.proc.communicate(timeout=60)
    assert s.proc.returncode == 130, err.decode()  # the stand-in dies of the SIGINT, and footprint says so
    assert s.rows("SELECT status FROM runs")[0]["status"] == "interrupted"


# -- the wire format, in isolation ----------------------------------------------------------------

def test_stream_usage_is_asked_for_and_hidden_whatever_the_read_boundaries():
    info, body = wire.prepare("/v1/chat/completions", b'{"model": "m", "stream": true, "messages": []}')
    assert info.injected and info.model == "m" and body is not None
    assert json.loads(body)["stream_options"] == {"include_usage": True}
    asked = b'{"stream": true, "stream_options": {"include_usage": true}}'
    assert wire.prepare("/v1/completions", asked)[1] is None
    assert wire.prepare("/v1/completions", b"not json")[1] is None
    events = [b'data: {"choices":[{"delta":{"content":"a"}}],"usage":null}\n\n',
              b'data: {"choices":[{"delta":{"content":"b"}}],"usage":null}\r\n\r\n',
              b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}\n\n',
              b"data: [DONE]\n\n"]
    stream = b"".join(events)
    for size in (1, 2, 7, len(stream)):
        for hide in (True, False):
            reader = wire.StreamReader(hide_usage=hide)
            out = b"".join(reader.feed(stream[i:i + size]) for i in range(0, len(stream), size)) + reader.finish()
            assert out == (stream.replace(events[2], b"") if hide else stream)
            assert reader.text_chunks == 2 and reader.result().to_dict() == \
                {"prompt_tokens": 3, "completion_tokens": 2, "source": "reported"}


def test_sigterm_reaches_the_command_while_metrics_are_scraped(clean_env: dict[str, str]):
    """The metrics server's threads start after footprint blocks its signals: a SIGTERM they took instead of the
    watcher would never reach the command."""
    mport = free_port()
    script = ("import signal, sys, time\nsignal.signal(signal.SIGTERM, lambda *a: sys.exit(7))\n"
              "print('up', flush=True)\ntime.sleep(60)\n")
    proc = subprocess.Popen([*footprint_cmd(), "run", "--prometheus", str(mport), "--", sys.executable, "-c", script],
                            env=clean_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"up\n"
    for _ in range(3):  # each scrape runs on a thread of its own
        with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=10) as r:
            assert r.status == 200
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 7, err.decode()


def test_a_node_meter_is_the_requests_basis_never_added_to_the_components():
    """With a whole-node meter the requests' energy is their share of the node figure, and requests + idle is the
    node total; the components are shared too, per kind, but not added on top."""
    from footprint.probes.fake import FakeProbe

    from footprint.common.fakeclock import FakeClock
    from footprint.core.serving import load_serving
    from footprint.core.store import Store
    from footprint.run import finish_run, start_run

    clock = FakeClock()
    run = start_run("node", db=":memory:", interval=0.5, clock=clock, carbon_intensity=100,
                    probes=[FakeProbe({"gpu:0": 300.0}, clock=clock), FakeProbe({"node:0": 500.0}, clock=clock)])
    store: Store = run.store
    t0 = clock.now()
    clock.advance(2.0)
    store.add_requests(run.id, [
        {"started_at": t0 + 0.5, "first_token_at": None, "ended_at": t0 + 1.5, "model": "m", "endpoint": "/v1/x",
         "status": 200, "stream": 0, "prompt_tokens": 4, "completion_tokens": 6, "usage_source": "reported",
         "error": None}])
    finish_run(run)
    report = load_serving(store, run.id)
    assert report is not None
    (req,) = report.requests
    assert req.energy_j["node"] == pytest.approx(500.0) and req.energy_j["gpu"] == pytest.approx(300.0)
    assert req.energy_j["total"] == pytest.approx(500.0)  # the node's share, not 800
    assert report.energy_j == pytest.approx(1000.0) and report.idle_energy_j == pytest.approx(500.0)


def test_the_byte_search_counts_text_chunks_as_parsing_them_would():
    """The stream reader recognises text chunks without parsing them: it must agree with the JSON on every shape
    of chunk servers send."""
    chunks = [
        {"model": "m", "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]},
        {"model": "m", "choices": [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": None}], "usage": None},
        {"model": "m", "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": None}]},
        {"model": "m", "choices": [{"index": 0, "delta": {"content": None, "tool_calls": [{"index": 0, "id": "c"}]}}]},
        {"model": "m", "choices": [{"index": 0, "text": " world", "finish_reason": None}]},
        {"model": "m", "choices": [{"index": 0, "text": "", "finish_reason": "length"}]},
        {"model": "m", "choices": [{"index": 0, "delta": {"reasoning_content": "hmm"}}]},
        {"model": "m", "choices": [{"index": 0, "delta": {"content": 'say "usage": {"x": 1}'}}]},
        {"model": "m", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {"model": "m", "choices": [{"index": 0, "delta": {"content": "!"}, "finish_reason": "stop"}],
         "usage": {"prompt_tokens": 5, "completion_tokens": 6}},
    ]
    for compact in (True, False):
        sep = (",", ":") if compact else (", ", ": ")
        stream = b"".join(b"data: " + json.dumps(c, separators=sep).encode() + b"\n\n" for c in chunks)
        stream = b": keep-alive\n\n" + stream + b"data: [DONE]\n\n"
        reader = wire.StreamReader(hide_usage=False)
        assert reader.feed(stream) == stream
        assert reader.text_chunks == sum(wire._has_text(c) for c in chunks) == 6
        assert reader.result().to_dict() == {"prompt_tokens": 5, "completion_tokens": 6, "source": "reported"}


def test_chunks_of_a_stream_go_on_as_they_come_on_a_kept_alive_connection(gpu_env: dict[str, str]):
    """Each chunk is sent on when it arrives. On a connection's second stream, Nagle's algorithm (no TCP_NODELAY on
    the accepted socket) once held the chunks until the client's delayed ACK, 40 ms later."""
    s = serve(gpu_env, upstream_args=("--token-s", "0.001"))
    try:
        sock = socket.create_connection(("127.0.0.1", s.port), timeout=30)
        body = json.dumps({"model": "m", "stream": True, "max_tokens": 8,
                           "messages": [{"role": "user", "content": "x"}]}).encode()
        for _ in range(3):  # the later streams on the same connection are the ones that were held
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            delays, buf = [], b""
            while b"data: [DONE]" not in buf:
                data = sock.recv(65536)
                assert data
                now = time.time()
                delays += [now - json.loads(line[6:])["sent"] for line in data.split(b"\n")
                           if line.startswith(b'data: {"id"')]
                buf += data
            while not buf.endswith(b"0\r\n\r\n"):
                buf += sock.recv(65536)
        sock.close()
    finally:
        s.stop()
    assert len(delays) == 8
    # from the server's send to the client's receive: well under the 40 ms a held chunk waited
    assert sorted(delays)[len(delays) // 2] < 0.015, delays


def exchange(port: int, raw: bytes, *, timeout: float = 10) -> bytes:
    """Send raw bytes, read until the proxy closes (or the timeout): everything it answered."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.sendall(raw)
    out = b""
    try:
        while data := sock.recv(65536):
            out += data
    except TimeoutError:
        pass
    sock.close()
    return out


def test_http_edge_cases_are_answered_and_recorded_never_mixed_up(clean_env: dict[str, str]):
    port, up = free_port(), free_port()
    upstream = subprocess.Popen([sys.executable, str(FAKES / "raw_upstream.py"), str(up)])
    proc = subprocess.Popen([*footprint_cmd(), "serve", "--listen", str(port), "--upstream", f"http://127.0.0.1:{up}"],
                            env=clean_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        wait_ready(f"http://127.0.0.1:{port}/v1", proc)
        post = b"POST /v1/chat/completions%s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
        # an interim 103 is read past: the client gets the 200, and no later request gets a stale answer
        early = exchange(port, post % (b"?early", 2, b"{}"))
        assert early.startswith(b"HTTP/1.1 200 ") and early.endswith(b'{"early": true}'), early
        after = exchange(port, b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert b'"path": "/v1/models"' in after
        # JSON nested past the parser's depth, both ways: passed on, never a dropped connection
        deep = b"[" * 100_000 + b"]" * 100_000
        assert exchange(port, post % (b"", len(deep), deep)).startswith(b"HTTP/1.1 200 ")
        assert exchange(port, post % (b"?deepjson", 2, b"{}"), timeout=20).startswith(b"HTTP/1.1 200 ")
        # chunk sizes and lengths only as the grammar allows: -5 would have read to the connection's end
        bad = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nab"
        assert exchange(port, bad).startswith(b"HTTP/1.1 400 ")
        assert exchange(port, b"POST /v1/x HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello").startswith(
            b"HTTP/1.1 400 ")
        passthrough = b"POST /v1/other HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
        assert exchange(port, passthrough).startswith(b"HTTP/1.1 400 ")  # the client's error, not the upstream's
        # an HTTP/1.0 client's stream is not chunked: it ends with the connection
        stream = b'{"stream": true, "model": "r"}'
        http10 = exchange(port, b"POST /v1/chat/completions?sse HTTP/1.0\r\nContent-Length: %d\r\n\r\n%s"
                          % (len(stream), stream))
        head, _, body = http10.partition(b"\r\n\r\n")
        assert b"chunked" not in head.lower() and body.startswith(b"data: ") and body.endswith(b"data: [DONE]\n\n")
        assert b'"usage"' not in body  # asked for by footprint, so hidden
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        upstream.kill()
        upstream.wait()
    assert proc.returncode == 0 and b"Traceback" not in err, err.decode()
    conn = sqlite3.connect(clean_env["FOOTPRINT_DB"])
    statuses = sorted(r[0] for r in conn.execute("SELECT status FROM requests"))
    conn.close()
    assert 103 not in statuses and statuses.count(200) == 4, statuses  # early, two deep JSON, the 1.0 stream


def test_an_unread_body_is_never_taken_for_the_next_request(clean_env: dict[str, str]):
    port, nothing = free_port(), free_port()
    proc = subprocess.Popen([*footprint_cmd(), "serve", "--listen", str(port), "--upstream",
                             f"http://127.0.0.1:{nothing}"], env=clean_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        smuggled = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
        while True:
            try:
                out = exchange(port, b"POST /v1/files HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                               % (len(smuggled), smuggled))
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert out.count(b"HTTP/1.1 502 ") == 1, out  # one answer, then the connection closes
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)


def test_streams_cut_by_the_end_of_the_run_keep_their_tokens(gpu_env: dict[str, str]):
    s = serve(gpu_env, upstream_args=("--token-s", "0.02"))
    socks = []
    for _ in range(3):
        sock = raw_request(s.port, {"model": "m", "stream": True, "max_tokens": 1000,
                                    "messages": [{"role": "user", "content": "x"}]})
        socks.append(sock)
    got = [b""] * 3
    for i, sock in enumerate(socks):
        while got[i].count(b"data:") < 5:
            got[i] += sock.recv(65536)
    code, err = s.stop()  # the server goes, the proxy's streams are cut: recorded with what they sent
    for sock in socks:
        sock.close()
    assert code == 0, err
    rows = s.rows("SELECT * FROM requests")
    assert len(rows) == 3
    assert all(r["completion_tokens"] and r["completion_tokens"] >= 5 for r in rows), [dict(r) for r in rows]


@pytest.mark.parametrize("args", [["--listen", "::1"], ["--listen", "²"], ["--upstream", "http://[::1"],
                                  ["--upstream", "http://127.0.0.1:0"], ["--upstream", "http://h:1/?q=1"]])
def test_bad_addresses_are_one_line_errors(clean_env: dict[str, str], args: list[str]):
    res = run_cli(["serve", *args], clean_env)
    assert res.returncode == 2 and res.stderr.count(b"\n") == 1 and b"Traceback" not in res.stderr, res.stderr


def test_middleware_requests_ending_together_share_one_counter_read(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch):
    """With headers, each non-streamed response waits for a counter read taken at or after its end. Requests
    that end together (a batch of sequences finishing, many clients) share one read: a read begun after a
    request ended serves every request that ended before it began, so 24 requests ending at once cost a couple
    of reads, not 24, and no thread waits per request. In process: the ASGI middleware, its own run."""
    import asyncio

    httpx = pytest.importorskip("httpx")
    from footprint.asgi import FootprintMiddleware
    from footprint.core.sampler import Sampler

    marks: list[float] = []
    real_mark = Sampler.mark

    def counted(self: Sampler) -> float:
        marks.append(time.time())
        return real_mark(self)

    monkeypatch.setattr(Sampler, "mark", counted)
    n = 24
    arrived = 0
    all_in: asyncio.Event | None = None

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:  # answers once every request is in
        nonlocal arrived, all_in
        await receive()
        all_in = all_in or asyncio.Event()
        arrived += 1
        if arrived == n:
            del marks[:]  # the run's own first read is not one of theirs
            all_in.set()
        await all_in.wait()
        body = json.dumps({"model": "m", "choices": [{"message": {"content": "hi"}}],
                           "usage": {"prompt_tokens": 3, "completion_tokens": 5}}).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    mw = FootprintMiddleware(app, headers=True, name="asgi-test", db=str(tmp_path / "f.db"))

    async def main() -> list[Any]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=mw), base_url="http://t") as client:
            return list(await asyncio.gather(*(
                client.post("/v1/chat/completions", json={"model": "m", "messages": []}) for _ in range(n))))

    try:
        responses = asyncio.run(main())
        assert mw._own_run is not None and mw._own_run.sampler is not None
        at_end = len(marks)
    finally:
        mw._finish_own_run()
    assert [r.status_code for r in responses] == [200] * n
    energies = [float(r.headers["x-footprint-energy-j"]) for r in responses]
    assert all(e > 0 for e in energies)  # each got its figure, from a read after its end
    assert 1 <= at_end <= 2, at_end  # shared: a read under way when some ended, then one for the rest


def _log_in_process(tmp_path: Path, **kw: Any) -> tuple[Any, Any, Any]:
    """A run measured in this process (a constant GPU_W stand-in probe, real time): (its context, the run, its
    request log)."""
    from footprint.probes.fake import FakeProbe

    import footprint
    from footprint.serving import RequestLog

    ctx = footprint.track("serve", db=str(tmp_path / "f.db"), probes=[FakeProbe(powers_w={"gpu:0": GPU_W})],
                          summary=False, interval=0.05)
    run = ctx.__enter__()
    return ctx, run, RequestLog(run, **kw)


def test_a_figure_that_fails_leaves_no_response_waiting_and_the_next_ones_get_theirs(tmp_path: Path):
    """Whatever goes wrong while the provisional figures are worked out (here the live metrics fail once), the
    response waiting for one gets none, and the thread that works them out goes on for the requests after."""
    import asyncio

    class Metrics:
        calls = 0

        def observe(self, model: str | None, usage: wire.Usage, energy_j: float | None) -> None:
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("the metrics broke")

    ctx, _, log = _log_in_process(tmp_path, metrics=Metrics())

    async def one() -> tuple[float | None, float]:
        req = log.begin(wire.RequestInfo("/v1/chat/completions", "m"))
        await asyncio.sleep(0.05)
        energy = await asyncio.wait_for(log.finish_async(req, status=200, usage=wire.Usage(3, 5, "reported")),
                                        timeout=30)  # a hang guard, not a timing
        assert req.ended_at is not None
        return energy, req.ended_at - req.started_at

    try:
        (first, _), (second, took) = asyncio.run(one()), asyncio.run(one())
    finally:
        log.close()
        ctx.__exit__(None, None, None)
    assert first is None  # the failure: no figure, and no hang
    assert second == pytest.approx(GPU_W * took, rel=1e-6)  # alone on a constant 200 W: its whole window


def test_a_request_that_ends_during_a_read_for_others_keeps_its_neighbours_in_its_figure(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """X ends while a counter read for Z is under way: it waits for the next read, and its figure must still
    share its window with Y, which overlapped it and ended before. (Y was once dropped from the requests kept
    for figures to come, because X was neither running nor in the batch: X's header took Y's share too.)"""
    import asyncio

    from footprint.core.serving import provisional_energies

    ctx, run, log = _log_in_process(tmp_path, provisional=True)
    real = log._read_counters

    def slow() -> None:  # a read that takes a while (many GPUs, a busy driver, a slow disk for the flush)
        time.sleep(0.2)
        real()

    monkeypatch.setattr(log, "_read_counters", slow)

    def usage() -> wire.Usage:
        return wire.Usage(10, 50, "reported")

    async def main() -> tuple[Any, Any, Any, float | None]:
        x = log.begin(wire.RequestInfo("/v1/chat/completions", "m"))
        await asyncio.sleep(0.02)
        y = log.begin(wire.RequestInfo("/v1/chat/completions", "m"))
        await asyncio.sleep(0.4)
        await log.finish_async(y, status=200, usage=usage())
        z = log.begin(wire.RequestInfo("/v1/chat/completions", "m"))
        await asyncio.sleep(0.05)
        for_z = asyncio.ensure_future(log.finish_async(z, status=200, usage=usage()))  # a read begins for Z
        await asyncio.sleep(0.05)
        got = await log.finish_async(x, status=200, usage=usage())  # and X ends while it is under way
        await for_z
        return x, y, z, got

    try:
        x, y, z, got = asyncio.run(main())
        with_y = provisional_energies(run.store, run.id, [x], [x, y, z], [], now=x.ended_at)[0]
        without_y = provisional_energies(run.store, run.id, [x], [x, z], [], now=x.ended_at)[0]
    finally:
        log.close()
        ctx.__exit__(None, None, None)
    assert with_y < without_y * 0.8  # Y's share is real
    assert got == pytest.approx(with_y, rel=1e-9)


def test_a_request_open_for_long_does_not_make_each_figure_attribute_every_request_since(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """One request open for hours (a long stream, a hung client) keeps the finished requests since it began;
    each figure is worked out over those around its own window only, so its cost does not grow with them."""
    import asyncio

    import footprint.serving as serving

    ctx, run, log = _log_in_process(tmp_path, provisional=True)
    sizes: list[int] = []
    real = serving.provisional_energies

    def counted(store: Any, run_id: int, reqs: Any, finished: Any, running: Any, *, now: float) -> list[float]:
        sizes.append(len(finished) + len(running))
        return real(store, run_id, reqs, finished, running, now=now)

    monkeypatch.setattr(serving, "provisional_energies", counted)

    async def one() -> float | None:
        req = log.begin(wire.RequestInfo("/v1/chat/completions", "m"))
        return await log.finish_async(req, status=200, usage=wire.Usage(5, 5, "reported"))

    async def main() -> list[float | None]:
        log.begin(wire.RequestInfo("/v1/chat/completions", "m", stream=True))  # never ends
        for _ in range(10):
            await asyncio.gather(*(one() for _ in range(50)))
        return [await one() for _ in range(5)]

    try:
        last = asyncio.run(main())
    finally:
        log.close()
        ctx.__exit__(None, None, None)
    assert len(log._recent) >= 500  # all kept: each overlaps the open request
    assert all(e is not None and e > 0 for e in last)
    assert sizes[-5:] == [2] * 5  # each alone with the open one: itself, and the open request running
