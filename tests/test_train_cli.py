import contextlib
import json
import logging
import math
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
import yaml
from conftest import CLASSES, ROOT, run_in_process, wandb_records
from jsonargparse import Namespace
from lightning.pytorch.trainer.states import TrainerFn

import train
from callbacks import run_config, run_folder, saving, wandb_run
from callbacks.checkpoint_io import write_json

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets: threads only add contention

# --model.top_losses 1: the whole interpretation after each fit, with a one-image top-losses figure (the default
# 9-image grid cost ~1 s of matplotlib a run, which no test here reads; test_darknet_interpret checks the figures)
TINY = ["--model.nf", "4", "--model.num_blocks", "[1]", "--model.num_classes", "3", "--data.batch_size", "8",
        "--data.eval_batch_size", "6", "--trainer.max_epochs", "2", "--trainer.enable_progress_bar", "false",
        "--model.top_losses", "1"]


def job(data_dir, runs, *extra):
    return ["--system", "darknet", "--data.data_dir", str(data_dir), "--trainer.default_root_dir", str(runs),
            *TINY, *extra]


def run_script(args, tmp_path, env=None, launcher=()):
    """train.py in a fresh process, as a user runs it (`python -m LAUNCHER ... train.py` with a launcher), with no W&B
    credentials."""
    env = {**os.environ, "HOME": str(tmp_path), "WANDB_API_KEY": "", "OMP_NUM_THREADS": "1", **(env or {})}
    env.pop("WANDB_MODE", None)
    return subprocess.run([sys.executable, *launcher, str(ROOT / "train.py"), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


def only_run(runs):
    (run_dir,) = list(runs.iterdir())
    return run_dir


class LrAtBatchStart(L.Callback):
    """Writes each optimizer's lr per group, as every training batch begins, to `record` (the last batch's stays)."""

    def __init__(self, record: str):
        self.record = record

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        Path(self.record).write_text(json.dumps([[g["lr"] for g in o.param_groups] for o in trainer.optimizers]))


def test_job_fits_tests_and_writes_results(tiny_cifar, tmp_path, capsys):
    runs = tmp_path / "runs"
    train.main(job(tiny_cifar, runs, "--trainer.logger", "false", "--trainer.callbacks+=test_train_cli.LrAtBatchStart",
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


@pytest.mark.parametrize("logger", ["WandbLogger", "CSVLogger"])
def test_config_yaml_goes_into_the_run_folder_whatever_the_loggers_folder(logger, tiny_cifar, tmp_path, monkeypatch):
    """Lightning writes config.yaml into trainer.log_dir, the logger's folder: a W&B save_dir of the user's (where
    each run replaced the last one's file) or a CSV logger's version_0/. The run folder is where its commands look."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    runs, logs = tmp_path / "runs", tmp_path / "logs"
    args = job(tiny_cifar, runs, "--trainer.logger.save_dir", str(logs), "--run_name", "r")
    if logger == "CSVLogger":
        args += ["--trainer.logger", "lightning.pytorch.loggers.CSVLogger", "--trainer.logger.save_dir", str(logs)]
    train.main(args)
    written = yaml.safe_load((runs / "r" / "config.yaml").read_text())
    assert written["trainer"]["default_root_dir"] == str(runs) and written["model"]["init_args"]["nf"] == 4
    assert not list(logs.rglob("config*.yaml"))
    train.main([*args, "--ckpt_path", "last", "--trainer.max_epochs", "3"])  # a resume writes its own beside it
    assert (runs / "r" / "config-resume-step6.yaml").is_file() and not list(logs.rglob("config*.yaml"))


def test_each_train_main_in_one_process_logs_to_its_own_wandb_run(tiny_cifar, tmp_path, monkeypatch):
    """A notebook or a sweep script calls train.main again: Lightning's WandbLogger left the first W&B run open, and
    the second run logged into it (its own folder's wandb/ stayed empty). A run that crashed ends its W&B run too."""
    import wandb
    monkeypatch.setenv("WANDB_MODE", "offline")
    runs = tmp_path / "runs"
    with pytest.raises(RuntimeError, match="simulated crash"):
        train.main(job(tiny_cifar, runs, "--run_name", "crashed", "--trainer.callbacks+=conftest.CrashAtEpoch"))
    assert wandb.run is None
    for name in ("one", "two"):
        train.main(job(tiny_cifar, runs, "--run_name", name, "--trainer.max_epochs", "1"))
        assert wandb.run is None
    for name in ("crashed", "one", "two"):
        wandb_id = json.loads((runs / name / "run.json").read_text())["wandb_id"]
        (folder,) = (runs / name / "wandb").glob("offline-run-*")
        assert folder.name.endswith(f"-{wandb_id}") and (folder / f"run-{wandb_id}.wandb").stat().st_size > 0


def test_a_resumed_runs_wandb_summary_keeps_the_best_of_its_earlier_part(tiny_cifar, tmp_path, monkeypatch):
    """The summary's val/acc (max and last, for the runs table) is the run's: wandb's define_metric summary covers the
    values one process logged, so a resumed run's said the resumed part's best (offline each part is a file of its
    own; online, wandb issue #9684), not the 0.9 the run reached before it stopped."""
    from torchmetrics.classification import MulticlassAccuracy
    monkeypatch.setenv("WANDB_MODE", "offline")
    runs = tmp_path / "runs"
    for accuracy, extra in ((0.9, ["--trainer.max_epochs", "1"]), (0.2, ["--ckpt_path", "last"])):
        monkeypatch.setattr(MulticlassAccuracy, "compute", lambda self, value=accuracy: torch.tensor(value))
        train.main(job(tiny_cifar, runs, "--run_name", "r", *extra))
    parts = sorted((runs / "r" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(parts) == 2  # one W&B run id, a file per part
    summaries = [r.summary for r in wandb_records(parts[-1]) if r.WhichOneof("record_type") == "summary"]
    logged = [json.loads(item.value_json) for summary in summaries for item in summary.update
              if [item.key] == ["val/acc"] or list(item.nested_key) == ["val/acc"]]  # wandb's own: nested_key
    assert logged[-1] == pytest.approx({"max": 0.9, "last": 0.2})


def test_a_run_of_the_callers_is_logged_into_and_left_open(tiny_cifar, tmp_path, monkeypatch):
    """wandb.init in a notebook, then train.main: Lightning's WandbLogger logs into that run. The login check's
    wandb.teardown() ended it, and the run crashed (AlreadyJoinedError) as it logged its config."""
    import wandb
    monkeypatch.delenv("WANDB_MODE", raising=False)  # the login check runs only without it
    monkeypatch.setenv("HOME", str(tmp_path))  # no credentials of the machine's
    callers = wandb.init(mode="offline", dir=str(tmp_path), project="notebook")
    try:
        train.main(job(tiny_cifar, tmp_path / "runs", "--trainer.max_epochs", "1", "--run_name", "r"))
        assert wandb.run is callers  # still the caller's, open
        assert (tmp_path / "runs" / "r" / "results.json").is_file()
    finally:
        callers.finish()


def test_a_run_logged_into_an_open_wandb_run_names_that_run_in_run_json(tiny_cifar, tmp_path, monkeypatch):
    """A W&B run left open in the process (a notebook's wandb.init, or Lightning's WandbLogger of an earlier plain
    Trainer fit, which never ends its run): Lightning's WandbLogger logs train.main's run into it, and run.json named a
    new W&B id that no run had, so a resume (--ckpt_path last) began another W&B run instead of going on in the one the
    run had logged to; its project too. A resume of a run of its own W&B id is refused while another run is open."""
    import wandb
    monkeypatch.setenv("WANDB_MODE", "offline")
    runs = tmp_path / "runs"
    callers = wandb.init(mode="offline", dir=str(tmp_path), project="notebook")
    try:
        train.main(job(tiny_cifar, runs, "--trainer.max_epochs", "1", "--run_name", "r"))
        info = json.loads((runs / "r" / "run.json").read_text())
        assert (info["wandb_id"], info["wandb_project"]) == (callers.id, "notebook")
    finally:
        callers.finish()
    train.main(job(tiny_cifar, runs, "--trainer.max_epochs", "1", "--run_name", "own"))
    own = json.loads((runs / "own" / "run.json").read_text())["wandb_id"]
    other = wandb.init(mode="offline", dir=str(tmp_path), project="notebook")
    try:
        with pytest.raises(train.UserError, match=f"wandb.finish.*{own}|{own}.*wandb.finish"):
            train.main(job(tiny_cifar, runs, "--trainer.max_epochs", "2", "--run_name", "own", "--ckpt_path", "last"))
        assert wandb.run is other  # the caller's, left open
        assert json.loads((runs / "own" / "run.json").read_text())["wandb_id"] == own
    finally:
        other.finish()


def test_a_disabled_wandb_run_open_in_the_process_is_not_taken_for_the_runs_w_and_b_run(tiny_cifar, tmp_path,
                                                                                      monkeypatch, capsys):
    """wandb.init(mode="disabled") in a notebook: Lightning's WandbLogger logs into it, so nothing goes to W&B;
    run.json named that no-op run (project and entity "dummy"), which a resume in a new process then logged to. Its
    resume is not refused either, and the disabled run is left to the caller."""
    import wandb
    monkeypatch.setenv("WANDB_MODE", "offline")
    runs = tmp_path / "runs"
    callers = wandb.init(mode="disabled")
    try:
        train.main(job(tiny_cifar, runs, "--trainer.max_epochs", "1", "--run_name", "r"))
        info = json.loads((runs / "r" / "run.json").read_text())
        assert info["wandb_id"] != callers.id and info.get("wandb_project") in (None, "dl2-lightning")
        assert info.get("wandb_entity") is None
        assert "a disabled W&B run is open in this process" in capsys.readouterr().out
        train.main(job(tiny_cifar, runs, "--trainer.max_epochs", "2", "--run_name", "r", "--ckpt_path", "last"))
        assert json.loads((runs / "r" / "run.json").read_text())["wandb_id"] == info["wandb_id"]
        assert wandb.run is callers
    finally:
        callers.finish()


def test_a_refused_run_leaves_the_callers_open_wandb_run_open_and_its_files(tiny_cifar, tmp_path, monkeypatch):
    """A run refused after its folder is made (here its batch size, checked as the data is first used), or a refused
    resume, ends and removes the W&B run it began; a W&B run the caller had open (a notebook's wandb.init) is not
    train.main's: it was ended as failed and its offline folder deleted, the notebook's logged data with it."""
    import wandb
    monkeypatch.setenv("WANDB_MODE", "offline")
    runs = tmp_path / "runs"
    callers = wandb.init(mode="offline", dir=str(tmp_path / "notebook"), project="notebook")
    folder = Path(callers.dir).parent
    try:
        with pytest.raises(train.UserError, match="batch_size"):
            train.main(job(tiny_cifar, runs, "--trainer.max_epochs", "1", "--run_name", "r", "--data.batch_size", "0"))
        assert wandb.run is callers and folder.is_dir()
        assert not (runs / "r").exists()  # the refused run's own folder still goes
        train.main(job(tiny_cifar, runs, "--trainer.max_epochs", "1", "--run_name", "r"))
        # a resume with nothing left to train (max_epochs reached): its W&B part is undone
        train.main(job(tiny_cifar, runs, "--trainer.max_epochs", "1", "--run_name", "r", "--ckpt_path", "last"))
        assert wandb.run is callers and folder.is_dir()
    finally:
        callers.finish()


@pytest.mark.parametrize("mode, logs", [("offline", 1), ("disabled", 0)])
def test_wandb_mode_set_after_wandb_was_set_up_online_is_obeyed(mode, logs, tiny_cifar, tmp_path, monkeypatch):
    """wandb reads WANDB_MODE once, as it is first set up; WandbLogger goes offline through it. A notebook's earlier
    wandb use (set up without WANDB_MODE), then `%env WANDB_MODE=offline` and train.main: wandb stayed online and
    asked for a login (UsageError: No API key configured)."""
    import wandb
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no credentials of the machine's
    monkeypatch.setenv("WANDB_API_KEY", "")
    wandb.init(mode="offline", dir=str(tmp_path), project="notebook").finish()  # set up online, its own run offline
    monkeypatch.setenv("WANDB_MODE", mode)
    train.main(job(tiny_cifar, tmp_path / "runs", "--trainer.max_epochs", "1", "--run_name", "r"))
    assert (tmp_path / "runs" / "r" / "results.json").is_file()
    assert len(list((tmp_path / "runs" / "r" / "wandb").glob("offline-run-*/run-*.wandb"))) == logs


def test_the_login_check_after_an_offline_run_in_the_process_says_nothing(tmp_path, monkeypatch, capfd):
    """wandb set up offline by an earlier run (WANDB_MODE=offline then), the next run's login check (WANDB_MODE
    unset) printed wandb's "Unable to verify login in offline mode" above the run's own lines."""
    import wandb
    monkeypatch.setenv("HOME", str(tmp_path))  # no credentials
    monkeypatch.setenv("WANDB_API_KEY", "")
    monkeypatch.setenv("WANDB_MODE", "offline")
    wandb.teardown()
    wandb.setup()
    monkeypatch.delenv("WANDB_MODE")
    capfd.readouterr()
    try:
        assert wandb_run.wandb_logged_in() is False
    finally:
        wandb.teardown()
    assert "Unable to verify login" not in "".join(capfd.readouterr())


def test_wandbs_settings_in_the_mode_a_run_wants_are_kept(tmp_path, monkeypatch):
    """A notebook's wandb.setup (its server's base_url, say) in the mode the run logs in stays: only settings in
    another mode are dropped before the logger's wandb.init."""
    import wandb
    from wandb.sdk import wandb_setup
    if not hasattr(wandb_setup, "_singleton"):  # an older wandb (0.19, the floor): always set up afresh
        pytest.skip("this wandb's set-up cannot be read: train.py sets it up afresh for each run")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    wandb.teardown()  # an earlier test's set-up (wandb.init in the test above)
    wandb.setup()
    try:
        mine = wandb_setup._singleton
        wandb_run.forget_wandb_settings(offline=True)
        assert wandb_setup._singleton is mine  # offline, as wanted: kept
        monkeypatch.setenv("WANDB_MODE", "online")  # the user's decision now, unlike the set-up's
        wandb_run.forget_wandb_settings(offline=False)
        assert wandb_setup._singleton is None
        wandb.setup()
        monkeypatch.setenv("WANDB_RUN_ID", "agent123")  # a sweep agent's, say: wandb would not read it, set up
        wandb_run.forget_wandb_settings(offline=False)
        assert wandb_setup._singleton is None
    finally:
        wandb.teardown()


def test_a_run_a_wandb_sweep_agent_starts_keeps_the_agents_run_id(tiny_cifar, tmp_path, monkeypatch):
    """`wandb agent` starts train.py with the run's id in WANDB_RUN_ID, and in a sweep wandb.init ignores any other id:
    run.json kept a random id of its own, with which a resume (`--ckpt_path last`) logged to another W&B run."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("HOME", str(tmp_path))
    for name, value in [("WANDB_SWEEP_ID", "sweep123"), ("WANDB_RUN_ID", "agent123")]:
        monkeypatch.setenv(name, value)
    train.main(job(tiny_cifar, tmp_path / "runs", "--trainer.max_epochs", "1", "--run_name", "r"))
    assert json.loads((tmp_path / "runs" / "r" / "run.json").read_text())["wandb_id"] == "agent123"
    assert [p.name[-8:] for p in (tmp_path / "runs" / "r" / "wandb").glob("offline-run-*")] == ["agent123"]


def test_a_run_leaves_the_environment_as_it_found_it(tiny_cifar, tmp_path, monkeypatch):
    """WandbLogger makes an offline run by setting WANDB_MODE=dryrun and leaves it set: the next train.main in the
    process, after `wandb login`, took it for the user's WANDB_MODE and logged offline again. So with what a run sets
    for itself and its ranks: WANDB_SILENT silenced the notebook's own wandb.init after it, PL_GLOBAL_SEED seeded the
    next run's `seed_everything: true`, DL2_RUN_NAME and DL2_CKPT_PATH named this run's folder and checkpoint."""
    names = ("WANDB_MODE", "WANDB_SILENT", "PL_GLOBAL_SEED", "PL_SEED_WORKERS", "DL2_RUN_NAME", "DL2_CKPT_PATH")
    for name in names:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # not logged in: the run logs offline
    monkeypatch.setenv("WANDB_API_KEY", "")
    train.main(job(tiny_cifar, tmp_path / "runs", "--trainer.max_epochs", "1", "--run_name", "r"))
    assert len(list((tmp_path / "runs" / "r" / "wandb").glob("offline-run-*/run-*.wandb"))) == 1
    train.main(job(tiny_cifar, tmp_path / "runs", "--trainer.max_epochs", "2", "--run_name", "r", "--ckpt_path",
                   "last"))  # a resume: DL2_CKPT_PATH
    assert [name for name in names if name in os.environ] == []
    mine = {"WANDB_MODE": "disabled", "WANDB_SILENT": "false", "PL_GLOBAL_SEED": "7", "DL2_RUN_NAME": "x"}
    for name, value in mine.items():  # the user's own, kept
        monkeypatch.setenv(name, value)
    train.main(job(tiny_cifar, tmp_path / "runs", "--trainer.max_epochs", "1", "--run_name", "s"))
    assert {name: os.environ.get(name) for name in mine} == mine


@pytest.mark.parametrize("error, status", [(SystemExit(None), 0), (SystemExit(0), 0), (SystemExit(2), 2),
                                           (SystemExit("train.py: error"), 1), (KeyboardInterrupt(), 130),
                                           (RuntimeError("a bug"), 1)])
def test_the_exit_status_w_and_b_is_given_is_the_processs(error, status):
    """What `python -c 'raise ...'` exits with (sys.exit's rules: None is 0, a message 1), a Ctrl-C 128 + SIGINT."""
    assert train.exit_status(error) == status


@pytest.mark.parametrize("started, finished", [("here", [0]), ("before", [])])
def test_a_wandb_run_of_the_callers_is_left_open(started, finished, monkeypatch):
    """Lightning's WandbLogger logs into a run the caller began (wandb.init in a notebook): the caller ends it."""
    ended = []
    earlier = SimpleNamespace(id="callers1")
    monkeypatch.setitem(sys.modules, "wandb", SimpleNamespace(run=earlier, finish=lambda exit_code: ended.append(
        exit_code)))
    if started == "here":
        sys.modules["wandb"].run = SimpleNamespace(id="ours0001")
    wandb_run.finish_wandb_run(earlier, 0)
    assert ended == finished


def test_results_leave_out_the_lr_monitors_values_which_lag_behind(tiny_cifar, tmp_path, monkeypatch):
    """LearningRateMonitor logs every log_every_n_steps: its last value was a step's before the end (0.178 in a
    review's 1cycle that ended at 0.0035). results.json gives the lr the last batch trained at instead."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    runs = tmp_path / "runs"
    train.main(job(tiny_cifar, runs, "--trainer.log_every_n_steps", "1", "--trainer.callbacks+=test_train_cli."
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


def test_a_runs_config_yaml_trains_a_new_run_beside_it_and_resumes_it_with_its_checkpoint(tiny_cifar, tmp_path,
                                                                                          monkeypatch):
    """config.yaml holds the config as given. It held this run's folder, checkpoint folder and W&B id, so training
    from it again ran inside the old folder, wrote into its checkpoints/, replaced its config.yaml, logged to its W&B
    run."""
    from lightning.pytorch.loggers import WandbLogger
    monkeypatch.setenv("WANDB_MODE", "offline")
    logged = []
    monkeypatch.setattr(WandbLogger, "log_hyperparams", lambda self, params: logged.append(dict(params)))
    from wandb.sdk.wandb_run import Run
    summaries = []
    monkeypatch.setattr(Run, "define_metric", lambda self, name, summary=None, **options: summaries.append(
        (name, summary)))
    runs = tmp_path / "runs"
    train.main(job(tiny_cifar, runs, "--trainer.max_epochs", "1"))
    first = only_run(runs)
    # the config's ModelCheckpoint's monitor: its best on the summary (Lightning defines its step metrics)
    assert [s for s in summaries if s[1]] == [("val/acc", "max,last")]
    # the dashboard gets what the run ran with: its folder, its W&B id, offline; its system, a tag, the job type
    (ours,) = [params for params in logged if "config" in params]  # Lightning logs the model's hyper-parameters apart
    config = ours["config"]
    assert ours["system"] == "darknet" and any("lr" in params for params in logged)
    logger = config["trainer"]["logger"]["init_args"]
    assert config["trainer"]["default_root_dir"] == str(first) and logger["offline"] is True
    assert logger["tags"] == ["darknet"] and logger["job_type"] == "fit"
    # what the config's auto became, and the batch an optimizer step takes: data batch x processes x accumulation
    assert ours["hardware"] == {"accelerator": "CPUAccelerator", "strategy": "SingleDeviceStrategy", "devices": 1,
                                "nodes": 1, "world_size": 1, "effective_batch_size": 8}
    assert logger["id"] == json.loads((first / "run.json").read_text())["wandb_id"]
    config = yaml.safe_load((first / "config.yaml").read_text())
    checkpoint = next(c for c in config["trainer"]["callbacks"] if c["class_path"].endswith("ModelCheckpoint"))
    assert config["trainer"]["default_root_dir"] == str(runs) and checkpoint["init_args"]["dirpath"] is None
    assert config["trainer"]["logger"]["init_args"]["id"] is None and config["ckpt_path"] is None
    written = {p: p.read_bytes() for p in first.rglob("*") if p.is_file() and "wandb" not in p.parts}
    train.main(["--config", str(first / "config.yaml")])
    second = next(p for p in runs.iterdir() if p != first)
    assert {p: p.read_bytes() for p in first.rglob("*") if p.is_file() and "wandb" not in p.parts} == written
    assert (second / "checkpoints" / "last.ckpt").is_file() and (second / "config.yaml").is_file()
    ids = [json.loads((run / "run.json").read_text())["wandb_id"] for run in (first, second)]
    assert ids[0] != ids[1] and [p.name for p in runs.iterdir() if p not in (first, second)] == []
    # and with its checkpoint, the same config resumes that run in its folder and W&B run
    logged.clear()
    train.main(["--config", str(first / "config.yaml"), "--ckpt_path", str(first / "checkpoints" / "last.ckpt"),
                "--trainer.max_epochs", "2"])
    results = json.loads((first / "results.json").read_text())
    assert results["global_step"] == 6 and json.loads((first / "run.json").read_text())["wandb_id"] == ids[0]
    assert sorted(runs.iterdir()) == sorted([first, second])
    # the config the run began with stays, in the file and on W&B; the resume's is written beside it
    assert (first / "config.yaml").read_bytes() == written[first / "config.yaml"]
    resumed = yaml.safe_load((first / "config-resume-step3.yaml").read_text())
    assert resumed["trainer"]["max_epochs"] == 2 and config["trainer"]["max_epochs"] == 1
    # and alone: Lightning's own logging of the hyper-parameters put this resume's values on top of the first's
    (resume,) = logged
    assert list(resume) == ["resume_step3"] and resume["resume_step3"]["config"]["trainer"]["max_epochs"] == 2
    # the native subcommands take it too: the job form's own options (lr_find, init_from) are left out at defaults
    assert "lr_find" not in config and "init_from" not in config
    last = first / "checkpoints" / "last.ckpt"
    logged.clear()
    train.main(["test", "--config", str(first / "config.yaml"), "--ckpt_path", str(last)])
    (evaluation,) = set(runs.iterdir()) - {first, second}
    assert json.loads((evaluation / "run.json").read_text())["kind"] == "test"
    (ours,) = [params for params in logged if "config" in params]
    assert ours["config"]["trainer"]["logger"]["init_args"]["job_type"] == "test" and ours["checkpoint_step"] == 6


def old_run_config(run: Path) -> dict:
    """configs/darknet.yaml as a run's config.yaml held it before 2026-11-29 (commit 0d45064): the run's own folder
    as default_root_dir, its checkpoint folder, W&B id and name, and run_name."""
    config = yaml.safe_load((ROOT / "configs" / "darknet.yaml").read_text())
    config["trainer"]["default_root_dir"] = str(run)
    for callback in config["trainer"]["callbacks"]:
        if callback["class_path"].endswith("ModelCheckpoint"):
            callback["init_args"]["dirpath"] = str(run / "checkpoints")
    config["trainer"]["logger"]["init_args"].update(save_dir=str(run), id="hkvurdpt", name=run.name)
    config.update(ckpt_path=None, run_name=run.name, save_every_minutes=10.0)
    return config


@pytest.mark.parametrize("subcommand", [[], ["test"], ["validate"], ["fit"]])
def test_a_config_yaml_written_before_2026_11_29_is_refused_for_a_new_run_or_an_evaluation(subcommand, tmp_path,
                                                                                           capsys, monkeypatch):
    """A run's config.yaml as train.py wrote it before 2026-11-29 (commit 0d45064): the run's own folder as
    default_root_dir, its checkpoint folder, its W&B id, run_name and the lr_find block. A new run from it trained
    inside the old run (run/<name>/), replaced the old run's last.ckpt and best-*.ckpt and logged into its W&B run;
    test and validate stopped on 'Subcommand test does not accept option lr_find.run'."""
    run = tmp_path / "runs" / "darknet" / "dk"
    (run / "checkpoints").mkdir(parents=True)
    config = old_run_config(run)
    config["lr_find"] = {"run": False, "mode": "exponential", "min_lr": 1e-6, "max_lr": 10.0}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    (run / "run.json").write_text(json.dumps({"system": "darknet", "model": "lightning_modules.DarknetClassifier",
                                              "kind": "fit", "trained": True, "wandb_id": "hkvurdpt"}))
    (run / "checkpoints" / "last.ckpt").write_bytes(b"the old run's weights")
    before = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    extra = ["--ckpt_path", str(run / "checkpoints" / "last.ckpt")] if subcommand in (["test"], ["validate"]) else []
    result = run_in_process([*subcommand, "--config", str(run / "config.yaml"), *extra], capsys, monkeypatch)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("train.py: error:")]
    assert "before 2026-11-29" in error and f"--ckpt_path {run / 'checkpoints' / 'last.ckpt'}" in error
    assert {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()} == before
    # resuming that run with it (its --ckpt_path) is what the file still does right, so that is not refused
    train.refuse_old_run_config(["--config", str(run / "config.yaml")], resuming=True)


def test_a_config_yaml_written_before_2026_11_29_of_a_moved_run_is_refused(tiny_cifar, tmp_path, capsys, monkeypatch):
    """Such a run copied elsewhere (from the cluster, to another clone): its config.yaml names the folder the run
    was in, which is not where it is now. A new run from it went on in that old place, made again (checkpoints,
    results) and logged into the old run's W&B run (its id, hkvurdpt here)."""
    was, now = tmp_path / "cluster" / "runs" / "darknet" / "dk", tmp_path / "laptop" / "runs" / "darknet" / "dk"
    config = old_run_config(was)
    config["data"]["init_args"]["data_dir"] = str(tiny_cifar)
    now.mkdir(parents=True)
    (now / "config.yaml").write_text(yaml.safe_dump(config))
    (now / "run.json").write_text(json.dumps({"system": "darknet", "kind": "fit", "trained": True,
                                              "wandb_id": "hkvurdpt"}))
    result = run_in_process(["--config", str(now / "config.yaml"), *TINY, "--trainer.max_steps", "1"], capsys,
                            monkeypatch)
    assert result.returncode == 2 and "before 2026-11-29" in result.stderr, result.stderr[-3000:]
    assert not (tmp_path / "cluster").exists()


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


def test_native_fit_subcommand_with_config(tiny_cifar, tmp_path):
    runs = tmp_path / "runs"
    train.main(["fit", "--config", str(ROOT / "configs" / "darknet.yaml"), "--data.data_dir", str(tiny_cifar),
                "--trainer.default_root_dir", str(runs), "--trainer.logger", "false", *TINY])
    run = only_run(runs)
    assert (run / "checkpoints" / "last.ckpt").is_file()
    # its config.yaml is the job form's too (it held fit's `weights_only: null`, which the job form refused)
    train.main(["--config", str(run / "config.yaml"), "--trainer.max_epochs", "1"])
    assert len(list(runs.iterdir())) == 2


def native(subcommand, data_dir, runs, *extra):
    """The LightningCLI form of job(): `test --config configs/darknet.yaml ...`."""
    return [subcommand, "--config", str(ROOT / "configs" / "darknet.yaml"), *job(data_dir, runs, *extra)[2:]]


def test_a_native_fits_refused_resume_names_the_runs_config_and_a_test_no_resume(tiny_cifar, tmp_path):
    """The resume hint of a refusal as the classes are built is a fit's (`fit --config ...`, the native form); a test
    of a checkpoint resumes nothing."""
    from callbacks.errors import user_message
    runs = tmp_path / "runs"
    train.main(job(tiny_cifar, runs, "--trainer.logger", "false", "--run_name", "r", "--trainer.max_epochs", "1"))
    checkpoint, config = runs / "r" / "checkpoints" / "last.ckpt", runs / "r" / "config.yaml"
    for subcommand, hint in (("fit", f"; this resumes {checkpoint}: to resume as the run began, give its config: "
                                     f"python train.py fit --config {config} --ckpt_path {checkpoint}"),
                             ("test", None)):
        with pytest.raises(ValueError) as refused:
            train.main(native(subcommand, tiny_cifar, runs, "--trainer.logger", "false", "--ckpt_path",
                              str(checkpoint), "--model.top_losses", "-1"))
        message = user_message(refused.value)
        assert message.startswith("top_losses must be 0 (none) or more (got -1)")
        assert message.endswith(hint) if hint else "this resumes" not in message


def files(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_native_test_subcommand_writes_its_own_folder_not_the_checkpoints_run(tiny_cifar, tmp_path):
    runs = tmp_path / "runs"
    train.main(job(tiny_cifar, runs, "--trainer.logger", "false", "--run_name", "trained"))
    trained = runs / "trained"
    before = files(trained)
    checkpoint = trained / "checkpoints" / "last.ckpt"
    train.main(native("test", tiny_cifar, runs, "--trainer.logger", "false", "--ckpt_path", str(checkpoint)))
    assert files(trained) == before  # config.yaml, the confusion matrix and top losses of the training run are kept
    (tested,) = [d for d in runs.iterdir() if d.name != "trained"]
    info = json.loads((tested / "run.json").read_text())
    assert info["kind"] == "test" and info["checkpoint"] == str(checkpoint)
    assert "test_confusion_matrix.csv" in {p.name for p in tested.rglob("*")}
    results = json.loads((tested / "results.json").read_text())  # the metrics in a file, as the job's results.json
    assert 0 <= results["test"]["test/acc"] <= 1 and results["checkpoint"] == str(checkpoint)
    # not the test's
    assert run_folder.newest_last_checkpoint(runs, "lightning_modules.DarknetClassifier", None) == checkpoint
    # --run_name picks the run to read with --ckpt_path last; with a checkpoint path it has nothing to pick
    train.main(native("validate", tiny_cifar, runs, "--trainer.logger", "false", "--run_name", "trained",
                      "--ckpt_path", "last"))
    (validated,) = [d for d in runs.iterdir() if d.name not in ("trained", tested.name)]
    assert json.loads((validated / "run.json").read_text())["checkpoint"] == str(checkpoint)
    assert 0 <= json.loads((validated / "results.json").read_text())["validate"]["val/acc"] <= 1
    with pytest.raises(train.UserError, match="--run_name with test picks the run whose checkpoint it reads"):
        train.main(native("test", tiny_cifar, runs, "--run_name", "other", "--ckpt_path", str(checkpoint)))
    assert files(trained) == before


@pytest.mark.parametrize("checkpoint", ["path", "last"])
def test_native_test_takes_the_checkpoints_net_and_the_command_lines_model_flags(tiny_cifar, tmp_path, checkpoint):
    # Lightning 2.6 rebuilds the model from the checkpoint's hyper-parameters (here nf 4, 3 classes, not the config
    # file's 32 and 10) but dropped --model.tta as well, so `test --model.tta flip` tested without TTA; and it reads
    # only a file, so `last` built the config file's net
    runs = tmp_path / "runs"
    train.main(job(tiny_cifar, runs, "--trainer.logger", "false", "--run_name", "trained"))
    flags = [arg for arg in native("test", tiny_cifar, runs) if not arg.startswith("--model.") and arg not in
             ("4", "[1]", "3", "1")]
    path = str(runs / "trained" / "checkpoints" / "last.ckpt") if checkpoint == "path" else "last"
    train.main([*flags, "--trainer.logger", "false", "--model.tta", "flip", "--model.interpret=false",
                "--ckpt_path", path])
    (tested,) = [d for d in runs.iterdir() if d.name != "trained"]
    model = yaml.safe_load((tested / "config.yaml").read_text())["model"]["init_args"]
    assert (model["nf"], model["num_blocks"], model["num_classes"]) == (4, [1], 3)  # the checkpoint's net
    assert (model["tta"], model["interpret"]) == ("flip", False)  # the command line's flags
    assert not (tested / "test_confusion_matrix.csv").exists()  # interpret false reached the model


def test_native_evaluations_refuse_a_missing_checkpoint_and_a_run_name_that_is_no_training_run(tiny_cifar, tmp_path):
    runs = tmp_path / "runs"
    with pytest.raises(train.UserError, match="test needs --ckpt_path: a .ckpt file, or last"):
        train.main(native("test", tiny_cifar, runs, "--trainer.logger", "false"))  # untrained weights otherwise
    with pytest.raises(train.UserError, match=r"no darknet run in .* yet; train one first \(python train.py --system"):
        train.main(native("test", tiny_cifar, runs, "--trainer.logger", "false", "--ckpt_path", "last"))
    train.main(job(tiny_cifar, runs, "--trainer.logger", "false", "--run_name", "trained"))
    train.main(native("test", tiny_cifar, runs, "--trainer.logger", "false", "--ckpt_path", "last"))
    (tested,) = [d.name for d in runs.iterdir() if d.name != "trained"]
    with pytest.raises(train.UserError, match=f"--run_name {tested}: .* holds a test, not a training run"):
        train.main(native("test", tiny_cifar, runs, "--run_name", tested, "--ckpt_path", "last"))


def test_a_copy_of_the_config_with_phases_in_place_of_one_cycle_runs_them_once_one_cycle_is_null(tiny_cifar,
                                                                                                   tmp_path, capsys,
                                                                                                   monkeypatch):
    """README: the phases block in a copy of configs/darknet.yaml, given as a second --config: LightningCLI merges its
    scheduler entry with the shipped one, so the shipped one_cycle stays unless the copy sets it to null."""
    config = yaml.safe_load((ROOT / "configs" / "darknet.yaml").read_text())
    (scheduler,) = [c for c in config["trainer"]["callbacks"] if c["class_path"].endswith("TrainingPhaseScheduler")]
    scheduler["init_args"] = {"phases": [{"epochs": 1, "opt_fn": "RMSprop", "lr": 1.0e-3},
                                         {"epochs": 1, "opt_fn": "SGD", "lr": [0.4, 0.004], "lr_decay": "cosine"}]}
    config = {"trainer": {"callbacks": config["trainer"]["callbacks"]}}  # the copy's sizes would undo TINY's
    (tmp_path / "phases.yaml").write_text(yaml.safe_dump(config))
    runs = tmp_path / "runs"
    refused = run_in_process(job(tiny_cifar, runs, "--config", str(tmp_path / "phases.yaml"), "--trainer.logger",
                                 "false"), capsys, monkeypatch)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert "TrainingPhaseScheduler got phases and one_cycle: give exactly one and set the others to null (a second " \
           "--config's scheduler is merged" in refused.stderr
    scheduler["init_args"]["one_cycle"] = None
    (tmp_path / "phases.yaml").write_text(yaml.safe_dump(config))
    train.main(job(tiny_cifar, runs, "--config", str(tmp_path / "phases.yaml"), "--trainer.logger", "false",
                   "--run_name", "phases"))
    saved = yaml.safe_load((runs / "phases" / "config.yaml").read_text())
    (used,) = [c for c in saved["trainer"]["callbacks"] if c["class_path"].endswith("TrainingPhaseScheduler")]
    assert [phase["opt_fn"] for phase in used["init_args"]["phases"]] == ["RMSprop", "SGD"]
    assert used["init_args"]["one_cycle"] is None and (runs / "phases" / "results.json").is_file()


def test_predict_is_refused_naming_the_inference_commands_before_any_folder(tiny_cifar, tmp_path):
    runs = tmp_path / "runs"
    with pytest.raises(train.UserError, match=r"predict: no system here has a predict step; .*dl2-classify "
                                              r"\(darknet\), dl2-wgan-generate \(wgan\), dl2-cyclegan-translate"):
        train.main(native("predict", tiny_cifar, runs, "--ckpt_path", "last"))
    assert not runs.exists()


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


@pytest.mark.parametrize("name", ["exp/1", "../escaped", ".."])
def test_a_run_name_that_is_a_path_is_refused(name, tiny_cifar, tmp_path):
    """`exp/1` trained, but `--ckpt_path last` could not find it again; `../escaped` wrote beside the root."""
    with pytest.raises(train.UserError, match=f"--run_name '{re.escape(name)}': one folder's name under "):
        train.main(job(tiny_cifar, tmp_path / "root" / "runs", "--run_name", name))
    assert not (tmp_path / "root").exists()


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


def test_test_on_a_system_without_a_test_step_is_refused_before_any_folder(tmp_path):
    import lightning as L

    from lightning_modules import WGAN
    model = WGAN(isize=16, nz=8, ngf=4, ndf=4)
    trainer = L.Trainer(accelerator="cpu", max_steps=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(tmp_path / "wgan.ckpt")
    state = torch.load(tmp_path / "wgan.ckpt", weights_only=False)
    state["hyper_parameters"]["_class_path"] = "lightning_modules.WGAN"  # as train.py's LightningCLI saves them
    torch.save(state, tmp_path / "wgan.ckpt")
    runs = tmp_path / "runs"
    with pytest.raises(train.UserError, match="test: WGAN has no test_step; the systems with one: darknet, cyclegan"):
        train.main(["test", "--config", str(ROOT / "configs" / "wgan.yaml"), "--trainer.default_root_dir", str(runs),
                    "--ckpt_path", str(tmp_path / "wgan.ckpt")])
    assert not runs.exists()  # was Lightning's "No test_step() method defined" traceback, after an empty run folder


@pytest.mark.parametrize("subcommand", ["test", "validate", "fit"])
def test_a_native_subcommand_refuses_another_systems_checkpoint_before_any_folder(tmp_path, subcommand):
    # Lightning builds the checkpoint's class over the config's: a CycleGAN met CIFAR-10 (test: a traceback from its
    # test step; fit: the Darknet config's scheduler refusing the CycleGAN's lr schedule)
    ckpt = tmp_path / "cyclegan.ckpt"
    torch.save({"state_dict": {"gen_a2b.model.1.weight": torch.zeros(1)}, "epoch": 0, "global_step": 3,
                "hyper_parameters": {"_class_path": "lightning_modules.CycleGAN", "n_blocks": 1}}, ckpt)
    runs = tmp_path / "runs"
    expected = (f"--ckpt_path {ckpt} is a CycleGAN checkpoint, but the config's model is a DarknetClassifier; give its "
                "system's config, --config configs/cyclegan.yaml")
    with pytest.raises(train.UserError, match=re.escape(expected)):
        train.main([subcommand, "--config", str(ROOT / "configs" / "darknet.yaml"), "--trainer.default_root_dir",
                    str(runs), "--trainer.logger", "false", "--data.data_dir", str(tmp_path / "absent"),
                    "--ckpt_path", str(ckpt)])
    assert not runs.exists()


def test_an_evaluation_after_an_in_process_ddp_run_reads_its_own_checkpoint(tiny_cifar, tmp_path, monkeypatch):
    # Lightning's launcher leaves LOCAL_RANK=0 in the parent, and the environment keeps an earlier evaluation's
    # DL2_RUN_NAME and DL2_CKPT_PATH: rank 0 must not take them for rank 0's choices
    runs = tmp_path / "runs"
    train.main(job(tiny_cifar, runs, "--trainer.logger", "false", "--run_name", "trained"))
    checkpoints = runs / "trained" / "checkpoints"
    best = next(checkpoints.glob("best-*.ckpt"))
    monkeypatch.setenv("LOCAL_RANK", "0")
    train.main(native("test", tiny_cifar, runs, "--trainer.logger", "false", "--ckpt_path", str(checkpoints /
                                                                                              "last.ckpt")))
    train.main(native("test", tiny_cifar, runs, "--trainer.logger", "false", "--ckpt_path", str(best)))
    read = sorted(json.loads((d / "run.json").read_text())["checkpoint"] for d in runs.iterdir() if d.name != "trained")
    assert read == sorted([str(checkpoints / "last.ckpt"), str(best)])  # two folders, each its own checkpoint


def test_a_srun_task_with_a_leftover_run_name_is_not_taken_for_a_launched_rank(tmp_path, monkeypatch):
    # only Lightning's launcher starts ranks with LOCAL_RANK >= 1 that inherit rank 0's DL2_RUN_NAME; a SLURM task
    # (SLURM_PROCID 1, no LOCAL_RANK) keeping an earlier in-process run's DL2_RUN_NAME must choose as task 0 does
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_PROCID", "1")
    monkeypatch.setenv("DL2_RUN_NAME", "slurm-77")
    checkpoint = tmp_path / "last.ckpt"
    checkpoint.write_bytes(b"")
    config = SimpleNamespace(ckpt_path=str(checkpoint))
    assert run_folder.evaluation_folder(config, tmp_path, "test") == tmp_path / "slurm-77-test"
    monkeypatch.setenv("LOCAL_RANK", "1")  # a rank Lightning launched from rank 0 takes rank 0's folder
    monkeypatch.setenv("DL2_RUN_NAME", "chosen-by-rank-0")
    assert run_folder.evaluation_folder(config, tmp_path, "test") == tmp_path / "chosen-by-rank-0"
    # so does a training rank, in the folder rank 0 has just made (no "exists already" for it)
    write_json(tmp_path / "chosen-by-rank-0" / run_folder.RUN_FILE, {"model": "lightning_modules.DarknetClassifier"})
    fit = Namespace(run_name=None, ckpt_path=None)
    assert run_folder.fit_folder(fit, tmp_path, "lightning_modules.DarknetClassifier") == tmp_path / "chosen-by-rank-0"


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
        train.check_data(model, datamodule)
        return
    with pytest.raises(train.UserError, match=re.escape(
            f"--data {data} is the data of --system {owner}; {model.rpartition('.')[2]} trains on {own}")):
        train.check_data(model, datamodule)


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
                       "--trainer.callbacks+=test_train_cli.RefuseAtStep"))
    assert json.loads((runs / "began" / "run.json").read_text())["trained"] is True


class RefuseAtStep(L.Callback):
    """A user's mistake found after training began, as an unreadable image in the second batch."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == 2:
            raise train.UserError("unreadable at step 2")


def test_jobs_started_together_each_keep_the_time_stamp_they_chose(tiny_cifar, tmp_path, monkeypatch):
    """A new run's time-stamped folder is taken (made, empty) when its name is chosen: another job started in the same
    second cannot take it while this one builds its model, data and Trainer. (Made only once the config was accepted,
    the name went to the job that got there first and the others built everything again for the next name: of ten jobs
    started together, two stopped after five rounds with a FolderTaken traceback.)"""
    runs = tmp_path / "runs"
    check_job = train.check_job

    def other_jobs_start_too(cli, config):  # as the model, data and Trainer are built, another job tries the name
        with contextlib.suppress(FileExistsError):
            Path(cli.trainer.default_root_dir).mkdir(parents=True)
            (Path(cli.trainer.default_root_dir) / "another_job").touch()
        return check_job(cli, config)
    monkeypatch.setattr(train, "check_job", other_jobs_start_too)
    train.main(job(tiny_cifar, runs, "--trainer.logger", "false", "--trainer.max_epochs", "1"))
    (run_dir,) = runs.iterdir()
    assert (run_dir / "results.json").is_file() and not (run_dir / "another_job").exists()


def test_a_time_stamp_another_job_took_after_its_choice_is_claimed_under_the_next_name(tmp_path, monkeypatch):
    monkeypatch.setattr(run_folder.time, "strftime", lambda form: "20260101-120000")
    monkeypatch.setattr(run_folder, "_fresh_runs", {})
    chosen = run_folder.new_time_stamped(tmp_path / "runs")
    chosen.mkdir(parents=True)  # another job's, made between the choice and the claim
    claimed = tmp_path / "runs" / "20260101-120000-2"
    assert run_folder.claim_time_stamped(tmp_path / "runs", chosen) == claimed
    assert run_folder._fresh_runs == {claimed: [claimed]}
    assert not any(chosen.iterdir()) and not any(claimed.iterdir())  # the other job's folder untouched, ours empty


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


def test_wandb_disabled_prints_no_run_address(tiny_cifar, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")  # wandb's disabled run is not "offline" and has no url
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    train.main(job(tiny_cifar, tmp_path / "runs", "--trainer.max_epochs", "1"))  # the shipped W&B logger
    out = capsys.readouterr().out
    assert "Results written to" in out and "W&B:" not in out


def test_native_test_in_a_slurm_job_that_trained_writes_beside_the_jobs_run(tiny_cifar, tmp_path, monkeypatch):
    # an sbatch script that trains, then tests: both steps share SLURM_JOB_ID, and the test must not take over
    # slurm-77, the training run's folder
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    runs = tmp_path / "runs"
    train.main(job(tiny_cifar, runs, "--trainer.logger", "false"))
    trained = runs / "slurm-77"
    before = files(trained)
    train.main(native("test", tiny_cifar, runs, "--trainer.logger", "false", "--ckpt_path", "last"))
    assert files(trained) == before
    info = json.loads((runs / "slurm-77-test" / "run.json").read_text())
    assert info["kind"] == "test" and info["checkpoint"] == str(trained / "checkpoints" / "last.ckpt")
    # another checkpoint tested in the same step would replace these outputs: refused; a step of its own is not
    best = str(next((trained / "checkpoints").glob("best-*.ckpt")))
    with pytest.raises(train.UserError, match="slurm-77-test holds this job's test of .*last.ckpt; run each test in"):
        train.main(native("test", tiny_cifar, runs, "--trainer.logger", "false", "--ckpt_path", best))
    monkeypatch.setenv("SLURM_STEP_ID", "3")
    train.main(native("test", tiny_cifar, runs, "--trainer.logger", "false", "--ckpt_path", best))
    assert json.loads((runs / "slurm-77-3-test" / "run.json").read_text())["checkpoint"] == best
    assert files(trained) == before


# with the slow tests (CI's 10 minutes); test_a_launched_evaluation_rank_reads_rank_0s_checkpoint checks the cause in CI
@pytest.mark.slow
def test_native_subcommands_run_under_ddp_with_two_cpu_processes(tiny_cifar, tmp_path):
    # the launched rank gets the arguments (sys.argv) and rank 0's folder and checkpoint, not a `last` of its own
    runs = tmp_path / "runs"
    train.main(job(tiny_cifar, runs, "--trainer.logger", "false", "--run_name", "trained"))
    ddp = ("--trainer.logger", "false", "--trainer.accelerator", "cpu", "--trainer.strategy", "ddp",
           "--trainer.devices", "2")
    result = run_script(native("test", tiny_cifar, runs, *ddp, "--ckpt_path", "last"), tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (tested,) = [d for d in runs.iterdir() if d.name != "trained"]
    assert json.loads((tested / "run.json").read_text())["checkpoint"] == str(runs / "trained" / "checkpoints" /
                                                                            "last.ckpt")
    assert (tested / "test_confusion_matrix.csv").is_file()
    assert "sync_dist=True" not in result.stderr  # the per-class accuracies are synced already: no DDP warning


@pytest.mark.slow  # 16-20 s; test_prepare_run_on_a_rank_other_than_0_creates_no_folder checks the cause in CI
def test_torchrun_writes_one_run_folder(tiny_cifar, tmp_path):
    # each process starts train.py on its own and picks a time stamp; rank 1 made its folder (an empty wandb/), so
    # rank 0 took the next name. Only rank 0 writes: its folder is the run
    runs = tmp_path / "runs"
    # one node, two CPU processes, as a user without SLURM starts it; the config's W&B logger, offline
    result = run_script(job(tiny_cifar, runs, "--trainer.accelerator", "cpu", "--trainer.strategy", "ddp",
                            "--trainer.devices", "2"), tmp_path,
                        launcher=("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"))
    assert result.returncode == 0, result.stderr[-3000:]
    (trained,) = list(runs.iterdir())
    assert json.loads((trained / "results.json").read_text())["world_size"] == 2
    assert list((trained / "wandb").glob("offline-run-*"))


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
    assert train.random_seed() == 1234
    monkeypatch.setenv("LOCAL_RANK", "0")  # rank 0 of an in-process DDP before: Lightning leaves WORLD_SIZE set
    monkeypatch.setenv("WORLD_SIZE", "2")
    seeds = {train.random_seed() for _ in range(20)}
    assert len(seeds) == 20 and max(seeds) >= 2**31 and max(seeds) < 2**32  # all 32 bits: all below 2**31 is 2**-20
    with monkeypatch.context() as context:  # one process of torchrun's or one SLURM task: a seed of its own
        for name, value in {"TORCHELASTIC_RUN_ID": "x", "WORLD_SIZE": "1", "SLURM_NTASKS": "1",
                            "SLURM_JOB_NAME": "train"}.items():
            context.setenv(name, value)
        assert train.random_seed() != train.random_seed()
    for env, launcher in [({"TORCHELASTIC_RUN_ID": "x", "WORLD_SIZE": "2"}, "the 2 processes torchrun started"),
                          ({"SLURM_NTASKS": "2", "SLURM_JOB_NAME": "train"}, "the 2 processes the SLURM job started")]:
        with monkeypatch.context() as context:
            for name, value in env.items():
                context.setenv(name, value)
            with pytest.raises(train.UserError, match=f"^--seed_everything true: each of {launcher} would draw a seed "
                                                      r"of its own; give them one from the shell, --seed_everything "
                                                      r"\$RANDOM"):
                train.random_seed()


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


# with the slow tests (CI's 10 minutes): test_shipped_configs' resume runs train.py without W&B credentials and checks
# the same (offline, the `wandb sync` line, the offline run's file)
@pytest.mark.slow
def test_wandb_runs_offline_without_credentials(tiny_cifar, tmp_path):
    runs = tmp_path / "runs"
    result = run_script(job(tiny_cifar, runs, "--trainer.max_epochs", "1"), tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = only_run(runs)
    assert f"wandb sync {run_dir}/wandb/offline-run-*" in result.stdout
    assert list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))


# with the slow tests (CI's 10 minutes): test_stop_signals' DDP stop test runs the same job and checks its steps too
@pytest.mark.slow
def test_ddp_with_two_cpu_processes_splits_the_data(tiny_cifar, tmp_path):
    runs = tmp_path / "runs"
    args = job(tiny_cifar, runs, "--trainer.logger", "false", "--trainer.accelerator", "cpu",
               "--trainer.strategy", "ddp", "--trainer.devices", "2")
    result = run_script(args, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((only_run(runs) / "results.json").read_text())  # one folder for both ranks
    # 24 images, batch 8 per process: 3 steps an epoch alone, 1 each when two ranks share the data
    assert results["world_size"] == 2 and results["global_step"] == 2


@pytest.mark.parametrize("mode, axis", [("exponential", "log"), ("linear", "linear")])
def test_lr_find_saves_the_plot_and_prints_the_suggestion(tiny_cifar, tmp_path, capsys, mode, axis):
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


def test_the_config_is_written_with_its_none_values_in_the_installed_jsonargparse_s_own_words():
    # a re-run from config.yaml needs its nulls (ckpt_path, a callback's dirpath); jsonargparse >= 4.49 warns on
    # skip_none (removed in 5.0)
    import warnings

    from jsonargparse import ArgumentParser
    parser = ArgumentParser()
    parser.add_argument("--ckpt_path", type=str | None, default=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert yaml.safe_load(parser.dump(parser.parse_args([]), **run_config.KEEP_NONE)) == {"ckpt_path": None}
