"""`@footprint.track` on coroutine functions, generators and async generators measures the awaited or
iterated work, not the creation of the coroutine or generator object."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from footprint.probes import FakeProbe

import footprint
from footprint.run import Run

WATTS = 50.0


def tracker(tmp_path: Path) -> footprint.track:
    return footprint.track(db=str(tmp_path / "d.db"), probes=[FakeProbe(powers_w={"cpu:0": WATTS})], interval=0.05,
                           summary=False)


def check(run: Run, seconds: float, name: str, status: str = "completed") -> None:
    rep = run.report()
    assert rep.name == name and rep.status == status
    assert rep.duration_s is not None and seconds <= rep.duration_s < seconds + 0.15
    assert rep.energy_j["total"] == pytest.approx(WATTS * rep.duration_s, rel=1e-2)


def test_coroutine_function_is_measured_while_awaited(tmp_path: Path):
    seen: list[Run | None] = []

    @tracker(tmp_path)
    async def work(x: int) -> int:
        seen.append(footprint.current_run())
        await asyncio.sleep(0.3)
        return x * 2

    assert asyncio.run(work(21)) == 42
    assert seen[0] is not None and footprint.current_run() is None
    check(seen[0], 0.3, "test_coroutine_function_is_measured_while_awaited.<locals>.work")


def test_failing_coroutine_is_recorded_as_failed(tmp_path: Path):
    seen: list[Run | None] = []

    @tracker(tmp_path)
    async def boom() -> None:
        seen.append(footprint.current_run())
        await asyncio.sleep(0.2)
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        asyncio.run(boom())
    assert seen[0] is not None
    check(seen[0], 0.2, "test_failing_coroutine_is_recorded_as_failed.<locals>.boom", status="failed")


def test_generator_is_measured_while_iterated(tmp_path: Path):
    seen: list[Run | None] = []

    @tracker(tmp_path)
    def items(n: int) -> Iterator[int]:
        seen.append(footprint.current_run())
        for i in range(n):
            time.sleep(0.1)
            yield i
        return n  # noqa: B901 (the return value must survive the wrapping)

    gen = items(3)
    assert seen == []  # nothing runs, nothing is measured, until it is iterated
    out = []
    result = yield_from_all(gen, out)
    assert out == [0, 1, 2] and result == 3
    assert seen[0] is not None
    check(seen[0], 0.3, "test_generator_is_measured_while_iterated.<locals>.items")


def yield_from_all(gen: Iterator[int], out: list[int]) -> int:
    def drain() -> Iterator[int]:
        return (yield from gen)  # type: ignore[misc]

    d = drain()
    while True:
        try:
            out.append(next(d))
        except StopIteration as stop:
            return int(stop.value)


def test_async_generator_is_measured_while_iterated(tmp_path: Path):
    seen: list[Run | None] = []

    @tracker(tmp_path)
    async def stream(n: int) -> AsyncIterator[int]:
        seen.append(footprint.current_run())
        for i in range(n):
            await asyncio.sleep(0.1)
            yield i

    async def consume() -> list[int]:
        return [i async for i in stream(3)]

    assert asyncio.run(consume()) == [0, 1, 2]
    assert seen[0] is not None
    check(seen[0], 0.3, "test_async_generator_is_measured_while_iterated.<locals>.stream")


def test_plain_function_still_measured(tmp_path: Path):
    seen: list[Run | None] = []

    @tracker(tmp_path)
    def work() -> str:
        seen.append(footprint.current_run())
        time.sleep(0.2)
        return "done"

    assert work() == "done"
    assert seen[0] is not None
    check(seen[0], 0.2, "test_plain_function_still_measured.<locals>.work")
