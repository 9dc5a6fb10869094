"""Seconds per val/fid evaluation (`--model.fid_features`) of the WGAN and the CycleGAN, through trainer.validate.

WGAN: the config's nets at 32px, --val_size real CIFAR-10 training images (decoded from JPEG, as the default
config reads them) against as many generated ones, in the features of the default Darknet (its config:
blocks 1,2,4,6,3, nf 32). CycleGAN: horse2zebra's testA/testB (120/140 images) at --crop_size, translated both
ways, in the same features. Weights are random: the cost does not depend on them. The first validation also
computes the real statistics; later ones only the generated side (the real images are still read).

    python benchmarks/gan_fid_cost.py --system wgan
    python benchmarks/gan_fid_cost.py --system cyclegan --crop_size 128 --n_blocks 6
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import lightning as L
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.common import cifar10_dir, horse2zebra_dir  # noqa: E402
from datamodules import ImageFolderDataModule, UnpairedImageDataModule  # noqa: E402
from lightning_modules import WGAN, CycleGAN, DarknetClassifier  # noqa: E402


def darknet_checkpoint(out: Path) -> str:
    torch.manual_seed(0)
    model = DarknetClassifier(num_blocks=[1, 2, 4, 6, 3], nf=32)  # configs/darknet.yaml
    trainer = L.Trainer(accelerator="cpu", logger=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(out / "darknet.ckpt")
    return str(out / "darknet.ckpt")


def time_validations(model, data, rounds: int, out: Path) -> list[float]:
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=str(out))
    seconds = []
    for _ in range(rounds):
        start = time.perf_counter()
        trainer.validate(model, datamodule=data, verbose=False)
        seconds.append(round(time.perf_counter() - start, 2))
        print(json.dumps({"seconds": seconds[-1], **{k: round(v.item(), 3) for k, v in
                                                     trainer.callback_metrics.items()}}), flush=True)
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--system", choices=["wgan", "cyclegan"], required=True)
    parser.add_argument("--val_size", type=int, default=2000, help="WGAN: real (and generated) images")
    parser.add_argument("--batch_size", type=int, default=64, help="WGAN: the config's batch size")
    parser.add_argument("--num_workers", type=int, default=2)
    parser.add_argument("--crop_size", type=int, default=128, help="CycleGAN: test images resized to this")
    parser.add_argument("--n_blocks", type=int, default=6, help="CycleGAN: 6 at 128px, 9 at 256px (the paper)")
    parser.add_argument("--rounds", type=int, default=3, help="validations; the first computes the real statistics")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", default=str(ROOT / "runs" / "gan_fid_cost"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    features = darknet_checkpoint(out)
    L.seed_everything(0)
    if args.system == "wgan":
        model = WGAN(isize=32, fid_features=features)
        data = ImageFolderDataModule(str(cifar10_dir() / "train"), isize=32, batch_size=args.batch_size,
                                     num_workers=args.num_workers, val_size=args.val_size)
    else:
        model = CycleGAN(n_blocks=args.n_blocks, fid_features=features)
        data = UnpairedImageDataModule(str(horse2zebra_dir()), batch_size=1, load_size=args.crop_size,
                                       crop_size=args.crop_size, num_workers=args.num_workers)
    load = os.getloadavg()[0]
    seconds = time_validations(model, data, args.rounds, out)
    result = {"args": vars(args), "seconds_per_validation": seconds, "load_average_1min_before": round(load, 1),
              "load_average_1min_after": round(os.getloadavg()[0], 1)}
    print(json.dumps(result))
    (out / f"{args.system}.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
