"""A resume with another number of batches an epoch (callbacks.EpochLengthResume): the data and the lr schedule go on
from the same share of the epoch."""

import json
import warnings
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
from runs import job

import train
from callbacks import EpochLengthResume, MaxStepsResume
from datamodules import CIFAR10DataModule
from lightning_modules import DarknetClassifier

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets: threads only add contention


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
                "--trainer.callbacks+=test_epoch_lengths.ImagePrints", f"--trainer.callbacks.record={whole}"])
    record = ["--run_name", "r", "--trainer.callbacks+=test_epoch_lengths.ImagePrints",
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
    lrs = ["--trainer.callbacks+=runs.LrAtBatchStart"]
    train.main([*make, "--data.batch_size", "8", "--run_name", "whole", *lrs,
                f"--trainer.callbacks.record={tmp_path / 'whole_lr'}"])
    crash = {"class_path": "test_epoch_lengths.SaveAndCrashAtBatch", "init_args": {"batches": step}}  # a step each
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
    lrs = ["--trainer.callbacks+=runs.LrAtBatchStart"]
    accumulate = [["--trainer.accumulate_grad_batches", str(n)] for n in accumulate]
    train.main([*make, *accumulate[1], "--data.batch_size", str(after), "--run_name", "whole", *lrs,
                f"--trainer.callbacks.record={tmp_path / 'whole_lr'}"])
    crash_at = {"class_path": "test_epoch_lengths.SaveAndCrashAtBatch", "init_args": {"batches": crash}}
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
