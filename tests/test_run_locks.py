"""A run folder's lock (callbacks/run_lifecycle.py): held while a run trains there, a second process refused, forked
children let go of it, a requeue waits out a stale one."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT
from runs import job

import train
from callbacks import run_lifecycle

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets: threads only add contention


def test_a_run_that_made_a_folder_another_process_locked_first_leaves_it_alone(tiny_cifar, tmp_path, monkeypatch):
    """Two jobs given the same new --run_name: one makes the folder, the other takes its lock first and trains there;
    the first is refused by the lock and removes nothing (it removed the other's folder, lock and run.json)."""
    import fcntl
    runs = tmp_path / "runs"
    hold = run_lifecycle.hold_run_lock
    other = []

    def the_other_job_locks_first(run_dir):
        other.append(open(run_dir / ".lock", "a+"))
        fcntl.flock(other[0], fcntl.LOCK_EX | fcntl.LOCK_NB)
        (run_dir / "run.json").write_text('{"trained": true}')
        hold(run_dir)
    monkeypatch.setattr(run_lifecycle, "hold_run_lock", the_other_job_locks_first)
    try:
        with pytest.raises(train.UserError, match="is being trained by another process"):
            train.main(job(tiny_cifar, runs, "--trainer.logger", "false", "--run_name", "both"))
    finally:
        other[0].close()
    assert sorted(p.name for p in (runs / "both").iterdir()) == [".lock", "run.json"]


def test_a_refused_run_removes_its_folder_under_its_lock(tiny_cifar, tmp_path, monkeypatch):
    """A retry under the same name in another process meanwhile is refused by the lock, not let train in a folder
    being removed (the lock was let go first)."""
    import fcntl
    runs = tmp_path / "runs"
    rmtree, locked = run_lifecycle.shutil.rmtree, []

    def another_process_tries_the_lock(path, *args, **kwargs):
        with open(path / ".lock", "a+") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                locked.append(False)
            except BlockingIOError:
                locked.append(True)
        rmtree(path, *args, **kwargs)
    monkeypatch.setattr(run_lifecycle.shutil, "rmtree", another_process_tries_the_lock)
    with pytest.raises(train.UserError, match="--data.data_dir"):
        train.main(job(tiny_cifar / "absent", runs, "--trainer.logger", "false", "--data.download", "false",
                       "--run_name", "typo"))
    assert locked == [True] and not runs.exists()


def test_a_run_another_process_is_training_is_not_resumed_alongside_it(tiny_cifar, tmp_path):
    """`--ckpt_path last` in a second terminal resumed a run still training: both wrote its last.ckpt, with one W&B id.
    The other process is stood for by the lock it holds (flock locks belong to an open file, so this one works)."""
    import fcntl
    runs = tmp_path / "runs"
    train.main(job(tiny_cifar, runs, "--run_name", "r"))
    assert (runs / "r" / ".lock").read_text().startswith(f"pid {os.getpid()} on ")  # the holder, named for others
    with open(runs / "r" / ".lock", "a+") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        other.seek(0)
        other.truncate()
        other.write("pid 4242 on gpu-node-7\n")
        other.flush()
        # what a process killed mid-save left (AtomicCheckpointIO's temporaries), and files of the user's
        stale = [runs / "r" / "checkpoints" / ".last.ckpt.4242.tmp", runs / "r" / ".results.json.4242.tmp"]
        kept = [runs / "r" / "checkpoints" / ".notes.tmp", runs / "r" / "draft.4242.tmp"]
        for path in stale + kept:
            path.write_bytes(b"x" * 100)
        before = {p: p.read_bytes() for p in (runs / "r").rglob("*") if p.is_file()}
        for extra in (["--ckpt_path", "last"], ["--run_name", "r", "--ckpt_path", "last"]):
            with pytest.raises(train.UserError, match=rf"run {runs / 'r'} is being trained by another process \(pid "
                                                      rf"4242 on gpu-node-7, which holds {runs / 'r' / '.lock'}\); "
                                                      rf"wait for it to end"):
                train.main(job(tiny_cifar, runs, *extra, "--trainer.max_epochs", "2"))
        assert {p: p.read_bytes() for p in (runs / "r").rglob("*") if p.is_file()} == before
    train.main(job(tiny_cifar, runs, "--ckpt_path", "last", "--trainer.max_epochs", "2"))  # the other one ended
    assert json.loads((runs / "r" / "results.json").read_text())["global_step"] == 6
    assert [path.exists() for path in stale + kept] == [False, False, True, True]  # removed once the lock is held


def test_a_run_in_its_first_epoch_elsewhere_is_not_called_stopped(tmp_path):
    """`--ckpt_path last` for a run another process trains, before its first save, said it had stopped before its
    first save and to start a new run: the same training twice. The other process is stood for by its lock."""
    import fcntl

    from callbacks import run_checkpoint
    runs = tmp_path / "runs"
    (runs / "r").mkdir(parents=True)
    model = "lightning_modules.darknet_classifier.DarknetClassifier"
    (runs / "r" / "run.json").write_text(json.dumps({"model": model, "kind": "fit", "started": 1.0, "trained": True}))
    with open(runs / "r" / ".lock", "a+") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        other.write("pid 4242 on gpu-node-7\n")
        other.flush()
        for run_name in ("r", None):
            with pytest.raises(train.UserError, match=rf"run {runs / 'r'} is being trained by another process \(pid "
                                                      rf"4242 on gpu-node-7, which holds {runs / 'r' / '.lock'}\) and "
                                                      rf"has saved no checkpoint yet; wait for it to end or stop it"):
                run_checkpoint.newest_last_checkpoint(runs, model, run_name)
    for run_name in ("r", None):  # it ended: it stopped before its first save
        with pytest.raises(train.UserError, match=r"\(it stopped before its first save\)"):
            run_checkpoint.newest_last_checkpoint(runs, model, run_name)
    run_lifecycle.hold_run_lock(runs / "r")  # this process's own lock (a notebook's earlier run) is no other's
    try:
        with pytest.raises(train.UserError, match=r"\(it stopped before its first save\)"):
            run_checkpoint.newest_last_checkpoint(runs, model, "r")
    finally:
        run_lifecycle.release_run_locks()
    (runs / "r" / ".lock").unlink()  # a run folder of before the locks
    with pytest.raises(train.UserError, match=r"\(it stopped before its first save\)"):
        run_checkpoint.newest_last_checkpoint(runs, model, "r")


def test_a_filesystem_without_locks_is_said(tmp_path, monkeypatch, capsys):
    """On a filesystem whose flock fails (Lustre mounted noflock), nothing refused a second process, silently."""
    import errno
    import fcntl

    def no_locks(*args):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))
    monkeypatch.setattr(fcntl, "flock", no_locks)
    run_lifecycle.hold_run_lock(tmp_path / "r")
    assert capsys.readouterr().err == (f"warning: {tmp_path / 'r' / '.lock'}: this filesystem takes no locks (No "
                                       f"locks available): a second process training this run (another job's "
                                       f"--ckpt_path last) would not be refused, so start one at a time\n")
    assert tmp_path / "r" not in run_lifecycle._held_locks


def test_a_forked_child_of_a_killed_run_does_not_hold_its_lock(tmp_path):
    """The DataLoader workers of a run killed with SIGKILL live on a few seconds: holding the lock's open file too,
    they kept a resume out ('being trained by another process', naming the dead one)."""
    import fcntl
    # the run: a child forked from this process (train imported already; a fresh interpreter cost ~5 s), in a
    # session of its own
    held, tell = os.pipe()
    run = os.fork()
    if run == 0:
        try:
            os.setsid()
            run_lifecycle.hold_run_lock(tmp_path)
            if os.fork() == 0:  # a worker, outliving the run; it says so once fork() has returned here (and the
                os.write(tell, b"work\n")  # after-fork hooks have run), not earlier under load
                time.sleep(60)
                os._exit(0)
            os.write(tell, b"held\n")
            time.sleep(60)
        finally:
            os._exit(0)
    os.close(tell)
    try:
        said = b""
        while len(said) < 10:
            said += os.read(held, 10 - len(said))
        assert sorted(said.split()) == [b"held", b"work"]
        with open(tmp_path / ".lock", "a+") as other:
            with pytest.raises(BlockingIOError):  # the run holds it
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.kill(run, signal.SIGKILL)
            os.waitpid(run, 0)
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free at once, its worker still running
    finally:
        os.close(held)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(run, 0)


def test_a_process_that_holds_a_runs_lock_without_train_releases_it_in_its_forked_children(tmp_path):
    """The after-fork release comes with the locks (callbacks.run_lifecycle), not with train.py: a script that takes a
    run's lock through run_lifecycle alone still has its forked workers let go of it."""
    code = ("import os, sys; from pathlib import Path; from callbacks import run_lifecycle\n"
            "run_lifecycle.hold_run_lock(Path(sys.argv[1]))\n"
            "child = os.fork()\n"
            "if child == 0:\n"
            "    os._exit(len(run_lifecycle._held_locks))\n"
            "status = os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])\n"
            "print('train' in sys.modules, len(run_lifecycle._held_locks), status)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.split() == ["False", "1", "0"], out.stderr  # the parent holds it, its child does not


def test_a_requeued_job_waits_out_a_stale_lock_then_goes_on(tmp_path, monkeypatch, capsys, no_ranks):
    """A dead node's lock stays on NFS until its lease ends; SLURM requeues only after the earlier allocation ended,
    so the requeue waits, then goes on with a warning (refused, the job would end for good). A clock of its own:
    each sleep moves it on."""
    import fcntl
    clock, slept = [0.0], []

    def sleep(seconds):
        slept.append(seconds)
        clock[0] += seconds
    monkeypatch.setattr(run_lifecycle.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(run_lifecycle.time, "sleep", sleep)
    monkeypatch.setattr(run_lifecycle, "LOCK_PATIENCE_SECONDS", 10)
    (tmp_path / "r").mkdir()
    with open(tmp_path / "r" / ".lock", "a+") as stale:
        fcntl.flock(stale, fcntl.LOCK_EX | fcntl.LOCK_NB)
        stale.write("pid 99 on dead-node, SLURM job 77\n")
        stale.flush()
        monkeypatch.setenv("SLURM_JOB_ID", "77")  # a job's first launch (no restart count): refused at once
        with pytest.raises(train.UserError, match="being trained by another process"):
            run_lifecycle.hold_run_lock(tmp_path / "r")
        assert slept == []
        monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
        run_lifecycle.hold_run_lock(tmp_path / "r")
    assert slept == [5, 5]  # tried at 0, 5 and 10 s
    assert (f"warning: {tmp_path / 'r' / '.lock'} is still held (pid 99 on dead-node, SLURM job 77) after 10 s; this "
            "requeued job goes on without it") in capsys.readouterr().err
    assert tmp_path / "r" not in run_lifecycle._held_locks
    run_lifecycle.hold_run_lock(tmp_path / "r")  # released: held now, and the holder written for the next one
    assert (tmp_path / "r" / ".lock").read_text() == f"pid {os.getpid()} on {__import__('socket').gethostname()}, " \
                                                     f"SLURM job 77\n"
