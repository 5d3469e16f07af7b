"""Hugging Face transformers: per-token energy for `generate` (prefill vs decode) and for `Trainer`.

    from footprint.hf import generate, FootprintCallback

    with footprint.track("chat") as run:
        out, stats = generate(model, **tokenizer(prompts, return_tensors="pt", padding=True), max_new_tokens=64)
    print(stats.generated_tokens, stats.time_to_first_token_s)

    trainer = Trainer(..., callbacks=[FootprintCallback()])   # spans per epoch and step, tokens seen
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from transformers import LogitsProcessor, LogitsProcessorList, TrainerCallback

from footprint.common import clock
from footprint.common.errors import FootprintError

from .run import Run, attach_from_env, current_run, track


@dataclass
class GenerationStats:
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


class _PhaseSplitter(LogitsProcessor):
    """Called once per generation step, after the forward pass: the first call ends prefill."""

    def __init__(self, run: Run, prefill_span: int) -> None:
        self.run = run
        self.prefill_span = prefill_span
        self.decode_span: int | None = None
        self.first_token_at: float | None = None

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if self.decode_span is None:
            self.first_token_at = clock.now()
            self.decode_span = self.run.switch_span(self.prefill_span, "decode")
        return scores


def count_prompt_tokens(input_ids: Any, attention_mask: Any | None) -> int:
    """Real prompt tokens: padding (attention_mask == 0) excluded."""
    if attention_mask is not None:
        return int(attention_mask.sum().item())
    return int(input_ids.numel())


def count_new_tokens(sequences: Any, prompt_len: int, eos_ids: list[int], pad_id: int | None) -> int:
    """Generated tokens in every returned sequence, up to and including its first EOS; what follows
    (padding of sequences that finished early) is not counted."""
    import torch

    new = sequences[:, prompt_len:]
    if new.numel() == 0:
        return 0
    stop = torch.zeros_like(new, dtype=torch.bool)
    for e in eos_ids:
        stop |= new == e
    # position of the first EOS per row, or the row's length if none
    idx = torch.arange(new.shape[1], device=new.device).expand_as(new)
    first = torch.where(stop, idx, torch.full_like(idx, new.shape[1])).min(dim=1).values
    counted = torch.clamp(first + 1, max=new.shape[1])
    if pad_id is not None and pad_id not in eos_ids:
        # a row may also end in padding without an EOS (e.g. a stop string): do not count the pads
        keep = (idx < counted.unsqueeze(1)) & (new != pad_id)
        return int(keep.sum().item())
    return int(counted.sum().item())


def _eos_ids(model: Any, kwargs: dict[str, Any]) -> tuple[list[int], int | None]:
    cfg = kwargs.get("generation_config") or getattr(model, "generation_config", None)
    eos = kwargs.get("eos_token_id", getattr(cfg, "eos_token_id", None))
    pad = kwargs.get("pad_token_id", getattr(cfg, "pad_token_id", None))
    ids = [] if eos is None else ([int(eos)] if isinstance(eos, int) else [int(e) for e in eos])
    return ids, (int(pad) if isinstance(pad, int) else None)


def generate(model: Any, *, run: Run | None = None, name: str = "generate",
             **kwargs: Any) -> tuple[Any, GenerationStats]:
    """model.generate(**kwargs) with a `prefill` span (prompt tokens) and a `decode` span (generated
    tokens) inside a `name` span; returns (generate's output, GenerationStats).

    Uses the active run (footprint.track or footprint run); without one it profiles this call alone.
    """
    active = run or current_run() or attach_from_env()
    if active is None:
        with track(name) as own:
            return generate(model, run=own, name=name, **kwargs)
    input_ids = kwargs.get("input_ids")
    if input_ids is None:
        raise FootprintError("footprint.hf.generate needs input_ids (pass the tokenizer's output as keywords)")
    prompt = count_prompt_tokens(input_ids, kwargs.get("attention_mask"))
    outer = active.begin_span(name)
    start = clock.now()
    prefill = active.begin_span("prefill")
    splitter = _PhaseSplitter(active, prefill)
    user = kwargs.pop("logits_processor", None)
    kwargs["logits_processor"] = LogitsProcessorList([splitter, *(user or [])])
    try:
        out = model.generate(**kwargs)
    finally:
        if splitter.decode_span is None:
            active.end_span(prefill)
        else:
            active.end_span(splitter.decode_span)
        active.end_span(outer)
    end = clock.now()
    sequences = getattr(out, "sequences", out)
    is_enc_dec = bool(getattr(getattr(model, "config", None), "is_encoder_decoder", False))
    eos, pad = _eos_ids(model, kwargs)
    generated = count_new_tokens(sequences, 1 if is_enc_dec else input_ids.shape[1], eos, pad)
    active.add_tokens(prompt, kind="prompt", span=prefill)
    active.add_tokens(generated, kind="generated", span=splitter.decode_span or prefill)
    ttft = splitter.first_token_at - start if splitter.first_token_at is not None else None
    return out, GenerationStats(prompt, generated, ttft, end - start, prefill, splitter.decode_span)


class FootprintCallback(TrainerCallback):
    """Spans `train` > `epoch-N` > `step` with the tokens each step saw.

    Tokens come from `state.num_input_tokens_seen` (set `include_num_input_tokens_seen=True` in
    TrainingArguments), else from `tokens_per_step`. Uses the active run, or starts one for the
    training (its summary printed at the end).
    """

    def __init__(self, run: Run | None = None, *, tokens_per_step: int | None = None, name: str = "train",
                 step_spans: bool = True, summary: bool = True) -> None:
        self.run = run
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
        self._train = self.run.begin_span(self.name)

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        assert self.run is not None
        self._epoch = self.run.begin_span(f"epoch-{int(state.epoch or 0) + 1}")

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        assert self.run is not None
        if self.step_spans:
            self._step = self.run.begin_span("step")

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        assert self.run is not None
        n = self._tokens(state)
        if n is not None:
            self.run.add_tokens(n, kind="train", span=self._step or self._epoch or self._train)
        if self._step is not None:
            self.run.end_span(self._step)
            self._step = None

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.run is not None and self._epoch is not None:
            self.run.end_span(self._epoch)
            self._epoch = None

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.run is None:
            return
        for span in (self._step, self._epoch, self._train):
            if span is not None:
                self.run.end_span(span)
        self._step = self._epoch = self._train = None
        if self._track is not None:
            self._track.__exit__(None, None, None)
            self._track = None
