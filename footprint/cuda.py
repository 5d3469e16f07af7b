"""CUDA synchronisation at span boundaries, so asynchronous kernels are billed to the span that queued them.

Never imports torch itself and never initialises CUDA: if the program has not touched CUDA there is
nothing in flight, and creating a context would cost memory and time.
"""

from __future__ import annotations

import os
import sys


def enabled_by_env() -> bool:
    return os.environ.get("FOOTPRINT_SYNC_CUDA", "1").strip().lower() not in ("0", "false", "no", "off")


def synchronize() -> list[int]:
    """Wait for every CUDA device this process has used; returns their indices."""
    torch = sys.modules.get("torch")
    if torch is None:
        return []
    cuda = getattr(torch, "cuda", None)
    if cuda is None or not cuda.is_available() or not cuda.is_initialized():
        return []
    used = [i for i in range(cuda.device_count()) if cuda.memory_reserved(i) > 0]
    if not used:  # initialised but nothing allocated through the caching allocator: sync the current one
        used = [cuda.current_device()]
    for i in used:
        cuda.synchronize(i)
    return used
