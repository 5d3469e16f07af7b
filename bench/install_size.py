"""What `pip install footprint-profiler` puts on disk: a fresh venv, `pip install .`, the size of everything in its
site-packages except pip and setuptools (the venv's own), per distribution.

    python bench/install_size.py                       # the default install
    python bench/install_size.py --extra codecarbon    # with an extra, for comparison
    python bench/install_size.py --json out.json

bench/run.py runs it too (section "Install size" of docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import venv
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OWN = ("pip", "setuptools", "_distutils_hack", "distutils-precedence.pth", "pkg_resources")  # the venv's, not ours

# run inside the fresh venv: bytes per installed distribution, from each one's RECORD
PER_DIST = r"""
import json, os, sys
from importlib import metadata
site = [p for p in sys.path if p.endswith("site-packages")][0]
out = {}
for d in metadata.distributions(path=[site]):
    total = 0
    for f in d.files or ():
        p = d.locate_file(f)
        try:
            total += os.path.getsize(p)
        except OSError:
            pass
    out[d.metadata["Name"]] = [d.version, total]
print(json.dumps({"site": site, "dists": out, "python": "%d.%d" % sys.version_info[:2]}))
"""


def _du(path: Path) -> int:
    if path.is_file() or path.is_symlink():
        return path.lstat().st_size
    return sum(f.lstat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def measure(extra: str | None = None) -> dict[str, Any]:
    """{"spec", "total_bytes", "packages", "dists": {name: [version, bytes]}} for a fresh install of this checkout."""
    spec = f"{ROOT}[{extra}]" if extra else str(ROOT)
    with tempfile.TemporaryDirectory() as tmp:
        env_dir = Path(tmp) / "venv"
        venv.EnvBuilder(with_pip=True).create(env_dir)
        py = env_dir / "bin" / "python"
        res = subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", spec],
                             capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"pip install {spec} failed: {res.stderr.strip()[-500:]}")
        found = json.loads(subprocess.run([str(py), "-c", PER_DIST], capture_output=True, text=True,
                                          check=True).stdout)
        site = Path(found["site"])
        own = {n.lower() for n in OWN}
        total = sum(_du(p) for p in site.iterdir()
                    if p.name.split("-")[0].lower() not in own and p.name.lower() not in own)
    dists = {n: v for n, v in found["dists"].items() if n.lower() not in own}
    import time

    return {"spec": "pip install ." + (f"[{extra}]" if extra else ""), "total_bytes": total,
            "date": time.strftime("%Y-%m-%d", time.gmtime()),
            "python": found["python"], "packages": len(dists),
            "dists": dict(sorted(dists.items(), key=lambda kv: -kv[1][1]))}


def md(sizes: list[dict[str, Any]]) -> list[str]:
    lines = ["## Install size", "",
             "A fresh venv, the install below, then every file in its site-packages except pip's and setuptools' "
             "(the venv's own). Target: ≤ 30 MB, no pandas or numpy, for the default install.", "",
             "| install | packages | MB | largest |", "|---|---|---|---|"]
    for s in sizes:
        top = ", ".join(f"{n} {b / 1e6:.1f}" for n, (_, b) in list(s["dists"].items())[:4])
        lines.append(f"| `{s['spec']}` | {s['packages']} | {s['total_bytes'] / 1e6:.1f} | {top} |")
    default = next((s for s in sizes if s["spec"] == "pip install ."), None)
    if default:
        names = ", ".join(f"{n} {v}" for n, (v, _) in sorted(default["dists"].items()))
        lines += ["", f"Default install ({default.get('date', '?')}, Python {default.get('python', '?')}): {names}."]
    return [*lines, ""]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--extra", action="append", default=[], help="also measure .[EXTRA] (repeatable)")
    ap.add_argument("--json", help="write the raw figures here")
    args = ap.parse_args()
    sizes = [measure(None), *(measure(e) for e in args.extra)]
    print("\n".join(md(sizes)))
    if args.json:
        Path(args.json).write_text(json.dumps(sizes, indent=2))
    return 0 if sizes[0]["total_bytes"] <= 30e6 else 1


if __name__ == "__main__":
    sys.exit(main())
