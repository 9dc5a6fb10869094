"""A resume after a max_steps stop or at an epoch's end (callbacks.MaxStepsResume): each remaining batch trained once,
in its epoch; the model's one-cycle held past its end."""

import json
import warnings
from pathlib import Path

import lightning as L
import pytest
import torch
from runs import job, wgan_job

import train

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets: threads only add contention


class EpochStarts(L.Callback):
    """Appends each epoch's number and starting step to epoch_starts in the run folder."""

    def on_train_epoch_start(self, trainer, pl_module):
        with open(Path(trainer.default_root_dir, "epoch_starts"), "a") as file:
            file.write(f"{trainer.current_epoch} {trainer.global_step}\n")


def epoch_starts(run_dir: Path) -> list[tuple[int, int]]:
    return [tuple(map(int, line.split())) for line in (run_dir / "epoch_starts").read_text().splitlines()]


@pytest.mark.parametrize("system", ["darknet", "wgan"])
def test_a_resume_with_max_steps_from_an_epoch_end_trains_every_remaining_epoch(system, tiny_cifar, tmp_path):
    """Lightning 2.6 restarted the finished epoch, ran it empty (the Darknet's last.ckpt, saved in
    on_train_epoch_end) or one batch past its end (the WGAN's, saved when the epoch was counted complete), and
    counted it again: the run ended an epoch short."""
    runs = tmp_path / "runs"
    make_job, per_epoch = {"darknet": (job, 3), "wgan": (wgan_job, 6)}[system]
    first = make_job(tiny_cifar, runs, "--run_name", "r", "--trainer.max_epochs", "4")
    if system == "darknet":
        first += ["--model.one_cycle", "null", "--trainer.callbacks", "[]"]
    train.main([*first, "--trainer.max_steps", str(2 * per_epoch)])  # stops at the end of the 2nd epoch
    train.main([*first, "--trainer.max_steps", "1000", "--ckpt_path", "last",
                "--trainer.callbacks+=test_resume_steps.EpochStarts"])
    assert epoch_starts(runs / "r") == [(2, 2 * per_epoch), (3, 3 * per_epoch)]
    results = json.loads((runs / "r" / "results.json").read_text())
    assert results["global_step"] == 4 * per_epoch and results["epochs"] == 4.0



class EpochAtTrainStart(L.Callback):
    def on_train_start(self, trainer, pl_module):
        Path(trainer.default_root_dir, "epoch_at_train_start").write_text(str(trainer.current_epoch))


def test_the_first_callback_of_a_resume_at_an_epoch_end_reads_the_next_epoch_as_training_starts(tiny_cifar, tmp_path):
    """MaxStepsResume counts the finished epoch before any callback of the config reads it (a schedule choosing its
    phase by epoch): it goes first, before the config's first callback."""
    runs = tmp_path / "runs"
    first = job(tiny_cifar, runs, "--run_name", "r", "--trainer.max_epochs", "4", "--model.one_cycle", "null",
                "--trainer.callbacks", "[]")
    train.main([*first, "--trainer.max_steps", "6"])  # 3 batches an epoch: stops at the end of the 2nd
    train.main([*first, "--trainer.max_steps", "9", "--ckpt_path", "last",
                "--trainer.callbacks+=test_resume_steps.EpochAtTrainStart"])
    assert (runs / "r" / "epoch_at_train_start").read_text() == "2"

@pytest.mark.parametrize("stop", ["max_steps", "max_steps twice"])
def test_a_wgan_stopped_inside_an_epoch_by_max_steps_trains_the_rest_of_it_on_resume(stop, tiny_cifar, tmp_path):
    """The shipped config's ModelCheckpoint(save_last) rewrites last.ckpt when training ends, after Lightning counted
    the epoch complete: resumed, it went on to the next epoch and the rest of the stopped one was never trained."""
    runs = tmp_path / "runs"
    first = wgan_job(tiny_cifar, runs, "--run_name", "r", "--trainer.max_epochs", "4")  # 6 batches an epoch
    train.main([*first, "--trainer.max_steps", "8"])  # the 3rd batch of the 2nd epoch
    if stop == "max_steps twice":
        train.main([*first, "--trainer.max_steps", "10", "--ckpt_path", "last"])  # the 5th
    train.main([*first, "--trainer.max_steps", "1000", "--ckpt_path", "last",
                "--trainer.callbacks+=test_resume_steps.EpochStarts"])
    assert epoch_starts(runs / "r")[-2:] == [(2, 12), (3, 18)]  # the 2nd epoch had its 6 batches
    results = json.loads((runs / "r" / "results.json").read_text())
    assert results["global_step"] == results["batches"] == 24 and results["epochs"] == 4.0


class EndSteps(L.Callback):
    """Writes the step the loggers stand at (Lightning's batches that stepped) when training ends."""

    def on_train_end(self, trainer, pl_module):
        steps = trainer.fit_loop.epoch_loop._batches_that_stepped
        Path(trainer.default_root_dir, "logged_steps").write_text(str(steps))


@pytest.mark.parametrize("stop", ["max_steps mid-epoch", "max_steps mid-epoch, resumed by epochs",
                                  "saved at an epoch's last batch"])
def test_a_resume_with_max_steps_continues_a_mid_epoch_stop_where_it_stopped(stop, tiny_cifar, tmp_path):
    """A max_steps stop inside an epoch (which passes on_train_epoch_end, as an epoch's end does) continues that
    epoch, counted once, twice in a row, with or without max_steps on the resume (Lightning 2.6 skipped the rest
    of the epoch without, trained nothing in the last epoch with); a save at the end of an epoch's last batch (the
    timed save) goes on to the next epoch with the loggers' step where it was. 3 batches an epoch; 4 in all."""
    runs = tmp_path / "runs"
    first = job(tiny_cifar, runs, "--run_name", "r", "--model.one_cycle", "null", "--trainer.callbacks", "[]",
                "--trainer.max_epochs", "4")
    if stop.startswith("max_steps mid-epoch"):  # the 1st batch of the 3rd epoch; resumed, the 1st of the 4th
        train.main([*first, "--trainer.max_steps", "7"])
        train.main([*first, "--trainer.max_steps", "10", "--ckpt_path", "last"])
        assert json.loads((runs / "r" / "results.json").read_text())["global_step"] == 10
    else:
        with pytest.raises(RuntimeError, match="simulated crash"):  # last.ckpt from the timed save at step 6
            train.main([*first, "--trainer.max_steps", "12", "--save_every_minutes", "0.000001",
                        "--trainer.callbacks+=conftest.CrashAtEpoch", "--trainer.callbacks.epoch", "2"])
        assert torch.load(runs / "r" / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 6
    by_epochs = [] if stop.endswith("by epochs") else ["--trainer.max_steps", "1000"]  # max_epochs 4 ends it
    train.main([*first, *by_epochs, "--ckpt_path", "last", "--trainer.callbacks+=test_resume_steps.EpochStarts",
                "--trainer.callbacks+=test_resume_steps.EndSteps"])
    results = json.loads((runs / "r" / "results.json").read_text())
    assert results["global_step"] == results["batches"] == 12 and results["epochs"] == 4.0
    assert (runs / "r" / "logged_steps").read_text() == "12"
    if not stop.startswith("max_steps mid-epoch"):
        assert epoch_starts(runs / "r")[-1] == (3, 9)  # the 4th epoch from step 9: the 3rd had its 3 batches


def test_the_torch_one_cycle_path_resumed_over_more_epochs_trains_on_at_its_final_lr(tiny_cifar, tmp_path):
    """--model.one_cycle keeps the cycle the run began with (torch's OneCycleLR raised past its total_steps, after the
    resume had trained a step)."""
    runs = tmp_path / "runs"
    args = ["--run_name", "r", "--model.one_cycle", "[20, 20, 0.95, 0.85]", "--trainer.callbacks", "[]"]
    train.main(job(tiny_cifar, runs, *args))  # one epoch: 3 steps
    first = json.loads((runs / "r" / "results.json").read_text())
    with pytest.warns(UserWarning, match="--model.one_cycle was planned over 3 steps, the training the run began "
                                         "with, and is kept: the steps after it train at its final lr"):
        train.main(job(tiny_cifar, runs, *args, "--ckpt_path", "last", "--trainer.max_epochs", "2"))
    again = json.loads((runs / "r" / "results.json").read_text())
    assert again["global_step"] == 6 and again["final_lr"] == first["final_lr"]  # held, not extrapolated


def test_one_cycle_then_hold_is_torchs_one_cycle_then_its_last_values():
    from lightning_modules.darknet_classifier import OneCycleThenHold
    kwargs = {"max_lr": 0.4, "total_steps": 20, "pct_start": 0.4, "anneal_strategy": "linear", "three_phase": True,
              "div_factor": 20, "final_div_factor": 100, "base_momentum": 0.85, "max_momentum": 0.95}
    seen = []
    for cls in (torch.optim.lr_scheduler.OneCycleLR, OneCycleThenHold):
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.1, momentum=0.9)
        schedule, values = cls(optimizer, **kwargs), []
        for _ in range(20 if cls is torch.optim.lr_scheduler.OneCycleLR else 25):
            values.append((optimizer.param_groups[0]["lr"], optimizer.param_groups[0]["momentum"]))
            optimizer.step()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                schedule.step()
        seen.append(values)
    torch_values, ours = seen
    assert ours[:20] == torch_values and ours[20:] == [torch_values[-1]] * 5
    assert torch_values[-1][0] == pytest.approx(0.4 / 20 / 100)  # the cycle's end: lr / div / final_div
