"""A callback gpu_acceptance.py adds to the real CLI's runs
(`--trainer.callbacks+=benchmarks.acceptance_probe.AcceptanceProbe`): at the start of training (after a resume
has restored the step), after fit and after test it writes
<run folder>/acceptance_probe-<stage>.json with the step, the epoch, the precision, the device and the CUDA
peak memory of the process (torch.cuda.max_memory_allocated). It only reads."""

import json
from pathlib import Path

import lightning as L
import torch


class AcceptanceProbe(L.Callback):
    def write(self, trainer: L.Trainer, stage: str) -> None:
        if not trainer.is_global_zero:
            return
        cuda = torch.cuda.is_available() and trainer.strategy.root_device.type == "cuda"
        record = {"stage": stage, "global_step": trainer.global_step, "epoch": trainer.current_epoch,
                  "precision": str(trainer.precision), "device": str(trainer.strategy.root_device),
                  "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3) if cuda else None,
                  "metrics": {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}}
        path = Path(trainer.default_root_dir) / f"acceptance_probe-{stage}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2))

    def on_train_start(self, trainer, pl_module):
        self.write(trainer, "start")

    def on_fit_end(self, trainer, pl_module):
        self.write(trainer, "fit")

    def on_test_end(self, trainer, pl_module):
        self.write(trainer, "test")
