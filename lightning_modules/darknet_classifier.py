"""Darknet image classifier on CIFAR-10 (DL2 2018 lesson 12, cifar10-darknet).

The classify command (`python -m lightning_modules.darknet_classifier classify`) is in darknet_classify.py.
"""

import functools
import json
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from callbacks.errors import UserError
from callbacks.progress import logging_step
from lightning_modules.darknet_interpret import confusion_figure, top_losses_figure, write_rows
from lightning_modules.nets import Darknet
from lightning_modules.nets.darknet import init_whitening

TTA_VIEWS = {"none": 1, "flip": 2, "flip_translate": 6}


@functools.cache
def compiled_call(options: str = "{}"):
    """torch.compile of `net(x)`, made once per process and options (as JSON, so nested dicts can be cache keys):
    a new net of the same shape (the next seed of a benchmark) is an input of the same graph, so only the first
    run pays the compilation."""
    return torch.compile(lambda net, x: net(x), **json.loads(options))


def tta_views(images: torch.Tensor, tta: str) -> torch.Tensor:
    """The test-time views stacked on the batch: the images, their mirror, and for flip_translate both shifted one
    pixel up-left and down-right (reflect-padded) with their mirrors (airbench's tta_level 0, 1, 2)."""
    if tta == "none":
        return images
    views = [images, images.flip(-1)]
    if tta == "flip_translate":
        height, width = images.shape[-2:]
        padded = F.pad(images, (1,) * 4, mode="reflect")
        for shifted in (padded[..., :height, :width], padded[..., 2:, 2:]):
            views += [shifted, shifted.flip(-1)]
    return torch.cat(views)


def tta_average(logits: torch.Tensor, tta: str) -> torch.Tensor:
    """Mean logits of the views: half on the plain pair, half on the four translated ones."""
    views = logits.view(TTA_VIEWS[tta], -1, *logits.shape[1:])
    if tta == "flip_translate":
        return views[:2].mean(0) / 2 + views[2:].mean(0) / 2
    return views.mean(0)


class DarknetClassifier(L.LightningModule):
    """Trains `Darknet` with SGD and the seed's 1cycle schedule (the net is `self.net`).

    The speed options (issue 13; off by default, so the seed's recipe is unchanged) follow airbench94 (Jordan 2024,
    arXiv:2404.00498) and the DAWNBench entries; BENCHMARKS.md says what each was worth on the CPU.

    Args:
        num_blocks: ResLayers per group; the seed's [1, 2, 4, 6, 3].
        nf: channels of the stem; each group doubles them.
        bottleneck: ResLayer inner width over its input width; the seed 0.5, its Wide-ResNet homework 2.
        checkpoint_residuals: recompute each ResLayer in backward to keep only its input (less memory).
        zero_init_residual: start every ResLayer as the identity (its last BatchNorm weight 0); without it
            the default net diverged within 10 steps on CIFAR-10 here.
        num_classes: output classes.
        lr: peak learning rate (the seed: 1.3 at batch 256 for a 30-epoch cycle; a 1-epoch cycle at 1.3
            diverged here, so configs/darknet.yaml uses 0.4).
        momentum: SGD momentum when no schedule sets it.
        weight_decay: L2 penalty on every parameter, as fastai 0.7 applied it (the seed: 1e-4).
        nesterov: Nesterov momentum.
        label_smoothing: cross-entropy label smoothing.
        one_cycle: the seed's `use_clr_beta=(div, pct, max_mom, min_mom)` run by torch's OneCycleLR;
            null for a constant lr, or when a TrainingPhaseScheduler callback sets lr and momentum.
        widths: channels per group (null: nf doubled per group); see `Darknet`.
        strides: stride per group (null: the seed's 2, 1, 2, 2, ...).
        downsample: "conv" (the seed's stride-2 conv), "maxpool" (conv, BatchNorm, LeakyReLU, max-pool) or
            "pool_first" (conv, max-pool, BatchNorm, LeakyReLU, as airbench94).
        whiten: k for a frozen kxk patch-whitening stem, 0 for the seed's conv stem.
        whiten_images: training images (plain, as airbench94's) whose patches set the whitening, in `setup`.
        no_decay_bn_bias: no weight decay on BatchNorm parameters and biases (a TrainingPhase's one weight_decay
            leaves them at 0 too: the groups' `weight_decay_scale`).
        bn_bias_lr_scale: lr factor of the BatchNorm biases (airbench94: 64); kept by OneCycleLR and by the
            TrainingPhaseScheduler (the group's `lr_scale`). Their weight decay per step (lr * weight_decay) stays
            that of the other decayed parameters, as airbench94's: the group's weight_decay is divided by it (a
            TrainingPhase's one weight_decay too: the group's `weight_decay_scale`).
        tta: test-time augmentation in validation and test: none, flip, or flip_translate (flip plus one-pixel
            shifts, 6 views in one forward pass).
        channels_last: NHWC weights and inputs (faster convolutions on tensor cores).
        compile: torch.compile the net's forward, once per process (`compiled_call`).
        compile_options: keyword arguments of torch.compile, e.g. {mode: max-autotune}.
        bn_momentum: PyTorch's momentum of the BatchNorm running statistics (the seed's 0.01; airbench94's 0.4).
        bn_weight: false freezes the BatchNorm weights at 1 (airbench94).
        logit_scale: a factor on the logits (airbench94: 1/9).
        interpret: after the test, what fastai's ClassificationInterpretation shows: the confusion matrix
            (images/test_confusion_matrix.png), each class's accuracy (`test/class_acc/<class>`) and the
            `top_losses` test images with the highest loss, titled prediction / actual / loss / probability of
            the actual class (images/test_top_losses.png); all also W&B images.
        top_losses: how many of them (0: none).
    """

    # the training signal callbacks.ProgressBar shows, read once per logging interval (not prog_bar=True,
    # which Lightning converts to a Python number after every batch)
    progress_bar_metrics = ("train/loss",)

    def __init__(self, num_blocks: list[int] = (1, 2, 4, 6, 3), nf: int = 32, bottleneck: float = 0.5,
                 checkpoint_residuals: bool = False, zero_init_residual: bool = True, num_classes: int = 10,
                 lr: float = 1.3,
                 momentum: float = 0.9, weight_decay: float = 1e-4, nesterov: bool = False,
                 label_smoothing: float = 0.0,
                 one_cycle: tuple[float, float, float, float] | None = (20, 20, 0.95, 0.85),
                 widths: list[int] | None = None, strides: list[int] | None = None, downsample: str = "conv",
                 whiten: int = 0, whiten_images: int = 2000, no_decay_bn_bias: bool = False,
                 bn_bias_lr_scale: float = 1.0, tta: str = "none", channels_last: bool = False,
                 compile: bool = False, compile_options: dict | None = None, bn_momentum: float = 0.01,
                 bn_weight: bool = True, logit_scale: float = 1.0, interpret: bool = True, top_losses: int = 9):
        super().__init__()
        self.save_hyperparameters()
        if tta not in TTA_VIEWS:
            raise UserError(f"tta must be one of {', '.join(TTA_VIEWS)} (got {tta!r})")
        if top_losses < 0:
            raise UserError(f"top_losses must be 0 (none) or more (got {top_losses})")
        if num_classes < 2:  # torchmetrics' accuracy raised a ValueError mid-construction, with a traceback
            raise UserError(f"num_classes must be at least 2 (got {num_classes}): a classifier chooses between "
                            f"classes (CIFAR-10: 10)")
        if not 0 <= label_smoothing <= 1:  # torch's cross-entropy raised at the first training step
            raise UserError(f"label_smoothing must be between 0 and 1 (got {label_smoothing}); e.g. 0.1, or 0 for "
                            f"none")
        self.net = Darknet(list(num_blocks), num_classes, nf, bottleneck, checkpoint_residuals, zero_init_residual,
                           widths, strides, downsample, whiten, bn_momentum, bn_weight, logit_scale)
        if channels_last:
            self.net.to(memory_format=torch.channels_last)
        self.val_accuracy = MulticlassAccuracy(num_classes, average="micro")
        self.test_accuracy = MulticlassAccuracy(num_classes, average="micro")
        # evaluation losses as means over images, summed with their count across ranks: a batch mean logged with
        # sync_dist=True averages the ranks' means (Lightning issue #21859); a NaN loss keeps the mean NaN
        self.val_loss, self.test_loss = (MeanMetric(nan_strategy=float("nan")) for _ in range(2))
        self.class_names: list[str] | None = None  # the data's, saved in checkpoints for `classify`
        self.image_size: int | None = None  # the size the data gave the net (its image_size), saved in checkpoints
        if interpret:
            self.test_confusion = MulticlassConfusionMatrix(num_classes)  # summed over ranks by torchmetrics
        self.worst: dict[str, torch.Tensor] | None = None  # the test's highest losses so far, on this rank

    def label_names(self) -> list[str]:
        """The data's class names (kept in checkpoints), else the class numbers."""
        return self.class_names or [str(i) for i in range(self.hparams.num_classes)]

    def setup(self, stage: str) -> None:
        classes = getattr(self.trainer.datamodule, "classes", None)
        if classes and len(classes) < 2:  # "set --model.num_classes 1" would be refused in turn
            raise UserError(f"the data has {len(classes)} class ({', '.join(map(str, classes))}); a classifier needs "
                            f"at least 2: one folder per class in train/ and test/")
        if classes and len(classes) != self.hparams.num_classes:
            raise UserError(f"the data has {len(classes)} classes but the model {self.hparams.num_classes}; "
                             f"set --model.num_classes {len(classes)}")
        if classes:
            self.class_names = list(classes)
        if stage == "fit" and self.net.whitening is not None:
            # from the data, so a checkpoint restored afterwards (resume, test) keeps its own filters
            init_whitening(self.net.whitening, self.training_sample(self.hparams.whiten_images))

    def training_sample(self, count: int) -> torch.Tensor:
        """`count` training images, plain (normalised, not augmented), on the training device."""
        sample = getattr(self.trainer.datamodule, "plain_training_images", None)
        if sample is None:
            raise UserError("whiten takes its training images from the data module's plain_training_images, as "
                             "CIFAR10DataModule's (trainer.fit(model, datamodule=...)); or set --model.whiten 0")
        return sample(count, self.trainer.strategy.root_device)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.hparams.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        if self.hparams.compile:
            options = json.dumps(self.hparams.compile_options or {}, sort_keys=True)
            return compiled_call(options)(self.net, images)
        return self.net(images)

    def predict(self, images, tta: str | None = None):
        """fastai's `learn.predict`: (class name, class index, probabilities) of an image file's path, a PIL image or
        a uint8 (3, H, W) tensor, a list of them for a list; prepared as dl2-classify prepares its files."""
        from lightning_modules.darknet_classify import predict
        return predict(self, images, tta)

    def loss(self, logits, labels, reduction: str = "mean"):
        return F.cross_entropy(logits, labels, label_smoothing=self.hparams.label_smoothing, reduction=reduction)

    def training_step(self, batch, batch_idx):
        images, labels = batch
        loss = self.loss(self(images), labels)
        if logging_step(self):  # not every step: self.log costs host time (see there)
            self.log("train/loss", loss.detach())  # kept on the device; Lightning reads it every log_every_n_steps
        return loss

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, "val", self.val_accuracy, self.val_loss)

    def test_step(self, batch, batch_idx):
        logits, losses = self._evaluate(batch, "test", self.test_accuracy, self.test_loss)
        if self.hparams.interpret:
            self.test_confusion.update(logits, batch[1])
            # ours (TensorBatches) names each batch's images by position; a test_step called alone has no loader
            loader = getattr(self._trainer, "test_dataloaders", None)
            indices = loader.indices(batch_idx) if hasattr(loader, "indices") else None
            self.keep_worst(batch[0], batch[1], logits, losses, indices)

    def _evaluate(self, batch, split, accuracy, loss):
        images, labels = batch
        tta = self.hparams.tta
        logits = tta_average(self(tta_views(images, tta)), tta)
        accuracy(logits, labels)
        losses = self.loss(logits, labels, reduction="none")  # one value per image
        loss.update(losses)
        self.log(f"{split}/loss", loss)
        self.log(f"{split}/acc", accuracy, prog_bar=True)
        return logits, losses

    # ---- interpretation of the test (fastai's ClassificationInterpretation) -------------------------------
    def on_test_epoch_start(self) -> None:
        self.worst = None

    def keep_worst(self, images, labels, logits, losses, indices=None) -> None:
        """This rank's `top_losses` highest-loss test images so far, with their labels, predictions, the
        probability of the actual class and their positions in the test split (`indices`, -1 when the loader does
        not say); on the device (no host sync per batch)."""
        if not self.hparams.top_losses:
            return
        keep = losses.topk(min(self.hparams.top_losses, len(losses))).indices  # only these can enter the top k
        logits, labels = logits[keep], labels[keep]
        probability = logits.float().softmax(1).gather(1, labels[:, None])[:, 0]
        index = torch.full_like(labels, -1) if indices is None else indices.to(labels.device)[keep]
        batch = {"loss": losses[keep].detach().float(), "image": images[keep].detach().float(), "label": labels,
                 "prediction": logits.argmax(1), "probability": probability, "index": index}
        if self.worst is not None:
            batch = {k: torch.cat([self.worst[k], v]) for k, v in batch.items()}
        order = batch["loss"].topk(min(self.hparams.top_losses, len(batch["loss"]))).indices
        self.worst = {k: v[order] for k, v in batch.items()}

    def on_test_epoch_end(self) -> None:
        if not self.hparams.interpret:
            return
        names = self.label_names()
        matrix = self.test_confusion.compute()  # rows: actual class, columns: predicted
        counts = matrix.sum(1)
        per_class = matrix.diagonal() / counts.clamp(min=1)
        for name, value, count in zip(names, per_class, counts.tolist(), strict=True):
            if count:  # a class without test images has no accuracy (0 would say it was always wrong)
                # equal on every rank (torchmetrics synced it): sync_dist averages equal values, and keeps Lightning's
                # DDP warning off the console
                self.log(f"test/class_acc/{name}", value.float(), sync_dist=True)
        self.test_confusion.reset()
        from callbacks.images import log_figure
        matrix, worst = matrix.cpu(), self.gather_worst()  # a collective: every rank
        if not self.trainer.is_global_zero:  # the figures are rank 0's to write (drawn elsewhere for nothing: ~1 s)
            return
        log_figure(self.trainer, "test/confusion_matrix", confusion_figure(matrix, names))
        if worst is not None:
            log_figure(self.trainer, "test/top_losses", top_losses_figure(worst, names))
        # the numbers behind the figures, for a spreadsheet or pandas
        folder = Path(self.trainer.default_root_dir)
        write_rows(folder / "test_confusion_matrix.csv", ["actual \\ predicted", *names],
                   [[name, *row] for name, row in zip(names, matrix.tolist(), strict=True)])
        if worst is not None:
            # which images: fastai's top_losses gives their indices; the file too when the data names its files
            files = getattr(self.trainer.datamodule, "test_files", lambda: None)() or []
            write_rows(folder / "test_top_losses.csv",
                       ["loss", "actual", "prediction", "probability", "index", "file"],
                       [[f"{loss:.6f}", names[label], names[prediction], f"{probability:.6f}",
                         index if index >= 0 else "", files[index] if 0 <= index < len(files) else ""]
                        for loss, label, prediction, probability, index in zip(
                            worst["loss"].tolist(), worst["label"].tolist(), worst["prediction"].tolist(),
                            worst["probability"].tolist(), worst["index"].tolist(), strict=True)])

    def gather_worst(self) -> dict[str, torch.Tensor] | None:
        """The `top_losses` worst over all ranks, on the CPU (a few images: pickled by all_gather_object, which also
        takes a rank that saw no test image)."""
        k = self.hparams.top_losses
        worst = None if self.worst is None else {name: v.cpu() for name, v in self.worst.items()}
        if not k:
            return None
        if self.trainer.world_size > 1:
            shares = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(shares, worst)
            shares = [share for share in shares if share is not None]
            if not shares:
                return None
            merged = {name: torch.cat([share[name] for share in shares]) for name in shares[0]}
            order = merged["loss"].topk(min(k, len(merged["loss"]))).indices
            worst = {name: v[order] for name, v in merged.items()}
        return worst


    def parameter_groups(self) -> list[dict]:
        """One group; or, with no_decay_bn_bias or bn_bias_lr_scale, weights / BatchNorm weights and other biases /
        BatchNorm biases, each with its weight decay and `lr_scale` (frozen parameters left out)."""
        hp = self.hparams
        if not hp.no_decay_bn_bias and hp.bn_bias_lr_scale == 1:
            return [{"params": [p for p in self.parameters() if p.requires_grad]}]
        weights, no_decay, bn_biases = [], [], []
        for module in self.modules():
            is_norm = isinstance(module, nn.modules.batchnorm._BatchNorm)
            for name, p in module.named_parameters(recurse=False):
                if not p.requires_grad:
                    continue
                if is_norm and name == "bias":
                    bn_biases.append(p)
                else:
                    (no_decay if is_norm or name == "bias" else weights).append(p)
        exempt = 0.0 if hp.no_decay_bn_bias else 1.0
        # SGD's decay step is lr * weight_decay * p: the BatchNorm biases' lr_scale is taken out of their decay, so
        # it scales their learning rate but not their weight decay, as airbench94's bias_scaler
        # named: LearningRateMonitor's charts lr-SGD/weights, lr-SGD/bn_weights_and_biases, lr-SGD/bn_biases (not
        # /pg1, /pg2, /pg3)
        # weight_decay_scale: the share of the weight decay a group takes, of ours and of a TrainingPhase's
        groups = [{"params": weights, "weight_decay_scale": 1.0, "lr_scale": 1.0, "name": "weights"},
                  {"params": no_decay, "weight_decay_scale": exempt, "lr_scale": 1.0, "name": "bn_weights_and_biases"},
                  {"params": bn_biases, "weight_decay_scale": exempt / (hp.bn_bias_lr_scale or 1),  # scale 0: frozen
                   "lr_scale": hp.bn_bias_lr_scale, "name": "bn_biases"}]
        groups = [g for g in groups if g["params"]]
        for group in groups:
            group["lr"] = hp.lr * group["lr_scale"]
            group["weight_decay"] = hp.weight_decay * group["weight_decay_scale"]
        return groups

    inference_checkpoint_keys = ("class_names", "image_size")  # what dl2-export keeps beside the weights (classify)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.class_names:
            checkpoint["class_names"] = self.class_names
        # the size the net is trained at now (--data.image_size, or the one a TrainingPhase's data set), for classify
        size = getattr(getattr(self._trainer, "datamodule", None), "image_size", None) or self.image_size
        if size:
            checkpoint["image_size"] = int(size)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.class_names = checkpoint.get("class_names", self.class_names)
        # checkpoints before the key: the data module's image_size hyper-parameter, when Lightning saved it
        self.image_size = checkpoint.get("image_size") or (checkpoint.get("datamodule_hyper_parameters")
                                                           or {}).get("image_size") or self.image_size
        data = getattr(self._trainer, "datamodule", None)
        given = getattr(data, "image_size", None)
        if (self.image_size and given and given != self.image_size
                and self._trainer.state.fn in ("validate", "test")):
            rank_zero_warn(f"the checkpoint's net was trained on {self.image_size}px images, the data gives it "
                           f"{given}px ones (--data.image_size {given}): add --data.image_size {self.image_size} to "
                           f"evaluate it as it was trained")

    def configure_optimizers(self):
        hp = self.hparams
        groups = self.parameter_groups()
        optimizer = torch.optim.SGD(groups, lr=hp.lr, momentum=hp.momentum,
                                    weight_decay=hp.weight_decay, nesterov=hp.nesterov)
        if hp.one_cycle is None:
            return optimizer
        div, pct, max_momentum, min_momentum = hp.one_cycle
        # the seed's three linear phases: lr/div -> lr and back over (100-pct)%, then down to lr/div/100
        schedule = OneCycleThenHold(
            optimizer, max_lr=[hp.lr * g.get("lr_scale", 1.0) for g in groups],
            total_steps=self.trainer.estimated_stepping_batches,
            pct_start=(1 - pct / 100) / 2, anneal_strategy="linear", three_phase=True, div_factor=div,
            final_div_factor=100, base_momentum=min_momentum, max_momentum=max_momentum)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


class OneCycleThenHold(torch.optim.lr_scheduler.OneCycleLR):
    """torch's OneCycleLR, holding its final lr and momentum past total_steps where torch raises: a run resumed over
    more epochs keeps the cycle it began with (as the TrainingPhaseScheduler's recipes) and trains on at its end."""

    def get_lr(self):
        if self.last_epoch < self.total_steps:
            return super().get_lr()
        if self.last_epoch == self.total_steps + 1:  # the first step past the cycle (a run that ends with it gets here)
            rank_zero_warn(f"--model.one_cycle was planned over {self.total_steps} steps, the training the run began "
                           f"with, and is kept: the steps after it train at its final lr. For a new cycle from these "
                           f"weights, start a new run with --init_from <this run's checkpoint>")
        return [group["lr"] for group in self.optimizer.param_groups]


if __name__ == "__main__":  # the package's functions (lightning_modules.commands), not this copy's
    from lightning_modules.commands import darknet

    darknet()
