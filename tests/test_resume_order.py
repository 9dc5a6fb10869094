"""A resume inside an epoch trains the rest of that epoch in its order (one loader or two), with random numbers of its
own (callbacks.SeedPerRankAndStep)."""

import random
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from runs import cyclegan_job, job, options_warnings, wgan_job

import train
from callbacks import SeedPerRankAndStep
from datamodules import CIFAR10DataModule

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets: threads only add contention


class BatchPrints(L.Callback):
    """Writes each training batch's epoch, index and a print of its images to `record`."""

    def __init__(self, record: str):
        self.record = record

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        images = batch[0] if isinstance(batch, list | tuple) and len(batch) == 2 else batch
        images = images[0] if isinstance(images, list | tuple) else images  # the CycleGAN's: domain A
        with open(self.record, "a") as record:
            record.write(f"{trainer.current_epoch} {batch_idx} {images.double().sum().item():.4f}\n")


# a stop inside the 2nd epoch; CI runs one case of each loader: our batches of tensors (the Darknet's), a
# DataLoader with workers (the CycleGAN's, whose workers draw the sampler's order as the loader is made: at an epoch's
# end too, LateLoader's case) and without (the WGAN's)
@pytest.mark.parametrize("system, stop", [("darknet", 17), ("cyclegan", 9), ("wgan", 9), ("cyclegan", 6),  # its end
                                          pytest.param("darknet", 5, marks=pytest.mark.slow),  # inside the 1st
                                          pytest.param("darknet", 12, marks=pytest.mark.slow),  # at its end
                                          pytest.param("wgan in memory", 9, marks=pytest.mark.slow),
                                          pytest.param("wgan with workers", 9, marks=pytest.mark.slow)])
def test_a_resume_inside_an_epoch_trains_the_rest_of_that_epochs_order(system, stop, tiny_cifar, tiny_unpaired,
                                                                       tmp_path):
    """Lightning made the loader's first iterator before giving the sampler its epoch, and restarted it at its first
    batch: a stop in the 2nd epoch resumed with the 1st epoch's order, and trained its first batches again."""
    runs, steps = tmp_path / "runs", 1  # optimizer steps a batch
    if system == "darknet":  # 12 batches of 2 an epoch; no augmentation, so a batch's print is its images'
        make = job(tiny_cifar, runs, "--data.batch_size", "2", "--data.pad", "0", "--data.flip", "false",
                   "--trainer.max_epochs", "2", "--model.one_cycle", "null")
        per_epoch = 12
    elif system == "cyclegan":  # 6 batches of 1 an epoch; crops and flips drawn from (seed, image, epoch)
        make, per_epoch, steps = cyclegan_job(tiny_unpaired, runs), 6, 3
    else:  # 6 batches of 4 an epoch, 2 epochs
        make, per_epoch = wgan_job(tiny_cifar, runs, "--trainer.max_epochs", "2"), 6
        make += {"wgan": [], "wgan in memory": ["--data.in_memory", "true"],
                 "wgan with workers": ["--data.num_workers", "2"]}[system]
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    train.main([*make, "--run_name", "whole", "--trainer.callbacks+=test_resume_order.BatchPrints",
                f"--trainer.callbacks.record={whole}"])
    record = ["--run_name", "r", "--trainer.callbacks+=test_resume_order.BatchPrints",
              f"--trainer.callbacks.record={resumed}"]
    train.main([*make, *record, "--trainer.max_steps", str(stop * steps)])
    with options_warnings() as said:
        train.main([*make, *record, "--ckpt_path", "last"])
    assert said == []  # the shipped config's options, given again: no word of changed ones
    expected = whole.read_text().splitlines()
    assert len(expected) == 2 * per_epoch and resumed.read_text().splitlines() == expected


class TwoLoaders(L.LightningModule):
    """Trains on a dict of two loaders (12 and 6 batches: Lightning cycles the shorter) and records batch prints."""

    def __init__(self):
        super().__init__()
        self.linear, self.prints = torch.nn.Linear(3, 3), []

    def training_step(self, batch, batch_idx):
        images, labels = batch["long"]
        self.prints.append((self.current_epoch, batch_idx, images.double().sum().item()))
        return F.cross_entropy(self.linear(images.float().mean((2, 3))), labels)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


class TwoLoaderData(CIFAR10DataModule):
    def train_dataloader(self):
        return {"long": self._batches(self.train_images, self.train_labels, 2, True),
                "short": self._batches(self.train_images, self.train_labels, 4, True)}

    def on_after_batch_transfer(self, batch, dataloader_idx):
        return batch


def test_a_resume_inside_an_epoch_of_two_loaders_trains_the_rest_of_it(tiny_cifar, tmp_path):
    """The shorter loader, cycled by Lightning, skipped the batches trained again at each new start: with more to
    skip than it has, it came back empty and ended the epoch 4 batches early."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    def fit(root, ckpt_path=None, callbacks=()):
        L.seed_everything(0, verbose=False)
        model = TwoLoaders()
        L.Trainer(default_root_dir=root, logger=False, enable_progress_bar=False, enable_model_summary=False,
                  callbacks=list(callbacks), max_epochs=2, limit_val_batches=0).fit(
            model, datamodule=TwoLoaderData(str(tiny_cifar), download=False), ckpt_path=ckpt_path)
        return model.prints

    whole = fit(tmp_path / "whole", callbacks=[ModelCheckpoint(every_n_train_steps=8, save_top_k=-1,
                                                               filename="{step}")])
    assert len(whole) == 24 and fit(tmp_path / "resumed", tmp_path / "whole" / "checkpoints" / "step=8.ckpt") == \
        whole[8:]


def test_each_rank_and_each_resume_draw_their_own_random_numbers():
    """seed_everything seeds every DDP process alike (the WGAN's ranks drew the same noise), and a resume replayed the
    run's first random numbers; one process from step 0 keeps the seed's own."""
    def draws(rank=None, step=0):
        torch.manual_seed(0), np.random.seed(0), random.seed(0)
        if rank is not None:
            SeedPerRankAndStep().on_train_start(SimpleNamespace(global_rank=rank, global_step=step), None)
        return torch.randn(3).tolist(), np.random.rand(), random.random()  # torch's, numpy's and Python's

    plain = draws()
    assert draws(0, 0) == plain
    streams = [plain, draws(1, 0), draws(0, 5), draws(1, 5)]  # rank 1; a resume at step 5 on rank 0, on rank 1
    assert draws(1, 5) == streams[3]  # the same rank and step, the same numbers
    for i, one in enumerate(streams):
        for other in streams[i + 1:]:
            assert all(a != b for a, b in zip(one, other, strict=True))
    # any rank and step: numpy takes seeds below 2**32 only (a seed past it fails half the (rank, step) pairs)
    assert len({draws(rank, step)[1] for rank in range(4) for step in range(1, 9)}) == 32
