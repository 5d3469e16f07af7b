"""Copying the command's stdout and/or stderr through footprint, for `footprint run --tokens-from`.

The command writes to a pipe instead of footprint's own descriptor; a thread copies every chunk, byte for
byte and as soon as it arrives (no buffering, no decoding), to footprint's descriptor of the same number,
then shows it to a scanner. What differs for the command, and only for the streams that are read:

- it sees a pipe, not a terminal (`isatty()` is false: programs may turn off colours or line buffering);
- when footprint's own descriptor fails (a reader that went away, a full disk), the pipe is closed, so the
  command's next write fails with a broken pipe (SIGPIPE, or EPIPE where it ignores SIGPIPE), as it would
  have failed writing there itself;
- what a process the command left running writes after the command exited is not copied any more: what
  is in the pipe when the command exits is copied, then the pipe is closed.

Streams that are not read stay the command's own, as without footprint.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import sys
import termios
import threading

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from .runtimes import Counts, Format

CHUNK = 64 * 1024


class Tee:
    """Pipes for the command's `streams` (1, 2), copied to footprint's own descriptors 1 and 2.

    `on_data(stream, data)` is called in the copying thread after each chunk was written out; what it raises
    is kept in `errors` and stops neither the copy nor the command. Use: `child_fds()` for Popen, then
    `started()` once the command runs (or `close()` if it could not start), `finish()` once it exited."""

    def __init__(self, streams: Sequence[int], on_data: Callable[[int, bytes], None]) -> None:
        self.on_data = on_data
        self.errors: list[str] = []
        self._pipes: dict[int, tuple[int, int]] = {}  # stream -> (read end, write end)
        try:
            for s in sorted(set(streams)):
                self._pipes[s] = os.pipe()
            self._wake_r, self._wake_w = os.pipe()
        except OSError:
            self.close()
            raise
        for r, _ in self._pipes.values():
            os.set_blocking(r, False)
        self._open: dict[int, int] = {r: s for s, (r, _) in self._pipes.items()}  # read end -> stream
        self._thread: threading.Thread | None = None

    def child_fds(self) -> dict[int, int]:
        """{stream: write end}: what the command gets as its stdout and/or stderr."""
        return {s: w for s, (_, w) in self._pipes.items()}

    def started(self) -> None:
        """The command has its ends of the pipes: close ours, so its exit ends them, and start copying."""
        for s, (r, w) in list(self._pipes.items()):
            os.close(w)
            self._pipes[s] = (r, -1)
        self._thread = threading.Thread(target=self._copy, name="footprint-tee", daemon=True)
        self._thread.start()

    def finish(self) -> None:
        """The command exited: copy what it left in the pipes, then close them."""
        if self._thread is None:
            return
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        self._thread.join()
        self._thread = None
        self.close()

    def close(self) -> None:
        for r, w in self._pipes.values():
            for fd in (r, w):
                if fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(fd)
        self._pipes = {}
        self._open = {}
        for name in ("_wake_r", "_wake_w"):
            fd = getattr(self, name, -1)
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
                setattr(self, name, -1)

    # -- the copying thread -----------------------------------------------------------------------

    def _copy(self) -> None:
        poller = select.poll()
        for r in self._open:
            poller.register(r, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        while self._open:
            try:
                ready = poller.poll()
            except InterruptedError:  # pragma: no cover - retried by Python already
                continue
            if any(fd == self._wake_r for fd, _ in ready):
                self._drain()
                return
            for fd, _ in ready:
                if fd in self._open:
                    self._read(fd)
                if fd not in self._open:  # its end, or footprint's descriptor failed
                    poller.unregister(fd)

    def _drain(self) -> None:
        """Copy what is in each pipe now, not what a process left behind writes later (see the docstring)."""
        for fd in list(self._open):
            left = _available(fd)
            while left > 0 and fd in self._open:
                got = self._read(fd, min(left, CHUNK))
                if got <= 0:
                    break
                left -= got
            self._stop(fd)

    def _read(self, fd: int, size: int = CHUNK) -> int:
        """Copy one chunk from `fd`; returns its length, 0 at its end (the stream is then closed)."""
        try:
            data = os.read(fd, size)
        except BlockingIOError:
            return -1  # nothing after all: still open
        except OSError:
            data = b""
        stream = self._open[fd]
        if not data:
            self._stop(fd)
            return 0
        if not _write_all(stream, data):  # footprint's own descriptor failed: the command's write fails too
            self._stop(fd)
        try:
            self.on_data(stream, data)
        except Exception as exc:  # never stop the copy for a count
            if len(self.errors) < 5:
                self.errors.append(str(exc))
        return len(data)

    def _stop(self, fd: int) -> None:
        if self._open.pop(fd, None) is not None:
            for s, (r, w) in list(self._pipes.items()):
                if r == fd:
                    self._pipes[s] = (-1, w)
            with contextlib.suppress(OSError):
                os.close(fd)


def _available(fd: int) -> int:
    """Bytes waiting in a pipe (FIONREAD)."""
    buf = bytearray(4)
    try:
        fcntl.ioctl(fd, termios.FIONREAD, buf)
    except OSError:
        return CHUNK
    return int.from_bytes(buf, sys.byteorder)


def _write_all(fd: int, data: bytes) -> bool:
    """Write all of `data` to `fd`, waiting when it is non-blocking and full; False once it fails."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            select.select([], [fd], [])
        except InterruptedError:  # pragma: no cover - retried by Python already
            continue
        except OSError as exc:
            if exc.errno == errno.EAGAIN:  # pragma: no cover - BlockingIOError above
                continue
            return False
    return True


class TokenTap:
    """`--tokens-from`: a Tee over the streams a runtime prints its counts on, each scanned as it passes.

    Each count is given to `add(n, kind)` (a Run's add_tokens) when its line arrives, so it lands in the
    time window it belongs to; the counts of a last line without an end of line are added at `finish()`."""

    def __init__(self, fmt: Format, streams: Sequence[int]) -> None:
        self.fmt = fmt
        self.streams = tuple(sorted(set(streams)))
        self.add: Callable[..., None] | None = None
        self.found: dict[str, int] = {}
        self._scanners = {s: fmt.scanner() for s in self.streams}
        self.tee = Tee(self.streams, self._on_data)

    def _on_data(self, stream: int, data: bytes) -> None:
        self._record(self._scanners[stream].feed(data))

    def _record(self, counts: Counts) -> None:
        for kind, n in counts:
            self.found[kind] = self.found.get(kind, 0) + n
            if self.add is not None:
                self.add(n, kind=kind)

    def finish(self) -> list[str]:
        """Stop copying (the command exited, or never started); returns the warnings to show, if any."""
        self.tee.finish()
        self.tee.close()
        for scanner in self._scanners.values():
            try:
                self._record(scanner.end())
            except Exception as exc:
                self.tee.errors.append(str(exc))
        warnings = [f"--tokens-from {self.fmt.name}: {e}" for e in self.tee.errors]
        if not self.found:
            where = " and ".join(("stdout", "stderr")[s - 1] for s in self.streams)
            warnings.append(f"--tokens-from {self.fmt.name}: no token counts in the command's {where}, "
                            f"so none were recorded ({self.fmt.hint})")
        return warnings
