"""What the tests that run train.py share: the tiny jobs, train.py in a fresh process, its one-line errors, run folders
made by hand, the callbacks several test files name by class path (`--trainer.callbacks+=runs.StartWeights`), the
fake Trainer the tests of its hooks call them with, the phase scheduler tests' tiny fit and formulas, and the Darknet
option tests' tiny net and quiet Trainer."""

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import torch
from conftest import ROOT
from jsonargparse import Namespace
from lightning.pytorch.trainer.states import TrainerFn

from callbacks import TrainingPhaseScheduler, saving
from datamodules import CIFAR10DataModule
from lightning_modules import DarknetClassifier

# --model.top_losses 1: the test after each fit still runs the whole interpretation (confusion matrix, top losses,
# their figures and CSVs, gathered over the ranks), with a one-image top-losses figure: the default 9-image grid cost
# ~1 s of matplotlib a run, which no test here reads (test_darknet_interpret checks the figures)
TINY = ["--model.nf", "4", "--model.num_blocks", "[1]", "--model.num_classes", "3", "--data.batch_size", "8",
        "--data.eval_batch_size", "6", "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false",
        "--trainer.logger", "false", "--model.top_losses", "1"]


def job(data_dir, runs, *extra):
    return ["--system", "darknet", "--data.data_dir", str(data_dir), "--trainer.default_root_dir", str(runs),
            *TINY, *extra]


def wgan_job(data_dir, runs, *extra):
    """A tiny WGAN with the shipped config's checkpoints (every 5,000 steps, last.ckpt): 6 batches an epoch."""
    return ["--system", "wgan", "--data.data_dir", str(data_dir / "train"), "--data.batch_size", "4",
            "--data.num_workers", "0", "--model.isize", "16", "--data.isize", "16", "--model.ngf", "4", "--model.ndf",
            "4", "--model.nz", "8", "--trainer.default_root_dir", str(runs), "--trainer.logger", "false",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false", *extra]


def cyclegan_job(data_dir, runs, *extra):
    """A CycleGAN whose images are decoded by 2 DataLoader workers (the darknet's loader has none)."""
    return ["--system", "cyclegan", "--data.data_dir", str(data_dir), "--data.batch_size", "1", "--data.load_size",
            "36", "--data.crop_size", "32", "--data.num_workers", "2", "--model.n_blocks", "1", "--model.ngf", "4",
            "--model.ndf", "4", "--model.log_images_every_n_batches", "0", "--trainer.max_epochs", "2",
            "--trainer.default_root_dir", str(runs), "--trainer.logger", "false", "--trainer.enable_progress_bar",
            "false", "--trainer.enable_model_summary", "false", *extra]


def start_script(args, tmp_path, **popen):
    """train.py in a fresh process, as a user runs it: W&B offline, this folder's tests importable."""
    env = {**os.environ, "HOME": str(tmp_path), "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline",
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    env.pop("DL2_TRACEBACK", None)
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def run_script(args, tmp_path):
    process = start_script(args, tmp_path)
    out, err = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def assert_one_line_error(result, *needles):
    """Exit status 2 and exactly one line on stderr (the last thing printed), naming what the test expects."""
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("train.py: error:")]
    assert len(errors) == 1 and result.stderr.rstrip().endswith(errors[0]), result.stderr[-3000:]
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def run_folders(runs):
    return sorted(p for p in runs.iterdir() if p.is_dir())


@contextlib.contextmanager
def options_warnings():
    """The warnings of a resume whose --model/--data options differ from its checkpoint's, recorded."""
    said = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield said
    said.extend(str(w.message) for w in caught if "this resume's options differ from the checkpoint" in str(w.message))


DARKNET = "lightning_modules.DarknetClassifier"
CYCLEGAN = "lightning_modules.CycleGAN"


def a_run(runs, name, started, model=DARKNET, checkpoint=True, **info):
    """A run folder as train.py leaves it: run.json (None: a folder of a train.py before run.json), last.ckpt."""
    run_dir = runs / name
    run_dir.mkdir(parents=True)
    if started is not None:
        (run_dir / "run.json").write_text(json.dumps({"model": model, "started": started, **info}))
    if checkpoint:
        (run_dir / "checkpoints").mkdir()
        (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"")
    return run_dir


def a_run_killed_as_last_ckpt_was_relinked(runs, name):
    """A CycleGAN run (save_last "link") killed inside Lightning's relink at epoch 1's end: epoch=000.ckpt and the old
    link removed, epoch=001.ckpt saved (step 36), last.ckpt a link to the removed file, or not yet made again."""
    run_dir = a_run(runs, name, started=100.0, model=CYCLEGAN, trained=True, checkpoint=False)
    (run_dir / "checkpoints").mkdir()
    torch.save({"global_step": 36}, run_dir / "checkpoints" / "epoch=001.ckpt")
    return run_dir


def run_config(runs, ckpt_path=None, run_name=None, **trainer):
    trainer = Namespace(**{"default_root_dir": str(runs), "callbacks": [], "logger": False,
                           "enable_progress_bar": False, **trainer})
    return Namespace(trainer=trainer, model=Namespace(class_path=DARKNET), ckpt_path=ckpt_path, run_name=run_name)


def wandb_logger(**init_args):
    init_args = {"save_dir": None, "name": None, "id": None, "version": None, "offline": False, "log_model": True,
                 **init_args}
    return Namespace(class_path="lightning.pytorch.loggers.WandbLogger", init_args=Namespace(**init_args))


class StopAtStep(L.Callback):
    """A signal to this process once `step` training steps are done: SIGTERM, a cluster's stop (preemption, scancel),
    or SIGUSR1, SLURM's --signal before a requeue."""

    def __init__(self, step: int, signal_name: str = "SIGTERM"):
        self.step, self.signal = step, getattr(signal, signal_name)

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signal)


class StartStep(L.Callback):
    """Writes the step training (re)starts at into the run folder."""

    def on_train_start(self, trainer, pl_module):
        Path(trainer.default_root_dir, "start_step").write_text(str(trainer.global_step))


class StartWeights(L.Callback):
    """Saves the weights training starts from, and the optimizer's state, into the run folder."""

    def on_train_start(self, trainer, pl_module):
        torch.save({"weights": pl_module.state_dict(), "optimizer": trainer.optimizers[0].state_dict()["state"]},
                   Path(trainer.default_root_dir, "start.pt"))


# The jobs test_train_cli.py ran, which the files its tests went to (test_train_job.py, test_wandb_runs.py,
# test_native_subcommands.py, ...) and test_launchers.py import under their old names (`from runs import CLI_TINY as
# TINY`): two epochs and the config's logger; train.py in a fresh process without W&B credentials.
# --model.top_losses 1: the whole interpretation after each fit, with a one-image top-losses figure (the default
# 9-image grid cost ~1 s of matplotlib a run, which no test here reads; test_darknet_interpret checks the figures)
CLI_TINY = ["--model.nf", "4", "--model.num_blocks", "[1]", "--model.num_classes", "3", "--data.batch_size", "8",
            "--data.eval_batch_size", "6", "--trainer.max_epochs", "2", "--trainer.enable_progress_bar", "false",
            "--model.top_losses", "1"]


def cli_job(data_dir, runs, *extra):
    return ["--system", "darknet", "--data.data_dir", str(data_dir), "--trainer.default_root_dir", str(runs),
            *CLI_TINY, *extra]


def run_cli_script(args, tmp_path, env=None, launcher=()):
    """train.py in a fresh process, as a user runs it (`python -m LAUNCHER ... train.py` with a launcher), with no W&B
    credentials."""
    env = {**os.environ, "HOME": str(tmp_path), "WANDB_API_KEY": "", "OMP_NUM_THREADS": "1", **(env or {})}
    env.pop("WANDB_MODE", None)
    return subprocess.run([sys.executable, *launcher, str(ROOT / "train.py"), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


def only_run(runs):
    (run_dir,) = list(runs.iterdir())
    return run_dir


class LrAtBatchStart(L.Callback):
    """Writes each optimizer's lr per group, as every training batch begins, to `record` (the last batch's stays)."""

    def __init__(self, record: str):
        self.record = record

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        Path(self.record).write_text(json.dumps([[g["lr"] for g in o.param_groups] for o in trainer.optimizers]))


# The fakes the tests of train.py's hooks share (test_save_on_stop.py, test_stop_under_ddp.py,
# test_requeue_signal.py, test_saved_progress.py): a Trainer's few attributes, a rank of a 2-process job.
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


def last_ckpt(tmp_path) -> Path:
    return tmp_path / "runs" / "my-run" / "checkpoints" / "last.ckpt"


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


# The tiny fits, callbacks and formulas the phase scheduler's tests share (test_phase_scheduler.py,
# test_phase_resume.py, test_phase_cycles.py): a Darknet on tiny_cifar, what the optimizer holds at each step, the
# seed's decay formulas written out.
BATCHES = 6  # 24 tiny images at batch 4


class Recorder(L.Callback):
    """What the optimizer holds at each step: class, lr of every group, momentum (or beta1)."""

    def __init__(self):
        self.steps = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        group = optimizer.param_groups[0]
        momentum = group["betas"][0] if "betas" in group else group.get("momentum")
        self.steps.append((type(optimizer).__name__, [g["lr"] for g in optimizer.param_groups], momentum))


class ShapeRecorder(L.Callback):
    def __init__(self):
        self.sizes = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.sizes.append(batch[0].shape[-1])


def fit(data_dir, phases, max_epochs=10, callbacks=(), ckpt_path=None, root=None, trainer_kwargs=None, batch_size=4,
        **scheduler_kwargs):
    torch.manual_seed(0)
    recorder = Recorder()
    trainer = L.Trainer(accelerator="cpu", max_epochs=max_epochs, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
                        enable_checkpointing=root is not None, default_root_dir=root,
                        callbacks=[TrainingPhaseScheduler(phases, plot=False, **scheduler_kwargs), recorder,
                                   *callbacks], **(trainer_kwargs or {}))
    model = DarknetClassifier(num_blocks=[1], nf=4, num_classes=3, one_cycle=None)
    trainer.fit(model, CIFAR10DataModule(str(data_dir), batch_size=batch_size, download=False), ckpt_path=ckpt_path)
    return recorder.steps, trainer, model


# -- the seed's formulas, written out here --------------------------------------------------------
def expected(start, end, i, n, decay, p=2.0):
    if decay == "no":
        return start
    if decay == "linear":
        return start + (end - start) * i / n
    if decay == "cosine":
        return end + (start - end) / 2 * (1 + math.cos(math.pi * i / n))
    if decay == "exponential":
        return start * (end / start) ** (i / n)
    return end + (start - end) * (1 - i / n) ** p


def one_cycle_lrs(n, lr=0.4, div=20):
    """fastai 0.7's 1cycle (pct 20) over n steps, the phase ends rounded to steps as the scheduler rounds them."""
    up, down = round(0.4 * n), round(0.8 * n)
    return [expected(lr / div, lr, i, up, "linear") for i in range(up)] + \
           [expected(lr, lr / div, i, down - up, "linear") for i in range(down - up)] + \
           [expected(lr / div, lr / div / 100, i, n - down, "linear") for i in range(n - down)]


class BatchCounter(L.Callback):
    def __init__(self):
        self.batches = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.batches += 1


DARKNET_TINY = {"num_blocks": [1], "nf": 4, "num_classes": 3}  # the Darknet option tests' net: a block of 4 filters


def quiet_trainer(**kwargs):
    """A one-epoch Trainer that writes nothing (no logger, checkpoints, progress bar or summary)."""
    defaults = {"max_epochs": 1, "logger": False, "enable_checkpointing": False, "enable_progress_bar": False,
                "enable_model_summary": False}
    return L.Trainer(**{**defaults, **kwargs})
