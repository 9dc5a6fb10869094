"""The figures and tables of the Darknet's `interpret` test (fastai's ClassificationInterpretation): the confusion
matrix, the top losses, and the CSV files beside them."""
from pathlib import Path

import torch

from callbacks.checkpoint_io import replaced
from callbacks.images import subplots


def confusion_figure(matrix: torch.Tensor, names: list[str]):
    """The confusion matrix as fastai plots it: counts in each cell, actual classes down, predicted across."""
    size = min(20.0, max(4.0, 0.5 * len(names) + 2))  # inches at 100 dpi; capped: 1000 classes would need 50,000 px
    figure, axes = subplots(figsize=(size, size))
    axes.imshow(matrix.numpy(), cmap="Blues")
    if len(names) <= 30:  # beyond that the labels and counts overlap: the colours remain
        axes.set_xticks(range(len(names)), names, rotation=90)
        axes.set_yticks(range(len(names)), names)
        threshold = matrix.max().item() / 2
        for (row, column), count in zip(torch.cartesian_prod(torch.arange(len(names)), torch.arange(len(names))),
                                        matrix.flatten(), strict=True):
            axes.text(column, row, int(count), ha="center", va="center", fontsize=8,
                      color="white" if count > threshold else "black")
    axes.set_xlabel("predicted")
    axes.set_ylabel("actual")
    axes.set_title(f"test confusion matrix ({int(matrix.sum())} images)")
    figure.tight_layout()
    return figure


def top_losses_figure(worst: dict[str, torch.Tensor], names: list[str]):
    """fastai's plot_top_losses: each image titled prediction / actual / loss / probability of the actual class.
    The images are the model's inputs (normalised), each shown min-max scaled."""
    count = len(worst["loss"])
    columns = min(3, count)
    rows = -(-count // columns)
    figure, axes = subplots(rows, columns, figsize=(3 * columns, 3.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, loss, label, prediction, probability in zip(
            axes.flat, worst["image"], worst["loss"], worst["label"], worst["prediction"], worst["probability"],
            strict=False):
        low, high = image.amin(), image.amax()
        ax.imshow(((image - low) / (high - low).clamp(min=1e-8)).permute(1, 2, 0).numpy())
        ax.set_title(f"{names[prediction]} / {names[label]} / {loss:.2f} / {probability:.2f}", fontsize=9)
    figure.suptitle("prediction / actual / loss / probability")
    figure.tight_layout()
    return figure


def write_rows(path: Path, header: list[str], rows: list[list]) -> None:
    """A CSV file, written beside and renamed into place."""
    import csv
    with replaced(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
