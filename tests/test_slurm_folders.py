"""A SLURM job's run folder and the checkpoint its requeue resumes, run_folder and run_checkpoint called directly (no
training: milliseconds, for tests/mutation.py run_folders)."""


from types import SimpleNamespace

import pytest
import torch
from jsonargparse import Namespace
from runs import CYCLEGAN, DARKNET, a_run, a_run_killed_as_last_ckpt_was_relinked, run_config

import train
from callbacks import run_checkpoint, run_folder
from callbacks.checkpoint_io import write_json

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets: threads only add contention


def test_last_in_a_requeued_slurm_job_is_its_own_folders_and_in_a_new_job_the_newest(tmp_path, monkeypatch, no_ranks):
    runs = tmp_path / "runs"
    a_run(runs, "slurm-77", started=100.0)
    a_run(runs, "other", started=200.0)
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    config = run_config(runs, ckpt_path="last")
    run_checkpoint.resolve_checkpoint(config, "fit")
    assert config.ckpt_path == str(runs / "slurm-77" / "checkpoints" / "last.ckpt")
    monkeypatch.setenv("SLURM_JOB_ID", "78")
    config = run_config(runs, ckpt_path="last")
    run_checkpoint.resolve_checkpoint(config, "fit")
    assert config.ckpt_path == str(runs / "other" / "checkpoints" / "last.ckpt")


def slurm_job_folder(runs, monkeypatch):
    """SLURM job 77's run folder (trained, no checkpoint yet), and a function that chooses the folder of the job's
    requeue by fit_folder (checking it is that one) and returns its config."""
    run_dir = a_run(runs, "slurm-77", started=100.0, trained=True, checkpoint=False)
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")

    def fit_folder(**options):
        config = run_config(runs)
        for name, value in options.items():
            setattr(config, name, value)
        assert run_folder.fit_folder(config, runs, DARKNET) == run_dir
        return config
    return run_dir, fit_folder


def test_a_requeued_slurm_job_resumes_its_last_ckpt_unless_lightning_saved_an_hpc_checkpoint(tmp_path, monkeypatch,
                                                                                             no_ranks):
    # and an --init_from job's requeue that resumes drops --init_from: its weights loaded after Lightning restored
    # hpc_ckpt would undo the job's training, and with last.ckpt the requeue stopped at "--init_from ... and
    # --ckpt_path: give one of them"
    run_dir, fit_folder = slurm_job_folder(tmp_path / "runs", monkeypatch)

    def requeue():
        config = fit_folder(init_from="pretrained.ckpt")
        return config.ckpt_path, config.init_from

    assert requeue() == (None, "pretrained.ckpt")  # requeued before any save: a new start, as asked
    (run_dir / "checkpoints").mkdir()
    last = run_dir / "checkpoints" / "last.ckpt"
    torch.save({"global_step": 3}, last)
    assert requeue() == (str(last), None)
    torch.save({"global_step": 5}, run_dir / "hpc_ckpt_1.ckpt")  # Lightning's save on SLURM's time-limit signal
    assert requeue() == (str(run_dir / "hpc_ckpt_1.ckpt"), None)
    # the requeued job trained on, saved last.ckpt at step 8 and was preempted: its requeue carries on from there, not
    # from the older hpc_ckpt Lightning would take (however old, its newest hpc file)
    torch.save({"global_step": 8}, last)
    assert requeue() == (str(last), None)
    torch.save({"global_step": 9}, run_dir / "hpc_ckpt_2.ckpt")
    assert requeue() == (str(run_dir / "hpc_ckpt_2.ckpt"), None)


def test_a_requeue_takes_last_ckpt_over_an_hpc_checkpoint_of_its_step_and_a_torn_file_only_alone(tmp_path, monkeypatch,
                                                                                                 no_ranks):
    run_dir, fit_folder = slurm_job_folder(tmp_path / "runs", monkeypatch)

    def requeue():
        return fit_folder().ckpt_path

    (run_dir / "hpc_ckpt_1.ckpt").write_bytes(b"PK")  # torn: the job was killed in the middle of the save
    assert requeue() == str(run_dir / "hpc_ckpt_1.ckpt")  # alone: Lightning names the file that cannot be read
    (run_dir / "checkpoints").mkdir()
    last = run_dir / "checkpoints" / "last.ckpt"
    torch.save({"global_step": 0}, last)
    assert requeue() == str(last)  # a save at step 0 is newer than a torn file
    torch.save({"global_step": 4}, last)
    torch.save({"global_step": 4}, run_dir / "hpc_ckpt_2.ckpt")
    assert requeue() == str(last)  # the same step: last.ckpt, train.py's own save


def test_a_requeue_of_a_job_given_a_checkpoint_carries_on_from_the_jobs_own_newest_state(tmp_path, monkeypatch,
                                                                                          no_ranks):
    """The requeue runs the same command line: its --ckpt_path, read again, undid the job's training (a fork into
    --run_name NEW), or was refused as an earlier checkpoint of the run (a resume from a same-step copy)."""
    runs = tmp_path / "runs"
    a = a_run(runs, "a", started=100.0, trained=True, checkpoint=False)
    (a / "checkpoints").mkdir()
    torch.save({"global_step": 30}, a / "checkpoints" / "best.ckpt")
    torch.save({"global_step": 60}, a / "checkpoints" / "last.ckpt")
    monkeypatch.setenv("SLURM_JOB_ID", "77")

    def launch(ckpt_path, run_name=None, restarts="0"):
        if restarts is None:  # a job's first launch, where SLURM sets no restart count
            monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
        else:
            monkeypatch.setenv("SLURM_RESTART_COUNT", restarts)
        config = run_config(runs, ckpt_path=str(ckpt_path), run_name=run_name)
        return run_folder.fit_folder(config, runs, DARKNET), config.ckpt_path

    # the fork, first launch (its folder made by prepare_run, as a_run here), then its requeues
    assert launch(a / "checkpoints" / "best.ckpt", "new") == (runs / "new", str(a / "checkpoints" / "best.ckpt"))
    fork = a_run(runs, "new", started=200.0, trained=True, checkpoint=False)
    assert launch(a / "checkpoints" / "best.ckpt", "new", "1") == (fork, str(a / "checkpoints" / "best.ckpt"))
    (fork / "checkpoints").mkdir()  # saved nothing yet: from the given checkpoint again; saved: from its own
    torch.save({"global_step": 40}, fork / "checkpoints" / "last.ckpt")
    assert launch(a / "checkpoints" / "best.ckpt", "new", "1") == (fork, str(fork / "checkpoints" / "last.ckpt"))
    torch.save({"global_step": 45}, fork / "hpc_ckpt_1.ckpt")  # Lightning's, on SLURM's time-limit signal: newer
    assert launch(a / "checkpoints" / "best.ckpt", "new", "1") == (fork, str(fork / "hpc_ckpt_1.ckpt"))
    # a resume in place from a same-step copy, then the run trains on, then the job is requeued
    torch.save({"global_step": 60}, a / "checkpoints" / "epoch9.ckpt")
    assert launch(a / "checkpoints" / "epoch9.ckpt") == (a, str(a / "checkpoints" / "epoch9.ckpt"))
    torch.save({"global_step": 90}, a / "checkpoints" / "last.ckpt")
    assert launch(a / "checkpoints" / "epoch9.ckpt", restarts="1") == (a, str(a / "checkpoints" / "last.ckpt"))
    for restarts in ("0", None):  # not a requeue: refused
        with pytest.raises(train.UserError, match="an earlier checkpoint of run a"):
            launch(a / "checkpoints" / "epoch9.ckpt", restarts=restarts)


@pytest.mark.parametrize("dangling", [False, True])
def test_a_requeue_after_a_crash_in_the_relink_of_last_ckpt_carries_on_from_the_runs_save(tmp_path, monkeypatch,
                                                                                         no_ranks, dangling):
    """The job's newest save is epoch=001.ckpt: the requeue trained from scratch in the folder instead, and its own
    epoch=001.ckpt replaced the one two epochs had made."""
    runs = tmp_path / "runs"
    run_dir = a_run_killed_as_last_ckpt_was_relinked(runs, "slurm-77")
    if dangling:
        (run_dir / "checkpoints" / "last.ckpt").symlink_to("epoch=000.ckpt")
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    config = run_config(runs)
    config.model.class_path = CYCLEGAN
    assert run_folder.fit_folder(config, runs, CYCLEGAN) == run_dir
    assert config.ckpt_path == str(run_dir / "checkpoints" / "epoch=001.ckpt")


@pytest.mark.parametrize("restarts, requeued", [(None, False), ("0", False), ("1", True)])
def test_a_named_run_in_a_slurm_job_is_taken_over_only_by_a_requeue(tmp_path, monkeypatch, no_ranks, restarts,
                                                                     requeued):
    runs = tmp_path / "runs"
    run_dir = a_run(runs, "mine", started=100.0, trained=True)
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    if restarts is not None:
        monkeypatch.setenv("SLURM_RESTART_COUNT", restarts)
    config = run_config(runs, run_name="mine")
    if requeued:
        assert run_folder.fit_folder(config, runs, DARKNET) == run_dir
        assert config.ckpt_path == str(run_dir / "checkpoints" / "last.ckpt")
    else:
        with pytest.raises(train.UserError, match="mine exists already"):
            run_folder.fit_folder(config, runs, DARKNET)


@pytest.mark.parametrize("restarts", [None, "0"])
def test_a_second_training_in_one_slurm_job_does_not_take_over_the_first(tmp_path, monkeypatch, no_ranks, restarts):
    """Two train.py in one sbatch script (a sweep) or salloc shell: both chose slurm-<job id>, and the second resumed
    the first (its other --model.lr trained nothing: "Nothing left to train", exit status 0). Only a requeue, which
    SLURM counts in SLURM_RESTART_COUNT, carries on there; a training of the job that stopped before it trained may
    retry there."""
    runs = tmp_path / "runs"
    run_dir = a_run(runs, "slurm-77", started=100.0, trained=True)
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    if restarts is not None:
        monkeypatch.setenv("SLURM_RESTART_COUNT", restarts)
    config = run_config(runs)
    with pytest.raises(train.UserError, match=r"slurm-77 holds an earlier training of SLURM job 77, and this is no "
                                              r"requeue .* its own --run_name, or resume that run with --run_name "
                                              r"slurm-77 --ckpt_path last$"):
        run_folder.fit_folder(config, runs, DARKNET)
    assert config.ckpt_path is None  # nothing resumed
    monkeypatch.setenv("SLURM_PROCID", "1")  # the job's other tasks follow task 0 into the folder it made
    assert run_folder.fit_folder(run_config(runs), runs, DARKNET) == run_dir
    monkeypatch.delenv("SLURM_PROCID")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")  # the requeue carries on there
    config = run_config(runs)
    assert run_folder.fit_folder(config, runs, DARKNET) == run_dir
    assert config.ckpt_path == str(run_dir / "checkpoints" / "last.ckpt")
    stopped = a_run(runs, "slurm-78", started=100.0, trained=False, checkpoint=False)
    monkeypatch.setenv("SLURM_JOB_ID", "78")
    monkeypatch.delenv("SLURM_RESTART_COUNT")
    assert run_folder.fit_folder(run_config(runs), runs, DARKNET) == stopped  # stopped before training: retried there


def test_a_second_slurm_task_follows_task_0_into_the_folder_it_made(tmp_path, monkeypatch, no_ranks):
    # a two-task job branching run "mine" from another run's checkpoint: task 0 made mine/run.json; task 1 (no
    # LOCAL_RANK: SLURM started it, not Lightning) takes the folder, task 0 decided
    runs = tmp_path / "runs"
    other = a_run(runs, "other", started=100.0)
    mine = a_run(runs, "mine", started=200.0, trained=False, checkpoint=False)
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_PROCID", "1")
    config = run_config(runs, ckpt_path=str(other / "checkpoints" / "last.ckpt"), run_name="mine")
    assert run_folder.fit_folder(config, runs, DARKNET) == mine


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
    write_json(tmp_path / "chosen-by-rank-0" / run_checkpoint.RUN_FILE,
               {"model": "lightning_modules.DarknetClassifier"})
    fit = Namespace(run_name=None, ckpt_path=None)
    assert run_folder.fit_folder(fit, tmp_path, "lightning_modules.DarknetClassifier") == tmp_path / "chosen-by-rank-0"

