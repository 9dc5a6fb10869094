"""SLURM's requeue called directly with fakes: scontrol, RequeueSignal outside the training and on the ranks."""

import os
import signal
import threading
from types import SimpleNamespace

import pytest
from lightning.pytorch.plugins.environments import SLURMEnvironment
from runs import ddp_rank, fake_trainer, last_ckpt

from callbacks import saving

# requeue_slurm_job


@pytest.fixture
def scontrol(tmp_path, monkeypatch):
    """An scontrol on PATH that records its arguments and fails with `status` if a file says so."""
    folder = tmp_path / "bin"
    folder.mkdir()
    script = folder / "scontrol"
    script.write_text(f'#!/bin/sh\necho "$@" >> "{tmp_path}/scontrol.log"\nif [ -f "{tmp_path}/fail" ]; then '
                      f'echo "slurm_requeue error: Access denied" >&2; exit 1; fi\n')
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    for name in ("SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_JOB_ID"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_requeue_asks_scontrol_to_requeue_the_job_or_the_array_task(scontrol, monkeypatch, capsys):
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    saving.requeue_slurm_job("saved last.ckpt at step 5")
    assert (scontrol / "scontrol.log").read_text() == "requeue 4242\n"
    err = capsys.readouterr().err
    assert "SLURM's time-limit signal: saved last.ckpt at step 5; requeueing job 4242" in err and "warning" not in err
    monkeypatch.setenv("SLURM_JOB_ID", "4250")  # an array task's own id; scontrol takes the array's and the index
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "4200")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "7")
    saving.requeue_slurm_job("saved")
    assert (scontrol / "scontrol.log").read_text().splitlines()[-1] == "requeue 4200_7"


def test_a_failed_requeue_is_a_warning_naming_the_failure_and_the_resume(scontrol, monkeypatch, capsys):
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    (scontrol / "fail").touch()
    saving.requeue_slurm_job("saved")
    err = capsys.readouterr().err
    assert ("warning: `scontrol requeue 4242` failed (slurm_requeue error: Access denied); training goes on until the "
            "time limit, and --ckpt_path last resumes it") in err
    monkeypatch.setenv("PATH", str(scontrol / "empty"))  # no scontrol on this node
    saving.requeue_slurm_job("saved")
    err = capsys.readouterr().err
    assert "warning: `scontrol requeue 4242` failed (" in err and "scontrol" in err.split("failed (")[1]


# RequeueSignal: SLURM's signal outside the training


@pytest.fixture
def slurm_job(monkeypatch):
    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("SLURM_JOB_NAME", "dl2-darknet")
    for name in ("SLURM_PROCID", "LOCAL_RANK", "RANK", "NODE_RANK"):
        monkeypatch.delenv(name, raising=False)
    requeued = []
    monkeypatch.setattr(saving, "requeue_slurm_job", lambda why: requeued.append(why) or True)
    return requeued


def slurm_trainer(auto_requeue=True, requeue_signal=signal.SIGUSR1, **settings):
    environment = SLURMEnvironment(auto_requeue=auto_requeue, requeue_signal=requeue_signal)
    return fake_trainer(_accelerator_connector=SimpleNamespace(cluster_environment=environment), **settings)


def test_a_requeue_signal_before_the_trainer_is_requeued_once_the_trainer_says_auto_requeue(slurm_job, handlers):
    before = signal.getsignal(signal.SIGUSR1)
    handler = saving.RequeueSignal.install()
    assert signal.getsignal(signal.SIGUSR1) is handler  # from the start: its default action ended the process
    handler(signal.SIGUSR1, None)
    assert slurm_job == []  # the command line is read: auto-requeue may be off
    handler.follow(slurm_trainer(world_size=2, _signal_connector=SimpleNamespace(_original_handlers={})))
    assert slurm_job == ["no training in progress, nothing left to save"]
    handler(signal.SIGUSR1, None)  # a second signal: requeued already
    assert len(slurm_job) == 1
    handler.uninstall()
    assert signal.getsignal(signal.SIGUSR1) is before


@pytest.mark.parametrize("auto_requeue", [True, False])
def test_the_requeue_signal_follows_the_trainers_slurm_environment(auto_requeue, slurm_job, handlers):
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGUSR1, signal.SIGUSR2)}
    handler = saving.RequeueSignal.install()
    handler.follow(slurm_trainer(auto_requeue, signal.SIGUSR2))
    assert signal.getsignal(signal.SIGUSR1) is before[signal.SIGUSR1]
    assert signal.getsignal(signal.SIGUSR2) is (handler if auto_requeue else before[signal.SIGUSR2])
    handler.uninstall()
    assert signal.getsignal(signal.SIGUSR2) is before[signal.SIGUSR2]


def test_one_process_inside_lightnings_run_gets_lightnings_handler(slurm_job, handlers):
    lightning = []
    connector = SimpleNamespace(_original_handlers={signal.SIGUSR1: signal.SIG_DFL},
                                _slurm_sigusr_handler_fn=lambda signum, frame: lightning.append(signum))
    handler = saving.RequeueSignal.install()
    handler.follow(slurm_trainer(_signal_connector=connector))
    handler(signal.SIGUSR1, None)  # between Lightning's register_signal_handlers and its teardown: its hpc_ckpt save
    assert lightning == [signal.SIGUSR1] and slurm_job == [] and handler.lightning_requeued  # the stop line says so
    connector._original_handlers = {}  # outside it (setup, data preparation): a requeue, nothing to save
    handler(signal.SIGUSR1, None)
    assert lightning == [signal.SIGUSR1] and slurm_job == ["no training in progress, nothing left to save"]
    handler.uninstall()


def first_batch(monkeypatch, handler, rank: int, tmp_path):
    """A DDP rank's SaveOnStop through its first training batch, with `handler` as train.py's RequeueSignal."""
    monkeypatch.setattr(saving, "requeue_signal", handler)
    trainer, requeued = ddp_rank(monkeypatch, rank, (0, 0), _accelerator_connector=SimpleNamespace(
        cluster_environment=SLURMEnvironment(auto_requeue=True, requeue_signal=signal.SIGUSR1)))
    stop = saving.SaveOnStop(last_ckpt(tmp_path))
    stop.on_fit_start(trainer, None)
    stop.on_train_start(trainer, None)
    stop.on_train_batch_end(trainer, None, None, None, 0)
    return trainer, requeued


def test_rank_1_notes_the_signal_and_a_signal_before_the_training_is_saved_after_its_first_batch(
        slurm_job, monkeypatch, handlers, tmp_path):
    monkeypatch.setenv("SLURM_PROCID", "1")
    handler = saving.RequeueSignal.install()
    handler.follow(slurm_trainer(world_size=2, _signal_connector=SimpleNamespace(_original_handlers={})))
    handler(signal.SIGUSR1, None)
    assert slurm_job == [] and handler.noted  # rank 0 requeues on its own signal
    trainer, requeued = first_batch(monkeypatch, handler, 1, tmp_path)
    assert trainer.saved == [(last_ckpt(tmp_path), {"weights_only": False})]  # every rank: the save is collective
    handler.uninstall()


def test_a_requeue_signal_in_the_fits_last_validation_is_requeued_at_the_fits_end(slurm_job, monkeypatch, handlers,
                                                                                  tmp_path):
    handler = saving.RequeueSignal.install()
    handler.follow(slurm_trainer(world_size=2, _signal_connector=SimpleNamespace(_original_handlers={})))
    monkeypatch.setattr(saving, "requeue_signal", handler)
    stop = saving.SaveOnStop(last_ckpt(tmp_path))
    stop.requeue = True  # noted after the last batch's agreement: no training batch left to save and requeue after
    stop.on_fit_end(fake_trainer(world_size=2), None)
    assert slurm_job == ["no training in progress, nothing left to save"]
    handler.uninstall()


def test_no_requeue_handler_outside_a_slurm_job_or_the_main_thread(monkeypatch, handlers):
    """SLURM sends the requeue signal to a job's tasks only: elsewhere SIGUSR1 keeps its own action (a user's tool may
    use it), and a thread other than the main one cannot set a handler at all (Python's signal.signal raises)."""
    for name in ("SLURM_NTASKS", "SLURM_JOB_NAME"):
        monkeypatch.delenv(name, raising=False)
    before = signal.getsignal(signal.SIGUSR1)
    assert saving.RequeueSignal.install() is None
    assert signal.getsignal(signal.SIGUSR1) is before
    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("SLURM_JOB_NAME", "dl2-darknet")
    installed = []
    thread = threading.Thread(target=lambda: installed.append(saving.RequeueSignal.install()))
    thread.start()
    thread.join()
    assert installed == [None] and signal.getsignal(signal.SIGUSR1) is before


def test_a_requeue_handler_that_got_no_signal_leaves_the_training_alone(slurm_job, monkeypatch, handlers, tmp_path):
    """No SLURM signal before the training: the ranks' first batch saves nothing and nobody requeues."""
    handler = saving.RequeueSignal.install()
    handler.follow(slurm_trainer(world_size=2, _signal_connector=SimpleNamespace(_original_handlers={})))
    trainer, requeued = first_batch(monkeypatch, handler, 0, tmp_path)
    assert trainer.saved == [] and requeued == [] and slurm_job == []
    handler.uninstall()

