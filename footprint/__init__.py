"""footprint: energy, carbon and cost per token for ML training and inference."""

from __future__ import annotations

from .errors import FootprintError
from .run import Run, track

__all__ = ["FootprintError", "Run", "track", "__version__"]
__version__ = "0.1.0"
