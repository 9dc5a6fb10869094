"""The run folder's choices (run_folder, run_checkpoint, run_lifecycle) called directly (no training: milliseconds,
for tests/mutation.py run_folders): the run `--ckpt_path last` means, a new time stamp, the folder a checkpoint resumes
in."""

import json
import re

import pytest
from runs import CYCLEGAN, DARKNET, a_run, a_run_killed_as_last_ckpt_was_relinked, run_config

import train
from callbacks import run_checkpoint, run_folder, run_lifecycle

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets: threads only add contention


def test_last_is_the_run_started_last_not_the_last_name(tmp_path):
    runs = tmp_path / "runs"
    a_run(runs, "b-first", started=100.0)
    a_run(runs, "a-second", started=200.0)
    a_run(runs, "c-a-test", started=300.0, kind="test")  # an evaluation's folder is no run to resume
    assert run_checkpoint.newest_last_checkpoint(runs, DARKNET, None) == runs / "a-second" / "checkpoints" / "last.ckpt"


def test_last_takes_a_run_json_without_trained_from_a_train_py_before_that_key(tmp_path):
    runs = tmp_path / "runs"
    a_run(runs, "old", started=100.0)  # {"model", "started"}: no "trained", which came later
    assert run_checkpoint.newest_last_checkpoint(runs, DARKNET, None) == runs / "old" / "checkpoints" / "last.ckpt"


def test_last_takes_a_run_json_without_a_start_time_as_older_than_any_started_run(tmp_path):
    runs = tmp_path / "runs"
    undated = a_run(runs, "undated", started=None)
    (undated / "run.json").write_text(json.dumps({"model": DARKNET}))  # written by hand, or by an older train.py
    a_run(runs, "early", started=0.5)
    assert run_checkpoint.newest_last_checkpoint(runs, DARKNET, None) == runs / "early" / "checkpoints" / "last.ckpt"


def test_last_names_the_newest_folder_without_run_json_and_the_newest_older_run(tmp_path):
    runs = tmp_path / "runs"
    for name in ("20260101-000000", "20260102-000000", "20260103-000000"):
        a_run(runs, name, started=None)
    with pytest.raises(train.UserError, match=f"older train.py\\): give --ckpt_path {runs}/20260103-000000/check"):
        run_checkpoint.newest_last_checkpoint(runs, DARKNET, None)
    for name, started in (("first", 100.0), ("second", 200.0), ("third", 300.0)):
        a_run(runs, name, started=started)
    newest = a_run(runs, "newest", started=400.0, checkpoint=False)
    with pytest.raises(train.UserError, match=r"has no checkpoint \(it stopped before its first save\); start a new "
                                              r"run without --ckpt_path; or resume an older run: --run_name third "
                                              r"--ckpt_path last"):
        run_checkpoint.newest_last_checkpoint(runs, DARKNET, None)
    (newest / "results.json").write_text("{}")
    with pytest.raises(train.UserError, match=r"has no checkpoint \(it finished without one: its config keeps no"):
        run_checkpoint.newest_last_checkpoint(runs, DARKNET, None)


def test_run_name_without_a_folder_or_a_checkpoint_says_what_to_do(tmp_path):
    runs = tmp_path / "runs"
    with pytest.raises(train.UserError, match="no run folder .*; runs there: none"):
        run_checkpoint.newest_last_checkpoint(runs, DARKNET, "mine")
    a_run(runs, "mine", started=100.0, checkpoint=False)
    with pytest.raises(train.UserError, match="first save\\); start a new run without --ckpt_path"):
        run_checkpoint.newest_last_checkpoint(runs, DARKNET, "mine")
    with pytest.raises(train.UserError, match="first save\\); give another run"):
        run_checkpoint.newest_last_checkpoint(runs, DARKNET, "mine", evaluation=True)


def test_a_new_time_stamp_takes_the_first_free_suffix(tmp_path, monkeypatch):
    monkeypatch.setattr(run_lifecycle.time, "strftime", lambda form: "20260101-120000")
    assert run_lifecycle.new_time_stamped(tmp_path) == tmp_path / "20260101-120000"
    (tmp_path / "20260101-120000").mkdir()
    assert run_lifecycle.new_time_stamped(tmp_path) == tmp_path / "20260101-120000-2"
    (tmp_path / "20260101-120000-2").mkdir()
    assert run_lifecycle.new_time_stamped(tmp_path) == tmp_path / "20260101-120000-3"


def test_a_launched_evaluation_rank_reads_rank_0s_checkpoint(tmp_path, monkeypatch, no_ranks):
    checkpoint = a_run(tmp_path / "elsewhere", "r", started=100.0) / "checkpoints" / "last.ckpt"
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("DL2_CKPT_PATH", str(checkpoint))
    config = run_config(tmp_path / "runs", ckpt_path="last")  # no run here: rank 0 chose, this rank follows
    run_checkpoint.resolve_checkpoint(config, "test")
    assert config.ckpt_path == str(checkpoint)


@pytest.mark.parametrize("run_name", [None, "r"])
def test_last_of_a_run_killed_as_last_ckpt_was_relinked_names_the_runs_save(tmp_path, run_name):
    """Not 'it stopped before its first save; start a new run', which threw away the epochs the run had saved."""
    runs = tmp_path / "runs"
    run_dir = a_run_killed_as_last_ckpt_was_relinked(runs, "r")
    a_run(runs, "older", started=50.0, model=CYCLEGAN, trained=True)
    saved = run_dir / "checkpoints" / "epoch=001.ckpt"
    with pytest.raises(train.UserError, match=re.escape(f"run {run_dir} has no checkpoints/last.ckpt, but it saved "
                                                        f"epoch=001.ckpt (step 36; ") + ".*" +
                       re.escape(f"give --ckpt_path {saved}")):
        run_checkpoint.newest_last_checkpoint(runs, CYCLEGAN, run_name)


def test_a_named_run_of_a_train_py_before_trained_is_not_taken_over(tmp_path, no_ranks):
    runs = tmp_path / "runs"
    a_run(runs, "mine", started=100.0)  # no "trained": it trained, it is not a run that stopped before
    with pytest.raises(train.UserError, match="mine exists already"):
        run_folder.fit_folder(run_config(runs, run_name="mine"), runs, DARKNET)


def test_a_checkpoint_of_a_folder_without_run_json_resumes_in_that_folder(tmp_path, no_ranks):
    runs = tmp_path / "runs"
    old = a_run(runs, "20250101-000000", started=None)  # train.py before run.json
    config = run_config(runs, ckpt_path=str(old / "checkpoints" / "last.ckpt"))
    assert run_folder.fit_folder(config, runs, DARKNET) == old


def test_a_time_stamp_another_job_took_after_its_choice_is_claimed_under_the_next_name(tmp_path, monkeypatch):
    monkeypatch.setattr(run_lifecycle.time, "strftime", lambda form: "20260101-120000")
    monkeypatch.setattr(run_lifecycle, "_fresh_runs", {})
    chosen = run_lifecycle.new_time_stamped(tmp_path / "runs")
    chosen.mkdir(parents=True)  # another job's, made between the choice and the claim
    claimed = tmp_path / "runs" / "20260101-120000-2"
    assert run_lifecycle.claim_time_stamped(tmp_path / "runs", chosen) == claimed
    assert run_lifecycle._fresh_runs == {claimed: [claimed]}
    assert not any(chosen.iterdir()) and not any(claimed.iterdir())  # the other job's folder untouched, ours empty

