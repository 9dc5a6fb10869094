"""Frechet distance (Heusel et al. 2017) between generated and real images, offline, through torchmetrics.

FID proper uses the TF Inception-v3 weights (`pt_inception-2015-12-05-6726825d.pth`, torch-fidelity's
file), which these machines cannot download: `--features` takes that file when the user has it, or a
DarknetClassifier checkpoint trained on CIFAR-10 (`python train.py --system darknet`), whose pooled
features stand in. Distances in Darknet space compare runs with each other, not with published FIDs.
"""

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance

from datamodules.cifar10 import SEED_STATS


class DarknetFeatures(nn.Module):
    """A trained Darknet minus its classifier: images in [0, 1] -> (N, channels) globally pooled features."""

    def __init__(self, checkpoint: str, image_size: int = 32):
        from lightning_modules.darknet_classifier import DarknetClassifier

        super().__init__()
        net = DarknetClassifier.load_from_checkpoint(checkpoint, map_location="cpu").net
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
        if images.shape[-1] != self.image_size:
            images = F.interpolate(images, size=self.image_size, mode="bilinear", antialias=True, align_corners=False)
        return self.body((images - self.mean) / self.std)


class InceptionFeatures(nn.Module):
    """torch-fidelity's Inception-v3 (2048-d pool features) from a local weights file; images in [0, 1]."""

    num_features = 2048

    def __init__(self, weights_path: str):
        from torchmetrics.image.fid import NoTrainInceptionV3

        super().__init__()
        self.inception = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"],
                                            feature_extractor_weights_path=weights_path)

    def forward(self, images: Tensor) -> Tensor:
        return self.inception((images * 255).round().clamp(0, 255).to(torch.uint8))  # its expected input


def feature_extractor(path: str) -> nn.Module:
    """A `.ckpt` is a DarknetClassifier checkpoint; anything else is an Inception-v3 weights file."""
    return DarknetFeatures(path) if path.endswith(".ckpt") else InceptionFeatures(path)


def frechet_metric(extractor: nn.Module) -> FrechetInceptionDistance:
    return FrechetInceptionDistance(feature=extractor, normalize=True, reset_real_features=False)


@torch.no_grad()
def add_images(metric: FrechetInceptionDistance, batches: Iterable[Tensor], real: bool) -> None:
    """Feed batches of images in [-1, 1] to the metric (which wants [0, 1])."""
    for images in batches:
        metric.update(((images.float() + 1) / 2).clamp(0, 1).to(metric.device), real=real)


def real_batches(data_dir: str, isize: int, num_images: int, batch_size: int = 256, seed: int = 0):
    """num_images random images from a folder tree / CSV / lmdb, squared to isize, in [-1, 1]."""
    from torch.utils.data import DataLoader, Subset

    from datamodules.image_folder import ImageFolderDataModule

    dataset = ImageFolderDataModule(data_dir, isize=isize).build_dataset()
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:num_images]
    for images in DataLoader(Subset(dataset, order.tolist()), batch_size=batch_size, num_workers=2):
        yield images.float() / 127.5 - 1


def fid(checkpoint: str, data_dir: str, features: str, num_samples: int = 10000, batch_size: int = 256,
        seed: int = 0, device: str = "cpu") -> float:
    """Frechet distance between a WGAN's samples and real images in a classifier's feature space.

    Args:
        checkpoint: a WGAN .ckpt from `python train.py --system wgan`.
        data_dir: real images (folder tree or LSUN lmdb), squared to the model's isize like the training data.
        features: a DarknetClassifier .ckpt (`python train.py --system darknet`), or an Inception-v3 weights
            file (torch-fidelity's pt_inception-2015-12-05-6726825d.pth) for FID comparable with papers.
        num_samples: generated images, and real ones (at most all of data_dir); FID papers use 10,000-50,000.
        batch_size: images per step.
        seed: noise and real-sample seed.
        device: cpu, cuda, mps.
    """
    from lightning_modules.wgan import WGAN, sample

    model = WGAN.load_from_checkpoint(checkpoint, map_location=device).eval()
    metric = frechet_metric(feature_extractor(features)).to(device)
    add_images(metric, real_batches(data_dir, model.hparams.isize, num_samples, batch_size, seed), real=True)
    fakes = sample(model, num_samples, batch_size, seed)
    add_images(metric, fakes.split(batch_size), real=False)
    distance = float(metric.compute())
    print(f"Frechet distance ({features}): {distance:.4f}")
    return distance
