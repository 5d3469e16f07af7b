"""Stand-in executables put on PATH: a script of tests/fakes run by this interpreter under the real tool's name."""

from __future__ import annotations

import os
import sys
from pathlib import Path

FAKES = Path(__file__).resolve().parent


def put_on_path(bin_dir: Path, name: str, script: str, env: dict[str, str]) -> dict[str, str]:
    """Write `bin_dir/name` (the stand-in `script` from tests/fakes) and return env with bin_dir first on PATH."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    tool = bin_dir / name
    tool.write_text(f"#!{sys.executable}\n" + (FAKES / script).read_text())
    tool.chmod(0o755)
    return dict(env, PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', os.environ.get('PATH', ''))}")
