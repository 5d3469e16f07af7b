"""The command of `footprint run`: starting it, passing signals on, waiting, and its exit status.

footprint sits between a shell (or nohup, a batch system, a terminal) and the command, and should be
invisible to both:

- **Dispositions.** The command starts with exactly the signal dispositions and mask footprint was
  started with. A signal that was ignored (`nohup` ignores SIGHUP; a non-interactive shell's `cmd &`
  ignores SIGINT) gets no handler here: footprint ignores it too, never forwards it, and the command
  inherits SIG_IGN across exec. Only signals that had their default action get footprint's handler,
  which exec turns back into the default for the command.
- **Forwarding.** SIGTERM and SIGHUP that footprint receives are sent on to the command. SIGINT is sent
  on too, unless the command already got it from the terminal: the terminal's Ctrl-C goes to its whole
  foreground process group, so a command in footprint's group must not get a second one (many programs
  take a second Ctrl-C to mean "quit now, skip the cleanup"). Who sent a signal is not visible to a
  Python handler, so on Linux the signals are blocked in every thread and taken with `sigwaitinfo` by a
  watcher thread, whose siginfo tells the kernel (`SI_KERNEL`: the terminal) from `kill` (`SI_USER`). The
  rule is then: a SIGINT from the kernel, with the command still in footprint's process group, reached
  the command already; any other is forwarded (`kill -INT <footprint>`, or a command that left the
  terminal's group with `setsid`). Without `sigwaitinfo` the old guess is used: footprint in the
  terminal's foreground group and the command in footprint's group.
- **Status.** The run is `interrupted` when the command died of SIGINT, SIGTERM or SIGHUP, or when such
  a signal reached it (forwarded, or from the terminal) before it ended, whatever it then exited with;
  footprint exits with the command's own code (128 + N for a death by signal N), never with one of its own.
- **Before the command starts** (probes opening, `--baseline`), a signal ends footprint as it would
  have ended the command: the run is finished `interrupted` and footprint exits 128 + N. Between the
  run's start and the command's, a signal is held and the command is not started.
- **After the command ends** the run is always recorded; a signal then only skips the summary.
- **`--kill-group`** starts the command in a process group of its own and sends forwarded signals to
  the whole group, so the processes it leaves behind (`sh -c 'sleep 100 & sleep 100'`) are signalled
  too. The default sends them to the command only, as a shell's `kill PID` would. The group is not made
  the terminal's foreground group: a command that reads the terminal should not use it.
"""

from __future__ import annotations

import _thread
import contextlib
import errno
import os
import shutil
import signal
import subprocess
import sys
import threading

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import FrameType
    from typing import Any

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
SI_KERNEL = 0x80  # Linux si_code of a signal the kernel generated (the terminal's Ctrl-C), not kill()


class Interrupted(KeyboardInterrupt):
    """A signal footprint handles arrived before the command started: footprint ends as the command would."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
        self.exit_code = 128 + signum


class SpawnError(Exception):
    """The command could not be started; `code` is the shell's exit status for it (127 or 126)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class Supervisor:
    """Signals around one child process. Use as a context manager around the whole of `footprint run`:
    entering it sets up the handlers, leaving it puts back what footprint was started with."""

    def __init__(self, *, kill_group: bool = False) -> None:
        self.kill_group = kill_group
        # None means a handler not installed from Python: not ours to take over
        self.handled = [s for s in FORWARDED if signal.getsignal(s) not in (signal.SIG_IGN, None)]
        self.child: subprocess.Popen[bytes] | None = None
        self.reached = False  # a signal reached the child: forwarded by us, or sent by the terminal
        self.late: list[int] = []  # signals after the child ended
        self.signals: list[int] = []  # every signal taken once set up, in order (held, forwarded, late)
        self._phase = "setup"  # setup -> ready -> spawning -> running -> finishing -> closed
        self._held: list[tuple[int, bool | None]] = []  # (signal, from the kernel?) before the child exists
        self._lock = threading.RLock()  # the fallback path takes it from a handler in the main thread
        self._signalled = threading.Event()  # a signal was held: for a service that runs without a child
        self._old_handlers: dict[int, Any] = {}
        self._old_mask: set[int | signal.Signals] | None = None
        self._watcher: threading.Thread | None = None

    # -- set-up and tear-down ---------------------------------------------------------------------

    def __enter__(self) -> Supervisor:
        for s in self.handled:
            self._old_handlers[s] = signal.signal(s, self._handler)
        if self.handled and hasattr(signal, "sigwaitinfo") and hasattr(signal, "pthread_sigmask"):
            # blocked here, before any other thread exists, so every later thread (the sampler, the metrics
            # server) inherits the block and the watcher is the only taker
            self._old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, self.handled)
            self._watcher = threading.Thread(target=self._watch, name="footprint-signals", daemon=True)
            self._watcher.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._phase = "closed"
        watcher = self._watcher
        if watcher is not None and watcher.ident is not None and watcher.is_alive():
            signal.pthread_kill(watcher.ident, self.handled[0])  # wakes it; it sees "closed" and returns
            watcher.join(timeout=5)
        if self._old_mask is not None:
            # a signal that came in between is delivered now, to our handler, which ignores it when closed
            signal.pthread_sigmask(signal.SIG_SETMASK, self._old_mask)
        for s, h in self._old_handlers.items():
            signal.signal(s, h)

    def ready(self) -> None:
        """The run has started: from here a signal is held until the child exists, instead of raised."""
        with self._lock:
            if self._phase == "setup":
                self._phase = "ready"

    # -- receiving --------------------------------------------------------------------------------

    def _watch(self) -> None:
        while True:
            info = signal.sigwaitinfo(self.handled)
            with self._lock:
                if self._phase == "closed":
                    return
                if self._phase == "setup":
                    # raise in the main thread, where start_run (the idle measurement) is running
                    _thread.interrupt_main(signal.Signals(info.si_signo))
                    continue
            self._received(info.si_signo, info.si_code == SI_KERNEL)

    def _handler(self, signum: int, _frame: FrameType | None) -> None:
        # Called in the main thread: for signals that arrive while the child is being started (they are
        # unblocked then, see spawn), from interrupt_main during setup, and on systems without sigwaitinfo.
        with self._lock:
            phase = self._phase
        if phase == "setup":
            raise Interrupted(signum)
        if phase != "closed":
            self._received(signum, None)

    def _received(self, signum: int, from_kernel: bool | None) -> None:
        with self._lock:
            self.signals.append(signum)
            if self._phase in ("setup", "ready", "spawning"):
                self._held.append((signum, from_kernel))
                self._signalled.set()
            elif self._phase == "running":
                self._forward(signum, from_kernel)
            elif self._phase == "finishing":
                self.late.append(signum)

    def wait_for_signal(self) -> int:
        """With no child (`footprint serve` in front of a server started elsewhere): wait for SIGINT, SIGTERM
        or SIGHUP and return it."""
        while not self._signalled.wait(0.5):  # a timeout, so the fallback handler can run in the main thread
            pass
        with self._lock:
            self._phase = "finishing"
        held = self.held
        assert held is not None
        return held
    def interrupt(self) -> None:
        """Stop the child as Ctrl-C would, by footprint's own decision (a budget): a SIGINT sent to it (its group
        with --kill-group), which counts as a signal that reached it."""
        self._received(signal.SIGINT, False)

    @property
    def held(self) -> int | None:
        """The first signal held before the child started, if any."""
        return self._held[0][0] if self._held else None

    def _forward(self, signum: int, from_kernel: bool | None) -> None:
        child = self.child
        assert child is not None
        if signum == signal.SIGINT and self._child_got_it(child, from_kernel):
            self.reached = True
            return
        try:
            if self.kill_group:
                os.killpg(child.pid, signum)
            else:
                os.kill(child.pid, signum)  # not yet reaped (see wait), so this pid is still the child's
            self.reached = True
        except ProcessLookupError:
            pass

    def _child_got_it(self, child: subprocess.Popen[bytes], from_kernel: bool | None) -> bool:
        """Did the terminal's Ctrl-C reach the child as well as us?"""
        if from_kernel is None:  # sender unknown: guess from the terminal's foreground group
            from_kernel = _foreground()
        if not from_kernel:
            return False
        try:
            return os.getpgid(child.pid) == os.getpgrp()
        except OSError:
            return False

    # -- the child --------------------------------------------------------------------------------

    def spawn(self, cmd: Sequence[str], env: dict[str, str], pass_fds: Sequence[int],
              stdio: dict[int, int] | None = None) -> subprocess.Popen[bytes]:
        """Start the command, or raise SpawnError with a shell's message and exit status. `stdio` gives it
        other descriptors as its stdout (1) and stderr (2) (`--tokens-from`); the others are inherited."""
        with self._lock:
            self._phase = "spawning"
        try:
            try:
                child = self._popen(cmd, env, pass_fds, stdio)
            except OSError as exc:
                if exc.errno != errno.ENOEXEC:
                    raise
                # No #! line: run it with sh, as POSIX execvp and every shell do.
                path = cmd[0] if "/" in cmd[0] else shutil.which(cmd[0], path=env.get("PATH", os.defpath))
                child = self._popen(["/bin/sh", path or cmd[0], *cmd[1:]], env, pass_fds, stdio)
        except OSError as exc:
            with self._lock:
                self._phase = "finishing"
            raise _spawn_error(cmd[0], exc) from None
        with self._lock:
            self.child = child
            self._phase = "running"
            held, self._held = self._held, []
            for signum, _ in held:  # came in while it was being started: maybe before the fork, so
                self._forward(signum, False)  # the terminal's Ctrl-C may have missed it; send it on
        return child

    def _popen(self, cmd: Sequence[str], env: dict[str, str], pass_fds: Sequence[int],
               stdio: dict[int, int] | None) -> subprocess.Popen[bytes]:
        kw: dict[str, Any] = {"stdout": (stdio or {}).get(1), "stderr": (stdio or {}).get(2)}
        if self.kill_group:
            if sys.version_info >= (3, 11):
                kw["process_group"] = 0
            else:  # pragma: no cover - Python 3.10
                kw["preexec_fn"] = os.setpgrp
        # The child gets the mask the main thread has at fork: put back the one footprint started with for
        # the moment (a signal in this window reaches our handler, which holds it for the child).
        if self._old_mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, self._old_mask)
        try:
            return subprocess.Popen(list(cmd), env=env, pass_fds=tuple(pass_fds), **kw)
        finally:
            if self._old_mask is not None:
                signal.pthread_sigmask(signal.SIG_BLOCK, self.handled)

    def wait(self) -> int:
        """Wait for the child; returns its return code (negative: killed by that signal)."""
        child = self.child
        assert child is not None
        if hasattr(os, "waitid"):
            # wait without reaping, and stop forwarding before reaping: a pid we signal is never reused
            while True:
                try:
                    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
                    break
                except ChildProcessError:
                    break
                except InterruptedError:  # pragma: no cover - retried by Python already
                    continue
        with self._lock:
            self._phase = "finishing"
        return child.wait()

    def outcome(self, rc: int) -> tuple[str, int]:
        """The run's status and footprint's exit code for the child's return code."""
        code = 128 - rc if rc < 0 else rc
        if (rc < 0 and -rc in FORWARDED) or self.reached:
            return "interrupted", code
        return ("completed" if rc == 0 else "failed"), code


def _spawn_error(prog: str, exc: OSError) -> SpawnError:
    if isinstance(exc, FileNotFoundError):
        if "/" in prog and os.path.exists(prog):  # the file is there: its #! interpreter is not
            return SpawnError(f"footprint: {prog}: bad interpreter: {exc.strerror}", 126)
        return SpawnError(f"footprint: {prog}: command not found", 127)
    if isinstance(exc, PermissionError):
        return SpawnError(f"footprint: {prog}: permission denied", 126)
    return SpawnError(f"footprint: {prog}: {exc.strerror}", 126)


def _foreground() -> bool:
    """True when we are the terminal's foreground process group."""
    for stream in (sys.stdin, sys.stderr, sys.stdout):
        try:
            return os.tcgetpgrp(stream.fileno()) == os.getpgrp()
        except (OSError, ValueError, AttributeError):
            continue
    return False


# -- footprint's own output -----------------------------------------------------------------------

class SafeStderr:
    """footprint's sys.stderr during `footprint run`: unbuffered writes to fd 2 that, once one fails (a
    pipe nobody reads, a full disk, a closed descriptor), turn into a sink, as Python's documentation
    advises for SIGPIPE. Nothing is left in a buffer to fail again at interpreter exit, and fd 2 itself
    is left alone, so the child sees the same stderr footprint was given."""

    def __init__(self, fd: int | None, encoding: str = "utf-8") -> None:
        self.fd = fd
        self.encoding = encoding
        self.errors = "backslashreplace"
        self.broken = fd is None

    def write(self, text: str) -> int:
        if not self.broken and self.fd is not None:
            data = text.encode(self.encoding, self.errors)
            try:
                while data:
                    data = data[os.write(self.fd, data):]
            except OSError:
                self.broken = True
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        try:
            return not self.broken and self.fd is not None and os.isatty(self.fd)
        except OSError:
            return False

    def fileno(self) -> int:
        if self.fd is None:
            raise OSError(errno.EBADF, "stderr is closed")
        return self.fd

    def writable(self) -> bool:
        return True


def guard_output() -> None:
    """Make footprint's writes harmless to the child's exit code. A standard descriptor footprint was
    started without is opened on /dev/null first, so neither the DB nor the sampler's pipe can take its
    number and reach the child as its stdin, stdout or stderr (the child then sees /dev/null there)."""
    for std in (0, 1, 2):
        try:
            os.fstat(std)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != std:
                os.dup2(null, std)
                os.close(null)
    if isinstance(sys.stderr, SafeStderr):
        return
    old = sys.stderr
    fd: int | None = None
    encoding = "utf-8"
    if old is not None:
        with contextlib.suppress(OSError, ValueError):
            old.flush()
        try:
            fd = old.fileno()
            encoding = old.encoding or encoding
        except (OSError, ValueError, AttributeError):
            fd = None
    sys.stderr = SafeStderr(fd, encoding)
