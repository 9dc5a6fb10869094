"""The phase scheduler's set-up and the phase types' names (the phase_setup and phase_types mutation targets)."""

import re

import pytest
import torch

from callbacks import TrainingPhase, TrainingPhaseScheduler, UserError
from callbacks.training_phase import DecayType, check_share, decay_type, optimizer_class

# --- phase_types: decay names, optimizer names, a recipe's share of the cycle ------------------------

def test_a_share_is_taken_from_0_to_the_whole_ends_included_and_refused_outside():
    for value in (0, 0.5, 1):  # a fraction of the cycle: whole 1
        check_share("triangle", "peak", value)
    for value in (0, 100, 99.5):  # a percentage: whole 100
        check_share("one_cycle", "pct", value, 100)
    for value in (-0.01, 1.01, 1.5):
        with pytest.raises(UserError, match=rf"triangle's peak is a fraction of the cycle, from 0 to 1 "
                                            rf"\(got {value:g}\)"):
            check_share("triangle", "peak", value)
    for value in (-1, 100.5):
        with pytest.raises(UserError, match=rf"one_cycle's pct is a percentage of the cycle, from 0 to 100 "
                                            rf"\(got {value:g}\)"):
            check_share("one_cycle", "pct", value, 100)


def test_decay_names_in_any_case_false_as_no_and_true_refused():
    assert [decay_type(name) for name in ("Linear", "polynomial", "EXPONENTIAL", "no")] == [
        DecayType.LINEAR, DecayType.POLYNOMIAL, DecayType.EXPONENTIAL, DecayType.NO]
    assert decay_type(DecayType.COSINE) is DecayType.COSINE and decay_type(False) is DecayType.NO
    with pytest.raises(UserError, match="'True' is not a valid DecayType; use one of no, linear, cosine"):
        decay_type(True)


def test_an_optimizer_is_a_torch_optim_name_or_a_dotted_optimizer_class_and_anything_else_is_refused():
    from lightning_modules.lbfgs import BatchLBFGS
    assert optimizer_class("RMSprop") is torch.optim.RMSprop
    assert optimizer_class("lightning_modules.lbfgs.BatchLBFGS") is BatchLBFGS
    for name in ("torch.nn.Linear", "torch.optim.Nope", "no_such_module.Optimizer", "Optimizer"):
        with pytest.raises(UserError, match=f"unknown optimizer '{name}'; use one of ") as error:
            optimizer_class(name)
        offered = re.search("use one of (.*) or a dotted class path", str(error.value))[1].split(", ")
        assert {"Adam", "AdamW", "SGD", "RMSprop", "LBFGS"} <= set(offered) and "Optimizer" not in offered
        assert offered == sorted(offered)


# --- phase_setup: one of phases or a recipe ------------------------------------------------------

def test_the_scheduler_takes_exactly_one_of_phases_or_a_recipe():
    phases = [TrainingPhase(1)]
    for kwargs, given in (({"phases": phases, "one_cycle": {}}, "phases and one_cycle"),
                          ({"sgdr": {"lr": 0.1}, "flat_cos": {}}, "sgdr and flat_cos"),
                          ({"phases": phases, "triangle": {}, "one_cycle_cos": {}},
                           "phases and triangle and one_cycle_cos")):
        with pytest.raises(UserError, match=f"TrainingPhaseScheduler got {given}: give exactly one"):
            TrainingPhaseScheduler(**kwargs)
    with pytest.raises(UserError, match="needs exactly one of phases, one_cycle, sgdr, triangle, one_cycle_cos, "
                                        "flat_cos$"):
        TrainingPhaseScheduler()
    with pytest.raises(UserError, match="got an empty list of phases"):
        TrainingPhaseScheduler([])
    assert TrainingPhaseScheduler(phases).phases == phases
    scheduler = TrainingPhaseScheduler(one_cycle={})  # an empty recipe: its defaults, its length from the training
    assert scheduler.recipe == ("one_cycle", {}) and scheduler.phases is None
    assert TrainingPhaseScheduler(flat_cos={"pct_start": 0.5}).recipe == ("flat_cos", {"pct_start": 0.5})


# --- phase_setup: the schedule's plot ----------------------------------------------------------------

def plotted(monkeypatch, tmp_path, phases, ends, **kwargs):
    """plot_schedule's figure (caught at its savefig) and the PNG's (width, height) in pixels."""
    import matplotlib.figure
    from PIL import Image

    from callbacks import plot_schedule
    captured = []
    original = matplotlib.figure.Figure.savefig
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig",
                        lambda figure, *a, **k: (captured.append(figure), original(figure, *a, **k))[1])
    path = plot_schedule(phases, ends, tmp_path / "lr.png", **kwargs)
    with Image.open(path) as image:
        return captured[0], image.size


def test_the_plot_draws_each_phases_lr_and_momentum_per_iteration_and_names_it_above_its_middle(monkeypatch,
                                                                                               tmp_path):
    phases = [TrainingPhase(1, "Adam", (0.1, 0.0), "linear", momentum=None),
              TrainingPhase(2, "SGD", (0.02, 0.01), "linear", momentum=(0.9, 0.8), momentum_decay="linear"),
              TrainingPhase(0.25, "SGD", 0.001, momentum=None)]
    figure, size = plotted(monkeypatch, tmp_path, phases, [10, 30, 35])
    assert size == (2 * 6 * 100, 4 * 100)  # two panels of 6 x 4 inches at 100 dpi
    lr_axis, momentum_axis = figure.axes
    lr_lines = [line for line in lr_axis.lines if line.get_linestyle() != "--"]
    assert [list(line.get_xdata()) for line in lr_lines] == [list(range(10)), list(range(10, 30)), list(range(30, 35))]
    torch.testing.assert_close(list(lr_lines[0].get_ydata()), [0.1 * (1 - i / 10) for i in range(10)])
    torch.testing.assert_close(list(lr_lines[1].get_ydata()), [0.02 - 0.01 * i / 20 for i in range(20)])
    momentum_lines = [line for line in momentum_axis.lines if line.get_linestyle() != "--"]
    assert len(momentum_lines) == 1 and list(momentum_lines[0].get_xdata()) == list(range(10, 30))  # Adam's none
    torch.testing.assert_close(list(momentum_lines[0].get_ydata()), [0.9 - 0.1 * i / 20 for i in range(20)])
    for axis in (lr_axis, momentum_axis):
        boundaries = [line for line in axis.lines if line.get_linestyle() == "--"]
        assert [list(line.get_xdata()) for line in boundaries] == [[10, 10], [30, 30]]
        assert all(line.get_linewidth() < lr_lines[0].get_linewidth() for line in boundaries)  # thinner than curves
        assert [(t.get_text(), t.get_position()[0]) for t in axis.texts] == [("Adam", 5), ("SGD", 20), ("SGD", 32.5)]
        assert all(1 < t.get_position()[1] < 1.1 for t in axis.texts)  # just above the axes (axes coordinates)


def test_the_plot_has_one_panel_without_momentum_and_no_names_without_text(monkeypatch, tmp_path):
    phases = [TrainingPhase(1, "Adam", 0.1, momentum=None), TrainingPhase(1, "SGD", 0.01, momentum=None)]
    figure, size = plotted(monkeypatch, tmp_path, phases, [4, 8], show_text=False)
    assert size == (6 * 100, 4 * 100) and len(figure.axes) == 1 and not figure.axes[0].texts
    with_momentum = [TrainingPhase(1, "SGD", 0.1, momentum=0.9)]
    figure, size = plotted(monkeypatch, tmp_path, with_momentum, [4], show_moms=False)
    assert size == (6 * 100, 4 * 100) and len(figure.axes) == 1


def test_the_plot_goes_to_wandb_loggers_alone_at_the_runs_start(tmp_path):
    from types import SimpleNamespace

    from lightning.pytorch.loggers import WandbLogger

    class Images(WandbLogger):
        def __init__(self):  # no W&B run: only what would be logged
            self.logged = []

        def log_image(self, key, images, **options):
            self.logged.append((key, images))

    scheduler = TrainingPhaseScheduler([TrainingPhase(1, "SGD", 0.1)])
    scheduler.ends = [10]
    wandb, other = Images(), SimpleNamespace()  # a logger that shows no images (CSV)
    scheduler._plot(SimpleNamespace(default_root_dir=tmp_path, loggers=[other, wandb], global_step=0))
    assert wandb.logged == [("lr_schedule", [str(tmp_path / "lr_schedule.png")])]
    scheduler._plot(SimpleNamespace(default_root_dir=tmp_path, loggers=[other, wandb], global_step=1))
    assert len(wandb.logged) == 1


def test_plot_phases_draws_a_recipe_before_training_at_the_steps_an_epoch_given(tmp_path):
    """fastai's plot_lr could be looked at before training; plot_schedule needed the ends in steps. A 2-epoch 1cycle
    at 5 steps an epoch: 40% of it up (4 steps), 40% down, 20% to lr/2000 (2 steps)."""
    from callbacks import one_cycle, plot_phases
    figure = plot_phases(one_cycle(2, 0.4, div=20, pct=20), steps_per_epoch=5)
    lr_lines = [line for line in figure.axes[0].lines if line.get_linestyle() != "--"]
    assert [list(line.get_xdata()) for line in lr_lines] == [list(range(4)), list(range(4, 8)), [8, 9]]
    torch.testing.assert_close(list(lr_lines[0].get_ydata()), [0.02 + 0.38 * i / 4 for i in range(4)])
    torch.testing.assert_close(list(lr_lines[2].get_ydata()), [0.02 - (0.02 - 0.0002) * i / 2 for i in range(2)])
    assert not list(tmp_path.iterdir())  # nothing written without a path
    plot_phases([{"epochs": 1, "lr": 0.1}], 3, tmp_path / "lr.png")  # the YAML's dicts too
    from PIL import Image
    with Image.open(tmp_path / "lr.png") as image:
        assert image.size == (2 * 6 * 100, 4 * 100)  # lr and momentum (0.9, the phase's default)
