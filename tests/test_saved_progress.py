"""A fit's progress as a save writes it and a resume reads it (save_if, saved_step, the epochs), called directly."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from runs import fake_trainer

from callbacks import MaxStepsResume, RerunStoppedValidation, checkpoints, saving
from callbacks import job as train_job

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
    return train_job.fit_progress(SimpleNamespace(fit_loop=loop, num_training_batches=per_epoch))


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
    with train_job.weights_in_memory(trainer):
        assert connector._hpc_resume_path is None
    assert connector._hpc_resume_path == str(hpc)
    with pytest.raises(RuntimeError), train_job.weights_in_memory(trainer):  # put back after a failed test too
        raise RuntimeError
    assert connector._hpc_resume_path == str(hpc)
    assert Trainer(default_root_dir=tmp_path, logger=False)._checkpoint_connector._hpc_resume_path == str(hpc)


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

