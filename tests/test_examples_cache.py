"""The examples' cache of converted models (examples/models.py: cached_conversion): converted once per file,
whole or not at all, and by one process when several start at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))
import models  # noqa: E402

WORKER = """
import os, sys, time
sys.path.insert(0, {examples!r})
import models

def convert(out):
    with open({log!r}, "a") as f:
        f.write(f"{{os.getpid()}}\\n")
    time.sleep(0.3)  # long enough that the other processes arrive while this one converts
    with open(os.path.join(out, "weights"), "w") as f:
        f.write("converted")

print(models.cached_conversion({source!r}, convert))
"""


@pytest.fixture
def source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FOOTPRINT_EXAMPLES_CACHE", str(tmp_path / "cache"))
    f = tmp_path / "model.gguf"
    f.write_bytes(b"GGUF" + bytes(60))
    return f


def test_converted_once_then_read_from_the_cache(source: Path) -> None:
    calls: list[str] = []

    def convert(out: str) -> None:
        calls.append(out)
        Path(out, "weights").write_text("converted")

    first = models.cached_conversion(str(source), convert)
    second = models.cached_conversion(str(source), convert)
    assert first is not None and first == second and len(calls) == 1
    assert Path(first, "weights").read_text() == "converted"
    assert Path(first).parent == source.parent / "cache"


def test_a_changed_file_is_converted_again(source: Path) -> None:
    calls: list[str] = []

    def convert(out: str) -> None:
        calls.append(out)

    first = models.cached_conversion(str(source), convert)
    source.write_bytes(b"GGUF" + bytes(61))  # another size: another key
    second = models.cached_conversion(str(source), convert)
    assert first != second and len(calls) == 2


def test_a_failed_conversion_leaves_nothing_behind(source: Path) -> None:
    def broken(out: str) -> None:
        Path(out, "half-written").write_text("x")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        models.cached_conversion(str(source), broken)
    cache = source.parent / "cache"
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == []
    again = models.cached_conversion(str(source), lambda out: Path(out, "weights").write_text("ok"))
    assert again is not None and Path(again, "weights").read_text() == "ok"


def test_off_or_unwritable_means_no_cache(source: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FOOTPRINT_EXAMPLES_CACHE", "off")
    assert models.cached_conversion(str(source), lambda out: None) is None
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("FOOTPRINT_EXAMPLES_CACHE", str(blocker / "cache"))  # under a file: cannot be made
    assert models.cached_conversion(str(source), lambda out: None) is None


def test_processes_starting_together_convert_once(source: Path, tmp_path: Path) -> None:
    log = tmp_path / "conversions.log"
    code = WORKER.format(examples=str(ROOT / "examples"), log=str(log), source=str(source))
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE) for _ in range(3)]
    outs = [p.communicate(timeout=60)[0].decode().strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len(set(outs)) == 1 and Path(outs[0], "weights").read_text() == "converted"
    assert len(log.read_text().splitlines()) == 1  # one conversion; the others waited and read it
