"""run_folder.prepare_run called directly: the checkpoints and the W&B run pointed at the run folder, a resume's W&B
run, wandb's own variables."""

import json
import os

import pytest
from jsonargparse import Namespace
from runs import DARKNET, run_config, wandb_logger

from callbacks import run_folder, run_lifecycle, wandb_run

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets: threads only add contention


def callback(name, **init_args):
    return Namespace(class_path=f"lightning.pytorch.callbacks.{name}", init_args=Namespace(**init_args))


def test_prepare_run_points_checkpoints_and_the_wandb_run_at_the_run_folder(tmp_path, monkeypatch, no_ranks, capsys):
    runs = tmp_path / "new" / "runs"  # neither there yet
    monkeypatch.delenv("WANDB_MODE", raising=False)  # the resume below logs online, which WANDB_MODE=offline forbids
    monkeypatch.setattr(wandb_run, "wandb_logged_in", lambda: False)
    config = run_config(runs, run_name="r", logger=wandb_logger())
    config.trainer.callbacks = [callback("ModelCheckpoint", dirpath=None), callback("ModelCheckpoint", dirpath="/mine"),
                                callback("LearningRateMonitor")]
    run_folder.prepare_run(config, "fit")
    assert config.trainer.default_root_dir == str(runs / "r") and os.environ["DL2_RUN_NAME"] == "r"
    assert [c.init_args.get("dirpath") for c in config.trainer.callbacks] == [str(runs / "r" / "checkpoints"),
                                                                               "/mine", None]  # the monitor: a logger
    wandb = config.trainer.logger.init_args
    info = json.loads((runs / "r" / "run.json").read_text())
    assert info["kind"] == "fit" and info["trained"] is False and info["model"] == DARKNET
    assert (wandb.save_dir, wandb.name, wandb.id) == (str(runs / "r"), "r", info["wandb_id"])
    assert len(wandb.id) == 8 and (runs / "r" / "wandb").is_dir()
    assert wandb.offline is True and wandb.log_model is False  # not logged in: offline, which refuses log_model
    assert (wandb.tags, wandb.job_type) == (["darknet"], "fit")  # the dashboard's filters: the system, fit or test
    assert capsys.readouterr().out == (f"W&B: not logged in (`wandb login`), logging offline to {runs}/r/wandb; upload "
                                       f"later with `wandb sync {runs}/r/wandb/offline-run-*`\nW&B: offline, so "
                                       "--trainer.logger.log_model is off (the checkpoints stay in the run folder)\n")
    # the resume, logged in now: the same W&B run, online, its checkpoints uploaded
    run_lifecycle.release_run_locks()  # by a process of its own: the first one ended
    monkeypatch.setattr(wandb_run, "wandb_logged_in", lambda: True)
    config = run_config(runs, ckpt_path=str(runs / "r" / "checkpoints" / "last.ckpt"), logger=wandb_logger())
    run_folder.prepare_run(config, "fit")
    wandb = config.trainer.logger.init_args
    assert (wandb.save_dir, wandb.id, wandb.offline, wandb.log_model) == (str(runs / "r"), info["wandb_id"], False,
                                                                          True)


def test_an_offline_run_by_choice_says_where_its_wandb_files_are(tmp_path, monkeypatch, no_ranks, capsys):
    """WANDB_MODE=offline (a compute node without internet) printed nothing of where the run logged or how to upload
    it: only a run offline for want of a login did."""
    runs = tmp_path / "runs"
    monkeypatch.setattr(wandb_run, "wandb_logged_in", lambda: True)
    for mode, given, why in (("offline", {}, "WANDB_MODE=offline"), (None, {"offline": True},
                                                                      "--trainer.logger.offline true")):
        if mode is None:
            monkeypatch.delenv("WANDB_MODE", raising=False)
        else:
            monkeypatch.setenv("WANDB_MODE", mode)
        name = f"r{len(why)}"
        run_folder.prepare_run(run_config(runs, run_name=name, logger=wandb_logger(**given)), "fit")
        assert capsys.readouterr().out.startswith(f"W&B: offline ({why}), logging to {runs / name / 'wandb'}; upload "
                                                  f"later with `wandb sync {runs / name / 'wandb'}/offline-run-*`\n")
    monkeypatch.delenv("WANDB_MODE", raising=False)  # online: nothing to say
    run_folder.prepare_run(run_config(runs, run_name="online", logger=wandb_logger()), "fit")
    assert "W&B" not in capsys.readouterr().out


@pytest.mark.parametrize("order", ["wandb first", "wandb second"])
def test_a_list_of_loggers_gets_its_wandb_logger_pointed_at_the_run_folder(order, tmp_path, monkeypatch, no_ranks):
    """A config's `logger:` list (W&B beside a CSV logger): its W&B run went to ./wandb with a new id each resume."""
    monkeypatch.setattr(wandb_run, "wandb_logged_in", lambda: True)
    runs = tmp_path / "runs"
    csv = Namespace(class_path="lightning.pytorch.loggers.CSVLogger", init_args=Namespace(save_dir=str(tmp_path)))
    loggers = [wandb_logger(), csv] if order == "wandb first" else [csv, wandb_logger()]
    config = run_config(runs, run_name="r", logger=loggers)
    config.trainer.callbacks = [callback("LearningRateMonitor")]
    run_folder.prepare_run(config, "fit")
    wandb = next(logger for logger in config.trainer.logger if logger.class_path.endswith("WandbLogger")).init_args
    info = json.loads((runs / "r" / "run.json").read_text())
    assert (wandb.save_dir, wandb.name, wandb.id, wandb.job_type) == (str(runs / "r"), "r", info["wandb_id"], "fit")
    assert csv.init_args.save_dir == str(tmp_path) and len(config.trainer.callbacks) == 1  # as given; a logger
    config = run_config(runs, run_name="s", logger=[])  # no logger: Lightning's LearningRateMonitor would refuse
    config.trainer.callbacks = [callback("LearningRateMonitor")]
    run_folder.prepare_run(config, "fit")
    assert config.trainer.callbacks == []


def test_prepare_run_keeps_the_wandb_options_given(tmp_path, monkeypatch, no_ranks, capsys):
    runs = tmp_path / "runs"
    monkeypatch.setattr(wandb_run, "wandb_logged_in", lambda: True)
    config = run_config(runs, run_name="r", logger=wandb_logger(save_dir=str(tmp_path / "logs"), name="given",
                                                                id="myid0001", tags=["mine"], job_type="sweep"))
    config.trainer.callbacks = [callback("LearningRateMonitor")]
    run_folder.prepare_run(config, "fit")
    wandb = config.trainer.logger.init_args
    assert (wandb.save_dir, wandb.name, wandb.id) == (str(tmp_path / "logs"), "given", "myid0001")
    assert (wandb.tags, wandb.job_type) == (["darknet", "mine"], "sweep")  # the system's tag kept beside them
    assert (tmp_path / "logs" / "wandb").is_dir() and len(config.trainer.callbacks) == 1
    config = run_config(runs, run_name="s", logger=wandb_logger(save_dir="."))
    run_folder.prepare_run(config, "fit")
    assert config.trainer.logger.init_args.save_dir == str(runs / "s")  # "." is WandbLogger's default: the run's
    config = run_config(runs, run_name="t")  # no logger: Lightning's LearningRateMonitor would refuse to start
    config.trainer.callbacks = [callback("LearningRateMonitor"), callback("ModelCheckpoint", dirpath=None)]
    run_folder.prepare_run(config, "fit")
    assert [c.class_path.rpartition(".")[2] for c in config.trainer.callbacks] == ["ModelCheckpoint"]
    # not logged in, with a save_dir of the user's: the note names where the offline run is
    monkeypatch.setattr(wandb_run, "wandb_logged_in", lambda: False)
    capsys.readouterr()
    run_folder.prepare_run(run_config(runs, run_name="u", logger=wandb_logger(save_dir=str(tmp_path / "mine"))), "fit")
    mine = tmp_path / "mine" / "wandb"
    assert capsys.readouterr().out.startswith(f"W&B: not logged in (`wandb login`), logging offline to {mine}; upload "
                                              f"later with `wandb sync {mine}/offline-run-*`")


def test_a_resume_keeps_the_wandb_name_the_run_began_with(tmp_path, monkeypatch, no_ranks):
    """wandb renames a run to the name it is given: a resume without the first part's --trainer.logger.name renamed
    the dashboard's run to its folder's name. A name given to the resume is the user's: it renames."""
    monkeypatch.setattr(wandb_run, "wandb_logged_in", lambda: True)
    runs = tmp_path / "runs"
    run_folder.prepare_run(run_config(runs, run_name="r", logger=wandb_logger(name="lr-sweep-3")), "fit")
    last = str(runs / "r" / "checkpoints" / "last.ckpt")
    for given, expected in [(None, "lr-sweep-3"), ("renamed", "renamed"), (None, "renamed")]:
        run_lifecycle.release_run_locks()  # each resume a process of its own
        config = run_config(runs, ckpt_path=last, logger=wandb_logger(**({"name": given} if given else {})))
        run_folder.prepare_run(config, "fit")
        assert config.trainer.logger.init_args.name == expected
    run_lifecycle.release_run_locks()
    config = run_config(runs, run_name="s", logger=wandb_logger())  # another run: its own folder's name
    run_folder.prepare_run(config, "fit")
    assert config.trainer.logger.init_args.name == "s"


def test_a_resume_that_logs_otherwise_than_its_run_began_says_so(tmp_path, monkeypatch, no_ranks, capsys):
    """`--trainer.logger false` on a resume ended the run's W&B run where it stopped, and a W&B logger on the resume
    of a run begun without one began a W&B run mid-way, both without a word."""
    monkeypatch.setattr(wandb_run, "wandb_logged_in", lambda: True)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    runs = tmp_path / "runs"
    for name, logger in (("r", wandb_logger()), ("s", None)):
        run_folder.prepare_run(run_config(runs, run_name=name, logger=logger), "fit")
        run_lifecycle.release_run_locks()
    wandb_id = json.loads((runs / "r" / "run.json").read_text())["wandb_id"]
    capsys.readouterr()
    for name, logger, said in (
            ("r", None, f"W&B: this resume logs to no W&B run; the run's, {wandb_id}, ends where the run stopped "
                        f"(resume with the run's logger, without --trainer.logger false, to go on in it)\n"),
            ("r", wandb_logger(), ""),  # as it began: nothing to say
            ("s", wandb_logger(), "W&B: the run began without W&B (--trainer.logger false): this resume's W&B run "
                                  "begins at its checkpoint's step, without the run's start\n")):
        run_folder.prepare_run(run_config(runs, ckpt_path=str(runs / name / "checkpoints" / "last.ckpt"),
                                          logger=logger), "fit")
        run_lifecycle.release_run_locks()
        assert capsys.readouterr().out == said
    assert json.loads((runs / "r" / "run.json").read_text())["wandb_id"] == wandb_id  # kept for a later resume


def test_a_resume_goes_on_in_the_wandb_run_the_run_began(tmp_path, monkeypatch, no_ranks):
    """A run begun with README's --trainer.logger.project/entity/group/tags (and an id of the user's), resumed with
    --ckpt_path last alone: the resume logged into a new run of the config's project (a W&B run id names a run of one
    project), without the run's group and tags (wandb replaces a resumed run's tags with those given), and under a new
    id when the id was the user's. Tags and a group given to the resume are the user's; the project stays the run's."""
    monkeypatch.setattr(wandb_run, "wandb_logged_in", lambda: True)
    runs = tmp_path / "runs"
    began = wandb_logger(project="gans", entity="my-team", group="lsun", tags=["darknet", "64px"], id="myid0001")
    run_folder.prepare_run(run_config(runs, run_name="r", logger=began), "fit")
    last = str(runs / "r" / "checkpoints" / "last.ckpt")
    more = {"tags": ["more"], "group": "g2"}
    for given, expected in [({}, ("gans", "my-team", "lsun", ["darknet", "64px"], "myid0001")),
                            (more, ("gans", "my-team", "g2", ["darknet", "more"], "myid0001")),
                            ({}, ("gans", "my-team", "g2", ["darknet", "more"], "myid0001"))]:
        run_lifecycle.release_run_locks()  # each resume a process of its own
        config = run_config(runs, ckpt_path=last, logger=wandb_logger(project="dl2-lightning", **given))
        run_folder.prepare_run(config, "fit")
        wandb = config.trainer.logger.init_args
        assert (wandb.project, wandb.get("entity"), wandb.get("group"), wandb.tags, wandb.id) == expected
    run_lifecycle.release_run_locks()
    config = run_config(runs, run_name="s", logger=wandb_logger(project="dl2-lightning"))  # another run: its own
    run_folder.prepare_run(config, "fit")
    wandb = config.trainer.logger.init_args
    assert (wandb.project, wandb.get("entity"), wandb.group, wandb.tags) == ("dl2-lightning", None, None, ["darknet"])
    assert wandb.id != "myid0001"


def test_a_sweep_runs_resume_goes_on_in_the_sweeps_project(tmp_path, monkeypatch, no_ranks):
    """`wandb agent` sets WANDB_PROJECT, WANDB_ENTITY, WANDB_SWEEP_ID and WANDB_RUN_ID, and wandb logs the run in the
    sweep's project whatever wandb.init is given; resumed later outside the agent, the run went to the config's."""
    monkeypatch.setattr(wandb_run, "wandb_logged_in", lambda: True)
    for name, value in {"WANDB_PROJECT": "sweeps", "WANDB_ENTITY": "team", "WANDB_SWEEP_ID": "sw1",
                        "WANDB_RUN_ID": "agent123"}.items():
        monkeypatch.setenv(name, value)
    runs = tmp_path / "runs"
    run_folder.prepare_run(run_config(runs, run_name="r", logger=wandb_logger(project="dl2-lightning")), "fit")
    for name in ("WANDB_PROJECT", "WANDB_ENTITY", "WANDB_SWEEP_ID", "WANDB_RUN_ID"):
        monkeypatch.delenv(name)
    run_lifecycle.release_run_locks()
    config = run_config(runs, ckpt_path=str(runs / "r" / "checkpoints" / "last.ckpt"),
                        logger=wandb_logger(project="dl2-lightning"))
    run_folder.prepare_run(config, "fit")
    wandb = config.trainer.logger.init_args
    assert (wandb.project, wandb.get("entity"), wandb.id) == ("sweeps", "team", "agent123")


def test_a_resume_goes_on_in_the_entity_wandb_entity_named(tmp_path, monkeypatch, no_ranks):
    """WANDB_ENTITY stands for --trainer.logger.entity not given (wandb.init reads it): the run is in that entity, and
    run.json kept null for it, so a resume without the variable (another shell, a notebook) went to the default
    entity: a new W&B run, the run id naming a run of one entity's project."""
    monkeypatch.setattr(wandb_run, "wandb_logged_in", lambda: True)
    monkeypatch.setenv("WANDB_ENTITY", "my-team")
    runs = tmp_path / "runs"
    run_folder.prepare_run(run_config(runs, run_name="r", logger=wandb_logger(project="dl2-lightning")), "fit")
    assert json.loads((runs / "r" / "run.json").read_text())["wandb_entity"] == "my-team"
    monkeypatch.delenv("WANDB_ENTITY")
    run_lifecycle.release_run_locks()
    config = run_config(runs, ckpt_path=str(runs / "r" / "checkpoints" / "last.ckpt"),
                        logger=wandb_logger(project="dl2-lightning"))
    run_folder.prepare_run(config, "fit")
    assert config.trainer.logger.init_args.get("entity") == "my-team"
    run_lifecycle.release_run_locks()
    monkeypatch.setenv("WANDB_ENTITY", "my-team")  # the option given wins, as with wandb.init
    config = run_config(runs, run_name="s", logger=wandb_logger(project="dl2-lightning", entity="other"))
    run_folder.prepare_run(config, "fit")
    assert config.trainer.logger.init_args.entity == "other"


def test_wandbs_own_variables_stand_for_the_options_not_given(tmp_path, monkeypatch, no_ranks):
    """WANDB_NAME, WANDB_TAGS, WANDB_RUN_GROUP and WANDB_JOB_TYPE, which wandb.init reads for the arguments it is not
    given: train.py gave it the folder's name, the system's tag and fit in their place, and they were ignored. The
    options given win over them, as over wandb's."""
    monkeypatch.setattr(wandb_run, "wandb_logged_in", lambda: True)
    for name, value in {"WANDB_NAME": "lr 0.1", "WANDB_TAGS": "a, b,darknet", "WANDB_RUN_GROUP": "sweep-7",
                        "WANDB_JOB_TYPE": "train"}.items():
        monkeypatch.setenv(name, value)
    runs = tmp_path / "runs"
    config = run_config(runs, run_name="r", logger=wandb_logger())
    run_folder.prepare_run(config, "fit")
    wandb = config.trainer.logger.init_args
    assert (wandb.name, wandb.tags, wandb.group, wandb.job_type) == ("lr 0.1", ["darknet", "a", "b"], "sweep-7",
                                                                       "train")
    config = run_config(runs, run_name="s", logger=wandb_logger(name="n", tags=["c"], group="g", job_type="j"))
    run_folder.prepare_run(config, "fit")
    wandb = config.trainer.logger.init_args
    assert (wandb.name, wandb.tags, wandb.group, wandb.job_type) == ("n", ["darknet", "c"], "g", "j")


@pytest.mark.parametrize("mode, offline", [("offline", True), ("dryrun", True), ("online", False)])
def test_wandb_mode_offline_shows_in_the_loggers_config(mode, offline, tmp_path, monkeypatch, no_ranks):
    monkeypatch.setenv("WANDB_MODE", mode)  # the user's decision: wandb runs offline whatever the config says
    config = run_config(tmp_path / "runs", run_name="r", logger=wandb_logger())
    run_folder.prepare_run(config, "fit")
    assert config.trainer.logger.init_args.offline is offline


@pytest.mark.parametrize("enable, kept", [(False, ["EarlyStopping"]), (True, ["ModelCheckpoint", "EarlyStopping"]),
                                           (None, ["ModelCheckpoint", "EarlyStopping"])])
def test_enable_checkpointing_false_drops_the_configs_checkpoint_callback_alone(enable, kept, tmp_path, no_ranks):
    # Lightning refuses enable_checkpointing false beside a ModelCheckpoint callback (the shipped configs have one)
    config = run_config(tmp_path / "runs", run_name="r", enable_checkpointing=enable)
    config.trainer.callbacks = [callback("ModelCheckpoint", dirpath=None), callback("EarlyStopping", monitor="val/acc")]
    run_folder.prepare_run(config, "fit", make=False)
    assert [c.class_path.rpartition(".")[2] for c in config.trainer.callbacks] == kept


def test_prepare_run_on_a_rank_other_than_0_creates_no_folder(tmp_path, monkeypatch, no_ranks):
    # torchrun's rank 1 picks its own time stamp; its W&B folder made rank 0 take the next name and stayed empty
    runs = tmp_path / "runs"
    monkeypatch.setenv("RANK", "1")
    config = run_config(runs, logger=wandb_logger())
    run_folder.prepare_run(config, "fit")
    assert config.trainer.default_root_dir.startswith(str(runs)) and not runs.exists()
