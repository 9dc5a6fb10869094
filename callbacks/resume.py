"""A resume made to go on as the run would have: one that max_steps or max_time stopped inside an epoch, one with
another number of batches an epoch (another number of processes), one stopped inside a validation; and the random
numbers of each DDP rank and each resume their own.

train.py adds these to every fit; with a plain `lightning.Trainer`, give them in `callbacks=[...]` (MaxStepsResume
first, before callbacks whose on_train_start reads the epoch) to resume such a checkpoint with `fit(ckpt_path=...)`,
and for a GAN's ranks to draw noise of their own. EpochLengthResume keeps its state in the checkpoint: a checkpoint
written without it resumes as Lightning's own.
"""

import random

import numpy as np
import torch
from lightning.pytorch import Callback
from lightning.pytorch.loops.fit_loop import RestartStage
from lightning.pytorch.loops.loop import _Loop
from lightning.pytorch.utilities import rank_zero_warn

from callbacks.phase_scheduler import resumed_batches


class MaxStepsResume(Callback):
    """Lightning 2.6 counts an epoch twice on some resumes and the run ends an epoch short (or, in the last epoch,
    trains nothing): a max_steps (or max_time) stop inside an epoch passes on_train_epoch_end, whose checkpoint
    says the epoch was processed, and the resume continues the epoch and counts it again at its end (or, without
    max_steps, skips the rest of it); a checkpoint written after that, when training ends (ModelCheckpoint's
    save_last), says the epoch completed, and the resume skipped the rest of it; with max_steps set, a checkpoint
    written at an epoch's end restarts that epoch, runs it empty (or one batch past its end) and counts it again."""

    def on_load_checkpoint(self, trainer, pl_module, checkpoint):
        """The checkpoint of a stop inside an epoch made what it is: mid-epoch, the epoch not yet processed."""
        loops = (checkpoint.get("loops") or {}).get("fit_loop") or {}
        epochs, batches = loops.get("epoch_progress"), loops.get("epoch_loop.batch_progress")
        if not epochs or not batches or batches["is_last_batch"] or not batches["current"]["completed"]:
            return
        counts = (epochs["current"], epochs["total"])
        if all(c["ready"] == c["started"] == c["processed"] == c["completed"] + 1 for c in counts):
            for count in counts:
                count["processed"] -= 1
        # saved when training ended (ModelCheckpoint(save_last)'s on_train_end), the epoch already counted complete
        elif all(c["ready"] == c["started"] == c["processed"] == c["completed"] for c in counts):
            for count in counts:
                count["processed"] -= 1
                count["completed"] -= 1

    def on_train_start(self, trainer, pl_module):
        loop, epochs = trainer.fit_loop, trainer.fit_loop.epoch_progress.current
        # Lightning's setter leaves `restarting` True after an epoch's end only when max_steps is set
        at_epoch_end = epochs.ready == epochs.started == epochs.processed  # a stop inside one: see on_load_checkpoint
        if not loop.restarting or not at_epoch_end or loop.restarted_mid_epoch:
            return  # not a resume, or from inside an epoch or a batch's end: Lightning continues where it stopped
        if loop.restarted_on_epoch_end:  # saved in on_train_epoch_end: the epoch not yet counted complete
            loop.epoch_progress.increment_completed()
        loop._restart_stage = RestartStage.NONE  # the next epoch starts as any new one
        _Loop.restarting.fset(loop, False)  # and its epoch and validation loops (its own setter keeps it True)
        loop.epoch_loop.update_restart_stage()


class SeedPerRankAndStep(Callback):
    """seed_everything seeds every DDP process alike: the WGAN's ranks drew the same noise (its fake batch did not
    grow with the GPUs) and the Darknet's the same crops; and a resume replayed the random numbers of the run's start.
    When training starts on a rank other than 0 or past step 0, that process is seeded from (seed, rank, step);
    one process from step 0 keeps the seed's own numbers."""

    def on_train_start(self, trainer, pl_module):
        if trainer.global_rank == 0 and trainer.global_step == 0:
            return
        seed = hash((torch.initial_seed(), trainer.global_rank, trainer.global_step)) % 2**32
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)  # and every CUDA device's


class EpochLengthResume(Callback):
    """A run resumed inside an epoch with another number of batches an epoch (another number of processes, or batch
    size) goes on at the same share of that epoch: Lightning counts the batches done in the stopped run's, so a move
    from 2 processes to 1 after half an epoch trained its first quarter again and ran on into the next epoch's
    schedule. The totals (results.json's epochs) count the earlier epochs in the new batches, at an epoch's end too.
    The epoch's length is saved in the checkpoint (the TrainingPhaseScheduler rescales its own position)."""

    def __init__(self):
        self.length: int | None = None  # this training's, saved
        self.saved_length: int | None = None  # the checkpoint's
        self.max_steps: int | None = None  # --trainer.max_steps, as given

    def state_dict(self):
        return {"batches": self.length}

    def load_state_dict(self, state_dict):
        self.saved_length = state_dict.get("batches")

    def on_fit_start(self, trainer, pl_module):
        self.max_steps = trainer.max_steps  # (a TrainingPhaseScheduler sets its own as training starts)

    def on_train_start(self, trainer, pl_module):
        length, saved, self.saved_length = trainer.num_training_batches, self.saved_length, None
        self.length = length if length != float("inf") else None
        resumed = resumed_batches(trainer, saved) if saved != length else None
        if resumed is None:
            return
        (done, position), progress = resumed, trainer.fit_loop.epoch_loop.batch_progress
        said = f"the run trained {saved} batches an epoch, this training {length}"
        if any(config.interval == "step" for config in trainer.lr_scheduler_configs):
            rank_zero_warn(f"{said}: the model's lr scheduler counts steps, and goes on at the step it was at, not the "
                           f"epoch (the configs' TrainingPhaseScheduler goes on at the same epoch)")
        if self.max_steps not in (None, -1):
            rank_zero_warn(f"{said}: --trainer.max_steps {self.max_steps} counts the steps of both, so the run ends at "
                           f"another epoch than it would have; --trainer.max_epochs counts epochs")
        if 0 < done < saved:  # (at an epoch's end the next one starts as any)
            rank_zero_warn(f"{said}: it goes on after {position} of them, the share of the epoch it had done")
        # the totals count the earlier epochs' batches too (results.json's epochs): in this training's batches
        earlier = progress.total.completed - progress.current.completed
        shift = position - done
        for counts, by in ((progress.current, shift), (progress.total, shift + earlier * length // saved - earlier)):
            counts.ready += by
            counts.started += by
            counts.processed += by
            counts.completed += by


class LastStepLr(Callback):
    """Each optimizer's lr per parameter group as the last training batch began: the lr it trained at. After the fit
    the optimizers hold the next batch's (a phase scheduler's restart of SGDR, a CycleGAN epoch's 0 past the end)."""

    def __init__(self):
        self.lr: list[list[float]] | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        # a tensor lr (capturable optimizers) copied on its device: read on the host once, after the fit
        self.lr = [[lr.detach().clone() if torch.is_tensor(lr) else lr for lr in (g["lr"] for g in o.param_groups)]
                   for o in trainer.optimizers]


class RerunStoppedValidation(Callback):
    """A stop signal in the middle of the fit's validation saves at once (a job's grace time may be shorter than the
    validation), and Lightning 2.6 resumed that checkpoint past the validation, as one ModelCheckpoint wrote after it:
    the epoch kept no val metrics and no best-*.ckpt. Its progress is made to read as saved inside a validation
    batch, which Lightning resumes by running the validation again, here from its first batch. The run's last
    validation, which Lightning's fit passes over with max_steps reached, is run when training starts (a fit whose
    --trainer.max_steps is reached already is let start, for it)."""

    def __init__(self):
        self.pending, self.max_steps = False, None

    def on_load_checkpoint(self, trainer, pl_module, checkpoint):
        loops = (checkpoint.get("loops") or {}).get("fit_loop") or {}
        validation = loops.get("epoch_loop.val_loop.batch_progress")
        current = validation and validation["current"]
        # none begun since the sanity check's (its progress is reset), or it ended; a save from a batch's end hook (rank
        # 0's under DDP, SaveOnStop) has that batch processed, not completed, also at the first and the last batch
        if not current or not current["processed"] or (validation["is_last_batch"]
                                                         and current["completed"] == current["processed"]):
            return
        total = validation["total"]
        total["processed"] = total["completed"] = total["started"] - 1  # Lightning's test of "mid-evaluation"
        validation["current"] = {count: 0 for count in validation["current"]}  # its batches from the first again
        self.pending = True
        step = checkpoint.get("global_step", 0)
        if 0 <= trainer.max_steps <= step:  # Lightning's fit would end before it began
            self.max_steps, trainer.fit_loop.epoch_loop.max_steps = trainer.max_steps, step + 1

    def on_train_start(self, trainer, pl_module):
        if self.max_steps is not None:
            trainer.fit_loop.epoch_loop.max_steps, self.max_steps = self.max_steps, None
        if self.pending and 0 <= trainer.max_steps <= trainer.global_step:  # as Lightning's training_epoch_loop
            trainer.validating = True
            trainer.fit_loop.epoch_loop.val_loop.run()
            trainer.training = True

    def on_validation_end(self, trainer, pl_module):
        if self.pending and not trainer.sanity_checking:
            # Lightning keeps the totals' lag of one batch, and a checkpoint saved from now on (ModelCheckpoint's, at
            # this validation's end) would read as stopped inside a validation, and run one batch of it on resume
            total = trainer.fit_loop.epoch_loop.val_loop.batch_progress.total
            total.processed = total.completed = total.started
            self.pending = False
