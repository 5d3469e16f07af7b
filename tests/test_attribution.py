"""The attribution model (footprint.core.attribution): exact shares and conservation at any concurrency."""

from __future__ import annotations

import random

import pytest

from footprint.core.attribution import Phase, attribute, phases


def steady(watts: float, t0: float, t1: float, step: float) -> list[tuple[float, float]]:
    n = round((t1 - t0) / step)
    return [(t0 + i * step, watts * i * step) for i in range(n + 1)]


def test_one_request_alone_gets_the_energy_of_its_window_and_the_rest_is_idle() -> None:
    shares, idle = attribute(steady(100.0, 0, 10, 1.0), [phases(2.0, 4.5, prompt_tokens=10, completion_tokens=5)])
    assert shares == pytest.approx([250.0])
    assert idle == pytest.approx(750.0)


def test_equal_work_at_the_same_time_splits_evenly() -> None:
    work = [phases(1.0, 3.0, prompt_tokens=4, completion_tokens=6)] * 2
    shares, idle = attribute(steady(60.0, 0, 4, 0.5), work)
    assert shares == pytest.approx([60.0, 60.0])
    assert idle == pytest.approx(120.0)


def test_shares_follow_work_density_in_prefill_and_decode() -> None:
    # A: prefill [0, 1) 100 prompt tokens, decode [1, 5) 40 tokens; B: one phase [0, 5) of 50 tokens (no TTFT)
    # densities: A 100/s then 10/s, B 10/s. 200 W, reads every 0.25 s.
    a = phases(0.0, 5.0, first_token_at=1.0, prompt_tokens=100, completion_tokens=40)
    b = phases(0.0, 5.0, prompt_tokens=20, completion_tokens=30)
    shares, idle = attribute(steady(200.0, 0, 5, 0.25), [a, b])
    first_second = 200.0  # shared 100:10
    rest = 800.0  # shared 10:10
    assert shares[0] == pytest.approx(first_second * 100 / 110 + rest / 2)
    assert shares[1] == pytest.approx(first_second * 10 / 110 + rest / 2)
    assert idle == pytest.approx(0.0, abs=1e-9)


def test_a_request_between_reads_takes_its_part_of_the_line() -> None:
    # reads 2 s apart; the request covers 0.5 s of the second interval, where power is 300 W
    series = [(0.0, 0.0), (2.0, 200.0), (4.0, 800.0)]
    shares, idle = attribute(series, [phases(2.5, 3.0, prompt_tokens=1)])
    assert shares == pytest.approx([150.0])
    assert idle == pytest.approx(650.0)


def test_requests_without_tokens_still_hold_energy_and_instants_hold_none() -> None:
    shares, idle = attribute(steady(10.0, 0, 4, 1.0), [phases(0.0, 2.0), phases(1.0, 1.0, prompt_tokens=9)])
    assert shares == pytest.approx([20.0, 0.0])
    assert idle == pytest.approx(20.0)


def test_work_outside_the_reads_is_ignored_and_no_reads_means_nothing() -> None:
    shares, idle = attribute(steady(10.0, 0, 2, 1.0), [[Phase(-5.0, -1.0, 3.0)], [Phase(1.0, 9.0, 8.0)]])
    assert shares == pytest.approx([0.0, 10.0])
    assert idle == pytest.approx(10.0)
    assert attribute([(0.0, 0.0)], [phases(0, 1, prompt_tokens=1)]) == ([0.0], 0.0)


@pytest.mark.parametrize("concurrency", [1, 4, 16, 64])
def test_conservation_for_any_concurrency(concurrency: int) -> None:
    rng = random.Random(concurrency)
    series = [(0.0, 0.0)]
    t = 0.0
    while t < 30.0:  # irregular reads, varying power, some reads at one instant
        t += rng.choice([0.0, 0.05, 0.1, 0.5, 1.3])
        series.append((t, series[-1][1] + rng.uniform(0, 400) * (t - series[-1][0]) + rng.choice([0, 0, 1.5])))
    work = []
    for _ in range(concurrency * 5):
        start = rng.uniform(-2, 31)
        end = start + rng.uniform(0, 4)
        ttft = rng.choice([None, start + (end - start) * rng.random()])
        work.append(phases(start, end, first_token_at=ttft, prompt_tokens=rng.randint(0, 500),
                           completion_tokens=rng.randint(0, 200)))
    shares, idle = attribute(series, work)
    assert sum(shares) + idle == pytest.approx(series[-1][1] - series[0][1], rel=1e-12)
    assert min(shares) >= 0.0 and idle >= -1e-9


def test_provisional_figures_of_requests_at_once_are_each_the_figure_it_gets_alone() -> None:
    """One counter read serves the requests that ended before it (footprint.serving): their provisional figures
    are worked out in one attribution per device, which must give each the figure a call for it alone gives,
    and a request alone on the device the exact energy of its window."""
    from types import SimpleNamespace

    from footprint.probes.base import Device

    from footprint.core.serving import provisional_energies
    from footprint.core.store import Store
    from footprint.wire import Usage

    store = Store(":memory:")
    run = store.create_run("serve", created_at=0.0, host="h", pid=1)
    ids = store.add_devices(run, [Device(kind="gpu", index=0, name="g", source="nvml", measured=True),
                                  Device(kind="cpu", index=0, name="c", source="rapl", measured=True)], "h")
    # the GPU: 300 W for 5 s then 100 W, read every 0.25 s; the CPU: 50 W read every 0.4 s
    gpu = [(i * 0.25, 300.0 * min(i * 0.25, 5.0) + 100.0 * max(i * 0.25 - 5.0, 0.0)) for i in range(41)]
    cpu = [(i * 0.4, 50.0 * i * 0.4) for i in range(26)]
    store.write_batch(run, [(ids["gpu:0"], t, e, None, 0) for t, e in gpu] +
                      [(ids["cpu:0"], t, e, None, 0) for t, e in cpu], [], 10.0)

    def req(start: float, end: float | None, *, first: float | None = None, prompt: int | None = None,
            completion: int | None = None, so_far: int = 0) -> SimpleNamespace:
        return SimpleNamespace(started_at=start, ended_at=end, first_token_at=first,
                               usage=Usage(prompt, completion, "reported") if end is not None else None,
                               tokens_so_far=so_far)

    rng = random.Random(7)
    finished = []
    for _ in range(12):
        a = rng.uniform(0.0, 8.0)
        b = a + rng.uniform(0.1, 1.5)
        finished.append(req(a, b, first=a + (b - a) * rng.random() if rng.random() < 0.5 else None,
                            prompt=rng.randint(0, 40), completion=rng.randint(0, 60)))
    running = [req(7.0, None, first=7.5, so_far=9), req(8.5, None)]  # one streaming, one not yet answered
    ending = finished[-5:]  # the requests one read serves
    together = provisional_energies(store, run, ending, finished, running, now=9.5)
    alone = [provisional_energies(store, run, [r], finished, running, now=9.5)[0] for r in ending]
    assert together == pytest.approx(alone, rel=1e-12)
    assert all(e > 0 for e in together)
    lone = req(9.6, 9.9, prompt=3, completion=4)  # nothing else ran then: 100 W on the GPU, 50 W on the CPU
    assert provisional_energies(store, run, [lone], [lone], [], now=9.9) == pytest.approx([150.0 * 0.3])
