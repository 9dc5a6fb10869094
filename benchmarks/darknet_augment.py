"""Batch-tensor augmentation (ours) against torchvision's PIL transforms applied image by image.

    python benchmarks/darknet_augment.py [--images 10000] [--batch 512] [--repeats 3]

Both do the seed's reflect-pad 4 + random 32px crop + horizontal flip + normalisation on the CPU, from
uint8 CIFAR-sized images to a normalised float batch; on a GPU the batch version also runs on the device.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision import transforms

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from datamodules.augment import normalize, random_crop, random_flip  # noqa: E402
from datamodules.cifar10 import SEED_STATS  # noqa: E402


def batched(images: torch.Tensor, batch: int, device: str) -> float:
    start = time.perf_counter()
    for i in range(0, len(images), batch):
        x = normalize(images[i:i + batch].to(device), *SEED_STATS)
        x = random_flip(random_crop(x, 32, 4))
    if device == "cuda":
        torch.cuda.synchronize()
    return len(images) / (time.perf_counter() - start)


def per_image(pils: list, batch: int) -> float:
    transform = transforms.Compose([
        transforms.RandomCrop(32, padding=4, padding_mode="reflect"), transforms.RandomHorizontalFlip(),
        transforms.ToTensor(), transforms.Normalize(*SEED_STATS)])
    start = time.perf_counter()
    for i in range(0, len(pils), batch):
        torch.stack([transform(p) for p in pils[i:i + batch]])
    return len(pils) / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    images = torch.randint(0, 256, (args.images, 3, 32, 32), dtype=torch.uint8)
    pils = [Image.fromarray(np.ascontiguousarray(x.permute(1, 2, 0).numpy())) for x in images]
    ours, theirs = [], []
    for _ in range(args.repeats):  # interleaved, so load from other processes hits both alike
        ours.append(batched(images, args.batch, args.device))
        theirs.append(per_image(pils, args.batch))
    print(f"{args.images} images, batch {args.batch}, {torch.get_num_threads()} threads, device {args.device}")
    print(f"batch tensors : {np.median(ours):10.0f} images/s (runs: {', '.join(f'{v:.0f}' for v in ours)})")
    print(f"PIL per image : {np.median(theirs):10.0f} images/s (runs: {', '.join(f'{v:.0f}' for v in theirs)})")
    print(f"speed-up      : {np.median(ours) / np.median(theirs):10.1f}x")


if __name__ == "__main__":
    main()
