"""The LR finder's loss record with fastai's debiased average (lesson 12's lr_find, as the seed runs it).

Lightning's sweep recorder divides its running average by 1 - beta**(global_step + 1), which counts one step too many
(global_step has already moved on when the batch ends): its first losses read about half the true loss, the plot rises
at the smallest lrs, and the best loss it keeps is that low first value, so `stop_div` 4 stopped the sweep at about
twice the starting loss (Lightning issue 14167). Here the average is divided by 1 - beta**n, n the losses averaged.
"""
import contextlib
import logging
import math

import torch
from lightning.pytorch.tuner import lr_finder as lightning_lr_finder


class DebiasedLossRecord(lightning_lr_finder._LRCallback):
    """Lightning's sweep callback (the lrs it records, its progress bar) with the debiased loss average; the
    divergence stop also stops at a loss that is not finite (fastai's: a nan average stays nan to the end)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.averaged = 0  # losses in the running average (the nan placeholders of skipped steps are not)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if (trainer.fit_loop.batch_idx + 1) % trainer.accumulate_grad_batches:
            return  # within an accumulation: one record per optimizer step, as the lrs
        if not outputs:  # a skipped step; its lr was recorded, so it gets a placeholder the suggestion passes over
            self.losses.append(float("nan"))
            return
        if self.progress_bar:
            self.progress_bar.update()
        loss = (outputs if isinstance(outputs, torch.Tensor) else outputs["loss"]).item()
        self.averaged += 1
        self.avg_loss = self.beta * self.avg_loss + (1 - self.beta) * loss
        smoothed = self.avg_loss / (1 - self.beta ** self.averaged)
        stop = self.averaged > 1 and self.early_stop_threshold is not None and (
            not math.isfinite(smoothed) or smoothed > self.early_stop_threshold * self.best_loss)
        trainer.should_stop = trainer.strategy.broadcast(trainer.should_stop or stop)  # rank 0's decision on all
        if self.averaged == 1 or smoothed < self.best_loss:
            self.best_loss = smoothed
        self.losses.append(smoothed)


@contextlib.contextmanager
def debiased_loss_record():
    """Tuner.lr_find records its sweep with DebiasedLossRecord while in this block (it builds its callback itself)."""
    lightning_callback = lightning_lr_finder._LRCallback
    lightning_lr_finder._LRCallback = DebiasedLossRecord
    try:
        yield
    finally:
        lightning_lr_finder._LRCallback = lightning_callback


@contextlib.contextmanager
def early_end_not_called_divergence(stopped: list):
    """Inside the block, Lightning's "LR finder stopped early ... due to diverging loss" is dropped once `stopped`
    (ctrl_c_ends_the_fit's list) holds the Ctrl-C that ended the sweep: Lightning says that of any early end."""
    finder_log = lightning_lr_finder.log

    def said(record: logging.LogRecord) -> bool:
        return not (stopped and "due to diverging loss" in record.getMessage())
    finder_log.addFilter(said)
    try:
        yield
    finally:
        finder_log.removeFilter(said)
