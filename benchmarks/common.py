"""Shared benchmark pieces: the real data (../shared/data or $DL2_SHARED_DATA, unpacked once into .cache/), a
warm-up-aware clock for Lightning runs, and pre-made batches as one loader."""

import gc
import os
import tarfile
import time
from contextlib import contextmanager
from pathlib import Path

import lightning as L
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("DL2_SHARED_DATA", ROOT.parent / "shared" / "data"))


def cifar10_dir() -> Path:
    """The real CIFAR-10 (JPEG copy, fast.ai layout), unpacked into .cache/cifar10 on first use."""
    return unpacked("cifar10-jpeg.tar.gz", "cifar10", "test", "CIFAR-10")


def horse2zebra_dir() -> Path:
    """The real horse2zebra (trainA/trainB/testA/testB), unpacked into .cache/horse2zebra on first use."""
    return unpacked("horse2zebra.tar", "horse2zebra", "testB", "horse2zebra")


def unpacked(archive: str, folder: str, last: str, name: str) -> Path:
    """.cache/<folder> from the shared <archive>, unpacked unless its <last> subfolder is there already."""
    target = ROOT / ".cache" / folder
    if not (target / last).is_dir():
        source = SHARED_DATA / archive
        if not source.exists():
            raise SystemExit(f"benchmark needs the real {name} at {source} (or set DL2_SHARED_DATA)")
        from datamodules.download import extract_tar  # the 'data' filter, or its checks on older Pythons
        with tarfile.open(source) as tar:
            extract_tar(tar, target.parent)
    return target


def sync(device: torch.device | str) -> None:
    """Wait for the device, so a clock reads finished work."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def fresh_start(device) -> None:
    """Before each measured run: the earlier runs' objects freed and, on CUDA, the peak memory counter reset to what
    is left. A Lightning Trainer and its model sit in reference cycles, alive after `fit` returns until Python's
    collector runs: their CUDA tensors (weights, gradients, optimizer state) counted in the next run's peak (the
    plain loop's, run after ours), and the collection itself could fall in its timing."""
    gc.collect()
    if str(device).startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


class Clock(L.Callback):
    """Seconds of training from batch `warmup` (its start) to the end of fit, the device synced at both ends."""

    def __init__(self, warmup: int):
        self.warmup, self.start, self.seconds = warmup, None, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == self.warmup:
            sync(pl_module.device)
            self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module):
        sync(pl_module.device)
        self.seconds = time.perf_counter() - self.start


class Batches:
    """Pre-made batches as one loader (a bare list would be taken for a list of loaders)."""

    def __init__(self, batches):
        self.batches = batches

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        return iter(self.batches)


@contextmanager
def profiled(name: str, device: str):
    """torch.profiler around the block; prints the 20 ops with the most device (or CPU) self time: where a step's
    time goes, the evidence a ratio below target needs (issue 12). On a GPU, a larger "Self CUDA time total" (the
    kernels) in one loop means extra device work, named in the table's rows; the same total means the gap is on
    the host (the GPU waits). The block includes a Lightning run's set-up, so compare kernels, not CPU totals."""
    from torch.profiler import ProfilerActivity, profile
    cuda = str(device).startswith("cuda")
    with profile(activities=[ProfilerActivity.CPU] + [ProfilerActivity.CUDA] * cuda) as prof:
        yield
    sort = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=sort, row_limit=20)
    print(f"--- profile: {name} (sorted by {sort})\n{table}", flush=True)
