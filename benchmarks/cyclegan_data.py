"""Items/s of UnpairedImageDataModule's training items (decode, resize 286, crop 256, flip), in one process.

    python benchmarks/cyclegan_data.py --data_dir data/horse2zebra --items 200

A GPU step at 256px takes tens of milliseconds, so this says how many DataLoader workers keep it fed.
"""

import json
import time

import torch
from jsonargparse import CLI

from datamodules import UnpairedImageDataModule


def main(data_dir: str = "data/horse2zebra", items: int = 200, load_size: int = 286, crop_size: int = 256,
         threads: int = 1):
    """Args:
        data_dir: trainA/trainB/testA/testB folders.
        items: how many training items to time (after 10 untimed).
        load_size: resize target.
        crop_size: crop.
        threads: torch threads (the DataLoader's workers use 1 each).
    """
    torch.set_num_threads(threads)
    dm = UnpairedImageDataModule(data_dir, load_size=load_size, crop_size=crop_size, num_workers=0)
    dm.setup("fit")
    for i in range(10):
        dm.train_set[i, 0]
    start = time.perf_counter()
    for i in range(items):
        dm.train_set[i % len(dm.train_set), 1]
    seconds = time.perf_counter() - start
    print(json.dumps({"items": items, "items_per_s": items / seconds, "ms_per_item": 1000 * seconds / items,
                      "load_size": load_size, "crop_size": crop_size, "threads": threads}, indent=2))


if __name__ == "__main__":
    CLI(main, as_positional=False)
