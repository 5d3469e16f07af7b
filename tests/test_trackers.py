"""Experiment trackers, each with the real library, offline: what is logged is read back from the tracker's own
files and must equal the run's figures exactly."""

from __future__ import annotations

import glob
import importlib.util
import json
import struct
from pathlib import Path
from typing import Any

import pytest
from footprint.probes import FakeProbe

import footprint
from footprint.common.fakeclock import FakeClock
from footprint.run import Run
from footprint.trackers import StepMeter, log_run, run_figures

STEPS = 3
STEP_S = 0.5
TOKENS = 100


def _train(tmp_path: Path, on_step: Any = None) -> Run:
    """A run on a fake clock: 1 s of set-up, then STEPS training steps of STEP_S s and TOKENS tokens each."""
    clock = FakeClock()
    probes = [FakeProbe({"gpu:0": 300.0}, clock=clock, update_period_s=0.1),
              FakeProbe({"cpu:0": 65.0}, measured=False, clock=clock, name="cpu-estimate")]
    with footprint.track("train", probes=probes, clock=clock, db=str(tmp_path / "f.db"), carbon_intensity=50.0,
                         pue=1.2, price_kwh=0.25, summary=False) as run:
        clock.advance(1.0)
        meter = StepMeter(run)
        with run.span("train"):
            for step in range(1, STEPS + 1):
                with run.span("step"):
                    meter.begin()
                    clock.advance(STEP_S)
                    run.add_tokens(TOKENS, kind="train")
                figures = meter.end(TOKENS)
                if on_step is not None:
                    on_step(figures, step)
    return run


def test_run_figures_are_the_read_models(tmp_path: Path):
    run = _train(tmp_path)
    rep = run.report()
    figs = run_figures(rep)
    assert figs["footprint/energy_j"] == rep.energy_j["total"] == 365.0 * (1.0 + STEPS * STEP_S)
    assert figs["footprint/gpu/energy_j"] == rep.energy_j["gpu"]
    assert figs["footprint/kwh"] == rep.kwh
    assert figs["footprint/co2e_g"] == rep.co2e_g
    assert figs["footprint/j_per_token"] == rep.j_per_token
    assert figs["footprint/cost"] == rep.cost.total  # type: ignore[union-attr]
    assert figs["footprint/tokens"] == STEPS * TOKENS
    train = next(s for s in rep.spans if s.name == "train")
    assert figs["footprint/span/train/energy_j"] == train.energy_j["total"]
    assert figs["footprint/span/train/j_per_token"] == train.j_per_token
    steps = [s for s in rep.spans if s.name == "step"]
    assert figs["footprint/span/train/step/energy_j"] == sum(s.energy_j["total"] for s in steps)  # type: ignore[misc]
    assert figs["footprint/span/train/step/tokens"] == STEPS * TOKENS


def test_live_step_figures_equal_the_steps_spans(tmp_path: Path):
    seen: list[dict[str, float]] = []
    run = _train(tmp_path, lambda figs, step: seen.append(figs))
    steps = [s for s in run.report().spans if s.name == "step"]
    assert [f["footprint/step/energy_j"] for f in seen] == [s.energy_j["total"] for s in steps]
    assert [f["footprint/step/j_per_token"] for f in seen] == [s.j_per_token for s in steps]
    assert seen[-1]["footprint/energy_j"] == 365.0 * (1.0 + STEPS * STEP_S)


def test_a_periodic_read_right_after_a_step_edge_does_not_change_the_step_figure(tmp_path: Path):
    """The sampler's thread may read the counters between a span's edge and the meter's look at them (seen
    under load). The step's figure is still its span's energy, not that plus the time up to the later read."""
    clock = FakeClock()
    with footprint.track("train", probes=[FakeProbe({"gpu:0": 300.0}, clock=clock)], clock=clock,
                         db=str(tmp_path / "f.db"), summary=False) as run:
        assert run.sampler is not None
        periodic_read = run.sampler._read  # what the sampler's thread does at each interval
        meter = StepMeter(run)
        figures = []
        for _ in range(2):
            with run.span("step"):
                clock.advance(0.01)
                periodic_read(run.sampler.probes)  # after the span's first edge, before the meter's look
                meter.begin()
                clock.advance(STEP_S)
            clock.advance(0.02)
            periodic_read(run.sampler.probes)  # after its last edge
            figures.append(meter.end(TOKENS))
    steps = [s for s in run.report().spans if s.name == "step"]
    assert [s.energy_j["total"] for s in steps] == pytest.approx([300.0 * (0.01 + STEP_S)] * 2)
    assert [f["footprint/step/energy_j"] for f in figures] == [s.energy_j["total"] for s in steps]


# -- MLflow, on its file store ---------------------------------------------------------------------

@pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason="mlflow not installed ([mlflow] extra)")
def test_mlflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import mlflow

    from footprint.trackers import MLflowWriter

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps its file store behind this switch
    mlflow.set_tracking_uri(f"file:{tmp_path / 'mlruns'}")
    with mlflow.start_run() as active:
        writer = MLflowWriter()
        run = _train(tmp_path, lambda figs, step: writer.log(figs, step))
        logged = log_run(run, writer)  # at the last step logged: MLflow's latest values are the run's figures
    client = mlflow.MlflowClient()
    data = client.get_run(active.info.run_id).data
    assert {k: data.metrics[k] for k in logged} == logged == run_figures(run.report())
    steps = [s for s in run.report().spans if s.name == "step"]
    history = client.get_metric_history(active.info.run_id, "footprint/step/energy_j")
    assert [(m.step, m.value) for m in history] == [(i + 1, s.energy_j["total"]) for i, s in enumerate(steps)]
    assert [a.path for a in client.list_artifacts(active.info.run_id)] == ["footprint-report.html"]


# -- TensorBoard event files -----------------------------------------------------------------------

@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None,
                    reason="tensorboard not installed ([tensorboard] extra)")
def test_tensorboard(tmp_path: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    from footprint.trackers import TensorBoardWriter

    logdir = tmp_path / "tb"
    writer = TensorBoardWriter(str(logdir))
    run = _train(tmp_path, lambda figs, step: writer.log(figs, step))
    logged = log_run(run, writer)
    writer.close()
    acc = EventAccumulator(str(logdir), size_guidance={"tensors": 0})
    acc.Reload()

    def series(tag: str) -> list[tuple[int, float]]:
        return [(e.step, float(tensor_util.make_ndarray(e.tensor_proto))) for e in acc.Tensors(tag)]

    assert {tag: series(tag)[-1] for tag in logged} == {tag: (STEPS, v) for tag, v in logged.items()}
    steps = [s for s in run.report().spans if s.name == "step"]
    assert series("footprint/step/energy_j") == [(i + 1, s.energy_j["total"]) for i, s in enumerate(steps)]
    assert (logdir / "footprint-report.html").read_text().startswith("<!doctype html>")


# -- W&B, offline --------------------------------------------------------------------------------------

def _wandb_records(run_dir: str) -> list[Any]:
    """The records of an offline run's .wandb file (LevelDB-log framing: 32 KiB blocks of CRC, length, type)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(glob.glob(f"{run_dir}/run-*.wandb")[0]).read_bytes()
    assert data[:4] == b":W&B"
    pos, chunks, pending = 7, [], b""
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:
            pos += 32768 - pos % 32768
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 1:
            chunks.append(chunk)
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        elif kind == 4:
            chunks.append(pending + chunk)
        else:
            break
    out = []
    for raw in chunks:
        record = pb.Record()
        record.ParseFromString(raw)
        out.append(record)
    return out


@pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason="wandb not installed ([wandb] extra)")
def test_wandb_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import wandb

    from footprint.trackers import WandbWriter

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    wb = wandb.init(project="footprint-test", dir=str(tmp_path))
    writer = WandbWriter()
    run = _train(tmp_path, lambda figs, step: writer.log(figs, step))
    logged = log_run(run, writer)
    run_dir = wb.dir.rsplit("/files", 1)[0]
    wb.finish()
    wandb.teardown()  # stops W&B's background service, which writes the run's file: all of it is on disk after this

    history: dict[str, list[tuple[int, float]]] = {}
    summary: dict[str, float] = {}
    files: list[str] = []
    records = _wandb_records(run_dir)
    kinds = [r.WhichOneof("record_type") for r in records]
    for r in records:
        kind = r.WhichOneof("record_type")
        if kind == "history":
            for item in r.history.item:
                history.setdefault(item.key or "/".join(item.nested_key), []).append(
                    (r.history.step.num, json.loads(item.value_json)))
        elif kind == "summary":
            for item in r.summary.update:
                summary[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
        elif kind == "files":
            files += [f.path for f in r.files.files]
    assert {k: summary.get(k) for k in logged} == logged == run_figures(run.report()), kinds
    steps = [s for s in run.report().spans if s.name == "step"]
    assert history["footprint/step/energy_j"] == [(i + 1, s.energy_j["total"]) for i, s in enumerate(steps)]
    assert "footprint-report.html" in files


# -- Lightning, a tiny model trained for a few steps on CPU ---------------------------------------------

@pytest.mark.xdist_group("torch-in-process")  # imports lightning, so torch
@pytest.mark.skipif(importlib.util.find_spec("lightning") is None or importlib.util.find_spec("mlflow") is None,
                    reason="lightning or mlflow not installed ([lightning] and [mlflow] extras)")
def test_lightning_callback_logs_into_the_trainers_logger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import lightning.pytorch as pl
    import mlflow
    import torch
    from lightning.pytorch.loggers import MLFlowLogger

    from footprint.lightning import FootprintCallback

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    clock = FakeClock()

    class Tiny(pl.LightningModule):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(4, 1)

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            clock.advance(STEP_S)  # each step takes STEP_S on the fake clock: its energy is exact
            x, y = batch
            return torch.nn.functional.mse_loss(self.layer(x), y)

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = torch.utils.data.TensorDataset(torch.randn(8, 4), torch.randn(8, 1))
    logger = MLFlowLogger(experiment_name="footprint", tracking_uri=f"file:{tmp_path / 'mlruns'}")
    callback = FootprintCallback(tokens_per_step=TOKENS, summary=False, clock=clock,
                                 probes=[FakeProbe({"gpu:0": 300.0}, clock=clock, update_period_s=0.1)],
                                 db=str(tmp_path / "f.db"), carbon_intensity=50.0)
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=logger, callbacks=[callback],
                         enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False,
                         log_every_n_steps=1)
    trainer.fit(Tiny(), torch.utils.data.DataLoader(data, batch_size=2))

    assert callback.run is not None
    rep = callback.run.report()
    assert rep.status == "completed"
    steps = [s for s in rep.spans if s.name == "step"]
    assert len(steps) == 4 and all(s.energy_j["total"] == 300.0 * STEP_S for s in steps)
    assert rep.tokens == 4 * TOKENS
    # 1 epoch of 4 batches is the forecast's expectation; the forecast at 2 steps was the exact final total
    f = rep.forecast
    assert f is not None and (f.steps_done, f.steps_expected) == (4, 4)
    assert f.early is not None and f.early["energy_j"] == pytest.approx(300.0 * 4 * STEP_S, rel=1e-6)
    assert f.error_pct == pytest.approx(0.0, abs=1e-4)
    client = mlflow.MlflowClient(tracking_uri=f"file:{tmp_path / 'mlruns'}")
    metrics = client.get_run(logger.run_id).data.metrics
    assert {k: metrics[k] for k in callback.figures} == callback.figures == run_figures(rep)
    assert callback.figures["footprint/j_per_token"] == rep.j_per_token
    history = client.get_metric_history(logger.run_id, "footprint/step/energy_j")
    assert [(m.step, m.value) for m in history] == [(i + 1, s.energy_j["total"]) for i, s in enumerate(steps)]
    assert "footprint-report.html" in [a.path for a in client.list_artifacts(logger.run_id)]
