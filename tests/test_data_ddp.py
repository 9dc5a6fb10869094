"""Evaluation under DDP: two CPU processes (gloo) see every test image exactly once, and a torchmetrics mean
over them is the mean over the images.

The processes hold uneven shares (3 + 2 images), so a mean logged as a plain tensor with `sync_dist=True`
would come out inflated: Lightning mean-syncs its integer batch-size count and floors it (Lightning issue
#21859; here 11745.8 / 4 in place of / 5). Metrics of an evaluation split go through torchmetrics instead:
the CycleGAN's test/cycle_l1_a and _b and the Darknet's test/loss are checked here against means over the
images written in the test."""

import pickle
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import cycle_l1_by_hand, make_batches
from PIL import Image
from torchmetrics import MeanMetric

from datamodules import CIFAR10DataModule, UnpairedImageDataModule
from lightning_modules import CycleGAN, DarknetClassifier

pytestmark = pytest.mark.usefixtures("one_thread")


class Recorder(L.LightningModule):
    """Writes the loader and a key of every test image it is given to rank<r>.txt and logs the mean of that key."""

    def __init__(self, out: str):
        super().__init__()
        self.out = out
        self.weight = torch.nn.Parameter(torch.zeros(1))  # DDP needs a parameter
        self.key_mean = MeanMetric()

    def test_step(self, batch, batch_idx, dataloader_idx=0):
        images = (batch if isinstance(batch, torch.Tensor) else batch[0]).double()  # CycleGAN: one domain a loader
        keys = images.flatten(1).sum(1).round(decimals=3)
        with open(Path(self.out) / f"rank{self.global_rank}.txt", "a") as f:
            f.write("".join(f"{dataloader_idx} {k}\n" for k in keys.tolist()))
        self.key_mean.update(keys)

    def on_test_epoch_end(self):
        self.log("key_mean", self.key_mean)  # once over both loaders (in test_step: one entry per loader)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def run_test(data, out: Path, model=None) -> dict[str, float]:
    # two processes forked from this one (ddp_spawn's fresh interpreters cost ~5 s of imports each): the ranks, their
    # samplers and the gloo collectives are the same; each rank keeps this process's one torch thread (one_thread)
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp_fork", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False, default_root_dir=str(out))
    return trainer.test(model or Recorder(str(out)), datamodule=data, verbose=False)[0]


def seen(out: Path, loader: int = 0) -> list[list[float]]:
    """The keys each rank recorded from one loader."""
    lines = [(out / f"rank{r}.txt").read_text().splitlines() for r in (0, 1)]
    return [[float(key) for idx, key in map(str.split, rank) if int(idx) == loader] for rank in lines]


def grey_unpaired(root: Path, counts=(1, 1, 5, 3)) -> Path:
    """trainA, trainB, testA, testB of solid 32px images: A i is 10 * (i + 1) grey, B i 200 + 10 * i, so an
    image's pixel sum names it."""
    for folder, count in zip(("trainA", "trainB", "testA", "testB"), counts, strict=True):
        (root / folder).mkdir(parents=True)
        for i in range(count):
            grey = 10 * (i + 1) if folder.endswith("A") else 200 + 10 * i
            Image.fromarray(np.full((32, 32, 3), grey, dtype=np.uint8)).save(root / folder / f"{i}.png")
    return root


def test_cyclegan_test_images_are_each_evaluated_once_across_two_processes(tmp_path):
    root = grey_unpaired(tmp_path / "h2z", counts=(1, 1, 5, 3))  # |A| != |B|, and 5 = 3 + 2 on two ranks
    data = UnpairedImageDataModule(str(root), batch_size=2, load_size=32, crop_size=32, num_workers=0)
    out = tmp_path / "out"
    out.mkdir()
    mean = run_test(data, out)["key_mean"]
    keys_a = [(10 * (i + 1) / 127.5 - 1) * 3 * 32 * 32 for i in range(5)]  # [-1, 1] pixels, summed by hand
    keys_b = [((200 + 10 * i) / 127.5 - 1) * 3 * 32 * 32 for i in range(3)]
    for loader, keys in ((0, keys_a), (1, keys_b)):
        ranks = seen(out, loader)
        assert sorted(ranks[0] + ranks[1]) == pytest.approx(sorted(keys), abs=1e-2)  # each image once, none twice
        assert sorted(map(len, ranks)) == [len(keys) // 2, len(keys) - len(keys) // 2]  # 3 + 2, 2 + 1: not padded
    assert mean == pytest.approx((sum(keys_a) + sum(keys_b)) / 8, rel=1e-5)  # weighted by batch size


def test_cyclegan_test_cycle_l1_is_the_mean_over_each_domains_images_across_two_processes(tmp_path):
    """5 testA images on two ranks (3 + 2) and 3 testB (2 + 1), batches of 2: the old paired loader counted
    B images 0 and 1 twice, and a batch mean logged with sync_dist=True divided by a floored mean count."""
    root = grey_unpaired(tmp_path / "h2z", counts=(1, 1, 5, 3))
    for i, file in enumerate(sorted((root / "testA").iterdir())):  # textured, so the errors differ by image
        pixels = np.random.default_rng(i).integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(file)
    data = UnpairedImageDataModule(str(root), batch_size=2, load_size=32, crop_size=32, num_workers=0)
    torch.manual_seed(0)
    model = CycleGAN(n_blocks=1, ngf=4, ndf=4, log_images_every_n_batches=0)
    expected = cycle_l1_by_hand(model, root)
    out = tmp_path / "out"
    out.mkdir()
    results = run_test(data, out, model)
    assert results["test/cycle_l1_a"] == pytest.approx(expected["a"], rel=1e-5)
    assert results["test/cycle_l1_b"] == pytest.approx(expected["b"], rel=1e-5)
    assert (out / "images" / "test_visuals-000000.png").exists()  # rank 0 held the first image of both domains


def test_darknet_test_loss_is_the_mean_over_the_images_across_two_processes(tmp_path):
    """7 test images on two ranks (4 + 3), batches of 2: a batch mean logged with sync_dist=True gave the sum of
    the losses over 6 (Lightning issue #21859)."""
    folder = make_batches(tmp_path / "c" / "cifar-10-batches-py", per_batch=7)
    with open(folder / "test_batch", "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    rows, labels = batch[b"data"].astype(np.float32), batch[b"labels"]
    mean, std = np.array([0.4914, 0.48216, 0.44653]) * 255, np.array([0.24703, 0.24349, 0.26159]) * 255
    images = [torch.from_numpy(((row.reshape(3, 32, 32) - mean[:, None, None]) / std[:, None, None])
                               .astype(np.float32)) for row in rows]  # the seed's normalisation
    torch.manual_seed(0)
    model = DarknetClassifier(num_blocks=[1], nf=4, num_classes=3, top_losses=3).eval()
    with torch.no_grad():  # one image at a time (BatchNorm in eval mode: the batch does not matter)
        logits = [model.net(x[None]) for x in images]
        losses = [F.cross_entropy(z, torch.tensor([y])).item() for z, y in zip(logits, labels, strict=True)]
    predictions = [int(z.argmax()) for z in logits]
    data = CIFAR10DataModule(str(tmp_path / "c"), eval_batch_size=2, download=False)
    out = tmp_path / "out"
    out.mkdir()
    results = run_test(data, out, model)
    assert results["test/loss"] == pytest.approx(sum(losses) / 7, rel=1e-4)
    # the interpretation covers both ranks' images once: per-class accuracy and the 3 worst of all 7
    for k, name in enumerate(["cat", "dog", "frog"]):
        mine = [p == y for p, y in zip(predictions, labels, strict=True) if y == k]
        assert results[f"test/class_acc/{name}"] == pytest.approx(sum(mine) / max(1, len(mine)))
    top = [row.split(",") for row in (out / "test_top_losses.csv").read_text().splitlines()[1:]]
    assert [float(row[0]) for row in top] == pytest.approx(sorted(losses, reverse=True)[:3], rel=1e-4)
    # each named by its place in test_batch (rank 1 held images 1, 3 and 5), and no file: the batches have none
    assert [(int(row[4]), row[5]) for row in top] == [(i, "") for i in np.argsort(losses)[::-1][:3]]


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
    assert result["key_mean"] == pytest.approx(np.mean(keys), rel=1e-4)
