"""A CPU workload that marks two phases and counts 'tokens', so the summary shows spans and J/token.

    footprint run -- python examples/busy_loop.py          # profiled from outside
    python examples/busy_loop.py                           # profiles itself
"""

import time

import footprint


def work(seconds: float) -> int:
    n, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        n += sum(i * i for i in range(1000))
    return n


with footprint.track("busy-loop") as run:
    with run.span("warmup"):
        work(0.5)
    with run.span("steady", tokens=4096):
        work(1.5)
