"""Lightning: a `Callback` like the Hugging Face Trainer one, logging into the Trainer's own loggers.

    from footprint.lightning import FootprintCallback

    trainer = Trainer(..., logger=MLFlowLogger(...), callbacks=[FootprintCallback(tokens_per_step=4096)])

Spans `train` > `epoch-N` > `step`, with the tokens each step saw. Each step's energy (and J/token, and the
run's energy, kWh and CO2e so far) goes to every logger of the Trainer (MLflow, TensorBoard, W&B, CSV...) at
the Trainer's global step; at the end of `fit`, the run's figures (`footprint.trackers.run_figures`) and the
HTML report as an artifact (MLflow, W&B; copied into the log folder of the others). Works with `lightning`
and with `pytorch_lightning`. `PowerLimitCallback(objective="energy")` tunes the GPU power limit during `fit`
(footprint.PowerLimitTuner).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from typing import Any

from footprint.common.errors import FootprintError

try:
    from lightning.pytorch.callbacks import Callback
except ImportError:  # the older package name
    try:
        from pytorch_lightning.callbacks import Callback  # type: ignore[assignment]
    except ImportError as exc:  # one line naming the extra, not a bare ModuleNotFoundError
        raise ModuleNotFoundError("footprint.lightning needs lightning: pip install 'footprint-profiler[lightning]'",
                                  name=exc.name) from None

from .powerlimit import PowerLimitTuner
from .run import Run, attach_from_env, current_run, end_training, track
from .trackers import StepMeter, Writer, html_report, run_figures


class LoggerWriter:
    """A Lightning logger as a footprint `Writer`: metrics through its own `log_metrics`; the report through
    MLflow's or W&B's artifact call, else copied into the logger's folder."""

    def __init__(self, logger: Any) -> None:
        self.logger = logger

    def log(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.logger.log_metrics(metrics, step=step)

    def artifact(self, path: str) -> None:
        kind = type(self.logger).__name__
        if kind == "MLFlowLogger":
            self.logger.experiment.log_artifact(self.logger.run_id, path)
        elif kind == "WandbLogger":
            self.logger.experiment.save(path, base_path=os.path.dirname(os.path.abspath(path)), policy="now")
        else:
            folder = getattr(self.logger, "log_dir", None)
            if folder:
                os.makedirs(folder, exist_ok=True)
                shutil.copyfile(path, os.path.join(folder, os.path.basename(path)))

    def close(self) -> None:
        self.logger.save()


class FootprintCallback(Callback):
    """Profile `Trainer.fit`. Uses the active run (footprint.track, footprint run) or starts one for the fit,
    with `track_options` (db=, pue=, price_kwh=, probes=...), its summary printed at the end.

    `tokens_per_step`: tokens of one training step, or a function of the batch returning them. `writers`:
    footprint writers to log to besides the Trainer's loggers (`loggers=False` to leave those alone).
    Inside `footprint run` the per-step figures are not available live (the sampler is in the parent);
    the run's figures are logged at the end as usual.
    """

    def __init__(self, run: Run | None = None, *, tokens_per_step: int | Callable[[Any], int] | None = None,
                 name: str = "train", step_spans: bool = True, summary: bool = True,
                 writers: Sequence[Writer] = (), loggers: bool = True, html: bool = True,
                 **track_options: Any) -> None:
        self.run = run
        self.tokens_per_step = tokens_per_step
        self.name = name
        self.step_spans = step_spans
        self.summary = summary
        self.writers = list(writers)
        self.loggers = loggers
        self.html = html
        self.track_options = track_options
        self.figures: dict[str, float] = {}  # what was logged at the end of fit
        self._track: track | None = None
        self._meter: StepMeter | None = None
        self._train: int | None = None
        self._epoch: int | None = None
        self._step: int | None = None

    def _writers(self, trainer: Any) -> list[Writer]:
        out = list(self.writers)
        if self.loggers:
            out += [LoggerWriter(lg) for lg in getattr(trainer, "loggers", None) or []]
        return out

    def _tokens(self, batch: Any) -> int | None:
        if callable(self.tokens_per_step):
            return int(self.tokens_per_step(batch))
        return self.tokens_per_step

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        if self.run is None:
            self.run = current_run() or attach_from_env()
        if self.run is None:
            self._track = track(self.name, summary=self.summary, **self.track_options)
            self.run = self._track.__enter__()
        self._meter = StepMeter(self.run)
        self._train = self.run.begin_span(self.name)

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        """Lightning knows by now how many batches it will train on (its step spans): the forecast's
        expectation, unless the run has one already (run.expect() wins)."""
        if self.run is not None and self.step_spans:
            batches = expected_batches(trainer)
            if batches:
                self.run.expect(steps=batches, replace=False)

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        assert self.run is not None
        self._epoch = self.run.begin_span(f"epoch-{int(trainer.current_epoch) + 1}")

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        assert self.run is not None and self._meter is not None
        if self.step_spans:
            self._step = self.run.begin_span("step")
            self._meter.begin()

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        assert self.run is not None and self._meter is not None
        n = self._tokens(batch)
        if n is not None:
            self.run.add_tokens(n, kind="train", span=self._step or self._epoch or self._train)
        if self._step is None:
            return
        self.run.end_span(self._step)
        self._step = None
        figures = self._meter.end(n)
        if figures:
            for w in self._writers(trainer):
                w.log(figures, int(trainer.global_step))

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if self.run is not None and self._epoch is not None:
            self.run.end_span(self._epoch)
            self._epoch = None

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        self._finish(trainer)

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        if self._track is not None:  # the run ends as failed (or interrupted), not "running"
            spans, tracked = (self._step, self._epoch, self._train), self._track
            self._step = self._epoch = self._train = self._track = None
            end_training(self.run, spans, tracked, exception)

    def _finish(self, trainer: Any) -> None:
        if self.run is None:
            return
        spans, tracked = (self._step, self._epoch, self._train), self._track
        self._step = self._epoch = self._train = self._track = None
        end_training(self.run, spans, tracked)
        writers = self._writers(trainer)
        if not writers:
            return
        try:
            report = self.run.report(power=self.html)
        except FootprintError:
            return
        self.figures = run_figures(report)
        path = html_report(report) if self.html else None
        for w in writers:
            w.log(self.figures, int(trainer.global_step))
            if path is not None:
                w.artifact(path)
            if isinstance(w, LoggerWriter):
                w.close()


class PowerLimitCallback(Callback):
    """Tune the GPU power limit during `Trainer.fit` with footprint.PowerLimitTuner (keyword options as its own:
    objective=, eta=, max_slowdown=, warmup_steps=, profile_steps=, step_w=, profile=...), or with `tuner`. The
    original limits are back at the end of fit, or when it fails."""

    def __init__(self, tuner: PowerLimitTuner | None = None, **options: Any) -> None:
        self.tuner = tuner if tuner is not None else PowerLimitTuner(**options)

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self.tuner.on_step_begin()

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.tuner.on_step_end()

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self.tuner.on_epoch_end()

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        self.tuner.close()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self.tuner.close()


def expected_batches(trainer: Any) -> int | None:
    """Training batches the Trainer will run: max_epochs × batches per epoch, or max_steps × the gradient
    accumulation, whichever ends training first; None when neither is finite."""
    per_epoch, epochs = getattr(trainer, "num_training_batches", None), getattr(trainer, "max_epochs", None)
    max_steps, accumulate = getattr(trainer, "max_steps", -1), getattr(trainer, "accumulate_grad_batches", 1) or 1
    found = []
    if isinstance(per_epoch, int) and per_epoch > 0 and isinstance(epochs, int) and epochs > 0:
        found.append(per_epoch * epochs)
    if isinstance(max_steps, int) and max_steps > 0 and isinstance(accumulate, int):
        found.append(max_steps * accumulate)
    return min(found) if found else None
