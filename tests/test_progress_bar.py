"""ProgressBar's own settings and lines against text written out by hand: every_n_steps, the rate from a controlled
clock, an unlimited max_epochs, rank 0 only, disable/enable, flushing; train.py's add_progress_bar and quiet."""

import logging
import re
import sys
import warnings
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from jsonargparse import Namespace
from torch.utils.data import DataLoader, TensorDataset

from callbacks import ProgressBar, UserError, progress
from callbacks.progress import _DropInfo, add_progress_bar, quiet

pytestmark = pytest.mark.usefixtures("one_thread")


class Counter(L.LightningModule):
    """train/x = the batch index, train/y = 10 x it; validation: val/acc 0.60123, val/loss 1.1024, a 2-value val/img."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_idx):
        x = torch.tensor(float(batch_idx))
        self.log("train/x", x)
        self.log("train/y", 10 * x)
        return (self.weight * batch[0]).sum()

    def validation_step(self, batch, batch_idx):
        self.log("val/acc", torch.tensor(0.60123))
        self.log("val/loss", torch.tensor(1.1024))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def fit(bar, batches=7, every=3, validate=False, **trainer):
    loader = DataLoader(TensorDataset(torch.zeros(batches, 1)), batch_size=1)
    trainer.setdefault("max_epochs", 1)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_model_summary=False,
                        log_every_n_steps=every, callbacks=[bar], num_sanity_val_steps=0,
                        limit_val_batches=1 if validate else 0, **trainer)
    trainer.fit(Counter(), loader, loader if validate else None)
    return trainer


def without_rate(text):
    return [re.sub(r" \| \S+ it/s$", "", line) for line in text.splitlines()]


def test_every_n_steps_1_is_accepted_and_0_refused():
    assert ProgressBar(every_n_steps=1).every_n_steps == 1
    with pytest.raises(UserError, match="every_n_steps is 0"):
        ProgressBar(every_n_steps=0)


def test_every_n_steps_sets_the_lines_apart_from_log_every_n_steps(capsys):
    fit(ProgressBar(text=True, every_n_steps=2), batches=7, every=3)
    # batches 2, 4, 6 (indices 1, 3, 5); the metrics read on those batches
    assert without_rate(capsys.readouterr().out) == ["epoch 0/1 batch 2/7 step 2 | x 1 y 10",
                                                     "epoch 0/1 batch 4/7 step 4 | x 3 y 30",
                                                     "epoch 0/1 batch 6/7 step 6 | x 5 y 50"]


def test_interval_is_every_n_steps_or_log_every_n_steps_at_least_1():
    assert ProgressBar(every_n_steps=2).interval(SimpleNamespace(log_every_n_steps=3)) == 2
    assert ProgressBar().interval(SimpleNamespace(log_every_n_steps=1)) == 1
    assert ProgressBar().interval(SimpleNamespace(log_every_n_steps=0)) == 1


def clock(monkeypatch, *times):
    ticks = iter(times)
    monkeypatch.setattr(progress, "time", SimpleNamespace(perf_counter=lambda: next(ticks)))


def test_the_rate_is_batches_since_the_last_line_over_the_seconds_since(monkeypatch, capsys):
    # the end of the first batch (the clock's start: the first batch holds the start-up), then the lines at
    # batches 3 (2 batches timed) and 6 (3)
    clock(monkeypatch, 100.0, 101.0, 104.0)
    fit(ProgressBar(text=True), batches=7, every=3)
    assert capsys.readouterr().out.splitlines() == ["epoch 0/1 batch 3/7 step 3 | x 2 y 20 | 2.00 it/s",
                                                    "epoch 0/1 batch 6/7 step 6 | x 5 y 50 | 1.00 it/s"]
    clock(monkeypatch, 100.0, 100.0)  # no time passed: 2 batches over the floor of 1e-9 s
    fit(ProgressBar(text=True), batches=3, every=3)
    assert capsys.readouterr().out.splitlines() == ["epoch 0/1 batch 3/3 step 3 | x 2 y 20 | 2000000000.00 it/s"]


def test_an_unlimited_max_epochs_shows_no_total(capsys):
    fit(ProgressBar(text=True), batches=7, every=3, validate=True, max_epochs=-1, max_steps=3, val_check_interval=3)
    assert without_rate(capsys.readouterr().out) == ["epoch 0 batch 3/7 step 3/3 | x 2 y 20",
                                                     "epoch 0 validation | acc 0.6012 loss 1.102"]


def test_numbers_have_four_significant_digits(capsys):
    bar = ProgressBar(text=True)
    bar.shown = {"a": 1.23456, "b": 0.000123456, "c": 123456.0, "d": 2.0, "e": -0.5}
    bar._clock, bar._batches = (progress.time.perf_counter(), 0), 1
    trainer = SimpleNamespace(is_global_zero=True, max_epochs=30, num_training_batches=98, current_epoch=2,
                              global_step=236, max_steps=-1)
    bar.print_line(trainer, 39)
    assert without_rate(capsys.readouterr().out) == [
        "epoch 2/30 batch 40/98 step 236 | a 1.235 b 0.0001235 c 1.235e+05 d 2 e -0.5"]
    bar.print_line(SimpleNamespace(**{**vars(trainer), "max_steps": 700}), 39)  # where a max_steps ends the training
    assert without_rate(capsys.readouterr().out)[0].startswith("epoch 2/30 batch 40/98 step 236/700 | a")
    bar.print_line(SimpleNamespace(**{**vars(trainer), "is_global_zero": False}), 39)  # other ranks: nothing
    assert capsys.readouterr().out == ""


def test_a_disabled_bar_prints_nothing_until_enabled(capsys):
    bar = ProgressBar(text=True)
    bar.disable()
    fit(bar, batches=3, every=3, validate=True)
    assert capsys.readouterr().out == ""
    bar.enable()
    assert bar.is_disabled  # plain lines: no TQDM bar comes back
    fit(bar, batches=3, every=3, validate=True)
    assert without_rate(capsys.readouterr().out) == ["epoch 0/1 batch 3/3 step 3 | x 2 y 20",
                                                     "epoch 0/1 validation | acc 0.6012 loss 1.102"]
    bar = ProgressBar(text=False)
    bar.disable()
    bar.enable()
    assert bar.is_enabled


class Flushes:
    """A stdout that keeps the text written before each flush."""

    def __init__(self):
        self.text, self.flushed = "", []

    def write(self, text):
        self.text += text

    def flush(self):
        self.flushed.append(self.text)

    def isatty(self):
        return False


def test_each_line_is_flushed_at_once(monkeypatch):
    out = Flushes()
    monkeypatch.setattr(sys, "stdout", out)
    fit(ProgressBar(text=True), batches=3, every=3, validate=True)
    monkeypatch.undo()
    lines = out.text.splitlines(keepends=True)
    assert [without_rate(line) for line in lines] == [["epoch 0/1 batch 3/3 step 3 | x 2 y 20"],
                                                      ["epoch 0/1 validation | acc 0.6012 loss 1.102"]]
    assert lines[0] in out.flushed and lines[0] + lines[1] in out.flushed


def test_chosen_metrics_keep_other_prefixes_and_the_default_takes_train_scalars_only():
    logged = {"train/loss": torch.tensor(0.5), "train/img": torch.zeros(2), "val/acc": torch.tensor(0.25),
              "other/z": torch.tensor(3.0)}
    trainer = SimpleNamespace(callback_metrics=logged, lightning_module=SimpleNamespace())
    bar = ProgressBar(metrics=["other/z", "train/loss"])
    bar.refresh(trainer)
    assert bar.shown == {"other/z": 3.0, "loss": 0.5}
    bar = ProgressBar()
    bar.refresh(trainer)
    assert bar.shown == {"loss": 0.5}


def trainer_config(**options):
    return Namespace(**options)


def test_add_progress_bar_appends_train_pys_bar_to_the_callbacks_given():
    stop = Namespace(class_path="lightning.pytorch.callbacks.EarlyStopping", init_args=Namespace(monitor="val/acc"))
    config = trainer_config(callbacks=[stop])
    add_progress_bar(config)
    assert config.callbacks == [stop, Namespace(class_path="callbacks.ProgressBar", init_args=Namespace(
        metrics=None, text=None, every_n_steps=None, refresh_rate=1))]
    config = trainer_config(callbacks=None)
    add_progress_bar(config)
    assert [c.class_path for c in config.callbacks] == ["callbacks.ProgressBar"]
    for config in (trainer_config(enable_progress_bar=False, callbacks=[stop]),
                   trainer_config(callbacks=[Namespace(class_path="lightning.pytorch.callbacks.TQDMProgressBar")])):
        before = list(config.callbacks)
        add_progress_bar(config)
        assert config.callbacks == before


def record(message):
    return logging.LogRecord("lightning", logging.INFO, __file__, 1, message, None, None)


def test_quiet_drops_lightnings_tips_once_per_logger_and_keeps_its_other_lines(monkeypatch):
    drop = _DropInfo()
    assert not drop.filter(record("💡 Tip: For seamless cloud uploads and versioning, try installing litmodels"))
    assert not drop.filter(record("Loading `train_dataloader` to estimate number of stepping batches."))
    assert not drop.filter(record("`weights_only` was not set, defaulting to `False`."))
    assert drop.filter(record("GPU available: False, used: False"))
    assert drop.filter(record("Restoring states from the checkpoint path at last.ckpt"))
    names = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
             "lightning.pytorch.trainer.connectors.checkpoint_connector")
    for name in names:
        monkeypatch.setattr(logging.getLogger(name), "filters", [])
    monkeypatch.delenv("WANDB_SILENT", raising=False)
    with warnings.catch_warnings():
        quiet()
        quiet()
    assert [[type(f) for f in logging.getLogger(name).filters] for name in names] == [[_DropInfo]] * 3
    assert __import__("os").environ["WANDB_SILENT"] == "true"
