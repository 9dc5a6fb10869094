"""Nothing already written is lost, checked on train.py's hooks called directly with small fakes (milliseconds each):
a stop signal's save and exit status, DDP's agreement on it, SLURM's requeue, the resume's reading of a stop inside
an epoch, the checkpoint checks before a fit, results.json's epochs, the test on the weights in memory."""

import logging
import os
import re
import signal
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from jsonargparse import Namespace
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

import train
from callbacks import MaxStepsResume, RerunStoppedValidation, checkpoints, saving
from lightning_modules.export import EXPORT_KEY

FITTING, TESTING = TrainerFn.FITTING, TrainerFn.TESTING


def fake_trainer(**settings):
    """What the hooks read of a Trainer: one process, fitting, past the sanity check; saves are recorded."""
    saved = []
    trainer = SimpleNamespace(world_size=1, global_rank=0, is_global_zero=True, fast_dev_run=0, sanity_checking=False,
                              global_step=5, state=SimpleNamespace(fn=FITTING), saved=saved,
                              save_checkpoint=lambda path, **kwargs: saved.append((path, kwargs)),
                              _signal_connector=SimpleNamespace(received_sigterm=False))
    for name, value in settings.items():
        setattr(trainer, name, value)
    return trainer


@pytest.fixture
def handlers():
    """SIGINT, SIGTERM and SIGUSR1's handlers put back after the test, whatever it installed."""
    kept = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}
    yield
    for signum, handler in kept.items():
        signal.signal(signum, handler)
    saving.SIGNAL_LOG.removeFilter(saving.not_a_forwarded_sigterm)


@pytest.fixture
def sent(monkeypatch):
    """The signals the code sends itself (os.kill), recorded instead of sent."""
    signals = []
    monkeypatch.setattr(os, "kill", lambda pid, signum: signals.append((pid, signum)))
    return signals


def last_ckpt(tmp_path) -> Path:
    return tmp_path / "runs" / "my-run" / "checkpoints" / "last.ckpt"


# save_if, saved_step


def test_save_if_saves_the_whole_state_when_due_and_never_in_a_fast_dev_run(tmp_path):
    trainer, path = fake_trainer(), tmp_path / "last.ckpt"
    assert saving.save_if(trainer, path, False) is False and trainer.saved == []
    assert saving.save_if(trainer, path, True) is True
    assert trainer.saved == [(path, {"weights_only": False})]  # optimizers and loops too: a resume needs them
    smoke = fake_trainer(fast_dev_run=1)
    assert saving.save_if(smoke, path, True) is True and smoke.saved == []  # due on every rank, but nothing kept


def test_saved_step_reads_the_checkpoints_step_and_none_without_a_whole_checkpoint(tmp_path):
    path = tmp_path / "last.ckpt"
    assert saving.saved_step(path) is None  # none yet
    torch.save({"state_dict": {}, "global_step": 7}, path)
    assert saving.saved_step(path) == 7
    torch.save({"state_dict": {}, "global_step": 0}, path)
    assert saving.saved_step(path) == 0  # step 0 is a step, not "none"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # torn
    assert saving.saved_step(path) is None
    torch.save({"global_step": 3}, path)  # not a Lightning checkpoint
    assert saving.saved_step(path) is None


# fit_progress, weights_in_memory


def progress_of(batches: int, per_epoch) -> dict:
    loop = SimpleNamespace(epoch_loop=SimpleNamespace(batch_progress=SimpleNamespace(
        total=SimpleNamespace(completed=batches))))
    return train.fit_progress(SimpleNamespace(fit_loop=loop, num_training_batches=per_epoch))


def test_fit_progress_counts_epochs_as_batches_over_batches_per_epoch():
    # 7 batches of epochs of 3: two epochs and a third, 2.3333 to four places
    assert progress_of(7, 3) == {"epochs": 2.3333, "epochs_completed": 2, "batches": 7}
    assert progress_of(6, 3) == {"epochs": 2.0, "epochs_completed": 2, "batches": 6}
    assert progress_of(2, 3) == {"epochs": 0.6667, "epochs_completed": 0, "batches": 2}
    assert progress_of(1, 8) == {"epochs": 0.125, "epochs_completed": 0, "batches": 1}  # 4 places, not 2
    assert progress_of(4, 1) == {"epochs": 4.0, "epochs_completed": 4, "batches": 4}  # epochs of one batch
    # no epochs to count: an endless loader, or none of its batches trained
    for per_epoch in (float("inf"), 0):
        assert progress_of(4, per_epoch) == {"epochs": None, "epochs_completed": None, "batches": 4}


def test_the_test_after_the_fit_sees_no_hpc_checkpoint_and_lightning_sees_it_again_after(tmp_path):
    hpc = tmp_path / "hpc_ckpt_2.ckpt"  # Lightning's save on SLURM's signal, older than the weights just trained
    hpc.write_bytes(b"")
    trainer = Trainer(default_root_dir=tmp_path, logger=False, enable_progress_bar=False)
    connector = trainer._checkpoint_connector
    assert connector._hpc_resume_path == str(hpc)
    with train.weights_in_memory(trainer):
        assert connector._hpc_resume_path is None
    assert connector._hpc_resume_path == str(hpc)
    with pytest.raises(RuntimeError), train.weights_in_memory(trainer):  # put back after a failed test too
        raise RuntimeError
    assert connector._hpc_resume_path == str(hpc)
    assert Trainer(default_root_dir=tmp_path, logger=False)._checkpoint_connector._hpc_resume_path == str(hpc)


# the checkpoint checks


def test_an_exported_file_is_refused_as_a_fits_checkpoint_naming_init_from(tmp_path):
    path = str(tmp_path / "g.ckpt")
    with pytest.raises(train.UserError) as refused:
        checkpoints.refuse_exported_resume({"state_dict": {}, EXPORT_KEY: {"left_out": []}}, path)
    assert "exported weights file" in str(refused.value) and f"--init_from {path}" in str(refused.value)
    checkpoints.refuse_exported_resume({"state_dict": {}, "global_step": 3}, path)  # a training checkpoint: resumed


# SaveOnStop


def test_a_stop_saves_last_ckpt_and_exits_130_for_ctrl_c_and_143_for_sigterm(tmp_path, capsys, handlers):
    path = last_ckpt(tmp_path)
    for by, status in ((None, 143), ("Ctrl-C", 130)):
        stop, trainer, exception = saving.SaveOnStop(path), fake_trainer(global_step=5), SIGTERMException()
        stop.signal = by
        stop.on_exception(trainer, None, exception)
        assert exception.code == status and trainer.saved == [(path, {"weights_only": False})]
        assert (f"Stopped by {by or 'SIGTERM'} at step 5; saved {path}; resume with --ckpt_path last --run_name "
                f"my-run") in capsys.readouterr().err
    stop, trainer, exception = saving.SaveOnStop(path), fake_trainer(is_global_zero=False), SIGTERMException()
    stop.on_exception(trainer, None, exception)  # every rank saves (a collective), rank 0 alone says so
    assert exception.code == 143 and len(trainer.saved) == 1 and capsys.readouterr().err == ""


@pytest.mark.parametrize("case", ["another exception", "in the test", "in the sanity check"])
def test_a_stop_outside_the_fits_training_saves_nothing(case, tmp_path, handlers):
    stop, exception = saving.SaveOnStop(last_ckpt(tmp_path)), SIGTERMException()
    trainer = fake_trainer()
    if case == "another exception":
        exception = RuntimeError("a bug")
    elif case == "in the test":
        trainer.state.fn = TESTING  # ctrl_c_stops_the_test's, or Lightning's 143 as it is
    else:
        trainer.sanity_checking = True
    stop.on_exception(trainer, None, exception)
    assert trainer.saved == []
    assert getattr(exception, "code", None) == (143 if case == "in the sanity check" else None)


def test_ctrl_c_is_sent_on_as_sigterm_once_and_a_second_one_stops_at_once(tmp_path, capsys, handlers, sent):
    before = signal.getsignal(signal.SIGINT)
    stop, trainer = saving.SaveOnStop(last_ckpt(tmp_path)), fake_trainer()
    stop.on_fit_start(trainer, None)
    assert signal.getsignal(signal.SIGINT) == stop._on_sigint
    signal.getsignal(signal.SIGINT)(signal.SIGINT, None)
    assert sent == [(os.getpid(), signal.SIGTERM)] and stop.signal == "Ctrl-C"
    assert signal.getsignal(signal.SIGINT) is before  # the next Ctrl-C is the one before the fit's: at once
    assert "Ctrl-C: stopping after this batch and saving last.ckpt (Ctrl-C again" in capsys.readouterr().err
    record = logging.LogRecord(saving.SIGNAL_LOG.name, logging.INFO, "", 0, "Received SIGTERM: 15", None, None)
    assert not saving.SIGNAL_LOG.filter(record)  # the SIGTERM it sent is not reported as a user's
    exception = SIGTERMException()
    stop.on_exception(trainer, None, exception)
    assert exception.code == 130 and saving.SIGNAL_LOG.filter(record)  # a real SIGTERM is reported again


def test_a_fit_that_ends_after_a_ctrl_c_reports_a_later_sigterm(tmp_path, handlers, sent):
    """A Ctrl-C after Lightning's last SIGTERM check (at the last epoch's end; in on_train_end's saves, say): the fit
    ends as usual (on_fit_end, no exception). The filter that hid the SIGTERM it sent stayed on, hiding a real
    SIGTERM's line for the rest of the process (a notebook's next fit)."""
    stop, trainer = saving.SaveOnStop(last_ckpt(tmp_path)), fake_trainer()
    stop.on_fit_start(trainer, None)
    stop._on_sigint(signal.SIGINT, None)
    record = logging.LogRecord(saving.SIGNAL_LOG.name, logging.INFO, "", 0, "Received SIGTERM: 15", None, None)
    assert not saving.SIGNAL_LOG.filter(record)
    stop.on_fit_end(trainer, None)
    assert saving.SIGNAL_LOG.filter(record)


def test_ctrl_c_in_the_sanity_check_promises_no_save(tmp_path, capsys, handlers, sent):
    stop = saving.SaveOnStop(last_ckpt(tmp_path))
    stop.on_fit_start(fake_trainer(sanity_checking=True), None)
    stop._on_sigint(signal.SIGINT, None)
    assert sent == [(os.getpid(), signal.SIGTERM)]
    err = capsys.readouterr().err
    assert "Ctrl-C: stopping after this batch (Ctrl-C again" in err and "saving" not in err


def test_a_ctrl_c_after_the_stop_goes_to_the_handler_before_the_fit(tmp_path, handlers, sent):
    """Lightning's teardown after an exception puts back the handler it found (SaveOnStop's): a Ctrl-C then (W&B's
    upload) goes to the one before the fit; a next fit in the process takes Ctrl-C again and keeps that one."""
    outer = []
    signal.signal(signal.SIGINT, lambda signum, frame: outer.append(signum))
    first = signal.getsignal(signal.SIGINT)
    stop, trainer = saving.SaveOnStop(last_ckpt(tmp_path)), fake_trainer()
    stop.on_fit_start(trainer, None)
    stop.on_exception(trainer, None, SIGTERMException())
    assert signal.getsignal(signal.SIGINT) is first
    signal.signal(signal.SIGINT, stop._on_sigint)  # Lightning's teardown
    stop._on_sigint(signal.SIGINT, None)
    assert outer == [signal.SIGINT] and sent == [] and signal.getsignal(signal.SIGINT) is first
    signal.signal(signal.SIGINT, stop._on_sigint)
    stop.on_fit_start(trainer, None)  # the next fit in this process
    assert signal.getsignal(signal.SIGINT) == stop._on_sigint and stop._previous is first
    stop.on_fit_end(trainer, None)
    assert signal.getsignal(signal.SIGINT) is first
    # before the fit Python's default action (SIG_DFL): the Ctrl-C is sent again, to that
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    stop.on_fit_start(trainer, None)
    stop.on_exception(trainer, None, SIGTERMException())
    signal.signal(signal.SIGINT, stop._on_sigint)
    stop._on_sigint(signal.SIGINT, None)
    assert sent == [(os.getpid(), signal.SIGINT)] and signal.getsignal(signal.SIGINT) is signal.SIG_DFL


def test_ctrl_c_is_taken_when_the_handler_before_the_fit_was_not_pythons(tmp_path, capsys, handlers, sent,
                                                                        monkeypatch):
    """signal.signal returns None for a handler installed outside Python (an embedding program's): the fit's Ctrl-C
    still stops it with a save."""
    real = signal.signal

    def outside_pythons(signum, handler):
        previous = real(signum, handler)
        return None if signum == signal.SIGINT and previous is before else previous

    before = signal.getsignal(signal.SIGINT)
    monkeypatch.setattr(signal, "signal", outside_pythons)
    stop = saving.SaveOnStop(last_ckpt(tmp_path))
    stop.on_fit_start(fake_trainer(), None)
    stop._on_sigint(signal.SIGINT, None)
    assert sent == [(os.getpid(), signal.SIGTERM)] and stop.signal == "Ctrl-C"
    assert "Ctrl-C: stopping after this batch and saving last.ckpt" in capsys.readouterr().err


def test_each_fit_starts_with_no_stop_and_ranks_other_than_0_leave_ctrl_c_to_rank_0(tmp_path, handlers):
    stop = saving.SaveOnStop(last_ckpt(tmp_path))
    stop.signal, stop.stop, stop.requeue, stop.requeued, stop.saved_in_validation = "Ctrl-C", True, True, True, True
    trainer = fake_trainer()
    stop.on_fit_start(trainer, None)
    assert (stop.signal, stop.stop, stop.requeue, stop.requeued, stop.saved_in_validation) == (None, *[False] * 4)
    assert stop.trainer is trainer
    stop.on_fit_end(trainer, None)
    before = signal.getsignal(signal.SIGINT)
    other = saving.SaveOnStop(last_ckpt(tmp_path))
    other.on_fit_start(fake_trainer(world_size=2, global_rank=1, is_global_zero=False), None)
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    other.on_fit_end(trainer, None)
    assert signal.getsignal(signal.SIGINT) is before


@pytest.mark.parametrize("world_size, auto_requeue", [(2, True), (2, False), (1, True)])
def test_under_ddp_sigterm_and_slurms_signal_are_noted_for_the_ranks_agreement(world_size, auto_requeue, tmp_path,
                                                                               handlers):
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGUSR1)}
    environment = SLURMEnvironment(auto_requeue=auto_requeue, requeue_signal=signal.SIGUSR1)
    trainer = fake_trainer(world_size=world_size,
                           _accelerator_connector=SimpleNamespace(cluster_environment=environment))
    stop = saving.SaveOnStop(last_ckpt(tmp_path))
    stop.on_fit_start(trainer, None)
    stop.on_train_start(trainer, None)
    ddp = world_size > 1
    assert (signal.getsignal(signal.SIGTERM) == stop._on_sigterm) == ddp
    assert (signal.getsignal(signal.SIGUSR1) == stop._on_requeue_signal) == (ddp and auto_requeue)
    if not ddp:
        assert signal.getsignal(signal.SIGTERM) is before[signal.SIGTERM]
    if not (ddp and auto_requeue):
        assert signal.getsignal(signal.SIGUSR1) is before[signal.SIGUSR1]


def ddp_rank(monkeypatch, rank: int, others: tuple[int, int], **settings):
    """A fake rank of a 2-process job whose other rank's (stop, requeue) flags are `others`."""
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)

    def all_reduce(tensor, op):
        assert op == torch.distributed.ReduceOp.MAX
        tensor.copy_(torch.maximum(tensor, torch.tensor(others)))

    monkeypatch.setattr(torch.distributed, "all_reduce", all_reduce)
    requeued = []
    monkeypatch.setattr(saving, "requeue_slurm_job", requeued.append)
    trainer = fake_trainer(world_size=2, global_rank=rank, is_global_zero=rank == 0,
                           strategy=SimpleNamespace(root_device=torch.device("cpu")), **settings)
    return trainer, requeued


@pytest.mark.parametrize("rank", [0, 1])
def test_a_requeue_signal_on_any_rank_saves_once_on_every_rank_and_rank_0_requeues(rank, monkeypatch, tmp_path):
    path = last_ckpt(tmp_path)
    trainer, requeued = ddp_rank(monkeypatch, rank, (0, 1))  # the other rank got SLURM's signal
    stop = saving.SaveOnStop(path)
    stop.on_train_batch_end(trainer, None, None, None, 0)
    assert trainer.saved == [(path, {"weights_only": False})]
    assert requeued == ([f"saved {path} at step 5"] if rank == 0 else [])
    assert trainer._signal_connector.received_sigterm is False  # a requeue is no stop: training goes on
    stop.requeue = True  # this rank's signal, a moment later: nothing more
    stop.on_train_batch_end(trainer, None, None, None, 1)
    assert len(trainer.saved) == 1 and len(requeued) == (rank == 0)


def test_a_requeue_signal_in_the_sanity_check_saves_nothing(monkeypatch, tmp_path):
    trainer, requeued = ddp_rank(monkeypatch, 0, (0, 1), sanity_checking=True)
    saving.SaveOnStop(last_ckpt(tmp_path)).on_train_batch_end(trainer, None, None, None, 0)
    assert trainer.saved == [] and requeued == []


@pytest.mark.parametrize("mine, others, stops", [(1, 0, True), (0, 1, True), (0, 0, False)])
def test_the_ranks_stop_together_after_a_batch_when_either_noted_a_stop(mine, others, stops, monkeypatch, tmp_path):
    trainer, requeued = ddp_rank(monkeypatch, 1, (others, 0))
    stop = saving.SaveOnStop(last_ckpt(tmp_path))
    stop.stop = bool(mine)
    stop.on_train_batch_end(trainer, None, None, None, 0)
    assert trainer._signal_connector.received_sigterm is stops  # Lightning raises at this batch's end, and saves
    assert trainer.saved == [] and requeued == []


def test_one_process_leaves_the_stop_to_lightnings_signal_connector(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.distributed, "all_reduce", lambda *args, **kwargs: pytest.fail("a collective"))
    for initialized in (True, False):
        monkeypatch.setattr(torch.distributed, "is_initialized", lambda initialized=initialized: initialized)
        for world_size in (1, 2):
            if world_size == 2 and initialized:
                continue
            trainer = fake_trainer(world_size=world_size)
            stop = saving.SaveOnStop(last_ckpt(tmp_path))
            stop.stop = stop.requeue = True
            stop.on_train_batch_end(trainer, None, None, None, 0)
            assert trainer.saved == [] and trainer._signal_connector.received_sigterm is False


def validation_rank(**settings):
    saves = []
    strategy = DDPStrategy()
    strategy.save_checkpoint = lambda checkpoint, path: saves.append((checkpoint, path))
    dump = SimpleNamespace(dump_checkpoint=lambda weights_only: {"global_step": 5, "weights_only": weights_only})
    return fake_trainer(**{"world_size": 2, "strategy": strategy, "_checkpoint_connector": dump, **settings}), saves


def test_a_stop_in_a_ddp_validation_saves_the_whole_state_at_once_on_rank_0_alone(tmp_path, capsys):
    path = last_ckpt(tmp_path)
    trainer, saves = validation_rank()
    stop = saving.SaveOnStop(path)
    stop.on_validation_batch_end(trainer, None, None, None, 0)
    assert saves == []  # no stop yet
    stop.stop = True
    stop.on_validation_batch_end(trainer, None, None, None, 1)
    assert saves == [({"global_step": 5, "weights_only": False}, path)]
    assert f"SIGTERM in the validation: saved {path} at step 5" in capsys.readouterr().err
    stop.on_validation_batch_end(trainer, None, None, None, 2)
    assert len(saves) == 1  # once


@pytest.mark.parametrize("case", ["rank 1", "one process", "validate subcommand", "sanity check", "fast_dev_run",
                                  "sharded strategy"])
def test_a_stop_in_a_validation_is_saved_there_only_by_rank_0_of_a_ddp_fit(case, tmp_path):
    settings = {"rank 1": {"is_global_zero": False, "global_rank": 1}, "one process": {"world_size": 1},
                "validate subcommand": {"state": SimpleNamespace(fn=TrainerFn.VALIDATING)},
                "sanity check": {"sanity_checking": True}, "fast_dev_run": {"fast_dev_run": 1}, "sharded strategy": {}}
    trainer, saves = validation_rank(**settings[case])
    if case == "sharded strategy":  # DeepSpeed's subclasses DDP's and gathers its state collectively: not alone
        sharded = type("ShardedStrategy", (DDPStrategy,), {})()
        sharded.save_checkpoint = trainer.strategy.save_checkpoint
        trainer.strategy = sharded
    stop = saving.SaveOnStop(last_ckpt(tmp_path))
    stop.stop = True
    stop.on_validation_batch_end(trainer, None, None, None, 0)
    assert saves == [] and not stop.saved_in_validation


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


# the resume's reading of progress


def epoch_checkpoint(ready: int, completed: int, batches_completed: int = 2, last: bool = False) -> dict:
    """A checkpoint's fit loop as Lightning saves it: epochs ready/started/processed `ready`, completed `completed`."""
    epochs = {"ready": ready, "started": ready, "processed": ready, "completed": completed}
    batches = {"ready": batches_completed, "started": batches_completed, "processed": batches_completed,
               "completed": batches_completed}
    return {"loops": {"fit_loop": {"epoch_progress": {"total": dict(epochs), "current": dict(epochs)},
                                   "epoch_loop.batch_progress": {"total": dict(batches), "current": dict(batches),
                                                                 "is_last_batch": last}}}}


def epochs_of(checkpoint: dict) -> list[tuple[int, int]]:
    progress = checkpoint["loops"]["fit_loop"]["epoch_progress"]
    return [(progress[kind]["processed"], progress[kind]["completed"]) for kind in ("total", "current")]


def test_a_stop_inside_an_epoch_resumes_as_that_epoch_not_yet_processed():
    resume = MaxStepsResume()
    # max_steps stopped the 3rd epoch (index 2) after its 2nd batch: Lightning counted it processed, not completed
    stopped = epoch_checkpoint(ready=3, completed=2)
    resume.on_load_checkpoint(None, None, stopped)
    assert epochs_of(stopped) == [(2, 2), (2, 2)]
    # saved when training ended (ModelCheckpoint's save_last): that epoch counted completed too
    ended = epoch_checkpoint(ready=3, completed=3)
    resume.on_load_checkpoint(None, None, ended)
    assert epochs_of(ended) == [(2, 2), (2, 2)]
    # the epoch's last batch done (an epoch's end), none of its batches, or counts of neither kind: as saved
    mismatched = epoch_checkpoint(3, 2)
    mismatched["loops"]["fit_loop"]["epoch_progress"]["current"]["ready"] = 4  # the total's and current's differ
    for untouched in (epoch_checkpoint(3, 2, last=True), epoch_checkpoint(3, 2, batches_completed=0),
                      epoch_checkpoint(3, 1), mismatched):
        before = repr(untouched)
        resume.on_load_checkpoint(None, None, untouched)
        assert repr(untouched) == before
    for other in ({}, {"loops": None}, {"loops": {"fit_loop": {}}}, {"state_dict": {}}):  # weights files
        resume.on_load_checkpoint(None, None, other)
    loops = epoch_checkpoint(3, 2)["loops"]["fit_loop"]
    for kept in ("epoch_progress", "epoch_loop.batch_progress"):  # a fit loop that saved one of the two: as saved
        partial = {"loops": {"fit_loop": {kept: loops[kept]}}}
        before = repr(partial)
        resume.on_load_checkpoint(None, None, partial)
        assert repr(partial) == before


def test_the_rerun_validation_evens_the_totals_at_its_end_so_a_later_save_reads_as_after_it():
    rerun = RerunStoppedValidation()
    total = SimpleNamespace(ready=9, started=9, processed=8, completed=8)
    trainer = SimpleNamespace(sanity_checking=False, fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace(
        val_loop=SimpleNamespace(batch_progress=SimpleNamespace(total=total)))))
    rerun.on_validation_end(trainer, None)  # no rerun pending: as Lightning counted
    assert (total.processed, total.completed) == (8, 8)
    rerun.pending = True
    trainer.sanity_checking = True  # the sanity check's validation is not the rerun
    rerun.on_validation_end(trainer, None)
    assert (total.processed, total.completed) == (8, 8) and rerun.pending
    trainer.sanity_checking = False
    rerun.on_validation_end(trainer, None)
    assert (total.ready, total.started, total.processed, total.completed) == (9, 9, 9, 9) and not rerun.pending
    total.started = 15  # the next validation's lag is Lightning's own again
    rerun.on_validation_end(trainer, None)
    assert (total.processed, total.completed) == (9, 9)



# check_checkpoint (before a fit: --ckpt_path and --init_from) and check_checkpoint_class (a native subcommand's)


class Tiny(torch.nn.Module):
    """A net with two weights and a buffer built in setup (empty until then, as the style system's image)."""

    def __init__(self, features: int = 3):
        super().__init__()
        self.layer = torch.nn.Linear(2, features)
        self.register_buffer("built_in_setup", torch.empty(0))


def tiny_checkpoint(path: Path, model: torch.nn.Module, class_path: str | None = "tests.Tiny", **state) -> str:
    weights = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    hyper = {"_class_path": class_path} if class_path else {}
    torch.save({"state_dict": {**weights, **state.pop("weights", {})}, "global_step": 4, "hyper_parameters": hyper,
                **state}, path)
    return str(path)


def test_a_checkpoint_of_the_same_net_is_returned_for_a_resume_and_for_init_from(tmp_path):
    checkpoint = tiny_checkpoint(tmp_path / "last.ckpt", Tiny(), weights={"built_in_setup": torch.ones(5, 5)})
    for for_init in (False, True):  # the buffer built in setup has no shape to compare yet
        assert checkpoints.check_checkpoint(checkpoint, Tiny(), "tiny", for_init=for_init)["global_step"] == 4
    without_class = tiny_checkpoint(tmp_path / "plain.ckpt", Tiny(), class_path=None)  # a checkpoint of plain Lightning
    assert checkpoints.check_checkpoint(without_class, Tiny(), "tiny")["global_step"] == 4


def test_a_checkpoint_of_other_shapes_names_the_weight_and_both_shapes(tmp_path):
    runs = tmp_path / "runs" / "r" / "checkpoints"
    runs.mkdir(parents=True)
    (tmp_path / "runs" / "r" / "config.yaml").write_text("{}\n")  # the run's, as train.py writes it
    # a weight the net lacks first (passed over: its shape is nobody's), then the net's own at another size
    checkpoint = str(runs / "last.ckpt")
    torch.save({"state_dict": {"head.weight": torch.zeros(1), **Tiny(features=5).state_dict()}, "global_step": 4},
               checkpoint)
    with pytest.raises(train.UserError) as refused:
        checkpoints.check_checkpoint(checkpoint, Tiny(features=3), "tiny")
    assert "was trained with other settings (layer.weight: (5, 2) there, (3, 2) here)" in str(refused.value)
    assert f"resume with its config: --config {tmp_path / 'runs' / 'r' / 'config.yaml'} --ckpt_path" in str(
        refused.value)


class TinyWithHyperParameters(LightningModule):
    def __init__(self, features: int = 3, betas: tuple = (0.5, 0.999), name: str = "a b"):
        super().__init__()
        self.save_hyperparameters()
        self.layer = torch.nn.Linear(2, features)


def test_a_checkpoint_outside_a_run_folder_names_the_options_it_was_trained_with_not_a_missing_config(tmp_path):
    """An export (`dl2-export ... --output horse2zebra.ckpt`) or a copied checkpoint has no run folder above it:
    the error named <its folder's parent>/config.yaml, a file that is not there; the saved hyper-parameters that
    differ from this model's are the fix (betas as a list there, a tuple here: the same option)."""
    exported = tmp_path / "exports" / "net.ckpt"
    exported.parent.mkdir()
    saved = {"_class_path": "tests.TinyWithHyperParameters", "features": 5, "betas": [0.5, 0.999], "name": "x y"}
    torch.save({"state_dict": TinyWithHyperParameters(features=5).state_dict(), "global_step": 4,
                "hyper_parameters": saved}, exported)
    for for_init, fix in ((True, "--init_from needs the same network: give the --model options it was trained "
                                 "with (--model.features 5 --model.name 'x y', from its hyper-parameters)"),
                          (False, "resume with the --model options it was trained with (--model.features 5 "
                                  f"--model.name 'x y', from its hyper-parameters) and --ckpt_path {exported}")):
        with pytest.raises(train.UserError) as refused:
            checkpoints.check_checkpoint(str(exported), TinyWithHyperParameters(), "tiny", for_init=for_init)
        assert "was trained with other settings (layer.weight: (5, 2) there, (3, 2) here); " + fix == \
            str(refused.value).split(f"{exported} ", 1)[1]
        assert "config.yaml" not in str(refused.value)
    # Lightning's hpc_ckpt_N.ckpt lies in the run folder itself, beside its config.yaml
    (tmp_path / "exports" / "config.yaml").write_text("{}\n")
    hpc = tmp_path / "exports" / "hpc_ckpt_1.ckpt"
    exported.rename(hpc)
    with pytest.raises(train.UserError) as refused:
        checkpoints.check_checkpoint(str(hpc), TinyWithHyperParameters(), "tiny")
    assert str(refused.value).endswith(f"resume with its config: --config {tmp_path / 'exports' / 'config.yaml'} "
                                       f"--ckpt_path {hpc}")


class TinyWithMapping(LightningModule):
    def __init__(self, features: int = 3, mapping: dict | None = None):
        super().__init__()
        self.save_hyperparameters()
        self.layer = torch.nn.Linear(2, features)


def test_hyper_parameters_json_cannot_write_neither_stop_a_checkpoint_check_nor_its_refusal(tmp_path):
    """A user module's dict with tuple keys (JSON's keys are strings): the fix is worked out for every checkpoint
    checked, so a TypeError there stopped a good checkpoint's resume too."""
    path = tmp_path / "net.ckpt"
    saved = {"features": 5, "mapping": {(1, 2): 4}}
    torch.save({"state_dict": TinyWithMapping(features=5).state_dict(), "global_step": 4,
                "hyper_parameters": saved}, path)
    assert checkpoints.check_checkpoint(str(path), TinyWithMapping(features=5, mapping={(1, 2): 4}), "tiny")[
        "global_step"] == 4
    with pytest.raises(train.UserError) as refused:
        checkpoints.check_checkpoint(str(path), TinyWithMapping(mapping={(1, 2): 3}), "tiny")
    assert str(refused.value).endswith("(--model.features 5 --model.mapping '{(1, 2): 4}', from its "
                                       f"hyper-parameters) and --ckpt_path {path}")


def test_numpy_and_torch_hyper_parameters_are_named_by_value_not_by_type(tmp_path):
    """A user module's hyper-parameters from numpy or torch (np.int64(5) from len(np.unique(...)), a mean tensor):
    the same values as the model's were named as differences (--model.features 5 where features is 5), and a
    tensor's option as the quoted string '"tensor([...])"', which no command line takes."""
    import numpy as np
    path = tmp_path / "net.ckpt"
    saved = {"features": np.int64(5), "mapping": {"mean": np.float32(0.5), "std": torch.tensor([0.25, 0.5])}}
    torch.save({"state_dict": TinyWithMapping(features=5).state_dict(), "global_step": 4,
                "hyper_parameters": saved}, path)
    with pytest.raises(train.UserError) as refused:
        checkpoints.check_checkpoint(str(path), TinyWithMapping(features=3, mapping={"mean": 0.5, "std": [0.25, 0.5]}),
                                     "tiny")
    assert str(refused.value).endswith(f"(--model.features 5, from its hyper-parameters) and --ckpt_path {path}")
    with pytest.raises(train.UserError) as refused:
        checkpoints.check_checkpoint(str(path), TinyWithMapping(features=3, mapping={"mean": 0.5, "std": [1, 1]}),
                                     "tiny")
    assert "--model.mapping '{\"mean\": 0.5, \"std\": [0.25, 0.5]}'" in str(refused.value)


def test_init_from_refuses_weights_missing_or_extra_and_a_resume_leaves_them_to_lightning(tmp_path):
    class Deeper(Tiny):
        def __init__(self):
            super().__init__()
            self.more = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 3))

    checkpoint = tiny_checkpoint(tmp_path / "tiny.ckpt", Tiny(), class_path=None)  # no class to compare
    with pytest.raises(train.UserError) as refused:
        checkpoints.check_checkpoint(checkpoint, Deeper(), "tiny", for_init=True)
    # 4 weights missing (more.0/1 weight/bias), the first two in sorted order named
    assert "holds another network (4 weights missing, e.g. ['more.0.bias', 'more.0.weight']; 0 not ours" in str(
        refused.value)
    extra = tiny_checkpoint(tmp_path / "extra.ckpt", Tiny(), weights={"head.weight": torch.zeros(1)})
    with pytest.raises(train.UserError, match=re.escape("(0 weights missing, e.g. []; 1 not ours, e.g. "
                                                        "['head.weight'])")):
        checkpoints.check_checkpoint(extra, Tiny(), "tiny", for_init=True)
    heads = tiny_checkpoint(tmp_path / "heads.ckpt", Tiny(), weights={f"head{i}.weight": torch.zeros(1)
                                                                        for i in (3, 1, 2)})
    with pytest.raises(train.UserError, match=re.escape("3 not ours, e.g. ['head1.weight', 'head2.weight']); ")):
        checkpoints.check_checkpoint(heads, Tiny(), "tiny", for_init=True)
    for path, model in ((checkpoint, Deeper()), (extra, Tiny())):  # a resume: Lightning's strict load says it
        assert checkpoints.check_checkpoint(path, model, "tiny")["global_step"] == 4


def test_a_checkpoint_of_another_class_names_it_and_the_system_to_use(tmp_path):
    wgan = tiny_checkpoint(tmp_path / "wgan.ckpt", Tiny(), class_path="lightning_modules.wgan.WGAN")
    with pytest.raises(train.UserError, match=re.escape(f"{wgan} is a WGAN checkpoint, this is tiny; use --system "
                                                        "wgan")):
        checkpoints.check_checkpoint(wgan, Tiny(), "tiny")
    other = tiny_checkpoint(tmp_path / "other.ckpt", Tiny(), class_path="elsewhere.Other")
    with pytest.raises(train.UserError, match=re.escape("is a Other checkpoint, this is tiny; train a elsewhere.Other "
                                                        "with the config that wrote it")):
        checkpoints.check_checkpoint(other, Tiny(), "tiny", for_init=True)


def test_a_fit_from_an_exported_file_is_refused_and_init_from_takes_it(tmp_path):
    exported = tiny_checkpoint(tmp_path / "g.ckpt", Tiny(), **{EXPORT_KEY: {"left_out": []}})
    with pytest.raises(train.UserError, match=re.escape(f"start a new run from its weights with --init_from "
                                                        f"{exported}")):
        checkpoints.check_checkpoint(exported, Tiny(), "tiny")
    assert checkpoints.check_checkpoint(exported, Tiny(), "tiny", for_init=True)["global_step"] == 4


def native(ckpt_path, model="lightning_modules.DarknetClassifier"):
    return Namespace(ckpt_path=ckpt_path, model=Namespace(class_path=model) if "." in model else model)


def test_a_native_subcommand_takes_a_checkpoint_of_its_configs_class(tmp_path):
    checkpoints.check_checkpoint_class(native(None), "fit")  # no checkpoint: nothing to read
    darknet = tiny_checkpoint(tmp_path / "d.ckpt", Tiny(), class_path="lightning_modules.darknet_classifier."
                                                                      "DarknetClassifier")
    for kind in ("fit", "validate", "test"):
        checkpoints.check_checkpoint_class(native(darknet), kind)
        checkpoints.check_checkpoint_class(native(darknet, model="DarknetClassifier"), kind)  # a short name
        checkpoints.check_checkpoint_class(native(tiny_checkpoint(tmp_path / "p.ckpt", Tiny(), class_path=None)), kind)
    exported = tiny_checkpoint(tmp_path / "g.ckpt", Tiny(), class_path="lightning_modules.DarknetClassifier",
                               **{EXPORT_KEY: {"left_out": []}})
    for kind in ("validate", "test"):  # its weights are all an evaluation needs
        checkpoints.check_checkpoint_class(native(exported), kind)
    with pytest.raises(train.UserError, match=re.escape(f"--ckpt_path {exported} is an exported weights file")):
        checkpoints.check_checkpoint_class(native(exported), "fit")


def test_a_native_subcommand_refuses_another_class_naming_the_config_to_give(tmp_path):
    folder = tmp_path / "runs" / "r" / "checkpoints"
    folder.mkdir(parents=True)
    cyclegan = tiny_checkpoint(folder / "last.ckpt", Tiny(), class_path="lightning_modules.CycleGAN")
    with pytest.raises(train.UserError, match=re.escape(
            f"--ckpt_path {cyclegan} is a CycleGAN checkpoint, but the config's model is a DarknetClassifier; give "
            "its system's config, --config configs/cyclegan.yaml")):
        checkpoints.check_checkpoint_class(native(cyclegan), "test")
    (tmp_path / "runs" / "r" / "config.yaml").write_text("model: {}\n")  # the run's own config, beside its folder
    with pytest.raises(train.UserError, match=re.escape(f"give its run's config, --config {tmp_path}/runs/r/config.yaml"
                                                        )):
        checkpoints.check_checkpoint_class(native(cyclegan), "validate")
    other = tiny_checkpoint(tmp_path / "o.ckpt", Tiny(), class_path="elsewhere.Other")
    with pytest.raises(train.UserError, match=re.escape("is a Other checkpoint, but the config's model is a "
                                                        "DarknetClassifier; give the config that trained it")):
        checkpoints.check_checkpoint_class(native(other), "fit")


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
    assert lightning == [signal.SIGUSR1] and slurm_job == []
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





# ctrl_c_stops_the_test: the Ctrl-C handler of the test after the fit, rank 0 and the ranks it launched

def ctrl_c_test_handler(tmp_path, trainer):
    """The SIGINT handler ctrl_c_stops_the_test installs, and the context to leave."""
    context = train.ctrl_c_stops_the_test(tmp_path / "r", trainer)
    context.__enter__()
    return signal.getsignal(signal.SIGINT), context


def launched(procs):
    kills = []
    return SimpleNamespace(strategy=SimpleNamespace(launcher=SimpleNamespace(procs=procs, kill=kills.append))), kills


@pytest.mark.parametrize("trainer", ["none", "rank 0"])
def test_ctrl_c_in_the_test_says_it_once_sends_it_on_once_and_exits_130(trainer, tmp_path, capsys, handlers):
    """Rank 0 (or one process): the line saying how to test the saved run, once; Lightning's launcher sends the
    Ctrl-C on to the ranks it started, once; every Ctrl-C raises SIGTERMException(130), 128 + SIGINT (a second one
    while the first unwinds stops rank 0 at once)."""
    kills = []
    if trainer == "rank 0":
        trainer, kills = launched([object()])
        trainer.is_global_zero = True
    else:
        trainer = None
    before = signal.getsignal(signal.SIGINT)
    handler, context = ctrl_c_test_handler(tmp_path, trainer)
    for _ in range(2):
        with pytest.raises(SIGTERMException) as stopped:
            handler(signal.SIGINT, None)
        assert stopped.value.code == 130
        assert kills == ([signal.SIGINT] if trainer is not None else [])  # at the first Ctrl-C
    context.__exit__(None, None, None)
    assert signal.getsignal(signal.SIGINT) is before  # rank 0's own handler back: a Ctrl-C after stops it
    run_dir = tmp_path / "r"
    assert capsys.readouterr().err == (
        "\nCtrl-C: the test stopped; the training is saved. Test it with: python train.py test --config "
        f"{run_dir / 'config.yaml'} --ckpt_path {run_dir / 'checkpoints' / 'last.ckpt'}\n")


def test_ctrl_c_in_the_test_on_another_rank_stops_it_once_silently(tmp_path, capsys, handlers):
    """A rank other than 0 says nothing (rank 0 says it) and sends nothing on (it launched no rank); the Ctrl-C rank
    0 sends on after the terminal's own is not raised again while the first unwinds, nor once the block is left (it
    had come in the rank's atexit callbacks, a KeyboardInterrupt's traceback)."""
    trainer, kills = launched(None)
    trainer.is_global_zero = False
    handler, context = ctrl_c_test_handler(tmp_path, trainer)
    with pytest.raises(SIGTERMException) as stopped:
        handler(signal.SIGINT, None)
    assert stopped.value.code == 130
    assert handler(signal.SIGINT, None) is None
    context.__exit__(None, None, None)
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    assert capsys.readouterr().err == "" and kills == []


def test_a_rank_other_than_0_that_no_ctrl_c_stopped_gets_its_handler_back(tmp_path, handlers):
    trainer, _ = launched(None)
    trainer.is_global_zero = False
    before = signal.getsignal(signal.SIGINT)
    _, context = ctrl_c_test_handler(tmp_path, trainer)
    context.__exit__(None, None, None)
    assert signal.getsignal(signal.SIGINT) is before



def test_a_requeue_handler_that_got_no_signal_leaves_the_training_alone(slurm_job, monkeypatch, handlers, tmp_path):
    """No SLURM signal before the training: the ranks' first batch saves nothing and nobody requeues."""
    handler = saving.RequeueSignal.install()
    handler.follow(slurm_trainer(world_size=2, _signal_connector=SimpleNamespace(_original_handlers={})))
    trainer, requeued = first_batch(monkeypatch, handler, 0, tmp_path)
    assert trainer.saved == [] and requeued == [] and slurm_job == []
    handler.uninstall()


# checkpoint_batches: the step a resumed fit logs its first batch at, against Lightning's own resume

class AccumulatingNet(LightningModule):
    def __init__(self, data_root: Path = Path("data")):  # a Path among the hyper-parameters: no weights-only load
        super().__init__()
        self.save_hyperparameters()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(6, 2)), batch_size=2)


class SaveEachBatch(Callback):
    """A checkpoint at every batch's end hook (as the timed save) and at the epoch's end, of the first epoch."""

    def __init__(self, folder: Path):
        self.folder = folder

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.current_epoch == 0:
            trainer.save_checkpoint(self.folder / f"batch{batch_idx}.ckpt")

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == 0:
            trainer.save_checkpoint(self.folder / "epoch_end.ckpt")


class FirstLoggedStep(Callback):
    step = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.step is None:
            self.step = trainer.fit_loop.epoch_loop._batches_that_stepped  # the step self.log writes at


@pytest.mark.parametrize("accumulate", [1, 2])
def test_checkpoint_batches_is_the_step_lightnings_resume_logs_its_first_batch_at(accumulate, tmp_path):
    """3 batches an epoch, gradients accumulated over 1 or 2: a save in each batch's end hook (before Lightning
    counts the batch) and one at the epoch's end, each resumed by Lightning itself. With 2, the epoch's last batch
    steps the optimizer although 3 is odd (Lightning steps at an epoch's end): its save holds one step less."""
    settings = dict(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                    enable_model_summary=False, accumulate_grad_batches=accumulate, max_epochs=2)
    Trainer(callbacks=[SaveEachBatch(tmp_path)], **settings).fit(AccumulatingNet())
    for name in ("batch0", "batch1", "batch2", "epoch_end"):
        first = FirstLoggedStep()
        Trainer(callbacks=[first], **settings).fit(AccumulatingNet(), ckpt_path=tmp_path / f"{name}.ckpt",
                                                 weights_only=False)
        assert checkpoints.checkpoint_batches(tmp_path / f"{name}.ckpt", accumulate) == first.step, name
    (tmp_path / "torn.ckpt").write_bytes((tmp_path / "batch0.ckpt").read_bytes()[:100])
    torch.save({"state_dict": AccumulatingNet().state_dict()}, tmp_path / "weights.ckpt")
    assert checkpoints.checkpoint_batches(tmp_path / "torn.ckpt") is None
    assert checkpoints.checkpoint_batches(tmp_path / "weights.ckpt") is None
