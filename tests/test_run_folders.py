"""train.py's run folders end to end: a name retried or refused, the run `--ckpt_path last` takes, a SLURM requeue, an
earlier checkpoint carried on in a new run."""

import json
import time

import pytest
from runs import a_run, job, run_folders

import train

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets: threads only add contention


def test_a_named_run_that_stopped_before_training_can_be_retried_under_its_name(tiny_cifar, tmp_path):
    """A refused run leaves no folder; one that stopped in its set-up all the same (killed there, or left by a train.py
    before that) is retried in, and kept when the retry is refused too: the folder was there before."""
    runs = tmp_path / "runs"
    a_run(runs, "mine", started=100.0, trained=False, checkpoint=False)
    with pytest.raises(train.UserError, match="--data.data_dir"):
        train.main(job(tiny_cifar / "absent", runs, "--data.download", "false", "--run_name", "mine"))
    assert json.loads((runs / "mine" / "run.json").read_text())["started"] == 100.0
    train.main(job(tiny_cifar, runs, "--run_name", "mine"))  # the same name, now with the right path
    assert json.loads((runs / "mine" / "run.json").read_text())["trained"] is True
    with pytest.raises(train.UserError, match="mine exists already"):  # a run that trained is still protected
        train.main(job(tiny_cifar, runs, "--run_name", "mine"))


def test_last_passes_over_a_newer_run_that_stopped_before_training(tiny_cifar, tmp_path):
    """A refused run leaves no folder; a job killed in its set-up (or a train.py before that) left one, marked
    "trained": false."""
    runs = tmp_path / "runs"
    train.main(job(tiny_cifar, runs, "--run_name", "finished"))
    with pytest.raises(train.UserError, match="--data.data_dir"):  # a typo: stops in the data set-up
        train.main(job(tiny_cifar / "absent", runs, "--data.download", "false", "--run_name", "typo"))
    assert not (runs / "typo").exists()
    a_run(runs, "killed", started=time.time(), trained=False, checkpoint=False)
    assert json.loads((runs / "finished" / "run.json").read_text())["trained"] is True
    train.main(job(tiny_cifar, runs, "--ckpt_path", "last", "--trainer.max_epochs", "2"))  # resumes "finished"
    assert json.loads((runs / "finished" / "results.json").read_text())["epochs"] == 2.0
    assert sorted(p.name for p in run_folders(runs)) == ["finished", "killed"]


def test_last_refuses_a_newer_run_without_checkpoint_and_leaves_the_older_one_alone(tiny_cifar, tmp_path):
    runs = tmp_path / "runs"
    train.main(job(tiny_cifar, runs))
    (finished,) = run_folders(runs)
    before = (finished / "results.json").read_bytes()
    with pytest.raises(RuntimeError, match="simulated crash"):  # killed before its first checkpoint
        train.main(job(tiny_cifar, runs, "--trainer.callbacks+=conftest.CrashAtEpoch",
                       "--trainer.callbacks.epoch", "0"))
    (newer,) = set(run_folders(runs)) - {finished}
    assert not (newer / "checkpoints" / "last.ckpt").exists()
    with pytest.raises(train.UserError, match=f"the newest darknet run, {newer}, has no checkpoint.*"
                                              f"--run_name {finished.name} --ckpt_path last"):
        train.main(job(tiny_cifar, runs, "--ckpt_path", "last"))
    assert (finished / "results.json").read_bytes() == before and set(run_folders(runs)) == {finished, newer}
    # --run_name narrows it to the older run, which carries on in its own folder
    train.main(job(tiny_cifar, runs, "--ckpt_path", "last", "--run_name", finished.name,
                   "--trainer.max_epochs", "2"))
    assert json.loads((finished / "results.json").read_text())["epochs"] == 2.0
    assert not (newer / "results.json").exists()


def test_last_skips_the_newer_run_of_another_system_sharing_the_root(tiny_cifar, tmp_path):
    runs = tmp_path / "runs"
    train.main(job(tiny_cifar, runs))
    (darknet,) = run_folders(runs)
    wgan = runs / "wgan-run"  # newer, with a checkpoint, but a WGAN's
    (wgan / "checkpoints").mkdir(parents=True)
    (wgan / "checkpoints" / "last.ckpt").write_bytes(b"not ours")
    (wgan / "run.json").write_text(json.dumps({"model": "lightning_modules.WGAN", "started": time.time() + 60}))
    train.main(job(tiny_cifar, runs, "--ckpt_path", "last", "--trainer.max_epochs", "2"))
    assert json.loads((darknet / "results.json").read_text())["epochs"] == 2.0
    assert sorted(p.name for p in wgan.rglob("*")) == ["checkpoints", "last.ckpt", "run.json"]
    with pytest.raises(train.UserError, match="belongs to a wgan run, this is darknet; use --system wgan"):
        train.main(job(tiny_cifar, runs, "--ckpt_path", "last", "--run_name", "wgan-run"))
    # a class of the user's has no --system of its own (following "--system my_module.MyWGAN" was a second error)
    (wgan / "run.json").write_text(json.dumps({"model": "my_module.MyWGAN", "started": time.time() + 60}))
    with pytest.raises(train.UserError, match=r"belongs to a my_module.MyWGAN run, this is darknet; use --model "
                                              r"my_module.MyWGAN or another --run_name$"):
        train.main(job(tiny_cifar, runs, "--ckpt_path", "last", "--run_name", "wgan-run"))
    (runs.parent / "wgan").mkdir()
    (runs.parent / "wgan" / "mine").symlink_to(wgan)  # in runs/wgan/, as train.py --system wgan puts it
    with pytest.raises(train.UserError, match=r"use --system wgan --model my_module.MyWGAN or another --run_name$"):
        train.main(job(tiny_cifar, runs.parent / "wgan", "--ckpt_path", "last", "--run_name", "mine"))


def test_a_slurm_requeue_carries_on_in_its_folder_from_last(tiny_cifar, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    monkeypatch.setenv("SLURM_JOB_ID", "4242")  # a requeued job keeps its id; Lightning saw no hpc_ckpt here
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)  # the job's first launch
    with pytest.raises(RuntimeError, match="simulated crash"):
        train.main(job(tiny_cifar, runs, "--trainer.max_epochs", "2", "--trainer.callbacks+=conftest.CrashAtEpoch"))
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")  # SLURM counts the requeue
    train.main(job(tiny_cifar, runs, "--trainer.max_epochs", "2"))
    (run_dir,) = run_folders(runs)
    results = json.loads((run_dir / "results.json").read_text())
    assert run_dir.name == "slurm-4242" and results["global_step"] == 6 and results["epochs"] == 2.0
    assert results["resumed_from"] == str(run_dir / "checkpoints" / "last.ckpt")  # not restarted from scratch


def test_an_earlier_checkpoint_of_a_run_is_not_carried_on_in_that_run_but_in_a_new_one(tiny_cifar, tmp_path):
    """Carried on in place, its later last.ckpt, test outputs and results.json were replaced without a word."""
    import shutil
    runs = tmp_path / "runs"
    train.main(job(tiny_cifar, runs, "--run_name", "r"))
    run_dir = runs / "r"
    earlier = shutil.copy(run_dir / "checkpoints" / "last.ckpt", run_dir / "checkpoints" / "epoch1.ckpt")
    train.main(job(tiny_cifar, runs, "--run_name", "r", "--ckpt_path", "last", "--trainer.max_epochs", "2"))
    assert "run_name: null" in (run_dir / "config.yaml").read_text()  # the folder's name, run-specific as its place
    with pytest.raises(train.UserError, match=r"the run is at epoch 2, past --trainer.max_epochs 1; raise it to train"):
        train.main(job(tiny_cifar, runs, "--run_name", "r", "--ckpt_path", "last"))  # was Lightning's traceback
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    with pytest.raises(train.UserError, match=rf"--ckpt_path {earlier}: an earlier checkpoint of run r \(step 3; the "
                                              rf"run is at step 6\).*Add --run_name NEW"):
        train.main(job(tiny_cifar, runs, "--ckpt_path", str(earlier), "--trainer.max_epochs", "2"))
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before
    train.main(job(tiny_cifar, runs, "--ckpt_path", str(earlier), "--run_name", "fork", "--trainer.max_epochs", "2"))
    assert json.loads((runs / "fork" / "results.json").read_text())["global_step"] == 6
    # a resume into a new folder writes that folder's config.yaml, not a resume's config beside a missing one
    assert (runs / "fork" / "config.yaml").is_file() and not list((runs / "fork").glob("config-resume-*"))
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before
    # its own last.ckpt: nothing left to train, nothing replaced but the config of this launch
    train.main(job(tiny_cifar, runs, "--ckpt_path", str(run_dir / "checkpoints" / "last.ckpt"), "--trainer.max_epochs",
                   "2"))
    assert json.loads((run_dir / "results.json").read_bytes()) == json.loads(before[run_dir / "results.json"])


def test_a_new_run_never_reuses_an_existing_folder(tiny_cifar, tmp_path):
    runs = tmp_path / "runs"
    train.main(job(tiny_cifar, runs, "--run_name", "mine"))
    with pytest.raises(train.UserError, match="mine exists already; resume it with --run_name mine --ckpt_path last"):
        train.main(job(tiny_cifar, runs, "--run_name", "mine"))
