"""Training loss of the default Darknet over its first SGD steps, for three initialisations.

    python benchmarks/darknet_init.py [--steps 16] [--lr 0.05] [--batch 128]

`plain`: today's BatchNorm init (weight 1); `uniform`: PyTorch 0.3's U(0, 1) BatchNorm weights, which
the seed ran on; `zero`: the last BatchNorm weight of each ResLayer set to 0 (the project's default).
Real CIFAR-10, the seed's augmentation, constant lr with momentum 0.9 and weight decay 1e-4.
"""

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import cifar10_dir  # noqa: E402
from datamodules import CIFAR10DataModule  # noqa: E402
from datamodules.augment import normalize, random_crop, random_flip  # noqa: E402
from datamodules.cifar10 import SEED_STATS, TensorBatches  # noqa: E402
from lightning_modules import Darknet  # noqa: E402


def losses(variant: str, data, steps: int, lr: float, batch: int) -> list[float]:
    torch.manual_seed(0)
    net = Darknet(zero_init_residual=variant == "zero")
    if variant == "uniform":
        for layer in net.modules():
            if isinstance(layer, nn.BatchNorm2d):
                nn.init.uniform_(layer.weight)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    out = []
    for i, (images, labels) in enumerate(TensorBatches(data.train_images, data.train_labels, batch, True, True)):
        if i == steps:
            break
        loss = F.cross_entropy(net(random_flip(random_crop(normalize(images, *SEED_STATS), 32, 4))), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        out.append(round(loss.item(), 2))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--variants", nargs="+", default=["plain", "uniform", "zero"])
    args = parser.parse_args()
    data = CIFAR10DataModule(str(cifar10_dir()), download=False)
    data.setup("fit")
    for variant in args.variants:
        print(variant, losses(variant, data, args.steps, args.lr, args.batch), flush=True)


if __name__ == "__main__":
    main()
