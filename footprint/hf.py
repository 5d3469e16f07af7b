"""Hugging Face transformers: per-token energy for `generate` (prefill vs decode) and for `Trainer`.

    from footprint.hf import generate, FootprintCallback

    with footprint.track("chat") as run:
        out, stats = generate(model, **tokenizer(prompts, return_tensors="pt", padding=True), max_new_tokens=64)
    print(stats.generated_tokens, stats.time_to_first_token_s)

    trainer = Trainer(..., callbacks=[FootprintCallback()])   # spans per epoch and step, tokens seen
    FootprintCallback(writers=[MLflowWriter()])                # and each step's energy in MLflow (footprint.trackers)
    Trainer(..., callbacks=[PowerLimitCallback(objective="energy")])  # tune the GPU power limit while training
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

try:
    from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteriaList, TrainerCallback
except ImportError as exc:  # one line naming the extra, not a bare ModuleNotFoundError
    raise ModuleNotFoundError(f"footprint.hf needs {exc.name or 'transformers'}: pip install 'footprint-profiler[hf]'",
                              name=exc.name) from None

from footprint.common import clock
from footprint.common.errors import FootprintError

from . import cuda
from .powerlimit import PowerLimitTuner
from .run import Run, attach_from_env, current_run, end_training, track
from .trackers import StepMeter, Writer, log_run


@dataclass
class GenerationStats:
    """What one `generate` call processed and produced.

    `prompt_tokens`: prompt tokens the model ran through prefill, padding excluded (the attention mask
    given, or the one transformers infers from the pad id). A decoder-only model expands its batch to
    max(num_beams, num_return_sequences) rows before prefill, so each prompt counts once per row;
    an encoder-decoder encodes each prompt once. `generated_tokens`: tokens appended to sequences that
    were still unfinished at each step (the EOS that ends a sequence included, the padding after it
    not), summed over the returned rows; with beam search, the tokens of the returned sequences.
    """

    prompt_tokens: int
    generated_tokens: int
    time_to_first_token_s: float | None
    duration_s: float
    prefill_span: int
    decode_span: int | None

    @property
    def tokens_per_s(self) -> float | None:
        """Generated tokens per second of decoding (after the first token)."""
        if self.time_to_first_token_s is None:
            return None
        decode_s = self.duration_s - self.time_to_first_token_s
        return self.generated_tokens / decode_s if decode_s > 0 else None


def _synced_now(run: Run) -> float:
    """The time once the GPU work queued so far has completed (when the run synchronises CUDA)."""
    if run.sync_cuda:
        with contextlib.suppress(Exception):
            cuda.synchronize()
    return clock.now()


class _PhaseSplitter(LogitsProcessor):
    """Called once per generation step, after the forward pass: the first call ends prefill."""

    def __init__(self, run: Run, prefill_span: int) -> None:
        self.run = run
        self.prefill_span = prefill_span
        self.decode_span: int | None = None
        self.first_token_at: float | None = None

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if self.decode_span is None:
            # the first token exists once prefill's kernels have run, not when they were launched
            self.first_token_at = _synced_now(self.run)
            self.decode_span = self.run.switch_span(self.prefill_span, "decode")
        return scores


class _StepCounter:
    """Tokens each row really produced, counted step by step from what generation did: at every step,
    each row still unfinished gains one token; a row stops gaining once a stopping criterion
    (EOS, stop string, the user's own) has finished it. Pad ids a model happens to emit count like any
    other token, and no guess about eos/pad ids is needed afterwards.

    `valid` is False when this generation mode does not extend every row by one token per call of the
    stopping criteria (beam search, assisted decoding): the returned sequences are counted instead."""

    def __init__(self) -> None:
        self.per_row: Any = None
        self.alive: Any = None
        self.first_len: int | None = None
        self.last_len: int | None = None
        self.valid = True
        self.config: Any = None

    def step(self, input_ids: Any, is_done: Any) -> None:
        import torch

        if not self.valid:
            return
        rows, length = int(input_ids.shape[0]), int(input_ids.shape[1])
        if self.per_row is None:
            self.per_row = torch.zeros(rows, dtype=torch.long, device=input_ids.device)
            self.alive = torch.ones(rows, dtype=torch.bool, device=input_ids.device)
            self.first_len = length
        elif self.last_len is None or length != self.last_len + 1 or rows != self.per_row.shape[0]:
            self.valid = False
            return
        self.last_len = length
        self.per_row += self.alive  # stays on the device: no synchronisation per step
        self.alive &= ~is_done

    def total(self, sequences: Any) -> int | None:
        """Tokens counted, each row capped at its returned length (a deferred stop check may run a step
        that generate then undoes); None if nothing was counted."""
        if not self.valid or self.per_row is None or self.first_len is None:
            return None
        if sequences.shape[0] != self.per_row.shape[0]:
            return None
        returned = int(sequences.shape[1]) - (self.first_len - 1)
        return int(self.per_row.clamp(max=max(0, returned)).sum().item())


class _CountingCriteria(StoppingCriteriaList):
    """generate's own stopping criteria, reporting each step's outcome to a _StepCounter."""

    def __init__(self, criteria: Any, counter: _StepCounter) -> None:
        super().__init__(criteria)
        self.counter = counter

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        is_done = super().__call__(input_ids, scores, **kwargs)
        self.counter.step(input_ids, is_done)
        return is_done


@contextlib.contextmanager
def _counting(model: Any, counter: _StepCounter) -> Iterator[None]:
    """Have `model.generate` hand its stopping criteria and its resolved generation config to `counter`.
    Where the model does not build them itself (a wrapper delegating to another model), nothing is
    installed and the returned sequences are counted instead."""
    original = getattr(model, "_get_stopping_criteria", None)
    if original is None or "_get_stopping_criteria" in vars(model):
        yield
        return

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        criteria = original(*args, **kwargs)
        config = kwargs.get("generation_config", args[0] if args else None)
        counter.config = config
        if int(getattr(config, "num_beams", 1) or 1) > 1:
            counter.valid = False  # beam search calls the criteria on candidate beams, not on the rows
            return criteria
        return _CountingCriteria(criteria, counter)

    model._get_stopping_criteria = wrapped
    try:
        yield
    finally:
        with contextlib.suppress(AttributeError):
            del model._get_stopping_criteria


def _ids(value: Any) -> list[int]:
    if value is None:
        return []
    if hasattr(value, "tolist"):
        value = value.tolist()
    return [int(value)] if isinstance(value, int) else [int(v) for v in value]


def infer_attention_mask(input_ids: Any, pad_id: int | None, eos_ids: list[int]) -> Any:
    """The mask transformers' generate infers when none is given: padding masked out if the pad id
    occurs in the prompt and is not an EOS id; else every position counts."""
    import torch

    if pad_id is None or pad_id in eos_ids or not bool((input_ids == pad_id).any()):
        return torch.ones_like(input_ids)
    return (input_ids != pad_id).long()


def count_prompt_tokens(input_ids: Any, attention_mask: Any | None) -> int:
    """Real prompt tokens: padding (attention_mask == 0) excluded."""
    if attention_mask is not None:
        return int(attention_mask.sum().item())
    return int(input_ids.numel())


def count_new_tokens(sequences: Any, prompt_len: int, eos_ids: list[int], pad_id: int | None) -> int:
    """Generated tokens in returned sequences, for when generation could not be followed step by step:
    each row up to and including its first EOS; a row without EOS up to its last token that is not
    padding (it may have been stopped by a stop string and padded). Pad ids before a row's end count."""
    import torch

    new = sequences[:, prompt_len:]
    if new.numel() == 0:
        return 0
    width = new.shape[1]
    idx = torch.arange(width, device=new.device).expand_as(new)
    stop = torch.zeros_like(new, dtype=torch.bool)
    for e in eos_ids:
        stop |= new == e
    # position of the first EOS per row, or the row's length if none
    first = torch.where(stop, idx, torch.full_like(idx, width)).min(dim=1).values
    counted = torch.clamp(first + 1, max=width)
    if pad_id is not None and pad_id not in eos_ids:
        # rows without an EOS: trailing padding is not theirs
        real = torch.where(new != pad_id, idx + 1, torch.zeros_like(idx)).max(dim=1).values
        counted = torch.where(first < width, counted, real)
    return int(counted.sum().item())


def _configured(model: Any, kwargs: dict[str, Any], resolved: Any) -> tuple[list[int], int | None, int]:
    """(eos ids, pad id, rows per prompt) of this call: from the generation config generate resolved, or
    as generate resolves it (keywords, then the user's generation_config, then the model's)."""
    if resolved is not None and hasattr(resolved, "_eos_token_tensor"):
        resolved_pad = _ids(getattr(resolved, "_pad_token_tensor", None))
        expand = max(int(resolved.num_beams or 1), int(resolved.num_return_sequences or 1))
        return _ids(resolved._eos_token_tensor), (resolved_pad[0] if resolved_pad else None), expand

    def pick(key: str) -> Any:
        if kwargs.get(key) is not None:
            return kwargs[key]
        for cfg in (kwargs.get("generation_config"), getattr(model, "generation_config", None)):
            if getattr(cfg, key, None) is not None:
                return getattr(cfg, key)
        return None

    eos = _ids(pick("eos_token_id"))
    pad_ids = _ids(pick("pad_token_id"))
    pad = pad_ids[0] if pad_ids else (eos[0] if eos else None)
    expand = max(int(pick("num_beams") or 1), int(pick("num_return_sequences") or 1))
    return eos, pad, expand


def generate(model: Any, inputs: Any | None = None, *, run: Run | None = None, name: str = "generate",
             **kwargs: Any) -> tuple[Any, GenerationStats]:
    """model.generate(inputs, **kwargs) with a `prefill` span (prompt tokens) and a `decode` span
    (generated tokens) inside a `name` span; returns (generate's output, GenerationStats).

    The prompt goes as `input_ids=` (a tokenizer's output as keywords), or positionally / as `inputs=`
    (a tensor of token ids, or the tokenizer's output itself). Uses the active run (footprint.track or
    footprint run); without one it profiles this call alone.
    """
    active = run or current_run() or attach_from_env()
    if active is None:
        with track(name) as own:
            return generate(model, inputs, run=own, name=name, **kwargs)
    if isinstance(inputs, Mapping):  # generate(model, tokenizer(...)): a BatchEncoding as keywords
        kwargs = {**inputs, **kwargs}
        inputs = None
    call_args = () if inputs is None else (inputs,)
    input_ids = inputs if inputs is not None else kwargs.get("input_ids")
    if input_ids is None:
        raise FootprintError("footprint.hf.generate needs the prompt's token ids: input_ids=, inputs= or the "
                             "first argument after the model (e.g. the tokenizer's output)")
    is_enc_dec = bool(getattr(getattr(model, "config", None), "is_encoder_decoder", False))
    outer = active.begin_span(name)
    prefill = active.begin_span("prefill")
    start = clock.now()
    splitter = _PhaseSplitter(active, prefill)
    counter = _StepCounter()
    user = kwargs.pop("logits_processor", None)
    kwargs["logits_processor"] = LogitsProcessorList([splitter, *(user or [])])
    try:
        with _counting(model, counter):
            out = model.generate(*call_args, **kwargs)
    finally:
        if splitter.decode_span is None:
            active.end_span(prefill)
        else:
            active.end_span(splitter.decode_span)
        active.end_span(outer)
    end = clock.now()
    sequences = getattr(out, "sequences", out)
    eos, pad, expand = _configured(model, kwargs, counter.config)
    mask = kwargs.get("attention_mask")
    if mask is None:
        mask = infer_attention_mask(input_ids, pad, eos)
    prompt = count_prompt_tokens(input_ids, mask) * (1 if is_enc_dec else expand)
    generated = counter.total(sequences)
    if generated is None:
        start_len = 1 if is_enc_dec else input_ids.shape[1]
        if is_enc_dec and kwargs.get("decoder_input_ids") is not None:
            start_len = kwargs["decoder_input_ids"].shape[1]
        generated = count_new_tokens(sequences, start_len, eos, pad)
    active.add_tokens(prompt, kind="prompt", span=prefill)
    active.add_tokens(generated, kind="generated", span=splitter.decode_span or prefill)
    ttft = splitter.first_token_at - start if splitter.first_token_at is not None else None
    return out, GenerationStats(prompt, generated, ttft, end - start, prefill, splitter.decode_span)


class FootprintCallback(TrainerCallback):
    """Spans `train` > `epoch-N` > `step` with the tokens each step saw.

    Tokens come from `state.num_input_tokens_seen` (set `include_num_input_tokens_seen="non_padding"` in
    TrainingArguments: `True` counts padding too), else from `tokens_per_step`. Uses the active run, or
    starts one for the training (its summary printed at the end).

    `writers` (footprint.trackers: MLflowWriter, TensorBoardWriter, WandbWriter) get each step's energy live, at
    the Trainer's global step, and the run's figures and HTML report at the end of training.
    """

    def __init__(self, run: Run | None = None, *, tokens_per_step: int | None = None, name: str = "train",
                 step_spans: bool = True, summary: bool = True, writers: Sequence[Writer] = ()) -> None:
        self.run = run
        self.writers = list(writers)
        self._meter: StepMeter | None = None
        self.tokens_per_step = tokens_per_step
        self.name = name
        self.step_spans = step_spans
        self.summary = summary
        self._track: track | None = None
        self._train: int | None = None
        self._epoch: int | None = None
        self._step: int | None = None
        self._seen = 0

    def _tokens(self, state: Any) -> int | None:
        seen = int(getattr(state, "num_input_tokens_seen", 0) or 0)
        if seen > 0:
            n, self._seen = seen - self._seen, seen
            return n
        return self.tokens_per_step

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.run is None:
            self.run = current_run() or attach_from_env()
        if self.run is None:
            self._track = track(self.name, summary=self.summary)
            self.run = self._track.__enter__()
        self._seen = int(getattr(state, "num_input_tokens_seen", 0) or 0)
        self._expect(args, state)
        self._train = self.run.begin_span(self.name)
        self._meter = StepMeter(self.run) if self.writers else None

    def _expect(self, args: Any, state: Any) -> None:
        """The Trainer knows how many optimizer steps it will take (state.max_steps, from max_steps or the
        epochs): the forecast's expectation, unless the run has one already (run.expect() wins)."""
        assert self.run is not None
        steps = getattr(state, "max_steps", 0)
        epochs = getattr(args, "num_train_epochs", 0)
        if self.step_spans and isinstance(steps, int) and steps > 0:
            self.run.expect(steps=steps, replace=False)
        elif not self.step_spans and isinstance(epochs, (int, float)) and epochs >= 1 and float(epochs).is_integer() \
                and getattr(args, "max_steps", -1) <= 0:  # max_steps given: the epochs may not all run
            self.run.expect(epochs=int(epochs), replace=False)  # no step spans: epochs are the steps

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        assert self.run is not None
        self._epoch = self.run.begin_span(f"epoch-{int(state.epoch or 0) + 1}")

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        assert self.run is not None
        if self.step_spans:
            self._step = self.run.begin_span("step")
            if self._meter is not None:
                self._meter.begin()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        assert self.run is not None
        n = self._tokens(state)
        if n is not None:
            self.run.add_tokens(n, kind="train", span=self._step or self._epoch or self._train)
        if self._step is not None:
            self.run.end_span(self._step)
            self._step = None
            figures = self._meter.end(n) if self._meter is not None else {}
            for w in self.writers if figures else ():
                w.log(figures, int(state.global_step))

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.run is not None and self._epoch is not None:
            self.run.end_span(self._epoch)
            self._epoch = None

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.run is None:
            return
        spans, tracked = (self._step, self._epoch, self._train), self._track
        self._step = self._epoch = self._train = self._track = None
        end_training(self.run, spans, tracked)
        if self.writers:
            log_run(self.run, *self.writers, step=int(state.global_step))


class PowerLimitCallback(TrainerCallback):
    """Tune the GPU power limit during `Trainer.train` with footprint.PowerLimitTuner (keyword options as its own:
    objective=, eta=, max_slowdown=, warmup_steps=, profile_steps=, step_w=, profile=...), or with `tuner`. The
    original limits are back at the end of training."""

    def __init__(self, tuner: PowerLimitTuner | None = None, **options: Any) -> None:
        self.tuner = tuner if tuner is not None else PowerLimitTuner(**options)

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.tuner.on_step_begin()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.tuner.on_step_end()

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.tuner.on_epoch_end()

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.tuner.close()
