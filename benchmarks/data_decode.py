"""Image decode speed: torchvision.io (deprecated since 0.29) against PIL, and what a full corrupt-file check costs.

    python -m benchmarks.data_decode [--cifar10 DIR] [--horse2zebra DIR] [--limit N]

Decodes every image of CIFAR-10 (the JPEG copy in ../shared/data) and horse2zebra once per decoder, one process,
one thread; prints images/s and the seconds a full pass takes (= the cost of checking every file at setup).
"""

import argparse
import tarfile
import time
import warnings
from pathlib import Path

import torch

from benchmarks.common import ROOT, SHARED_DATA, cifar10_dir
from datamodules.decode import read_rgb

SUFFIXES = {".jpg", ".jpeg", ".png"}


def horse2zebra_dir() -> Path:
    target = ROOT / ".cache" / "horse2zebra"
    if not (target / "testB").is_dir():
        with tarfile.open(SHARED_DATA / "horse2zebra.tar") as tar:
            tar.extractall(target.parent, filter="data")
    return target


def torchvision_bytes(path: Path) -> torch.Tensor:
    from torchvision.io import ImageReadMode, decode_image, read_file
    return decode_image(read_file(str(path)), mode=ImageReadMode.RGB)


def torchvision_path(path: Path) -> torch.Tensor:
    from torchvision.io import ImageReadMode, decode_image
    return decode_image(str(path), mode=ImageReadMode.RGB)


DECODERS = {"torchvision read_file+decode_image (old)": torchvision_bytes,
            "torchvision decode_image(path)": torchvision_path,
            "PIL open+convert (new: datamodules.decode.read_rgb)": read_rgb}


def main(cifar10: str | None = None, horse2zebra: str | None = None, limit: int = 0) -> None:
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", DeprecationWarning)
    sets = {"CIFAR-10 (60,000 32x32 JPEGs)": Path(cifar10) if cifar10 else cifar10_dir(),
            "horse2zebra (2,661 256x256 JPEGs)": Path(horse2zebra) if horse2zebra else horse2zebra_dir()}
    for name, root in sets.items():
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in SUFFIXES)
        files = files[:limit] if limit else files
        for label, decode in DECODERS.items():
            for f in files[:50]:  # warm the page cache and the libraries
                decode(f)
            start = time.perf_counter()
            for f in files:
                decode(f)
            seconds = time.perf_counter() - start
            print(f"{name}: {label}: {len(files) / seconds:,.0f} images/s, {seconds:.1f} s for {len(files):,}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--cifar10")
    parser.add_argument("--horse2zebra")
    parser.add_argument("--limit", type=int, default=0)
    main(**vars(parser.parse_args()))
