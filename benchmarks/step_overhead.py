"""Lightning's cost per training step: the Trainer against a plain PyTorch loop, same tiny net and batches.

    python benchmarks/step_overhead.py [--device cpu|cuda] [--steps 300] [--warmup 30] [--repeats 3]

The net (one Linear layer on 32 features, batch 32) does almost no work, so a step's time is the loop's
own overhead. The Lightning module logs its loss every step as DarknetClassifier does (kept on the device,
read every `log_every_n_steps`). Variants: `lean` (no logger, progress bar, checkpointing or summary: the
time_to_accuracy settings) and `default` (a CSVLogger and the progress bar). Trials alternate, so load from
other users of the machine hits every variant alike; each trial times `--steps` steps after `--warmup`.
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import CSVLogger
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import Batches, Clock, sync  # noqa: E402


def make_batches(n, device):
    generator = torch.Generator().manual_seed(0)
    return [(torch.randn(32, 32, generator=generator).to(device), torch.randint(0, 10, (32,), generator=generator)
             .to(device)) for _ in range(n)]


def plain_loop(batches, warmup, device) -> float:
    torch.manual_seed(0)
    net = nn.Linear(32, 10).to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    for i, (x, y) in enumerate(batches):
        if i == warmup:
            sync(device)
            start = time.perf_counter()
        loss = F.cross_entropy(net(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    sync(device)
    return (time.perf_counter() - start) / (len(batches) - warmup)


class Tiny(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Linear(32, 10)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        self.log("train/loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01, momentum=0.9)


def lightning_loop(batches, warmup, device, variant) -> float:
    torch.manual_seed(0)
    clock = Clock(warmup)
    with tempfile.TemporaryDirectory() as root:
        extra = ({"logger": CSVLogger(root), "enable_progress_bar": True} if variant == "default" else
                 {"logger": False, "enable_progress_bar": False})
        trainer = L.Trainer(accelerator=device.type, devices=1, max_steps=len(batches), max_epochs=1,
                            enable_checkpointing=False, enable_model_summary=False, log_every_n_steps=50,
                            callbacks=[clock], default_root_dir=root, **extra)
        trainer.fit(Tiny(), train_dataloaders=Batches(batches))
    return clock.seconds / (trainer.global_step - warmup)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    batches = make_batches(args.warmup + args.steps, device)
    times = {"plain": [], "lightning lean": [], "lightning default": []}
    for _ in range(args.repeats):
        times["plain"].append(plain_loop(batches, args.warmup, device))
        times["lightning lean"].append(lightning_loop(batches, args.warmup, device, "lean"))
        times["lightning default"].append(lightning_loop(batches, args.warmup, device, "default"))
    medians = {k: statistics.median(v) for k, v in times.items()}
    print(f"device {device}, {args.steps} timed steps after {args.warmup}, median of {args.repeats} trials:")
    for name, seconds in medians.items():
        extra = "" if name == "plain" else f"  (+{(seconds - medians['plain']) * 1e6:.0f} us a step)"
        print(f"  {name:18s} {seconds * 1e6:8.0f} us a step{extra}")
    print(json.dumps({k: [round(s * 1e6, 1) for s in v] for k, v in times.items()}))
    return medians


if __name__ == "__main__":
    main()
