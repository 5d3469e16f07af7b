"""One canned run, recorded under a fake clock into an in-memory store: every renderer is tested on it.

Two measured GPUs, an estimated CPU, measured RAM, and a device of a kind reports do not know ("npu"),
so that renderers are seen to show every kind. Prefill is shorter than the GPUs' update period (flagged
unreliable); decode and a nested step follow. Values are exact: energy = watts x fake seconds.
"""

from __future__ import annotations

from footprint.probes import FakeProbe

from footprint.common.fakeclock import FakeClock
from footprint.core.model import RunReport, load_run
from footprint.core.sampler import Sampler
from footprint.core.store import Store
from footprint.run import Run, finish_run

WATTS = {"gpu:0": 300.0, "gpu:1": 250.0, "cpu:0": 65.0, "ram:0": 6.0, "npu:0": 4.0}


def _start(store: Store, name: str, probes: list[FakeProbe], clock: FakeClock) -> tuple[int, Run]:
    """A started run of the canned machine (host, settings and prices) with these probes, on this clock."""
    rid = store.create_run(name, created_at=clock.now(), host="canned-host", pid=4242,
                           command=["python", "gen.py"], interval_s=0.5, country="FRA", carbon_g_per_kwh=50.0,
                           carbon_source="given explicitly", pue=1.2, price_kwh=0.25, price_hour=4.0,
                           currency="EUR", meta={"os": "Linux-6.1-x86_64", "python": "3.11.7", "cpu_count": 2})
    devices = [d for p in probes for d in p.open()]
    ids = store.add_devices(rid, devices, "canned-host")
    sampler = Sampler(store, rid, probes, ids, interval_s=0.5, clock=clock)
    run = Run(store, rid, name, sampler=sampler, sync_cuda=False)
    store.set_started(rid, run._mark())
    sampler.start()
    return rid, run


def record(store: Store) -> tuple[int, FakeClock]:
    clock = FakeClock()
    probes = [
        FakeProbe({"gpu:0": WATTS["gpu:0"], "gpu:1": WATTS["gpu:1"]}, clock=clock, update_period_s=0.1),
        FakeProbe({"cpu:0": WATTS["cpu:0"]}, measured=False, clock=clock, name="cpu-estimate"),
        FakeProbe({"ram:0": WATTS["ram:0"], "npu:0": WATTS["npu:0"]}, clock=clock),
    ]
    rid, run = _start(store, "canned", probes, clock)
    clock.advance(1.0)
    with run.span("generate"):
        span = run.begin_span("prefill")
        run.add_tokens(64, kind="prompt")
        clock.advance(0.05)  # shorter than the GPUs' 0.1 s update period
        span = run.switch_span(span, "decode")
        run.add_tokens(192, kind="generated")
        clock.advance(3.0)
        run.end_span(span)
    clock.advance(0.95)
    finish_run(run, status="completed", exit_code=0)
    return rid, clock


def canned_report(store: Store | None = None) -> RunReport:
    store = store or Store(":memory:")
    rid, _ = record(store)
    return load_run(store, rid)


NODE_WATTS = {"gpu:0": 300.0, "cpu:0": 65.0, "ram:0": 6.0, "node:0": 500.0}


def record_node(store: Store, node_w: float = NODE_WATTS["node:0"]) -> int:
    """A run with a whole-node meter beside its components: 5 s, a 3 s 'decode' span with 192 tokens.

    Components draw 371 W and the node meter reads `node_w` (500 W: 129 W unattributed, the fans, PSU loss and
    disks that no component counter sees); the node meter updates once a second, as ACPI power meters do."""
    clock = FakeClock()
    probes = [
        FakeProbe({"gpu:0": NODE_WATTS["gpu:0"]}, clock=clock, update_period_s=0.1),
        FakeProbe({"cpu:0": NODE_WATTS["cpu:0"], "ram:0": NODE_WATTS["ram:0"]}, clock=clock),
        FakeProbe({"node:0": node_w}, clock=clock, name="node-meter", update_period_s=1.0),
    ]
    rid, run = _start(store, "node", probes, clock)
    clock.advance(1.0)
    span = run.begin_span("decode")
    run.add_tokens(192, kind="generated")
    clock.advance(3.0)
    run.end_span(span)
    clock.advance(1.0)
    finish_run(run, status="completed", exit_code=0)
    return rid


def node_report(store: Store | None = None, node_w: float = NODE_WATTS["node:0"]) -> RunReport:
    store = store or Store(":memory:")
    return load_run(store, record_node(store, node_w))
