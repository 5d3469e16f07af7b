"""Is the small model enough? The same prompts on two sizes of one model, each a footprint run, then
`footprint compare` with a quality score (negative log-likelihood of reference answers; lower is better,
so quality is reported as exp(-NLL), higher is better).

    python examples/compare_models.py            # SmolLM2-135M vs its first 15 layers
    python examples/compare_models.py --tiny     # two random tiny GPT-2s (seconds; quality meaningless)
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from models import PROMPTS, encode_chat, encode_text, load_smollm2, load_tiny_gpt2  # noqa: E402

import footprint  # noqa: E402
from footprint.hf import generate  # noqa: E402

REFERENCE = ["The capital of France is Paris.", "Use descriptive names.", "Thirteen is a prime number.",
             "Sunlight scatters off air molecules, and blue light scatters most."]


def quality(model: object, tok: object) -> float:
    """exp(-mean NLL) of reference answers after their prompts: a crude but real quality signal."""
    nll, n = 0.0, 0
    for prompt, ref in zip(PROMPTS, REFERENCE, strict=True):
        context = encode_chat(tok, [prompt])["input_ids"][0].tolist()
        answer = encode_text(tok, ref)
        ids = torch.tensor([context + answer])
        with torch.inference_mode():
            logits = model(ids).logits[0, len(context) - 1:-1]  # type: ignore[operator]
        nll += torch.nn.functional.cross_entropy(logits, torch.tensor(answer), reduction="sum").item()
        n += len(answer)
    return math.exp(-nll / n)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--db", default=os.environ.get("FOOTPRINT_DB", "footprint.db"))
    args = ap.parse_args()
    sizes = [None, 15] if not args.tiny else [(4, 128), (1, 32)]
    ids, scores = [], []
    for size in sizes:
        if args.tiny:
            model, tok, label = load_tiny_gpt2(*size)  # type: ignore[misc]
        else:
            model, tok, label = load_smollm2(size)  # type: ignore[arg-type]
        with footprint.track(label, db=args.db, summary=False) as run, torch.inference_mode():
            for _ in range(2):
                generate(model, **encode_chat(tok, PROMPTS), max_new_tokens=args.max_new_tokens, do_sample=False,
                         pad_token_id=tok.pad_token_id)
        ids.append(run.id)
        scores.append(quality(model, tok))
        print(f"run {run.id} {label}: {run.report().j_per_generated_token:.4g} J/generated token, "
              f"quality {scores[-1]:.4f}", flush=True)
    cmd = [sys.executable, "-m", "footprint", "compare", "--db", args.db, *map(str, ids),
           *[f"--quality={i}={q:.6f}" for i, q in zip(ids, scores, strict=True)]]
    subprocess.run(cmd, check=True)


if __name__ == "__main__":
    main()
