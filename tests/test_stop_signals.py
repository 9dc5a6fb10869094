"""A stop signal to a training run (SIGTERM, Ctrl-C; one process, DDP's ranks, the process group): the save, the exit
status and the resume from there."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import ROOT
from runs import cyclegan_job, job, run_folders, run_script, start_script

import train

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets: threads only add contention


class SlowBatches(L.Callback):
    """Marks each finished batch with a file and sleeps, so a test can signal the job in the middle of an epoch."""

    def __init__(self, marker_dir: str, seconds: float = 0.3):
        self.marker_dir, self.seconds = marker_dir, seconds

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        open(os.path.join(self.marker_dir, f"step-{trainer.global_step}"), "w").close()
        time.sleep(self.seconds)


# SIGTERM in CI; SIGINT, the same handler, with the slow tests (the suite stays under CI's 10 minutes)
@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143),
                                            pytest.param(signal.SIGINT, 130, marks=pytest.mark.slow)])
def test_a_stop_signal_mid_epoch_saves_last_and_resume_continues_there(tiny_cifar, tmp_path, signum, status):
    runs, markers = tmp_path / "runs", tmp_path / "markers"
    markers.mkdir()
    # 24 images in batches of 2: 12 batches in the epoch; the signal comes after the third
    process = start_script(job(tiny_cifar, runs, "--data.batch_size", "2", "--trainer.callbacks+=test_stop_signals."
                               "SlowBatches", f"--trainer.callbacks.marker_dir={markers}"), tmp_path)
    deadline = time.monotonic() + 240
    while not (markers / "step-3").exists():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1][-3000:]
        time.sleep(0.05)
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    assert process.returncode == status, err[-3000:]
    (run_dir,) = run_folders(runs)
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    stopped_at = state["global_step"]
    assert 3 <= stopped_at < 12 and f"at step {stopped_at}; saved {run_dir / 'checkpoints' / 'last.ckpt'}" in err
    assert ("Received SIGTERM" in err) == (signum == signal.SIGTERM)  # Ctrl-C is not reported as Lightning's SIGTERM
    assert not (run_dir / "results.json").exists()
    train.main(job(tiny_cifar, runs, "--data.batch_size", "2", "--ckpt_path", "last"))
    assert run_folders(runs) == [run_dir]  # the same folder, no new run
    results = json.loads((run_dir / "results.json").read_text())
    # the epoch finished from where it stopped: 12 batches in all, not 12 more
    assert results["global_step"] == 12 and results["batches"] == 12 and results["epochs"] == 1.0


# scancel and `timeout` signal every rank; Ctrl-C to rank 0 alone with the slow tests
@pytest.mark.parametrize("signum, status, group", [(signal.SIGTERM, 143, True),
                                                   pytest.param(signal.SIGINT, 130, False, marks=pytest.mark.slow)])
def test_a_stop_signal_under_ddp_stops_every_rank_after_the_same_batch_and_saves(tiny_cifar, tmp_path, signum, status,
                                                                                 group):
    """Lightning's SIGTERM handler broadcast from inside the handler, in the middle of the ranks' collectives: the
    job died with gloo's 'Connection closed by peer' (or hung), and Ctrl-C killed rank 1 outright."""
    runs, markers = tmp_path / "runs", tmp_path / "markers"
    markers.mkdir()
    ddp = ["--data.batch_size", "2", "--trainer.accelerator", "cpu", "--trainer.strategy", "ddp", "--trainer.devices",
           "2"]  # 24 images: 6 steps an epoch on each of the two ranks
    process = start_script(job(tiny_cifar, runs, *ddp, "--trainer.callbacks+=test_stop_signals.SlowBatches",
                               f"--trainer.callbacks.marker_dir={markers}"), tmp_path, start_new_session=True)
    deadline = time.monotonic() + 240
    while not (markers / "step-2").exists():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1][-3000:]
        time.sleep(0.05)
    if group:
        os.killpg(process.pid, signum)
    else:
        process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    assert process.returncode == status and "Traceback" not in err, err[-3000:]
    (run_dir,) = run_folders(runs)
    stopped_at = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"]
    assert 2 <= stopped_at < 6 and f"at step {stopped_at}; saved" in err
    result = run_script(job(tiny_cifar, runs, *ddp, "--ckpt_path", "last"), tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["global_step"] == 6 and results["world_size"] == 2  # the epoch finished where it stopped


class CtrlCAt(L.Callback):
    """A terminal's Ctrl-C in the fit's set-up (before SaveOnStop takes Ctrl-C: Lightning's own path), at the first
    sanity-check batch, or at the first batch of the test after the fit."""

    def __init__(self, stage: str):
        self.stage = stage

    def setup(self, trainer, pl_module, stage):
        if self.stage == "setup" and stage == "fit":
            os.kill(os.getpid(), signal.SIGINT)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if self.stage == "sanity" and trainer.sanity_checking and batch_idx == 0:
            os.kill(os.getpid(), signal.SIGINT)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if self.stage == "test" and batch_idx == 0:
            os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.parametrize("stage", ["setup", "sanity", "test"])
def test_ctrl_c_outside_the_training_batches_exits_130_and_says_what_it_kept(tiny_cifar, tmp_path, capsys, stage,
                                                                             monkeypatch):
    """Ctrl-C in the sanity check exited 143 after promising a save it could not make; in the final test, 1; in the
    fit's set-up, Lightning's 1. Before the training began, the run's new folder goes, as a refused run's."""
    runs = tmp_path / "runs"
    monkeypatch.setattr(sys, "argv", ["train.py", *job(tiny_cifar, runs, "--data.eval_batch_size", "2",
                                                       "--trainer.num_sanity_val_steps", "2",
                                                       "--trainer.callbacks+=test_stop_signals.CtrlCAt",
                                                       f"--trainer.callbacks.stage={stage}")])
    try:
        with pytest.raises(SystemExit) as stop:
            train.command_line()
    finally:
        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # Lightning's own path ignores Ctrl-C from then on
            signal.signal(signal.SIGINT, signal.default_int_handler)
    assert stop.value.code == 130
    err = capsys.readouterr().err
    if stage != "test":
        assert ("Ctrl-C: stopping after this batch (Ctrl-C again" in err) == (stage == "sanity") and "saving" not in err
        assert f"Stopped before the training began: removed {runs}" in err and not runs.exists()
        assert "Traceback" not in err
    else:
        (run_dir,) = run_folders(runs)
        assert (f"the test stopped; the training is saved. Test it with: python train.py test --config "
                f"{run_dir / 'config.yaml'} --ckpt_path {run_dir / 'checkpoints' / 'last.ckpt'}") in err
        assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 3
    # Ctrl-C after the stop is Python's again: Lightning's teardown after an exception had put SaveOnStop's handler
    # back, which promised a save and ended the process by SIGTERM (in W&B's upload, in the next fit)
    handler = signal.getsignal(signal.SIGINT)
    monkeypatch.setattr(os, "kill", lambda pid, signum: pytest.fail(f"Ctrl-C after the stop sent signal {signum}"))
    with pytest.raises(KeyboardInterrupt):
        handler(signal.SIGINT, None)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_while_train_py_imports_torch_is_one_line_and_130(tmp_path):
    """Ctrl-C in the seconds train.py takes to import torch and Lightning, before any handler of ours, printed
    Python's KeyboardInterrupt traceback. A yaml module that raises it as train.py imports it stands in for the key,
    at a known moment."""
    stand_ins = tmp_path / "stand_ins"
    stand_ins.mkdir()
    (stand_ins / "yaml.py").write_text("raise KeyboardInterrupt\n")
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), "--system", "wgan"], cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(stand_ins)}, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 130, result.stderr[-2000:]
    assert result.stderr.strip() == "train.py: Ctrl-C: stopped before the run began (nothing was written)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stand_ins"]


class SlowTestBatches(L.Callback):
    """Writes each rank's process id into marker_dir/rank<N> at its test batches, which take `seconds` each."""

    def __init__(self, marker_dir: str, seconds: float = 2.0):
        self.marker_dir, self.seconds = marker_dir, seconds

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        Path(self.marker_dir, f"rank{trainer.global_rank}").write_text(str(os.getpid()))
        time.sleep(self.seconds)


def running(pid: int) -> bool:
    """Whether the process is there and not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
@pytest.mark.parametrize("to", ["the process group", "rank 0 alone"])
def test_ctrl_c_in_the_test_after_a_ddp_fit_stops_every_rank_and_says_it_once(to, tiny_cifar, tmp_path):
    """A terminal's Ctrl-C reaches every rank; `kill -INT` rank 0 alone. Rank 1 had said it as well, and by rank 0
    alone had been left testing after rank 0's exit 130, orphaned, until gloo's 'Connection closed by peer' traceback
    at its share's end."""
    runs, markers = tmp_path / "runs", tmp_path / "markers"
    markers.mkdir()
    # 12 test images, 6 a rank in batches of 2: 3 batches of 2 s a rank, Ctrl-C in the first
    process = start_script(job(tiny_cifar, runs, "--run_name", "r", "--data.batch_size", "4", "--data.eval_batch_size",
                               "2", "--trainer.accelerator", "cpu", "--trainer.strategy", "ddp", "--trainer.devices",
                               "2", "--trainer.callbacks+=test_stop_signals.SlowTestBatches",
                               f"--trainer.callbacks.marker_dir={markers}"), tmp_path, start_new_session=True)
    deadline = time.monotonic() + 240
    while not ((markers / "rank0").exists() and (markers / "rank1").exists()):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1][-3000:]
        time.sleep(0.05)
    rank1 = int((markers / "rank1").read_text())
    if to == "rank 0 alone":
        process.send_signal(signal.SIGINT)
    else:
        os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=60)
        deadline = time.monotonic() + 1.5  # rank 1 ends with rank 0, not after its share of the test
        while running(rank1) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = running(rank1)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130 and not left, err[-3000:]
    run_dir = runs / "r"
    assert err.count("Ctrl-C: the test stopped; the training is saved. Test it with: python train.py test --config "
                     f"{run_dir / 'config.yaml'} --ckpt_path {run_dir / 'checkpoints' / 'last.ckpt'}") == 1, err[-3000:]
    assert "Traceback" not in err and "Connection closed" not in err, err[-3000:]
    assert not (run_dir / "results.json").exists()


# a terminal's Ctrl-C, `timeout` and scancel signal the workers too; SIGINT with the slow tests
@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143),
                                            pytest.param(signal.SIGINT, 130, marks=pytest.mark.slow)])
def test_a_stop_signal_to_the_whole_process_group_still_saves_last(tiny_unpaired, tmp_path, signum, status):
    runs, markers = tmp_path / "runs", tmp_path / "markers"
    markers.mkdir()
    # 6 batches an epoch (trainB: 5 images and a grayscale one), 3 optimizer steps a batch; signalled after the 2nd
    process = start_script(cyclegan_job(tiny_unpaired, runs, "--trainer.callbacks+=test_stop_signals.SlowBatches",
                                        f"--trainer.callbacks.marker_dir={markers}"), tmp_path,
                           start_new_session=True)
    deadline = time.monotonic() + 240
    while not (markers / "step-6").exists():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1][-3000:]
        time.sleep(0.05)
    os.killpg(process.pid, signum)  # the process group: train.py and its DataLoader workers
    _, err = process.communicate(timeout=120)
    assert process.returncode == status, err[-3000:]
    assert "killed by signal" not in err and "Traceback" not in err
    (run_dir,) = run_folders(runs)
    stopped_at = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"]
    assert 6 <= stopped_at < 36 and stopped_at % 3 == 0 and f"at step {stopped_at}; saved" in err
    train.main(cyclegan_job(tiny_unpaired, runs, "--data.num_workers", "0", "--ckpt_path", "last",
                            "--trainer.callbacks+=runs.StartStep"))
    assert (run_dir / "start_step").read_text() == str(stopped_at)
    assert json.loads((run_dir / "results.json").read_text())["global_step"] == 36  # 2 epochs of 6 batches
