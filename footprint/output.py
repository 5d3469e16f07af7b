"""Where a command's report goes: standard output, or a file said on standard error."""

from __future__ import annotations

import sys

from footprint.common.errors import FootprintError


def write_output(text: str, path: str | None = None) -> None:
    """`text` to standard output, or to the file `path` (a one-line error if it cannot be written)."""
    if path is None:
        sys.stdout.write(text)
        return
    try:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        raise FootprintError(f"cannot write {path}: {exc.strerror}") from None
    print(f"footprint: wrote {path}", file=sys.stderr)
