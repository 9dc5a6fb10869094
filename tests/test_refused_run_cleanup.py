"""A refused run's clean-up (run_lifecycle.discard_fresh_runs, discard_refused_resume): the folders and the W&B run made
for it go, an earlier or another run's stay."""

import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from runs import run_config, wandb_logger

from callbacks import run_folder, run_lifecycle, wandb_run

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets: threads only add contention


@pytest.mark.parametrize("whose", ["t's", "an earlier run's"])
def test_a_refused_run_discards_the_folders_made_for_it_and_ends_its_wandb_run(whose, tmp_path, monkeypatch, no_ranks):
    """discard_fresh_runs, called when a run is refused before its training or evaluation began. wandb.run may be an
    earlier run's of the same process (train.main twice in a notebook): it is neither ended nor removed."""
    monkeypatch.setattr(run_lifecycle, "_fresh_runs", {})
    monkeypatch.setattr(run_lifecycle, "_fresh_wandb", {})
    monkeypatch.setattr(wandb_run, "wandb_logged_in", lambda: True)
    runs, logs = tmp_path / "runs", tmp_path / "logs"
    runs.mkdir()  # there before: stays
    run_folder.prepare_run(run_config(runs, run_name="r", logger=wandb_logger()), "fit")
    run_folder.prepare_run(run_config(runs, run_name="s", logger=False), "fit")
    # a W&B save_dir of the user's outside the run folder: the folders made for it go too
    run_folder.prepare_run(run_config(runs, run_name="t", logger=wandb_logger(save_dir=str(logs / "mine"))), "fit")
    assert run_lifecycle._fresh_runs == {runs / "r": [runs / "r"], runs / "s": [runs / "s"],  # r/wandb goes with r
                                      runs / "t": [runs / "t", logs / "mine" / "wandb", logs / "mine", logs]}
    (runs / "r" / "checkpoints").mkdir()
    (runs / "r" / "checkpoints" / "last.ckpt").write_bytes(b"")  # a checkpoint: kept, as a run that saved results
    (runs / "s" / "results.json").write_text("{}")
    finished = []
    wandb_id = json.loads((runs / "t" / "run.json").read_text())["wandb_id"] if whose == "t's" else "earlier1"
    offline_run = logs / "mine" / "wandb" / f"offline-run-20261130_010750-{wandb_id}"  # which wandb had begun
    (offline_run / "files").mkdir(parents=True)
    (offline_run / f"run-{wandb_id}.wandb").write_bytes(b"")
    (logs / "mine" / "wandb" / "latest-run").symlink_to(offline_run.name)
    monkeypatch.setitem(sys.modules, "wandb", SimpleNamespace(
        run=SimpleNamespace(id=wandb_id, dir=str(offline_run / "files")),
        finish=lambda exit_code: finished.append(exit_code)))
    run_lifecycle.discard_fresh_runs()
    assert sorted(p.name for p in runs.iterdir()) == ["r", "s"]
    assert run_lifecycle._fresh_runs == {} and run_lifecycle._held_locks == {} and run_lifecycle._fresh_wandb == {}
    if whose == "t's":
        assert finished == [2]  # the W&B run ends as the process does, exit status 2 for a refusal
        assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]  # t went, its W&B run and the logs/ made for it
    else:
        assert finished == [] and (offline_run / f"run-{wandb_id}.wandb").is_file()
        assert sorted(p.name for p in (logs / "mine" / "wandb").iterdir()) == ["latest-run", offline_run.name]


def busy_folder(monkeypatch, folder: Path) -> None:
    """os.rmdir of `folder` fails as on NFS, where a file another process still has open stays as a .nfs file."""
    import errno
    rmdir = os.rmdir

    def busy(path, *args, **kwargs):
        if Path(path) == folder:
            raise OSError(errno.EBUSY, "Device or resource busy", str(path))
        rmdir(path, *args, **kwargs)
    monkeypatch.setattr(os, "rmdir", busy)


def test_removing_a_wandb_run_takes_the_links_into_it_and_leaves_the_other_runs(tmp_path, monkeypatch):
    wandb = tmp_path / "wandb"
    for run in ("offline-run-1-aaaa", "offline-run-2-bbbb"):
        (wandb / run / "logs").mkdir(parents=True)
        (wandb / run / "logs" / "debug.log").write_text(run)
    (wandb / "latest-run").symlink_to("offline-run-1-aaaa")  # wandb's links are relative
    (wandb / "debug.log").symlink_to(wandb / "offline-run-1-aaaa" / "logs" / "debug.log")
    (wandb / "other.log").symlink_to(Path("offline-run-2-bbbb") / "logs" / "debug.log")
    (wandb / "settings").write_text("")
    wandb_run.remove_wandb_run(wandb / "offline-run-1-aaaa")
    assert sorted(p.name for p in wandb.iterdir()) == ["offline-run-2-bbbb", "other.log", "settings"]
    assert (wandb / "other.log").read_text() == "offline-run-2-bbbb"
    # one that cannot be removed (NFS keeps a file another process has open) leaves the refusal as it was
    busy_folder(monkeypatch, wandb / "offline-run-2-bbbb")
    wandb_run.remove_wandb_run(wandb / "offline-run-2-bbbb")
    assert sorted(p.name for p in wandb.iterdir()) == ["offline-run-2-bbbb", "settings"]


def test_a_refused_resume_ends_its_own_wandb_run_as_finished_and_leaves_anothers_alone(tmp_path, monkeypatch):
    """discard_refused_resume: the resumed run's W&B run ends with exit code 0 (the run was not a failure), this
    process's folder of it goes and wandb's links point where they pointed before; a W&B run of the caller's (a
    notebook's, other id) is neither ended nor removed; a run whose folder cannot be read is ended all the same."""
    wandb = tmp_path / "wandb"
    for run in ("offline-run-1-abcd1234", "offline-run-2-abcd1234", "offline-run-3-other000"):
        (wandb / run / "files").mkdir(parents=True)
    (wandb / "latest-run").symlink_to("offline-run-2-abcd1234")  # the refused resume's, made by wandb.init
    before = {wandb / "latest-run": "offline-run-1-abcd1234"}  # as make_run_folder found it
    finished = []
    fake_wandb = SimpleNamespace(run=None, finish=lambda exit_code: finished.append(exit_code))
    monkeypatch.setitem(sys.modules, "wandb", fake_wandb)
    for run_id, folder, ended in [("other000", "offline-run-3-other000", []),  # the caller's: untouched
                                  ("abcd1234", "offline-run-2-abcd1234", [0])]:
        monkeypatch.setattr(run_lifecycle, "_resumed_wandb", {tmp_path: ("abcd1234", dict(before))})
        finished.clear()
        fake_wandb.run = SimpleNamespace(id=run_id, dir=str(wandb / folder / "files"))
        run_lifecycle.discard_refused_resume()
        assert finished == ended and run_lifecycle._resumed_wandb == {}
    assert sorted(p.name for p in wandb.iterdir()) == ["latest-run", "offline-run-1-abcd1234", "offline-run-3-other000"]
    assert os.readlink(wandb / "latest-run") == "offline-run-1-abcd1234"
    monkeypatch.setattr(run_lifecycle, "_resumed_wandb", {tmp_path: ("abcd1234", {})})
    fake_wandb.run, finished[:] = SimpleNamespace(id="abcd1234"), []  # no .dir to read
    run_lifecycle.discard_refused_resume()
    assert finished == [0] and (wandb / "offline-run-1-abcd1234").is_dir()
    # the refused part began in the same second as the earlier part: wandb gave it that part's folder, which stays
    monkeypatch.setattr(run_lifecycle, "_resumed_wandb", {tmp_path: ("abcd1234", dict(before))})
    fake_wandb.run = SimpleNamespace(id="abcd1234", dir=str(wandb / "offline-run-1-abcd1234" / "files"))
    run_lifecycle.discard_refused_resume()
    assert (wandb / "offline-run-1-abcd1234" / "files").is_dir()


def test_a_refused_runs_folder_that_cannot_be_removed_leaves_the_refusal_as_it_was(tmp_path, monkeypatch, no_ranks):
    """On NFS a file another process still has open becomes a .nfs file and its folder cannot be removed: the user
    still gets the refusal's one line, not a traceback of the clean-up (and without a W&B run, no wandb.finish)."""
    monkeypatch.setattr(run_lifecycle, "_fresh_runs", {})
    runs = tmp_path / "runs"
    run_folder.prepare_run(run_config(runs, run_name="r"), "fit")
    busy_folder(monkeypatch, runs / "r")
    finished = []
    monkeypatch.setitem(sys.modules, "wandb", SimpleNamespace(run=None, finish=lambda exit_code: finished.append(
        exit_code)))
    run_lifecycle.discard_fresh_runs()
    assert list((runs / "r").iterdir()) == [] and run_lifecycle._fresh_runs == {} and run_lifecycle._held_locks == {}
    assert finished == []  # wandb imported, no W&B run


def test_a_run_that_began_keeps_its_folder_and_another_runs_fresh_one_still_goes(tmp_path, no_ranks, monkeypatch):
    """run_began (RunBegan's hooks; the LR finder's, whose sweep Lightning runs without the Trainer's callbacks): the
    folder made for that run is no longer fresh, so a refusal or a stop after it leaves it."""
    runs = tmp_path / "runs"
    run_folder.prepare_run(run_config(runs, run_name="began"), "fit")
    run_folder.prepare_run(run_config(runs, run_name="refused"), "fit")
    run_lifecycle.run_began(runs / "began")
    assert run_lifecycle.discard_fresh_runs() == [runs / "refused"]
    assert sorted(p.name for p in runs.iterdir()) == ["began"]
    # a resumed part that began: its W&B run is no longer a refused resume's, to be ended and its folder removed
    monkeypatch.setattr(run_lifecycle, "_resumed_wandb", {runs / "began": ("abcd1234", {}), runs / "other": ("e", {})})
    run_lifecycle.run_began(runs / "began")
    assert run_lifecycle._resumed_wandb == {runs / "other": ("e", {})}
