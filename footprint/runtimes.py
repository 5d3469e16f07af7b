"""Token counts read from what LLM runtimes print, for `footprint run --tokens-from FORMAT`.

Pure parsing, no I/O: a scanner is fed the bytes of one output stream as they arrive, in chunks cut
anywhere, and returns the `(kind, n)` counts it has seen complete so far. Kinds are the ones the read
model already knows: "prompt" (tokens evaluated from the prompt) and "generated".

The formats, each from the runtime's own source:

- `llama.cpp`: the timing lines llama.cpp prints on stderr, at the end of llama-cli / llama-simple, after
  each completion of llama-cpp-python with `verbose=True`, and per request in llama-server's log
  (src/llama-context.cpp `llama_perf_context_print`, common/sampling.cpp `common_perf_print`,
  tools/server `print_timings`; older builds named them `llama_print_timings`):
  `... prompt eval time =  94.85 ms /     5 tokens (...)` and `...  eval time = 162.83 ms /  7 runs (...)`.
  llama.cpp counts the tokens it decoded: a generation that stopped at its length limit sampled one more
  token than it decoded, so "generated" is then one fewer than the tokens the program printed.
- `llama-bench`: its `-o json` or `-o jsonl` records on stdout (tools/llama-bench `json_printer`): per test,
  `n_prompt` and `n_gen` tokens for each timed repetition in `samples_ns`. Warm-up runs are not counted.
- `ollama`: the final object of Ollama's /api/generate and /api/chat responses, streamed or not
  (docs/api.md: `"prompt_eval_count"`, `"eval_count"`), as `curl` prints it on stdout, and the summary
  `ollama run --verbose` prints on stderr (api/types.go `Metrics.Summary`: `prompt eval count:    26 token(s)`).
"""

from __future__ import annotations

import re

from footprint.common.errors import FootprintError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

Counts = list[tuple[str, int]]

STDOUT, STDERR = 1, 2
STREAM_NAMES = {"stdout": (STDOUT,), "stderr": (STDERR,), "both": (STDOUT, STDERR)}

MAX_LINE = 64 * 1024  # a longer line is not one of the lines looked for: only its last part is kept
KEEP = 64 * 1024  # how much unmatched text a field scanner keeps for a match cut between two chunks


class LineScanner:
    """Cuts a stream into lines and gives each complete one (without its end of line) to `parse`.
    With `needle`, only lines that contain it can count: a chunk without it is not cut into lines."""

    def __init__(self, parse: Callable[[bytes], Counts], needle: bytes = b"") -> None:
        self.parse = parse
        self.needle = needle
        self.tail = b""

    def feed(self, data: bytes) -> Counts:
        out: Counts = []
        buf = self.tail + data
        start = 0
        if self.needle not in buf:
            start = buf.rfind(b"\n") + 1
        while True:
            end = buf.find(b"\n", start)
            if end < 0:
                break
            out += self.parse(buf[start:end].rstrip(b"\r"))
            start = end + 1
        self.tail = buf[start:][-MAX_LINE:]
        return out

    def end(self) -> Counts:
        """The stream ended: its last line may have had no end of line."""
        last, self.tail = self.tail, b""
        return self.parse(last.rstrip(b"\r")) if last else []


class FieldScanner:
    """Finds JSON fields in a stream with `pattern` and hands each match, in order, to `handle`.

    A pattern must only match text that cannot grow (a number followed by a non-digit, an array with its
    closing bracket), so a match is never taken from a half-received value; `end()` accepts a number at the
    very end of the stream."""

    def __init__(self, pattern: re.Pattern[bytes], handle: Callable[[re.Match[bytes]], Counts]) -> None:
        self.pattern = pattern
        self.handle = handle
        self.tail = b""

    def _scan(self, buf: bytes) -> tuple[Counts, int]:
        out: Counts = []
        done = 0
        for m in self.pattern.finditer(buf):
            out += self.handle(m)
            done = m.end()
        return out, done

    def feed(self, data: bytes) -> Counts:
        buf = self.tail + data
        out, done = self._scan(buf)
        self.tail = buf[max(done, len(buf) - KEEP):]
        return out

    def end(self) -> Counts:
        out, _ = self._scan(self.tail + b" ")  # the stream's end ends a number too
        self.tail = b""
        return out


class Scanners:
    """Several scanners over the same stream (Ollama's JSON and its `--verbose` summary)."""

    def __init__(self, *parts: LineScanner | FieldScanner) -> None:
        self.parts = parts

    def feed(self, data: bytes) -> Counts:
        return [c for p in self.parts for c in p.feed(data)]

    def end(self) -> Counts:
        return [c for p in self.parts for c in p.end()]


Scanner = LineScanner | FieldScanner | Scanners


# -- llama.cpp ------------------------------------------------------------------------------------

_LLAMA = re.compile(rb"(prompt )?eval time\s*=\s*[0-9.]+ ms\s*/\s*([0-9]+) (?:tokens|runs)\b")


def llama_cpp_line(line: bytes) -> Counts:
    """The count of one llama.cpp timing line: prompt eval (tokens) or eval (runs), else none."""
    m = _LLAMA.search(line)
    if m is None:
        return []
    n = int(m.group(2))
    return [("prompt" if m.group(1) else "generated", n)] if n else []


# -- llama-bench ----------------------------------------------------------------------------------

_BENCH = re.compile(rb'(?<!\\)"(n_prompt|n_gen)"\s*:\s*([0-9]+)(?=[^0-9])|(?<!\\)"samples_ns"\s*:\s*\[([^\]]*)\]')


class _BenchTest:
    """llama-bench prints n_prompt and n_gen before samples_ns in every test record."""

    def __init__(self) -> None:
        self.n_prompt = 0
        self.n_gen = 0

    def handle(self, m: re.Match[bytes]) -> Counts:
        if m.group(1) == b"n_prompt":
            self.n_prompt = int(m.group(2))
            return []
        if m.group(1) == b"n_gen":
            self.n_gen = int(m.group(2))
            return []
        reps = len([s for s in m.group(3).split(b",") if s.strip()])
        out = [(kind, n * reps) for kind, n in (("prompt", self.n_prompt), ("generated", self.n_gen)) if n * reps]
        self.n_prompt = self.n_gen = 0
        return out


def llama_bench_scanner() -> FieldScanner:
    return FieldScanner(_BENCH, _BenchTest().handle)


# -- Ollama ---------------------------------------------------------------------------------------

_OLLAMA_JSON = re.compile(rb'(?<!\\)"(prompt_eval_count|eval_count)"\s*:\s*([0-9]+)(?=[^0-9])')
_OLLAMA_VERBOSE = re.compile(rb"^(prompt )?eval count:\s+([0-9]+) token\(s\)$")


def _ollama_field(m: re.Match[bytes]) -> Counts:
    n = int(m.group(2))
    return [("prompt" if m.group(1) == b"prompt_eval_count" else "generated", n)] if n else []


def ollama_verbose_line(line: bytes) -> Counts:
    """The count of one line of `ollama run --verbose`'s summary, else none."""
    m = _OLLAMA_VERBOSE.match(line.strip())
    if m is None:
        return []
    n = int(m.group(2))
    return [("prompt" if m.group(1) else "generated", n)] if n else []


def ollama_scanner() -> Scanners:
    return Scanners(FieldScanner(_OLLAMA_JSON, _ollama_field), LineScanner(ollama_verbose_line, b"eval count:"))


# -- the formats ----------------------------------------------------------------------------------

class Format:
    """A runtime's output format: which of the command's streams carry it, and a scanner for each."""

    def __init__(self, name: str, streams: tuple[int, ...], scanner: Callable[[], Scanner], hint: str) -> None:
        self.name = name
        self.streams = streams
        self.scanner = scanner
        self.hint = hint  # said when a run found no counts at all


FORMATS = {f.name: f for f in (
    Format("llama.cpp", (STDERR,), lambda: LineScanner(llama_cpp_line, b"eval time"),
           "llama.cpp prints its timings on stderr at the end (llama-cpp-python: Llama(..., verbose=True))"),
    Format("llama-bench", (STDOUT,), llama_bench_scanner, "run llama-bench with -o json or -o jsonl"),
    Format("ollama", (STDOUT, STDERR), ollama_scanner,
           "the final JSON object of /api/generate or /api/chat, or `ollama run --verbose`"),
)}


def parse_tokens_from(text: str) -> tuple[Format, tuple[int, ...]]:
    """`FORMAT` or `FORMAT:STREAM` (stdout, stderr, both) -> the format and the streams to read."""
    name, _, stream = text.partition(":")
    fmt = FORMATS.get(name)
    if fmt is None:
        raise FootprintError(f"unknown format '{name}' (known: {', '.join(FORMATS)}; "
                             f"optionally followed by :stdout, :stderr or :both)")
    if not stream:
        return fmt, fmt.streams
    if stream not in STREAM_NAMES:
        raise FootprintError(f"unknown stream '{stream}' in '{text}' (stdout, stderr or both)")
    return fmt, STREAM_NAMES[stream]
