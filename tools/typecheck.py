"""mypy --strict over the package as it is installed: footprint/ with probes/ and reports/ mapped inside.

The source tree keeps probes/ and reports/ at the top (see pyproject.toml), so mypy cannot resolve
`footprint.probes` from it directly; this builds a tree of symlinks in that shape and checks it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    # The tree and mypy's cache stay in .mypy_cache (git ignores it) at fixed paths, so a second check
    # reads the cache and takes seconds instead of a minute.
    cache = ROOT / ".mypy_cache"
    tree = cache / "tree"
    shutil.rmtree(tree, ignore_errors=True)
    pkg = tree / "footprint"
    pkg.mkdir(parents=True)
    for f in (ROOT / "footprint").iterdir():
        if f.suffix in (".py", ".typed") or (f.is_dir() and (f / "__init__.py").is_file()):
            (pkg / f.name).symlink_to(f)
    (pkg / "probes").symlink_to(ROOT / "probes")
    (pkg / "reports").symlink_to(ROOT / "reports")
    cmd = [sys.executable, "-m", "mypy", "--strict", "--config-file", str(ROOT / "pyproject.toml"),
           "--cache-dir", str(cache), "-p", "footprint"]
    return subprocess.run(cmd, cwd=tree).returncode


if __name__ == "__main__":
    raise SystemExit(main())
