"""train.py --lr_find: the plot and the suggestion, Ctrl-C during the sweep, and its refusals."""

import json
import logging
import math
import os
import signal
import sys

import pytest
import torch
from conftest import CLASSES
from runs import cli_job as job
from runs import only_run

import train
from callbacks import lr_finder
from callbacks.images import subplots

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets: threads only add contention


def test_lr_find_refuses_a_checkpoint(tiny_cifar, tmp_path):
    with pytest.raises(train.UserError, match="--lr_find starts from new weights .* drop --ckpt_path"):
        train.main(job(tiny_cifar, tmp_path / "runs", "--lr_find", "--ckpt_path", "last"))


def test_lr_find_options_without_lr_find_are_refused_instead_of_training(tiny_cifar, tmp_path):
    runs = tmp_path / "runs"
    with pytest.raises(train.UserError, match=r"--lr_find.num_training is an LR finder option, but the finder runs "
                                              r"only with --lr_find \(else this trains\); add --lr_find"):
        train.main(job(tiny_cifar, runs, "--lr_find.num_training", "5"))
    with pytest.raises(train.UserError, match=r"--lr_find.num_training is an LR finder option"):
        train.main(job(tiny_cifar, runs, "--lr_find.run=false", "--lr_find.num_training", "5"))
    assert not runs.exists()
    (tmp_path / "finder.yaml").write_text("lr_find:\n  run: true\n")  # the finder asked for in a config file
    train.main(job(tiny_cifar, runs, "--config", str(tmp_path / "finder.yaml"), "--lr_find.num_training", "5",
                   "--trainer.logger", "false", "--run_name", "finder"))
    assert len(json.loads((runs / "finder" / "lr_find.json").read_text())["lr"]) <= 5


def test_lr_find_refuses_a_gan_that_steps_its_optimizers_itself(tiny_cifar, tmp_path):
    from runs import wgan_job
    with pytest.raises(train.UserError, match=r"--lr_find sweeps the lr of one optimizer that Lightning steps; WGAN "
                                              r"steps its optimizers itself"):
        train.main(wgan_job(tiny_cifar, tmp_path / "runs", "--lr_find"))
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("mode, axis", [("exponential", "log"), ("linear", "linear")])
def test_lr_find_saves_the_plot_and_prints_the_suggestion(tiny_cifar, tmp_path, capsys, monkeypatch, mode, axis):
    figures = []
    monkeypatch.setattr(lr_finder, "subplots", lambda: figures.append(subplots()) or figures[-1])
    runs = tmp_path / "runs"
    train.main(job(tiny_cifar, runs, "--trainer.logger", "false", "--lr_find", "--lr_find.num_training", "20",
                   "--lr_find.mode", mode, "--lr_find.linear_axis", str(axis == "linear").lower(),
                   "--lr_find.stop_div", "null", "--trainer.max_epochs", "10"))
    run_dir = only_run(runs)
    found = json.loads((run_dir / "lr_find.json").read_text())
    lrs = found["lr"]
    assert len(lrs) == 20 and lrs[0] == pytest.approx(1e-6) and lrs[-1] <= 10
    lrs = torch.tensor(lrs[1:], dtype=torch.float64)  # Lightning records min_lr first, then its sweep
    steps = lrs[1:] - lrs[:-1], lrs[1:] / lrs[:-1]
    constant = steps[0] if mode == "linear" else steps[1]  # equal differences, or equal ratios
    assert torch.allclose(constant, constant[0].expand_as(constant), rtol=1e-3)
    assert (run_dir / "lr_find.png").is_file() and not (run_dir / "checkpoints").exists()  # no training
    assert f"train with --model.lr {found['suggestion']:.3g}" in capsys.readouterr().out
    steepest = lr_finder.steepest_log_descent(found["lr"], found["loss"])  # not Lightning's suggestion() (#21141)
    assert found["suggestion"] == found["lr"][steepest]
    curve, marker = figures[0][1].lines  # the loss, and one red dot: ours, not Lightning's too
    assert list(marker.get_xdata()) == [found["suggestion"]] and list(marker.get_ydata()) == [found["loss"][steepest]]
    # the first loss at lr 1e-6 is the untrained net's, near ln(3) for the three classes (Lightning's record read half)
    assert found["loss"][0] == pytest.approx(math.log(len(CLASSES)), abs=0.3)


def test_ctrl_c_ends_the_lr_sweep_and_plots_what_it_has(tiny_cifar, tmp_path, capsys, monkeypatch):
    import lightning_modules
    step = lightning_modules.DarknetClassifier.training_step

    def interrupted_at_the_fifth(self, batch, batch_idx):
        if self.trainer.global_step == 4:  # a terminal's Ctrl-C during the fifth batch
            os.kill(os.getpid(), signal.SIGINT)
        return step(self, batch, batch_idx)
    monkeypatch.setattr(lightning_modules.DarknetClassifier, "training_step", interrupted_at_the_fifth)
    validated = []
    monkeypatch.setattr(lightning_modules.DarknetClassifier, "validation_step",
                        lambda self, *args: validated.append(self.trainer.global_step))
    runs = tmp_path / "runs"
    before = signal.getsignal(signal.SIGINT)
    said = []  # what Lightning's finder logs (its handler writes to the stderr of before the test)
    handler = logging.Handler()
    handler.emit = lambda record: said.append(record.getMessage())
    logging.getLogger("lightning.pytorch.tuner.lr_finder").addHandler(handler)
    try:
        with pytest.raises(SystemExit) as stop:
            train.main(job(tiny_cifar, runs, "--trainer.logger", "false", "--lr_find", "--lr_find.num_training", "20",
                           "--lr_find.stop_div", "null", "--trainer.max_epochs", "10"))
    finally:
        logging.getLogger("lightning.pytorch.tuner.lr_finder").removeHandler(handler)
    assert stop.value.code == 130
    assert not [line for line in said if "diverging loss" in line]  # Lightning gives that reason for any early end
    run_dir = only_run(runs)
    found = json.loads((run_dir / "lr_find.json").read_text())
    assert found["suggestion"] is None  # no advice from part of a sweep
    assert len(found["lr"]) == len(found["loss"]) == 5  # the batch that was running is kept, nothing after it
    assert (run_dir / "lr_find.png").is_file() and not list(run_dir.glob(".lr_find_*.ckpt"))
    printed = capsys.readouterr().out
    assert f"stopped by Ctrl-C after 5 of 20 steps, at lr {found['lr'][-1]:.3g}" in printed
    assert "--model.lr" not in printed  # the steepest descent of part of a sweep is no advice
    assert signal.getsignal(signal.SIGINT) is before  # the first Ctrl-C gave the next one back
    assert validated and max(validated) < 5  # at the first epoch's end only: Lightning would validate on stopping


def test_a_second_ctrl_c_stops_the_lr_sweep_at_once_with_exit_130(tiny_cifar, tmp_path, capsys, monkeypatch,
                                                                  recwarn):
    import lightning_modules
    step = lightning_modules.DarknetClassifier.training_step

    def interrupted_twice(self, batch, batch_idx):
        if self.trainer.global_step == 2:
            os.kill(os.getpid(), signal.SIGINT)  # end the sweep after this batch
            os.kill(os.getpid(), signal.SIGINT)  # no: at once (Python's KeyboardInterrupt, Lightning's exit 1)
        return step(self, batch, batch_idx)
    monkeypatch.setattr(lightning_modules.DarknetClassifier, "training_step", interrupted_twice)
    runs = tmp_path / "runs"
    monkeypatch.setattr(sys, "argv", ["train.py", *job(tiny_cifar, runs, "--trainer.logger", "false", "--lr_find",
                                                       "--lr_find.num_training", "20", "--lr_find.stop_div", "null")])
    try:
        with pytest.raises(SystemExit) as stop:
            train.command_line()
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Lightning's path ignores Ctrl-C from then on
    err = capsys.readouterr().err
    assert stop.value.code == 130 and err.strip().endswith("Ctrl-C: stopped") and "Traceback" not in err
    # Lightning's advice to add ModelCheckpoint to the Trainer (the finder's callbacks were in place): not the user's
    assert not [w for w in recwarn if "Be aware that when using `ckpt_path`" in str(w.message)]
    run_dir = only_run(runs)
    # no plot of a sweep stopped at once, and no model copy (Lightning's, deleted after a finished sweep) left behind
    assert not (run_dir / "lr_find.png").exists() and not list(run_dir.glob(".lr_find_*.ckpt"))

