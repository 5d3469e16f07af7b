"""The end-of-run summary, in one place: `track()`, `footprint run` and the notebook magic all show it from here."""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol, TextIO

    from footprint.core.model import RunReport

    class Run(Protocol):  # what a summary needs of footprint.run.Run (which shows its summary from here)
        def report(self, *, power: bool = False) -> RunReport: ...


def summary_text(run: Run, *, color: bool = False) -> str:
    from footprint.reports import render

    return render(run.report(power=True), "console", color=color)


def summary_html(run: Run) -> str | None:
    """The summary as rich renders it in colour, as HTML (for notebooks); None if that cannot be made."""
    try:
        import io

        from rich.console import Console
        from rich.text import Text

        colored = summary_text(run, color=True)
        console = Console(file=io.StringIO(), record=True, force_jupyter=False, force_terminal=True, width=100)
        console.print(Text.from_ansi(colored), end="")
        return console.export_html(inline_styles=True, code_format=(
            "<pre style=\"white-space:pre;overflow-x:auto;line-height:normal;"
            "font-family:Menlo,'DejaVu Sans Mono',consolas,'Courier New',monospace\">{code}</pre>"))
    except Exception:  # the plain text alone is a complete summary
        return None


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
