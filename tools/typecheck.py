"""mypy --strict over the package as it is installed: footprint/ with probes/ and reports/ mapped inside.

The source tree keeps probes/ and reports/ at the top (see pyproject.toml), so mypy cannot resolve
`footprint.probes` from it directly; this builds a tree of symlinks in that shape and checks it.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        pkg = Path(tmp) / "footprint"
        pkg.mkdir()
        for f in (ROOT / "footprint").iterdir():
            if f.suffix in (".py", ".typed") or (f.is_dir() and (f / "__init__.py").is_file()):
                (pkg / f.name).symlink_to(f)
        (pkg / "probes").symlink_to(ROOT / "probes")
        (pkg / "reports").symlink_to(ROOT / "reports")
        cmd = [sys.executable, "-m", "mypy", "--strict", "--config-file", str(ROOT / "pyproject.toml"),
               "-p", "footprint"]
        return subprocess.run(cmd, cwd=tmp).returncode


if __name__ == "__main__":
    raise SystemExit(main())
