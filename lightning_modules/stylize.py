"""The stylize command (dl2-stylize, `python -m lightning_modules.style_transfer stylize`): Gatys style transfer of
content images without train.py's run folders, the results written as PNGs."""

import sys
from pathlib import Path
from typing import Literal

import lightning as L
import torch

from callbacks.errors import (
    UserError,
    check_output_folder,
    ctrl_c_ends_the_fit,
    lightning_ctrl_c,
    own_flags,
    require_at_least_one,
)
from callbacks.images import note_earlier_images
from lightning_modules.style_transfer import StyleTransfer

# the values Lightning's Trainer takes as `precision` (check_trainer refuses those L-BFGS cannot run under)
LIGHTNING_PRECISIONS = ("32-true", "64-true", "bf16-mixed", "16-mixed", "16-true", "bf16-true", "32", "64", "16",
                        "bf16", "transformer-engine", "transformer-engine-float16")


def stylize(content: list[str] | str | None = None, style: list[str] | str | None = None, output: str = "stylized",
            size: int = 288,
            crop: bool = False, max_iter: int = 1000, vgg_weights: str = "imagenet",
            arch: Literal["vgg16", "vgg16_bn", "vgg19", "vgg19_bn"] = "vgg16_bn", content_weight: float = 1.0,
            style_weight: float = 1.0, init: Literal["noise", "content"] = "noise",
            pooling: Literal["max", "avg"] = "max", tv_weight: float = 0.0, original_colors: bool = False,
            style_scale: float = 1.0, pyramid: list[tuple[int, int]] | None = None, content_layer: str = "relu4_3",
            style_layers: list[str] | str = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3"),
            style_layer_weights: list[float] | str | None = None, lr: float = 1.0,
            style_blend_weights: list[float] | str | None = None, accelerator: str = "auto",
            precision: str = "32-true", seed: int = 0, device: str | None = None) -> list[Path]:
    """Stylize content images with a style image: <output>/<name>.png plus a side-by-side in <output>/images.

    Args:
        content: a content image file or folder, or a list of them, stylized as one batch; default the shipped
            macaws.
        style: the style image, or several blended (their Gram matrices averaged); default the shipped Starry Night.
        output: folder for the results.
        size: shorter side of the content images (the seed: 288).
        crop: cut the content images to size x size squares (the seed's); by default each keeps its shape, as
            neural-style's and pystiche's, images of different shapes stylized one shape after another.
        max_iter: L-BFGS iterations (the seed: 1000).
        vgg_weights: "imagenet" (torch cache), a torchvision VGG weights file of `arch`, or "random" (not art).
        arch: "vgg16_bn" (the seed's), "vgg16", "vgg19" or "vgg19_bn"; must match the weights.
        content_weight: 0 for texture synthesis.
        style_weight: 0 for content reconstruction.
        init: "noise" or "content".
        pooling: "max" (the seed) or "avg" (Gatys et al.).
        tv_weight: total-variation smoothing (0: off).
        original_colors: keep the content's colours, the result's luminance.
        style_scale: the style image at this multiple of the content's size (smaller: smaller strokes).
        pyramid: coarse-to-fine levels before the full size, [[edge, iterations], ...], e.g. [[256, 300]] for 512px;
            the full size takes what is left of max_iter.
        content_layer: the ReLU the result's content must match (the seed's relu4_3; Gatys et al.'s relu4_2).
        style_layers: the ReLUs whose Gram matrices it must match (the seed's five block ends; Gatys et al.'s
            [relu1_1, relu2_1, relu3_1, relu4_1, relu5_1], with --arch vgg19); or comma-separated, relu1_1,relu2_1.
        style_layer_weights: a weight per style layer, [1, 2] or 1,2; null for 1 each.
        lr: L-BFGS step length (torch's default 1).
        style_blend_weights: a weight per style image, [3, 1] or 3,1 (neural-style's -style_blend_weights); null:
            equal.
        accelerator: "auto", "cpu", "gpu" (or "cuda") or "mps".
        precision: "32-true" (the default), "64-true" or "bf16-mixed".
        seed: the noise start's seed (neural-style's -seed): the same seed, weights and images give the same result.
        device: "cpu", "cuda", "cuda:1" or "mps", as the other commands' --device (one GPU of several: cuda:N);
            in place of --accelerator.
    """
    from callbacks.progress import ProgressBar
    from datamodules.decode import output_names
    from datamodules.style import StyleTransferDataModule  # here: datamodules need not import the systems

    flags = {f"--{part}.{name}": f"--{name}" for part, names in (
        ("data", ("content", "style", "size", "crop", "style_scale")),
        ("model", ("vgg_weights", "arch", "content_weight", "style_weight", "init", "pooling", "tv_weight",
                   "original_colors", "pyramid", "content_layer", "style_layers", "style_layer_weights", "lr",
                   "style_blend_weights")),
        ("trainer", ("precision", "accelerator"))) for name in names} | {"--trainer.max_steps": "--max_iter"}
    require_at_least_one(max_iter=max_iter)
    if not 0 <= seed < 2**32:  # Lightning's seed_everything raises a bare ValueError for these
        raise UserError(f"--seed must be from 0 to {2**32 - 1} (got {seed}); neural-style's -seed -1 (a new seed "
                        "each run) has no counterpart here: give any number in that range")
    if str(precision) not in LIGHTNING_PRECISIONS:  # the Trainer's own refusal is a traceback
        raise UserError(f"--precision {precision}: not a precision; use 32-true (the default), 64-true or bf16-mixed")
    check_output_folder(output, "--output")
    check_accelerator(accelerator)
    devices = 1
    if device is not None:
        from lightning_modules.inference import check_device
        if accelerator != "auto":
            raise UserError(f"--device {device} and --accelerator {accelerator}: give one of them")
        chosen = check_device(device)
        accelerator, devices = chosen.type, [chosen.index] if chosen.index is not None else 1
    if pyramid and sum(steps for _, steps in pyramid) >= max_iter:  # no resume here, unlike train.py's runs
        raise UserError(f"the pyramid's levels take {sum(steps for _, steps in pyramid)} iterations, leaving none of "
                        f"--max_iter {max_iter} for the full size; raise --max_iter or shorten the levels")
    L.seed_everything(seed, verbose=False)
    written = []
    with own_flags(flags):  # the errors of the classes below name train.py's flags
        everything = StyleTransferDataModule(content=content, style=style, size=size, crop=crop,
                                             style_scale=style_scale)
        files = everything.content_files()
        # before the model, whose VGG weights may be a 528 MB download
        check_results_spare_inputs(output, content, files, everything.style_files(), style)
        names = dict(zip(files, output_names(files), strict=True))  # distinct over all the images, not each batch
        # one batch per shape: whole photos of other shapes (neural-style's habit, --crop false) one after another
        groups = shape_groups(files, size, crop)
        for number, group in enumerate(groups, 1):
            data = StyleTransferDataModule(content=[str(f) for f in group], style=style, size=size, crop=crop,
                                           style_scale=style_scale)
            data.setup("fit")
            data.content_names = [names[f] for f in group]
            model = StyleTransfer(arch=arch, vgg_weights=vgg_weights, content_weight=content_weight,
                                  style_weight=style_weight, init=init, show_iter=0, pooling=pooling,
                                  tv_weight=tv_weight, original_colors=original_colors, pyramid=pyramid,
                                  content_layer=content_layer, style_layers=style_layers,
                                  style_layer_weights=style_layer_weights, lr=lr,
                                  style_blend_weights=style_blend_weights)
            model.results_folder = Path(output)  # the folder the user named, as generate's and translate's output_dir
            if len(groups) > 1:  # each shape's side-by-side: at the same step, one file replaced the other
                model.side_by_side_key = f"style/side_by_side_{number}"
            trainer = L.Trainer(max_steps=max_iter, accelerator=accelerator, devices=devices, precision=precision,
                                logger=False, enable_checkpointing=False, enable_model_summary=False,
                                default_root_dir=output, log_every_n_steps=max(1, max_iter // 10),
                                callbacks=[ProgressBar()])
            # a result that looks done already: neural-style's users keep its last save
            with ctrl_c_ends_the_fit(trainer, "Ctrl-C: stopping after this iteration and writing the images as they "
                                     "are (Ctrl-C again to stop at once)") as stopped, lightning_ctrl_c(trainer):
                trainer.fit(model, datamodule=data)
            written += [Path(output) / f"{name}.png" for name in data.content_names]
            if stopped:
                break
    print("Wrote " + ", ".join(map(str, written)))
    note_earlier_images(Path(output), set(written))  # an earlier run's results there, as generate's
    if stopped:
        side = min(model.image.shape[-2:])  # a level's edge is its shorter side (a wide image's is its height)
        print(f"Stopped by Ctrl-C after iteration {trainer.global_step} of --max_iter {max_iter}"
              + (f", at the pyramid's {side}px level" if side != min(data.content.shape[-2:]) else "")
              + (f"; {len(files) - len(written)} image{'s' * (len(files) - len(written) > 1)} not begun"
                 if len(written) < len(files) else ""),
              file=sys.stderr)
        raise SystemExit(130)
    return written


def shape_groups(files: list[Path], size: int, crop: bool) -> list[list[Path]]:
    """The content files by the shape they come out in (all one with crop), in order of first appearance; the shape
    computed, not resized for (the data module resizes each image once)."""
    from datamodules.decode import read_rgb
    from datamodules.style import shorter_side_to
    if crop:
        return [files]
    groups: dict[tuple, list[Path]] = {}
    for file in files:
        groups.setdefault(shorter_side_to(*read_rgb(file).shape[1:], size), []).append(file)
    return list(groups.values())


def check_results_spare_inputs(output: str, given: list[str] | str | None, content: list[Path],
                               style: list[Path], given_style: list[str] | str | None = None) -> None:
    """A UserError when --output is a --content or --style folder (the results would join the content, or be blended
    into the style, of the next run on it) or when a result, <output>/<name>.png, would replace a content or style
    image: refused before the optimization, not found after it."""
    from datamodules.decode import output_names
    out = Path(output)
    for flag, paths in (("content", given), ("style", given_style)):
        folders = [Path(p) for p in ([paths] if isinstance(paths, str) else paths or []) if Path(p).is_dir()]
        if out.is_dir() and any(out.samefile(folder) for folder in folders):
            raise UserError(f"--output {output} is a --{flag} folder: the results would be read as {flag} images by "
                            "the next run on that folder; give another --output folder")
    for name in output_names(content):
        result = out / f"{name}.png"
        # samefile, not a path comparison: photo.PNG is photo.png where the file system ignores case (macOS, Windows)
        if result.exists() and any(result.samefile(file) for file in content + style):
            raise UserError(f"--output {output}: the result {result} would replace the input image of that name; "
                            "give another --output folder")


def check_accelerator(accelerator: str) -> None:
    """stylize's --accelerator, if this machine has it; else a UserError naming the ones it has (Lightning's own
    errors are tracebacks)."""
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    have = ["auto", "cpu"] + ["gpu"] * (cuda or mps) + ["cuda"] * cuda + ["mps"] * mps  # Lightning's gpu: either
    if accelerator not in have:
        known = accelerator in ("gpu", "cuda", "mps")
        raise UserError(f"--accelerator {accelerator}: {'this machine has none' if known else 'not an accelerator'}; "
                        f"it has {', '.join(have)}")
