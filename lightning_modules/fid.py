"""Frechet distance (Heusel et al. 2017) for the GANs: feature networks, and the metric in the validation loop.

FID proper uses the TF Inception-v3 weights (`pt_inception-2015-12-05-6726825d.pth`, torch-fidelity's file),
which torchmetrics loads from a local path (its `feature_extractor_weights_path`); these machines cannot
download it. The other feature network is a DarknetClassifier checkpoint trained on CIFAR-10
(`python train.py --system darknet`): its pooled features stand in, and its distances compare runs with
each other, not with published FIDs.

In training (`fid_features` of the WGAN and the CycleGAN), the metrics live outside the module's tree: the
feature net and the statistics stay out of `state_dict` and checkpoints. The real images' statistics are
computed at the first validation and kept (`reset_real_features=False`); a resumed run computes them again.
Under DDP each rank holds the statistics of its share of the images and torchmetrics sums them across ranks
in `compute`.
"""

from collections.abc import Iterable
from pathlib import Path

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance

from callbacks.errors import UserError
from datamodules.cifar10 import SEED_STATS


class DarknetFeatures(nn.Module):
    """A trained Darknet minus its classifier: images in [0, 1] -> (N, channels) globally pooled features."""

    def __init__(self, checkpoint: str, image_size: int = 32):
        from lightning_modules.darknet_classifier import DarknetClassifier
        from lightning_modules.inference import load_checkpoint

        super().__init__()
        net = load_checkpoint(DarknetClassifier, checkpoint).net
        self.body = net.layers[:-1]  # through AdaptiveAvgPool2d and Flatten
        self.num_features = net.layers[-1].in_features
        self.image_size = image_size  # the size it was trained at
        self.register_buffer("mean", torch.tensor(SEED_STATS[0]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(SEED_STATS[1]).view(1, 3, 1, 1))
        self.eval().requires_grad_(False)

    def train(self, mode: bool = True):
        return super().train(False)  # batchnorm stays in eval mode whatever torchmetrics asks

    def forward(self, images: Tensor) -> Tensor:
        images = images.float()
        if images.shape[-2:] != (self.image_size, self.image_size):  # a tall image too, not only a wide one
            images = F.interpolate(images, size=self.image_size, mode="bilinear", antialias=True, align_corners=False)
        return self.body((images - self.mean) / self.std)


class InceptionFeatures(nn.Module):
    """torch-fidelity's Inception-v3 (2048-d pool features) from a local weights file; images in [0, 1]."""

    num_features = 2048

    def __init__(self, weights_path: str):
        from torchmetrics.image.fid import NoTrainInceptionV3

        super().__init__()
        # antialias off: TF 1.x's bilinear resize to 299px, as torch-fidelity and the original FID code do
        self.inception = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"],
                                            feature_extractor_weights_path=weights_path, antialias=False)

    def forward(self, images: Tensor) -> Tensor:
        return self.inception((images * 255).round().clamp(0, 255).to(torch.uint8))  # its expected input


FEATURES_FIX = ("pass a DarknetClassifier .ckpt or run folder (python train.py --system darknet) or torch-fidelity's "
                "pt_inception-2015-12-05-6726825d.pth")


def feature_file(path: str) -> str:
    """The feature network's file: a Darknet run folder or `last` stand for its last.ckpt, as in the inference
    commands; a UserError when there is none."""
    from lightning_modules.darknet_classifier import DarknetClassifier
    from lightning_modules.inference import checkpoint_file

    if path == "last" or Path(path).is_dir():
        path = checkpoint_file(path, DarknetClassifier)
    if not Path(path).is_file():
        raise UserError(f"no feature network file at {path}; {FEATURES_FIX}")
    return path


def feature_extractor(path: str) -> nn.Module:
    """A DarknetClassifier checkpoint (a .ckpt, or any Lightning checkpoint whatever its name; as feature_file takes
    it) or torch-fidelity's Inception-v3 weights file."""
    from lightning_modules.inference import read_checkpoint

    path = feature_file(path)
    if path.endswith(".ckpt"):  # read by load_checkpoint, whose errors say what is wrong with a checkpoint
        return DarknetFeatures(path)
    try:
        read_checkpoint(path)
    except UserError:  # not a Lightning checkpoint: Inception weights, or neither
        pass
    else:
        return DarknetFeatures(path)
    try:
        return InceptionFeatures(path)
    except Exception as error:  # torchmetrics' load of a file that is not those weights: a pickle or a key error
        raise UserError(f"{path} is neither a Lightning checkpoint nor Inception-v3 weights ({type(error).__name__}: "
                        f"{str(error).strip().splitlines()[0][:120] if str(error).strip() else ''}); {FEATURES_FIX}"
                        ) from None


def frechet_metric(extractor: nn.Module) -> FrechetInceptionDistance:
    return FrechetInceptionDistance(feature=extractor, normalize=True, reset_real_features=False)


def to_metric_device(metric: FrechetInceptionDistance, device: torch.device) -> FrechetInceptionDistance:
    """The metric on the device the images come from; the CPU for Apple's MPS, which has no float64 for its sums."""
    return metric.to("cpu" if device.type == "mps" else device)


@torch.no_grad()
def add_images(metric: FrechetInceptionDistance, batches: Iterable[Tensor], real: bool) -> None:
    """Feed batches of images in [-1, 1] to the metric (which wants [0, 1]); features in fp32 under autocast.
    One-channel images (a generator of the WassersteinGAN reference's --nc 1) go in as gray RGB, as FID tools take
    grayscale images: the feature nets read RGB."""
    for images in batches:
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        elif images.shape[1] != 3:
            raise UserError(f"a Frechet distance compares RGB (or grayscale) images, and these have {images.shape[1]} "
                            "channels; give a generator of 3 channels (nc 3) or 1")
        images = ((images.float() + 1) / 2).clamp(0, 1).to(metric.device)
        with torch.autocast(images.device.type, enabled=False):
            metric.update(images, real=real)


def forget_everything(metric: FrechetInceptionDistance) -> None:
    """Reset the real statistics too (reset() keeps them): after Lightning's sanity check, which saw a few batches."""
    metric.reset_real_features = True
    metric.reset()
    metric.reset_real_features = False


class FrechetValidation:
    """The metrics of one system, keyed by name (`fid`, or `fid_a2b` and `fid_b2a`), sharing one feature net.

    A plain object, not an nn.Module, so the module that holds it does not save it. `off` when no feature
    network is given: then the fit skips validation entirely (`limit_val_batches` 0 until the fit ends) and says so
    once.
    """

    def __init__(self, features: str | None, names: Iterable[str]):
        self.path, self.names = features, tuple(names)
        self.metrics: dict[str, FrechetInceptionDistance] = {}
        self.reals_cached = False  # the real statistics are complete (a full validation saw every real image)
        self.user_limit: int | float | None = None  # the Trainer's limit_val_batches while the fit has it at 0

    @property
    def off(self) -> bool:
        return not self.path

    def check(self, trainer) -> None:
        """At fit start: fail early on a missing file; without features, no validation at all (no cost)."""
        if self.off:
            if trainer.limit_val_batches != 0:
                rank_zero_info("val/fid is off: set --model.fid_features to a DarknetClassifier .ckpt or to "
                               "pt_inception-2015-12-05-6726825d.pth to log a Frechet distance while training")
            self.user_limit, trainer.limit_val_batches = trainer.limit_val_batches, 0  # read after this hook
        else:  # a missing file named now; a run folder or `last` as its file, read once by build
            self.path = feature_file(self.path)

    def release(self, trainer) -> None:
        """At fit end: the Trainer's own limit_val_batches back (a notebook's Trainer validates its next model)."""
        if self.user_limit is not None:
            trainer.limit_val_batches, self.user_limit = self.user_limit, None

    def refuse_validate_when_off(self, trainer, what: str, alternative: str = "") -> None:
        """`validate` without a feature network would validate nothing, print nothing and end with status 0."""
        if self.off and trainer.state.fn == "validate":
            raise UserError(f"validate: {what}, off without --model.fid_features; give a DarknetClassifier .ckpt or "
                            f"pt_inception-2015-12-05-6726825d.pth there{alternative}")

    def build(self, device: torch.device) -> None:
        if not self.metrics:
            extractor = feature_extractor(self.path)
            self.metrics = {name: frechet_metric(extractor) for name in self.names}
        for metric in self.metrics.values():
            to_metric_device(metric, device)
            if not torch.is_inference_mode_enabled():  # a fit's validation after trainer.validate's inference mode:
                for name, value in metric.metric_state.items():  # its states would refuse in-place updates
                    if value.is_inference():
                        setattr(metric, name, value.clone())

    def add(self, name: str, images: Tensor, real: bool) -> None:
        if real and self.reals_cached:
            return
        add_images(self.metrics[name], [images], real)

    def compute(self, sanity_checking: bool) -> dict[str, Tensor]:
        """The distances (synced across ranks by torchmetrics), fakes forgotten; nothing after the sanity check."""
        if sanity_checking:
            for metric in self.metrics.values():
                forget_everything(metric)
            self.reals_cached = False  # the next validation reads the real sample again
            return {}
        values = {}
        for name, metric in self.metrics.items():
            try:
                values[name] = metric.compute()
            except RuntimeError as error:  # torchmetrics' own check of the counts (summed over the ranks)
                if "More than one sample is required" not in str(error):
                    raise
                raise UserError(f"val/{name} needs two real and two generated images or more (a covariance each); "
                                "give the validation more images (the WGAN's --data.val_size, the CycleGAN's testA "
                                "and testB) or set --model.fid_features null") from None
        for metric in self.metrics.values():
            metric.reset()  # the fakes only: reset_real_features=False
        self.reals_cached = True
        return values
