"""The LR finder (lesson 12's lr_find, as the seed runs it): train.py's `--lr_find` on Lightning's Tuner, its loss
record with fastai's debiased average.

Lightning's sweep recorder divides its running average by 1 - beta**(global_step + 1), which counts one step too many
(global_step has already moved on when the batch ends): its first losses read about half the true loss, the plot rises
at the smallest lrs, and the best loss it keeps is that low first value, so `stop_div` 4 stopped the sweep at about
twice the starting loss (Lightning issue 14167). Here the average is divided by 1 - beta**n, n the losses averaged.

The suggestion is fastai's "steep": the lr where the smoothed loss falls fastest against log10(lr), not Lightning's
`suggestion()` (steepest_log_descent).
"""
import contextlib
import logging
import math
import warnings
from pathlib import Path
from typing import Literal

import torch
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.tuner import Tuner
from lightning.pytorch.tuner import lr_finder as lightning_lr_finder

from callbacks import run_lifecycle
from callbacks.checkpoint_io import replaced, write_json
from callbacks.errors import ctrl_c_ends_the_fit, lightning_ctrl_c
from callbacks.images import log_to_loggers, subplots
from callbacks.phase_scheduler import TrainingPhaseScheduler
from callbacks.saving import SaveOnStop


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


def steepest_log_descent(lrs, losses, skip_begin: int = 10, skip_end: int = 1) -> int | None:
    """The index of the sweep's steepest loss descent against log10(lr) (fastai's "steep"), or None with fewer than two
    points to compare. As Lightning's `suggestion()`: the first skip_begin and last skip_end points are left out, and so
    are the losses that are not finite (a skipped step's placeholder, a diverged loss)."""
    lrs = torch.tensor(lrs, dtype=torch.float64)
    losses = torch.tensor(losses, dtype=torch.float64)
    index = torch.arange(len(losses))[skip_begin:len(losses) - skip_end]
    index = index[torch.isfinite(losses[index])]
    if len(index) < 2:
        return None
    # ours, as Lightning takes the gradient against the linear lr of an exponential sweep: small lrs win (#21141)
    slope = torch.gradient(losses[index], spacing=(torch.log10(lrs[index]),))[0]
    return index[torch.argmin(slope)].item()


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


def lr_find(cli, run: bool = False, mode: Literal["exponential", "linear"] = "exponential",
            min_lr: float = 1e-6, max_lr: float = 10.0, num_training: int = 100, stop_div: float | None = 4.0,
            linear_axis: bool = False) -> float | None:
    """Lightning's LR finder instead of training: saves lr_find.png and lr_find.json, prints the suggestion.

    Args:
        cli: train.py's LightningCLI, its model, data module and Trainer built (not an option).
        run: run the finder (`--lr_find.run true`, or just `--lr_find`) instead of fit and test.
        mode: exponential or linear growth of the lr between min_lr and max_lr.
        min_lr: first lr tried.
        max_lr: last lr tried.
        num_training: steps of the sweep.
        stop_div: stop once the smoothed loss exceeds stop_div x the best so far, or is not finite (the seed's
            stop_div; the average debiased as fastai's, not as Lightning's: callbacks/lr_finder.py); null never.
        linear_axis: plot lr on a linear axis (the seed's plot(linear=True)) instead of a log axis.
    """
    trainer = cli.trainer  # a GAN's manual optimization is refused by check_job
    # the finder drives the lr itself; a phase scheduler would fight it, and there is nothing to save
    trainer.callbacks = [c for c in trainer.callbacks if not isinstance(c, (TrainingPhaseScheduler, SaveOnStop))]
    # the sweep keeps its folder, however it ends (RunBegan does not see it: Lightning's finder swaps the callbacks)
    run_lifecycle.run_began(Path(trainer.default_root_dir))
    # Ctrl-C ends the sweep after the running batch and plots what it has (Lightning would exit 1 with nothing);
    # one process only: under DDP every rank must stop at the same step, and Lightning's SIGTERM path discards the
    # sweep. No validation then: Lightning validates on stopping early, up to num_training batches
    with ctrl_c_ends_the_fit(trainer, "Ctrl-C: ending the sweep after this batch and plotting it (Ctrl-C again to "
                             "stop at once)", enabled=trainer.world_size == 1, limit_val_batches=0) as stopped, \
            debiased_loss_record(), early_end_not_called_divergence(stopped), lightning_ctrl_c(trainer), \
            warnings.catch_warnings():
        # a sweep stopped at once restores the model with the finder's callbacks still in place: Lightning's advice
        # to add ModelCheckpoint to the Trainer is not for the user
        warnings.filterwarnings("ignore", "Be aware that when using `ckpt_path`")
        finder = Tuner(trainer).lr_find(cli.model, datamodule=cli.datamodule, min_lr=min_lr, max_lr=max_lr,
                                        num_training=num_training, mode=mode, early_stop_threshold=stop_div,
                                        update_attr=False)
    if not trainer.is_global_zero:
        return None
    lrs, losses = finder.results["lr"], finder.results["loss"]
    steepest = None if stopped else steepest_log_descent(lrs, losses)  # a partial sweep's steepest descent is no advice
    suggestion = None if steepest is None else lrs[steepest]
    figure, axes = subplots()  # not pyplot's: a notebook calling train.main keeps its own backend
    finder.plot(suggest=False, ax=axes)  # Lightning's marker would be at its own suggestion
    if steepest is not None:
        axes.plot(lrs[steepest], losses[steepest], markersize=10, marker="o", color="red")
    axes.set_xscale("linear" if linear_axis else "log")
    run_dir = Path(trainer.default_root_dir)
    with replaced(run_dir / "lr_find.png") as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    write_json(run_dir / "lr_find.json", {**finder.results, "suggestion": suggestion})
    log_to_loggers(trainer, "lr_find", run_dir / "lr_find.png", at_batch=False,
                   caption="no suggestion" if suggestion is None else f"suggested lr {suggestion:.3g}")
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.summary["lr_find/suggestion"] = suggestion  # the runs table's column
    if stopped:
        print(f"LR finder: stopped by Ctrl-C after {len(lrs)} of {num_training} steps, at lr {lrs[-1]:.3g} (the sweep "
              f"goes up to {max_lr:g}); no suggestion from part of a sweep. Plot: {run_dir / 'lr_find.png'}")
        raise SystemExit(130)
    if suggestion is not None:
        print(f"LR finder: suggested lr {suggestion:.3g} (steepest loss descent in log lr); train with --model.lr "
              f"{suggestion:.3g}")
    else:
        print("LR finder: no suggestion (too few points, or the loss diverged early); try a larger "
              "--lr_find.num_training, a smaller --lr_find.max_lr or --lr_find.stop_div null")
    print(f"LR finder plot: {run_dir / 'lr_find.png'}")
    return suggestion
