"""The Darknet system's one-cycle held past its end, its training loss and the test's figures and CSV files, each
against values worked out here: the 1cycle formula, a cross-entropy by hand, a confusion matrix counted from labels
and predictions."""

import csv
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from lightning_modules import DarknetClassifier
from lightning_modules.darknet_interpret import confusion_figure, top_losses_figure, write_rows

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {"num_blocks": [1], "nf": 4, "num_classes": 3}


def one_cycle_by_hand(step: int, total: int, lr: float, div: float, pct: float, max_mom: float, min_mom: float):
    """fastai 0.7's use_clr_beta in torch's step numbering: up from lr/div to lr over the first (100 - pct) / 2 % of the
    steps, back down to lr/div over as many, then to lr/div/100 by the last step (step total - 1); momentum the
    mirror image from max_mom to min_mom and back, then held at max_mom."""
    up_end = (1 - pct / 100) / 2 * total - 1  # torch: a phase ending at fraction f of the steps ends at step f T - 1
    down_end = 2 * (1 - pct / 100) / 2 * total - 2
    last = total - 1
    if step <= up_end:
        t = step / up_end
        return lr / div + t * (lr - lr / div), max_mom + t * (min_mom - max_mom)
    if step <= down_end:
        t = (step - up_end) / (down_end - up_end)
        return lr + t * (lr / div - lr), min_mom + t * (max_mom - min_mom)
    t = (min(step, last) - down_end) / (last - down_end)
    return lr / div + t * (lr / div / 100 - lr / div), max_mom


def test_one_cycle_holds_its_final_lr_and_momentum_past_its_steps_and_warns_once_after_the_first():
    model = DarknetClassifier(**TINY, lr=0.4, one_cycle=(20, 20, 0.95, 0.85))
    model.trainer = SimpleNamespace(estimated_stepping_batches=50)
    configured = model.configure_optimizers()
    optimizer, schedule = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    seen, warned_after = [], []
    for step in range(56):  # 50 steps of the cycle, then 6 past it (a run resumed over more epochs)
        seen.append((optimizer.param_groups[0]["lr"], optimizer.param_groups[0]["momentum"]))
        optimizer.step()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            schedule.step()
        warned_after += [step for w in caught if "--model.one_cycle was planned over 50 steps" in str(w.message)]
    expected = [one_cycle_by_hand(min(step, 49), 50, 0.4, 20, 20, 0.95, 0.85) for step in range(56)]
    np.testing.assert_allclose(seen, expected, rtol=1e-9)
    assert seen[49][0] == pytest.approx(0.4 / 20 / 100)
    # the warning once, after the first step trained past the cycle (a run of exactly 50 steps never sees it)
    assert warned_after == [50]


def test_the_training_step_returns_the_batchs_mean_cross_entropy():
    torch.manual_seed(0)
    model = DarknetClassifier(**TINY, one_cycle=None)
    images, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 2, 1, 2])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log outside a Trainer
        loss = model.training_step((images, labels), 0)
    logits = model.net(images)
    by_hand = -sum(logits[i].log_softmax(0)[labels[i]] for i in range(4)) / 4
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-5) and loss.requires_grad


def counted(labels: list[int], predictions: list[int], n: int) -> list[list[int]]:
    """Rows: actual class, columns: predicted, each cell the images counted one by one."""
    return [[sum(1 for a, p in zip(labels, predictions, strict=True) if (a, p) == (i, j)) for j in range(n)]
            for i in range(n)]


@pytest.fixture
def closed_figures():
    from callbacks.images import close

    figures = []
    yield figures
    for figure in figures:
        close(figure)


def test_the_confusion_figure_shows_each_count_in_its_cell_actual_down_predicted_across(closed_figures):
    labels = [0, 0, 0, 0, 0, 1, 1, 2, 2, 2, 2, 3]
    predictions = [0, 0, 0, 0, 1, 1, 2, 2, 2, 0, 3, 1]
    counts = counted(labels, predictions, 4)
    assert counts[0] == [4, 1, 0, 0] and counts[2] == [1, 0, 2, 1]  # the counting itself, checked on two rows
    names = ["cat", "dog", "frog", "ship"]
    figure = confusion_figure(torch.tensor(counts), names)
    closed_figures.append(figure)
    (axes,) = figure.axes
    np.testing.assert_array_equal(axes.images[0].get_array(), counts)  # actual down, predicted across
    cells = {(round(float(t.get_position()[1])), round(float(t.get_position()[0]))): t for t in axes.texts}
    assert set(cells) == {(row, column) for row in range(4) for column in range(4)}
    for (row, column), text in cells.items():
        assert text.get_text() == str(counts[row][column])
        # dark cells (above half the largest count, 4) get white text: only the 4
        assert text.get_color() == ("white" if counts[row][column] > 2 else "black"), (row, column)
        assert text.get_fontsize() <= 8
    assert [t.get_text() for t in axes.get_xticklabels()] == names
    assert [t.get_text() for t in axes.get_yticklabels()] == names
    assert all(t.get_rotation() == 90 for t in axes.get_xticklabels())  # the names read down, not overlapping
    assert axes.get_title() == "test confusion matrix (12 images)"
    assert tuple(figure.get_size_inches()) == (4.0, 4.0)  # at least 4 inches however few the classes


def test_a_count_of_exactly_half_the_largest_stays_black(closed_figures):
    figure = confusion_figure(torch.tensor([[4, 2], [0, 3]]), ["a", "b"])
    closed_figures.append(figure)
    colours = {t.get_text(): t.get_color() for t in figure.axes[0].texts}
    assert colours == {"4": "white", "2": "black", "0": "black", "3": "white"}


@pytest.mark.parametrize("classes, inches, labelled", [(16, 10.0, True), (30, 17.0, True), (31, 17.5, False),
                                                       (100, 20.0, False)])
def test_the_confusion_figure_grows_half_an_inch_a_class_up_to_20_and_labels_up_to_30_classes(
        closed_figures, classes, inches, labelled):
    matrix = torch.eye(classes, dtype=torch.long)
    figure = confusion_figure(matrix, [f"c{i}" for i in range(classes)])
    closed_figures.append(figure)
    axes = figure.axes[0]
    assert tuple(figure.get_size_inches()) == (inches, inches)  # 2 inches + half an inch a class, capped at 20
    assert len(axes.texts) == (classes * classes if labelled else 0)
    shown = {t.get_text() for t in [*axes.get_xticklabels(), *axes.get_yticklabels()]}
    assert ({"c0", f"c{classes - 1}"} <= shown) == labelled and ("c1" in shown) == labelled


def test_top_losses_figure_titles_each_image_and_scales_it_to_0_1(closed_figures):
    generator = torch.Generator().manual_seed(0)
    images = 0.2 + 0.3 * torch.rand(4, 3, 8, 8, generator=generator)  # a range under 1: min-max scaling shows
    images[2] = torch.linspace(0, 1.5e-8, 3 * 8 * 8).view(3, 8, 8)  # a faint image is stretched to 0-1 all the same
    images[3] = 0.7  # one flat image: all 0, not a division by 0
    worst = {"image": images, "loss": torch.tensor([3.14159, 2.5, 1.006, 0.5]), "label": torch.tensor([0, 1, 2, 0]),
             "prediction": torch.tensor([1, 1, 0, 2]), "probability": torch.tensor([0.0432, 0.08, 0.3659, 0.61])}
    names = ["cat", "dog", "frog"]
    figure = top_losses_figure(worst, names)
    closed_figures.append(figure)
    axes = figure.axes
    assert len(axes) == 6 and tuple(figure.get_size_inches()) == pytest.approx((9.0, 6.4))  # 2 rows of 3
    assert all(not ax.axison for ax in axes)
    shown = [ax for ax in axes if ax.images]
    assert len(shown) == 4
    titles = ["dog / cat / 3.14 / 0.04", "dog / dog / 2.50 / 0.08", "cat / frog / 1.01 / 0.37",
              "frog / cat / 0.50 / 0.61"]
    assert [ax.get_title() for ax in shown] == titles and all(ax.title.get_fontsize() <= 9 for ax in shown)
    for ax, image in zip(shown, images, strict=True):
        low, high = image.min(), image.max()
        scaled = (image - low) / (high - low) if high > low else torch.zeros_like(image)
        np.testing.assert_allclose(ax.images[0].get_array(), scaled.permute(1, 2, 0).numpy(), atol=1e-5)


@pytest.mark.parametrize("count, grid", [(1, (1, 1)), (2, (1, 2)), (7, (3, 3))])
def test_top_losses_figure_has_rows_of_three(closed_figures, count, grid):
    worst = {"image": torch.rand(count, 3, 4, 4), "loss": torch.ones(count), "label": torch.zeros(count, dtype=int),
             "prediction": torch.zeros(count, dtype=int), "probability": torch.ones(count)}
    figure = top_losses_figure(worst, ["a"])
    closed_figures.append(figure)
    rows, columns = grid
    assert len(figure.axes) == rows * columns and sum(bool(ax.images) for ax in figure.axes) == count
    assert tuple(figure.get_size_inches()) == pytest.approx((3 * columns, 3.2 * rows))


def test_write_rows_writes_the_header_then_the_rows_and_replaces_an_earlier_file(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text("an earlier, longer file\n" * 10)
    write_rows(path, ["name", "value"], [["a, b", 1], ["c", "2.500000"]])
    with open(path, newline="") as f:
        assert list(csv.reader(f)) == [["name", "value"], ["a, b", "1"], ["c", "2.500000"]]
    assert path.read_bytes() == b'name,value\r\n"a, b",1\r\nc,2.500000\r\n'  # csv's own dialect, quoting the comma
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]  # no temporary file left beside it
