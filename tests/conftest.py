from __future__ import annotations

import importlib
import importlib.util
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.powercap import PowercapTree, standard_zones

ROOT = Path(__file__).resolve().parent.parent
FAKES = Path(__file__).resolve().parent / "fakes"

# Tests run side by side on few cores, so a torch process with several OpenMP threads gains nothing and its
# threads spin while they wait for each other: one thread each cut the CPU time of the tests that run torch by
# about a sixth. Set before any test imports torch; the workers' subprocesses inherit it. A value given is kept.
os.environ.setdefault("OMP_NUM_THREADS", "1")

# A suite started in the background of a non-interactive shell (`make test &`, some CI runners) inherits SIGINT
# and SIGQUIT ignored, and under nohup SIGHUP; footprint rightly leaves an inherited SIG_IGN alone, so the tests
# of signals would see what that shell chose, not what they set up. Each test process (the workers load this file
# too) starts from a terminal's dispositions; the tests that want a signal ignored ignore it themselves.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
for _sig in (signal.SIGQUIT, signal.SIGHUP):
    if signal.getsignal(_sig) == signal.SIG_IGN:
        signal.signal(_sig, signal.SIG_DFL)


_next_port = itertools.count()
PORTS_PER_WORKER = 400


def free_port() -> int:
    """A loopback port for a server that a test starts. Each test worker takes ports from a block of its own,
    below the kernel's ephemeral range (where bind(0) and outgoing connections take theirs), so between choosing
    a port and a server binding it no other test can take it: a port from bind(0), free when chosen, was once
    taken by another worker's server first, and one test's requests went to the other test's server."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:]
    base = 20000 + PORTS_PER_WORKER * (int(worker) if worker.isdigit() else 0)
    for _ in range(PORTS_PER_WORKER):
        port = base + next(_next_port) % PORTS_PER_WORKER
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:  # still held by a process an earlier test left, or in TIME_WAIT
                continue
        return port
    raise RuntimeError(f"no free port in {base}-{base + PORTS_PER_WORKER - 1}")


def requires(*modules: str) -> pytest.MarkDecorator:
    """Skip unless every module is installed, found without importing it: each test worker collects every
    test file, and importing torch, transformers or openai there would cost each worker seconds."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    return pytest.mark.skipif(bool(missing), reason=f"not installed: {', '.join(missing)}")


class lazy_module:  # noqa: N801 (stands for a module)
    """A module imported on first attribute use, for test files whose tests use it as a global."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):  # pytest probes module globals for such names while collecting
            raise AttributeError(attr)
        return getattr(importlib.import_module(self._name), attr)


@pytest.fixture(scope="session")
def nvml_lib_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Compile the stand-in libnvidia-ml.so.1 once per session."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to build the stand-in NVML library")
    out = tmp_path_factory.mktemp("nvml")
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-O2", "-Wall", "-Wl,-soname,libnvidia-ml.so.1",
         "-o", str(out / "libnvidia-ml.so.1"), str(FAKES / "fake_nvml.c"), "-lm"],
        check=True,
    )
    return out


@pytest.fixture
def clean_env(tmp_path: Path) -> dict[str, str]:
    """An environment for subprocesses with no footprint or fake-hardware settings leaking in."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FOOTPRINT_", "FAKE_NVML_", "CUDA_VISIBLE", "FAKE_AMDSMI_", "ROCR_VISIBLE",
                                "HIP_VISIBLE"))
           and k not in ("LD_LIBRARY_PATH", "ROCM_PATH", "ROCM_HOME")}
    env["FOOTPRINT_DB"] = str(tmp_path / "fp.db")
    env["FOOTPRINT_POWERCAP"] = str(tmp_path / "no-powercap")  # this machine has none; be explicit
    env["FOOTPRINT_SYSFS"] = str(tmp_path / "no-sysfs")  # nor hwmon counters or Jetson rails
    # SmolLM2's GGUF converted once per checkout, not once per test (examples/models.py: cached_conversion)
    env["FOOTPRINT_EXAMPLES_CACHE"] = str(ROOT / ".cache" / "examples")
    env["PYTHONPATH"] = str(ROOT)
    return env


def nvml_env(env: dict[str, str], lib_dir: Path, **settings: Any) -> dict[str, str]:
    """Point the real pynvml at the stand-in library with the given FAKE_NVML_* settings."""
    env = dict(env)
    env["LD_LIBRARY_PATH"] = str(lib_dir)
    env.setdefault("FAKE_NVML_T0", f"{time.time() - 100:.6f}")
    for key, value in settings.items():
        env[f"FAKE_NVML_{key.upper()}"] = str(value)
    return env


def footprint_cmd() -> list[str]:
    return [sys.executable, "-m", "footprint"]


def run_cli(args: list[str], env: dict[str, str], *, input: bytes | None = None, timeout: float = 60,
            cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(footprint_cmd() + args, env=env, input=input, capture_output=True, timeout=timeout,
                          cwd=cwd)


def report_json(env: dict[str, str], *runs: str) -> dict[str, Any]:
    res = run_cli(["report", "--json", *runs], env)
    assert res.returncode == 0, res.stderr.decode()
    data: dict[str, Any] = json.loads(res.stdout)
    return data


def probe_line(out: str, name: str) -> str:
    """What `footprint probes` says of one probe: "yes  <why>" or "no   <why>", without the name's column."""
    for line in out.splitlines():
        head, _, rest = line.partition(" ")
        if head == name:
            return rest.lstrip(" ")
    raise AssertionError(f"footprint probes says nothing of {name!r}:\n{out}")


@pytest.fixture
def powercap(tmp_path: Path) -> Iterator[PowercapTree]:
    with PowercapTree(tmp_path / "powercap", standard_zones(), period_s=0.002) as tree:
        yield tree
