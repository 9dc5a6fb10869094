"""Each node's first process prepares (downloads) its data: nodes need not share a filesystem."""
import lightning as L
import pytest
import torch

from datamodules import CIFAR10DataModule, ImageFolderDataModule, UnpairedImageDataModule


class Prepared(Exception):
    pass


class Model(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))

    def training_step(self, batch, batch_idx):
        return self.weight

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize("datamodule", [
    lambda folder: CIFAR10DataModule(folder),
    lambda folder: ImageFolderDataModule(folder, isize=16, batch_size=5, num_workers=0),
    lambda folder: UnpairedImageDataModule(folder, load_size=36, crop_size=32, num_workers=0)],
    ids=["cifar10", "image_folder", "unpaired"])
def test_the_data_is_prepared_on_every_node(datamodule, tmp_path, monkeypatch):
    data = datamodule(str(tmp_path))

    def prepare():
        raise Prepared
    monkeypatch.setattr(L.Trainer, "node_rank", property(lambda self: 1))  # the second node's local rank 0
    monkeypatch.setattr(data, "prepare_data", prepare)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False, max_steps=1)
    with pytest.raises(Prepared):
        trainer.fit(Model(), datamodule=data)
