"""The `fid` command: Frechet distance between a WGAN checkpoint's samples and real images, after training.

The feature networks and the metric are in lightning_modules/fid.py, shared with the distance the WGAN and
the CycleGAN log while training (`--model.fid_features`).
"""

import warnings

import torch

from callbacks.errors import UserError, own_flags, require_at_least_one
from lightning_modules.fid import (  # noqa: F401
    DarknetFeatures,
    InceptionFeatures,
    add_images,
    feature_extractor,
    frechet_metric,
    to_metric_device,
)


def real_batches(data_dir: str, isize: int, num_images: int, batch_size: int = 256, seed: int = 0):
    """The first num_images readable images of a seeded random order of a folder tree / CSV / lmdb, squared to isize,
    in [-1, 1]. An unreadable file is left out with a warning naming it and the next image of the order read in its
    place, so no image counts twice (the training loader's stand-in, the next file, would). Any isize: the
    generator's (a reference MLP_G's may be 28px), not one to train a DCGAN at."""
    from torch.utils.data import Subset

    from datamodules.image_folder import ImageFolderDataModule, each_image_once
    from datamodules.workers import loader

    dataset, options = each_image_once(ImageFolderDataModule(data_dir, isize=isize).build_dataset(any_isize=True))
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed)).tolist()
    start, left = 0, num_images
    while left > 0 and start < len(order):  # a second pass only for the places of unreadable files
        chunk, start = order[start:start + left], start + left
        for images in loader(Subset(dataset, chunk), batch_size, num_workers=2, **options):
            left -= len(images)
            if len(images):
                yield images.float() / 127.5 - 1


def fid(checkpoint: str, data_dir: str, features: str, num_samples: int = 10000, batch_size: int = 256,
        seed: int = 0, device: str = "auto") -> float:
    """Frechet distance between a WGAN's samples and real images in a classifier's feature space.

    Args:
        checkpoint: a WGAN .ckpt from `python train.py --system wgan` (a run folder: its last.ckpt; `last`: the
            newest run's in runs/wgan), or a generator file of martinarjovsky/WassersteinGAN (`netG_epoch_24.pth`).
        data_dir: real images (folder tree or LSUN lmdb), squared to the model's isize like the training data.
        features: a DarknetClassifier .ckpt (`python train.py --system darknet`), or an Inception-v3 weights
            file (torch-fidelity's pt_inception-2015-12-05-6726825d.pth) for FID comparable with papers.
        num_samples: generated images, and real ones (at most all of data_dir); FID papers use 10,000-50,000.
        batch_size: images per step.
        seed: noise and real-sample seed.
        device: auto (a GPU when there is one, else the CPU), cpu, cuda, cuda:1, mps.
    """
    from lightning_modules.wgan import sample
    from lightning_modules.wgan_generate import load_generator

    require_at_least_one(num_samples=num_samples, batch_size=batch_size)
    if num_samples < 2:
        raise UserError(f"--num_samples must be at least 2 (got {num_samples}): a covariance needs two images; FID "
                        "papers use 10,000-50,000")
    model = load_generator(checkpoint, device)
    metric = to_metric_device(frechet_metric(feature_extractor(features)), model.device)  # the device --device chose
    with own_flags({"--data.data_dir": "the data_dir argument"}):  # ImageFolderDataModule's errors
        add_images(metric, real_batches(data_dir, model.hparams.isize, num_samples, batch_size, seed), real=True)
    real = int(metric.real_features_num_samples)  # the real images the distance saw
    if real < 2:  # torchmetrics' compute would raise a RuntimeError
        raise UserError(f"{data_dir} holds {real} image: a Frechet distance needs two real images or more (a "
                        "covariance); give data_dir more images")
    fakes = sample(model, num_samples, batch_size, seed)
    add_images(metric, fakes.split(batch_size), real=False)
    distance = float(metric.compute())
    print(f"Frechet distance ({features}): {distance:.4f}, {num_samples} generated and {real} real images")
    if real < num_samples:
        warnings.warn(f"{data_dir} holds {real} readable images, fewer than --num_samples {num_samples}: the distance "
                      "compares sets of different sizes, and FID grows as sets shrink; give more real images or "
                      "lower --num_samples", stacklevel=2)
    return distance
