"""A run's config.yaml: where it is written, a new run trained from it, an old one refused."""

import json
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, run_in_process
from runs import CLI_TINY as TINY
from runs import cli_job as job
from runs import only_run

import train
from callbacks import run_config

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets: threads only add contention


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

