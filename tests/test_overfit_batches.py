"""Trainer(overfit_batches=N) trains the same N batches every epoch, as Lightning promises (it turns a DataLoader's
shuffle off), also with the data modules whose training batches are cut from tensors (TensorBatches), which
Lightning cannot reach: they drew new batches every epoch while Lightning said shuffling was turned off."""

import lightning as L
import pytest
import torch

from datamodules import CIFAR10DataModule, ImageFolderDataModule


class Recorder(L.LightningModule):
    """Records the training batches' images per epoch; a parameter so Lightning has something to step."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.seen: dict[int, list[torch.Tensor]] = {}

    def training_step(self, batch, batch_idx):
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        self.seen.setdefault(self.current_epoch, []).append(images.detach().clone())
        return self.weight ** 2

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(data, **trainer_options) -> dict[int, list[torch.Tensor]]:
    model = Recorder()
    L.Trainer(accelerator="cpu", max_epochs=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
              **trainer_options).fit(model, data)
    return model.seen


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("make", [
    lambda root: CIFAR10DataModule(str(root), batch_size=4, download=False, pad=0, flip=False),
    lambda root: ImageFolderDataModule(str(root / "train"), isize=16, batch_size=4, num_workers=0, in_memory=True,
                                       download=False),
], ids=["cifar10", "image_folder_in_memory"])
def test_overfit_batches_trains_the_same_batches_every_epoch(tiny_cifar, make):
    seen = fit(make(tiny_cifar), overfit_batches=2)
    assert [len(seen[epoch]) for epoch in range(3)] == [2, 2, 2]
    assert same(seen[1], seen[0]) and same(seen[2], seen[0])  # the same two batches each epoch
    means = torch.cat(seen[0]).flatten(1).float().mean(1)  # 8 distinct images, not one repeated
    assert len(set(means.tolist())) == 8


def test_without_overfit_batches_each_epoch_is_reshuffled(tiny_cifar):
    seen = fit(CIFAR10DataModule(str(tiny_cifar), batch_size=4, download=False, pad=0, flip=False),
               limit_train_batches=2)
    assert not same(seen[1], seen[0])


def test_overfitting_tensor_batches_keep_the_first_epochs_shuffle_in_every_epoch():
    """The first epoch's order is randperm of the seed itself (epoch 0 adds nothing), not of seed + 1."""
    from types import SimpleNamespace

    from datamodules.cifar10 import TensorBatches
    labels = torch.arange(12)
    batches = TensorBatches(torch.zeros(12, 3, 2, 2, dtype=torch.uint8), labels, batch_size=4, shuffle=True,
                            drop_last=True, seed=7, trainer=SimpleNamespace(overfit_batches=2))
    first = torch.randperm(12, generator=torch.Generator().manual_seed(7))
    for epoch in (0, 1, 3):
        batches.set_epoch(epoch)
        assert torch.equal(torch.cat([label for _, label in batches]), first)
