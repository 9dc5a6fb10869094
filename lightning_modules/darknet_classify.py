"""The classify command (dl2-classify, `python -m lightning_modules.darknet_classifier classify`): a trained
Darknet's top classes for image files, optionally with TTA, an ensemble of checkpoints and a CSV."""

import warnings
from pathlib import Path
from typing import Literal

import torch

from callbacks.errors import UserError, check_output_file, report_partial_failure, require_at_least_one
from lightning_modules.darknet_classifier import tta_average, tta_views
from lightning_modules.darknet_interpret import write_rows


def as_image(image) -> torch.Tensor:
    """An image file's path, a PIL image, or a uint8 (3, H, W) tensor -> uint8 (3, H, W) RGB."""
    from PIL import Image

    from datamodules.decode import _to_tensor, read_rgb
    if isinstance(image, (str, Path)):
        return read_rgb(image)
    if isinstance(image, Image.Image):
        return _to_tensor(image)
    if isinstance(image, torch.Tensor) and image.dtype == torch.uint8 and image.dim() == 3 and image.shape[0] == 3:
        return image
    raise UserError(f"predict takes an image file's path, a PIL image or a uint8 (3, H, W) tensor in 0..255, not "
                    f"{describe(image)}" + ("; from a float image in [0, 1]: (image * 255).round().to(torch.uint8)"
                                            if isinstance(image, torch.Tensor) and image.is_floating_point() else ""))


def describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {str(value.dtype).removeprefix('torch.')} tensor of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"


def squared(image: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (3, H, W) -> uint8 (3, size, size): the shorter side resized to size, the central square cut (the seed's
    val_tfms), as dl2-classify gives each image."""
    from datamodules.style import resize_crop
    if image.shape[1:] == (size, size):
        return image
    return (resize_crop(image.float() / 255, size, crop=True) * 255).round().to(torch.uint8)


def class_probabilities(models: list, images: torch.Tensor, tta: str) -> torch.Tensor:
    """uint8 (N, 3, size, size) on the models' device -> (N, classes) probabilities, normalised as CIFAR10DataModule
    feeds the nets, each net's test-time views averaged, then the nets'."""
    from datamodules.augment import normalize
    from datamodules.cifar10 import SEED_STATS
    x = normalize(images, *SEED_STATS)
    return torch.stack([tta_average(net(tta_views(x, tta)), tta).float().softmax(1) for net in models]).mean(0)


@torch.no_grad()
def predict(model, images, tta: str | None = None) -> tuple | list[tuple]:
    """fastai's `learn.predict` for a DarknetClassifier (`model.predict`): (class name, class index, probabilities)
    for one image, a list of them for a list; each image prepared as dl2-classify does (squared to the size the net
    was trained at, the seed's normalisation, the model's test-time augmentation unless `tta` says otherwise)."""
    single = not isinstance(images, (list, tuple))
    batch = [squared(as_image(image), model.image_size or 32) for image in ([images] if single else images)]
    if not batch:
        return []
    was_training, names = model.training, model.label_names()
    model.eval()
    try:
        device = next(model.parameters()).device
        p = class_probabilities([model], torch.stack(batch).to(device), model.hparams.tta if tta is None else tta)
    finally:
        model.train(was_training)
    results = [(names[int(row.argmax())], int(row.argmax()), row.cpu()) for row in p]
    return results[0] if single else results


@torch.no_grad()
def classify(checkpoint: str, images: list[str], top_k: int = 3,
             tta: Literal["none", "flip", "flip_translate"] | None = None, size: int | None = None,
             batch_size: int = 256, output: str | None = None, device: str = "auto",
             ensemble: list[str] | None = None) -> list[dict]:
    """Classify images with a trained Darknet: each image's most likely classes and their probabilities.

    Args:
        checkpoint: a DarknetClassifier .ckpt (runs/darknet/<run>/checkpoints/last.ckpt or best-*.ckpt).
        images: image files (.png/.jpg/.jpeg/.webp/.bmp/.tif/.ppm) or folders of them, searched at all depths.
        top_k: classes printed per image.
        tta: test-time augmentation; default the model's own (--model.tta at training).
        size: each image is resized so its shorter side is `size`, then its central square cut; default the size
            the model was trained at, kept in its checkpoint (CIFAR-10's 32 unless --data.image_size said otherwise;
            32 for a checkpoint that does not say).
        batch_size: images per forward pass.
        output: also write a CSV: path, prediction, probability, then every class's probability.
        device: auto (a GPU when there is one, else the CPU), cpu, cuda, cuda:1, mps.
        ensemble: more checkpoints of the same classes, e.g. the cycle<k>-step=N.ckpt snapshots that
            TrainingPhaseScheduler(save_cycles=true) keeps: the class probabilities of all the nets are averaged (a
            snapshot ensemble, Huang et al. 2017), each net with the same test-time augmentation.
    """
    from datamodules.decode import UnreadableImageError, image_files, read_rgb
    from lightning_modules import DarknetClassifier as Model  # the package's class under `python -m` too
    from lightning_modules.inference import check_device, load_checkpoint

    require_at_least_one(top_k=top_k, size=32 if size is None else size, batch_size=batch_size)
    if output:
        check_predictions_file(output)
    device = check_device(device)
    files = image_files(images, "pass image files or folders that hold them", recursive=True)
    models = [load_checkpoint(Model, path, device) for path in [checkpoint, *(ensemble or [])]]
    model = models[0]
    given = size
    size = size or model.image_size or 32  # the training size: a net trained at 64px is given 64px images
    for other in models:
        other.hparams.compile = False  # a few images are not worth a compilation
    tta = model.hparams.tta if tta is None else tta
    names = model.label_names()
    for path, other in zip(ensemble or [], models[1:], strict=True):
        if other.label_names() != names:
            raise UserError(f"{path} classifies into {other.label_names()}, {checkpoint} into {names}: an ensemble "
                            "needs nets of the same classes in the same order")
        if given is None and (other.image_size or 32) != size:  # one batch of one size feeds every net
            warnings.warn(f"--ensemble {path} was trained at {other.image_size or 32}px, {checkpoint} at {size}px: "
                          f"every net is given {size}px images (--size sets it)", UserWarning, stacklevel=2)
    top_k = max(1, min(top_k, len(names)))
    results, unreadable = [], []
    for start in range(0, len(files), batch_size):
        batch, read = [], []
        for file in files[start:start + batch_size]:
            try:
                image = read_rgb(file)  # uint8 (3, H, W)
            except UnreadableImageError as error:  # the others are still classified; named at the end
                unreadable.append(str(error))
                continue
            batch.append(squared(image, size))
            read.append(file)
        if not batch:
            continue
        probabilities = class_probabilities(models, torch.stack(batch).to(device), tta).cpu()
        for file, p in zip(read, probabilities, strict=True):
            best = p.argsort(descending=True)[:top_k].tolist()
            results.append({"path": str(file), "prediction": names[best[0]], "probability": float(p[best[0]]),
                            "top": [(names[i], float(p[i])) for i in best],
                            "probabilities": dict(zip(names, p.tolist(), strict=True))})
            print(f"{file}: " + ", ".join(f"{name} {100 * q:.1f}%" for name, q in results[-1]["top"]))
    if unreadable and not results:
        raise UnreadableImageError(unreadable[0] if len(files) == 1 else
                                   f"none of the {len(files)} images could be read: " + "; ".join(unreadable))
    if output:
        write_csv(Path(output), names, results)
        print(f"{len(results)} images classified; probabilities in {output}")
    if unreadable:
        report_partial_failure(f"could not read {len(unreadable)} of {len(files)} images: " + "; ".join(unreadable))
    return results


HEADER = ["path", "prediction", "probability"]


def check_predictions_file(output: str) -> None:
    """--output: a new file, or an earlier CSV of this command (its header), never an image or a checkpoint: `--output
    photo.jpg` or the checkpoint's own name replaced the file with the CSV."""
    file = check_output_file(output, "--output", "predictions.csv")
    if file.exists():
        with open(file, "rb") as existing:
            first = existing.readline(200)
        if not first.startswith(",".join(HEADER).encode()):
            raise UserError(f"--output {output} exists and is not a predictions CSV of dl2-classify (an image, a "
                            "checkpoint?); it is never written over: give a new file name, e.g. predictions.csv")


def write_csv(path: Path, names: list[str], results: list[dict]) -> None:
    """path, prediction, probability, then one column per class."""
    write_rows(path, [*HEADER, *names],
               [[r["path"], r["prediction"], f"{r['probability']:.6f}",
                 *(f"{r['probabilities'][n]:.6f}" for n in names)] for r in results])
