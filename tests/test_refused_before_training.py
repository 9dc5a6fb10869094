"""train.main's refusals before training, and what a refused run leaves behind."""

import json
import os
import re
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import ROOT, run_in_process
from runs import cli_job as job

import train
from callbacks import cli as train_cli

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets: threads only add contention


@pytest.mark.parametrize("name", ["exp/1", "../escaped", ".."])
def test_a_run_name_that_is_a_path_is_refused(name, tiny_cifar, tmp_path):
    """`exp/1` trained, but `--ckpt_path last` could not find it again; `../escaped` wrote beside the root."""
    with pytest.raises(train.UserError, match=f"--run_name '{re.escape(name)}': one folder's name under "):
        train.main(job(tiny_cifar, tmp_path / "root" / "runs", "--run_name", name))
    assert not (tmp_path / "root").exists()


@pytest.mark.parametrize("model, data, owner, own", [
    ("lightning_modules.DarknetClassifier", "ImageFolderDataModule", "wgan", "CIFAR10DataModule (configs/darknet"),
    ("lightning_modules.WGAN", "CIFAR10DataModule", "darknet", "ImageFolderDataModule (configs/wgan"),
    ("my.GAN", "CIFAR10DataModule", None, None),  # a system of the user's: any data
    ("lightning_modules.CycleGAN", "StyleTransferDataModule", "style", "UnpairedImageDataModule (configs/cyclegan"),
    ("lightning_modules.StyleTransfer", "UnpairedImageDataModule", "cyclegan", "StyleTransferDataModule (configs/st"),
    ("lightning_modules.CycleGAN", "UnpairedImageDataModule", None, None),  # its own
    ("lightning_modules.CycleGAN", "MyPairs", None, None)])  # a data module of the user's
def test_another_systems_data_module_is_refused_naming_both(model, data, owner, own):
    """Each failed at its first batch, in a traceback: a tuple where images were due, labels missing."""
    datamodule = type(data, (), {})()
    if owner is None:
        train_cli.check_data(model, datamodule)
        return
    with pytest.raises(train.UserError, match=re.escape(
            f"--data {data} is the data of --system {owner}; {model.rpartition('.')[2]} trains on {own}")):
        train_cli.check_data(model, datamodule)


def test_another_systems_data_module_is_refused_in_one_line_before_the_run_folder(tiny_cifar, tmp_path):
    with pytest.raises(train.UserError, match="--data ImageFolderDataModule is the data of --system wgan; "
                                              "DarknetClassifier trains on CIFAR10DataModule"):
        train.main(job(tiny_cifar, tmp_path / "runs", "--trainer.logger", "false", "--data", "ImageFolderDataModule",
                       "--data.data_dir", str(tiny_cifar / "train")))
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("args, message", [
    (["--model.tta", "sideways"], "tta must be one of"),  # the model's own check
    (["--data.batch_size", "0"], "--data.batch_size must be at least 1"),  # the data module's
    (["--data.data_dir", "absent", "--data.download", "false"], "no CIFAR-10 found"),  # in the fit's data set-up
    (["--trainer.val_check_interval", "4"], "more than the 3 batches"),  # Lightning's, as the fit starts
    # the same with a W&B save_dir of the user's: its offline run and the folders made for it went too
    (["--trainer.val_check_interval", "4", "--trainer.logger.save_dir", "logs/wandb_runs"], "more than the 3 batches"),
    (["--init_from", "other.ckpt"], "is a WGAN checkpoint, this is darknet")])
def test_a_refused_run_leaves_nothing_behind(args, message, tiny_cifar, tmp_path, monkeypatch):
    """Bad input is refused in one line and leaves no run folder: no run.json marked "trained": false, W&B run,
    config.yaml or runs/ folder made for it (they were left behind by each of these)."""
    monkeypatch.setenv("WANDB_MODE", "offline")  # the shipped config's W&B logger, which writes in the folder
    monkeypatch.chdir(tmp_path)
    if "--init_from" in args:
        from lightning_modules import WGAN
        torch.save({"state_dict": WGAN(isize=16, nz=8, ngf=4, ndf=4).state_dict(),
                    "hyper_parameters": {"_class_path": "lightning_modules.WGAN"}}, tmp_path / "other.ckpt")
    data = tmp_path / args[1] if args[0] == "--data.data_dir" else tiny_cifar
    runs = tmp_path / "runs" / "darknet"
    with pytest.raises(ValueError, match=message):  # a UserError, or jsonargparse's error around the model's
        train.main(job(data, runs, *args))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar10", *(["other.ckpt"] if "--init_from" in args else [])]


def test_a_refusal_keeps_the_folder_of_a_resumed_run_and_of_one_that_began_training(tiny_cifar, tmp_path):
    """Only a refused run's own new folder is removed: not the run it resumes (refused in the data set-up), nor a
    new one once its training began (an unreadable image met in the middle of an epoch)."""
    runs = tmp_path / "runs"
    train.main(job(tiny_cifar, runs, "--trainer.logger", "false", "--run_name", "done", "--trainer.max_epochs", "1"))
    before = {p: p.read_bytes() for p in (runs / "done").rglob("*") if p.is_file()}
    with pytest.raises(train.UserError, match="no CIFAR-10 found"):
        train.main(job(tmp_path / "absent", runs, "--trainer.logger", "false", "--data.download", "false",
                       "--ckpt_path", "last"))
    assert {p: p.read_bytes() for p in (runs / "done").rglob("*") if p.is_file()} == before
    with pytest.raises(train.UserError, match="unreadable at step 2"):
        train.main(job(tiny_cifar, runs, "--trainer.logger", "false", "--run_name", "began",
                       "--trainer.callbacks+=test_refused_before_training.RefuseAtStep"))
    assert json.loads((runs / "began" / "run.json").read_text())["trained"] is True


class RefuseAtStep(L.Callback):
    """A user's mistake found after training began, as an unreadable image in the second batch."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == 2:
            raise train.UserError("unreadable at step 2")


@pytest.mark.parametrize("form", ["job", "fit"])
def test_an_option_is_never_shortened_so_a_prefix_typo_is_refused(form, tiny_cifar, tmp_path, capsys, monkeypatch):
    args = job(tiny_cifar, tmp_path / "runs", "--trainer.max_epoch", "1")
    if form == "fit":
        args = ["fit", "--config", str(ROOT / "configs" / "darknet.yaml"), *args[2:]]
    refused = run_in_process(args, capsys, monkeypatch)
    assert refused.returncode == 2 and "unrecognized arguments: --trainer.max_epoch 1" in refused.stderr
    assert not (tmp_path / "runs").exists()


def test_a_negative_save_every_minutes_is_refused(tiny_cifar, tmp_path):
    with pytest.raises(train.UserError, match=r"--save_every_minutes -1.0: give minutes, or 0 for no timed saves"):
        train.main(job(tiny_cifar, tmp_path / "runs", "--save_every_minutes", "-1"))


def test_unknown_system_lists_the_systems(capsys, monkeypatch):
    result = run_in_process(["--system", "resnet"], capsys, monkeypatch)
    assert result.returncode == 2 and "unknown --system 'resnet'; choose one of:" in result.stderr
    assert "darknet" in result.stderr.split("choose one of:")[1]


@pytest.mark.parametrize("native, seed", [(False, -1), (True, -1), (False, 2**32)])
def test_a_seed_numpy_cannot_take_is_refused_in_one_line(native, seed, tiny_cifar, tmp_path, capsys, monkeypatch):
    """neural-style's -seed -1 (a random seed): Lightning's seed_everything raised a bare ValueError."""
    args = job(tiny_cifar, tmp_path / "runs", "--seed_everything", str(seed))
    if native:
        args = ["fit", "--config", str(ROOT / "configs" / "darknet.yaml"), *args[2:]]
    result = run_in_process(args, capsys, monkeypatch)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert (f"--seed_everything {seed}: a seed is from 0 to {2**32 - 1}; for a new random seed each run give "
            "one from the shell, --seed_everything $RANDOM") in result.stderr
    assert not (tmp_path / "runs").exists()


def test_bad_config_key_is_named(tiny_cifar, tmp_path, capsys, monkeypatch):
    result = run_in_process(job(tiny_cifar, tmp_path, "--model.learning_rate", "0.1"), capsys, monkeypatch)
    assert result.returncode != 0 and "learning_rate" in result.stderr


def test_a_run_root_through_a_dangling_link_is_refused_in_one_line(tiny_cifar, tmp_path, capsys, monkeypatch):
    (tmp_path / "gone").symlink_to(tmp_path / "moved")  # a scratch disk not mounted, a renamed folder
    result = run_in_process(job(tiny_cifar, tmp_path / "gone" / "runs"), capsys, monkeypatch)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert (f"--trainer.default_root_dir {tmp_path / 'gone' / 'runs'}: {tmp_path / 'gone'} is a link to "
            f"{tmp_path / 'moved'}, which does not exist") in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar10", "gone"]  # no folder made


@pytest.mark.parametrize("stray", ["checkpoints", "images", "wandb", None])
def test_a_file_where_the_run_writes_a_folder_is_refused_before_training(stray, tiny_cifar, tmp_path, capsys,
                                                                         monkeypatch):
    """A file named like a folder the run writes into (its checkpoints/, images/, wandb/, or the run folder itself):
    one line naming it, before any training (the checkpoints' stopped the fit with a traceback after its first epoch,
    the images' in the test after the fit), and the file is left as it was."""
    runs = tmp_path / "runs"
    runs.mkdir()
    file = runs / "r" / stray if stray else runs / "r"
    file.parent.mkdir(exist_ok=True)
    file.write_text("notes")
    result = run_in_process(job(tiny_cifar, runs, "--run_name", "r"), capsys, monkeypatch)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert f"{file} is a file, not a folder; move it away, or give another --run_name" in result.stderr
    assert file.read_text() == "notes"
    if stray:  # nothing written beside it (a lock, run.json, W&B's files)
        assert sorted(p.name for p in (runs / "r").iterdir()) == [stray]
    assert not list(runs.glob("*/checkpoints/*.ckpt"))


@pytest.mark.parametrize("option", ["--trainer.callbacks.dirpath", "--trainer.logger.save_dir"])
def test_a_folder_given_outside_the_run_folder_below_a_file_is_refused_before_training(option, tiny_cifar, tmp_path,
                                                                                       capsys, monkeypatch):
    """The checkpoints' or W&B's folder moved out of the run folder, below a file (a mistyped path): one line naming
    the option and the file, and no run folder made (it stopped with NotADirectoryError's traceback, the checkpoints'
    after the first epoch's training)."""
    (tmp_path / "notes.txt").write_text("notes")
    runs, given = tmp_path / "runs", tmp_path / "notes.txt" / "out"
    result = run_in_process(job(tiny_cifar, runs, option, str(given)), capsys, monkeypatch)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert (f"{option} {given}: {tmp_path / 'notes.txt'} is a file, not a folder; move it away, or give another "
            f"{option}") in result.stderr
    assert (tmp_path / "notes.txt").read_text() == "notes" and not runs.exists()


@pytest.mark.parametrize("option, inside", [("--trainer.callbacks.dirpath", "checkpoints"),
                                             ("--trainer.logger.save_dir", "")])
def test_a_folder_given_inside_another_runs_folder_is_refused_before_training(option, inside, tiny_cifar, tmp_path,
                                                                             capsys, monkeypatch):
    """Another run's checkpoint folder given as this run's (a copied command line): its last.ckpt and best-*.ckpt
    were replaced by this run's, with no more than Lightning's "exists and is not empty" warning."""
    runs = tmp_path / "runs"
    train.main(job(tiny_cifar, runs, "--trainer.logger", "false", "--trainer.max_epochs", "1", "--run_name", "a"))
    before = {path: path.read_bytes() for path in (runs / "a").rglob("*") if path.is_file()}
    assert (runs / "a" / "checkpoints" / "last.ckpt") in before
    given = runs / "a" / inside
    result = run_in_process(job(tiny_cifar, runs, "--run_name", "b", option, str(given)), capsys, monkeypatch)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert (f"{option} {given}: {runs / 'a'} is the folder of another run (run.json there), whose files this run's "
            "would replace or mix with; give a folder outside it") in result.stderr
    assert {path: path.read_bytes() for path in (runs / "a").rglob("*") if path.is_file()} == before
    assert sorted(p.name for p in runs.iterdir()) == ["a"]


def test_a_checkpoint_folder_this_user_cannot_write_into_is_refused_before_training(tiny_cifar, tmp_path, capsys,
                                                                                   monkeypatch):
    """A read-only checkpoint folder (another user's, a read-only mount) failed at the first save, after an epoch."""
    (tmp_path / "shared").mkdir()
    real_access = os.access  # root may write anywhere: this user may not write into shared/
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: not (Path(p) == tmp_path / "shared" and mode & os.W_OK)
                        and real_access(p, mode, **kw))
    runs, given = tmp_path / "runs", tmp_path / "shared" / "ckpts"
    result = run_in_process(job(tiny_cifar, runs, "--trainer.callbacks.dirpath", str(given)), capsys, monkeypatch)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert (f"--trainer.callbacks.dirpath {given}: this user cannot write into {tmp_path / 'shared'} (permission "
            f"denied); give another --trainer.callbacks.dirpath") in result.stderr
    assert not runs.exists() and not given.exists()


def test_missing_data_folder_says_where_to_put_it(tmp_path, capsys, monkeypatch):
    result = run_in_process(job(tmp_path / "absent", tmp_path, "--data.download", "false"), capsys, monkeypatch)
    assert result.returncode != 0 and "no CIFAR-10 found in" in result.stderr
    assert "train/<class>/*.png" in result.stderr

