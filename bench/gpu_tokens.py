"""Energy per generated token on a real GPU, written to docs/gpu.md beside ML.ENERGY's published figure.

    python bench/gpu_tokens.py                          # a CUDA machine: SmolLM2-135M and an 8B Llama-shaped model
    python bench/gpu_tokens.py --tiny --out /tmp/g.md   # the same pipeline on CPU with tiny random models (seconds)

Every (model, batch size) is one footprint run whose `generate` call is split into prefill and decode
spans (footprint.hf.generate). The table gives joules per generated token for the GPU alone (its NVML
counter) and for the whole node (GPU + CPU + RAM, measured or estimated as the run's sources say).

The larger model has Llama-3.1-8B's architecture with random bf16 weights: no weights can be downloaded
here, and a forward pass costs the same arithmetic, hence about the same energy, whatever the weights'
values. Generation is held at a fixed length (min_new_tokens = max_new_tokens) so that no model stops
early and every row generates batch × new-tokens tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# ML.ENERGY leaderboard figure quoted by the LLM-integration issue: GPU energy per output token
ML_ENERGY_J_PER_TOKEN = 0.1
ML_ENERGY_SETUP = "Llama-3.1-8B on one H100, batch 128 (ML.ENERGY leaderboard, GPU energy only, vLLM serving)"

LLAMA_8B = dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=8192, rope_theta=500000.0)
LLAMA_TINY = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)


def llama_random(tiny: bool, device: str) -> tuple[Any, str]:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(**(LLAMA_TINY if tiny else LLAMA_8B), bos_token_id=1, eos_token_id=2, pad_token_id=0)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    # built where it runs and in its final dtype: the 8B weights are made once, as 16 GB of bf16 on the GPU,
    # not as 32 GB of float32 to be cast (nor in host memory)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(cfg).eval()
    finally:
        torch.set_default_dtype(default)
    label = "Llama-shaped tiny (random)" if tiny else "Llama-3.1-8B architecture (random bf16 weights)"
    return model, label


def random_inputs(batch: int, prompt_len: int, vocab: int, device: str) -> dict[str, Any]:
    import torch

    g = torch.Generator().manual_seed(batch)
    ids = torch.randint(3, vocab, (batch, prompt_len), generator=g)
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device)}


def measure(label: str, model: Any, inputs: dict[str, Any], new_tokens: int, pad_id: int, db: str,
            probes: list[Any] | None = None) -> dict[str, Any]:
    import torch

    import footprint
    from footprint.hf import generate

    with torch.inference_mode():  # warm-up: kernels, allocator, caches; not measured
        model.generate(**inputs, max_new_tokens=2, min_new_tokens=2, do_sample=False, pad_token_id=pad_id)
    batch = int(inputs["input_ids"].shape[0])
    with footprint.track(f"{label}, batch {batch}", db=db, summary=False, probes=probes) as run, \
            torch.inference_mode():
        _, stats = generate(model, **inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                            pad_token_id=pad_id)
    rep = run.report()
    decode = [s for s in rep.spans if s.name == "decode"]
    prefill = [s for s in rep.spans if s.name == "prefill"]
    gen = stats.generated_tokens
    gpu, total = rep.energy_j["gpu"], rep.energy_j["total"]
    # a span shorter than a measured counter's update period (prefill at batch 1 often is, against NVML's
    # ~0.1 s) gets no figure: it is marked unreliable instead
    dec = decode[0] if decode and decode[0].reliable else None
    pre = prefill[0] if prefill and prefill[0].reliable else None
    return {
        "model": label, "batch": batch, "prompt_tokens": stats.prompt_tokens, "generated_tokens": gen,
        "duration_s": rep.duration_s, "ttft_s": stats.time_to_first_token_s,
        "gpu_j": gpu, "total_j": total,
        "gpu_j_per_token": gpu / gen if gpu is not None and gen else None,
        "node_j_per_token": total / gen if total is not None and gen else None,
        "decode_gpu_j_per_token": (dec.energy_j["gpu"] / dec.tokens
                                   if dec and dec.tokens and dec.energy_j["gpu"] is not None else None),
        "decode_reliable": bool(decode and decode[0].reliable),
        "prefill_j": pre.energy_j["total"] if pre else None,
        "prefill_gpu_j": pre.energy_j["gpu"] if pre else None,
        "prefill_reliable": bool(prefill and prefill[0].reliable),
        "prefill_s": prefill[0].duration_s if prefill else None,
        "sources": rep.sources, "warnings": rep.warnings, "run_id": rep.id,
    }


def fmt(v: Any, spec: str = ".4g") -> str:
    return "–" if v is None else format(v, spec)


def fmt_span(v: Any, reliable: bool) -> str:
    """A span's figure, or why there is none: it was shorter than a counter's update period."""
    return fmt(v) if reliable else "unreliable (< counter update)"


def render(res: dict[str, Any]) -> str:
    lines = ["# Energy per generated token on a GPU", "",
             f"Run on {res['device']} ({res['host']}), {res['date']}. Command: `{res['command']}`.",
             f"Versions: footprint {res['versions']['footprint']}, torch {res['versions']['torch']}, "
             f"transformers {res['versions']['transformers']}. Sources: "
             + ", ".join(f"{k} {v}" for k, v in res["rows"][0]["sources"].items()) + ".", "",
             f"Prompt {res['prompt_len']} tokens (random ids for the random-weight model, chat prompts for "
             f"SmolLM2), {res['new_tokens']} new tokens per sequence, greedy, fixed length; transformers' "
             "`generate` with a static batch.", "",
             "| model | batch | generated tokens | s | GPU J/token | node J/token | decode GPU J/token | TTFT s "
             "| prefill GPU J |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        lines.append(f"| {r['model']} | {r['batch']} | {r['generated_tokens']} | {fmt(r['duration_s'], '.2f')} | "
                     f"{fmt(r['gpu_j_per_token'])} | {fmt(r['node_j_per_token'])} | "
                     f"{fmt_span(r['decode_gpu_j_per_token'], r['decode_reliable'])} | {fmt(r['ttft_s'], '.3f')} | "
                     f"{fmt_span(r['prefill_gpu_j'], r['prefill_reliable'])} |")
    lines += ["", "## Beside ML.ENERGY", "",
              f"- Published: about {ML_ENERGY_J_PER_TOKEN} J per output token for {ML_ENERGY_SETUP}.",
              "- What differs here: transformers' `generate` runs one static batch (no continuous batching, no "
              "paged attention, no CUDA graphs), so the GPU idles between kernels more than under vLLM; the GPU "
              "figure covers the whole window (prefill, decode and the GPU's idle draw), divided by generated "
              "tokens only; the node figure adds CPU and RAM, which ML.ENERGY leaves out.",
              "- A prefill or decode span shorter than the GPU counter's update period (NVML's is about 0.1 s) "
              "is marked unreliable rather than given a figure; TTFT is timed once prefill's kernels have "
              "completed.",
              "- The 8B row uses random weights: the arithmetic per token, and so the energy, is that of the real "
              "model, but the text is noise.", ""]
    warn = sorted({w for r in res["rows"] for w in r["warnings"]})
    if warn:
        lines += ["## Warnings from the runs", "", *[f"- {w}" for w in warn], ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="tiny random models on CPU: checks the pipeline only")
    ap.add_argument("--out", default=str(ROOT / "docs" / "gpu.md"))
    ap.add_argument("--json", default=None, help="raw results as JSON too")
    ap.add_argument("--batches", default=None, help="comma-separated batch sizes (default 1,32,128; tiny 1,4)")
    ap.add_argument("--new-tokens", type=int, default=None, help="tokens generated per sequence (default 256)")
    ap.add_argument("--prompt-len", type=int, default=None, help="prompt tokens for the random model (512)")
    args = ap.parse_args()

    import torch
    import transformers
    from models import PROMPTS, encode_chat, load_smollm2, load_tiny_gpt2

    import footprint

    device = "cuda" if torch.cuda.is_available() and not args.tiny else "cpu"
    if device == "cpu" and not args.tiny:
        print("no CUDA device: run with --tiny to check the pipeline on CPU", file=sys.stderr)
        return 2
    batches = [int(b) for b in (args.batches or ("1,4" if args.tiny else "1,32,128")).split(",")]
    new_tokens = args.new_tokens or (8 if args.tiny else 256)
    prompt_len = args.prompt_len or (16 if args.tiny else 512)
    db = str(Path(tempfile.mkdtemp()) / "gpu.db") if args.tiny else str(ROOT / "gpu-tokens.db")
    rows = []

    small, tok, small_label = load_tiny_gpt2() if args.tiny else load_smollm2()
    small = small.to(device)
    for b in batches:
        enc = encode_chat(tok, (PROMPTS * (b // len(PROMPTS) + 1))[:b])
        inputs = {k: v.to(device) for k, v in enc.items()}
        rows.append(measure(small_label, small, inputs, new_tokens, tok.pad_token_id, db))
        print(json.dumps(rows[-1]), flush=True)
    del small
    if device == "cuda":
        torch.cuda.empty_cache()

    big, big_label = llama_random(args.tiny, device)
    for b in batches:
        inputs = random_inputs(b, prompt_len, big.config.vocab_size, device)
        rows.append(measure(big_label, big, inputs, new_tokens, 0, db))
        print(json.dumps(rows[-1]), flush=True)

    res = {"device": torch.cuda.get_device_name(0) if device == "cuda" else f"CPU ({platform.processor() or 'cpu'})",
           "host": platform.node(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "command": "python bench/gpu_tokens.py" + (" --tiny" if args.tiny else ""),
           "versions": {"footprint": footprint.__version__, "torch": torch.__version__,
                        "transformers": transformers.__version__},
           "prompt_len": prompt_len, "new_tokens": new_tokens, "rows": rows, "db": db}
    Path(args.out).write_text(render(res))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
