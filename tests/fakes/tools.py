"""Stand-in executables put on PATH (a script of tests/fakes run by this interpreter under the real tool's name),
and what the stand-in power tools share (macmon.py, powermetrics.py, vcgencmd.py): a linear power profile per
kind, its exact mean and integral.

A profile is `FAKE_<TOOL>_POWER="cpu=3.5,gpu=1.25"` (W) and optionally `FAKE_<TOOL>_RAMP="cpu=0.5"` (W/s): the
power of a kind at time s is power + ramp * s. The streaming tools (macmon, powermetrics) count s from their own
start and print, per sample, the exact mean power over its window; vcgencmd prints the power at the instant it
runs. So the energy any reader should find is the exact integral below.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

FAKES = Path(__file__).resolve().parent


def parse(spec: str | None) -> dict[str, float]:
    """'cpu=3.5,gpu=1.25' -> {'cpu': 3.5, 'gpu': 1.25}."""
    out: dict[str, float] = {}
    for part in (spec or "").split(","):
        if part.strip():
            key, _, value = part.partition("=")
            out[key.strip()] = float(value)
    return out


class Profile:
    """Power per kind: base + ramp * s (W, s in seconds)."""

    def __init__(self, base: dict[str, float], ramp: dict[str, float] | None = None) -> None:
        self.base = base
        self.ramp = ramp or {}

    @classmethod
    def from_env(cls, tool: str, env: dict[str, str] | None = None) -> Profile:
        env = env if env is not None else dict(os.environ)
        return cls(parse(env.get(f"FAKE_{tool}_POWER")), parse(env.get(f"FAKE_{tool}_RAMP")))

    def power(self, kind: str, s: float) -> float:
        return self.base.get(kind, 0.0) + self.ramp.get(kind, 0.0) * s

    def mean(self, kind: str, a: float, b: float) -> float:
        """Mean power over [a, b]: for a linear profile, the power at the midpoint."""
        return self.power(kind, (a + b) / 2)

    def energy(self, kind: str, a: float, b: float) -> float:
        """Exact integral of the power over [a, b], in J."""
        return self.base.get(kind, 0.0) * (b - a) + self.ramp.get(kind, 0.0) * (b * b - a * a) / 2


def install(bin_dir: Path, name: str, script: str) -> Path:
    """Put tests/fakes/<script> on PATH as `name`, run by this interpreter (as the real tool would be found)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / name
    path.write_text(f'#!/bin/sh\nexec {sys.executable} {FAKES / script} "$@"\n')
    path.chmod(0o755)
    return path


def with_bin(env: dict[str, str], bin_dir: Path) -> dict[str, str]:
    return dict(env, PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}")


def window_ends(log: Path) -> list[float]:
    """The end of each sample's window (seconds since the tool started), as the stand-in logged them."""
    return [float(line) for line in log.read_text().split()]


def put_on_path(bin_dir: Path, name: str, script: str, env: dict[str, str]) -> dict[str, str]:
    """Write `bin_dir/name` (the stand-in `script` from tests/fakes) and return env with bin_dir first on PATH."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    tool = bin_dir / name
    tool.write_text(f"#!{sys.executable}\n" + (FAKES / script).read_text())
    tool.chmod(0o755)
    return dict(env, PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', os.environ.get('PATH', ''))}")
