"""1cycle through the TrainingPhase API against constant lr and torch's OneCycleLR, same steps, real CIFAR-10.

    python benchmarks/darknet_schedules.py [--steps 400] [--batch 128] [--nf 16] [--num_blocks 1 1 1 1]
    python benchmarks/darknet_schedules.py --overhead      # the scheduler's cost per step only

A small Darknet so that the budget fits a CPU; every run starts from the same seed and sees the same batches.
Reports test accuracy (the final weights) and wall time. `--overhead` times the callback's per-batch work
(locating the phase and writing lr and momentum into the optimizer) against the step it schedules.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import cifar10_dir  # noqa: E402
from callbacks import TrainingPhaseScheduler, one_cycle  # noqa: E402
from datamodules import CIFAR10DataModule  # noqa: E402
from lightning_modules import DarknetClassifier  # noqa: E402


def run(name, args, data):
    torch.manual_seed(0)
    callbacks, model_kwargs = [], {"one_cycle": None, "lr": args.lr}
    if name == "phases 1cycle":
        callbacks = [TrainingPhaseScheduler(one_cycle=dict(div=20, pct=20, max_mom=0.95, min_mom=0.85), plot=False)]
    elif name == "torch OneCycleLR":
        model_kwargs["one_cycle"] = (20, 20, 0.95, 0.85)
    else:
        model_kwargs["lr"] = args.constant_lr
    model = DarknetClassifier(num_blocks=args.num_blocks, nf=args.nf, interpret=False, **model_kwargs)
    trainer = L.Trainer(accelerator=args.device, devices=1, max_steps=args.steps, max_epochs=100, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, num_sanity_val_steps=0, callbacks=callbacks)
    start = time.perf_counter()
    trainer.fit(model, datamodule=data)
    seconds = time.perf_counter() - start
    accuracy = trainer.test(model, datamodule=data, verbose=False)[0]["test/acc"]
    return {"schedule": name, "test_acc": round(accuracy, 4), "fit_seconds": round(seconds, 1)}


def overhead(repeats: int = 20_000) -> None:
    net = DarknetClassifier()  # the default Darknet's 31.4 M parameters in one SGD group
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)

    class FakeTrainer:
        optimizers = [optimizer]

    scheduler = TrainingPhaseScheduler(one_cycle(cycle_len=30, lr=1.3, div=20, pct=20, max_mom=0.95, min_mom=0.85))
    scheduler.ends = scheduler.phase_ends(98)
    scheduler._optimizer_key = (torch.optim.SGD, ())
    start = time.perf_counter()
    for i in range(repeats):
        scheduler.batches_seen = i % scheduler.ends[-1]
        scheduler._apply(FakeTrainer)
    micro = (time.perf_counter() - start) / repeats * 1e6
    print(json.dumps({"scheduler_us_per_step": round(micro, 2), "phases": len(scheduler.phases),
                      "note": "lr and momentum written to the default Darknet's SGD, one call per batch"}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--nf", type=int, default=16)
    parser.add_argument("--num_blocks", type=int, nargs="+", default=[1, 1, 1, 1])
    parser.add_argument("--lr", type=float, default=0.4, help="peak lr of both 1cycles (the seed: 1.3 at batch 256)")
    parser.add_argument("--constant_lr", type=float, default=0.1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--schedules", nargs="+", default=["phases 1cycle", "torch OneCycleLR", "constant lr"])
    parser.add_argument("--overhead", action="store_true")
    args = parser.parse_args()
    if args.overhead:
        return overhead()
    data = CIFAR10DataModule(str(cifar10_dir()), batch_size=args.batch, download=False)
    print(f"Darknet({args.num_blocks}, nf={args.nf}), batch {args.batch}, {args.steps} steps, {args.device}")
    for name in args.schedules:
        print(json.dumps(run(name, args, data)), flush=True)


if __name__ == "__main__":
    main()
