"""Image decode speed: torchvision.io (deprecated since 0.29) against PIL, and what a full corrupt-file check costs.

    python -m benchmarks.data_decode [--cifar10 DIR] [--horse2zebra DIR] [--limit N]

Decodes every image of CIFAR-10 (the JPEG copy in ../shared/data) and horse2zebra once per decoder, one process,
one thread, the decoders interleaved chunk by chunk; prints images/s and the seconds a full pass takes (= the
cost of checking every file at setup).
"""

import argparse
import time
import warnings
from pathlib import Path

import torch

from benchmarks.common import cifar10_dir, horse2zebra_dir
from datamodules.decode import read_rgb

SUFFIXES = {".jpg", ".jpeg", ".png"}


def torchvision_bytes(path: Path) -> torch.Tensor:
    from torchvision.io import ImageReadMode, decode_image, read_file
    return decode_image(read_file(str(path)), mode=ImageReadMode.RGB)


def torchvision_path(path: Path) -> torch.Tensor:
    from torchvision.io import ImageReadMode, decode_image
    return decode_image(str(path), mode=ImageReadMode.RGB)


DECODERS = {"torchvision read_file+decode_image (old)": torchvision_bytes,
            "torchvision decode_image(path)": torchvision_path,
            "PIL open+convert (new: datamodules.decode.read_rgb)": read_rgb}


def main(cifar10: str | None = None, horse2zebra: str | None = None, limit: int = 0, chunk: int = 500) -> None:
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", DeprecationWarning)
    sets = {"CIFAR-10 (60,000 32x32 JPEGs)": Path(cifar10) if cifar10 else cifar10_dir(),
            "horse2zebra (2,661 256x256 JPEGs)": Path(horse2zebra) if horse2zebra else horse2zebra_dir()}
    for name, root in sets.items():
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in SUFFIXES)
        files = files[:limit] if limit else files
        for decode in DECODERS.values():
            for f in files[:50]:  # warm the page cache and the libraries
                decode(f)
        # interleaved: each chunk of files is decoded by every decoder in turn, so the load of a shared machine
        # falls on all of them alike
        seconds = dict.fromkeys(DECODERS, 0.0)
        for start in range(0, len(files), chunk):
            for label, decode in DECODERS.items():
                begin = time.perf_counter()
                for f in files[start:start + chunk]:
                    decode(f)
                seconds[label] += time.perf_counter() - begin
        diff = max(int((read_rgb(f).int() - torchvision_path(f).int()).abs().max()) for f in files[:500])
        print(f"{name}: largest pixel difference PIL vs torchvision over the first 500 files: {diff}")
        for label, total in seconds.items():
            print(f"{name}: {label}: {len(files) / total:,.0f} images/s, {total:.1f} s for {len(files):,}")

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--cifar10")
    parser.add_argument("--horse2zebra")
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--chunk", type=int, default=500, help="files per interleaved round")
    main(**vars(parser.parse_args()))
