"""footprint: energy, carbon and cost per token for ML training and inference.

The names below load on first use (PEP 562): `import footprint.probes` (or any lower layer) must not pull in the
run machinery, and a bare `import footprint` stays cheap.
"""

from __future__ import annotations

from importlib import import_module

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .common.errors import FootprintError
    from .powerlimit import PowerLimitTuner
    from .run import Run, current_run, track

__all__ = ["FootprintError", "PowerLimitTuner", "Run", "current_run", "load_ipython_extension", "track",
           "__version__"]
__version__ = "0.1.0"

_LAZY = {"FootprintError": "footprint.common.errors", "Run": "footprint.run", "track": "footprint.run",
         "current_run": "footprint.run", "PowerLimitTuner": "footprint.powerlimit"}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value  # later look-ups skip this hook
        return value
    raise AttributeError(f"module 'footprint' has no attribute {name!r}")


def load_ipython_extension(ipython: object) -> None:
    """`%load_ext footprint` registers the `%%footprint` cell magic."""
    from .magic import load_ipython_extension as load

    load(ipython)
