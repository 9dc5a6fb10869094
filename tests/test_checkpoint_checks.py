"""A checkpoint given to train.py, checked (callbacks/checkpoints.py): another system's or a truncated file named, its
step read, the options a resume changed named."""

import json
import re
from types import SimpleNamespace

import pytest
import torch
from conftest import run_in_process
from runs import assert_one_line_error, job, options_warnings

import train
from callbacks import checkpoints

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets: threads only add contention


def test_a_resume_with_other_options_than_the_runs_says_which_and_how_to_resume_as_it_began(tiny_cifar, tmp_path):
    """A resume that forgot an option of the run's start (a style run's --data.style) went on with the default
    without a word; the options that keep the network's shapes pass check_checkpoint."""
    runs = tmp_path / "runs"
    began = ["--model.lr", "0.2", "--data.pad", "2"]
    train.main(job(tiny_cifar, runs, "--run_name", "r", *began))
    run_dir = runs / "r"
    last = run_dir / "checkpoints" / "last.ckpt"
    with options_warnings() as said:  # the run's own options (a list, [1], read back from the checkpoint): nothing
        train.main(job(tiny_cifar, runs, "--run_name", "r", *began, "--ckpt_path", "last", "--trainer.max_epochs", "2"))
    assert said == []
    with options_warnings() as said:
        train.main(job(tiny_cifar, runs, "--run_name", "r", "--model.lr", "0.1", "--data.pad", "0", "--data.flip",
                       "false", "--ckpt_path", "last", "--trainer.max_epochs", "3"))
    assert len(said) == 1, said
    for changed in ("--model.lr: the run's 0.2, this resume's 0.1", "--data.pad: the run's 2, this resume's 0",
                    "--data.flip: the run's true, this resume's false",
                    f"python train.py --config {run_dir / 'config.yaml'} --ckpt_path {last}"):
        assert changed in said[0], said[0]
    assert "error" not in said[0].lower()  # a resume may change options: it goes on with them
    assert json.loads((run_dir / "results.json").read_text())["global_step"] == 9  # and it did
    with options_warnings() as said:  # as the run began, after a resume that changed them: not that command again
        train.main(["--config", str(run_dir / "config.yaml"), "--ckpt_path", str(last), "--trainer.max_epochs", "4"])
    assert len(said) == 1 and "--model.lr: the run's 0.1, this resume's 0.2" in said[0], said
    assert f"gives the run's config {run_dir / 'config.yaml'} already" in said[0] and "--config" not in said[0]
    with options_warnings() as said:  # a new run from the weights changes options on purpose
        train.main(job(tiny_cifar, runs, "--run_name", "tuned", "--init_from", str(run_dir), "--model.lr", "0.05",
                       "--data.flip", "false"))
    assert said == []


def test_a_copied_checkpoint_names_the_runs_values_as_flags(tmp_path):
    """Without a run folder's config.yaml: the options to give, as on the command line; a list and a tuple of the
    same values, and 1 and 1.0, are the same option, and LightningCLI's own entries are no options."""
    state = {"hyper_parameters": {"_class_path": "a.Model", "_instantiator": "x", "num_blocks": (1, 2), "lr": 1,
                                  "tta": "flip", "widths": None},
             "datamodule_hyper_parameters": {"_class_path": "d.Data", "style": "my style.jpg", "size": 64}}
    model = SimpleNamespace(hparams={"_class_path": "a.Model", "_instantiator": "y", "num_blocks": [1, 2],
                                     "lr": 1.0, "tta": "none", "widths": [8, 16], "new_option": 3})
    data = SimpleNamespace(hparams={"_class_path": "d.Data", "style": None, "size": 64})
    said = checkpoints.changed_options_warning(str(tmp_path / "copied.ckpt"), state, model, data)
    assert ("--model.tta: the run's flip, this resume's none; --model.widths: the run's null, this resume's '[8, 16]'; "
            "--data.style: the run's 'my style.jpg', this resume's null.") in said
    assert said.endswith(f"give --model.tta flip --model.widths null --data.style 'my style.jpg' --ckpt_path "
                            f"{tmp_path / 'copied.ckpt'}")
    said = checkpoints.changed_options_warning(str(tmp_path / "copied.ckpt"), state, model, SimpleNamespace(hparams={
        "_class_path": "d.Data", "style": "my style.jpg", "size": 64}))  # the data as the run's
    assert "--data.style" not in said and "--model.widths" in said
    said = checkpoints.changed_options_warning(str(tmp_path / "copied.ckpt"), state, None, SimpleNamespace(hparams={
        "_class_path": "other.Folders", "style": "my style.jpg"}))  # another data module class
    assert "--data: the run's d.Data, this resume's other.Folders. " in said
    assert checkpoints.changed_options_warning(str(tmp_path / "copied.ckpt"), state, SimpleNamespace(hparams={
        **state["hyper_parameters"], "tta": "flip"}), None) is None


def test_a_checkpoints_step_is_read_from_either_of_torchs_formats(tmp_path):
    torch.save({"global_step": 7}, tmp_path / "zip.ckpt")
    torch.save({"global_step": 8}, tmp_path / "legacy.ckpt", _use_new_zipfile_serialization=False)
    (tmp_path / "torn.ckpt").write_bytes(b"PK")
    steps = [checkpoints.checkpoint_step(tmp_path / f"{name}.ckpt") for name in ("zip", "legacy", "torn")]
    assert steps == [7, 8, None]


def test_a_checkpoint_of_another_system_is_named(tmp_path, capsys, monkeypatch):
    ckpt = tmp_path / "wgan.ckpt"  # what Lightning writes for a model built by LightningCLI
    torch.save({"state_dict": {"generator.0.weight": torch.zeros(1)}, "epoch": 0, "global_step": 5,
                "hyper_parameters": {"_class_path": "lightning_modules.WGAN", "isize": 32}}, ckpt)
    result = run_in_process(["--system", "cyclegan", "--ckpt_path", str(ckpt), "--trainer.logger", "false",
                             "--data.data_dir", str(tmp_path / "absent"), "--model.n_blocks", "1"], capsys, monkeypatch)
    assert_one_line_error(result, f"{ckpt} is a WGAN checkpoint, this is cyclegan; use --system wgan")


@pytest.mark.parametrize("flag", ["--ckpt_path", "--init_from"])
def test_another_systems_or_a_missing_checkpoint_is_refused_before_a_run_folder(tmp_path, flag):
    # the refusal came after the run folder was made: a folder (run.json, .lock, wandb/) for each mistyped path
    ckpt = tmp_path / "wgan.ckpt"
    torch.save({"state_dict": {"generator.0.weight": torch.zeros(1)}, "epoch": 0, "global_step": 5,
                "hyper_parameters": {"_class_path": "lightning_modules.WGAN", "isize": 32}}, ckpt)
    runs = tmp_path / "runs"
    args = ["--system", "cyclegan", "--trainer.logger", "false", "--data.data_dir", str(tmp_path / "absent"),
            "--model.n_blocks", "1", "--trainer.default_root_dir", str(runs)]
    with pytest.raises(train.UserError, match=re.escape(f"{ckpt} is a WGAN checkpoint, this is cyclegan; use "
                                                        "--system wgan")):
        train.main([*args, flag, str(ckpt)])
    with pytest.raises(train.UserError, match="not found|no such file"):
        train.main([*args, flag, str(tmp_path / "absent.ckpt")])
    assert not runs.exists()


def test_a_truncated_checkpoint_is_named_with_the_fix(tiny_cifar, tmp_path, capsys, monkeypatch):
    runs = tmp_path / "runs"
    train.main(job(tiny_cifar, runs, "--run_name", "first"))
    last = runs / "first" / "checkpoints" / "last.ckpt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])
    result = run_in_process(job(tiny_cifar, runs, "--ckpt_path", "last"), capsys, monkeypatch)
    assert_one_line_error(result, f"{last} is not a readable checkpoint (truncated?",
                          f"use an earlier one in {last.parent}")
