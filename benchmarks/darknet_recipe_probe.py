"""A CPU-sized copy of the time-to-accuracy race, to compare recipes of configs/darknet_fast.yaml without a GPU.

    python benchmarks/darknet_recipe_probe.py [--train-per-class 500] [--test-per-class 200] [--batch 128]
        [--epochs 10] [--widths "[32, 64, 64]"] [--seed 0] --variant NAME=OVERRIDES [--variant ...]

Each variant is our config (LightningCLI, as benchmarks/time_to_accuracy.py builds it) with its overrides, run on
the first N training and M test images per class of the shared JPEG CIFAR-10, with a narrower net, fp32, no
compile, on the CPU. The race's shape is kept: batch 1024 of 50,000 images is 48 steps an epoch, batch 128 of 5,000
is 39; the lr is scaled by batch / 1024 (airbench's lr is per example: its mean-loss lr is proportional to the
batch), weight decay per step of lr is left as it is (the decay per epoch is then the same), and `--epochs`
sets max_steps = epochs x steps an epoch, as the config's max_steps does for the race.

Printed per variant: the lr and momentum the optimizer held at the first, peak and last step (from the optimizer
itself, to check the schedule), the test accuracy with the running BatchNorm statistics the model evaluates with,
and with statistics recomputed on 20 training batches at the final weights ("recalibrated"): a gap between
the two is the running statistics lagging the weights. Results go to --out as JSON.
"""

import argparse
import json
import math
import shlex
import sys
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import lightning as L  # noqa: E402

from benchmarks.common import SHARED_DATA  # noqa: E402
from benchmarks.time_to_accuracy import read_archive, write_batches  # noqa: E402


class OptimizerTrace(L.Callback):
    """lr of every group and the first group's momentum, as the optimizer holds them at each step."""

    def __init__(self):
        self.steps = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        groups = optimizer.param_groups
        self.steps.append(([g["lr"] for g in groups], groups[0].get("momentum"), groups[0].get("nesterov")))


def prepare(data_dir: Path, train: int, test: int) -> Path:
    folder = data_dir / f"train{train}_test{test}"
    if not (folder / "cifar-10-batches-py" / "test_batch").is_file():
        write_batches(folder / "cifar-10-batches-py",
                      read_archive(SHARED_DATA / "cifar10-jpeg.tar.gz", {"train": train, "test": test}))
    return folder


@torch.no_grad()
def recalibrated_accuracy(model, datamodule, batches: int = 20) -> float:
    """Test accuracy after recomputing every BatchNorm's statistics (a plain average) on training batches."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, m.running_mean.clone(), m.running_var.clone()) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    datamodule.trainer.training = True  # the training augmentation
    for i, batch in enumerate(datamodule.train_dataloader()):
        if i == batches:
            break
        model(datamodule.on_after_batch_transfer(batch, 0)[0])
    datamodule.trainer.training = False
    model.eval()
    correct = total = 0
    for images, labels in datamodule.test_dataloader():
        images, labels = datamodule.on_after_batch_transfer((images, labels), 0)
        tta = model.hparams.tta
        from lightning_modules.darknet_classifier import tta_average, tta_views
        correct += (tta_average(model(tta_views(images, tta)), tta).argmax(1) == labels).sum().item()
        total += len(labels)
    for m, (momentum, mean, var) in zip(norms, saved, strict=True):
        m.momentum = momentum
        m.running_mean.copy_(mean)
        m.running_var.copy_(var)
    return correct / total


def run(config: Path, data_dir: Path, args, overrides: list[str]) -> dict:
    from lightning.pytorch.cli import LightningCLI
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    steps_per_epoch = 10 * args.train_per_class // args.batch
    cli_args = ["--config", str(config), "--seed_everything", str(args.seed),
                "--data.init_args.data_dir", str(data_dir), "--data.init_args.seed", str(args.seed),
                "--data.init_args.batch_size", str(args.batch), "--data.init_args.eval_batch_size", "500",
                "--trainer.accelerator", "cpu", "--trainer.precision", "32-true",
                "--trainer.max_epochs", str(math.ceil(args.epochs)),
                "--trainer.max_steps", str(round(args.epochs * steps_per_epoch)),
                "--trainer.default_root_dir", str(args.out / "runs"),
                "--model.init_args.compile", "false", "--model.init_args.widths", args.widths,
                "--model.init_args.tta", "none", *overrides]
    cli = LightningCLI(args=cli_args, run=False, subclass_mode_model=True, subclass_mode_data=True,
                       save_config_callback=None, auto_configure_optimizers=False)
    model, data = cli.model, cli.datamodule
    model.hparams.lr *= args.batch / 1024  # lr per example kept (the config's lr is for batch 1024)
    trace = OptimizerTrace()
    cli.trainer.callbacks.append(trace)
    start = time.perf_counter()
    cli.trainer.fit(model, datamodule=data)
    accuracy = cli.trainer.test(model, datamodule=data, verbose=False)[0]["test/acc"]
    seconds = time.perf_counter() - start
    lrs = [s[0][0] for s in trace.steps]
    peak = max(range(len(lrs)), key=lrs.__getitem__)
    return {"accuracy": accuracy, "recalibrated": recalibrated_accuracy(model, data), "seconds": seconds,
            "steps": len(trace.steps), "lr_first_peak_last": [lrs[0], lrs[peak], lrs[-1]], "peak_step": peak,
            "group_lrs_at_peak": trace.steps[peak][0],
            "momentum_first_peak_last": [trace.steps[i][1] for i in (0, peak, -1)],
            "nesterov": trace.steps[0][2]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "darknet_fast.yaml")
    parser.add_argument("--data-dir", type=Path, default=ROOT / ".cache" / "recipe_probe")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "recipe_probe")
    parser.add_argument("--train-per-class", type=int, default=500)
    parser.add_argument("--test-per-class", type=int, default=200)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--epochs", type=float, default=10)
    parser.add_argument("--widths", default="[32, 64, 64]")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--variant", action="append", required=True, metavar="NAME=OVERRIDES")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data_dir = prepare(args.data_dir, args.train_per_class, args.test_per_class)
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    for variant in args.variant:
        name, _, extra = variant.partition("=")
        results[name] = result = run(args.config, data_dir, args, shlex.split(extra))
        print(f"{name}: {json.dumps(result)}", flush=True)
        (args.out / "probe.json").write_text(json.dumps({"argv": argv or sys.argv[1:], "results": results},
                                                         indent=2))
    for name, r in results.items():
        print(f"| {name} | {100 * r['accuracy']:.1f}% | {100 * r['recalibrated']:.1f}% | {r['steps']} | "
              f"{r['seconds']:.0f} s |")
    return results


if __name__ == "__main__":
    main()
