"""Evaluation under DDP: two CPU processes (gloo) see every test image exactly once, and a torchmetrics mean
over them is the mean over the images.

The processes hold uneven shares (3 + 2 images), so a mean logged as a plain tensor with `sync_dist=True`
would come out inflated: Lightning mean-syncs its integer batch-size count and floors it (Lightning issue
#21859; here 11745.8 / 4 in place of / 5). Metrics of an evaluation split go through torchmetrics instead."""

import pickle
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from conftest import make_batches
from PIL import Image
from torchmetrics import MeanMetric

from datamodules import CIFAR10DataModule, UnpairedImageDataModule

pytestmark = pytest.mark.usefixtures("one_thread")


class Recorder(L.LightningModule):
    """Writes a key of every test image it is given to rank<r>.txt and logs the mean of that key."""

    def __init__(self, out: str):
        super().__init__()
        self.out = out
        self.weight = torch.nn.Parameter(torch.zeros(1))  # DDP needs a parameter
        self.key_mean = MeanMetric()

    def test_step(self, batch, batch_idx):
        images = batch[0].double()
        keys = images.flatten(1).sum(1).round(decimals=3)
        with open(Path(self.out) / f"rank{self.global_rank}.txt", "a") as f:
            f.write("".join(f"{k}\n" for k in keys.tolist()))
        self.key_mean.update(keys)
        self.log("key_mean", self.key_mean)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def run_test(data, out: Path) -> float:
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False)
    return trainer.test(Recorder(str(out)), datamodule=data, verbose=False)[0]["key_mean"]


def seen(out: Path) -> list[list[float]]:
    return [[float(x) for x in (out / f"rank{r}.txt").read_text().split()] for r in (0, 1)]


def test_cyclegan_test_images_are_each_evaluated_once_across_two_processes(tmp_path):
    root = tmp_path / "h2z"
    for folder, count in (("trainA", 1), ("trainB", 1), ("testA", 5), ("testB", 5)):
        (root / folder).mkdir(parents=True)
        for i in range(count):  # solid images of 10 * (i + 1) grey: an image's pixel sum names it
            Image.fromarray(np.full((32, 32, 3), 10 * (i + 1), dtype=np.uint8)).save(root / folder / f"{i}.png")
    data = UnpairedImageDataModule(str(root), batch_size=2, load_size=32, crop_size=32, num_workers=0)
    out = tmp_path / "out"
    out.mkdir()
    mean = run_test(data, out)
    keys = [(10 * (i + 1) / 127.5 - 1) * 3 * 32 * 32 for i in range(5)]  # [-1, 1] pixels, summed by hand
    ranks = seen(out)
    assert sorted(ranks[0] + ranks[1]) == pytest.approx(sorted(keys), abs=1e-2)  # 5 images, none twice
    assert sorted(map(len, ranks)) == [2, 3]  # 3 + 2: uneven, not padded to 3 + 3
    assert mean == pytest.approx(sum(keys) / 5, rel=1e-5)  # weighted by batch size across processes


def test_cifar10_test_images_are_each_evaluated_once_across_two_processes(tmp_path):
    folder = make_batches(tmp_path / "c" / "cifar-10-batches-py", per_batch=7)
    with open(folder / "test_batch", "rb") as f:
        rows = pickle.load(f, encoding="bytes")[b"data"].astype(np.float64)
    mean, std = np.array([0.4914, 0.48216, 0.44653]) * 255, np.array([0.24703, 0.24349, 0.26159]) * 255
    keys = [((row.reshape(3, -1) - mean[:, None]) / std[:, None]).sum() for row in rows]  # the seed's normalisation
    data = CIFAR10DataModule(str(tmp_path / "c"), eval_batch_size=2, download=False)
    out = tmp_path / "out"
    out.mkdir()
    result = run_test(data, out)
    ranks = seen(out)
    assert sorted(ranks[0] + ranks[1]) == pytest.approx(sorted(keys), abs=0.05)  # 7 images, none twice
    assert sorted(map(len, ranks)) == [3, 4]
    assert result == pytest.approx(np.mean(keys), rel=1e-4)
