"""A tiny Darknet job through train.main end to end: results, overrides, checkpoints, seeds."""

import contextlib
import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from lightning.pytorch.trainer.states import TrainerFn
from runs import cli_job as job
from runs import only_run

import train
from callbacks import cli as train_cli
from callbacks import saving

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets: threads only add contention


def test_job_fits_tests_and_writes_results(tiny_cifar, tmp_path, capsys):
    runs = tmp_path / "runs"
    train.main(job(tiny_cifar, runs, "--trainer.logger", "false", "--trainer.callbacks+=runs.LrAtBatchStart",
                   f"--trainer.callbacks.record={tmp_path / 'lr'}"))
    run_dir = only_run(runs)
    results = json.loads((run_dir / "results.json").read_text())
    assert 0 <= results["test"]["test/acc"] <= 1 and results["epochs"] == 2 and results["global_step"] == 6
    assert results["resumed_from"] is None
    assert (run_dir / "checkpoints" / "last.ckpt").is_file() and os.path.isfile(results["checkpoint"]["best"])
    assert results["final_lr"] == json.loads((tmp_path / "lr").read_text())  # the lr the last batch trained at
    assert (run_dir / "config.yaml").is_file()
    printed = capsys.readouterr().out
    assert "test/acc" in printed and f"Results written to {run_dir / 'results.json'}" in printed


def test_results_leave_out_the_lr_monitors_values_which_lag_behind(tiny_cifar, tmp_path, monkeypatch):
    """LearningRateMonitor logs every log_every_n_steps: its last value was a step's before the end (0.178 in a
    review's 1cycle that ended at 0.0035). results.json gives the lr the last batch trained at instead."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    runs = tmp_path / "runs"
    train.main(job(tiny_cifar, runs, "--trainer.log_every_n_steps", "1", "--trainer.callbacks+=runs."
                   "LrAtBatchStart", f"--trainer.callbacks.record={tmp_path / 'lr'}"))
    results = json.loads((only_run(runs) / "results.json").read_text())
    assert not [k for k in results["final_metrics"] if k.startswith("lr-")] and "train/loss" in results["final_metrics"]
    assert results["final_lr"] == json.loads((tmp_path / "lr").read_text())


@pytest.mark.parametrize("given", ["last", "the run folder"])
def test_crashed_run_resumes_from_last_in_the_same_folder(given, tiny_cifar, tmp_path):
    """`--ckpt_path last`, or the run's folder, which stands for its last.ckpt as for --init_from and the commands (it
    was 'no such file')."""
    runs = tmp_path / "runs"
    with pytest.raises(RuntimeError, match="simulated crash"):
        train.main(job(tiny_cifar, runs, "--trainer.logger", "false", "--trainer.callbacks+=conftest.CrashAtEpoch"))
    first = only_run(runs)
    state = torch.load(first / "checkpoints" / "last.ckpt", weights_only=False)
    assert state["epoch"] == 0 and state["global_step"] == 3
    if given != "last":
        with pytest.raises(train.UserError, match=rf"--ckpt_path {runs}: a folder without checkpoints/last.ckpt; "):
            train.main(job(tiny_cifar, runs, "--trainer.logger", "false", "--ckpt_path", str(runs)))
    resume = "last" if given == "last" else str(first)
    train.main(job(tiny_cifar, runs, "--trainer.logger", "false", "--ckpt_path", resume))
    assert only_run(runs) == first
    results = json.loads((first / "results.json").read_text())
    assert results["epochs"] == 2 and results["global_step"] == 6  # three more steps, not six
    assert results["resumed_from"] == str(first / "checkpoints" / "last.ckpt")
    resumed = torch.load(first / "checkpoints" / "last.ckpt", weights_only=False)
    assert resumed["callbacks"]["TrainingPhaseScheduler"]["batches_seen"] == 6  # the 1cycle went on where it stopped


def test_overrides_reach_model_data_and_trainer(tiny_cifar, tmp_path, capsys):
    with pytest.raises(SystemExit):
        train.main(job(tiny_cifar, tmp_path, "--model.lr", "0.25", "--trainer.precision", "bf16-mixed",
                       "--print_config"))
    printed = capsys.readouterr().out
    assert "lr: 0.25" in printed and "precision: bf16-mixed" in printed and "nf: 4" in printed


def test_limit_batches_of_1_on_the_command_line_is_one_batch_not_all(tiny_cifar, tmp_path, capsys):
    # Lightning's int 1 is one batch and its float 1.0 all of them; typing's Union cache handed jsonargparse the
    # Trainer's Optional[Union[int, float]] as fabric's Union[float, int, None], so "1" became 1.0: a whole epoch
    with pytest.raises(SystemExit):
        train.main(job(tiny_cifar, tmp_path, "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches",
                       "0.5", "--trainer.limit_test_batches", "2", "--print_config"))
    printed = capsys.readouterr().out
    assert all(line in printed for line in ("limit_train_batches: 1\n", "limit_val_batches: 0.5\n",
                                            "limit_test_batches: 2\n"))
    runs = tmp_path / "runs"
    train.main(job(tiny_cifar, runs, "--trainer.logger", "false", "--trainer.limit_train_batches", "1"))
    assert json.loads((only_run(runs) / "results.json").read_text())["global_step"] == 2  # 2 epochs of 1 (of 3)


def test_enable_checkpointing_false_trains_without_checkpoints(tiny_cifar, tmp_path):
    """Lightning refused the flag beside the shipped config's ModelCheckpoint, with a traceback."""
    runs = tmp_path / "runs"
    train.main(job(tiny_cifar, runs, "--trainer.logger", "false", "--trainer.enable_checkpointing", "false"))
    run_dir = only_run(runs)
    results = json.loads((run_dir / "results.json").read_text())
    assert results["global_step"] == 6 and results["checkpoint"] == {"last": None, "best": None}
    assert not list(run_dir.rglob("*.ckpt"))


def test_a_fast_dev_run_keeps_no_checkpoint_and_last_passes_over_it(tiny_cifar, tmp_path):
    """Lightning 2.6 saved last.ckpt at the end of a fast_dev_run, and --ckpt_path last then resumed that smoke test."""
    runs = tmp_path / "runs"
    train.main(job(tiny_cifar, runs, "--trainer.logger", "false", "--run_name", "real", "--trainer.max_epochs", "1"))
    train.main(job(tiny_cifar, runs, "--trainer.logger", "false", "--run_name", "smoke", "--trainer.fast_dev_run",
                   "true"))
    assert not list((runs / "smoke").rglob("*.ckpt"))
    assert json.loads((runs / "smoke" / "results.json").read_text())["checkpoint"] == {"last": None, "best": None}
    assert json.loads((runs / "smoke" / "run.json").read_text())["trained"] is False
    with pytest.raises(train.UserError, match="--trainer.fast_dev_run with --ckpt_path would run its one batch in "
                                              "that run's folder"):
        train.main(job(tiny_cifar, runs, "--trainer.logger", "false", "--ckpt_path", "last",
                       "--trainer.fast_dev_run", "true"))
    train.main(job(tiny_cifar, runs, "--trainer.logger", "false", "--ckpt_path", "last"))
    assert json.loads((runs / "real" / "results.json").read_text())["global_step"] == 6  # resumed to 2 epochs


def test_a_fit_of_no_training_batches_validates_and_tests_with_the_phase_scheduler(tiny_cifar, tmp_path):
    """The shipped config's TrainingPhaseScheduler planned its 1cycle over an epoch of infinitely many steps:
    OverflowError."""
    runs = tmp_path / "runs"
    train.main(job(tiny_cifar, runs, "--trainer.limit_train_batches", "0", "--run_name", "r", "--trainer.logger",
                   "false"))
    results = json.loads((runs / "r" / "results.json").read_text())
    assert results["global_step"] == 0 and 0 <= results["test"]["test/acc"] <= 1


def test_a_stop_signal_in_a_fast_dev_run_saves_no_checkpoint(tmp_path):
    from lightning.pytorch.utilities.exceptions import SIGTERMException
    saved = []
    trainer = SimpleNamespace(fast_dev_run=1, sanity_checking=False, is_global_zero=True, global_step=1,
                              state=SimpleNamespace(fn=TrainerFn.FITTING),
                              save_checkpoint=lambda path, **kwargs: saved.append(path))
    stop, exception = saving.SaveOnStop(tmp_path / "last.ckpt"), SIGTERMException()
    stop.on_exception(trainer, None, exception)
    assert saved == [] and exception.code == 143  # still the exit status of a SIGTERM
    trainer.fast_dev_run = 0
    stop.on_exception(trainer, None, exception)
    assert saved == [tmp_path / "last.ckpt"]


def test_jobs_started_together_each_keep_the_time_stamp_they_chose(tiny_cifar, tmp_path, monkeypatch):
    """A new run's time-stamped folder is taken (made, empty) when its name is chosen: another job started in the same
    second cannot take it while this one builds its model, data and Trainer. (Made only once the config was accepted,
    the name went to the job that got there first and the others built everything again for the next name: of ten jobs
    started together, two stopped after five rounds with a FolderTaken traceback.)"""
    runs = tmp_path / "runs"
    check_job = train_cli.check_job

    def other_jobs_start_too(cli, config):  # as the model, data and Trainer are built, another job tries the name
        with contextlib.suppress(FileExistsError):
            Path(cli.trainer.default_root_dir).mkdir(parents=True)
            (Path(cli.trainer.default_root_dir) / "another_job").touch()
        return check_job(cli, config)
    monkeypatch.setattr(train_cli, "check_job", other_jobs_start_too)
    train.main(job(tiny_cifar, runs, "--trainer.logger", "false", "--trainer.max_epochs", "1"))
    (run_dir,) = runs.iterdir()
    assert (run_dir / "results.json").is_file() and not (run_dir / "another_job").exists()


def test_a_resume_with_nothing_left_to_train_keeps_the_results_and_says_so(tiny_cifar, tmp_path, capsys, monkeypatch):
    import shutil
    monkeypatch.setenv("WANDB_MODE", "offline")
    runs = tmp_path / "runs"
    args = job(tiny_cifar, runs, "--run_name", "done")
    train.main([*args, "--trainer.max_epochs", "1"])
    checkpoints = runs / "done" / "checkpoints"
    shutil.copyfile(checkpoints / "last.ckpt", checkpoints / "epoch1.ckpt")  # an earlier checkpoint of the run
    train.main([*args, "--ckpt_path", "last"])
    written = (runs / "done" / "results.json").read_text()
    assert json.loads(written)["global_step"] == 6 and json.loads(written)["test"]  # 2 epochs of 3 batches, tested
    capsys.readouterr()
    before = {path: os.readlink(path) if path.is_symlink() else None for path in (runs / "done").glob("*/*")}
    train.main([*args, "--ckpt_path", "last"])
    assert "Nothing left to train: the run is at step 6, where its --trainer.max_steps or --trainer.max_epochs end " \
           "it; raise them to train on" in capsys.readouterr().out
    assert (runs / "done" / "results.json").read_text() == written  # not replaced by a run that trained nothing
    # nor anything else: no config-resume-step6.yaml, no third offline-run-* folder of the W&B run (empty, to sync)
    assert {path: os.readlink(path) if path.is_symlink() else None for path in (runs / "done").glob("*/*")} == before
    assert sorted(p.name for p in (runs / "done").glob("config*.yaml")) == ["config-resume-step3.yaml", "config.yaml"]
    # an earlier checkpoint of the run, carried on in a new folder, trains 3 steps to the same step 6
    train.main([*args[:-1], "fork", "--ckpt_path", str(checkpoints / "epoch1.ckpt")])
    again = json.loads((runs / "fork" / "results.json").read_text())
    assert again["global_step"] == 6 and again["resumed_from"] == str(checkpoints / "epoch1.ckpt")
    assert "Nothing left" not in capsys.readouterr().out


def test_bf16_mixed_on_cpu(tiny_cifar, tmp_path):
    runs = tmp_path / "runs"
    train.main(job(tiny_cifar, runs, "--trainer.logger", "false", "--trainer.precision", "bf16-mixed"))
    results = json.loads((only_run(runs) / "results.json").read_text())
    assert results["precision"] == "bf16-mixed" and results["global_step"] == 6


def test_seed_everything_true_draws_a_new_seed_each_run_and_config_yaml_keeps_it(tiny_cifar, tmp_path, monkeypatch):
    """Lightning's CLI documents `seed_everything: true` as a random seed; Lightning 2.6 seeded 0 for it, so every
    run alike. The seed drawn is the run's: given back, it trains the same weights."""
    monkeypatch.delenv("PL_GLOBAL_SEED", raising=False)
    runs = tmp_path / "runs"

    def run(name, seed):
        train.main(job(tiny_cifar, runs, "--trainer.logger", "false", "--trainer.max_epochs", "1", "--run_name", name,
                       "--seed_everything", seed))
        return (yaml.safe_load((runs / name / "config.yaml").read_text())["seed_everything"],
                torch.load(runs / name / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"])

    (first, weights), (second, _) = run("a", "true"), run("b", "true")
    assert all(type(seed) is int and 0 <= seed < 2**32 for seed in (first, second)) and first != second
    again, same = run("c", str(first))
    assert again == first and all(torch.equal(weights[k], same[k]) for k in weights)


def test_seed_everything_true_on_the_ranks_a_launcher_starts(monkeypatch):
    """A rank Lightning launched takes rank 0's seed (PL_GLOBAL_SEED); torchrun's and SLURM's processes would each
    draw one of their own: refused, with the shell's $RANDOM to give them one."""
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("PL_GLOBAL_SEED", "1234")
    assert train_cli.random_seed() == 1234
    monkeypatch.setenv("LOCAL_RANK", "0")  # rank 0 of an in-process DDP before: Lightning leaves WORLD_SIZE set
    monkeypatch.setenv("WORLD_SIZE", "2")
    seeds = {train_cli.random_seed() for _ in range(20)}
    assert len(seeds) == 20 and max(seeds) >= 2**31 and max(seeds) < 2**32  # all 32 bits: all below 2**31 is 2**-20
    with monkeypatch.context() as context:  # one process of torchrun's or one SLURM task: a seed of its own
        for name, value in {"TORCHELASTIC_RUN_ID": "x", "WORLD_SIZE": "1", "SLURM_NTASKS": "1",
                            "SLURM_JOB_NAME": "train"}.items():
            context.setenv(name, value)
        assert train_cli.random_seed() != train_cli.random_seed()
    for env, launcher in [({"TORCHELASTIC_RUN_ID": "x", "WORLD_SIZE": "2"}, "the 2 processes torchrun started"),
                          ({"SLURM_NTASKS": "2", "SLURM_JOB_NAME": "train"}, "the 2 processes the SLURM job started")]:
        with monkeypatch.context() as context:
            for name, value in env.items():
                context.setenv(name, value)
            with pytest.raises(train.UserError, match=f"^--seed_everything true: each of {launcher} would draw a seed "
                                                      r"of its own; give them one from the shell, --seed_everything "
                                                      r"\$RANDOM"):
                train_cli.random_seed()


def test_swa_is_configurable_from_the_command_line(tiny_cifar, tmp_path, capsys):
    with pytest.raises(SystemExit):
        train.main(job(tiny_cifar, tmp_path, "--trainer.callbacks+=StochasticWeightAveraging",
                       "--trainer.callbacks.swa_lrs", "0.05", "--trainer.callbacks.swa_epoch_start", "0.75",
                       "--print_config"))
    printed = capsys.readouterr().out
    assert "class_path: lightning.pytorch.callbacks.StochasticWeightAveraging" in printed
    assert "swa_lrs: 0.05" in printed and "swa_epoch_start: 0.75" in printed


def test_two_jobs_in_one_process_get_their_own_run_folders(tiny_cifar, tmp_path):
    runs = tmp_path / "runs"
    for _ in range(2):  # the same second, the same process: neither the clock nor the DDP hand-over may merge them
        train.main(job(tiny_cifar, runs, "--trainer.logger", "false", "--trainer.max_epochs", "1"))
    folders = sorted(runs.iterdir())
    assert len(folders) == 2 and all((f / "results.json").is_file() for f in folders)



@pytest.mark.parametrize("wandb", [False, True])
def test_a_resume_already_at_max_steps_of_a_run_without_results_is_refused(wandb, tiny_cifar, tmp_path, capsys,
                                                                           monkeypatch):
    """A run stopped (SIGTERM, a preemption) before it wrote results.json, resumed with a --trainer.max_steps at or
    below its step: exit status 0, nothing trained, and a results.json of no metrics and no test that read as the
    run's results (a second resume then said 'Nothing left to train ... results.json is kept'). A stop inside the
    last validation is not refused: the resume runs that validation (test_validation_stop)."""
    runs = tmp_path / "runs"
    # the shipped config's W&B logger, offline: the refused resume leaves no second offline run
    monkeypatch.setenv("WANDB_MODE", "offline")
    args = job(tiny_cifar, runs, "--run_name", "r", *([] if wandb else ["--trainer.logger", "false"]))
    with pytest.raises(SystemExit) as stop:  # SIGTERM after step 4 of 8
        train.main([*args, "--trainer.max_steps", "8", "--trainer.max_epochs", "3",
                    '--trainer.callbacks+={"class_path": "runs.StopAtStep", "init_args": {"step": 4}}'])
    assert stop.value.code == 143 and not (runs / "r" / "results.json").exists()
    before = sorted(str(p.relative_to(runs)) for p in (runs / "r").rglob("*"))
    for max_steps in ("2", "4"):
        with pytest.raises(train.UserError) as refused:
            train.main([*args, "--trainer.max_steps", max_steps, "--trainer.max_epochs", "3", "--ckpt_path", "last"])
        assert str(refused.value) == (
            f"--ckpt_path {runs / 'r' / 'checkpoints' / 'last.ckpt'}: the run is at step 4 (epoch 1), where "
            f"--trainer.max_steps {max_steps} ends it: this resume trains nothing; raise it to train on (the run "
            f"began with --trainer.max_steps 8)")
        # no results.json, no config-resume yaml, no W&B offline run
        assert sorted(str(p.relative_to(runs)) for p in (runs / "r").rglob("*")) == before
    train.main([*args, "--trainer.max_steps", "5", "--trainer.max_epochs", "3", "--ckpt_path", "last"])
    assert json.loads((runs / "r" / "results.json").read_text())["global_step"] == 5


def test_a_resume_of_a_run_whose_training_ended_before_its_results_tests_and_writes_them(tiny_cifar, tmp_path):
    """A job stopped in its test after the training's end (a preemption there), requeued with its own options:
    nothing left to train, and the test and results.json still to do; not refused as a resume that trains nothing."""
    runs = tmp_path / "runs"
    args = job(tiny_cifar, runs, "--run_name", "r", "--trainer.logger", "false", "--trainer.max_steps", "4")
    train.main(args)
    (runs / "r" / "results.json").unlink()  # as the stop in the test left it
    train.main([*args, "--ckpt_path", "last"])
    results = json.loads((runs / "r" / "results.json").read_text())
    assert results["global_step"] == 4 and results["test"]
