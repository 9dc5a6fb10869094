"""SaveOnStop called directly with fakes, one process: Ctrl-C's and SIGTERM's save and exit status, the handlers."""

import logging
import os
import signal
from types import SimpleNamespace

import pytest
from lightning.pytorch.utilities.exceptions import SIGTERMException
from runs import TESTING, fake_trainer, last_ckpt

from callbacks import job as train_job
from callbacks import saving


@pytest.fixture
def sent(monkeypatch):
    """The signals the code sends itself (os.kill), recorded instead of sent."""
    signals = []
    monkeypatch.setattr(os, "kill", lambda pid, signum: signals.append((pid, signum)))
    return signals


# SaveOnStop


def test_a_stop_saves_last_ckpt_and_exits_130_for_ctrl_c_and_143_for_sigterm(tmp_path, capsys, handlers, monkeypatch):
    path = last_ckpt(tmp_path)
    for by, status in ((None, 143), ("Ctrl-C", 130)):
        stop, trainer, exception = saving.SaveOnStop(path), fake_trainer(global_step=5), SIGTERMException()
        stop.signal = by
        stop.on_exception(trainer, None, exception)
        assert exception.code == status and trainer.saved == [(path, {"weights_only": False})]
        assert (f"Stopped by {by or 'SIGTERM'} at step 5; saved {path}; resume with --ckpt_path last --run_name "
                f"my-run") in capsys.readouterr().err
    # with the run's config.yaml (every run writes one): the command that resumes with the options the run began
    # with; `--system cyclegan --ckpt_path last --run_name my-run` rebuilt the shipped config's nets, and a run begun
    # with --model.n_blocks 6 then failed to load
    path.parent.parent.mkdir(parents=True, exist_ok=True)
    for config, init_null in (("model: {}\n", ""), ("init_from: old.ckpt\n", " --init_from null")):
        (path.parent.parent / "config.yaml").write_text(config)
        stop, trainer = saving.SaveOnStop(path), fake_trainer(global_step=5)
        stop.signal = "Ctrl-C"
        stop.on_exception(trainer, None, SIGTERMException())
        assert capsys.readouterr().err.strip() == (
            f"Stopped by Ctrl-C at step 5; saved {path}; to resume as the run began, give its config: python train.py "
            f"--config {path.parent.parent / 'config.yaml'} --ckpt_path {path}{init_null}")
    (path.parent.parent / "config.yaml").unlink()
    stop, trainer, exception = saving.SaveOnStop(path), fake_trainer(is_global_zero=False), SIGTERMException()
    stop.on_exception(trainer, None, exception)  # every rank saves (a collective), rank 0 alone says so
    assert exception.code == 143 and len(trainer.saved) == 1 and capsys.readouterr().err == ""
    # SLURM's SIGTERM after the job requeued itself: the user has nothing to resume by hand
    for requeued_by_us in (True, False):
        stop = saving.SaveOnStop(path)
        stop.requeued = requeued_by_us
        monkeypatch.setattr(saving, "requeue_signal", SimpleNamespace(requeued=False,
                                                                      lightning_requeued=not requeued_by_us))
        stop.on_exception(fake_trainer(global_step=7), None, SIGTERMException())
        assert capsys.readouterr().err == (f"Stopped by SIGTERM at step 7; saved {path}; the requeued SLURM job "
                                           f"resumes from it\n")


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


# ctrl_c_stops_the_test: the Ctrl-C handler of the test after the fit, rank 0 and the ranks it launched

def ctrl_c_test_handler(tmp_path, trainer):
    """The SIGINT handler ctrl_c_stops_the_test installs, and the context to leave."""
    context = train_job.ctrl_c_stops_the_test(tmp_path / "r", trainer)
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
    (tmp_path / "r" / "checkpoints").mkdir(parents=True)
    (tmp_path / "r" / "checkpoints" / "last.ckpt").touch()
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


def test_ctrl_c_in_the_test_names_the_newest_checkpoint_without_a_last_ckpt_or_says_none_was_written(tmp_path,
                                                                                                        capsys,
                                                                                                        handlers):
    """darknet_fast.yaml's enable_checkpointing false: the line named a last.ckpt that was never written."""
    for saved in ([], ["epoch=1.ckpt", "epoch=2.ckpt", "epoch=3.ckpt"]):
        for age, name in enumerate(saved):
            path = tmp_path / "r" / "checkpoints" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
            os.utime(path, (1_000_000 + age, 1_000_000 + age))  # epoch=3 the newest
        handler, context = ctrl_c_test_handler(tmp_path, None)
        with pytest.raises(SIGTERMException):
            handler(signal.SIGINT, None)
        context.__exit__(None, None, None)
        err = capsys.readouterr().err
        if not saved:
            assert err == ("\nCtrl-C: the test stopped; the run wrote no checkpoint (--trainer.enable_checkpointing "
                           "false), so there is none to test; train it again with checkpointing on to test it later\n")
        else:
            assert err.endswith(f"--ckpt_path {tmp_path / 'r' / 'checkpoints' / 'epoch=3.ckpt'}\n")


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

