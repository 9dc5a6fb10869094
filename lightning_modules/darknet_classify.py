"""The classify command (dl2-classify, `python -m lightning_modules.darknet_classifier classify`): a trained
Darknet's top classes for image files, optionally with TTA, an ensemble of checkpoints and a CSV."""

from pathlib import Path
from typing import Literal

import torch

from callbacks.errors import UserError, check_output_file, report_partial_failure, require_at_least_one
from lightning_modules.darknet_classifier import tta_average, tta_views
from lightning_modules.darknet_interpret import write_rows


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
    from datamodules.augment import normalize
    from datamodules.cifar10 import SEED_STATS
    from datamodules.decode import UnreadableImageError, image_files, read_rgb
    from datamodules.style import resize_crop
    from lightning_modules import DarknetClassifier as Model  # the package's class under `python -m` too
    from lightning_modules.inference import check_device, load_checkpoint

    require_at_least_one(top_k=top_k, size=32 if size is None else size, batch_size=batch_size)
    if output:
        check_output_file(output, "--output", "predictions.csv")
    device = check_device(device)
    files = image_files(images, "pass image files or folders that hold them", recursive=True)
    models = [load_checkpoint(Model, path, device) for path in [checkpoint, *(ensemble or [])]]
    model = models[0]
    size = size or model.image_size or 32  # the training size: a net trained at 64px is given 64px images
    for other in models:
        other.hparams.compile = False  # a few images are not worth a compilation
    tta = model.hparams.tta if tta is None else tta
    names = model.label_names()
    for path, other in zip(ensemble or [], models[1:], strict=True):
        if other.label_names() != names:
            raise UserError(f"{path} classifies into {other.label_names()}, {checkpoint} into {names}: an ensemble "
                            "needs nets of the same classes in the same order")
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
            if image.shape[1:] != (size, size):
                image = (resize_crop(image.float() / 255, size, crop=True) * 255).round()
            batch.append(image.float())
            read.append(file)
        if not batch:
            continue
        x = normalize(torch.stack(batch).to(device), *SEED_STATS)  # as CIFAR10DataModule feeds the model
        probabilities = torch.stack([tta_average(net(tta_views(x, tta)), tta).float().softmax(1)
                                     for net in models]).mean(0).cpu()
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


def write_csv(path: Path, names: list[str], results: list[dict]) -> None:
    """path, prediction, probability, then one column per class."""
    write_rows(path, ["path", "prediction", "probability", *names],
               [[r["path"], r["prediction"], f"{r['probability']:.6f}",
                 *(f"{r['probabilities'][n]:.6f}" for n in names)] for r in results])
