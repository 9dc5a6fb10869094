"""The generate command (dl2-wgan-generate, `python -m lightning_modules.wgan generate`): samples of a trained WGAN
as PNGs, their grid, and latent walks."""

from pathlib import Path

import torch
from torch import Tensor

from callbacks.errors import UserError, check_output_folder, refuse_a_file_on_the_way, require_at_least_one
from callbacks.images import note_earlier_images, save_png
from lightning_modules.wgan import WGAN, generated, sample
from lightning_modules.wgan_reference import reference_generator


def load_generator(checkpoint: str, device: str) -> WGAN:
    """A WGAN .ckpt, or the WassersteinGAN reference's netG_epoch_N.pth (`reference_generator`)."""
    from lightning_modules import WGAN as Model  # the package's class under `python -m` too
    from lightning_modules.inference import check_device, load_checkpoint, or_reference

    device = check_device(device)  # before either reader: a reference file is moved there too
    try:
        return load_checkpoint(Model, checkpoint, device)
    except UserError as error:  # not a Lightning checkpoint: perhaps the reference's generator file
        model = reference_generator(checkpoint)
        if model is None:
            raise or_reference(error, WGAN.reference_files) from None
        return model.to(device)


def generate(checkpoint: str, out_dir: str = "samples", num_samples: int = 64, batch_size: int = 256,
             seed: int = 0, nrow: int = 8, interpolate: int = 0, device: str = "auto") -> Path:
    """Write `num_samples` generator images from a WGAN checkpoint as PNGs, plus <out_dir>_grid.png of the first nrow**2
    beside the folder (in it, an FID tool reading the folder would take the grid for a sample).

    Args:
        checkpoint: a .ckpt written by `python train.py --system wgan` (e.g. runs/wgan/<run>/checkpoints/last.ckpt),
            a run folder (its last.ckpt), `last` (the newest run's in runs/wgan), or a generator file of
            martinarjovsky/WassersteinGAN (`netG_epoch_24.pth`).
        out_dir: folder for 000000.png, 000001.png, ... (those alone).
        num_samples: how many images.
        batch_size: images per generator call.
        seed: noise seed; the same seed gives the same images, whatever the batch_size.
        nrow: images per row of the grid.
        interpolate: also <out_dir>_interpolation.png beside the folder: nrow rows of this many images each,
            walking the latent space from one noise vector to another along the great circle (slerp; White 2016,
            Sampling Generative Networks), as DCGAN's latent walks (Radford et al. 2016, section 6.1); 0: none.
        device: auto (a GPU when there is one, else the CPU), cpu, cuda, cuda:1, mps.
    """
    from torchvision.utils import make_grid

    require_at_least_one(num_samples=num_samples, batch_size=batch_size, nrow=nrow)
    if interpolate < 0 or interpolate == 1:
        raise UserError(f"--interpolate takes 2 or more images per row, or 0 for none (got {interpolate})")
    out = check_output_folder(out_dir, "--out_dir")
    folder = out.resolve()  # out_dir "." too: ../<this folder's name>_grid.png
    # the grid goes beside the folder: a parent this user cannot write into failed after the samples, a traceback
    refuse_a_file_on_the_way(folder.parent, "--out_dir", f"--out_dir {out_dir}: the grid goes beside it, into "
                                                         f"{folder.parent}: ")
    model = load_generator(checkpoint, device)
    images = sample(model, num_samples, batch_size, seed)
    written = {save_png((image + 1) / 2, out / f"{i:06d}.png") for i, image in enumerate(images)}
    grid = make_grid(images[:nrow * nrow], nrow=nrow, normalize=True, value_range=(-1, 1))
    path = save_png(grid, folder.with_name(f"{folder.name}_grid.png"))
    print(f"{len(images)} images in {out}, the grid in {path}")
    note_earlier_images(out, written)
    if interpolate:
        ends = torch.randn(2, nrow, model.hparams.nz, 1, 1, generator=torch.Generator().manual_seed(seed + 1))
        weights = torch.linspace(0, 1, interpolate)
        noise = torch.stack([slerp(ends[0], ends[1], t) for t in weights], dim=1).flatten(0, 1)  # row by row
        walk = generated(model, noise, batch_size)
        walked = save_png(make_grid(walk, nrow=interpolate, normalize=True, value_range=(-1, 1)),
                          folder.with_name(f"{folder.name}_interpolation.png"))
        print(f"{walked}: {nrow} latent walks of {interpolate} images")
    return path


def slerp(a: Tensor, b: Tensor, t: float) -> Tensor:
    """Spherical interpolation between rows of a and b (each flattened): sin((1-t) w)/sin(w) a + sin(t w)/sin(w) b,
    w the angle between them; linear where they are (nearly) parallel."""
    flat_a, flat_b = a.flatten(1), b.flatten(1)
    cosine = (flat_a * flat_b).sum(1) / (flat_a.norm(dim=1) * flat_b.norm(dim=1))
    omega = cosine.clamp(-1, 1).acos()
    sine = omega.sin()
    linear = sine < 1e-6
    safe = torch.where(linear, torch.ones_like(sine), sine)
    weight_a = torch.where(linear, 1 - t, ((1 - t) * omega).sin() / safe)
    weight_b = torch.where(linear, torch.full_like(sine, t), (t * omega).sin() / safe)
    shape = (-1,) + (1,) * (a.dim() - 1)
    return weight_a.view(shape) * a + weight_b.view(shape) * b
