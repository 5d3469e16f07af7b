"""A script that knows nothing of footprint: a few matrix multiplications standing in for a model.

    footprint run --tokens 65536 -- python examples/unmodified_script.py

--tokens tells footprint how many tokens this work stands for, so the summary shows J/token.
"""

import time

import torch

x = torch.randn(512, 512)
start = time.perf_counter()
for _ in range(200):
    x = torch.tanh(x @ x / 512)
print(f"done in {time.perf_counter() - start:.2f} s, checksum {float(x.sum()):.3f}")
