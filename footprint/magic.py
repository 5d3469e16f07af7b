"""`%%footprint` for IPython/Jupyter: profile a cell and print the summary under it.

    %load_ext footprint
    %%footprint generate-batch --country FRA
    out = model.generate(**inputs)
"""

from __future__ import annotations

import argparse
import shlex
from typing import Any

from footprint.common.errors import FootprintError

from .run import track


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="%%footprint", add_help=False, exit_on_error=False)
    p.add_argument("name", nargs="?", default="cell")
    p.add_argument("--db")
    p.add_argument("--interval", type=float, default=0.5)
    p.add_argument("--country")
    p.add_argument("--region")
    p.add_argument("--carbon-intensity", type=float)
    p.add_argument("--tokens", type=int)
    return p


def footprint_cell(line: str, cell: str, shell: Any) -> Any:
    try:
        args = _parser().parse_args(shlex.split(line))
    except (argparse.ArgumentError, SystemExit) as exc:
        usage = "%%footprint [name] [--db F] [--interval S] [--country ISO3] [--tokens N]"
        raise FootprintError(f"{usage}: {exc}") from None
    with track(args.name, db=args.db, interval=args.interval, country=args.country, region=args.region,
               carbon_intensity=args.carbon_intensity, summary=False) as run:
        result = shell.run_cell(cell)
        if args.tokens is not None:
            run.add_tokens(args.tokens)
    from .reports import render

    # stdout, not stderr: a notebook shows it under the cell as plain output
    print(render(run.report(power=True), "console"))
    # hand the run to the notebook for further use: `_footprint_run.j_per_token`
    shell.user_ns["_footprint_run"] = run
    return None if result is None else result.result


def load_ipython_extension(ipython: Any) -> None:
    ipython.register_magic_function(lambda line, cell: footprint_cell(line, cell, ipython), "cell", "footprint")
