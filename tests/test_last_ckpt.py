"""When a run writes last.ckpt (callbacks/saving.py's TimedSave, EpochEndSave): on a time interval inside an epoch, at
each epoch's end, at the run's last step; Lightning's own without a checkpoint callback."""

import json
from pathlib import Path

import lightning as L
import pytest
import torch
from runs import job, run_folders, wgan_job

import train

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets: threads only add contention


def test_a_run_that_ends_mid_epoch_leaves_last_ckpt_at_its_last_step(tiny_cifar, tmp_path):
    """A 1cycle of 1.5 epochs ends the run in the middle of its second epoch, with no validation there, so the
    config's ModelCheckpoint (after validations) holds the first epoch's weights: last.ckpt must still hold the
    final ones, which results.json names, the classify command reads and a resume continues from."""
    runs, config = tmp_path / "runs", tmp_path / "short_cycle.yaml"
    config.write_text("trainer:\n  callbacks:\n    - class_path: callbacks.TrainingPhaseScheduler\n      init_args:\n"
                      "        one_cycle: {div: 20, pct: 20, max_mom: 0.95, min_mom: 0.85, cycle_len: 1.5}\n"
                      "    - class_path: lightning.pytorch.callbacks.ModelCheckpoint\n      init_args:\n"
                      "        {monitor: val/acc, mode: max, save_last: true}\n")
    train.main(job(tiny_cifar, runs, "--run_name", "r", "--config", str(config), "--trainer.max_epochs", "2"))
    results = json.loads((runs / "r" / "results.json").read_text())  # 3 batches of 8 an epoch: 4 steps in 1.5
    saved = torch.load(results["checkpoint"]["last"], weights_only=False)
    assert results["global_step"] == saved["global_step"] == 4
    train.main(job(tiny_cifar, runs, "--run_name", "r", "--ckpt_path", "last", "--trainer.max_steps", "5",
                   "--trainer.max_epochs", "3", "--trainer.callbacks+=runs.StartStep"))
    assert (runs / "r" / "start_step").read_text() == "4"  # where the first run ended


def test_a_config_without_a_checkpoint_callback_keeps_lightnings_in_the_run_folder(tiny_cifar, tmp_path):
    runs = tmp_path / "runs"
    args = ["--run_name", "r", "--model.one_cycle", "[20, 20, 0.95, 0.85]", "--trainer.callbacks", "[]"]
    train.main(job(tiny_cifar, runs, *args))
    assert torch.load(runs / "r" / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 3
    train.main(job(tiny_cifar, runs, *args, "--ckpt_path", "last"))  # finds it: a finished run, nothing to add
    assert json.loads((runs / "r" / "results.json").read_text())["global_step"] == 3


class CrashAtBatch(L.Callback):
    """Raises after `step` optimizer steps, as a job killed in the middle of an epoch."""

    def __init__(self, step: int = 2):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            raise RuntimeError("simulated crash")


@pytest.mark.parametrize("system", ["darknet", "wgan", "cyclegan"])
def test_last_ckpt_is_saved_on_a_time_interval_within_the_epoch(system, tiny_cifar, tiny_unpaired, tmp_path):
    """Also for the GANs, whose manual optimization Lightning 2.6's ModelCheckpoint(train_time_interval) ignores."""
    runs = tmp_path / "runs"
    steps_per_batch = 3 if system == "cyclegan" else 1
    args = {"darknet": job(tiny_cifar, runs, "--data.batch_size", "2"),
            "wgan": ["--system", "wgan", "--data.data_dir", str(tiny_cifar / "train"), "--data.batch_size", "2",
                     "--data.num_workers", "0", "--model.isize", "16", "--data.isize", "16", "--model.ngf", "4",
                     "--model.ndf", "4", "--trainer.default_root_dir", str(runs), "--trainer.logger", "false",
                     "--trainer.enable_progress_bar", "false"],
            "cyclegan": ["--system", "cyclegan", "--data.data_dir", str(tiny_unpaired), "--data.batch_size", "1",
                         "--data.load_size", "36", "--data.crop_size", "32", "--data.num_workers", "0",
                         "--model.n_blocks", "1", "--model.ngf", "4", "--model.ndf", "4",
                         "--model.log_images_every_n_batches", "0", "--trainer.default_root_dir", str(runs),
                         "--trainer.logger", "false", "--trainer.enable_progress_bar", "false"]}[system]
    # an interval of 60 us passes between any two batches (6 ms did not, for the Darknet's tiny batches on a fast
    # CPU); the crash comes after the 4th batch, before its save
    with pytest.raises(RuntimeError, match="simulated crash"):
        train.main([*args, "--save_every_minutes", "0.000001", "--trainer.callbacks+=test_last_ckpt.CrashAtBatch",
                    "--trainer.callbacks.step", str(4 * steps_per_batch)])
    (run_dir,) = run_folders(runs)
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["last.ckpt"]  # no last-v1.ckpt
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 3 * steps_per_batch


def test_last_ckpt_is_written_at_each_epoch_end_even_without_a_top_k_save(tiny_cifar, tmp_path):
    """Lightning 2.6 writes save_last's last.ckpt only with a top-k save: a monitored metric that does not improve
    (here `epoch`, minimised: only epoch 0 is ever the best) or a WGAN saving every 5,000 steps left a crash to
    resume from an older epoch, or from nothing."""
    runs, config = tmp_path / "runs", tmp_path / "checkpoint.yaml"
    config.write_text("trainer:\n  callbacks:\n    - class_path: lightning.pytorch.callbacks.ModelCheckpoint\n"
                      "      init_args: {monitor: epoch, mode: min, save_last: true, enable_version_counter: false}\n")
    crash = ["--trainer.callbacks+=conftest.CrashAtEpoch", "--trainer.callbacks.epoch", "3"]
    with pytest.raises(RuntimeError, match="simulated crash"):  # after 3 epochs of 3 batches
        train.main(job(tiny_cifar, runs, "--run_name", "darknet", "--config", str(config), "--model.one_cycle",
                       "null", "--trainer.max_epochs", "4", *crash))
    with pytest.raises(RuntimeError, match="simulated crash"):  # after 3 epochs of 6 batches
        train.main(wgan_job(tiny_cifar, runs, "--run_name", "wgan", "--trainer.max_epochs", "4", *crash))
    for run, step in (("darknet", 9), ("wgan", 18)):
        assert torch.load(runs / run / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == step


class LastAtSecondBatch(L.Callback):
    """Writes whether checkpoints/last.ckpt exists as the first epoch's second batch starts."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == 0 and batch_idx == 1:
            run_dir = Path(trainer.default_root_dir)
            (run_dir / "last_at_second_batch").write_text(str((run_dir / "checkpoints" / "last.ckpt").exists()))


@pytest.mark.parametrize("minutes, saved", [("0", "False"), ("0.000001", "True")])
def test_save_every_minutes_0_saves_nothing_inside_an_epoch(minutes, saved, tiny_cifar, tmp_path):
    """--save_every_minutes 0: never (a save at every batch otherwise); the second case shows the record sees one."""
    runs = tmp_path / "runs"
    train.main(job(tiny_cifar, runs, "--run_name", "r", "--save_every_minutes", minutes,
                   "--trainer.callbacks+=test_last_ckpt.LastAtSecondBatch"))
    assert (runs / "r" / "last_at_second_batch").read_text() == saved


@pytest.mark.parametrize("system", ["wgan", "cyclegan"])
def test_lightnings_own_checkpoint_callback_writes_no_second_last_file(system, tiny_cifar, tiny_unpaired, tmp_path):
    """Without the config's ModelCheckpoint (--trainer.callbacks "[]", or a --config whose callbacks list replaces
    the shipped one), Lightning's own wrote last-v1.ckpt beside train.py's last.ckpt, and one more each launch (about
    420 MB each for a CycleGAN)."""
    from runs import cyclegan_job, wgan_job
    runs = tmp_path / "runs"
    make = {"wgan": lambda *extra: wgan_job(tiny_cifar, runs, "--trainer.max_epochs", "2", *extra),
            "cyclegan": lambda *extra: cyclegan_job(tiny_unpaired, runs, "--data.num_workers", "0", *extra)}[system]
    args = ["--trainer.callbacks", "[]", "--run_name", "r", "--trainer.limit_train_batches", "2"]
    train.main(make(*args))
    train.main(make(*args, "--trainer.max_epochs", "3", "--ckpt_path", "last"))
    saved = sorted(p.name for p in (runs / "r" / "checkpoints").iterdir())
    assert "last.ckpt" in saved and not [name for name in saved if name.startswith("last-v")], saved
