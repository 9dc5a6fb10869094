"""What each Darknet speed option is worth: short CPU trainings on a CIFAR-10 subset, one option changed at a time.

    python benchmarks/darknet_speed_options.py [--train-per-class 300] [--test-per-class 100] [--epochs 3]

A small Darknet (widths 16/32/64, one ResLayer per group) on the first images of each class of the shared JPEG
archive, 1cycle SGD (peak lr 0.2) at batch 64. `base` is the seed's recipe (conv stem, strided convs, random
flip); each other row adds one option to it, and `all` adds them all (and Nesterov). TTA rows re-evaluate the
`base` and `all` models. One seed on a few thousand images: differences under a few points are noise; this is a
sanity check, not a tuning result.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import SHARED_DATA  # noqa: E402
from benchmarks.time_to_accuracy import read_archive, write_batches  # noqa: E402
from callbacks import TrainingPhaseScheduler  # noqa: E402
from datamodules import CIFAR10DataModule  # noqa: E402
from lightning_modules import DarknetClassifier  # noqa: E402

NET = {"num_blocks": [1, 1, 1], "widths": [16, 32, 64], "strides": [2, 2, 2], "lr": 0.2, "one_cycle": None}
OPTIONS = {
    "base": ({}, {}),
    "whiten": ({"whiten": 2}, {}),
    "maxpool": ({"downsample": "maxpool"}, {}),
    "alternating flip": ({}, {"alternating_flip": True}),
    "label smoothing 0.2": ({"label_smoothing": 0.2}, {}),
    "no decay bn/bias + bn bias lr x64": ({"no_decay_bn_bias": True, "bn_bias_lr_scale": 64.0}, {}),
}
OPTIONS["all"] = ({"nesterov": True, **{k: v for m, _ in OPTIONS.values() for k, v in m.items()}},
                  {k: v for _, d in OPTIONS.values() for k, v in d.items()})


def train(data_dir, model_kwargs, data_kwargs, epochs, ema=False):
    torch.manual_seed(0)
    model = DarknetClassifier(**NET, interpret=False, **model_kwargs)
    data = CIFAR10DataModule(str(data_dir), batch_size=64, eval_batch_size=500, **data_kwargs)
    callbacks = [TrainingPhaseScheduler(one_cycle={"div": 20, "pct": 10}, plot=False)]
    if ema:
        callbacks.append(L.pytorch.callbacks.EMAWeightAveraging(decay=0.95, update_every_n_steps=1))
    trainer = L.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, accelerator="cpu")
    start = time.perf_counter()
    trainer.callbacks.extend(callbacks)
    trainer.fit(model, data)
    seconds = time.perf_counter() - start
    return model, data, trainer, seconds


def test_accuracy(model, data, trainer, tta="none"):
    model.hparams.tta = tta
    return trainer.test(model, data, verbose=False)[0]["test/acc"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-per-class", type=int, default=300)
    parser.add_argument("--test-per-class", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "cifar-10-batches-py"
        write_batches(data_dir, read_archive(SHARED_DATA / "cifar10-jpeg.tar.gz",
                                             {"train": args.train_per_class, "test": args.test_per_class}))
        for name, (model_kwargs, data_kwargs) in OPTIONS.items():
            model, data, trainer, seconds = train(data_dir.parent, model_kwargs, data_kwargs, args.epochs)
            results[name] = {"acc": test_accuracy(model, data, trainer), "fit_s": round(seconds, 1)}
            if name in ("base", "all"):
                for tta in ("flip", "flip_translate"):
                    results[f"{name} + tta {tta}"] = {"acc": test_accuracy(model, data, trainer, tta)}
            print(name, results[name], flush=True)
        model, data, trainer, seconds = train(data_dir.parent, {}, {}, args.epochs, ema=True)
        results["ema 0.95"] = {"acc": test_accuracy(model, data, trainer), "fit_s": round(seconds, 1)}
    print("| option | test accuracy | fit s |\n|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {100 * r['acc']:.1f}% | {r.get('fit_s', '')} |")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
