"""Experiment trackers: footprint's figures in MLflow, TensorBoard and Weights & Biases.

What to log is computed here once, from the read model; each tracker is a thin writer of flat
`{"footprint/...": number}` dicts and of one artifact (the HTML report).

    from footprint.trackers import MLflowWriter, log_run

    with footprint.track("finetune") as run:
        ...
    log_run(run, MLflowWriter())          # energy, kWh, CO2e, J/token, per span; report.html as an artifact

Live per step: `StepMeter` gives each step's energy from the sampler's latest readings (no DB read), and the
callbacks (`footprint.hf.FootprintCallback(writers=...)`, `footprint.lightning.FootprintCallback`) log it at
every step. Every tracker library is imported only when its writer is made: extras `[mlflow]`,
`[tensorboard]`, `[wandb]`.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from typing import Any, Protocol

from footprint.common import units
from footprint.common.errors import FootprintError
from footprint.core.model import RunReport, components, kinds_of

from .run import Run

PREFIX = "footprint"
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. /]")


def _key(*parts: str) -> str:
    """A metric name every tracker accepts (MLflow allows letters, digits, _ - . space and /)."""
    return "/".join(_UNSAFE.sub("_", p) for p in (PREFIX, *parts))


def _put(out: dict[str, float], key: str, value: float | int | None) -> None:
    if value is not None:
        out[key] = float(value)


def run_figures(report: RunReport) -> dict[str, float]:
    """The run's figures as flat metrics, each exactly the read model's value; unknown figures are left out.

    footprint/energy_j (and footprint/cpu/energy_j, gpu, ... per component), kwh, co2e_g, duration_s, tokens,
    j_per_token, cost, pue, carbon_intensity_g_per_kwh; then per span path (train/epoch-1/step): footprint/span/<path>/
    energy_j, kwh, co2e_g, duration_s, tokens and j_per_token. Spans that share a path (every `step`) are
    added up, and their J/token is their energy over their tokens; J/token is left out where a span was
    shorter than a counter's update period (as the summary does)."""
    out: dict[str, float] = {}
    _put(out, _key("energy_j"), report.energy_j.get("total"))
    for kind in components(report.energy_j):
        _put(out, _key(kind, "energy_j"), report.energy_j.get(kind))
    _put(out, _key("kwh"), report.kwh)
    _put(out, _key("co2e_g"), report.co2e_g)
    _put(out, _key("duration_s"), report.duration_s)
    _put(out, _key("tokens"), report.tokens)
    _put(out, _key("j_per_token"), report.j_per_token)
    _put(out, _key("cost"), report.cost.total if report.cost is not None else None)
    _put(out, _key("pue"), report.pue)
    _put(out, _key("carbon_intensity_g_per_kwh"), report.carbon_intensity_g_per_kwh)

    from .reports.csv import span_path

    by_id = {s.id: s for s in report.spans}
    groups: dict[str, list[Any]] = {}
    for s in report.spans:
        groups.setdefault(span_path(s, by_id), []).append(s)
    for path, spans in groups.items():
        if len(spans) == 1:
            s = spans[0]
            energy, co2, duration, tokens = s.energy_j.get("total"), s.co2e_g, s.duration_s, s.tokens
            jpt = s.j_per_token if s.reliable else None
        else:
            energy = _total([s.energy_j.get("total") for s in spans])
            co2 = _total([s.co2e_g for s in spans])
            duration = _total([s.duration_s for s in spans])
            tokens_known = [s.tokens for s in spans if s.tokens is not None]
            tokens = sum(tokens_known) if tokens_known else None
            jpt = units.per_token(energy, tokens) if all(s.reliable for s in spans) else None
        _put(out, _key("span", path, "energy_j"), energy)
        _put(out, _key("span", path, "kwh"), units.j_to_kwh(energy) if energy is not None else None)
        _put(out, _key("span", path, "co2e_g"), co2)
        _put(out, _key("span", path, "duration_s"), duration)
        _put(out, _key("span", path, "tokens"), tokens)
        _put(out, _key("span", path, "j_per_token"), jpt)
    return out


def _total(values: list[float | None]) -> float | None:
    """The sum, or None if any part is unknown (a partial sum would pass for the whole)."""
    if not values or any(v is None for v in values):
        return None
    return sum(v for v in values if v is not None)


class StepMeter:
    """Each step's energy, live, from the owning sampler's latest readings (the span edges' reads): no DB
    read per step. Inside `footprint run` (an attached run, whose sampler is in the parent) there are no live
    readings, and `end` returns {}: the run-end figures are logged as usual."""

    def __init__(self, run: Run) -> None:
        self.run = run
        row = run.store.run_row(run.id) if run.sampler is not None else None
        self.intensity: float | None = row["carbon_g_per_kwh"] if row is not None else None
        self.pue: float = (row["pue"] or 1.0) if row is not None else 1.0
        self._begin: float | None = None

    def energy_now(self) -> float | None:
        """The run's energy so far at the latest span edge (not a periodic read the sampler may have taken
        since: the step's figure must equal its span's), added up per kind as the read model does. The
        callbacks read it right after their own edge, from the thread that marked it."""
        sampler = self.run.sampler
        if sampler is None:
            return None
        per_kind: dict[str, float] = {}
        for first, edge in sampler.edge_snapshot().values():
            kind = edge.device.kind
            per_kind[kind] = per_kind.get(kind, 0.0) + (edge.energy_j - first)
        known = [per_kind[k] for k in kinds_of(per_kind) if k in per_kind]
        return sum(known) if known else None

    def begin(self) -> None:
        """Call right after the step's span began (its edge was just read)."""
        self._begin = self.energy_now()

    def end(self, tokens: int | None = None) -> dict[str, float]:
        """Call right after the step's span ended: the step's energy (and J/token), the run's so far."""
        now, begin, self._begin = self.energy_now(), self._begin, None
        if now is None or begin is None:
            return {}
        step = now - begin
        out = {_key("step", "energy_j"): step, _key("energy_j"): now, _key("kwh"): units.j_to_kwh(now)}
        if self.intensity is not None:
            out[_key("co2e_g")] = units.co2e_g(now, self.intensity, self.pue)
        if tokens:
            out[_key("step", "j_per_token")] = step / tokens
        return out


class Writer(Protocol):
    """What a tracker needs to do: log flat metrics at a step (None: the run's end) and keep a file."""

    def log(self, metrics: dict[str, float], step: int | None = None) -> None: ...

    def artifact(self, path: str) -> None: ...

    def close(self) -> None: ...


def _need(module: str, extra: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise FootprintError(f"logging to {extra} needs {module}: pip install 'footprint-profiler[{extra}]'") \
            from None


class MLflowWriter:
    """Logs to an MLflow run: `run_id`, else the active run, else a run it starts (and ends at `close`)."""

    def __init__(self, run_id: str | None = None) -> None:
        mlflow = _need("mlflow", "mlflow")
        self._own = False
        if run_id is None:
            active = mlflow.active_run()
            if active is None:
                active = mlflow.start_run()
                self._own = True
            run_id = active.info.run_id
        self.run_id = run_id
        self.client = mlflow.MlflowClient()
        self._last_step = 0

    def log(self, metrics: dict[str, float], step: int | None = None) -> None:
        import time

        from mlflow.entities import Metric

        # the run's figures (step None) go at the last step logged, so MLflow shows them as the latest values
        step = self._last_step if step is None else step
        self._last_step = step
        ms = int(time.time() * 1000)
        batch = [Metric(k, v, ms, step) for k, v in metrics.items()]
        for i in range(0, len(batch), 1000):  # MLflow takes at most 1000 metrics per batch
            self.client.log_batch(self.run_id, metrics=batch[i:i + 1000])

    def artifact(self, path: str) -> None:
        self.client.log_artifact(self.run_id, path)

    def close(self) -> None:
        if self._own:
            import mlflow

            mlflow.end_run()
            self._own = False


class TensorBoardWriter:
    """Writes TensorBoard event files into `log_dir`, as 64-bit scalars (TensorBoard's own float32 summaries
    would round the figures). TensorBoard keeps no files: the report is copied into `log_dir`."""

    def __init__(self, log_dir: str) -> None:
        _need("tensorboard", "tensorboard")
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self.log_dir = log_dir
        self._writer = EventFileWriter(log_dir)
        self._last_step = 0

    def log(self, metrics: dict[str, float], step: int | None = None) -> None:
        import time

        import numpy as np
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.plugins.scalar import metadata
        from tensorboard.util import tensor_util

        step = self._last_step if step is None else step
        self._last_step = step
        event = event_pb2.Event(wall_time=time.time(), step=step)
        for tag, value in metrics.items():
            meta = summary_pb2.SummaryMetadata(
                plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=metadata.PLUGIN_NAME),
                data_class=summary_pb2.DataClass.DATA_CLASS_SCALAR)
            event.summary.value.add(tag=tag, tensor=tensor_util.make_tensor_proto(np.float64(value)), metadata=meta)
        self._writer.add_event(event)
        self._writer.flush()

    def artifact(self, path: str) -> None:
        import shutil

        target = os.path.join(self.log_dir, os.path.basename(path))
        if os.path.abspath(path) != os.path.abspath(target):
            shutil.copyfile(path, target)

    def close(self) -> None:
        self._writer.close()


class WandbWriter:
    """Logs to a W&B run (`run`, else `wandb.run`): per-step figures into its history, the run's figures into
    its summary, the report as a run file. Works offline (WANDB_MODE=offline) like online."""

    def __init__(self, run: Any | None = None) -> None:
        wandb = _need("wandb", "wandb")
        self.run = run if run is not None else wandb.run
        if self.run is None:
            raise FootprintError("no W&B run: call wandb.init() first, or pass WandbWriter(run)")

    def log(self, metrics: dict[str, float], step: int | None = None) -> None:
        if step is None:
            self.run.summary.update(metrics)
        else:
            self.run.log(metrics, step=step)

    def artifact(self, path: str) -> None:
        self.run.save(path, base_path=os.path.dirname(os.path.abspath(path)), policy="now")

    def close(self) -> None:
        return None


def html_report(report: RunReport, directory: str | None = None, name: str = "footprint-report.html") -> str | None:
    """Write the run's HTML report into `directory` (a temporary one by default); None, with a one-line note,
    where matplotlib (the [html] extra) is missing."""
    from .reports import render

    try:
        text = render(report, "html")
    except FootprintError as exc:
        print(f"footprint: no HTML report for the tracker: {exc}", file=sys.stderr)
        return None
    path = os.path.join(directory or tempfile.mkdtemp(prefix="footprint-"), name)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return path


def log_run(run: Run | RunReport, *writers: Writer, step: int | None = None, html: bool = True) -> dict[str, float]:
    """Log a finished run's figures (`run_figures`) to every writer, at `step` (None: each writer's last step,
    and W&B's summary), and its HTML report as an artifact; returns what was logged."""
    report = run.report(power=html) if isinstance(run, Run) else run
    figures = run_figures(report)
    path = html_report(report) if html and writers else None
    for w in writers:
        w.log(figures, step)
        if path is not None:
            w.artifact(path)
    return figures
