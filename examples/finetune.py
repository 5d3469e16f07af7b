"""A short fine-tuning run (a few steps) with the Trainer callback: spans per epoch and step, J per
training token.

    python examples/finetune.py              # SmolLM2-135M, 4 steps on CPU
    python examples/finetune.py --tiny       # random tiny GPT-2 (seconds)

SmolLM2 comes as GGUF; it is loaded as a plain float model (examples/models.py: as_float_model), since
transformers' Trainer refuses to fine-tune a model marked quantized. Tokens are counted with
include_num_input_tokens_seen="non_padding": the attention mask's tokens, not the padding.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from models import PROMPTS, encode_text, load_smollm2, load_tiny_gpt2  # noqa: E402

import footprint  # noqa: E402
from footprint.hf import FootprintCallback  # noqa: E402


def main() -> None:
    import torch
    from transformers import Trainer, TrainingArguments

    ap = argparse.ArgumentParser()
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--seq", type=int, default=32)
    args = ap.parse_args()
    model, tok, label = load_tiny_gpt2() if args.tiny else load_smollm2()
    model.train()
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    rows = []
    for p in PROMPTS * 4:
        ids = encode_text(tok, p * 4)[: args.seq]
        real = len(ids)
        ids += [pad] * (args.seq - real)
        mask = torch.tensor([1] * real + [0] * (args.seq - real))
        labels = torch.where(mask == 1, torch.tensor(ids), -100)  # no loss on padding
        rows.append({"input_ids": torch.tensor(ids), "attention_mask": mask, "labels": labels})
    before = {k: v.detach().clone() for k, v in model.named_parameters()}

    with tempfile.TemporaryDirectory() as out, footprint.track(f"finetune {label}") as run:
        targs = TrainingArguments(output_dir=out, max_steps=args.steps, per_device_train_batch_size=2,
                                  learning_rate=1e-4, report_to=[], save_strategy="no", logging_strategy="no",
                                  use_cpu=True, include_num_input_tokens_seen="non_padding", disable_tqdm=True)
        result = Trainer(model=model, args=targs, train_dataset=rows, callbacks=[FootprintCallback(run)]).train()
    change = max(float((p.detach() - before[k]).abs().max()) for k, p in model.named_parameters())
    print(f"training loss {result.training_loss:.4f}")
    print(f"weights changed by training: {change:.3g}")
    print(f"{label}: {run.j_per_token:.4g} J per training token over {run.tokens} tokens")


if __name__ == "__main__":
    main()
