"""Opening the DB file: path safety, private creation, read-only opening, and a busy-proof first setup.

Writers (`footprint run`, `track()`, merge's output):
  * a symlink on the way to the DB is followed only if the kernel's `protected_symlinks` rule would
    allow it, applied even where that sysctl is off: in a sticky or world-writable folder, only a link
    owned by the user or by the folder's owner is followed;
  * an existing file there that belongs to someone else (not the folder's owner) is refused, the rule of
    `protected_regular`;
  * the DB must be a regular file (not /dev/null, a FIFO, a folder);
  * a new DB is created 0600 with O_CREAT|O_EXCL|O_NOFOLLOW, and an existing empty one of ours is
    tightened to 0600 before anything is written into it;
  * a file we cannot write is refused up front, in one line.
Readers (report, runs, compare, watch, merge's inputs) open with `mode=ro`, and with `immutable=1` where
SQLite could not open the WAL index (a read-only folder): they never write, never create -wal/-shm, and
never put a schema into an empty file.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

from footprint.common.errors import FootprintError

BUSY_TIMEOUT_S = 60.0  # writers wait this long for another writer's lock
READ_BUSY_TIMEOUT_S = 10.0  # readers: in WAL mode they never wait, except on a rollback-journal DB being written
ENV_BUSY_TIMEOUT = "FOOTPRINT_BUSY_TIMEOUT"  # seconds; overrides both


_URI_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/-._~")


def file_uri(real: Path, query: str = "") -> str:
    """`file:` URI of a path, every other byte percent-encoded (urllib.parse costs start-up time)."""
    raw = os.fsencode(real)
    return "file:" + "".join(chr(b) if b in _URI_SAFE else f"%{b:02X}" for b in raw) + query


def busy_timeout_s(readonly: bool) -> float:
    text = os.environ.get(ENV_BUSY_TIMEOUT)
    if text:
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not 0 <= value < 86_400:
            raise FootprintError(f"{ENV_BUSY_TIMEOUT} must be a number of seconds (0 to 86400), got '{text}'")
        return value
    return READ_BUSY_TIMEOUT_S if readonly else BUSY_TIMEOUT_S


def _untrusted_folder(st: os.stat_result) -> bool:
    return bool(st.st_mode & (stat.S_ISVTX | stat.S_IWOTH))


def _check_link(link: str, st: os.stat_result, folder: str) -> None:
    fst = os.stat(folder)
    if _untrusted_folder(fst) and st.st_uid not in (os.geteuid(), fst.st_uid):
        raise FootprintError(f"refusing to follow symlink {link}: it belongs to another user (uid {st.st_uid}) "
                             f"in the shared folder {folder}")


def resolve(path: str | os.PathLike[str]) -> Path:
    """The DB's real path, following only symlinks that pass the `protected_symlinks` rule."""
    parts = list(Path(os.path.abspath(path)).parts[1:])
    parts.reverse()  # a stack: the next component last
    cur = "/"
    hops = 0
    while parts:
        name = parts.pop()
        if name in ("", "."):
            continue
        if name == "..":
            cur = os.path.dirname(cur)
            continue
        nxt = os.path.join(cur, name)
        try:
            st = os.lstat(nxt)
        except FileNotFoundError:
            return Path(os.path.join(nxt, *reversed(parts)))
        except OSError as exc:
            raise FootprintError(f"cannot open database {path}: {exc.strerror}") from None
        if not stat.S_ISLNK(st.st_mode):
            cur = nxt
            continue
        _check_link(nxt, st, cur)
        hops += 1
        if hops > 40:
            raise FootprintError(f"cannot open database {path}: too many levels of symbolic links")
        target = Path(os.readlink(nxt))
        if target.is_absolute():
            cur = "/"
        parts.extend(reversed(target.parts[1:] if target.is_absolute() else target.parts))
    return Path(cur)


def _describe(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _not_regular(shown: object, mode: int) -> FootprintError:
    what = _describe(mode)
    if what == "a folder":
        return FootprintError(f"{shown} is a folder, not a footprint database")
    return FootprintError(f"{shown} is {what}, not a footprint database (a DB must be a regular file)")


def prepare_for_writing(path: str | os.PathLike[str], *, create: bool) -> Path:
    """Check (and if asked, create) the DB file for a writer; returns the real path to hand to SQLite."""
    shown = os.fspath(path)
    real = resolve(path)
    for _ in range(3):  # O_EXCL lost a race with another creator: check what it made
        try:
            st = os.lstat(real)
        except FileNotFoundError:
            if not create:
                raise FootprintError(f"no database at {shown} (record a run first, or pass --db)") from None
            if not real.parent.is_dir():
                raise FootprintError(f"cannot create database {shown}: folder {real.parent} does not exist") from None
            try:
                fd = os.open(real, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            except FileExistsError:
                continue
            except OSError as exc:
                raise FootprintError(f"cannot create database {shown}: {exc.strerror}") from None
            os.close(fd)
            return real
        except OSError as exc:
            raise FootprintError(f"cannot open database {shown}: {exc.strerror}") from None
        if stat.S_ISLNK(st.st_mode):  # planted between resolve() and here
            raise FootprintError(f"refusing to open database {shown}: it became a symlink while being opened")
        if not stat.S_ISREG(st.st_mode):
            raise _not_regular(shown, st.st_mode)
        folder = os.stat(real.parent)
        if (folder.st_mode & stat.S_ISVTX and folder.st_mode & stat.S_IWOTH
                and st.st_uid not in (os.geteuid(), folder.st_uid)):
            raise FootprintError(f"refusing to write database {shown}: it belongs to another user (uid {st.st_uid}) "
                                 f"in the shared folder {real.parent}")
        _check_writable(real, shown)
        if not os.path.exists(f"{real}-wal") and not os.access(real.parent, os.W_OK | os.X_OK):
            raise FootprintError(f"cannot write database {shown}: folder {real.parent} is not writable "
                                 "(SQLite keeps its write-ahead log next to the DB)")
        return real
    raise FootprintError(f"cannot create database {shown}: it keeps appearing and vanishing")


def _check_writable(real: Path, shown: str) -> None:
    try:
        fd = os.open(real, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise FootprintError(f"cannot write database {shown}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _not_regular(shown, st.st_mode)
        if st.st_size == 0 and st.st_uid == os.geteuid() and st.st_mode & 0o077:
            os.fchmod(fd, 0o600)  # an empty file is about to become a DB: make it as private as a new one
    finally:
        os.close(fd)


def readonly_uri(path: str | os.PathLike[str]) -> tuple[str, Path]:
    """A `file:` URI that opens the DB read-only (immutable where SQLite cannot open its WAL index)."""
    shown = os.fspath(path)
    real = resolve(path)
    try:
        st = os.stat(real)
    except FileNotFoundError:
        raise FootprintError(f"no database at {shown} (record a run first, or pass --db)") from None
    except OSError as exc:
        raise FootprintError(f"cannot read database {shown}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise _not_regular(shown, st.st_mode)
    if not os.access(real, os.R_OK, effective_ids=os.access in os.supports_effective_ids):
        raise FootprintError(f"cannot read database {shown}: permission denied")
    immutable = bool(st.st_size) and _needs_immutable(real)
    return file_uri(real, "?mode=ro&immutable=1" if immutable else "?mode=ro"), real


def _needs_immutable(real: Path) -> bool:
    """A WAL DB read with mode=ro needs its -shm; where the folder is read-only and there is none, SQLite
    cannot open it. Nothing can be writing it then (a writer would have made the -shm), so it is safe to
    read as immutable."""
    with open(real, "rb") as fh:
        header = fh.read(20)
    if len(header) < 20 or header[18] != 2:  # not WAL
        return False
    shm = Path(f"{real}-shm")
    return not shm.exists() and not os.access(real.parent, os.W_OK | os.X_OK)


def open_connection(path: str | os.PathLike[str], *, create: bool, readonly: bool) -> tuple[sqlite3.Connection, Path]:
    """An SQLite connection to the DB at `path`, after the checks above. The caller sets the DB up."""
    timeout = busy_timeout_s(readonly)
    if readonly:
        uri, real = readonly_uri(path)
        conn = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None, check_same_thread=False)
    else:
        real = prepare_for_writing(path, create=create)
        # as a URI, so that ATTACH (merge) can name its inputs read-only
        conn = sqlite3.connect(file_uri(real), uri=True, timeout=timeout, isolation_level=None,
                               check_same_thread=False)
    return conn, real


def explain(exc: sqlite3.Error, path: object, *, readonly: bool) -> FootprintError:
    """One line for an SQLite error on the DB at `path`."""
    msg = str(exc)
    if "not a database" in msg or "malformed" in msg:
        return FootprintError(f"{path} is not a footprint database (not SQLite, or damaged)")
    if "locked" in msg or "busy" in msg:
        return FootprintError(f"database {path} is locked by another program (waited "
                              f"{busy_timeout_s(readonly):g} s; see {ENV_BUSY_TIMEOUT})")
    if "readonly" in msg or "unable to open" in msg:
        return FootprintError(f"cannot {'read' if readonly else 'write'} database {path}: {msg}")
    return FootprintError(f"database {path}: {msg}")
