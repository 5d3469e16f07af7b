"""`%%footprint` for IPython/Jupyter: profile a cell and show the summary under it.

    %load_ext footprint
    %%footprint generate-batch --country FRA
    out = model.generate(**inputs)

The cell runs in the notebook's namespace like any cell; its last expression is the cell's value (shown
once, after the summary). A cell that raises is recorded as failed, its summary shown, and the error
raised on as the cell's own. The run is left in `_footprint_run` for further use.
"""

from __future__ import annotations

import argparse
import ast
import shlex
from typing import Any

from footprint.common.errors import FootprintError
from footprint.core.sampler import DEFAULT_INTERVAL_S

from .run import Run, track


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="%%footprint", add_help=False, exit_on_error=False)
    p.add_argument("name", nargs="?", default="cell")
    p.add_argument("--db")
    p.add_argument("--interval", type=float, default=DEFAULT_INTERVAL_S)
    p.add_argument("--country")
    p.add_argument("--region")
    p.add_argument("--carbon-intensity", type=float)
    p.add_argument("--tokens", type=int)
    return p


def _compile(cell: str, shell: Any) -> tuple[Any, Any | None]:
    """The cell as IPython would run it (%magics and !commands inside it transformed): code for its
    statements, and for its last expression apart, so that its value can be returned."""
    source = shell.transform_cell(cell)
    # tracebacks then show the cell's lines, as "Cell In[n]"
    filename = shell.compile.cache(source, getattr(shell, "execution_count", 0) or 0)
    tree = shell.transform_ast(shell.compile.ast_parse(source, filename=filename))
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = shell.compile(ast.Expression(tree.body.pop().value), filename, "eval")
    return shell.compile(tree, filename, "exec"), last


def _execute(body: Any, last: Any | None, shell: Any) -> Any:
    __tracebackhide__ = True  # noqa: F841 (IPython leaves this frame out of tracebacks)
    exec(body, shell.user_ns)
    return eval(last, shell.user_ns) if last is not None else None


def show_summary(run: Run) -> None:
    """One output for the whole summary: rich's HTML for notebooks, plain text for everything else."""
    from IPython.display import display

    from .summary import summary_html, summary_text

    bundle = {"text/plain": summary_text(run).rstrip("\n")}
    html = summary_html(run)
    if html is not None:
        bundle["text/html"] = html
    display(bundle, raw=True)  # type: ignore[no-untyped-call]


def footprint_cell(line: str, cell: str, shell: Any) -> Any:
    __tracebackhide__ = True  # noqa: F841
    try:
        args = _parser().parse_args(shlex.split(line))
    except (argparse.ArgumentError, SystemExit) as exc:
        usage = "%%footprint [name] [--db F] [--interval S] [--country ISO3] [--tokens N]"
        raise FootprintError(f"{usage}: {exc}") from None
    body, last = _compile(cell, shell)  # a syntax error is raised before any run starts
    tracker = track(args.name, db=args.db, interval=args.interval, country=args.country, region=args.region,
                    carbon_intensity=args.carbon_intensity, summary=False)
    run = tracker.__enter__()
    shell.user_ns["_footprint_run"] = run
    try:
        value = _execute(body, last, shell)
        if args.tokens is not None:
            run.add_tokens(args.tokens)
    except BaseException as exc:
        tracker.__exit__(type(exc), exc, exc.__traceback__)
        show_summary(run)
        raise
    tracker.__exit__(None, None, None)
    show_summary(run)
    return value


def load_ipython_extension(ipython: Any) -> None:
    def footprint(line: str, cell: str) -> Any:
        __tracebackhide__ = True  # noqa: F841
        return footprint_cell(line, cell, ipython)

    ipython.register_magic_function(footprint, "cell", "footprint")
