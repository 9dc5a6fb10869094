"""A resume of a run that max_steps or max_time stopped inside an epoch, made to go on as the run would have; and
the random numbers of each DDP rank and each resume their own.

train.py adds `MaxStepsResume` and `SeedPerRankAndStep` to every fit; with a plain `lightning.Trainer`, give them in
`callbacks=[...]` (MaxStepsResume first, before callbacks whose on_train_start reads the epoch) to resume such a
checkpoint with `fit(ckpt_path=...)`, and for a GAN's ranks to draw noise of their own.
"""

import random

import numpy as np
import torch
from lightning.pytorch import Callback
from lightning.pytorch.loops.fit_loop import RestartStage
from lightning.pytorch.loops.loop import _Loop


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
