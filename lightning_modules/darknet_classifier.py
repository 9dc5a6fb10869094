"""Darknet image classifier on CIFAR-10 (DL2 2018 lesson 12, cifar10-darknet)."""

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy

from lightning_modules.nets import Darknet


class DarknetClassifier(L.LightningModule):
    """Trains `Darknet` with SGD and the seed's 1cycle schedule (the net is `self.net`).

    Args:
        num_blocks: ResLayers per group; the seed's [1, 2, 4, 6, 3].
        nf: channels of the stem; each group doubles them.
        bottleneck: ResLayer inner width over its input width; the seed 0.5, its Wide-ResNet homework 2.
        checkpoint_residuals: recompute each ResLayer in backward to keep only its input (less memory).
        zero_init_residual: start every ResLayer as the identity (its last BatchNorm weight 0); without it
            the default net diverged within 10 steps on CIFAR-10 here.
        num_classes: output classes.
        lr: peak learning rate (the seed: 1.3 at batch 512 for a 30-epoch cycle; a 1-epoch cycle at 1.3
            diverged here, so configs/darknet.yaml uses 0.4).
        momentum: SGD momentum when no schedule sets it.
        weight_decay: L2 penalty on every parameter, as fastai 0.7 applied it (the seed: 1e-4).
        nesterov: Nesterov momentum.
        label_smoothing: cross-entropy label smoothing.
        one_cycle: the seed's `use_clr_beta=(div, pct, max_mom, min_mom)` run by torch's OneCycleLR;
            null for a constant lr, or when a TrainingPhaseScheduler callback sets lr and momentum.
    """

    # the training signal callbacks.ProgressBar shows, read once per logging interval (not prog_bar=True,
    # which Lightning converts to a Python number after every batch)
    progress_bar_metrics = ("train/loss",)

    def __init__(self, num_blocks: list[int] = (1, 2, 4, 6, 3), nf: int = 32, bottleneck: float = 0.5,
                 checkpoint_residuals: bool = False, zero_init_residual: bool = True, num_classes: int = 10,
                 lr: float = 1.3,
                 momentum: float = 0.9, weight_decay: float = 1e-4, nesterov: bool = False,
                 label_smoothing: float = 0.0,
                 one_cycle: tuple[float, float, float, float] | None = (20, 20, 0.95, 0.85)):
        super().__init__()
        self.save_hyperparameters()
        self.net = Darknet(list(num_blocks), num_classes, nf, bottleneck, checkpoint_residuals, zero_init_residual)
        self.val_accuracy = MulticlassAccuracy(num_classes, average="micro")
        self.test_accuracy = MulticlassAccuracy(num_classes, average="micro")

    def setup(self, stage: str) -> None:
        classes = getattr(self.trainer.datamodule, "classes", None)
        if classes and len(classes) != self.hparams.num_classes:
            raise ValueError(f"the data has {len(classes)} classes but the model {self.hparams.num_classes}; "
                             f"set --model.num_classes {len(classes)}")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)

    def loss(self, logits, labels):
        return F.cross_entropy(logits, labels, label_smoothing=self.hparams.label_smoothing)

    def training_step(self, batch, batch_idx):
        images, labels = batch
        loss = self.loss(self(images), labels)
        self.log("train/loss", loss)  # kept on the device; Lightning reads it every log_every_n_steps
        return loss

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, "val", self.val_accuracy)

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, "test", self.test_accuracy)

    def _evaluate(self, batch, split, accuracy):
        images, labels = batch
        logits = self(images)
        accuracy(logits, labels)
        self.log(f"{split}/loss", self.loss(logits, labels), sync_dist=True)
        self.log(f"{split}/acc", accuracy, prog_bar=True)

    def configure_optimizers(self):
        hp = self.hparams
        optimizer = torch.optim.SGD(self.parameters(), lr=hp.lr, momentum=hp.momentum,
                                    weight_decay=hp.weight_decay, nesterov=hp.nesterov)
        if hp.one_cycle is None:
            return optimizer
        div, pct, max_momentum, min_momentum = hp.one_cycle
        # the seed's three linear phases: lr/div -> lr and back over (100-pct)%, then down to lr/div/100
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=hp.lr, total_steps=self.trainer.estimated_stepping_batches,
            pct_start=(1 - pct / 100) / 2, anneal_strategy="linear", three_phase=True, div_factor=div,
            final_div_factor=100, base_momentum=min_momentum, max_momentum=max_momentum)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
