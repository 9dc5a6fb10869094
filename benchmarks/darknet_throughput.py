"""Training images/s: the Lightning DarknetClassifier against a plain PyTorch loop doing the same work.

    python benchmarks/darknet_throughput.py [--batch 64] [--steps 10] [--repeats 3] [--device cpu|cuda]
    python benchmarks/darknet_throughput.py --device cuda --batch 512 --precision 32-true bf16-mixed --json out.json

Same net (default Darknet), same uint8 CIFAR-10 batches, same on-device augmentation, same SGD + 1cycle;
Lightning logs the loss every 20 steps as configs/darknet.yaml does. Trials alternate, so other load on the
machine hits both alike; each trial times `--steps` steps after `--warmup` untimed ones. With bf16-mixed the
plain loop runs its forward and loss under torch.autocast(bfloat16), as Lightning's precision plugin does.
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import cifar10_dir, fresh_start, profiled, sync  # noqa: E402
from datamodules import CIFAR10DataModule  # noqa: E402
from datamodules.augment import normalize, random_crop, random_flip  # noqa: E402
from datamodules.cifar10 import SEED_STATS, TensorBatches  # noqa: E402
from lightning_modules import Darknet, DarknetClassifier  # noqa: E402


def plain_loop(data, batch, warmup, steps, device, precision="32-true", net_args=None) -> float:
    torch.manual_seed(0)
    net = Darknet(**(net_args or {})).to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=1.3, momentum=0.9, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=1.3, total_steps=warmup + steps, pct_start=0.4, anneal_strategy="linear",
        three_phase=True, div_factor=20, final_div_factor=100, base_momentum=0.85, max_momentum=0.95)
    loader = TensorBatches(data.train_images, data.train_labels, batch, shuffle=True, drop_last=True)
    for i, (images, labels) in enumerate(loader):
        if i == warmup:
            sync(device)
            start = time.perf_counter()
        if i == warmup + steps:
            break
        # as Lightning moves a batch to a GPU (move_data_to_device): a blocking copy would wait for the queued steps
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        x = random_flip(random_crop(normalize(images, *SEED_STATS), 32, 4))
        with torch.autocast(device, torch.bfloat16, enabled=precision == "bf16-mixed"):
            loss = F.cross_entropy(net(x), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    sync(device)
    return steps * batch / (time.perf_counter() - start)


class Timer(L.Callback):
    def __init__(self, warmup, steps):
        self.warmup, self.steps = warmup, steps

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.warmup:
            sync(pl_module.device.type)
            self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module):
        sync(pl_module.device.type)
        self.seconds = time.perf_counter() - self.start


def lightning_loop(data, batch, warmup, steps, device, precision="32-true", net_args=None) -> float:
    torch.manual_seed(0)
    timer = Timer(warmup, steps)
    trainer = L.Trainer(accelerator=device, devices=1, max_steps=warmup + steps, logger=False, precision=precision,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, num_sanity_val_steps=0, log_every_n_steps=20, callbacks=[timer])
    trainer.fit(DarknetClassifier(**(net_args or {})), datamodule=data)
    return steps * batch / timer.seconds


def peak_gib(device, reset=False):
    """CUDA peak memory allocated since the last reset, in GiB (None on the CPU)."""
    if reset:
        fresh_start(device)  # the last Lightning run's model freed first (common.fresh_start)
        return None
    if device != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated() / 2**30, 3)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", nargs="+", default=["32-true"], choices=["32-true", "bf16-mixed"],
                        help="one or more; each is timed against the plain loop at the same precision")
    parser.add_argument("--data_dir", default=None, help="CIFAR-10 folder (default: ../shared/data's, unpacked)")
    parser.add_argument("--nf", type=int, default=32, help="Darknet width (32: the default net)")
    parser.add_argument("--num_blocks", type=int, nargs="+", default=[1, 2, 4, 6, 3])
    parser.add_argument("--json", default=None, help="also write the medians and peak memory to this file")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="after the timing, N steps of each loop under torch.profiler at each precision (printed)")
    args = parser.parse_args()
    net_args = {"nf": args.nf, "num_blocks": args.num_blocks}
    data = CIFAR10DataModule(args.data_dir or str(cifar10_dir()), batch_size=args.batch, download=False)
    data.setup("fit")
    rows = []
    for precision in args.precision:
        plain, lightning, peaks = [], [], {"plain": 0.0, "lightning": 0.0}
        for _ in range(args.repeats):
            for name, loop, rates in (("plain", plain_loop, plain), ("lightning", lightning_loop, lightning)):
                peak_gib(args.device, reset=True)
                rates.append(loop(data, args.batch, args.warmup, args.steps, args.device, precision, net_args))
                peaks[name] = peak_gib(args.device)
            print(f"{precision}: plain {plain[-1]:.1f} images/s, Lightning {lightning[-1]:.1f} images/s", flush=True)
        if args.profile:
            for name, loop in (("plain", plain_loop), ("Lightning", lightning_loop)):
                with profiled(f"darknet {name}, {precision}, {args.warmup} + {args.profile} steps", args.device):
                    loop(data, args.batch, args.warmup, args.profile, args.device, precision, net_args)
        p, l = statistics.median(plain), statistics.median(lightning)
        print(f"Darknet nf {args.nf} {args.num_blocks}, batch {args.batch}, {precision}, {args.steps} timed steps x "
              f"{args.repeats}, {args.device}, {torch.get_num_threads()} threads")
        print(f"plain PyTorch : {p:.1f} images/s\nLightning     : {l:.1f} images/s\nratio         : {l / p:.3f}")
        rows.append({"measure": f"images/s, batch {args.batch}", "precision": precision, "ours": l, "plain": p,
                     "unit": "images/s", "peak_ours_gib": peaks["lightning"], "peak_plain_gib": peaks["plain"],
                     "trials_ours": lightning, "trials_plain": plain})
    if args.json:
        Path(args.json).write_text(json.dumps({"script": "darknet_throughput", "device": args.device,
                                               "settings": vars(args), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
