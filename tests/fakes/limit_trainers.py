"""The tuner inside real trainers: a Hugging Face Trainer or a Lightning Trainer whose every training step takes
tests/fakes/limit_train.py's step_s(limit) on the stand-in NVML's file clock, with the power-limit callback.

    python limit_trainers.py hf|lightning TIME_FILE
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

# the repository instead of this folder, whose profile.py would hide the standard library's (transformers uses it)
sys.path[0] = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ["FAKE_NVML_TIME_FILE"] = sys.argv[2]  # read by the stand-in NVML at nvmlInit

import pynvml  # noqa: E402
import torch  # noqa: E402

from footprint.powerlimit import PowerLimitTuner  # noqa: E402
from tests.fakes.limit_train import FileClock, step_s  # noqa: E402

clock = FileClock(sys.argv[2])
pynvml.nvmlInit()
handle = pynvml.nvmlDeviceGetHandleByIndex(0)
seen: list[float] = []


def one_step() -> None:
    """What the GPU does in a step: it takes longer at a lower limit."""
    limit = pynvml.nvmlDeviceGetPowerManagementLimit(handle) / 1000.0
    seen.append(limit)
    clock.advance(step_s(limit))


tuner = PowerLimitTuner(objective="energy", warmup_steps=1, profile_steps=3, step_w=100.0, clock=clock, gpus=[0])
data = torch.utils.data.TensorDataset(torch.randn(32, 4), torch.randn(32, 1))

if sys.argv[1] == "hf":
    from transformers import Trainer, TrainingArguments

    from footprint.hf import PowerLimitCallback

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(4, 1)

        def forward(self, x: Any, y: Any) -> Any:
            one_step()
            return {"loss": torch.nn.functional.mse_loss(self.layer(x), y)}

    rows = [{"x": x, "y": y} for x, y in data]
    args = TrainingArguments(output_dir=os.path.join(os.path.dirname(sys.argv[2]), "hf-out"), max_steps=30,
                             per_device_train_batch_size=1, report_to=[], save_strategy="no", logging_strategy="no",
                             use_cpu=True, disable_tqdm=True, remove_unused_columns=False)
    Trainer(model=Tiny(), args=args, train_dataset=rows, callbacks=[PowerLimitCallback(tuner)]).train()
else:
    import lightning.pytorch as pl

    from footprint.lightning import PowerLimitCallback as LightningLimits

    class TinyModule(pl.LightningModule):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(4, 1)

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            one_step()
            x, y = batch
            return torch.nn.functional.mse_loss(self.layer(x), y)

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    trainer = pl.Trainer(max_epochs=4, accelerator="cpu", logger=False, callbacks=[LightningLimits(tuner)],
                         enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False)
    trainer.fit(TinyModule(), torch.utils.data.DataLoader(data, batch_size=4))

print(json.dumps({"chosen_w": tuner.chosen_w, "state": tuner.state, "seen": seen,
                  "after_w": pynvml.nvmlDeviceGetPowerManagementLimit(handle) / 1000.0,
                  "profiles": [p.to_dict() for p in tuner.profiles]}))
