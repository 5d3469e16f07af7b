"""The end-of-run summary: one function, used by `track()`, `footprint run` and the notebook magic."""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TextIO

    from footprint.run import Run


def summary_text(run: Run, *, color: bool = False) -> str:
    from footprint.reports import render

    return render(run.report(power=True), "console", color=color)


def print_summary(run: Run, stream: TextIO | None = None, *, color: bool | None = None) -> None:
    """Write the run's summary to `stream` (stderr by default, in colour when it is a terminal). A stream that
    cannot be written (closed, a broken pipe, a full disk) skips the summary: it must never cost the run."""
    out = sys.stderr if stream is None else stream
    try:
        use_color = color if color is not None else out.isatty()
        out.write(summary_text(run, color=use_color))
        out.flush()
    except (OSError, ValueError):
        pass
