"""footprint: energy, carbon and cost per token for ML training and inference."""

from __future__ import annotations

from .errors import FootprintError
from .run import Run, track

__all__ = ["FootprintError", "Run", "load_ipython_extension", "track", "__version__"]
__version__ = "0.1.0"


def load_ipython_extension(ipython: object) -> None:
    """`%load_ext footprint` registers the `%%footprint` cell magic."""
    from .magic import load_ipython_extension as load

    load(ipython)
