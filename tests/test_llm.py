"""LLM integration: CUDA sync at spans, transformers generate (prefill/decode) and Trainer, the notebook
magic, and the examples (a random tiny GPT-2 for speed; SmolLM2 where installed)."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from footprint.probes import FakeProbe

import footprint
from footprint import cuda
from tests.conftest import ROOT, lazy_module, requires

pytestmark = [requires("torch", "transformers"),
              # one worker imports torch for the tests that run it in-process, not every worker
              pytest.mark.xdist_group("torch-in-process")]
torch = lazy_module("torch")
sys.path.insert(0, str(ROOT / "examples"))
from models import load_tiny_gpt2  # noqa: E402

PY = sys.executable


def tracked(tmp_path: Path, name: str = "t", watts: float = 100.0, **kw: Any) -> footprint.track:
    return footprint.track(name, db=str(tmp_path / "llm.db"), probes=[FakeProbe(powers_w={"gpu:0": watts})],
                           interval=0.05, summary=False, **kw)


# -- CUDA synchronisation -------------------------------------------------------------------

class FakeCuda:
    def __init__(self, initialised: bool, reserved: list[int]) -> None:
        self.initialised, self.reserved, self.synced = initialised, reserved, []

    def is_available(self) -> bool:
        return True

    def is_initialized(self) -> bool:
        return self.initialised

    def device_count(self) -> int:
        return len(self.reserved)

    def memory_reserved(self, i: int) -> int:
        return self.reserved[i]

    def current_device(self) -> int:
        return 0

    def synchronize(self, i: int) -> None:
        self.synced.append(i)


def test_spans_synchronise_only_the_cuda_devices_in_use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    fake = FakeCuda(True, [1 << 20, 0, 4096])
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=fake))
    with tracked(tmp_path) as run:
        with run.span("step"):
            pass
    # start of run, span start, span end, end of run: devices 0 and 2 each time, never the unused 1
    assert fake.synced == [0, 2] * 4


def test_no_sync_when_cuda_untouched_or_switched_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    fake = FakeCuda(False, [0, 0])
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=fake))
    with tracked(tmp_path) as run, run.span("s"):
        pass
    assert fake.synced == []
    fake.initialised = True
    fake.reserved = [10]
    with tracked(tmp_path, sync_cuda=False) as run, run.span("s"):
        pass
    monkeypatch.setenv("FOOTPRINT_SYNC_CUDA", "0")
    with tracked(tmp_path) as run, run.span("s"):
        pass
    assert fake.synced == []


def test_cpu_torch_is_left_alone(tmp_path: Path):
    x = torch.ones(8)
    with tracked(tmp_path) as run, run.span("cpu-work"):
        (x * 2).sum()
    assert cuda.synchronize() == []
    assert not torch.cuda.is_initialized()  # we never create a CUDA context


# -- generate ---------------------------------------------------------------------------------

class ForceEos:
    """Row 0 emits EOS at its 3rd new token; row 1 never does (EOS masked out)."""

    def __init__(self, prompt_len: int, eos: int) -> None:
        self.prompt_len, self.eos = prompt_len, eos

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        step = input_ids.shape[1] - self.prompt_len
        scores = scores.clone()
        scores[1, self.eos] = -float("inf")
        if step == 2:
            scores[0, :] = -float("inf")
            scores[0, self.eos] = 0.0
        return scores


def test_generate_splits_prefill_and_decode_and_counts_real_tokens(tmp_path: Path):
    from footprint.hf import generate

    model, tok, _ = load_tiny_gpt2()
    inputs = tok(["hi", "a longer prompt"])  # left-padded: 2 + 15 real tokens
    with tracked(tmp_path, watts=200.0) as run, torch.inference_mode():
        out, stats = generate(model, **inputs, max_new_tokens=6, do_sample=False, pad_token_id=tok.pad_token_id,
                              eos_token_id=tok.eos_token_id,
                              logits_processor=[ForceEos(inputs["input_ids"].shape[1], tok.eos_token_id)])
    assert stats.prompt_tokens == 2 + 15
    assert stats.generated_tokens == 3 + 6  # row 0 stopped at EOS (counted), the padding after it is not
    assert 0 < stats.time_to_first_token_s < stats.duration_s
    assert out.shape[1] == inputs["input_ids"].shape[1] + 6
    rep = run.report()
    spans = {s.name: s for s in rep.spans}
    assert spans["prefill"].parent == spans["generate"].id and spans["decode"].parent == spans["generate"].id
    assert spans["prefill"].tokens == 17 and spans["decode"].tokens == 9 and spans["generate"].tokens == 26
    assert rep.tokens_by_kind == {"generated": 9, "prompt": 17}
    assert spans["decode"].energy_j["gpu"] == pytest.approx(200.0 * spans["decode"].duration_s, rel=1e-3)
    assert spans["prefill"].ended_at == spans["decode"].started_at  # one read ends prefill and starts decode
    assert spans["prefill"].energy_j["gpu"] + spans["decode"].energy_j["gpu"] == pytest.approx(
        200.0 * (spans["decode"].ended_at - spans["prefill"].started_at), rel=1e-3)
    assert rep.j_per_generated_token == pytest.approx(rep.energy_j["total"] / 9)


def test_generate_without_a_run_profiles_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]):
    from footprint.hf import generate

    monkeypatch.setenv("FOOTPRINT_DB", str(tmp_path / "own.db"))
    model, tok, _ = load_tiny_gpt2()
    _, stats = generate(model, **tok(["abc"]), max_new_tokens=3, do_sample=False, pad_token_id=tok.pad_token_id)
    assert stats.generated_tokens == 3
    assert "'generate'" in capsys.readouterr().err


def test_count_new_tokens_with_pad_distinct_from_eos():
    from footprint.hf import count_new_tokens

    seqs = torch.tensor([[9, 9, 5, 6, 2, 0, 0], [9, 9, 5, 6, 7, 8, 3]])
    assert count_new_tokens(seqs, 2, eos_ids=[2], pad_id=0) == 3 + 5
    assert count_new_tokens(seqs, 2, eos_ids=[3, 2], pad_id=0) == 3 + 5
    assert count_new_tokens(seqs[:, :2], 2, eos_ids=[2], pad_id=0) == 0


# -- generate: token counts against what generation really did -----------------------------------

class Plan:
    """Forces tokens per row and step: plan[row][step] is the token that row emits at that step; past its
    plan (or where None) a row may emit anything but `ban` (EOS), so it never finishes early. The true
    count is known by construction: a row whose plan ends in EOS produced len(plan) tokens, any other
    row max_new_tokens."""

    def __init__(self, prompt_len: int, plan: list[list[int | None]], ban: list[int]) -> None:
        self.prompt_len, self.plan, self.ban = prompt_len, plan, ban

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        step = input_ids.shape[1] - self.prompt_len
        scores = scores.clone()
        for row in range(scores.shape[0]):
            todo = self.plan[row % len(self.plan)]
            if step < len(todo) and todo[step] is not None:
                scores[row, :] = -float("inf")
                scores[row, todo[step]] = 0.0
            else:
                scores[row, self.ban] = -float("inf")
        return scores

    def truth(self, eos: int, max_new: int, rows: int | None = None) -> int:
        plans = [self.plan[r % len(self.plan)] for r in range(rows or len(self.plan))]
        return sum(len(p) if p and p[-1] == eos else max_new for p in plans)


PAD, EOS = 258, 257  # the tiny GPT-2's ids (examples/models.py): pad is not eos


def load_tiny_t5() -> Any:
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    cfg = T5Config(vocab_size=64, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=2,
                   pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    return T5ForConditionalGeneration(cfg).eval()


def test_generate_counts_generated_pad_ids_before_eos(tmp_path: Path):
    from footprint.hf import generate

    model, tok, _ = load_tiny_gpt2()
    inputs = tok(["hi", "a longer prompt"])
    plan = Plan(inputs["input_ids"].shape[1], [[PAD, 65, PAD, EOS], [PAD, PAD, 66]], ban=[EOS])
    with tracked(tmp_path) as run, torch.inference_mode():
        out, stats = generate(model, **inputs, max_new_tokens=6, do_sample=False, pad_token_id=PAD,
                              eos_token_id=EOS, logits_processor=[plan])
    new = out[:, inputs["input_ids"].shape[1]:]
    assert new[0].tolist() == [PAD, 65, PAD, EOS, PAD, PAD] and new[1, :3].tolist() == [PAD, PAD, 66]
    assert plan.truth(EOS, 6) == 4 + 6
    assert stats.generated_tokens == 4 + 6
    assert run.report().tokens_by_kind == {"generated": 10, "prompt": 17}


def test_generate_counts_an_encoder_decoder(tmp_path: Path):
    from footprint.hf import generate

    model = load_tiny_t5()
    ids = torch.tensor([[0, 0, 5, 6, 7], [8, 9, 10, 11, 12]])  # row 0 padded (pad id 0) on the left
    mask = (ids != 0).long()
    plan = Plan(1, [[0, 0, 1], [0, 3]], ban=[1])  # row 0: pad, pad, EOS; row 1: never EOS
    with tracked(tmp_path) as run, torch.inference_mode():
        out, stats = generate(model, input_ids=ids, attention_mask=mask, max_new_tokens=5, do_sample=False,
                              logits_processor=[plan])
    assert out[0, 1:4].tolist() == [0, 0, 1]  # decoder start token, then the plan
    assert stats.prompt_tokens == 3 + 5  # encoded once each
    assert stats.generated_tokens == plan.truth(1, 5) == 3 + 5
    rep = run.report()
    assert rep.tokens_by_kind == {"generated": 8, "prompt": 8}
    assert rep.j_per_generated_token == pytest.approx(rep.energy_j["total"] / 8)


def test_generate_with_a_generation_config_lacking_eos(tmp_path: Path):
    from transformers import GenerationConfig

    from footprint.hf import generate

    model, tok, _ = load_tiny_gpt2()
    inputs = tok(["hi", "a longer prompt"])
    plan = Plan(inputs["input_ids"].shape[1], [[70, 71, EOS], [72]], ban=[EOS])
    with tracked(tmp_path), torch.inference_mode():
        out, stats = generate(model, **inputs, generation_config=GenerationConfig(max_new_tokens=6, do_sample=False),
                              logits_processor=[plan])
    new = out[:, inputs["input_ids"].shape[1]:]
    assert new[0].tolist() == [70, 71, EOS, PAD, PAD, PAD]  # transformers stopped row 0 at the model's EOS
    assert stats.generated_tokens == plan.truth(EOS, 6) == 3 + 6


def test_generate_without_attention_mask_counts_no_padding(tmp_path: Path):
    from footprint.hf import generate

    model, tok, _ = load_tiny_gpt2()
    ids = tok(["hi", "a longer prompt"])["input_ids"]  # 13 pads on row 0
    with tracked(tmp_path) as run, torch.inference_mode():
        _, stats = generate(model, input_ids=ids, max_new_tokens=3, do_sample=False, pad_token_id=PAD)
    assert int((ids == PAD).sum()) == 13 and ids.numel() == 30
    assert stats.prompt_tokens == 2 + 15
    assert run.report().tokens_by_kind["prompt"] == 17


def test_generate_takes_the_prompt_positionally_or_as_inputs(tmp_path: Path):
    from footprint.hf import generate

    model, tok, _ = load_tiny_gpt2()
    enc = tok(["hi", "a longer prompt"])
    plan = Plan(enc["input_ids"].shape[1], [[EOS], [80]], ban=[EOS])
    with tracked(tmp_path), torch.inference_mode():
        _, a = generate(model, enc["input_ids"], attention_mask=enc["attention_mask"], max_new_tokens=4,
                        do_sample=False, pad_token_id=PAD, logits_processor=[plan])
        _, b = generate(model, inputs=enc["input_ids"], max_new_tokens=4, do_sample=False, pad_token_id=PAD,
                        logits_processor=[plan])
        _, c = generate(model, enc, max_new_tokens=4, do_sample=False, pad_token_id=PAD, logits_processor=[plan])
    for stats in (a, b, c):
        assert (stats.prompt_tokens, stats.generated_tokens) == (17, 1 + 4)


def test_generate_counts_every_returned_sequence_and_prefill_per_row(tmp_path: Path):
    """num_return_sequences / num_beams: a decoder-only model runs prefill once per expanded row."""
    from footprint.hf import generate

    model, tok, _ = load_tiny_gpt2()
    enc = tok(["hi", "a longer prompt"])
    # rows after expansion: prompt 0, prompt 0, prompt 1, prompt 1
    plan = Plan(enc["input_ids"].shape[1], [[PAD, EOS], [90, PAD, 91, EOS], [PAD], [92]], ban=[EOS])
    with tracked(tmp_path), torch.inference_mode():
        out, stats = generate(model, **enc, max_new_tokens=5, do_sample=True, num_return_sequences=2,
                              pad_token_id=PAD, logits_processor=[plan])
    assert out.shape[0] == 4
    assert stats.prompt_tokens == 2 * 17
    assert stats.generated_tokens == plan.truth(EOS, 5) == 2 + 4 + 5 + 5
    never_eos = Plan(enc["input_ids"].shape[1], [[]], ban=[EOS])
    with tracked(tmp_path), torch.inference_mode():
        out, stats = generate(model, **enc, max_new_tokens=5, do_sample=False, num_beams=3, num_return_sequences=2,
                              pad_token_id=PAD, logits_processor=[never_eos])
    assert out.shape == (4, enc["input_ids"].shape[1] + 5)
    assert stats.prompt_tokens == 3 * 17  # 3 beams per prompt in prefill
    assert stats.generated_tokens == 4 * 5  # the returned sequences' tokens


def test_count_new_tokens_keeps_pad_ids_before_the_end():
    from footprint.hf import count_new_tokens

    seqs = torch.tensor([[9, 0, 5, 0, 2, 0, 0], [9, 0, 0, 6, 7, 0, 0]])
    # row 0: 0, 5, 0, EOS; row 1 (no EOS, stopped and padded): 0, 6, 7
    assert count_new_tokens(seqs, 1, eos_ids=[2], pad_id=0) == 4 + 4


# -- time to first token, and prefill shorter than a counter's update period ----------------------

def test_time_to_first_token_waits_for_the_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """On a GPU, prefill's kernels are still running when generate hands the logits on; the first token
    exists once the synchronisation returns. A stand-in for footprint.cuda makes prefill's kernels take
    0.3 s to complete after their launch."""
    import time

    from footprint.hf import generate

    monkeypatch.delenv("FOOTPRINT_SYNC_CUDA", raising=False)
    queued = [0.0]
    forwards = []

    def synchronize() -> list[int]:
        time.sleep(queued[0])
        queued[0] = 0.0
        return [0]

    def launched(*_: Any) -> None:
        forwards.append(1)
        if len(forwards) == 1:  # prefill
            queued[0] = 0.3

    monkeypatch.setattr(cuda, "synchronize", synchronize)
    model, tok, _ = load_tiny_gpt2()
    model.register_forward_hook(launched)
    with tracked(tmp_path) as run, torch.inference_mode():
        _, stats = generate(model, **tok(["hi"]), max_new_tokens=3, do_sample=False, pad_token_id=PAD)
    spans = {s.name: s for s in run.report().spans}
    assert stats.time_to_first_token_s is not None and stats.time_to_first_token_s >= 0.3
    assert stats.time_to_first_token_s == pytest.approx(spans["prefill"].duration_s, abs=0.02)
    assert len(forwards) == 3


class SlowGpuCounter(FakeProbe):
    """A measured GPU whose counter updates only every second (NVML's power reading: about every 0.1 s; a
    longer period here keeps a prefill on a loaded CPU well inside it)."""

    def open(self) -> list[Any]:
        from footprint.probes.base import Device

        super().open()
        self.devices = [Device(kind="gpu", index=0, name="slow", source="fake", measured=True, update_period_s=1.0)]
        return self.devices


class Sleep:
    def __init__(self, s: float) -> None:
        self.s = s

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import time

        time.sleep(self.s)
        return scores


def test_short_prefill_is_unreliable_and_reports_say_so(tmp_path: Path):
    from footprint.reports import render

    from footprint.hf import generate

    model, tok, _ = load_tiny_gpt2()
    with footprint.track("short", db=str(tmp_path / "p.db"), probes=[SlowGpuCounter(powers_w={"gpu:0": 80.0})],
                         interval=0.05, summary=False) as run, torch.inference_mode():
        _, stats = generate(model, **tok(["hi"]), max_new_tokens=5, do_sample=False, pad_token_id=PAD,
                            logits_processor=[Sleep(0.25)])  # decode: 5 steps of 0.25 s
    rep = run.report()
    spans = {s.name: s for s in rep.spans}
    assert spans["prefill"].duration_s < 1.0 and spans["prefill"].reliable is False
    assert spans["decode"].duration_s > 1.25 and spans["decode"].reliable is True
    text = render(rep, "console")
    prefill_line = next(line for line in text.splitlines() if "prefill" in line)
    decode_line = next(line for line in text.splitlines() if "decode" in line)
    assert "unreliable" in prefill_line and "J/token" in prefill_line and f"{spans['prefill'].j_per_token:.4g}" \
        not in prefill_line
    assert f"{spans['decode'].j_per_token:.4g} J/token" in decode_line and "unreliable" not in decode_line
    assert stats.generated_tokens == 5


def test_gpu_token_bench_gives_no_figure_for_an_unreliable_span(tmp_path: Path):
    spec = importlib.util.spec_from_file_location("gpu_tokens", ROOT / "bench" / "gpu_tokens.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    model, tok, _ = load_tiny_gpt2()
    row = bench.measure("tiny", model, tok(["hi"]), 3, PAD, str(tmp_path / "b.db"),
                        probes=[SlowGpuCounter(powers_w={"gpu:0": 80.0})])
    assert row["prefill_reliable"] is False and row["prefill_gpu_j"] is None
    assert row["decode_reliable"] is False and row["decode_gpu_j_per_token"] is None  # 3 fast steps: < 1 s
    res = {"device": "cpu", "host": "h", "date": "d", "command": "c", "prompt_len": 2, "new_tokens": 3,
           "versions": {"footprint": "0", "torch": "0", "transformers": "0"}, "rows": [row]}
    table_row = next(line for line in bench.render(res).splitlines() if line.startswith("| tiny |"))
    assert table_row.count("unreliable") == 2  # decode J/token and prefill J


# -- Trainer ----------------------------------------------------------------------------------

def test_trainer_callback_records_epochs_steps_and_tokens(tmp_path: Path):
    from transformers import Trainer, TrainingArguments

    from footprint.hf import FootprintCallback

    model, _, _ = load_tiny_gpt2()
    rows = [{"input_ids": torch.arange(8) + i, "labels": torch.arange(8) + i} for i in range(4)]
    args = TrainingArguments(output_dir=str(tmp_path / "out"), num_train_epochs=2, per_device_train_batch_size=2,
                             report_to=[], save_strategy="no", logging_strategy="no", use_cpu=True,
                             include_num_input_tokens_seen=True, disable_tqdm=True)
    with tracked(tmp_path, watts=50.0) as run:
        Trainer(model=model, args=args, train_dataset=rows, callbacks=[FootprintCallback(run)]).train()
    rep = run.report()
    names = [s.name for s in rep.spans]
    assert names == ["train", "epoch-1", "step", "step", "epoch-2", "step", "step"]
    by_id = {s.id: s for s in rep.spans}
    steps = [s for s in rep.spans if s.name == "step"]
    assert all(s.tokens == 16 for s in steps)  # 2 sequences x 8 tokens per step
    assert [by_id[s.parent].name for s in steps] == ["epoch-1", "epoch-1", "epoch-2", "epoch-2"]
    assert rep.tokens == 64 and rep.tokens_by_kind == {"train": 64}
    assert rep.j_per_token == pytest.approx(rep.energy_j["total"] / 64)
    # the Trainer's max_steps (2 epochs of 2 steps) is the forecast's expectation, and all of them ran
    f = rep.forecast
    assert f is not None and (f.span, f.steps_done, f.steps_expected) == ("step", 4, 4)
    assert f.early is not None and f.early["steps_done"] == 2 and f.error_pct is not None


def test_trainer_callback_with_fixed_tokens_per_step_starts_its_own_run(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch):
    from transformers import Trainer, TrainingArguments

    from footprint.hf import FootprintCallback

    monkeypatch.setenv("FOOTPRINT_DB", str(tmp_path / "cb.db"))
    model, _, _ = load_tiny_gpt2()
    rows = [{"input_ids": torch.arange(8), "labels": torch.arange(8)} for _ in range(4)]
    args = TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=3, per_device_train_batch_size=2,
                             report_to=[], save_strategy="no", logging_strategy="no", use_cpu=True,
                             disable_tqdm=True)
    cb = FootprintCallback(tokens_per_step=100, summary=False)
    Trainer(model=model, args=args, train_dataset=rows, callbacks=[cb]).train()
    assert cb.run is not None and cb.run.finished
    assert cb.run.report().tokens == 300


def test_trainer_callback_with_non_padding_tokens_bills_real_tokens(tmp_path: Path):
    """include_num_input_tokens_seen=True counts padding; "non_padding" counts the attention mask."""
    from transformers import Trainer, TrainingArguments

    from footprint.hf import FootprintCallback

    lengths = [8, 3, 5, 1]
    rows = []
    for n in lengths:
        ids = torch.cat([torch.arange(n) + 1, torch.full((8 - n,), PAD)])
        mask = (torch.arange(8) < n).long()
        rows.append({"input_ids": ids, "attention_mask": mask, "labels": torch.where(mask == 1, ids, -100)})
    for setting, truth in (("non_padding", sum(lengths)), (True, 4 * 8)):
        model, _, _ = load_tiny_gpt2()
        args = TrainingArguments(output_dir=str(tmp_path / "out"), num_train_epochs=1, per_device_train_batch_size=2,
                                 report_to=[], save_strategy="no", logging_strategy="no", use_cpu=True,
                                 include_num_input_tokens_seen=setting, disable_tqdm=True)
        with tracked(tmp_path) as run:
            Trainer(model=model, args=args, train_dataset=rows, callbacks=[FootprintCallback(run)]).train()
        assert run.report().tokens_by_kind == {"train": truth}


# -- notebook ---------------------------------------------------------------------------------

def test_cell_magic_prints_summary_under_the_cell(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    pytest.importorskip("IPython")
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        shell.run_line_magic("load_ext", "footprint")
        shell.run_cell_magic("footprint", f"nb-cell --db {tmp_path / 'nb.db'} --tokens 50",
                             "total = sum(i * i for i in range(200000))")
        assert shell.user_ns["total"] == sum(i * i for i in range(200000))
        run = shell.user_ns["_footprint_run"]
        assert run.report().tokens == 50 and run.report().name == "nb-cell"
        out = capsys.readouterr().out
        assert "run 1 'nb-cell'" in out and "J/token" in out
    finally:
        InteractiveShell.clear_instance()


def test_trainer_callback_logs_each_step_and_the_run_to_its_writers(tmp_path: Path):
    from transformers import Trainer, TrainingArguments

    from footprint.hf import FootprintCallback
    from footprint.trackers import run_figures

    class Recorder:
        def __init__(self) -> None:
            self.logged: list[tuple[dict[str, float], int | None]] = []
            self.files: list[str] = []

        def log(self, metrics: dict[str, float], step: int | None = None) -> None:
            self.logged.append((metrics, step))

        def artifact(self, path: str) -> None:
            self.files.append(Path(path).name)

        def close(self) -> None:
            return None

    model, _, _ = load_tiny_gpt2()
    rows = [{"input_ids": torch.arange(8), "labels": torch.arange(8)} for _ in range(4)]
    args = TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=3, per_device_train_batch_size=2,
                             report_to=[], save_strategy="no", logging_strategy="no", use_cpu=True,
                             disable_tqdm=True)
    rec = Recorder()
    with tracked(tmp_path, watts=50.0) as run:
        Trainer(model=model, args=args, train_dataset=rows,
                callbacks=[FootprintCallback(run, tokens_per_step=100, writers=[rec])]).train()
    steps = [s for s in run.report().spans if s.name == "step"]
    live = rec.logged[:-1]
    assert [step for _, step in live] == [1, 2, 3]
    assert [m["footprint/step/energy_j"] for m, _ in live] == [s.energy_j["total"] for s in steps]
    final, step = rec.logged[-1]
    assert step == 3 and final["footprint/tokens"] == 300
    assert final["footprint/span/train/epoch-1/step/tokens"] == 200  # two steps per epoch
    assert set(final) == set(run_figures(run.report()))  # the same figures, as they stood when training ended
    assert rec.files == ["footprint-report.html"]


def test_hf_without_transformers_names_the_extra(monkeypatch: pytest.MonkeyPatch):
    import sys

    monkeypatch.setitem(sys.modules, "transformers", None)  # as if it were not installed
    monkeypatch.delitem(sys.modules, "footprint.hf", raising=False)
    with pytest.raises(ModuleNotFoundError, match=r"^footprint.hf needs transformers: pip install "
                                                  r"'footprint-profiler\[hf\]'$"):
        import footprint.hf  # noqa: F401
