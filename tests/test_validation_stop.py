"""A stop inside a validation (callbacks.RerunStoppedValidation): saved at once, and that validation run again on
resume."""

import json
import os
import signal
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from runs import job, run_script

import train
from callbacks import RerunStoppedValidation

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets: threads only add contention


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
                   "--trainer.callbacks+=test_validation_stop.StopInValidation", f"--trainer.callbacks.record={record}")
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
                            "--trainer.callbacks+=test_validation_stop.StopInValidation",
                            f"--trainer.callbacks.record={tmp_path / 'seen'}",
                            "--trainer.callbacks+=test_validation_stop.SavedDuringValidation",
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
                   *schedule, "--trainer.callbacks+=test_validation_stop.StopInValidation",
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
