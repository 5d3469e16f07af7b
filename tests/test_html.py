"""The HTML report's charts, read back from the SVG it inlines: the power chart covers the whole run (also a
0.6 s one with only two reads per device), span labels overlap nothing, and the headline per-token figure is
the console's."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from footprint.probes import FakeProbe
from footprint.reports import render

from footprint.common.fakeclock import FakeClock
from footprint.core.model import RunReport, load_run
from footprint.core.store import Store
from footprint.run import finish_run, start_run
from tests.canned import canned_report

pytest.importorskip("matplotlib")

SVG = "{http://www.w3.org/2000/svg}"
XLINK = "{http://www.w3.org/1999/xlink}"


def short_run(db: Path, seconds: float = 0.6) -> RunReport:
    """Estimates only, as on a machine without counters: read at the run's edges and at each flush, so a run
    shorter than the interval has two reads per device."""
    clock = FakeClock()
    probes = [FakeProbe({"cpu:0": 40.0}, measured=False, clock=clock, name="cpu-estimate"),
              FakeProbe({"ram:0": 9.5}, measured=False, clock=clock, name="ram-estimate")]
    run = start_run("short", db=str(db), probes=probes, interval=1.0, clock=clock)  # type: ignore[arg-type]
    clock.advance(seconds)
    finish_run(run)
    return load_run(Store(db), run.id)


def spans_run(db: Path) -> RunReport:
    """8 s with nested spans, tiny ones among them (labels that cannot fit inside their band), and tokens."""
    clock = FakeClock()
    probes = [FakeProbe({"gpu:0": 200.0}, clock=clock, update_period_s=0.1),
              FakeProbe({"cpu:0": 40.0}, measured=False, clock=clock, name="cpu-estimate")]
    run = start_run("spans", db=str(db), probes=probes, interval=0.5, clock=clock)  # type: ignore[arg-type]
    with run.span("load-model"):
        clock.advance(0.7)
    with run.span("generate"):
        for i in range(3):
            sid = run.begin_span("prefill")
            run.add_tokens(20, kind="prompt")
            clock.advance(0.02)
            sid = run.switch_span(sid, f"decode-{i}")
            run.add_tokens(60, kind="generated")
            clock.advance(1.5)
            run.end_span(sid)
    with run.span("evaluate"):
        clock.advance(1.2)
    with run.span("save"):
        clock.advance(0.05)
    with run.span("upload-results"):
        clock.advance(0.05)
    clock.advance(0.4)
    finish_run(run)
    return load_run(Store(db), run.id)


def _power_svg(page: str) -> ET.Element:
    """The power chart's axes in the page: the SVG group of the axes labelled 'power (W)'."""
    for chart in re.findall(r"<svg.*?</svg>", page, re.S):
        root = ET.fromstring(chart, parser=ET.XMLParser(target=ET.TreeBuilder(insert_comments=True)))
        for g in root.iter(f"{SVG}g"):
            gid = g.get("id") or ""
            if (gid.startswith("axes_") or gid == "power-axes") and any(
                    c.tag is ET.Comment and (c.text or "").strip() == "power (W)" for c in g.iter()):
                return g
    raise AssertionError("no power chart in the page")


def _number(text: str) -> float:
    return float(text.strip().replace("\u2212", "-"))


def _x_scale(axes: ET.Element) -> tuple[float, float]:
    """(data per pixel, data at pixel 0) on the power chart's x axis, from its tick marks and their labels
    (drawn as paths, each preceded by a comment with its text)."""
    ticks: list[tuple[float, float]] = []
    for g in axes.iter(f"{SVG}g"):
        if not (g.get("id") or "").startswith("xtick_"):
            continue
        use = next(g.iter(f"{SVG}use"))
        label = next((c.text for c in g.iter() if c.tag is ET.Comment and c.text and c.text.strip()), None)
        if label is not None:
            ticks.append((float(use.get("x") or "nan"), _number(label)))
    assert len(ticks) >= 2, "the power chart has no labelled x ticks"
    (p0, v0), (p1, v1) = ticks[0], ticks[-1]
    per_px = (v1 - v0) / (p1 - p0)
    return per_px, v0 - p0 * per_px


def _path_xs(d: str) -> list[float]:
    nums = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", d)]
    return nums[0::2]


def _covered(page: str) -> tuple[tuple[float, float], dict[str, tuple[float, float]]]:
    """The power chart's x-axis range and each device curve's x range, in data units (seconds)."""
    axes = _power_svg(page)
    per_px, at0 = _x_scale(axes)
    patch = next(g for g in axes if (g.get("id") or "").startswith("patch_"))  # the axes' background
    frame = _path_xs(next(patch.iter(f"{SVG}path")).get("d") or "")
    axis = (min(frame) * per_px + at0, max(frame) * per_px + at0)
    curves: dict[str, tuple[float, float]] = {}
    for g in axes.iter(f"{SVG}g"):
        gid = g.get("id") or ""
        if gid.startswith("power-") and gid != "power-axes":
            xs = _path_xs(next(g.iter(f"{SVG}path")).get("d") or "")
            curves[gid[len("power-"):]] = (min(xs) * per_px + at0, max(xs) * per_px + at0)
    return axis, curves


def _check_whole_run(run: RunReport) -> None:
    page = render(run, "html")
    axis, curves = _covered(page)
    duration = run.duration_s
    assert duration is not None
    tol = duration * 0.01
    assert axis[0] == pytest.approx(0.0, abs=tol) and axis[1] == pytest.approx(duration, abs=tol), axis
    assert set(curves) == set(run.power), "a device has no curve"
    for key, (lo, hi) in curves.items():
        assert lo == pytest.approx(0.0, abs=tol), f"{key} starts at {lo} s, not at the run's start"
        assert hi == pytest.approx(duration, abs=tol), f"{key} ends at {hi} s of {duration} s"


def test_short_estimate_only_run_is_drawn_whole(tmp_path: Path):
    run = short_run(tmp_path / "s.db")
    assert all(len(series) == 1 for series in run.power.values())  # two reads per device: one interval
    _check_whole_run(run)
    from footprint.reports.html import power_steps

    steps = power_steps(run)
    assert steps["cpu:0"] == ([0.0, pytest.approx(0.6)], [40.0, 40.0])  # one flat step over the whole run


def test_canned_and_longer_runs_are_drawn_whole(tmp_path: Path):
    _check_whole_run(canned_report())
    _check_whole_run(spans_run(tmp_path / "l.db"))


def test_first_interval_is_drawn(tmp_path: Path):
    from footprint.reports.html import power_steps

    rep = canned_report()
    for key, (xs, ys) in power_steps(rep).items():
        dev = next(d for d in rep.devices if f"{d.kind}:{d.index}" == key)
        assert xs[0] == pytest.approx(0.0, abs=1e-6) and xs[-1] == pytest.approx(5.0, abs=1e-6)
        assert len(xs) == len(ys) == len(rep.power[key]) + 1
        # mean power between reads, weighted by time, gives back the device's energy
        energy = sum((b - a) * p for a, b, p in zip(xs, xs[1:], ys, strict=False))
        assert energy == pytest.approx(dev.energy_j, rel=1e-6)


def _overlap(a: object, b: object) -> bool:
    from matplotlib.transforms import BboxBase

    assert isinstance(a, BboxBase) and isinstance(b, BboxBase)
    return bool(a.x0 < b.x1 - 0.5 and b.x0 < a.x1 - 0.5 and a.y0 < b.y1 - 0.5 and b.y0 < a.y1 - 0.5)


@pytest.mark.parametrize("which", ["canned", "spans"])
def test_span_labels_overlap_no_tick_band_or_other_label(tmp_path: Path, which: str):
    import matplotlib.pyplot as plt
    from footprint.reports.html import timeline_figure

    run = canned_report() if which == "canned" else spans_run(tmp_path / "l.db")
    fig = timeline_figure(run)
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    lanes = next(a for a in fig.axes if a.get_gid() == "span-lanes")
    power = next(a for a in fig.axes if a.get_gid() == "power-axes")
    labels = {t.get_gid(): t.get_window_extent(r) for t in lanes.texts if (t.get_gid() or "").startswith("span-")}
    bands = {c.get_gid(): c.get_window_extent(r) for c in lanes.collections}
    ticks = [t.get_window_extent(r) for t in [*power.get_xticklabels(), *power.get_yticklabels()] if t.get_text()]
    assert len(bands) == len(run.spans)
    names = {f"span-label-{s.id}": s.name for s in run.spans}
    assert {names[g] for g in labels} >= {"generate", "decode", "prefill"} & {s.name for s in run.spans}
    plot = power.get_window_extent(r)
    for gid, box in labels.items():
        own = gid.replace("label", "band")
        assert not _overlap(box, plot), f"{gid} lies over the power chart"
        for t in ticks:
            assert not _overlap(box, t), f"{gid} overlaps a tick label"
        for other, b in bands.items():
            if other != own:
                assert not _overlap(box, b), f"{gid} overlaps {other}"
        for other, b in labels.items():
            if other != gid:
                assert not _overlap(box, b), f"{gid} overlaps {other}"
    plt.close(fig)


def test_every_span_is_labelled_when_there_is_room(tmp_path: Path):
    from footprint.reports.html import MAX_LANES, layout_spans

    run = spans_run(tmp_path / "l.db")
    boxes = layout_spans(run, run.duration_s or 0.0, 1.0, 700.0, lambda s: 7.0 * len(s))
    assert all(b.label_x is not None for b in boxes), [b.span.name for b in boxes if b.label_x is None]
    rows = {b.span.id: b.row for b in boxes}
    assert max(rows.values()) < MAX_LANES
    for b in boxes:  # a child lies below its parent
        if b.span.parent is not None:
            assert rows[b.span.id] > rows[b.span.parent]


def _kpi(page: str, label: str) -> str | None:
    m = re.search(rf"<span class=kpi>{re.escape(label)}<b>(.*?)</b>", page)
    return m.group(1) if m else None


def test_headline_per_token_figure_is_the_consoles(tmp_path: Path):
    rep = canned_report()
    console = render(rep, "console")
    m = re.search(r"per generated token: (\S+) J", console)
    assert m is not None
    page = render(rep, "html")
    assert _kpi(page, "J per generated token") == m.group(1)
    assert rep.j_per_generated_token is not None and float(m.group(1)) == pytest.approx(
        rep.j_per_generated_token, rel=1e-3)
    assert _kpi(page, "J/token") is None  # no second headline figure over all tokens to mistake for it


def test_headline_without_generated_tokens_is_per_token(tmp_path: Path):
    clock = FakeClock()
    run = start_run("plain", db=str(tmp_path / "p.db"), probes=[FakeProbe({"gpu:0": 100.0}, clock=clock)],
                    interval=0.5, clock=clock)  # type: ignore[arg-type]
    with run.span("step", tokens=400):
        clock.advance(2.0)
    finish_run(run)
    rep = load_run(Store(tmp_path / "p.db"), run.id)
    m = re.search(r"· (\S+) J/token", render(rep, "console"))
    assert m is not None and "per generated token" not in render(rep, "console")
    assert _kpi(render(rep, "html"), "J/token") == m.group(1) == "0.5"
