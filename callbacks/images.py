"""Image grids as PNG files in the run folder and, on a WandbLogger or TensorBoardLogger, as their images.

Shared by the systems, the phase scheduler and the LR finder; Lightning has no logger-agnostic image logging (its
examples call TensorBoard's add_image, which W&B users cannot see).
"""

from collections.abc import Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from PIL import Image
from torch import Tensor
from torchvision.utils import make_grid, save_image

from callbacks.checkpoint_io import replaced


def save_png(image: Tensor, path: Path) -> Path:
    """Write a (3, H, W) image in [0, 1] through a temporary file, so a crash never leaves half a PNG."""
    with replaced(path) as tmp:
        save_image(image, tmp, format="png")
    return path


def note_earlier_images(folder: Path, written: set[Path]) -> list[Path]:
    """The .png files directly in `folder` that this command did not write (an earlier run's into the same folder),
    named on stderr: a sample folder given to an FID tool, or a page of translations, would mix them in."""
    import sys
    earlier = sorted(p for p in folder.glob("*.png") if p not in written)
    if earlier:
        print(f"note: {folder} also holds {len(earlier)} .png file{'s' * (len(earlier) > 1)} this run did not write "
              f"(e.g. {earlier[0].name}; from an earlier run?); delete them, or use another folder, before using "
              f"the folder as a set", file=sys.stderr)
    return earlier


LABEL_HEIGHT = 14  # the strip of column names above a grid; the default font's letters are 11px or less
PADDING = 2  # make_grid's, around each tile


def labelled(grid: Tensor, labels: Sequence[str]) -> Tensor:
    """The (3, H, W) grid of len(labels) columns under a strip that names each column, centred over it, as
    junyanz's HTML page names each visual: the PNG opened alone says which column is which (W&B shows a caption).
    A name wider than its column is cut to the column."""
    from PIL import ImageDraw, ImageFont

    font = ImageFont.load_default()  # no font file to ship: Pillow's own, bitmap before 10.1
    column = (grid.shape[-1] - PADDING) // len(labels)
    strip = Image.new("RGB", (grid.shape[-1], LABEL_HEIGHT))
    for index, label in enumerate(labels):
        cell = Image.new("RGB", (column - PADDING, LABEL_HEIGHT))
        draw = ImageDraw.Draw(cell)
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        draw.text(((cell.width - right + left) // 2 - left, (LABEL_HEIGHT - bottom + top) // 2 - top), label,
                  fill="white", font=font)
        strip.paste(cell, (PADDING + index * column, 0))
    header = torch.from_numpy(np.array(strip)).permute(2, 0, 1).to(grid.dtype) / 255
    return torch.cat([header, grid], dim=1)


def log_image_grid(trainer: L.Trainer, key: str, images: Tensor, step: int, nrow: int = 8,
                   value_range: tuple[float, float] = (-1.0, 1.0), caption: str | None = None,
                   labels: Sequence[str] | None = None) -> Path | None:
    """Tile (N, C, H, W) images into a grid, save <run folder>/images/<key>-<step>.png, log it to W&B/TensorBoard.

    `labels`: one name per column (nrow of them), written above the grid (`labelled`).
    Only the global-zero process writes; returns the PNG path there, None elsewhere.
    """
    if not trainer.is_global_zero:
        return None
    grid = make_grid(images.detach().float().cpu(), nrow=nrow, padding=PADDING, normalize=True,
                     value_range=value_range)
    if labels:
        if len(labels) != nrow:
            raise ValueError(f"{len(labels)} labels for {nrow} columns")
        grid = labelled(grid, labels)
    path = save_png(grid, Path(trainer.default_root_dir) / "images" / f"{key.replace('/', '_')}-{step:06d}.png")
    log_to_loggers(trainer, key, path, caption)
    return path


def log_to_loggers(trainer: L.Trainer, key: str, path: Path, caption: str | None = None,
                   at_batch: bool = True) -> None:
    """A PNG as the image `key` on each W&B and TensorBoard logger attached (the others have the run folder's file).

    `at_batch`: at the x-axis Lightning gives the scalars (and its LearningRateMonitor), the batches trained, where
    global_step counts optimizer steps (3 a CycleGAN batch) and would put each image ahead of its batch's losses;
    False for an image of no step (the LR finder's plot)."""
    step = trainer.fit_loop.epoch_loop._batches_that_stepped if at_batch else None
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            # log_image takes per-image lists only: caption=None raises TypeError (len(None)) in Lightning 2.6
            extra = {"caption": [caption]} if caption else {}
            logger.log_image(key=key, images=[str(path)], step=step, **extra)
        elif isinstance(logger, TensorBoardLogger):  # its add_image has no caption: the PNG's name says the step
            with Image.open(path) as image:
                pixels = np.asarray(image.convert("RGB"))
            logger.experiment.add_image(key, pixels, global_step=step, dataformats="HWC")


def subplots(nrows: int = 1, ncols: int = 1, figsize: tuple[float, float] | None = None, squeeze: bool = True):
    """pyplot.subplots without pyplot: a Figure drawn by Agg, for files (a cluster node has no display), kept out of
    pyplot's figures, so the process's backend (a notebook's inline one, a desktop's) is left as it is and nothing is
    shown or left open."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize)
    FigureCanvasAgg(figure)
    return figure, figure.subplots(nrows, ncols, squeeze=squeeze)


def log_figure(trainer: L.Trainer, key: str, figure) -> Path | None:
    """Save a matplotlib figure as <run folder>/images/<key>.png (through a temporary file) and log it to W&B and
    TensorBoard; closes the figure. Only the global-zero process writes; returns the path there, None elsewhere."""
    if not trainer.is_global_zero:
        close(figure)
        return None
    path = Path(trainer.default_root_dir) / "images" / f"{key.replace('/', '_')}.png"
    try:
        with replaced(path) as tmp:
            figure.savefig(tmp, format="png", dpi=100)
    finally:
        close(figure)
    log_to_loggers(trainer, key, path)
    return path


def close(figure) -> None:
    """Close a figure that pyplot made (one a caller gave log_figure); those of `subplots` are not pyplot's."""
    if getattr(figure.canvas, "manager", None) is not None:
        import matplotlib.pyplot as plt
        plt.close(figure)
