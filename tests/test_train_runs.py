"""train.py's run folders: resume from the right run, saves on a stop signal, honest epochs, one-line errors, help."""

import contextlib
import importlib.util
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT, run_in_process
from jsonargparse import Namespace
from PIL import Image

import train
from callbacks import (
    EpochLengthResume,
    MaxStepsResume,
    RerunStoppedValidation,
    SeedPerRankAndStep,
    checkpoints,
    configs,
    run_folder,
    wandb_run,
)
from datamodules import CIFAR10DataModule
from lightning_modules import DarknetClassifier

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets: threads only add contention

# --model.top_losses 1: the test after each fit still runs the whole interpretation (confusion matrix, top losses,
# their figures and CSVs, gathered over the ranks), with a one-image top-losses figure: the default 9-image grid cost
# ~1 s of matplotlib a run, which no test here reads (test_darknet_interpret checks the figures)
TINY = ["--model.nf", "4", "--model.num_blocks", "[1]", "--model.num_classes", "3", "--data.batch_size", "8",
        "--data.eval_batch_size", "6", "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false",
        "--trainer.logger", "false", "--model.top_losses", "1"]


def job(data_dir, runs, *extra):
    return ["--system", "darknet", "--data.data_dir", str(data_dir), "--trainer.default_root_dir", str(runs),
            *TINY, *extra]


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
    process = start_script(job(tiny_cifar, runs, "--data.batch_size", "2", "--trainer.callbacks+=test_train_runs."
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
    process = start_script(job(tiny_cifar, runs, *ddp, "--trainer.callbacks+=test_train_runs.SlowBatches",
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


class StopInValidation(L.Callback):
    """SIGTERM in the fit's validation of `epoch`, after its second batch (of 6); records each batch it sees."""

    def __init__(self, record: str, stop: bool = True, epoch: int = 0):
        self.record, self.stop, self.epoch = record, stop, epoch

    def write(self, line: str):
        with open(self.record, "a") as record:
            record.write(line + "\n")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.write(f"train {trainer.current_epoch} {batch_idx}")

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if not trainer.sanity_checking:
            self.write(f"val {trainer.current_epoch} {batch_idx}")
            if self.stop and trainer.current_epoch == self.epoch and batch_idx == 1:
                os.kill(os.getpid(), signal.SIGTERM)


def test_a_stop_in_the_epochs_validation_saves_and_the_resume_runs_that_validation_again(tiny_cifar, tmp_path):
    """The resume went on past the stopped validation (Lightning read the checkpoint as saved after it): epoch 0 had
    no val/acc and no best-*.ckpt."""
    runs, record = tmp_path / "runs", tmp_path / "record"
    stopping = job(tiny_cifar, runs, "--run_name", "r", "--data.eval_batch_size", "2", "--trainer.max_epochs", "2",
                   "--trainer.callbacks+=test_train_runs.StopInValidation", f"--trainer.callbacks.record={record}")
    with pytest.raises(SystemExit) as stop:
        train.main(stopping)
    assert stop.value.code == 143
    checkpoints = runs / "r" / "checkpoints"
    assert [p.name for p in checkpoints.iterdir()] == ["last.ckpt"]  # no validation ended: no best yet
    assert torch.load(checkpoints / "last.ckpt", weights_only=False)["global_step"] == 3
    first = record.read_text().split("\n")
    train.main([*stopping, "--trainer.callbacks.stop=false", "--ckpt_path", "last"])
    resumed = record.read_text().split("\n")[len(first) - 1:-1]
    # 24 training images in batches of 8, 12 test images in batches of 2
    assert first[:-1] == [*(f"train 0 {i}" for i in range(3)), "val 0 0", "val 0 1"]
    assert resumed == [*(f"val 0 {i}" for i in range(6)), *(f"train 1 {i}" for i in range(3)),
                       *(f"val 1 {i}" for i in range(6))]
    assert json.loads((runs / "r" / "results.json").read_text())["global_step"] == 6
    # a checkpoint saved after a whole validation (the epoch's end) goes on to the next epoch
    before = len(record.read_text().split("\n")) - 1
    train.main([*stopping, "--trainer.callbacks.stop=false", "--ckpt_path", "last", "--trainer.max_epochs", "3"])
    assert record.read_text().split("\n")[before:-1] == [*(f"train 2 {i}" for i in range(3)),
                                                         *(f"val 2 {i}" for i in range(6))]


def val_progress(processed: int, completed: int, last: bool, earlier: int = 12) -> dict:
    """A checkpoint's loops as Lightning saves them, `earlier` validation batches run in earlier epochs."""
    current = {"ready": processed, "started": processed, "processed": processed, "completed": completed}
    total = {name: earlier + value for name, value in current.items()}
    return {"loops": {"fit_loop": {"epoch_loop.val_loop.batch_progress": {
        "total": total, "current": current, "is_last_batch": last}}}, "global_step": 7}


@pytest.mark.parametrize("processed, completed, last, rerun", [
    (1, 0, False, True),   # saved from the first batch's end hook (rank 0 under DDP): it was not completed
    (3, 2, False, True),   # from a middle batch's hook
    (6, 5, True, True),    # from the last batch's hook, before the validation's end
    (4, 4, False, True),   # one process: stopped after a batch completed
    (6, 6, True, False),   # after the whole validation (ModelCheckpoint at its end)
    (0, 0, False, False)])  # none begun since the sanity check
def test_a_checkpoint_saved_inside_a_validation_is_read_as_such(processed, completed, last, rerun):
    """A save at the first or the last batch's end hook resumed past the validation: no val metrics, no best."""
    checkpoint = val_progress(processed, completed, last)
    callback = RerunStoppedValidation()
    callback.on_load_checkpoint(SimpleNamespace(max_steps=-1), None, checkpoint)
    total = checkpoint["loops"]["fit_loop"]["epoch_loop.val_loop.batch_progress"]["total"]
    assert callback.pending == rerun
    if rerun:  # Lightning's test of a validation in progress: processed behind started; from its first batch again
        assert (total["processed"], total["completed"]) == (12 + processed - 1,) * 2
    else:
        assert total == val_progress(processed, completed, last)["loops"]["fit_loop"][
            "epoch_loop.val_loop.batch_progress"]["total"]


class SavedDuringValidation(L.Callback):
    """Rank 0, at each batch of the fit's validations: the step last.ckpt holds, or None."""

    def __init__(self, record: str):
        self.record = record

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if trainer.is_global_zero and not trainer.sanity_checking:
            last = Path(trainer.default_root_dir, "checkpoints", "last.ckpt")
            step = torch.load(last, weights_only=False)["global_step"] if last.exists() else None
            with open(self.record, "a") as record:
                record.write(f"{trainer.current_epoch} {batch_idx} {step}\n")


@pytest.mark.slow  # two processes for 20 s each
@pytest.mark.parametrize("epochs", [2, 1], ids=["an epoch's validation", "the last validation"])
def test_a_stop_in_a_ddp_validation_saves_at_once_on_rank_zero(tiny_cifar, tmp_path, epochs):
    """Under DDP the ranks agree on a stop at a training batch's end: a SIGTERM in the validation saved nothing until
    the validation and one more batch were done, past a job's grace time before SIGKILL; in the last validation it
    was never acted on (the test ran, exit 0)."""
    runs, record = tmp_path / "runs", tmp_path / "record"
    result = run_script(job(tiny_cifar, runs, "--run_name", "r", "--data.batch_size", "4", "--data.eval_batch_size",
                            "2", "--trainer.max_epochs", str(epochs), "--trainer.accelerator", "cpu",
                            "--trainer.strategy", "ddp", "--trainer.devices", "2",
                            "--trainer.callbacks+=test_train_runs.StopInValidation",
                            f"--trainer.callbacks.record={tmp_path / 'seen'}",
                            "--trainer.callbacks+=test_train_runs.SavedDuringValidation",
                            f"--trainer.callbacks.record={record}"), tmp_path)
    assert result.returncode == 143 and "Traceback" not in result.stderr, result.stderr[-3000:]
    # 24 images, batches of 4 on each of two ranks: 3 steps an epoch; 6 test images a rank, in batches of 2. The signal
    # came after validation batch 1; by batch 2 rank 0 had saved the weights of step 3
    assert record.read_text().split("\n")[:3] == ["0 0 None", "0 1 None", "0 2 3"]
    assert "SIGTERM in the validation: saved" in result.stderr
    # the ranks stopped together after the next training batch, or at the fit's end, and saved again; no test
    saved = torch.load(runs / "r" / "checkpoints" / "last.ckpt", weights_only=False)
    assert saved["global_step"] == {2: 4, 1: 3}[epochs]
    assert not (runs / "r" / "results.json").exists()


EPOCHS_ONLY = ["--model.one_cycle", "null", "--trainer.callbacks", "[]"]  # the 1cycle scheduler sets max_steps


@pytest.mark.parametrize("schedule, resume", [([], []), (EPOCHS_ONLY, []),
                                              ([*EPOCHS_ONLY, "--trainer.max_steps", "6"], []),
                                              (EPOCHS_ONLY, ["--trainer.max_steps", "0"])],
                         ids=["max_steps at the 1cycle's end", "max_epochs", "max_steps given", "resumed to train 0"])
def test_a_stop_in_the_last_validation_is_run_again_on_resume(tiny_cifar, tmp_path, schedule, resume):
    """With max_steps reached, Lightning's fit ended at once (given, it never started): the last validation never ran
    and results.json had no final metrics."""
    runs, record = tmp_path / "runs", tmp_path / "record"
    stopping = job(tiny_cifar, runs, "--run_name", "r", "--data.eval_batch_size", "2", "--trainer.max_epochs", "2",
                   *schedule, "--trainer.callbacks+=test_train_runs.StopInValidation",
                   f"--trainer.callbacks.record={record}", "--trainer.callbacks.epoch=1")
    with pytest.raises(SystemExit):
        train.main(stopping)
    before = len(record.read_text().split("\n")) - 1
    train.main([*stopping, "--trainer.callbacks.stop=false", "--ckpt_path", "last", *resume])
    assert record.read_text().split("\n")[before:-1] == [f"val 1 {i}" for i in range(6)]
    results = json.loads((runs / "r" / "results.json").read_text())
    assert results["global_step"] == 6 and {"val/acc", "val/loss"} <= set(results["final_metrics"])
    if schedule:  # and its checkpoint, saved after that validation, resumes as any other: the next epoch
        before = len(record.read_text().split("\n")) - 1
        train.main([*stopping, "--trainer.callbacks.stop=false", "--ckpt_path", "last", "--trainer.max_epochs", "3",
                    "--trainer.max_steps", "9"])
        assert record.read_text().split("\n")[before:-1] == [*(f"train 2 {i}" for i in range(3)),
                                                             *(f"val 2 {i}" for i in range(6))]


def test_only_a_validation_stopped_part_way_is_made_to_run_again():
    """What Lightning 2.6 resumes as 'inside a validation batch' (it runs the validation again): total started ==
    ready, processed == started - 1, completed == processed; and the batches from the first (current counts 0)."""
    def checkpoint(done: int, last: bool) -> dict:
        counts = {"ready": done, "started": done, "processed": done, "completed": done}
        return {"loops": {"fit_loop": {"epoch_loop.val_loop.batch_progress": {
            "total": {count: done + 4 for count in counts}, "current": dict(counts), "is_last_batch": last}}}}

    rerun = RerunStoppedValidation()
    for done, last in ((6, True), (0, False)):  # a whole validation (a ModelCheckpoint's save); none since the sanity
        state = checkpoint(done, last)          # check's (Lightning resets its progress)
        rerun.on_load_checkpoint(SimpleNamespace(max_steps=-1), None, state)
        assert state == checkpoint(done, last)
    state = checkpoint(2, False)  # stopped after its second batch, 4 batches of validations before
    rerun.on_load_checkpoint(SimpleNamespace(max_steps=-1), None, state)
    assert state["loops"]["fit_loop"]["epoch_loop.val_loop.batch_progress"] == {
        "total": {"ready": 6, "started": 6, "processed": 5, "completed": 5},
        "current": {"ready": 0, "started": 0, "processed": 0, "completed": 0}, "is_last_batch": False}
    weights = {"state_dict": {}}  # not Lightning's loops (a weights file): no change
    rerun.on_load_checkpoint(SimpleNamespace(max_steps=-1), None, weights)
    assert weights == {"state_dict": {}}


class BatchPrints(L.Callback):
    """Writes each training batch's epoch, index and a print of its images to `record`."""

    def __init__(self, record: str):
        self.record = record

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        images = batch[0] if isinstance(batch, list | tuple) and len(batch) == 2 else batch
        images = images[0] if isinstance(images, list | tuple) else images  # the CycleGAN's: domain A
        with open(self.record, "a") as record:
            record.write(f"{trainer.current_epoch} {batch_idx} {images.double().sum().item():.4f}\n")


# a stop inside the 2nd epoch; CI runs one case of each loader: our batches of tensors (the Darknet's), a
# DataLoader with workers (the CycleGAN's, whose workers draw the sampler's order as the loader is made: at an epoch's
# end too, LateLoader's case) and without (the WGAN's)
@pytest.mark.parametrize("system, stop", [("darknet", 17), ("cyclegan", 9), ("wgan", 9), ("cyclegan", 6),  # its end
                                          pytest.param("darknet", 5, marks=pytest.mark.slow),  # inside the 1st
                                          pytest.param("darknet", 12, marks=pytest.mark.slow),  # at its end
                                          pytest.param("wgan in memory", 9, marks=pytest.mark.slow),
                                          pytest.param("wgan with workers", 9, marks=pytest.mark.slow)])
def test_a_resume_inside_an_epoch_trains_the_rest_of_that_epochs_order(system, stop, tiny_cifar, tiny_unpaired,
                                                                       tmp_path):
    """Lightning made the loader's first iterator before giving the sampler its epoch, and restarted it at its first
    batch: a stop in the 2nd epoch resumed with the 1st epoch's order, and trained its first batches again."""
    runs, steps = tmp_path / "runs", 1  # optimizer steps a batch
    if system == "darknet":  # 12 batches of 2 an epoch; no augmentation, so a batch's print is its images'
        make = job(tiny_cifar, runs, "--data.batch_size", "2", "--data.pad", "0", "--data.flip", "false",
                   "--trainer.max_epochs", "2", "--model.one_cycle", "null")
        per_epoch = 12
    elif system == "cyclegan":  # 6 batches of 1 an epoch; crops and flips drawn from (seed, image, epoch)
        make, per_epoch, steps = cyclegan_job(tiny_unpaired, runs), 6, 3
    else:  # 6 batches of 4 an epoch, 2 epochs
        make, per_epoch = wgan_job(tiny_cifar, runs, "--trainer.max_epochs", "2"), 6
        make += {"wgan": [], "wgan in memory": ["--data.in_memory", "true"],
                 "wgan with workers": ["--data.num_workers", "2"]}[system]
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    train.main([*make, "--run_name", "whole", "--trainer.callbacks+=test_train_runs.BatchPrints",
                f"--trainer.callbacks.record={whole}"])
    record = ["--run_name", "r", "--trainer.callbacks+=test_train_runs.BatchPrints",
              f"--trainer.callbacks.record={resumed}"]
    train.main([*make, *record, "--trainer.max_steps", str(stop * steps)])
    with options_warnings() as said:
        train.main([*make, *record, "--ckpt_path", "last"])
    assert said == []  # the shipped config's options, given again: no word of changed ones
    expected = whole.read_text().splitlines()
    assert len(expected) == 2 * per_epoch and resumed.read_text().splitlines() == expected


class ImagePrints(L.Callback):
    """Writes the epoch and a print of each image of each training batch to `record`, a line an image."""

    def __init__(self, record: str):
        self.record = record

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        with open(self.record, "a") as record:
            record.writelines(f"{trainer.current_epoch} {image.double().sum().item():.4f}\n" for image in batch[0])


@pytest.mark.parametrize("before, after", [(2, 4), (4, 2)])
def test_a_resume_inside_an_epoch_with_other_batches_an_epoch_trains_the_images_not_yet_trained(before, after,
                                                                                               tiny_cifar, tmp_path):
    """Another batch size here, another number of processes on a cluster (test_launchers.py's two-node job): the
    batches Lightning counted done were the stopped run's, so from 12 batches of 2 to 6 of 4 after 4 batches the
    resume skipped 16 images instead of 8, and half the epoch's images went untrained."""
    runs = tmp_path / "runs"
    make = job(tiny_cifar, runs, "--data.pad", "0", "--data.flip", "false", "--model.one_cycle", "null",
               "--trainer.max_epochs", "2")
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    train.main([*make, "--data.batch_size", str(after), "--run_name", "whole",
                "--trainer.callbacks+=test_train_runs.ImagePrints", f"--trainer.callbacks.record={whole}"])
    record = ["--run_name", "r", "--trainer.callbacks+=test_train_runs.ImagePrints",
              f"--trainer.callbacks.record={resumed}"]
    per_epoch = 24 // before
    train.main([*make, *record, "--data.batch_size", str(before), "--trainer.max_steps", str(per_epoch + 8 // before)])
    with pytest.warns(UserWarning, match=f"the run trained {per_epoch} batches an epoch, this training {24 // after}: "
                                         f"it goes on after {8 // after} of them"):
        train.main([*make, *record, "--data.batch_size", str(after), "--ckpt_path", "last"])
    # the same images in the same order: 8 of the 2nd epoch before the stop, its other 16 after it
    assert resumed.read_text().splitlines() == whole.read_text().splitlines()


def test_a_plain_trainer_with_the_resume_callbacks_resumes_at_another_batch_size_where_the_epoch_was(tiny_cifar,
                                                                                                     tmp_path):
    """callbacks.MaxStepsResume and EpochLengthResume in a plain lightning.Trainer (a notebook, no train.py), as the
    README says: stopped after 8 of the second epoch's 24 images at batch 2 and resumed at batch 4, the run trains
    that epoch's other 16 images, in the order a run at batch 4 never stopped does."""
    def fit(batch_size, record, max_steps=-1, ckpt_path=None):
        L.seed_everything(0, verbose=False)
        model = DarknetClassifier(nf=4, num_blocks=[1], num_classes=3, one_cycle=None, top_losses=1)
        data = CIFAR10DataModule(str(tiny_cifar), batch_size=batch_size, pad=0, flip=False)
        trainer = L.Trainer(max_epochs=2, max_steps=max_steps, limit_val_batches=0, logger=False,
                            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                            default_root_dir=tmp_path, accelerator="cpu",
                            callbacks=[MaxStepsResume(), EpochLengthResume(), ImagePrints(str(record))])
        trainer.fit(model, data, ckpt_path=ckpt_path)
        return trainer

    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    fit(4, whole)
    fit(2, resumed, max_steps=12 + 4).save_checkpoint(tmp_path / "stopped.ckpt")
    with pytest.warns(UserWarning, match="the run trained 12 batches an epoch, this training 6: it goes on after 2 of"):
        fit(4, resumed, ckpt_path=tmp_path / "stopped.ckpt")
    assert resumed.read_text().splitlines() == whole.read_text().splitlines()


class SaveAndCrashAtBatch(L.Callback):
    """After `batches` training batches, saves last.ckpt from the batch's end hook (as TimedSave does), then crashes."""

    def __init__(self, batches: int):
        self.batches, self.seen = batches, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.seen += 1
        if self.seen == self.batches:
            trainer.save_checkpoint(Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt")
            raise RuntimeError("simulated crash")


@pytest.mark.parametrize("step", [9, 11])
def test_the_schedule_and_the_data_go_on_from_the_same_batch_after_a_resume_with_other_batches_an_epoch(step,
                                                                                                       tiny_cifar,
                                                                                                       tmp_path):
    """Rounded each its own way, the phase scheduler's position and the data's came apart by a batch: from 6 batches
    an epoch to 3 after 5 of them (2.5 at 8 a batch), the schedule was at its end while a batch of data remained, and
    the resume trained nothing (no validation, no metrics); after 3 (1.5) the last batch trained at the lr of the
    cycle's middle. Both go on from the batch the stopped run was in (a few images again), to the cycle's end."""
    runs = tmp_path / "runs"
    make = job(tiny_cifar, runs, "--data.pad", "0", "--data.flip", "false", "--trainer.max_epochs", "2",
               "--trainer.logger", "false")
    lrs = ["--trainer.callbacks+=test_train_cli.LrAtBatchStart"]
    train.main([*make, "--data.batch_size", "8", "--run_name", "whole", *lrs,
                f"--trainer.callbacks.record={tmp_path / 'whole_lr'}"])
    crash = {"class_path": "test_train_runs.SaveAndCrashAtBatch", "init_args": {"batches": step}}  # a step each
    with pytest.raises(RuntimeError, match="simulated crash"):
        train.main([*make, "--data.batch_size", "4", "--run_name", "r", f"--trainer.callbacks+={json.dumps(crash)}"])
    with pytest.warns(UserWarning, match=f"it goes on after {(step - 6) // 2} of them"):
        train.main([*make, "--data.batch_size", "8", "--run_name", "r", "--ckpt_path", "last", *lrs,
                    f"--trainer.callbacks.record={tmp_path / 'resumed_lr'}"])
    whole, resumed = (json.loads((runs / name / "results.json").read_text()) for name in ("whole", "r"))
    # the epoch's last batch trained, at the cycle's last lr, and validated
    assert resumed["global_step"] == step + 3 - (step - 6) // 2
    assert resumed["epochs"] == resumed["epochs_completed"] == 2  # in batches of this training
    last_lr = [json.loads((tmp_path / f"{name}_lr").read_text())[0][0] for name in ("resumed", "whole")]
    assert last_lr[0] == pytest.approx(last_lr[1])
    assert set(resumed["final_metrics"]) == set(whole["final_metrics"])


# batch size before and after, batches before the crash, batches accumulated a step before and after
@pytest.mark.parametrize("before, after, crash, accumulate", [(4, 2, 9, (2, 2)), (2, 8, 18, (2, 2)), (4, 2, 7, (2, 2)),
                                                               (4, 4, 9, (2, 1))])  # (only the accumulation changes)
def test_with_gradient_accumulation_the_schedule_steps_for_the_batches_the_data_goes_on_after(before, after, crash,
                                                                                              accumulate, tiny_cifar,
                                                                                              tmp_path):
    """Accumulating 2 batches a step, the scheduler counted the steps done and the data the batches: stopped in the
    middle of a step, the two came apart (from 6 batches of 4 to 12 of 2 after 3: the schedule a step behind, its last
    step at lr 0.02 instead of 0.0101; from 12 of 2 to 3 of 8 after 6: a step ahead, the epoch's last batch left
    untrained, no validation). The schedule now takes the steps of the batches the data goes on after."""
    runs = tmp_path / "runs"
    make = job(tiny_cifar, runs, "--data.pad", "0", "--data.flip", "false", "--trainer.max_epochs", "2",
               "--trainer.logger", "false")
    lrs = ["--trainer.callbacks+=test_train_cli.LrAtBatchStart"]
    accumulate = [["--trainer.accumulate_grad_batches", str(n)] for n in accumulate]
    train.main([*make, *accumulate[1], "--data.batch_size", str(after), "--run_name", "whole", *lrs,
                f"--trainer.callbacks.record={tmp_path / 'whole_lr'}"])
    crash_at = {"class_path": "test_train_runs.SaveAndCrashAtBatch", "init_args": {"batches": crash}}
    with pytest.raises(RuntimeError, match="simulated crash"):
        train.main([*make, *accumulate[0], "--data.batch_size", str(before), "--run_name", "r",
                    f"--trainer.callbacks+={json.dumps(crash_at)}"])
    train.main([*make, *accumulate[1], "--data.batch_size", str(after), "--run_name", "r", "--ckpt_path", "last", *lrs,
                f"--trainer.callbacks.record={tmp_path / 'resumed_lr'}"])
    whole, resumed = (json.loads((runs / name / "results.json").read_text()) for name in ("whole", "r"))
    assert resumed["epochs"] == resumed["epochs_completed"] == 2  # the epoch's last batch trained
    assert set(resumed["final_metrics"]) == set(whole["final_metrics"])  # and validated
    last_lr = [json.loads((tmp_path / f"{name}_lr").read_text())[0][0] for name in ("resumed", "whole")]
    assert last_lr[0] == pytest.approx(last_lr[1])  # at the cycle's last lr


def batch_progress(current: int, total: int):
    from lightning.pytorch.loops.progress import _BatchProgress
    progress = _BatchProgress()
    for counts, n in ((progress.current, current), (progress.total, total)):
        counts.ready = counts.started = counts.processed = counts.completed = n
    return progress


def resuming_trainer(progress, batches=4, restarting=True, in_batch_end_hook=False, schedulers=(), max_steps=-1):
    """A stand-in Trainer resuming with `progress` for EpochLengthResume: `batches` an epoch, lr schedulers of those
    intervals."""
    epoch_loop = SimpleNamespace(batch_progress=progress, restarted_on_train_batch_end=in_batch_end_hook)
    return SimpleNamespace(num_training_batches=batches, fit_loop=SimpleNamespace(restarting=restarting,
                                                                                   epoch_loop=epoch_loop),
                           lr_scheduler_configs=[SimpleNamespace(interval=i) for i in schedulers], max_steps=max_steps)


@pytest.mark.parametrize("max_steps", [30, -1])
def test_a_resume_with_other_batches_an_epoch_says_max_steps_counts_the_steps_of_both(max_steps):
    progress = batch_progress(12, 24)
    trainer = resuming_trainer(progress, restarting=False, max_steps=max_steps)
    resume = EpochLengthResume()
    resume.load_state_dict({"batches": 12})
    resume.on_fit_start(trainer, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resume.on_train_start(trainer, None)
    said = [str(w.message) for w in caught]
    assert said == ([] if max_steps == -1 else [  # -1: none given
        "the run trained 12 batches an epoch, this training 4: --trainer.max_steps 30 counts the steps of both, so the "
        "run ends at another epoch than it would have; --trainer.max_epochs counts epochs"])


@pytest.mark.parametrize("in_batch_end_hook", [False, True])
def test_a_checkpoint_saved_in_a_batchs_end_hook_goes_on_after_the_share_of_batches_counting_that_one(
        in_batch_end_hook):
    """TimedSave's saves (in on_train_batch_end) hold the batch processed, not completed; Lightning completes it as it
    resumes. After 3 of 12 batches (a quarter), a run of 4 batches an epoch goes on after 1 (0 if that batch were
    left out: 2 of 12 make 0.67 of a batch)."""
    progress = batch_progress(3, 12 + 3)  # and an epoch of 12 before, in the totals
    if in_batch_end_hook:
        progress.current.completed -= 1
        progress.total.completed -= 1
    trainer = resuming_trainer(progress, in_batch_end_hook=in_batch_end_hook)
    resume = EpochLengthResume()
    resume.load_state_dict({"batches": 12})
    with pytest.warns(UserWarning, match="the run trained 12 batches an epoch, this training 4: it goes on after 1 of"):
        resume.on_train_start(trainer, None)
    completed = 1 - in_batch_end_hook  # Lightning adds the hook's batch as it resumes
    counts = progress.current
    assert (counts.ready, counts.started, counts.processed, counts.completed) == (1, 1, 1, completed)
    counts = progress.total  # the earlier epoch: 4 batches of this training
    assert (counts.ready, counts.started, counts.processed, counts.completed) == (5, 5, 5, 4 + completed)
    assert all(type(getattr(c, n)) is int for c in (progress.current, progress.total)  # Lightning's counts: whole
               for n in ("ready", "started", "processed", "completed"))
    assert resume.state_dict() == {"batches": 4}


def test_at_an_epochs_end_a_resume_with_other_batches_an_epoch_counts_the_earlier_epochs_in_the_new_ones():
    # (results.json's epochs: 2 epochs of 12, then 2 of 4, said 16 / 4 = 4 epochs; a step-counting lr scheduler is
    # named: it goes on by the step)
    progress = batch_progress(12, 24)  # the 2nd epoch's end
    trainer = resuming_trainer(progress, restarting=False, schedulers=["step"])
    resume = EpochLengthResume()
    resume.load_state_dict({"batches": 12})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resume.on_train_start(trainer, None)
    assert [str(w.message) for w in caught] == [
        "the run trained 12 batches an epoch, this training 4: the model's lr scheduler counts steps, and goes on at "
        "the step it was at, not the epoch (the configs' TrainingPhaseScheduler goes on at the same epoch)"]
    assert (progress.current.completed, progress.total.ready, progress.total.completed) == (4, 8, 8)


@pytest.mark.parametrize("done, said", [(0, None), (1, "it goes on after 0 of them"),
                                        (11, "it goes on after 3 of them")])
def test_the_shift_inside_an_epoch_is_said_and_not_at_its_start(done, said):
    progress = batch_progress(done, 12 + done)
    trainer = resuming_trainer(progress)
    resume = EpochLengthResume()
    resume.load_state_dict({"batches": 12})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resume.on_train_start(trainer, None)
    assert [str(w.message).partition(": ")[2].partition(",")[0] for w in caught] == ([said] if said else [])
    assert (progress.current.completed, progress.total.completed) == (done * 4 // 12, 4 + done * 4 // 12)


@pytest.mark.parametrize("case", ["checkpoint without the length", "same length", "endless loader"])
def test_a_resume_that_cannot_or_need_not_shift_its_position_keeps_lightnings(case):
    progress = batch_progress(3, 3)
    trainer = resuming_trainer(progress, batches=float("inf") if case == "endless loader" else 4, schedulers=["step"])
    resume = EpochLengthResume()
    assert resume.state_dict() == {"batches": None}  # a save before training knows no length
    if case != "checkpoint without the length":  # (one of train.py before 2026-11-30)
        resume.load_state_dict({"batches": 4 if case == "same length" else 12})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resume.on_train_start(trainer, None)
    for counts in (progress.current, progress.total):
        assert (counts.ready, counts.started, counts.processed, counts.completed) == (3, 3, 3, 3)
    assert resume.state_dict() == {"batches": None if case == "endless loader" else 4}


class BatchDtypes(L.Callback):
    """Records the dtypes of each training batch's float tensors and of the model's weights."""

    def __init__(self, record: str):
        self.record = record

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        tensors = batch if isinstance(batch, list | tuple) else [batch]
        floats = sorted({str(t.dtype) for t in tensors if t.is_floating_point()})
        weights = sorted({str(p.dtype) for p in pl_module.parameters()})
        with open(self.record, "a") as record:
            record.write(f"{' '.join(floats)} | {' '.join(weights)}\n")


@pytest.mark.parametrize("system", ["darknet", "wgan", "cyclegan"])
def test_true_half_precision_feeds_the_model_bf16_images(system, tiny_cifar, tiny_unpaired, tmp_path):
    """Lightning converts a batch before on_after_batch_transfer, while it is uint8: the float32 images made there
    met the bf16 weights (\"Input type (torch.FloatTensor) and weight type (CPUBFloat16Type)\", a traceback)."""
    runs, record, steps = tmp_path / "runs", tmp_path / "record", 2
    if system == "darknet":
        make = job(tiny_cifar, runs, "--data.batch_size", "4")
    elif system == "cyclegan":
        make, steps = cyclegan_job(tiny_unpaired, runs), 6
    else:
        make = wgan_job(tiny_cifar, runs)
    train.main([*make, "--trainer.precision", "bf16-true", "--trainer.max_steps", str(steps), "--run_name", "r",
                "--trainer.callbacks+=test_train_runs.BatchDtypes", f"--trainer.callbacks.record={record}"])
    assert set(record.read_text().splitlines()) == {"torch.bfloat16 | torch.bfloat16"}
    assert json.loads((runs / "r" / "results.json").read_text())["global_step"] == steps


def test_final_lr_is_the_lr_of_the_last_batch_not_the_next_epochs(tiny_unpaired, tmp_path):
    """The CycleGAN's linear decay set each optimizer's lr for an epoch after the last: results.json said 0."""
    runs = tmp_path / "runs"
    train.main([*cyclegan_job(tiny_unpaired, runs, "--data.num_workers", "0"), "--model.n_epochs", "1",
                "--model.n_epochs_decay", "1", "--run_name", "r"])
    # epoch 1 of n_epochs 1 + n_epochs_decay 1 trains at (1 + 1 - 1) / (1 + 1) of lr 2e-4; the next would be at 0
    final_lr = json.loads((runs / "r" / "results.json").read_text())["final_lr"]
    assert final_lr == [[pytest.approx(1e-4)]] * 3


def test_a_cyclegan_fast_dev_run_trains_as_many_batches_as_asked(tiny_unpaired, tmp_path):
    """Lightning's fast_dev_run N sets max_steps N, a third of N batches of three optimizer steps."""
    runs = tmp_path / "runs"
    train.main([*cyclegan_job(tiny_unpaired, runs, "--data.num_workers", "0"), "--trainer.fast_dev_run", "2",
                "--run_name", "r"])
    results = json.loads((runs / "r" / "results.json").read_text())
    assert (results["batches"], results["global_step"]) == (2, 6)


class TwoLoaders(L.LightningModule):
    """Trains on a dict of two loaders (12 and 6 batches: Lightning cycles the shorter) and records batch prints."""

    def __init__(self):
        super().__init__()
        self.linear, self.prints = torch.nn.Linear(3, 3), []

    def training_step(self, batch, batch_idx):
        images, labels = batch["long"]
        self.prints.append((self.current_epoch, batch_idx, images.double().sum().item()))
        return F.cross_entropy(self.linear(images.float().mean((2, 3))), labels)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


class TwoLoaderData(CIFAR10DataModule):
    def train_dataloader(self):
        return {"long": self._batches(self.train_images, self.train_labels, 2, True),
                "short": self._batches(self.train_images, self.train_labels, 4, True)}

    def on_after_batch_transfer(self, batch, dataloader_idx):
        return batch


def test_a_resume_inside_an_epoch_of_two_loaders_trains_the_rest_of_it(tiny_cifar, tmp_path):
    """The shorter loader, cycled by Lightning, skipped the batches trained again at each new start: with more to
    skip than it has, it came back empty and ended the epoch 4 batches early."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    def fit(root, ckpt_path=None, callbacks=()):
        L.seed_everything(0, verbose=False)
        model = TwoLoaders()
        L.Trainer(default_root_dir=root, logger=False, enable_progress_bar=False, enable_model_summary=False,
                  callbacks=list(callbacks), max_epochs=2, limit_val_batches=0).fit(
            model, datamodule=TwoLoaderData(str(tiny_cifar), download=False), ckpt_path=ckpt_path)
        return model.prints

    whole = fit(tmp_path / "whole", callbacks=[ModelCheckpoint(every_n_train_steps=8, save_top_k=-1,
                                                               filename="{step}")])
    assert len(whole) == 24 and fit(tmp_path / "resumed", tmp_path / "whole" / "checkpoints" / "step=8.ckpt") == \
        whole[8:]


def test_each_rank_and_each_resume_draw_their_own_random_numbers():
    """seed_everything seeds every DDP process alike (the WGAN's ranks drew the same noise), and a resume replayed the
    run's first random numbers; one process from step 0 keeps the seed's own."""
    def draws(rank=None, step=0):
        torch.manual_seed(0), np.random.seed(0), random.seed(0)
        if rank is not None:
            SeedPerRankAndStep().on_train_start(SimpleNamespace(global_rank=rank, global_step=step), None)
        return torch.randn(3).tolist(), np.random.rand(), random.random()  # torch's, numpy's and Python's

    plain = draws()
    assert draws(0, 0) == plain
    streams = [plain, draws(1, 0), draws(0, 5), draws(1, 5)]  # rank 1; a resume at step 5 on rank 0, on rank 1
    assert draws(1, 5) == streams[3]  # the same rank and step, the same numbers
    for i, one in enumerate(streams):
        for other in streams[i + 1:]:
            assert all(a != b for a, b in zip(one, other, strict=True))
    # any rank and step: numpy takes seeds below 2**32 only (a seed past it fails half the (rank, step) pairs)
    assert len({draws(rank, step)[1] for rank in range(4) for step in range(1, 9)}) == 32


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
                                                       "--trainer.callbacks+=test_train_runs.CtrlCAt",
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
                               "2", "--trainer.callbacks+=test_train_runs.SlowTestBatches",
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


def cyclegan_job(data_dir, runs, *extra):
    """A CycleGAN whose images are decoded by 2 DataLoader workers (the darknet's loader has none)."""
    return ["--system", "cyclegan", "--data.data_dir", str(data_dir), "--data.batch_size", "1", "--data.load_size",
            "36", "--data.crop_size", "32", "--data.num_workers", "2", "--model.n_blocks", "1", "--model.ngf", "4",
            "--model.ndf", "4", "--model.log_images_every_n_batches", "0", "--trainer.max_epochs", "2",
            "--trainer.default_root_dir", str(runs), "--trainer.logger", "false", "--trainer.enable_progress_bar",
            "false", "--trainer.enable_model_summary", "false", *extra]


# a terminal's Ctrl-C, `timeout` and scancel signal the workers too; SIGINT with the slow tests
@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143),
                                            pytest.param(signal.SIGINT, 130, marks=pytest.mark.slow)])
def test_a_stop_signal_to_the_whole_process_group_still_saves_last(tiny_unpaired, tmp_path, signum, status):
    runs, markers = tmp_path / "runs", tmp_path / "markers"
    markers.mkdir()
    # 6 batches an epoch (trainB: 5 images and a grayscale one), 3 optimizer steps a batch; signalled after the 2nd
    process = start_script(cyclegan_job(tiny_unpaired, runs, "--trainer.callbacks+=test_train_runs.SlowBatches",
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
                            "--trainer.callbacks+=test_train_runs.StartStep"))
    assert (run_dir / "start_step").read_text() == str(stopped_at)
    assert json.loads((run_dir / "results.json").read_text())["global_step"] == 36  # 2 epochs of 6 batches


class StartStep(L.Callback):
    """Writes the step training (re)starts at into the run folder."""

    def on_train_start(self, trainer, pl_module):
        Path(trainer.default_root_dir, "start_step").write_text(str(trainer.global_step))


def test_a_run_that_ends_mid_epoch_leaves_last_ckpt_at_its_last_step(tiny_cifar, tmp_path):
    """A 1cycle of 1.5 epochs ends the run in the middle of its second epoch, with no validation there, so the
    config's ModelCheckpoint (after validations) holds the first epoch's weights: last.ckpt must still hold the
    final ones, which results.json names, the classify command reads and a resume continues from."""
    runs, config = tmp_path / "runs", tmp_path / "short_cycle.yaml"
    config.write_text("trainer:\n  callbacks:\n    - class_path: callbacks.TrainingPhaseScheduler\n      init_args:\n"
                      "        one_cycle: {div: 20, pct: 20, max_mom: 0.95, min_mom: 0.85, cycle_len: 1.5}\n"
                      "    - class_path: lightning.pytorch.callbacks.ModelCheckpoint\n      init_args:\n"
                      "        {monitor: val/acc, mode: max, save_last: true}\n")
    train.main(job(tiny_cifar, runs, "--run_name", "r", "--config", str(config), "--trainer.max_epochs", "2"))
    results = json.loads((runs / "r" / "results.json").read_text())  # 3 batches of 8 an epoch: 4 steps in 1.5
    saved = torch.load(results["checkpoint"]["last"], weights_only=False)
    assert results["global_step"] == saved["global_step"] == 4
    train.main(job(tiny_cifar, runs, "--run_name", "r", "--ckpt_path", "last", "--trainer.max_steps", "5",
                   "--trainer.max_epochs", "3", "--trainer.callbacks+=test_train_runs.StartStep"))
    assert (runs / "r" / "start_step").read_text() == "4"  # where the first run ended


def test_a_config_without_a_checkpoint_callback_keeps_lightnings_in_the_run_folder(tiny_cifar, tmp_path):
    runs = tmp_path / "runs"
    args = ["--run_name", "r", "--model.one_cycle", "[20, 20, 0.95, 0.85]", "--trainer.callbacks", "[]"]
    train.main(job(tiny_cifar, runs, *args))
    assert torch.load(runs / "r" / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 3
    train.main(job(tiny_cifar, runs, *args, "--ckpt_path", "last"))  # finds it: a finished run, nothing to add
    assert json.loads((runs / "r" / "results.json").read_text())["global_step"] == 3


def test_the_torch_one_cycle_path_resumed_over_more_epochs_trains_on_at_its_final_lr(tiny_cifar, tmp_path):
    """--model.one_cycle keeps the cycle the run began with (torch's OneCycleLR raised past its total_steps, after the
    resume had trained a step)."""
    runs = tmp_path / "runs"
    args = ["--run_name", "r", "--model.one_cycle", "[20, 20, 0.95, 0.85]", "--trainer.callbacks", "[]"]
    train.main(job(tiny_cifar, runs, *args))  # one epoch: 3 steps
    first = json.loads((runs / "r" / "results.json").read_text())
    with pytest.warns(UserWarning, match="--model.one_cycle was planned over 3 steps, the training the run began "
                                         "with, and is kept: the steps after it train at its final lr"):
        train.main(job(tiny_cifar, runs, *args, "--ckpt_path", "last", "--trainer.max_epochs", "2"))
    again = json.loads((runs / "r" / "results.json").read_text())
    assert again["global_step"] == 6 and again["final_lr"] == first["final_lr"]  # held, not extrapolated


def test_one_cycle_then_hold_is_torchs_one_cycle_then_its_last_values():
    from lightning_modules.darknet_classifier import OneCycleThenHold
    kwargs = {"max_lr": 0.4, "total_steps": 20, "pct_start": 0.4, "anneal_strategy": "linear", "three_phase": True,
              "div_factor": 20, "final_div_factor": 100, "base_momentum": 0.85, "max_momentum": 0.95}
    seen = []
    for cls in (torch.optim.lr_scheduler.OneCycleLR, OneCycleThenHold):
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.1, momentum=0.9)
        schedule, values = cls(optimizer, **kwargs), []
        for _ in range(20 if cls is torch.optim.lr_scheduler.OneCycleLR else 25):
            values.append((optimizer.param_groups[0]["lr"], optimizer.param_groups[0]["momentum"]))
            optimizer.step()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                schedule.step()
        seen.append(values)
    torch_values, ours = seen
    assert ours[:20] == torch_values and ours[20:] == [torch_values[-1]] * 5
    assert torch_values[-1][0] == pytest.approx(0.4 / 20 / 100)  # the cycle's end: lr / div / final_div


def test_a_named_run_that_stopped_before_training_can_be_retried_under_its_name(tiny_cifar, tmp_path):
    """A refused run leaves no folder; one that stopped in its set-up all the same (killed there, or left by a train.py
    before that) is retried in, and kept when the retry is refused too: the folder was there before."""
    runs = tmp_path / "runs"
    a_run(runs, "mine", started=100.0, trained=False, checkpoint=False)
    with pytest.raises(train.UserError, match="--data.data_dir"):
        train.main(job(tiny_cifar / "absent", runs, "--data.download", "false", "--run_name", "mine"))
    assert json.loads((runs / "mine" / "run.json").read_text())["started"] == 100.0
    train.main(job(tiny_cifar, runs, "--run_name", "mine"))  # the same name, now with the right path
    assert json.loads((runs / "mine" / "run.json").read_text())["trained"] is True
    with pytest.raises(train.UserError, match="mine exists already"):  # a run that trained is still protected
        train.main(job(tiny_cifar, runs, "--run_name", "mine"))


def test_a_run_that_made_a_folder_another_process_locked_first_leaves_it_alone(tiny_cifar, tmp_path, monkeypatch):
    """Two jobs given the same new --run_name: one makes the folder, the other takes its lock first and trains there;
    the first is refused by the lock and removes nothing (it removed the other's folder, lock and run.json)."""
    import fcntl
    runs = tmp_path / "runs"
    hold = run_folder.hold_run_lock
    other = []

    def the_other_job_locks_first(run_dir):
        other.append(open(run_dir / ".lock", "a+"))
        fcntl.flock(other[0], fcntl.LOCK_EX | fcntl.LOCK_NB)
        (run_dir / "run.json").write_text('{"trained": true}')
        hold(run_dir)
    monkeypatch.setattr(run_folder, "hold_run_lock", the_other_job_locks_first)
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
    rmtree, locked = run_folder.shutil.rmtree, []

    def another_process_tries_the_lock(path, *args, **kwargs):
        with open(path / ".lock", "a+") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                locked.append(False)
            except BlockingIOError:
                locked.append(True)
        rmtree(path, *args, **kwargs)
    monkeypatch.setattr(run_folder.shutil, "rmtree", another_process_tries_the_lock)
    with pytest.raises(train.UserError, match="--data.data_dir"):
        train.main(job(tiny_cifar / "absent", runs, "--trainer.logger", "false", "--data.download", "false",
                       "--run_name", "typo"))
    assert locked == [True] and not runs.exists()


@pytest.mark.parametrize("option, short, full", [
    ("--data", "ImageFolderDataModule", "datamodules.ImageFolderDataModule"),
    ("--model", "DarknetClassifier", "lightning_modules.DarknetClassifier")])
def test_classes_are_found_by_their_short_names(option, short, full, capsys):
    with pytest.raises(SystemExit):
        train.main(["--system", "darknet", option, short, "--print_config"])
    assert f"class_path: {full}" in capsys.readouterr().out


def test_last_passes_over_a_newer_run_that_stopped_before_training(tiny_cifar, tmp_path):
    """A refused run leaves no folder; a job killed in its set-up (or a train.py before that) left one, marked
    "trained": false."""
    runs = tmp_path / "runs"
    train.main(job(tiny_cifar, runs, "--run_name", "finished"))
    with pytest.raises(train.UserError, match="--data.data_dir"):  # a typo: stops in the data set-up
        train.main(job(tiny_cifar / "absent", runs, "--data.download", "false", "--run_name", "typo"))
    assert not (runs / "typo").exists()
    a_run(runs, "killed", started=time.time(), trained=False, checkpoint=False)
    assert json.loads((runs / "finished" / "run.json").read_text())["trained"] is True
    train.main(job(tiny_cifar, runs, "--ckpt_path", "last", "--trainer.max_epochs", "2"))  # resumes "finished"
    assert json.loads((runs / "finished" / "results.json").read_text())["epochs"] == 2.0
    assert sorted(p.name for p in run_folders(runs)) == ["finished", "killed"]


def test_last_refuses_a_newer_run_without_checkpoint_and_leaves_the_older_one_alone(tiny_cifar, tmp_path):
    runs = tmp_path / "runs"
    train.main(job(tiny_cifar, runs))
    (finished,) = run_folders(runs)
    before = (finished / "results.json").read_bytes()
    with pytest.raises(RuntimeError, match="simulated crash"):  # killed before its first checkpoint
        train.main(job(tiny_cifar, runs, "--trainer.callbacks+=conftest.CrashAtEpoch",
                       "--trainer.callbacks.epoch", "0"))
    (newer,) = set(run_folders(runs)) - {finished}
    assert not (newer / "checkpoints" / "last.ckpt").exists()
    with pytest.raises(train.UserError, match=f"the newest darknet run, {newer}, has no checkpoint.*"
                                              f"--run_name {finished.name} --ckpt_path last"):
        train.main(job(tiny_cifar, runs, "--ckpt_path", "last"))
    assert (finished / "results.json").read_bytes() == before and set(run_folders(runs)) == {finished, newer}
    # --run_name narrows it to the older run, which carries on in its own folder
    train.main(job(tiny_cifar, runs, "--ckpt_path", "last", "--run_name", finished.name,
                   "--trainer.max_epochs", "2"))
    assert json.loads((finished / "results.json").read_text())["epochs"] == 2.0
    assert not (newer / "results.json").exists()


def test_last_skips_the_newer_run_of_another_system_sharing_the_root(tiny_cifar, tmp_path):
    runs = tmp_path / "runs"
    train.main(job(tiny_cifar, runs))
    (darknet,) = run_folders(runs)
    wgan = runs / "wgan-run"  # newer, with a checkpoint, but a WGAN's
    (wgan / "checkpoints").mkdir(parents=True)
    (wgan / "checkpoints" / "last.ckpt").write_bytes(b"not ours")
    (wgan / "run.json").write_text(json.dumps({"model": "lightning_modules.WGAN", "started": time.time() + 60}))
    train.main(job(tiny_cifar, runs, "--ckpt_path", "last", "--trainer.max_epochs", "2"))
    assert json.loads((darknet / "results.json").read_text())["epochs"] == 2.0
    assert sorted(p.name for p in wgan.rglob("*")) == ["checkpoints", "last.ckpt", "run.json"]
    with pytest.raises(train.UserError, match="belongs to a wgan run, this is darknet; use --system wgan"):
        train.main(job(tiny_cifar, runs, "--ckpt_path", "last", "--run_name", "wgan-run"))


def test_a_slurm_requeue_carries_on_in_its_folder_from_last(tiny_cifar, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    monkeypatch.setenv("SLURM_JOB_ID", "4242")  # a requeued job keeps its id; Lightning saw no hpc_ckpt here
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)  # the job's first launch
    with pytest.raises(RuntimeError, match="simulated crash"):
        train.main(job(tiny_cifar, runs, "--trainer.max_epochs", "2", "--trainer.callbacks+=conftest.CrashAtEpoch"))
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")  # SLURM counts the requeue
    train.main(job(tiny_cifar, runs, "--trainer.max_epochs", "2"))
    (run_dir,) = run_folders(runs)
    results = json.loads((run_dir / "results.json").read_text())
    assert run_dir.name == "slurm-4242" and results["global_step"] == 6 and results["epochs"] == 2.0
    assert results["resumed_from"] == str(run_dir / "checkpoints" / "last.ckpt")  # not restarted from scratch


@contextlib.contextmanager
def options_warnings():
    """The warnings of a resume whose --model/--data options differ from the run's, recorded."""
    said = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield said
    said.extend(str(w.message) for w in caught if "this resume's options differ from the run's" in str(w.message))


def test_a_resume_with_other_options_than_the_runs_says_which_and_how_to_resume_as_it_began(tiny_cifar, tmp_path):
    """A resume that forgot an option of the run's start (a style run's --data.style) went on with the default
    without a word; the options that keep the network's shapes pass check_checkpoint."""
    runs = tmp_path / "runs"
    began = ["--model.lr", "0.2", "--data.pad", "2"]
    train.main(job(tiny_cifar, runs, "--run_name", "r", *began))
    run_dir = runs / "r"
    last = run_dir / "checkpoints" / "last.ckpt"
    with options_warnings() as said:  # the run's own options (a list, [1], read back from the checkpoint): nothing
        train.main(job(tiny_cifar, runs, "--run_name", "r", *began, "--ckpt_path", "last", "--trainer.max_epochs", "2"))
    assert said == []
    with options_warnings() as said:
        train.main(job(tiny_cifar, runs, "--run_name", "r", "--model.lr", "0.1", "--data.pad", "0", "--data.flip",
                       "false", "--ckpt_path", "last", "--trainer.max_epochs", "3"))
    assert len(said) == 1, said
    for changed in ("--model.lr: the run's 0.2, this resume's 0.1", "--data.pad: the run's 2, this resume's 0",
                    "--data.flip: the run's true, this resume's false",
                    f"python train.py --config {run_dir / 'config.yaml'} --ckpt_path {last}"):
        assert changed in said[0], said[0]
    assert "error" not in said[0].lower()  # a resume may change options: it goes on with them
    assert json.loads((run_dir / "results.json").read_text())["global_step"] == 9  # and it did
    with options_warnings() as said:  # as the run began, after a resume that changed them: not that command again
        train.main(["--config", str(run_dir / "config.yaml"), "--ckpt_path", str(last), "--trainer.max_epochs", "4"])
    assert len(said) == 1 and "--model.lr: the run's 0.1, this resume's 0.2" in said[0], said
    assert f"gives the run's config {run_dir / 'config.yaml'} already" in said[0] and "--config" not in said[0]
    with options_warnings() as said:  # a new run from the weights changes options on purpose
        train.main(job(tiny_cifar, runs, "--run_name", "tuned", "--init_from", str(run_dir), "--model.lr", "0.05",
                       "--data.flip", "false"))
    assert said == []


def test_a_copied_checkpoint_names_the_runs_values_as_flags(tmp_path):
    """Without a run folder's config.yaml: the options to give, as on the command line; a list and a tuple of the
    same values, and 1 and 1.0, are the same option, and LightningCLI's own entries are no options."""
    state = {"hyper_parameters": {"_class_path": "a.Model", "_instantiator": "x", "num_blocks": (1, 2), "lr": 1,
                                  "tta": "flip", "widths": None},
             "datamodule_hyper_parameters": {"_class_path": "d.Data", "style": "my style.jpg", "size": 64}}
    model = SimpleNamespace(hparams={"_class_path": "a.Model", "_instantiator": "y", "num_blocks": [1, 2],
                                     "lr": 1.0, "tta": "none", "widths": [8, 16], "new_option": 3})
    data = SimpleNamespace(hparams={"_class_path": "d.Data", "style": None, "size": 64})
    said = checkpoints.changed_options_warning(str(tmp_path / "copied.ckpt"), state, model, data)
    assert ("--model.tta: the run's flip, this resume's none; --model.widths: the run's null, this resume's '[8, 16]'; "
            "--data.style: the run's 'my style.jpg', this resume's null.") in said
    assert said.endswith(f"give --model.tta flip --model.widths null --data.style 'my style.jpg' --ckpt_path "
                            f"{tmp_path / 'copied.ckpt'}")
    said = checkpoints.changed_options_warning(str(tmp_path / "copied.ckpt"), state, model, SimpleNamespace(hparams={
        "_class_path": "d.Data", "style": "my style.jpg", "size": 64}))  # the data as the run's
    assert "--data.style" not in said and "--model.widths" in said
    said = checkpoints.changed_options_warning(str(tmp_path / "copied.ckpt"), state, None, SimpleNamespace(hparams={
        "_class_path": "other.Folders", "style": "my style.jpg"}))  # another data module class
    assert "--data: the run's d.Data, this resume's other.Folders. " in said
    assert checkpoints.changed_options_warning(str(tmp_path / "copied.ckpt"), state, SimpleNamespace(hparams={
        **state["hyper_parameters"], "tta": "flip"}), None) is None


def test_an_earlier_checkpoint_of_a_run_is_not_carried_on_in_that_run_but_in_a_new_one(tiny_cifar, tmp_path):
    """Carried on in place, its later last.ckpt, test outputs and results.json were replaced without a word."""
    import shutil
    runs = tmp_path / "runs"
    train.main(job(tiny_cifar, runs, "--run_name", "r"))
    run_dir = runs / "r"
    earlier = shutil.copy(run_dir / "checkpoints" / "last.ckpt", run_dir / "checkpoints" / "epoch1.ckpt")
    train.main(job(tiny_cifar, runs, "--run_name", "r", "--ckpt_path", "last", "--trainer.max_epochs", "2"))
    assert "run_name: null" in (run_dir / "config.yaml").read_text()  # the folder's name, run-specific as its place
    with pytest.raises(train.UserError, match=r"the run is at epoch 2, past --trainer.max_epochs 1; raise it to train"):
        train.main(job(tiny_cifar, runs, "--run_name", "r", "--ckpt_path", "last"))  # was Lightning's traceback
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    with pytest.raises(train.UserError, match=rf"--ckpt_path {earlier}: an earlier checkpoint of run r \(step 3; the "
                                              rf"run is at step 6\).*Add --run_name NEW"):
        train.main(job(tiny_cifar, runs, "--ckpt_path", str(earlier), "--trainer.max_epochs", "2"))
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before
    train.main(job(tiny_cifar, runs, "--ckpt_path", str(earlier), "--run_name", "fork", "--trainer.max_epochs", "2"))
    assert json.loads((runs / "fork" / "results.json").read_text())["global_step"] == 6
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before
    # its own last.ckpt: nothing left to train, nothing replaced but the config of this launch
    train.main(job(tiny_cifar, runs, "--ckpt_path", str(run_dir / "checkpoints" / "last.ckpt"), "--trainer.max_epochs",
                   "2"))
    assert json.loads((run_dir / "results.json").read_bytes()) == json.loads(before[run_dir / "results.json"])


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
            run_folder.hold_run_lock(tmp_path)
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
    """The after-fork release comes with the locks (callbacks.run_folder), not with train.py: a script that takes a
    run's lock through run_folder alone still has its forked workers let go of it."""
    code = ("import os, sys; from pathlib import Path; from callbacks import run_folder\n"
            "run_folder.hold_run_lock(Path(sys.argv[1]))\n"
            "child = os.fork()\n"
            "if child == 0:\n"
            "    os._exit(len(run_folder._held_locks))\n"
            "status = os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])\n"
            "print('train' in sys.modules, len(run_folder._held_locks), status)")
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
    monkeypatch.setattr(run_folder.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(run_folder.time, "sleep", sleep)
    monkeypatch.setattr(run_folder, "LOCK_PATIENCE_SECONDS", 10)
    (tmp_path / "r").mkdir()
    with open(tmp_path / "r" / ".lock", "a+") as stale:
        fcntl.flock(stale, fcntl.LOCK_EX | fcntl.LOCK_NB)
        stale.write("pid 99 on dead-node, SLURM job 77\n")
        stale.flush()
        monkeypatch.setenv("SLURM_JOB_ID", "77")  # a job's first launch (no restart count): refused at once
        with pytest.raises(train.UserError, match="being trained by another process"):
            run_folder.hold_run_lock(tmp_path / "r")
        assert slept == []
        monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
        run_folder.hold_run_lock(tmp_path / "r")
    assert slept == [5, 5]  # tried at 0, 5 and 10 s
    assert (f"warning: {tmp_path / 'r' / '.lock'} is still held (pid 99 on dead-node, SLURM job 77) after 10 s; this "
            "requeued job goes on without it") in capsys.readouterr().err
    assert tmp_path / "r" not in run_folder._held_locks
    run_folder.hold_run_lock(tmp_path / "r")  # released: held now, and the holder written for the next one
    assert (tmp_path / "r" / ".lock").read_text() == f"pid {os.getpid()} on {__import__('socket').gethostname()}, " \
                                                     f"SLURM job 77\n"


def test_a_checkpoints_step_is_read_from_either_of_torchs_formats(tmp_path):
    torch.save({"global_step": 7}, tmp_path / "zip.ckpt")
    torch.save({"global_step": 8}, tmp_path / "legacy.ckpt", _use_new_zipfile_serialization=False)
    (tmp_path / "torn.ckpt").write_bytes(b"PK")
    steps = [checkpoints.checkpoint_step(tmp_path / f"{name}.ckpt") for name in ("zip", "legacy", "torn")]
    assert steps == [7, 8, None]


def test_a_new_run_never_reuses_an_existing_folder(tiny_cifar, tmp_path):
    runs = tmp_path / "runs"
    train.main(job(tiny_cifar, runs, "--run_name", "mine"))
    with pytest.raises(train.UserError, match="mine exists already; resume it with --run_name mine --ckpt_path last"):
        train.main(job(tiny_cifar, runs, "--run_name", "mine"))


# ---- the folder choices themselves, called directly (no training: milliseconds, for tests/mutation.py run_folders)

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


def run_config(runs, ckpt_path=None, run_name=None, **trainer):
    trainer = Namespace(**{"default_root_dir": str(runs), "callbacks": [], "logger": False,
                           "enable_progress_bar": False, **trainer})
    return Namespace(trainer=trainer, model=Namespace(class_path=DARKNET), ckpt_path=ckpt_path, run_name=run_name)


@pytest.fixture
def no_ranks(monkeypatch):
    """The environment of a job started by hand: no rank, no SLURM job, no earlier run's hand-over. prepare_run called
    by hand notes its new folders and W&B ids for the clean-up of a refused train.main (which clears them when it
    ends): kept to the test, or a later train.main stopped before its training removed this test's folders too and
    named them in its "Stopped before the training began: removed ..." line."""
    for name in ("LOCAL_RANK", "RANK", "NODE_RANK", "SLURM_PROCID", "SLURM_JOB_ID", "SLURM_STEP_ID",
                 "SLURM_RESTART_COUNT", "DL2_RUN_NAME", "DL2_CKPT_PATH"):
        monkeypatch.delenv(name, raising=False)
    for name in ("_fresh_runs", "_fresh_wandb", "_resumed_wandb"):
        monkeypatch.setattr(run_folder, name, {})
    yield
    run_folder.release_run_locks()  # prepare_run called by hand holds its run's lock, as a training process would


def test_last_is_the_run_started_last_not_the_last_name(tmp_path):
    runs = tmp_path / "runs"
    a_run(runs, "b-first", started=100.0)
    a_run(runs, "a-second", started=200.0)
    a_run(runs, "c-a-test", started=300.0, kind="test")  # an evaluation's folder is no run to resume
    assert run_folder.newest_last_checkpoint(runs, DARKNET, None) == runs / "a-second" / "checkpoints" / "last.ckpt"


def test_last_takes_a_run_json_without_trained_from_a_train_py_before_that_key(tmp_path):
    runs = tmp_path / "runs"
    a_run(runs, "old", started=100.0)  # {"model", "started"}: no "trained", which came later
    assert run_folder.newest_last_checkpoint(runs, DARKNET, None) == runs / "old" / "checkpoints" / "last.ckpt"


def test_last_takes_a_run_json_without_a_start_time_as_older_than_any_started_run(tmp_path):
    runs = tmp_path / "runs"
    undated = a_run(runs, "undated", started=None)
    (undated / "run.json").write_text(json.dumps({"model": DARKNET}))  # written by hand, or by an older train.py
    a_run(runs, "early", started=0.5)
    assert run_folder.newest_last_checkpoint(runs, DARKNET, None) == runs / "early" / "checkpoints" / "last.ckpt"


def test_last_names_the_newest_folder_without_run_json_and_the_newest_older_run(tmp_path):
    runs = tmp_path / "runs"
    for name in ("20260101-000000", "20260102-000000", "20260103-000000"):
        a_run(runs, name, started=None)
    with pytest.raises(train.UserError, match=f"older train.py\\): give --ckpt_path {runs}/20260103-000000/check"):
        run_folder.newest_last_checkpoint(runs, DARKNET, None)
    for name, started in (("first", 100.0), ("second", 200.0), ("third", 300.0)):
        a_run(runs, name, started=started)
    newest = a_run(runs, "newest", started=400.0, checkpoint=False)
    with pytest.raises(train.UserError, match=r"has no checkpoint \(it stopped before its first save\); start a new "
                                              r"run without --ckpt_path; or resume an older run: --run_name third "
                                              r"--ckpt_path last"):
        run_folder.newest_last_checkpoint(runs, DARKNET, None)
    (newest / "results.json").write_text("{}")
    with pytest.raises(train.UserError, match=r"has no checkpoint \(it finished without one: its config keeps no"):
        run_folder.newest_last_checkpoint(runs, DARKNET, None)


def test_run_name_without_a_folder_or_a_checkpoint_says_what_to_do(tmp_path):
    runs = tmp_path / "runs"
    with pytest.raises(train.UserError, match="no run folder .*; runs there: none"):
        run_folder.newest_last_checkpoint(runs, DARKNET, "mine")
    a_run(runs, "mine", started=100.0, checkpoint=False)
    with pytest.raises(train.UserError, match="first save\\); start a new run without --ckpt_path"):
        run_folder.newest_last_checkpoint(runs, DARKNET, "mine")
    with pytest.raises(train.UserError, match="first save\\); give another run"):
        run_folder.newest_last_checkpoint(runs, DARKNET, "mine", evaluation=True)


def test_a_new_time_stamp_takes_the_first_free_suffix(tmp_path, monkeypatch):
    monkeypatch.setattr(run_folder.time, "strftime", lambda form: "20260101-120000")
    assert run_folder.new_time_stamped(tmp_path) == tmp_path / "20260101-120000"
    (tmp_path / "20260101-120000").mkdir()
    assert run_folder.new_time_stamped(tmp_path) == tmp_path / "20260101-120000-2"
    (tmp_path / "20260101-120000-2").mkdir()
    assert run_folder.new_time_stamped(tmp_path) == tmp_path / "20260101-120000-3"


def test_a_launched_evaluation_rank_reads_rank_0s_checkpoint(tmp_path, monkeypatch, no_ranks):
    checkpoint = a_run(tmp_path / "elsewhere", "r", started=100.0) / "checkpoints" / "last.ckpt"
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("DL2_CKPT_PATH", str(checkpoint))
    config = run_config(tmp_path / "runs", ckpt_path="last")  # no run here: rank 0 chose, this rank follows
    run_folder.resolve_checkpoint(config, "test")
    assert config.ckpt_path == str(checkpoint)


def test_last_in_a_requeued_slurm_job_is_its_own_folders_and_in_a_new_job_the_newest(tmp_path, monkeypatch, no_ranks):
    runs = tmp_path / "runs"
    a_run(runs, "slurm-77", started=100.0)
    a_run(runs, "other", started=200.0)
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    config = run_config(runs, ckpt_path="last")
    run_folder.resolve_checkpoint(config, "fit")
    assert config.ckpt_path == str(runs / "slurm-77" / "checkpoints" / "last.ckpt")
    monkeypatch.setenv("SLURM_JOB_ID", "78")
    config = run_config(runs, ckpt_path="last")
    run_folder.resolve_checkpoint(config, "fit")
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


def a_run_killed_as_last_ckpt_was_relinked(runs, name):
    """A CycleGAN run (save_last "link") killed inside Lightning's relink at epoch 1's end: epoch=000.ckpt and the old
    link removed, epoch=001.ckpt saved (step 36), last.ckpt a link to the removed file, or not yet made again."""
    run_dir = a_run(runs, name, started=100.0, model=CYCLEGAN, trained=True, checkpoint=False)
    (run_dir / "checkpoints").mkdir()
    torch.save({"global_step": 36}, run_dir / "checkpoints" / "epoch=001.ckpt")
    return run_dir


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
        run_folder.newest_last_checkpoint(runs, CYCLEGAN, run_name)


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


def test_a_named_run_of_a_train_py_before_trained_is_not_taken_over(tmp_path, no_ranks):
    runs = tmp_path / "runs"
    a_run(runs, "mine", started=100.0)  # no "trained": it trained, it is not a run that stopped before
    with pytest.raises(train.UserError, match="mine exists already"):
        run_folder.fit_folder(run_config(runs, run_name="mine"), runs, DARKNET)


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


def test_a_checkpoint_of_a_folder_without_run_json_resumes_in_that_folder(tmp_path, no_ranks):
    runs = tmp_path / "runs"
    old = a_run(runs, "20250101-000000", started=None)  # train.py before run.json
    config = run_config(runs, ckpt_path=str(old / "checkpoints" / "last.ckpt"))
    assert run_folder.fit_folder(config, runs, DARKNET) == old


def callback(name, **init_args):
    return Namespace(class_path=f"lightning.pytorch.callbacks.{name}", init_args=Namespace(**init_args))


def wandb_logger(**init_args):
    init_args = {"save_dir": None, "name": None, "id": None, "version": None, "offline": False, "log_model": True,
                 **init_args}
    return Namespace(class_path="lightning.pytorch.loggers.WandbLogger", init_args=Namespace(**init_args))


def test_prepare_run_points_checkpoints_and_the_wandb_run_at_the_run_folder(tmp_path, monkeypatch, no_ranks, capsys):
    runs = tmp_path / "new" / "runs"  # neither there yet
    monkeypatch.delenv("WANDB_MODE", raising=False)  # the resume below logs online, which WANDB_MODE=offline forbids
    monkeypatch.setattr(wandb_run, "wandb_logged_in", lambda: False)
    config = run_config(runs, run_name="r", logger=wandb_logger())
    config.trainer.callbacks = [callback("ModelCheckpoint", dirpath=None), callback("ModelCheckpoint", dirpath="/mine"),
                                callback("LearningRateMonitor")]
    run_folder.prepare_run(config, "fit")
    assert config.trainer.default_root_dir == str(runs / "r") and os.environ["DL2_RUN_NAME"] == "r"
    assert [c.init_args.get("dirpath") for c in config.trainer.callbacks] == [str(runs / "r" / "checkpoints"),
                                                                               "/mine", None]  # the monitor: a logger
    wandb = config.trainer.logger.init_args
    info = json.loads((runs / "r" / "run.json").read_text())
    assert info["kind"] == "fit" and info["trained"] is False and info["model"] == DARKNET
    assert (wandb.save_dir, wandb.name, wandb.id) == (str(runs / "r"), "r", info["wandb_id"])
    assert len(wandb.id) == 8 and (runs / "r" / "wandb").is_dir()
    assert wandb.offline is True and wandb.log_model is False  # not logged in: offline, which refuses log_model
    assert (wandb.tags, wandb.job_type) == (["darknet"], "fit")  # the dashboard's filters: the system, fit or test
    assert capsys.readouterr().out == (f"W&B: not logged in (`wandb login`), logging offline to {runs}/r/wandb; upload "
                                       f"later with `wandb sync {runs}/r/wandb/offline-run-*`\nW&B: offline, so "
                                       "--trainer.logger.log_model is off (the checkpoints stay in the run folder)\n")
    # the resume, logged in now: the same W&B run, online, its checkpoints uploaded
    run_folder.release_run_locks()  # by a process of its own: the first one ended
    monkeypatch.setattr(wandb_run, "wandb_logged_in", lambda: True)
    config = run_config(runs, ckpt_path=str(runs / "r" / "checkpoints" / "last.ckpt"), logger=wandb_logger())
    run_folder.prepare_run(config, "fit")
    wandb = config.trainer.logger.init_args
    assert (wandb.save_dir, wandb.id, wandb.offline, wandb.log_model) == (str(runs / "r"), info["wandb_id"], False,
                                                                          True)


@pytest.mark.parametrize("order", ["wandb first", "wandb second"])
def test_a_list_of_loggers_gets_its_wandb_logger_pointed_at_the_run_folder(order, tmp_path, monkeypatch, no_ranks):
    """A config's `logger:` list (W&B beside a CSV logger): its W&B run went to ./wandb with a new id each resume."""
    monkeypatch.setattr(wandb_run, "wandb_logged_in", lambda: True)
    runs = tmp_path / "runs"
    csv = Namespace(class_path="lightning.pytorch.loggers.CSVLogger", init_args=Namespace(save_dir=str(tmp_path)))
    loggers = [wandb_logger(), csv] if order == "wandb first" else [csv, wandb_logger()]
    config = run_config(runs, run_name="r", logger=loggers)
    config.trainer.callbacks = [callback("LearningRateMonitor")]
    run_folder.prepare_run(config, "fit")
    wandb = next(logger for logger in config.trainer.logger if logger.class_path.endswith("WandbLogger")).init_args
    info = json.loads((runs / "r" / "run.json").read_text())
    assert (wandb.save_dir, wandb.name, wandb.id, wandb.job_type) == (str(runs / "r"), "r", info["wandb_id"], "fit")
    assert csv.init_args.save_dir == str(tmp_path) and len(config.trainer.callbacks) == 1  # as given; a logger
    config = run_config(runs, run_name="s", logger=[])  # no logger: Lightning's LearningRateMonitor would refuse
    config.trainer.callbacks = [callback("LearningRateMonitor")]
    run_folder.prepare_run(config, "fit")
    assert config.trainer.callbacks == []


def test_prepare_run_keeps_the_wandb_options_given(tmp_path, monkeypatch, no_ranks, capsys):
    runs = tmp_path / "runs"
    monkeypatch.setattr(wandb_run, "wandb_logged_in", lambda: True)
    config = run_config(runs, run_name="r", logger=wandb_logger(save_dir=str(tmp_path / "logs"), name="given",
                                                                id="myid0001", tags=["mine"], job_type="sweep"))
    config.trainer.callbacks = [callback("LearningRateMonitor")]
    run_folder.prepare_run(config, "fit")
    wandb = config.trainer.logger.init_args
    assert (wandb.save_dir, wandb.name, wandb.id) == (str(tmp_path / "logs"), "given", "myid0001")
    assert (wandb.tags, wandb.job_type) == (["darknet", "mine"], "sweep")  # the system's tag kept beside them
    assert (tmp_path / "logs" / "wandb").is_dir() and len(config.trainer.callbacks) == 1
    config = run_config(runs, run_name="s", logger=wandb_logger(save_dir="."))
    run_folder.prepare_run(config, "fit")
    assert config.trainer.logger.init_args.save_dir == str(runs / "s")  # "." is WandbLogger's default: the run's
    config = run_config(runs, run_name="t")  # no logger: Lightning's LearningRateMonitor would refuse to start
    config.trainer.callbacks = [callback("LearningRateMonitor"), callback("ModelCheckpoint", dirpath=None)]
    run_folder.prepare_run(config, "fit")
    assert [c.class_path.rpartition(".")[2] for c in config.trainer.callbacks] == ["ModelCheckpoint"]
    # not logged in, with a save_dir of the user's: the note names where the offline run is
    monkeypatch.setattr(wandb_run, "wandb_logged_in", lambda: False)
    capsys.readouterr()
    run_folder.prepare_run(run_config(runs, run_name="u", logger=wandb_logger(save_dir=str(tmp_path / "mine"))), "fit")
    mine = tmp_path / "mine" / "wandb"
    assert capsys.readouterr().out.startswith(f"W&B: not logged in (`wandb login`), logging offline to {mine}; upload "
                                              f"later with `wandb sync {mine}/offline-run-*`")


def test_a_resume_keeps_the_wandb_name_the_run_began_with(tmp_path, monkeypatch, no_ranks):
    """wandb renames a run to the name it is given: a resume without the first part's --trainer.logger.name renamed
    the dashboard's run to its folder's name. A name given to the resume is the user's: it renames."""
    monkeypatch.setattr(wandb_run, "wandb_logged_in", lambda: True)
    runs = tmp_path / "runs"
    run_folder.prepare_run(run_config(runs, run_name="r", logger=wandb_logger(name="lr-sweep-3")), "fit")
    last = str(runs / "r" / "checkpoints" / "last.ckpt")
    for given, expected in [(None, "lr-sweep-3"), ("renamed", "renamed"), (None, "renamed")]:
        run_folder.release_run_locks()  # each resume a process of its own
        config = run_config(runs, ckpt_path=last, logger=wandb_logger(**({"name": given} if given else {})))
        run_folder.prepare_run(config, "fit")
        assert config.trainer.logger.init_args.name == expected
    run_folder.release_run_locks()
    config = run_config(runs, run_name="s", logger=wandb_logger())  # another run: its own folder's name
    run_folder.prepare_run(config, "fit")
    assert config.trainer.logger.init_args.name == "s"


def test_a_resume_goes_on_in_the_wandb_run_the_run_began(tmp_path, monkeypatch, no_ranks):
    """A run begun with README's --trainer.logger.project/entity/group/tags (and an id of the user's), resumed with
    --ckpt_path last alone: the resume logged into a new run of the config's project (a W&B run id names a run of one
    project), without the run's group and tags (wandb replaces a resumed run's tags with those given), and under a new
    id when the id was the user's. Tags and a group given to the resume are the user's; the project stays the run's."""
    monkeypatch.setattr(wandb_run, "wandb_logged_in", lambda: True)
    runs = tmp_path / "runs"
    began = wandb_logger(project="gans", entity="my-team", group="lsun", tags=["darknet", "64px"], id="myid0001")
    run_folder.prepare_run(run_config(runs, run_name="r", logger=began), "fit")
    last = str(runs / "r" / "checkpoints" / "last.ckpt")
    more = {"tags": ["more"], "group": "g2"}
    for given, expected in [({}, ("gans", "my-team", "lsun", ["darknet", "64px"], "myid0001")),
                            (more, ("gans", "my-team", "g2", ["darknet", "more"], "myid0001")),
                            ({}, ("gans", "my-team", "g2", ["darknet", "more"], "myid0001"))]:
        run_folder.release_run_locks()  # each resume a process of its own
        config = run_config(runs, ckpt_path=last, logger=wandb_logger(project="dl2-lightning", **given))
        run_folder.prepare_run(config, "fit")
        wandb = config.trainer.logger.init_args
        assert (wandb.project, wandb.get("entity"), wandb.get("group"), wandb.tags, wandb.id) == expected
    run_folder.release_run_locks()
    config = run_config(runs, run_name="s", logger=wandb_logger(project="dl2-lightning"))  # another run: its own
    run_folder.prepare_run(config, "fit")
    wandb = config.trainer.logger.init_args
    assert (wandb.project, wandb.get("entity"), wandb.group, wandb.tags) == ("dl2-lightning", None, None, ["darknet"])
    assert wandb.id != "myid0001"


def test_a_sweep_runs_resume_goes_on_in_the_sweeps_project(tmp_path, monkeypatch, no_ranks):
    """`wandb agent` sets WANDB_PROJECT, WANDB_ENTITY, WANDB_SWEEP_ID and WANDB_RUN_ID, and wandb logs the run in the
    sweep's project whatever wandb.init is given; resumed later outside the agent, the run went to the config's."""
    monkeypatch.setattr(wandb_run, "wandb_logged_in", lambda: True)
    for name, value in {"WANDB_PROJECT": "sweeps", "WANDB_ENTITY": "team", "WANDB_SWEEP_ID": "sw1",
                        "WANDB_RUN_ID": "agent123"}.items():
        monkeypatch.setenv(name, value)
    runs = tmp_path / "runs"
    run_folder.prepare_run(run_config(runs, run_name="r", logger=wandb_logger(project="dl2-lightning")), "fit")
    for name in ("WANDB_PROJECT", "WANDB_ENTITY", "WANDB_SWEEP_ID", "WANDB_RUN_ID"):
        monkeypatch.delenv(name)
    run_folder.release_run_locks()
    config = run_config(runs, ckpt_path=str(runs / "r" / "checkpoints" / "last.ckpt"),
                        logger=wandb_logger(project="dl2-lightning"))
    run_folder.prepare_run(config, "fit")
    wandb = config.trainer.logger.init_args
    assert (wandb.project, wandb.get("entity"), wandb.id) == ("sweeps", "team", "agent123")


def test_a_resume_goes_on_in_the_entity_wandb_entity_named(tmp_path, monkeypatch, no_ranks):
    """WANDB_ENTITY stands for --trainer.logger.entity not given (wandb.init reads it): the run is in that entity, and
    run.json kept null for it, so a resume without the variable (another shell, a notebook) went to the default
    entity: a new W&B run, the run id naming a run of one entity's project."""
    monkeypatch.setattr(wandb_run, "wandb_logged_in", lambda: True)
    monkeypatch.setenv("WANDB_ENTITY", "my-team")
    runs = tmp_path / "runs"
    run_folder.prepare_run(run_config(runs, run_name="r", logger=wandb_logger(project="dl2-lightning")), "fit")
    assert json.loads((runs / "r" / "run.json").read_text())["wandb_entity"] == "my-team"
    monkeypatch.delenv("WANDB_ENTITY")
    run_folder.release_run_locks()
    config = run_config(runs, ckpt_path=str(runs / "r" / "checkpoints" / "last.ckpt"),
                        logger=wandb_logger(project="dl2-lightning"))
    run_folder.prepare_run(config, "fit")
    assert config.trainer.logger.init_args.get("entity") == "my-team"
    run_folder.release_run_locks()
    monkeypatch.setenv("WANDB_ENTITY", "my-team")  # the option given wins, as with wandb.init
    config = run_config(runs, run_name="s", logger=wandb_logger(project="dl2-lightning", entity="other"))
    run_folder.prepare_run(config, "fit")
    assert config.trainer.logger.init_args.entity == "other"


def test_wandbs_own_variables_stand_for_the_options_not_given(tmp_path, monkeypatch, no_ranks):
    """WANDB_NAME, WANDB_TAGS, WANDB_RUN_GROUP and WANDB_JOB_TYPE, which wandb.init reads for the arguments it is not
    given: train.py gave it the folder's name, the system's tag and fit in their place, and they were ignored. The
    options given win over them, as over wandb's."""
    monkeypatch.setattr(wandb_run, "wandb_logged_in", lambda: True)
    for name, value in {"WANDB_NAME": "lr 0.1", "WANDB_TAGS": "a, b,darknet", "WANDB_RUN_GROUP": "sweep-7",
                        "WANDB_JOB_TYPE": "train"}.items():
        monkeypatch.setenv(name, value)
    runs = tmp_path / "runs"
    config = run_config(runs, run_name="r", logger=wandb_logger())
    run_folder.prepare_run(config, "fit")
    wandb = config.trainer.logger.init_args
    assert (wandb.name, wandb.tags, wandb.group, wandb.job_type) == ("lr 0.1", ["darknet", "a", "b"], "sweep-7",
                                                                       "train")
    config = run_config(runs, run_name="s", logger=wandb_logger(name="n", tags=["c"], group="g", job_type="j"))
    run_folder.prepare_run(config, "fit")
    wandb = config.trainer.logger.init_args
    assert (wandb.name, wandb.tags, wandb.group, wandb.job_type) == ("n", ["darknet", "c"], "g", "j")


@pytest.mark.parametrize("mode, offline", [("offline", True), ("dryrun", True), ("online", False)])
def test_wandb_mode_offline_shows_in_the_loggers_config(mode, offline, tmp_path, monkeypatch, no_ranks):
    monkeypatch.setenv("WANDB_MODE", mode)  # the user's decision: wandb runs offline whatever the config says
    config = run_config(tmp_path / "runs", run_name="r", logger=wandb_logger())
    run_folder.prepare_run(config, "fit")
    assert config.trainer.logger.init_args.offline is offline


@pytest.mark.parametrize("enable, kept", [(False, ["EarlyStopping"]), (True, ["ModelCheckpoint", "EarlyStopping"]),
                                           (None, ["ModelCheckpoint", "EarlyStopping"])])
def test_enable_checkpointing_false_drops_the_configs_checkpoint_callback_alone(enable, kept, tmp_path, no_ranks):
    # Lightning refuses enable_checkpointing false beside a ModelCheckpoint callback (the shipped configs have one)
    config = run_config(tmp_path / "runs", run_name="r", enable_checkpointing=enable)
    config.trainer.callbacks = [callback("ModelCheckpoint", dirpath=None), callback("EarlyStopping", monitor="val/acc")]
    run_folder.prepare_run(config, "fit", make=False)
    assert [c.class_path.rpartition(".")[2] for c in config.trainer.callbacks] == kept


@pytest.mark.parametrize("whose", ["t's", "an earlier run's"])
def test_a_refused_run_discards_the_folders_made_for_it_and_ends_its_wandb_run(whose, tmp_path, monkeypatch, no_ranks):
    """discard_fresh_runs, called when a run is refused before its training or evaluation began. wandb.run may be an
    earlier run's of the same process (train.main twice in a notebook): it is neither ended nor removed."""
    monkeypatch.setattr(run_folder, "_fresh_runs", {})
    monkeypatch.setattr(run_folder, "_fresh_wandb", {})
    monkeypatch.setattr(wandb_run, "wandb_logged_in", lambda: True)
    runs, logs = tmp_path / "runs", tmp_path / "logs"
    runs.mkdir()  # there before: stays
    run_folder.prepare_run(run_config(runs, run_name="r", logger=wandb_logger()), "fit")
    run_folder.prepare_run(run_config(runs, run_name="s", logger=False), "fit")
    # a W&B save_dir of the user's outside the run folder: the folders made for it go too
    run_folder.prepare_run(run_config(runs, run_name="t", logger=wandb_logger(save_dir=str(logs / "mine"))), "fit")
    assert run_folder._fresh_runs == {runs / "r": [runs / "r"], runs / "s": [runs / "s"],  # r/wandb goes with r
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
    run_folder.discard_fresh_runs()
    assert sorted(p.name for p in runs.iterdir()) == ["r", "s"]
    assert run_folder._fresh_runs == {} and run_folder._held_locks == {} and run_folder._fresh_wandb == {}
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
        monkeypatch.setattr(run_folder, "_resumed_wandb", {tmp_path: ("abcd1234", dict(before))})
        finished.clear()
        fake_wandb.run = SimpleNamespace(id=run_id, dir=str(wandb / folder / "files"))
        run_folder.discard_refused_resume()
        assert finished == ended and run_folder._resumed_wandb == {}
    assert sorted(p.name for p in wandb.iterdir()) == ["latest-run", "offline-run-1-abcd1234", "offline-run-3-other000"]
    assert os.readlink(wandb / "latest-run") == "offline-run-1-abcd1234"
    monkeypatch.setattr(run_folder, "_resumed_wandb", {tmp_path: ("abcd1234", {})})
    fake_wandb.run, finished[:] = SimpleNamespace(id="abcd1234"), []  # no .dir to read
    run_folder.discard_refused_resume()
    assert finished == [0] and (wandb / "offline-run-1-abcd1234").is_dir()
    # the refused part began in the same second as the earlier part: wandb gave it that part's folder, which stays
    monkeypatch.setattr(run_folder, "_resumed_wandb", {tmp_path: ("abcd1234", dict(before))})
    fake_wandb.run = SimpleNamespace(id="abcd1234", dir=str(wandb / "offline-run-1-abcd1234" / "files"))
    run_folder.discard_refused_resume()
    assert (wandb / "offline-run-1-abcd1234" / "files").is_dir()


def test_a_refused_runs_folder_that_cannot_be_removed_leaves_the_refusal_as_it_was(tmp_path, monkeypatch, no_ranks):
    """On NFS a file another process still has open becomes a .nfs file and its folder cannot be removed: the user
    still gets the refusal's one line, not a traceback of the clean-up (and without a W&B run, no wandb.finish)."""
    monkeypatch.setattr(run_folder, "_fresh_runs", {})
    runs = tmp_path / "runs"
    run_folder.prepare_run(run_config(runs, run_name="r"), "fit")
    busy_folder(monkeypatch, runs / "r")
    finished = []
    monkeypatch.setitem(sys.modules, "wandb", SimpleNamespace(run=None, finish=lambda exit_code: finished.append(
        exit_code)))
    run_folder.discard_fresh_runs()
    assert list((runs / "r").iterdir()) == [] and run_folder._fresh_runs == {} and run_folder._held_locks == {}
    assert finished == []  # wandb imported, no W&B run


def test_prepare_run_on_a_rank_other_than_0_creates_no_folder(tmp_path, monkeypatch, no_ranks):
    # torchrun's rank 1 picks its own time stamp; its W&B folder made rank 0 take the next name and stayed empty
    runs = tmp_path / "runs"
    monkeypatch.setenv("RANK", "1")
    config = run_config(runs, logger=wandb_logger())
    run_folder.prepare_run(config, "fit")
    assert config.trainer.default_root_dir.startswith(str(runs)) and not runs.exists()


def test_epochs_are_fractional_for_a_run_stopped_inside_an_epoch(tiny_cifar, tmp_path):
    runs = tmp_path / "runs"
    # 24 images in batches of 8: 3 batches an epoch; 4 steps are one epoch and a third
    train.main(job(tiny_cifar, runs, "--trainer.max_epochs", "5", "--trainer.max_steps", "4"))
    results = json.loads((run_folders(runs)[0] / "results.json").read_text())
    assert results["epochs"] == round(4 / 3, 4) and results["epochs_completed"] == 1 and results["batches"] == 4


class CrashAtBatch(L.Callback):
    """Raises after `step` optimizer steps, as a job killed in the middle of an epoch."""

    def __init__(self, step: int = 2):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            raise RuntimeError("simulated crash")


@pytest.mark.parametrize("system", ["darknet", "wgan", "cyclegan"])
def test_last_ckpt_is_saved_on_a_time_interval_within_the_epoch(system, tiny_cifar, tiny_unpaired, tmp_path):
    """Also for the GANs, whose manual optimization Lightning 2.6's ModelCheckpoint(train_time_interval) ignores."""
    runs = tmp_path / "runs"
    steps_per_batch = 3 if system == "cyclegan" else 1
    args = {"darknet": job(tiny_cifar, runs, "--data.batch_size", "2"),
            "wgan": ["--system", "wgan", "--data.data_dir", str(tiny_cifar / "train"), "--data.batch_size", "2",
                     "--data.num_workers", "0", "--model.isize", "16", "--data.isize", "16", "--model.ngf", "4",
                     "--model.ndf", "4", "--trainer.default_root_dir", str(runs), "--trainer.logger", "false",
                     "--trainer.enable_progress_bar", "false"],
            "cyclegan": ["--system", "cyclegan", "--data.data_dir", str(tiny_unpaired), "--data.batch_size", "1",
                         "--data.load_size", "36", "--data.crop_size", "32", "--data.num_workers", "0",
                         "--model.n_blocks", "1", "--model.ngf", "4", "--model.ndf", "4",
                         "--model.log_images_every_n_batches", "0", "--trainer.default_root_dir", str(runs),
                         "--trainer.logger", "false", "--trainer.enable_progress_bar", "false"]}[system]
    # an interval of 60 us passes between any two batches (6 ms did not, for the Darknet's tiny batches on a fast
    # CPU); the crash comes after the 4th batch, before its save
    with pytest.raises(RuntimeError, match="simulated crash"):
        train.main([*args, "--save_every_minutes", "0.000001", "--trainer.callbacks+=test_train_runs.CrashAtBatch",
                    "--trainer.callbacks.step", str(4 * steps_per_batch)])
    (run_dir,) = run_folders(runs)
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["last.ckpt"]  # no last-v1.ckpt
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 3 * steps_per_batch


def wgan_job(data_dir, runs, *extra):
    """A tiny WGAN with the shipped config's checkpoints (every 5,000 steps, last.ckpt): 6 batches an epoch."""
    return ["--system", "wgan", "--data.data_dir", str(data_dir / "train"), "--data.batch_size", "4",
            "--data.num_workers", "0", "--model.isize", "16", "--data.isize", "16", "--model.ngf", "4", "--model.ndf",
            "4", "--model.nz", "8", "--trainer.default_root_dir", str(runs), "--trainer.logger", "false",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false", *extra]


class EpochStarts(L.Callback):
    """Appends each epoch's number and starting step to epoch_starts in the run folder."""

    def on_train_epoch_start(self, trainer, pl_module):
        with open(Path(trainer.default_root_dir, "epoch_starts"), "a") as file:
            file.write(f"{trainer.current_epoch} {trainer.global_step}\n")


def epoch_starts(run_dir: Path) -> list[tuple[int, int]]:
    return [tuple(map(int, line.split())) for line in (run_dir / "epoch_starts").read_text().splitlines()]


def test_last_ckpt_is_written_at_each_epoch_end_even_without_a_top_k_save(tiny_cifar, tmp_path):
    """Lightning 2.6 writes save_last's last.ckpt only with a top-k save: a monitored metric that does not improve
    (here `epoch`, minimised: only epoch 0 is ever the best) or a WGAN saving every 5,000 steps left a crash to
    resume from an older epoch, or from nothing."""
    runs, config = tmp_path / "runs", tmp_path / "checkpoint.yaml"
    config.write_text("trainer:\n  callbacks:\n    - class_path: lightning.pytorch.callbacks.ModelCheckpoint\n"
                      "      init_args: {monitor: epoch, mode: min, save_last: true, enable_version_counter: false}\n")
    crash = ["--trainer.callbacks+=conftest.CrashAtEpoch", "--trainer.callbacks.epoch", "3"]
    with pytest.raises(RuntimeError, match="simulated crash"):  # after 3 epochs of 3 batches
        train.main(job(tiny_cifar, runs, "--run_name", "darknet", "--config", str(config), "--model.one_cycle",
                       "null", "--trainer.max_epochs", "4", *crash))
    with pytest.raises(RuntimeError, match="simulated crash"):  # after 3 epochs of 6 batches
        train.main(wgan_job(tiny_cifar, runs, "--run_name", "wgan", "--trainer.max_epochs", "4", *crash))
    for run, step in (("darknet", 9), ("wgan", 18)):
        assert torch.load(runs / run / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == step


@pytest.mark.parametrize("system", ["darknet", "wgan"])
def test_a_resume_with_max_steps_from_an_epoch_end_trains_every_remaining_epoch(system, tiny_cifar, tmp_path):
    """Lightning 2.6 restarted the finished epoch, ran it empty (the Darknet's last.ckpt, saved in
    on_train_epoch_end) or one batch past its end (the WGAN's, saved when the epoch was counted complete), and
    counted it again: the run ended an epoch short."""
    runs = tmp_path / "runs"
    make_job, per_epoch = {"darknet": (job, 3), "wgan": (wgan_job, 6)}[system]
    first = make_job(tiny_cifar, runs, "--run_name", "r", "--trainer.max_epochs", "4")
    if system == "darknet":
        first += ["--model.one_cycle", "null", "--trainer.callbacks", "[]"]
    train.main([*first, "--trainer.max_steps", str(2 * per_epoch)])  # stops at the end of the 2nd epoch
    train.main([*first, "--trainer.max_steps", "1000", "--ckpt_path", "last",
                "--trainer.callbacks+=test_train_runs.EpochStarts"])
    assert epoch_starts(runs / "r") == [(2, 2 * per_epoch), (3, 3 * per_epoch)]
    results = json.loads((runs / "r" / "results.json").read_text())
    assert results["global_step"] == 4 * per_epoch and results["epochs"] == 4.0


@pytest.mark.parametrize("stop", ["max_steps", "max_steps twice"])
def test_a_wgan_stopped_inside_an_epoch_by_max_steps_trains_the_rest_of_it_on_resume(stop, tiny_cifar, tmp_path):
    """The shipped config's ModelCheckpoint(save_last) rewrites last.ckpt when training ends, after Lightning counted
    the epoch complete: resumed, it went on to the next epoch and the rest of the stopped one was never trained."""
    runs = tmp_path / "runs"
    first = wgan_job(tiny_cifar, runs, "--run_name", "r", "--trainer.max_epochs", "4")  # 6 batches an epoch
    train.main([*first, "--trainer.max_steps", "8"])  # the 3rd batch of the 2nd epoch
    if stop == "max_steps twice":
        train.main([*first, "--trainer.max_steps", "10", "--ckpt_path", "last"])  # the 5th
    train.main([*first, "--trainer.max_steps", "1000", "--ckpt_path", "last",
                "--trainer.callbacks+=test_train_runs.EpochStarts"])
    assert epoch_starts(runs / "r")[-2:] == [(2, 12), (3, 18)]  # the 2nd epoch had its 6 batches
    results = json.loads((runs / "r" / "results.json").read_text())
    assert results["global_step"] == results["batches"] == 24 and results["epochs"] == 4.0


class EndSteps(L.Callback):
    """Writes the step the loggers stand at (Lightning's batches that stepped) when training ends."""

    def on_train_end(self, trainer, pl_module):
        steps = trainer.fit_loop.epoch_loop._batches_that_stepped
        Path(trainer.default_root_dir, "logged_steps").write_text(str(steps))


@pytest.mark.parametrize("stop", ["max_steps mid-epoch", "max_steps mid-epoch, resumed by epochs",
                                  "saved at an epoch's last batch"])
def test_a_resume_with_max_steps_continues_a_mid_epoch_stop_where_it_stopped(stop, tiny_cifar, tmp_path):
    """A max_steps stop inside an epoch (which passes on_train_epoch_end, as an epoch's end does) continues that
    epoch, counted once, twice in a row, with or without max_steps on the resume (Lightning 2.6 skipped the rest
    of the epoch without, trained nothing in the last epoch with); a save at the end of an epoch's last batch (the
    timed save) goes on to the next epoch with the loggers' step where it was. 3 batches an epoch; 4 in all."""
    runs = tmp_path / "runs"
    first = job(tiny_cifar, runs, "--run_name", "r", "--model.one_cycle", "null", "--trainer.callbacks", "[]",
                "--trainer.max_epochs", "4")
    if stop.startswith("max_steps mid-epoch"):  # the 1st batch of the 3rd epoch; resumed, the 1st of the 4th
        train.main([*first, "--trainer.max_steps", "7"])
        train.main([*first, "--trainer.max_steps", "10", "--ckpt_path", "last"])
        assert json.loads((runs / "r" / "results.json").read_text())["global_step"] == 10
    else:
        with pytest.raises(RuntimeError, match="simulated crash"):  # last.ckpt from the timed save at step 6
            train.main([*first, "--trainer.max_steps", "12", "--save_every_minutes", "0.000001",
                        "--trainer.callbacks+=conftest.CrashAtEpoch", "--trainer.callbacks.epoch", "2"])
        assert torch.load(runs / "r" / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 6
    by_epochs = [] if stop.endswith("by epochs") else ["--trainer.max_steps", "1000"]  # max_epochs 4 ends it
    train.main([*first, *by_epochs, "--ckpt_path", "last", "--trainer.callbacks+=test_train_runs.EpochStarts",
                "--trainer.callbacks+=test_train_runs.EndSteps"])
    results = json.loads((runs / "r" / "results.json").read_text())
    assert results["global_step"] == results["batches"] == 12 and results["epochs"] == 4.0
    assert (runs / "r" / "logged_steps").read_text() == "12"
    if not stop.startswith("max_steps mid-epoch"):
        assert epoch_starts(runs / "r")[-1] == (3, 9)  # the 4th epoch from step 9: the 3rd had its 3 batches


class StartWeights(L.Callback):
    """Saves the weights training starts from, and the optimizer's state, into the run folder."""

    def on_train_start(self, trainer, pl_module):
        torch.save({"weights": pl_module.state_dict(), "optimizer": trainer.optimizers[0].state_dict()["state"]},
                   Path(trainer.default_root_dir, "start.pt"))


def test_init_from_starts_a_new_run_from_the_weights_alone(tiny_cifar, tmp_path):
    """Fine-tuning (junyanz's --continue_train --epoch_count 1, fastai's learn.load then fit): the trained weights,
    a fresh optimizer, step 0, a new run folder."""
    runs = tmp_path / "runs"
    train.main(job(tiny_cifar, runs, "--run_name", "first", "--trainer.max_epochs", "2"))
    trained = torch.load(runs / "first" / "checkpoints" / "last.ckpt", weights_only=False)
    train.main(job(tiny_cifar, runs, "--run_name", "tuned", "--init_from", str(runs / "first" / "checkpoints" /
                   "last.ckpt"), "--trainer.callbacks+=test_train_runs.StartWeights"))
    start = torch.load(runs / "tuned" / "start.pt", weights_only=False)
    assert start["weights"].keys() == trained["state_dict"].keys()
    assert all(torch.equal(start["weights"][k], v) for k, v in trained["state_dict"].items())
    assert start["optimizer"] == {} and trained["optimizer_states"][0]["state"]  # no momentum carried over
    results = json.loads((runs / "tuned" / "results.json").read_text())
    assert results["global_step"] == 3 and results["epochs"] == 1.0  # one epoch from step 0, not resumed at 6
    # the run's folder stands for its last.ckpt, as in the inference commands
    train.main(job(tiny_cifar, runs, "--run_name", "tuned2", "--init_from", str(runs / "first"),
                   "--trainer.callbacks+=test_train_runs.StartWeights"))
    start = torch.load(runs / "tuned2" / "start.pt", weights_only=False)
    assert all(torch.equal(start["weights"][k], v) for k, v in trained["state_dict"].items())
    # its config.yaml names --init_from: the native test reads it, the native fit names the job form
    config = str(runs / "tuned" / "config.yaml")
    train.main(["test", "--config", config, "--ckpt_path", str(runs / "tuned" / "checkpoints" / "last.ckpt")])
    with pytest.raises(train.UserError, match="--init_from starts a run in the job form"):
        train.main(["fit", "--config", config])
    # a resume of it refused as its model is built: the run's config, whose --init_from a resume must drop
    from callbacks.errors import user_message
    last = runs / "tuned" / "checkpoints" / "last.ckpt"
    with pytest.raises(ValueError) as refused:
        train.main(job(tiny_cifar, runs, "--ckpt_path", str(last), "--model.top_losses", "-1"))
    assert user_message(refused.value).endswith(f"python train.py --config {config} --ckpt_path {last} --init_from "
                                                f"null")


def test_init_from_names_what_does_not_fit(tiny_cifar, tmp_path, capsys, monkeypatch):
    runs = tmp_path / "runs"
    train.main(job(tiny_cifar, runs, "--run_name", "first"))
    last = str(runs / "first" / "checkpoints" / "last.ckpt")
    for extra, message in (
            (["--ckpt_path", last], "--init_from starts a new run from a checkpoint's weights and --ckpt_path "
                                    "resumes a run; give one of them"),
            (["--model.nf", "8"], "was trained with other settings (net."),
            (["--model.nf", "8"], "--init_from needs the same network: give the --model options of its config")):
        result = run_in_process(job(tiny_cifar, runs, "--init_from", last, *extra), capsys, monkeypatch)
        assert_one_line_error(result, message)
    result = run_in_process(job(tiny_cifar, runs, "--init_from", last, "--model.num_blocks", "[1, 1]"), capsys,
                            monkeypatch)  # a deeper net: weights the checkpoint lacks, no shape to compare
    assert_one_line_error(result, "holds another network (", "weights missing, e.g. ['net.",
                          "--init_from needs the same network")
    state = torch.load(last, weights_only=False)
    key = sorted(state["state_dict"])[-1]
    state["state_dict"].pop(key)  # one weight short, nothing extra
    torch.save(state, runs / "first" / "checkpoints" / "short.ckpt")
    result = run_in_process(job(tiny_cifar, runs, "--init_from", str(runs / "first" / "checkpoints" / "short.ckpt")),
                            capsys, monkeypatch)
    assert_one_line_error(result, f"(1 weights missing, e.g. ['{key}']; 0 not ours, e.g. [])",
                          f"the --model options of its config {runs / 'first' / 'config.yaml'}")


def test_init_from_keeps_the_checkpoints_whitening_stem_on_other_data(tiny_cifar, tmp_path):
    """The stem is frozen and computed from the training images in setup; the later layers were trained on the
    checkpoint's: fine-tuning on other images keeps it."""
    other = tmp_path / "inverted"
    for image in tiny_cifar.rglob("*.png"):
        target = other / image.relative_to(tiny_cifar)
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(255 - np.asarray(Image.open(image))).save(target)
    runs, whiten = tmp_path / "runs", ["--model.whiten", "2", "--model.whiten_images", "8"]
    train.main(job(tiny_cifar, runs, "--run_name", "first", *whiten))
    trained = torch.load(runs / "first" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    train.main(job(other, runs, "--run_name", "tuned", *whiten, "--init_from", str(runs / "first" / "checkpoints" /
                   "last.ckpt"), "--trainer.callbacks+=test_train_runs.StartWeights"))
    start = torch.load(runs / "tuned" / "start.pt", weights_only=False)["weights"]
    assert all(torch.equal(start[k], v) for k, v in trained.items())
    fresh = tmp_path / "fresh"  # the control: on these images, setup's own stem differs
    train.main(job(other, fresh, "--run_name", "r", *whiten, "--trainer.callbacks+=test_train_runs.StartWeights"))
    stem = next(k for k in trained if k.startswith("net.layers.0"))
    assert not torch.equal(torch.load(fresh / "r" / "start.pt", weights_only=False)["weights"][stem], trained[stem])


# one-line errors, as a user sees them from the command line


def test_a_checkpoint_of_another_system_is_named(tmp_path, capsys, monkeypatch):
    ckpt = tmp_path / "wgan.ckpt"  # what Lightning writes for a model built by LightningCLI
    torch.save({"state_dict": {"generator.0.weight": torch.zeros(1)}, "epoch": 0, "global_step": 5,
                "hyper_parameters": {"_class_path": "lightning_modules.WGAN", "isize": 32}}, ckpt)
    result = run_in_process(["--system", "cyclegan", "--ckpt_path", str(ckpt), "--trainer.logger", "false",
                             "--data.data_dir", str(tmp_path / "absent"), "--model.n_blocks", "1"], capsys, monkeypatch)
    assert_one_line_error(result, f"{ckpt} is a WGAN checkpoint, this is cyclegan; use --system wgan")


@pytest.mark.parametrize("flag", ["--ckpt_path", "--init_from"])
def test_another_systems_or_a_missing_checkpoint_is_refused_before_a_run_folder(tmp_path, flag):
    # the refusal came after the run folder was made: a folder (run.json, .lock, wandb/) for each mistyped path
    ckpt = tmp_path / "wgan.ckpt"
    torch.save({"state_dict": {"generator.0.weight": torch.zeros(1)}, "epoch": 0, "global_step": 5,
                "hyper_parameters": {"_class_path": "lightning_modules.WGAN", "isize": 32}}, ckpt)
    runs = tmp_path / "runs"
    args = ["--system", "cyclegan", "--trainer.logger", "false", "--data.data_dir", str(tmp_path / "absent"),
            "--model.n_blocks", "1", "--trainer.default_root_dir", str(runs)]
    with pytest.raises(train.UserError, match=re.escape(f"{ckpt} is a WGAN checkpoint, this is cyclegan; use "
                                                        "--system wgan")):
        train.main([*args, flag, str(ckpt)])
    with pytest.raises(train.UserError, match="not found|no such file"):
        train.main([*args, flag, str(tmp_path / "absent.ckpt")])
    assert not runs.exists()


def test_a_truncated_checkpoint_is_named_with_the_fix(tiny_cifar, tmp_path, capsys, monkeypatch):
    runs = tmp_path / "runs"
    train.main(job(tiny_cifar, runs, "--run_name", "first"))
    last = runs / "first" / "checkpoints" / "last.ckpt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])
    result = run_in_process(job(tiny_cifar, runs, "--ckpt_path", "last"), capsys, monkeypatch)
    assert_one_line_error(result, f"{last} is not a readable checkpoint (truncated?",
                          f"use an earlier one in {last.parent}")


def test_the_offline_cifar10_download_error_is_one_line(tmp_path, capsys, monkeypatch):
    absent = tmp_path / "cifar10"
    result = run_in_process(job(absent, tmp_path / "runs", "--data.url", "http://127.0.0.1:9/cifar-10-python.tar.gz"),
                            capsys, monkeypatch)
    assert_one_line_error(result, f"no CIFAR-10 found in {absent}")


def test_an_option_the_last_callback_lacks_is_named_once_with_that_callback(tiny_cifar, tmp_path, capsys,
                                                                              monkeypatch):
    """`--trainer.callbacks.NAME` sets an option of the list's last callback; one it lacks (a typo after README's
    `--trainer.callbacks+=...EarlyStopping`, or the scheduler's one_cycle, which is not the last) was reported as
    "trainer.callbacks.patienc' is not accepted Option 'patienc is not an option": jsonargparse names the option once
    per class it tried (the callback's and lightning.Callback's), and the pattern took both lines as one name."""
    cases = {"--trainer.callbacks.patienc: EarlyStopping (the last callback, which --trainer.callbacks.NAME sets) "
             "has no option patienc; see --help": ["--trainer.callbacks+=lightning.pytorch.callbacks.EarlyStopping",
                                                   "--trainer.callbacks.monitor", "val/acc",
                                                   "--trainer.callbacks.patienc", "3"],
             "--trainer.callbacks.one_cycle: ModelCheckpoint (the last callback, which --trainer.callbacks.NAME sets) "
             "has no option one_cycle; see --help": ["--trainer.callbacks.one_cycle", "null"]}
    for needle, args in cases.items():
        error = assert_one_line_error(run_in_process(job(tiny_cifar, tmp_path / "runs", *args), capsys, monkeypatch),
                                      needle)
        assert "is not accepted" not in error and error.count("patienc") + error.count("one_cycle") == 2, error


def test_a_bad_value_from_the_command_line_is_one_line(tiny_cifar, tmp_path, capsys, monkeypatch):
    bad = {"--data.batch_size: expected int, got 'many'": ["--data.batch_size", "many"],
           "model.learning_rate is not an option, as --model.learning_rate or in a --config file; see the options "
           "with --help": ["--model.learning_rate", "0.1"],
           # the Trainer's own checks: a traceback and status 1
           "the Trainer refuses its options: `max_epochs` must be a non-negative integer or -1. You passed in -5. "
           "Check the --trainer values (--help-trainer lists them)": ["--trainer.max_epochs", "-5"],
           "the Trainer refuses its options: `max_steps` must be": ["--trainer.max_steps", "-3"],
           # its device parsing's TypeError on the CPU (a traceback, status 1, and an empty run folder left)
           "the Trainer refuses its options: `devices` selected with `CPUAccelerator` should be an int > 0. "
           "(--trainer.devices -1) Check the --trainer values": ["--trainer.accelerator", "cpu", "--trainer.devices",
                                                                 "-1"],
           "(--trainer.devices [0, 1])": ["--trainer.accelerator", "cpu", "--trainer.devices", "[0, 1]"],
           # a callback's own refusal (Lightning's MisconfigurationException), inside jsonargparse's ValueError
           "a --trainer.callbacks entry refuses its options: Combination of parameters every_n_train_steps=100, "
           "every_n_epochs=5 and train_time_interval=None should be mutually exclusive. Check its values":
               ["--trainer.callbacks+=ModelCheckpoint", "--trainer.callbacks.every_n_epochs", "5",
                "--trainer.callbacks.every_n_train_steps", "100"],
           # Lightning's RuntimeError for a second ModelCheckpoint of the shipped one's monitor and mode
           "two ModelCheckpoint callbacks with the same monitor, mode, every_n_epochs, every_n_train_steps or "
           "train_time_interval: a checkpoint keeps each one's state under those, so Lightning refuses the pair":
               ["--trainer.callbacks+=ModelCheckpoint", "--trainer.callbacks.monitor", "val/acc",
                "--trainer.callbacks.mode", "max", "--trainer.callbacks.save_top_k", "3"],
           "unrecognized arguments: --trainer.max_epoch 1 (did you mean trainer.max_epochs?); see --help":
               ["--trainer.max_epoch", "1"],
           # a class's required argument, not the other types the option takes ("Expected a <class 'bool'>")
           "--trainer.logger: CSVLogger needs --trainer.logger.save_dir; see --help":
               ["--trainer.logger", "CSVLogger"]}
    if not any(importlib.util.find_spec(name) for name in ("tensorboard", "tensorboardX")):  # not a dependency
        bad["Neither `tensorboard` nor `tensorboardX` is available. Try `pip install`ing either."] = [
            "--trainer.logger", "TensorBoardLogger", "--trainer.logger.save_dir", str(tmp_path / "tb")]
    for needle, args in bad.items():
        assert_one_line_error(run_in_process(job(tiny_cifar, tmp_path / "runs", *args), capsys, monkeypatch), needle)
    assert not (tmp_path / "runs").exists()  # refused before the run folder is made


def test_a_package_an_option_needs_is_one_line_and_a_bugs_import_error_keeps_its_traceback():
    from callbacks.errors import user_message
    try:
        try:
            raise ModuleNotFoundError("Neither `tensorboard` nor `tensorboardX` is available. Try `pip install`ing "
                                      "either.\nRequirement 'tensorboard' not met.")
        except ModuleNotFoundError as missing:
            raise ValueError("Problem with given class_path 'TensorBoardLogger'") from missing
    except ValueError as error:
        assert user_message(error) == ("Neither `tensorboard` nor `tensorboardX` is available. Try `pip install`ing "
                                       "either. Requirement 'tensorboard' not met.")
    try:
        try:
            import lightning_modules.no_such_module  # noqa: F401  (a bug's import)
        except ModuleNotFoundError as missing:
            raise ValueError("Problem with given class_path 'lightning_modules.Mine'") from missing
    except ValueError as error:
        assert user_message(error) is None


def test_the_fits_own_refusals_are_one_line(tiny_cifar, tmp_path, capsys, monkeypatch):
    """Lightning checks these as the fit starts, after the Trainer is made: a traceback and status 1."""
    runs = tmp_path / "runs"
    for option, value in (("gradient_clip_val", "1.0"), ("accumulate_grad_batches", "2")):
        assert_one_line_error(run_in_process(wgan_job(tiny_cifar, runs, f"--trainer.{option}", value), capsys,
                                             monkeypatch),
                              f"--trainer.{option} {value}: WGAN steps its optimizers itself", "drop it")
    # 24 images in batches of 8: 3 an epoch
    result = run_in_process(job(tiny_cifar, runs, "--trainer.val_check_interval", "4"), capsys, monkeypatch)
    assert_one_line_error(result, "--trainer.val_check_interval 4 is more than the 3 batches of an epoch",
                          "at most 3 batches")
    assert not runs.exists()  # refused inside the fit: the folder it made (run.json, W&B run, config.yaml) went


class UselessLog(L.Callback):
    def on_train_batch_end(self, trainer, pl_module, *args):
        pl_module.log("x", 1.0, on_step=False, on_epoch=False)  # Lightning's MisconfigurationException: a bug


def test_a_bug_lightning_reports_as_misconfiguration_keeps_its_traceback(tiny_cifar, tmp_path):
    """The one-line conversion of the fit's refusals took a bug in a log call for a --trainer option."""
    from lightning.pytorch.utilities.exceptions import MisconfigurationException
    with pytest.raises(MisconfigurationException, match="is not useful"):
        train.main(job(tiny_cifar, tmp_path / "runs", "--trainer.callbacks+=test_train_runs.UselessLog"))


def test_a_config_of_another_systems_model_beside_system_is_refused(tiny_cifar, tmp_path, capsys, monkeypatch):
    """--system darknet --config configs/wgan.yaml trained a WGAN, silently."""
    wgan = str(ROOT / "configs" / "wgan.yaml")
    result = run_in_process(["--system", "darknet", "--config", wgan], capsys, monkeypatch)
    assert_one_line_error(result, f"--system darknet and --config {wgan}, a config of WGAN: give --config {wgan} alone")
    for short in (["-c", wgan], [f"-c={wgan}"]):  # LightningCLI's alias
        assert_one_line_error(run_in_process(["--system", "darknet", *short], capsys, monkeypatch), "a config of WGAN")
    own = tmp_path / "own.yaml"  # the system's own model, by its short name, with options: taken
    own.write_text("model:\n  class_path: DarknetClassifier\n  init_args:\n    nf: 4\n")
    with pytest.raises(SystemExit) as printed:
        train.main(["--system", "darknet", f"--config={own}", "--print_config"])
    assert printed.value.code in (0, None) and "nf: 4" in capsys.readouterr().out


def test_a_mistyped_key_in_a_config_file_is_named_as_its_key(tiny_cifar, tmp_path, capsys, monkeypatch):
    """A top-level typo read '--.trainr.max_epochs'; a Trainer one, "Group 'trainer' does not accept option"."""
    bad = {"trainr:\n  max_epochs: 1\n": "trainr.max_epochs is not an option, as --trainr.max_epochs or in a "
                                         "--config file",
           "trainer:\n  max_epoch: 1\n": "trainer.max_epoch is not an option (did you mean trainer.max_epochs?), as "
                                         "--trainer.max_epoch or in a --config file",
           "model:\n  init_args:\n    nff: 8\n": "model.nff is not an option, as --model.nff or in a --config file"}
    for text, needle in bad.items():
        config = tmp_path / "typo.yaml"
        config.write_text(text)
        result = run_in_process(job(tiny_cifar, tmp_path / "runs", "--config", str(config)), capsys, monkeypatch)
        assert_one_line_error(result, needle)


@pytest.mark.slow  # 22 s; the same unwrapping as test_a_bad_value_from_the_command_line_is_one_line, kept out of CI
def test_a_missing_weights_file_is_unwrapped_from_jsonargparse(tmp_path):
    args = ["--system", "style", "--model.vgg_weights", str(tmp_path / "vgg.pth"), "--trainer.logger", "false"]
    result = run_script(args, tmp_path)
    line = assert_one_line_error(result, f"--model.vgg_weights {tmp_path / 'vgg.pth'}: no such file")
    assert "Namespace(" not in line and "Union" not in line
    traced = run_script([*args, "--traceback"], tmp_path)  # the traceback stays one flag away
    assert traced.returncode != 0 and "Traceback (most recent call last)" in traced.stderr


def test_user_message_finds_the_user_error_in_a_worker_report():
    from callbacks.errors import user_message
    wrapped = train.UserError("Caught UserError in DataLoader worker process 0.\nOriginal Traceback (most recent "
                              "call last):\n  File \"x.py\", line 1\ncallbacks.errors.UserError: a.jpg is truncated")
    assert user_message(ValueError("wrapped")) is None  # a plain ValueError is a bug: traceback
    assert user_message(wrapped) == "a.jpg is truncated"
    try:
        try:
            raise train.UserError("the root cause; fix it")
        except train.UserError as error:
            raise ValueError("Does not validate against any of the Union subtypes") from error
    except ValueError as outer:
        assert user_message(outer) == "the root cause; fix it"


# help


def test_system_help_lists_system_then_its_options_with_the_config_values(capsys):
    train.main(["--system", "wgan", "--help"])
    text = capsys.readouterr().out
    options = [line.split()[0] for line in text.splitlines() if line.startswith("  --")]
    assert options[0] == "--system"
    assert options.index("--model.sample_every") < options.index("--data.data_dir")
    # the config's values, not the class defaults (the WGAN class says isize 64, the config 32)
    assert "image size, a power of 2 from 16" in text and "default: 32)" in text.split("--model.isize")[1][:200]
    flat = " ".join(text.split())
    assert "default: data/cifar10/train)" in flat and "--help-trainer" in flat
    assert "--trainer.max_epochs MAX_EPOCHS the config's value (--print_config: all of it) (default: 25)" in flat
    assert "(default: WandbLogger)" in flat


@pytest.mark.parametrize("system, logger", [("cyclegan", "WandbLogger"), ("darknet", "WandbLogger"),
                                            ("darknet_fast", "False"), ("style", "WandbLogger"),
                                            ("wgan", "WandbLogger")])
def test_every_shipped_system_has_help(system, logger, capsys):
    assert len(configs.systems()) == 5  # a new config joins the list above
    train.main(["--system", system, "--help"])  # darknet_fast's `logger: false` once raised a TypeError here
    flat = " ".join(capsys.readouterr().out.split())
    assert f"--trainer.logger LOGGER the config's value (--print_config: all of it) (default: {logger})" in flat


def test_help_without_system_lists_the_systems(capsys):
    train.main(["--help"])
    text = capsys.readouterr().out
    assert all(f"  {name} " in text for name in ("cyclegan", "darknet", "style", "wgan"))


def test_help_trainer_shows_lightnings_trainer_options(capsys):
    with pytest.raises(SystemExit) as stop:
        train.main(["--system", "wgan", "--help-trainer"])
    assert stop.value.code == 0 and "--trainer.accumulate_grad_batches" in capsys.readouterr().out


def test_the_models_one_cycle_beside_the_configs_phase_scheduler_is_refused_with_both_ways_out(tiny_cifar, tmp_path):
    ways_out = (r'--model.one_cycle null\) or the scheduler callback \(train.py: the config.s callbacks, '
                r'--trainer.callbacks "\[\]"')
    with pytest.raises(train.UserError, match=ways_out):
        train.main(job(tiny_cifar, tmp_path / "runs", "--model.one_cycle", "[20, 20, 0.95, 0.85]"))
    train.main(job(tiny_cifar, tmp_path / "runs", "--model.one_cycle", "[20, 20, 0.95, 0.85]", "--trainer.callbacks",
                   "[]", "--run_name", "without"))  # the second way runs
    assert (tmp_path / "runs" / "without" / "results.json").is_file()


@pytest.mark.parametrize("scheduler, message", [
    ("phases: [{epochs: 1, opt_fn: SGD, lr: 0.1, lr_decay: cosinus}]",
     "'cosinus' is not a valid DecayType; use one of no, linear, cosine, exponential, polynomial"),
    ("phases: [{epochs: -1, opt_fn: SGD, lr: 0.1}]", "a TrainingPhase needs epochs > 0 (got -1.0)"),
    ("phases: [{epochs: 1, opt_fn: Adamm, lr: 0.1}]", "unknown optimizer 'Adamm'"),
    ("one_cycle: {pcts: 20}", "one_cycle has no option 'pcts'; its options: cycle_len, lr, div, pct,")])
def test_a_bad_phase_spec_is_one_line(tiny_cifar, tmp_path, scheduler, message):
    from callbacks.errors import user_message
    config = tmp_path / "phases.yaml"
    config.write_text("trainer:\n  callbacks:\n    - class_path: callbacks.TrainingPhaseScheduler\n      init_args:\n"
                      f"        {scheduler}\n")
    with pytest.raises(Exception) as raised:  # jsonargparse wraps the scheduler's UserError
        train.main(job(tiny_cifar, tmp_path / "runs", "--config", str(config)))
    assert message in user_message(raised.value)


def test_limit_test_batches_0_trains_skips_the_test_and_writes_the_results(tiny_cifar, tmp_path):
    """README: `0` means none. Lightning's test then returns no result at all: the job ended in an IndexError after
    the fit, without results.json."""
    runs = tmp_path / "runs"
    train.main(job(tiny_cifar, runs, "--data.batch_size", "4", "--trainer.max_steps", "2",
                   "--trainer.limit_test_batches", "0", "--run_name", "r"))
    results = json.loads((runs / "r" / "results.json").read_text())
    assert results["test"] == {} and results["global_step"] == 2
