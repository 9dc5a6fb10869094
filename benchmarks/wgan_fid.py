"""Frechet distance in Darknet feature space over a WGAN's training on real CIFAR-10 (32px).

1. Unpacks ../shared/data/cifar10-jpeg.tar.gz into --cache (once).
2. Features: --darknet_ckpt, or a small Darknet (--darknet_nf 16, --darknet_blocks 1,1,1) trained here on
   CIFAR-10 for --darknet_epochs with the seed's 1cycle recipe; its test accuracy is printed.
3. Baseline: the distance between two disjoint random sets of --num_images real training images.
4. Trains `WGAN` through a Lightning Trainer on the training images for --minutes or --max_steps, and
   measures the distance (generated vs real set A) every --eval_every critic iterations, with the generator
   in eval mode (what `generate` writes) and in train mode (batch statistics, as the reference code samples).

    python benchmarks/wgan_fid.py --minutes 10 --ngf 32 --ndf 32 --d_iters_long 5 --darknet_nf 8 \
        --darknet_blocks 1,1                                                           # a shared 2-core CPU
    python benchmarks/wgan_fid.py --device cuda --minutes 8 --eval_every 500           # the seed's nets, GPU
"""

import argparse
import json
import sys
import tarfile
import time
from pathlib import Path

import lightning as L
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from datamodules import CIFAR10DataModule, ImageFolderDataModule  # noqa: E402
from lightning_modules import WGAN, DarknetClassifier  # noqa: E402
from lightning_modules.wgan_fid import DarknetFeatures, add_images, frechet_metric  # noqa: E402


def unpack(cache: Path) -> Path:
    if not (cache / "cifar10" / "train").is_dir():
        cache.mkdir(parents=True, exist_ok=True)
        from datamodules.download import extract_tar  # the 'data' filter, or its checks on older Pythons
        with tarfile.open(ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz") as tar:
            extract_tar(tar, cache)
    return cache / "cifar10"


def train_darknet(cifar: Path, epochs: int, nf: int, num_blocks: list[int], accelerator: str, out: Path) -> str:
    L.seed_everything(0)
    # lr 1.3 diverges in a short cycle (16.7% here)
    model = DarknetClassifier(num_blocks=num_blocks, nf=nf, lr=0.4, interpret=False)
    data = CIFAR10DataModule(str(cifar), batch_size=512, download=False)
    trainer = L.Trainer(accelerator=accelerator, max_epochs=epochs, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, default_root_dir=out)
    start = time.perf_counter()
    trainer.fit(model, data)
    accuracy = trainer.test(model, data, verbose=False)[0]["test/acc"]
    print(f"darknet nf {nf} blocks {num_blocks}: {epochs} epochs in {time.perf_counter() - start:.0f} s, "
          f"test acc {accuracy:.4f}", flush=True)
    path = out / "darknet-features.ckpt"
    trainer.save_checkpoint(path)
    return str(path)


class FrechetEvery(L.Callback):
    """Distance of fixed-noise samples to real set A every `every` critic iterations (and at the start and end)."""

    def __init__(self, metric, every: int, num_images: int):
        self.metric, self.every, self.num_images, self.rows = metric, every, num_images, []
        self.start, self.eval_seconds = time.perf_counter(), 0.0

    @torch.no_grad()
    def measure(self, model):
        row = {"critic_iterations": model.critic_iterations, "gen_iterations": model.gen_iterations,
               "train_seconds": round(time.perf_counter() - self.start - self.eval_seconds, 1)}
        began, mode = time.perf_counter(), model.generator.training
        state = {k: v.clone() for k, v in model.generator.state_dict().items()}  # train mode moves BN stats
        for name, training in (("fid_eval_mode", False), ("fid_train_mode", True)):
            model.generator.train(training)
            g = torch.Generator(device="cpu").manual_seed(1)
            noise = torch.randn(self.num_images, model.hparams.nz, 1, 1, generator=g).to(model.device)
            self.metric.reset()  # keeps the real features (reset_real_features=False)
            add_images(self.metric, (model.generator(z) for z in noise.split(250)), real=False)
            row[name] = round(float(self.metric.compute()), 3)
        model.generator.train(mode)
        model.generator.load_state_dict(state)
        self.rows.append(row)
        print(json.dumps(row), flush=True)
        self.eval_seconds += time.perf_counter() - began  # evaluation time is not training time

    def on_train_start(self, trainer, model):
        self.start = time.perf_counter()
        self.measure(model)

    def on_train_batch_end(self, trainer, model, outputs, batch, batch_idx):
        if model.critic_iterations % self.every == 0:
            self.measure(model)

    def on_train_end(self, trainer, model):
        if model.critic_iterations % self.every:
            self.measure(model)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", default=str(ROOT / "data"), help="where CIFAR-10 is unpacked (git-ignored)")
    parser.add_argument("--darknet_ckpt", default=None)
    parser.add_argument("--darknet_epochs", type=int, default=1)
    parser.add_argument("--darknet_nf", type=int, default=16)
    parser.add_argument("--darknet_blocks", default="1,1,1", help="ResLayers per group")
    parser.add_argument("--num_images", type=int, default=2000, help="images per set for each distance")
    parser.add_argument("--minutes", type=float, default=8.0)
    parser.add_argument("--max_steps", type=int, default=-1)
    parser.add_argument("--eval_every", type=int, default=100, help="critic iterations")
    parser.add_argument("--ngf", type=int, default=64)
    parser.add_argument("--ndf", type=int, default=64)
    parser.add_argument("--d_iters_long", type=int, default=100)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=str(ROOT / "runs" / "wgan_fid_benchmark"))
    args = parser.parse_args()
    accelerator = "gpu" if args.device == "cuda" else "cpu"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cifar = unpack(Path(args.cache))
    blocks = [int(n) for n in args.darknet_blocks.split(",")]
    darknet = args.darknet_ckpt or train_darknet(cifar, args.darknet_epochs, args.darknet_nf, blocks, accelerator, out)

    metric = frechet_metric(DarknetFeatures(darknet)).to(args.device)
    data = ImageFolderDataModule(str(cifar / "train"), isize=32, batch_size=args.batch_size, in_memory=True,
                                 num_workers=2)
    data.setup("fit")
    order = torch.randperm(len(data.images), generator=torch.Generator().manual_seed(0))
    set_a, set_b = (data.images[order[i * args.num_images:(i + 1) * args.num_images]] for i in (0, 1))
    add_images(metric, (x.float() / 127.5 - 1 for x in set_a.split(250)), real=True)
    add_images(metric, (x.float() / 127.5 - 1 for x in set_b.split(250)), real=False)
    baseline = round(float(metric.compute()), 3)
    print(json.dumps({"real_vs_real": baseline, "num_images": args.num_images}), flush=True)

    L.seed_everything(0)
    model = WGAN(isize=32, ngf=args.ngf, ndf=args.ndf, d_iters_long=args.d_iters_long, sample_every=10**9)
    tracker = FrechetEvery(metric, args.eval_every, args.num_images)
    trainer = L.Trainer(accelerator=accelerator, devices=1, max_time={"minutes": args.minutes},
                        max_steps=args.max_steps, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, default_root_dir=out, callbacks=[tracker])
    trainer.fit(model, data)
    result = {"args": vars(args), "darknet_ckpt": darknet, "real_vs_real": baseline, "curve": tracker.rows,
              "threads": torch.get_num_threads()}
    (out / "wgan_fid.json").write_text(json.dumps(result, indent=2))
    print(f"results in {out / 'wgan_fid.json'}")


if __name__ == "__main__":
    main()
