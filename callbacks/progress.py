"""The training signal on screen: chosen metrics on the progress bar, or a plain-text line in a log file.

Lightning converts every `self.log(..., prog_bar=True)` value to a Python number after every batch
(`_LoggerConnector.on_batch_end` -> `_ResultCollection.metrics` -> `convert_tensors_to_scalars`), which on a
GPU is a host-device sync per step. The systems therefore log their training metrics as device tensors without
`prog_bar`, name the ones to show in a `progress_bar_metrics` class attribute, and `ProgressBar` copies those
from `trainer.callback_metrics` once per logging interval, all in one transfer. train.py adds the bar through
`add_progress_bar` (a progress bar in a shipped config would clash with `--trainer.enable_progress_bar false`).
"""

import logging
import math
import os
import sys
import time
import warnings

import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import WandbLogger

from callbacks.errors import UserError


class ProgressBar(TQDMProgressBar):
    """Lightning's TQDM bar showing `metrics`, refreshed on the batches Lightning logs (every
    `trainer.log_every_n_steps` optimizer steps); when stdout is not a terminal (a SLURM `slurm-%j.out`, a pipe) it
    prints one plain line on each of them (every `every_n_steps` batches when given) instead of redrawing a bar,
    plus one line per validation:

        epoch 2/30 batch 40/98 step 236 | loss 1.234 | 5.21 it/s
        epoch 2/30 validation | acc 0.6012 loss 1.102

    Args:
        metrics: logged names to show, e.g. [train/loss]; shown without their `train/` prefix. None: the
            system's `progress_bar_metrics`, or when it has none every scalar `train/` metric it logs.
        text: plain lines instead of the bar; None: when stdout is not a terminal.
        every_n_steps: batches between plain lines and between metric refreshes; None: trainer.log_every_n_steps.
        refresh_rate: batches between redraws of the bar (TQDM mode).
    """

    def __init__(self, metrics: list[str] | None = None, text: bool | None = None, every_n_steps: int | None = None,
                 refresh_rate: int = 1):
        super().__init__(refresh_rate=refresh_rate)
        if every_n_steps is not None and every_n_steps < 1:
            raise UserError(f"ProgressBar every_n_steps is {every_n_steps}; give 1 or more (or null for "
                             f"trainer.log_every_n_steps)")
        self.metrics = list(metrics) if metrics is not None else None
        self.text = not sys.stdout.isatty() if text is None else text
        self.every_n_steps = every_n_steps
        self.shown: dict[str, float] = {}  # the metrics as of the last refresh
        self._batches = 0
        self._clock: tuple[float, int] | None = None  # (time, batches) at the last plain line
        self._quiet = False  # disabled: on ranks other than 0, and inside the LR finder
        if self.text:
            super().disable()  # no bars at all; the hooks below print the lines

    def disable(self) -> None:
        self._quiet = True
        super().disable()

    def enable(self) -> None:
        self._quiet = False
        if not self.text:
            super().enable()

    # ---- metrics --------------------------------------------------------------------------------------------
    def interval(self, trainer) -> int:
        return self.every_n_steps or max(trainer.log_every_n_steps, 1)

    def refresh(self, trainer) -> None:
        """Read the chosen training metrics from the device: one transfer for all of them."""
        logged = trainer.callback_metrics
        chosen = self.metrics if self.metrics is not None else getattr(trainer.lightning_module,
                                                                       "progress_bar_metrics", None)
        names = [n for n in (chosen if chosen is not None else sorted(logged)) if n in logged
                 and (chosen is not None or n.startswith("train/")) and logged[n].numel() == 1]
        if names:
            values = torch.stack([logged[n].detach().float().reshape(()) for n in names]).tolist()
            self.shown = {n.removeprefix("train/"): v for n, v in zip(names, values, strict=True)}

    def get_metrics(self, trainer, pl_module) -> dict:
        return {**super().get_metrics(trainer, pl_module), **self.shown}

    # ---- hooks ----------------------------------------------------------------------------------------------
    def on_train_start(self, trainer, pl_module) -> None:
        super().on_train_start(trainer, pl_module)
        self._batches, self._clock, self.shown = 0, None, {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self._batches += 1
        if self._batches == 1:  # the clock starts after the first batch: it holds the workers' start, a resume's
            self._clock = (time.perf_counter(), 1)  # restore, cuDNN's tuning, which no later batch pays
        every = self.interval(trainer)
        # on the steps the systems log (logging_step), so the bar and the lines show fresh values: every
        # log_every_n_steps optimizer steps (batches / accumulate_grad_batches; none for 0), the first batch's too
        due = trainer._logger_connector.should_update_logs if self.every_n_steps is None else self._batches % every == 0
        if due or self._batches == 1:
            self.refresh(trainer)
        if self.text and due:
            self.print_line(trainer, batch_idx)
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def print_line(self, trainer, batch_idx: int) -> None:
        now = time.perf_counter()
        then, batches = self._clock
        timed = self._batches - batches
        self._clock = (now, self._batches)
        if self._quiet or not trainer.is_global_zero:
            return
        epochs = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
        total = trainer.num_training_batches
        batches = f"/{total}" if isinstance(total, int) else ""
        shown = " ".join(f"{k} {format_number(v)}" for k, v in self.shown.items())
        # where the training ends when max_steps does it first (the phase scheduler's set_max_steps): epoch 3/30 alone
        # hid that it would stop at 7
        steps = f"/{trainer.max_steps}" if trainer.max_steps > 0 else ""
        print(f"epoch {trainer.current_epoch}{epochs} batch {batch_idx + 1}{batches} step {trainer.global_step}{steps}"
              f"{' | ' + shown if shown else ''}{f' | {timed / max(now - then, 1e-9):.2f} it/s' if timed else ''}",
              flush=True)

    def on_validation_end(self, trainer, pl_module) -> None:
        super().on_validation_end(trainer, pl_module)
        if self.text and not self._quiet and trainer.is_global_zero and not trainer.sanity_checking:
            logged = trainer.callback_metrics
            shown = " ".join(f"{n.removeprefix('val/')} {format_number(float(v))}" for n, v in sorted(logged.items())
                             if n.startswith("val/") and v.numel() == 1)
            epochs = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
            print(f"epoch {trainer.current_epoch}{epochs} validation{' | ' + shown if shown else ''}", flush=True)


def logging_step(module, pending_steps: int = 1) -> bool:
    """Whether training metrics logged now reach the loggers: every `log_every_n_steps` batches (Lightning's own
    test), the first batch of a fit (a signal at once), the last batch of an epoch and the last step (so
    results.json, the bar and, through `WriteLoggingSteps`, the loggers end on the final values). The systems call
    `self.log` only then: each call costs Lightning's bookkeeping on the host (~0.1-0.5 ms) and a Python number a
    host-to-device copy, which on a GPU stalls the step (measured: the WGAN at 0.68 of a plain loop's critic it/s
    on an H200 with five logs a step, part of it Lightning's own loop).

    `pending_steps`: optimizer steps this batch will still take (1 in an automatic-optimization
    `training_step`; 0 after a manual step). True for a module outside a Trainer (a test calling its step)."""
    trainer = module._trainer
    # not `trainer.callback_metrics`: that property recomputes every logged metric, which Lightning already
    # does once per batch; the training loop's results hold a key for each name logged in this fit
    if trainer is None or trainer._logger_connector.should_update_logs or not trainer._results:
        return True
    return last_batch(trainer, pending_steps)


def last_batch(trainer, pending_steps: int = 0) -> bool:
    """Whether this batch ends an epoch, or its step (with `pending_steps` still to take) ends the fit."""
    return (0 < trainer.max_steps <= trainer.global_step + pending_steps
            or trainer.fit_loop.epoch_loop.batch_progress.is_last_batch)


class WriteLoggingSteps(Callback):
    """Writes to the loggers the training metrics of the batches `logging_step` adds to Lightning's interval (the
    first of a fit, each epoch's last, the last step): Lightning writes step metrics only every
    `log_every_n_steps`, so a dashboard would end on older values than results.json and the bar. train.py adds it."""

    def __init__(self):
        self._first = False

    def on_train_start(self, trainer, pl_module) -> None:
        self._first = True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        first, self._first = self._first, False
        connector = trainer._logger_connector
        if connector.should_update_logs or trainer.log_every_n_steps == 0:
            return  # Lightning writes this batch itself, or the user asked for no step metrics
        if first or last_batch(trainer):  # at the step Lightning's own writes use (an accumulating batch: the next's)
            connector.log_metrics(connector.metrics["log"])


def format_number(value: float) -> str:
    return f"{value:.4g}"


def add_progress_bar(trainer_config) -> None:
    """train.py's hook (LightningCLI's trainer config, before instantiation): append a `ProgressBar` unless the
    bar is switched off (`--trainer.enable_progress_bar false`) or the config already has a progress bar."""
    from jsonargparse import Namespace

    if trainer_config.get("enable_progress_bar") is False:
        return
    callbacks = list(trainer_config.get("callbacks") or [])
    if any(str(getattr(c, "class_path", "")).endswith("ProgressBar") for c in callbacks):
        return
    init_args = Namespace(metrics=None, text=None, every_n_steps=None, refresh_rate=1)
    trainer_config.callbacks = [*callbacks, Namespace(class_path="callbacks.ProgressBar", init_args=init_args)]


# ---- what the user did not cause, kept off the screen (train.py and the inference commands)


class _DropInfo(logging.Filter):
    """Lightning's info lines that are advertisements or internals, not about the user's run."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        return not (message.startswith("💡 Tip") or message.startswith("Loading `train_dataloader` to estimate")
                    or message.startswith("`weights_only` was not set"))  # the LR finder's save of the model


def quiet() -> None:
    """Silence what the user did not cause: W&B's banner lines, Lightning's tips and its own deprecations."""
    os.environ.setdefault("WANDB_SILENT", "true")
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                 "lightning.pytorch.trainer.connectors.checkpoint_connector"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropInfo) for f in logger.filters):
            logger.addFilter(_DropInfo())
    # Lightning 2.6 calls torch's deprecated LeafSpec check itself
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    # a ModelCheckpoint's save before the first validation (a run stopped by max_steps, a timed save): its "Did you
    # call log('val/acc')" hint points at the user's code; after a validation Lightning raises for a missing key
    warnings.filterwarnings("ignore", message=r"`ModelCheckpoint\(monitor=.*could not find the monitored key")


class MonitorSummary(Callback):
    """The W&B summary of each ModelCheckpoint's monitor (`val/acc`: its best and last) over the whole run, a resume's
    earlier part too. wandb's own (define_metric's summary) sees the values this process logged: a resumed run's
    summary said the best of the resumed part (offline, each part is its own file; online, wandb issue #9684), not
    the run's. The checkpoint callback's best_model_score comes back from the checkpoint; after each validation the
    summary is set from it, the best this process saw and the value just logged."""

    def __init__(self):
        self.best: dict[str, float] = {}

    def on_validation_end(self, trainer, pl_module):
        if trainer.sanity_checking or not trainer.is_global_zero:  # only rank 0 has the W&B run
            return
        loggers = [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]
        for callback in trainer.checkpoint_callbacks if loggers else []:
            monitor = isinstance(callback, ModelCheckpoint) and callback.monitor
            if not monitor or monitor not in trainer.callback_metrics:
                continue
            last = float(trainer.callback_metrics[monitor])
            better = max if callback.mode == "max" else min
            known = [float(v) for v in (callback.best_model_score, self.best.get(monitor), last) if v is not None]
            known = [v for v in known if math.isfinite(v)]
            if not known:
                continue
            self.best[monitor] = better(known)
            for logger in loggers:
                logger.experiment.summary[monitor] = {callback.mode: self.best[monitor], "last": last}
