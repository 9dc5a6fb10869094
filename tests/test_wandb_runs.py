"""train.py's W&B runs: one per train.main, a caller's open run, the mode and settings, the exit status."""

import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import wandb_records
from runs import cli_job as job
from runs import only_run
from runs import run_cli_script as run_script

import train
from callbacks import wandb_run

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets: threads only add contention


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



def test_wandbs_settings_of_a_callers_run_or_of_no_set_up_here_are_left_alone_and_the_flag_names_the_mode(
        tmp_path, monkeypatch):
    """Without WANDB_MODE the run's mode is --offline's: a set-up in it is kept, one in the other dropped. A run the
    caller opened keeps wandb's set-up whatever its mode (dropping it would end the run), and a set-up of another
    process (a fork's parent) or none at all is not this process's to drop."""
    import wandb
    from wandb.sdk import wandb_setup
    if not hasattr(wandb_setup, "_singleton"):  # an older wandb (0.19, the floor): always set up afresh
        pytest.skip("this wandb's set-up cannot be read: train.py sets it up afresh for each run")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    wandb.teardown()
    try:
        wandb_run.forget_wandb_settings(offline=False)  # nothing set up: nothing read, nothing dropped
        assert wandb_setup._singleton is None
        wandb.setup(settings=wandb.Settings(mode="offline"))
        mine = wandb_setup._singleton
        wandb_run.forget_wandb_settings(offline=True)
        assert wandb_setup._singleton is mine  # offline, as --offline asks: kept
        mine._pid = os.getpid() + 1  # as a forked process sees its parent's: wandb sets itself up afresh in this one
        wandb_run.forget_wandb_settings(offline=False)
        assert wandb_setup._singleton is mine  # the parent's, not torn down from here
        mine._pid = os.getpid()
        monkeypatch.setattr(wandb, "run", SimpleNamespace(id="callers1"))
        wandb_run.forget_wandb_settings(offline=False)
        assert wandb_setup._singleton is mine  # online wanted, but the caller's run is open: kept
        monkeypatch.setattr(wandb, "run", None)
        wandb_run.forget_wandb_settings(offline=False)
        assert wandb_setup._singleton is None  # online wanted, set up offline: dropped
    finally:
        wandb.teardown()


def test_an_older_wandb_whose_set_up_cannot_be_read_is_always_set_up_afresh(monkeypatch):
    """wandb 0.19 (the floor) has no wandb_setup._singleton: its set-up is dropped before each run's wandb.init."""
    dropped = []
    monkeypatch.setitem(sys.modules, "wandb", SimpleNamespace(run=None, teardown=lambda: dropped.append(True)))
    monkeypatch.setitem(sys.modules, "wandb.sdk.wandb_setup", SimpleNamespace())
    wandb_run.forget_wandb_settings(offline=True)
    assert dropped == [True]


@pytest.mark.parametrize("mode", ["offline", "disabled", "online"])
def test_wandb_mode_set_counts_as_decided_and_no_login_is_checked(mode, tmp_path, monkeypatch):
    """WANDB_MODE set: the logger is left as configured, whatever the credentials (none here)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("WANDB_API_KEY", "")
    monkeypatch.setenv("WANDB_MODE", mode)
    assert wandb_run.wandb_logged_in() is True


def test_a_callers_open_wandb_run_counts_as_logged_in_and_is_left_open(tmp_path, monkeypatch):
    """A notebook's wandb.init, which the logger logs into: the check would end it with its teardown."""
    import wandb
    monkeypatch.setenv("HOME", str(tmp_path))  # no credentials
    monkeypatch.setenv("WANDB_API_KEY", "")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    dropped = []
    monkeypatch.setattr(wandb, "run", SimpleNamespace(id="callers1"))
    monkeypatch.setattr(wandb, "teardown", lambda: dropped.append(True))
    assert wandb_run.wandb_logged_in() is True and dropped == []


def test_an_api_key_counts_as_logged_in_without_asking_the_server(tmp_path, monkeypatch):
    """The check must not wait on the network: a key wandb would have to verify with a server that cannot be reached
    (a compute node offline) is taken as it is. WANDB_SILENT: wandb 0.31 looks up the key's user name for its "logged
    in as" line even unverified, a 5 s wait here."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", "0123456789abcdef0123456789abcdef01234567")
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("WANDB_SILENT", "true")
    assert wandb_run.wandb_logged_in() is True


@pytest.mark.parametrize("key, logged_in", [("0123456789abcdef0123456789abcdef01234567", True), (None, False)])
def test_a_wandb_without_logins_prompt_option_is_asked_for_its_stored_key(key, logged_in, tmp_path, monkeypatch):
    """wandb before login(prompt=...) (0.19, the floor) would prompt: its API's stored key stands for the login."""
    import wandb

    def login(anonymous=None, key=None, relogin=None, host=None, force=None, timeout=None, verify=False):
        raise AssertionError("an older wandb's login prompts")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setattr(wandb, "run", None)
    monkeypatch.setattr(wandb, "login", login)
    monkeypatch.setattr(wandb, "api", SimpleNamespace(api_key=key), raising=False)
    assert wandb_run.wandb_logged_in() is logged_in


def test_a_new_wandb_id_is_eight_lower_case_letters_and_digits_as_wandbs_own():
    import re
    ids = [wandb_run.new_wandb_id() for _ in range(200)]
    assert all(re.fullmatch(r"[a-z0-9]{8}", id_) for id_ in ids), ids
    assert len(set(ids)) == 200

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


def test_wandb_disabled_prints_no_run_address(tiny_cifar, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")  # wandb's disabled run is not "offline" and has no url
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    train.main(job(tiny_cifar, tmp_path / "runs", "--trainer.max_epochs", "1"))  # the shipped W&B logger
    out = capsys.readouterr().out
    assert "Results written to" in out and "W&B:" not in out


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

