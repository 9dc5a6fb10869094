"""The LR finder's loss record (callbacks/lr_finder.py) against fastai's lr_find average, written out here, and its
suggestion against the steepest descent in log10(lr) computed here with numpy."""
import logging
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from lightning.pytorch.tuner import lr_finder as lightning_lr_finder

from callbacks.lr_finder import (
    DebiasedLossRecord,
    debiased_loss_record,
    early_end_not_called_divergence,
    steepest_log_descent,
)


def fake_trainer(accumulate=1):
    return SimpleNamespace(fit_loop=SimpleNamespace(batch_idx=0), accumulate_grad_batches=accumulate,
                           should_stop=False, strategy=SimpleNamespace(broadcast=lambda value: value))


def fastai_record(losses, beta=0.98, stop_div=4.0):
    """fastai's smoothing: avg = beta avg + (1 - beta) loss, divided by 1 - beta**n after n losses; the sweep stops
    after the first loss past stop_div x the best (from the second loss on)."""
    average, best, record = 0.0, None, []
    for n, loss in enumerate(losses, 1):
        average = beta * average + (1 - beta) * loss
        smoothed = average / (1 - beta ** n)
        record.append(smoothed)
        if n > 1 and stop_div is not None and smoothed > stop_div * best:
            return record, True
        best = smoothed if best is None else min(best, smoothed)
    return record, False


def feed(callback, trainer, losses):
    for step, loss in enumerate(losses):
        trainer.fit_loop.batch_idx = step
        callback.on_train_batch_end(trainer, None, {"loss": torch.tensor(loss)}, None, step)
        if trainer.should_stop:
            break


@pytest.mark.parametrize("losses", [[2.3] * 6, [2.3, 2.2, 2.0, 1.7, 1.9, 2.6], [0.5, 3.0, 9.0, 40.0, 90.0],
                                    [0.5, 100.0, 1.0]])  # past 4x at the second loss
def test_each_loss_is_the_debiased_average_and_the_stop_is_at_stop_div_times_the_best(losses):
    callback, trainer = DebiasedLossRecord(num_training=len(losses), early_stop_threshold=4.0), fake_trainer()
    feed(callback, trainer, losses)
    expected, stopped = fastai_record(losses)
    assert callback.losses == pytest.approx(expected, rel=1e-6)
    assert trainer.should_stop is stopped
    assert callback.losses[0] == pytest.approx(losses[0])  # Lightning's own record read about half of it


def test_a_loss_that_is_not_finite_stops_the_sweep_unless_stop_div_is_null():
    for threshold, kept in ((4.0, 3), (None, 5)):
        callback, trainer = DebiasedLossRecord(num_training=5, early_stop_threshold=threshold), fake_trainer()
        feed(callback, trainer, [2.3, 2.2, float("inf"), 2.0, 2.0])
        assert len(callback.losses) == kept and trainer.should_stop is (threshold is not None)


def test_one_loss_per_optimizer_step_and_a_placeholder_for_a_skipped_step():
    callback, trainer = DebiasedLossRecord(num_training=3, early_stop_threshold=None), fake_trainer(accumulate=3)
    feed(callback, trainer, [9.0, 9.0, 2.0, 9.0, 9.0, 3.0])  # the batches within an accumulation are not recorded
    trainer.fit_loop.batch_idx = 8
    callback.on_train_batch_end(trainer, None, None, None, 8)  # training_step returned None: the step was skipped
    assert callback.losses[:2] == pytest.approx(fastai_record([2.0, 3.0], stop_div=None)[0])
    assert math.isnan(callback.losses[2]) and callback.averaged == 2


def test_the_finder_uses_the_record_only_inside_the_block():
    lightning_callback = lightning_lr_finder._LRCallback
    with debiased_loss_record():
        assert lightning_lr_finder._LRCallback is DebiasedLossRecord
    assert lightning_lr_finder._LRCallback is lightning_callback


def test_lightnings_diverging_loss_line_is_dropped_only_after_a_ctrl_c_and_only_inside_the_block():
    shown = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: shown.append(record.getMessage())
    log = logging.getLogger("lightning.pytorch.tuner.lr_finder")
    level, log.level = log.level, logging.INFO
    log.addHandler(handler)
    diverged = "LR finder stopped early after 3 steps due to diverging loss."
    try:
        stopped = []
        with early_end_not_called_divergence(stopped):
            log.info(diverged)  # a real divergence: said
            stopped.append(True)  # the Ctrl-C came
            log.info(diverged)  # dropped: a Ctrl-C ended the sweep
            log.info("Restoring states from the checkpoint path at x.ckpt")  # other lines stay
        log.info(diverged)  # after the block, Lightning's line as it is
    finally:
        log.removeHandler(handler)
        log.level = level
    assert shown == [diverged, "Restoring states from the checkpoint path at x.ckpt", diverged]


def exponential_sweep(n=100, min_lr=1e-6, max_lr=10.0):
    """The lrs of Lightning's exponential sweep: equal ratios from min_lr to max_lr."""
    return list(min_lr * (max_lr / min_lr) ** (np.arange(n) / (n - 1)))


def lightnings_suggestion(lrs, losses):
    finder = lightning_lr_finder._LRFinder(mode="exponential", lr_min=lrs[0], lr_max=lrs[-1], num_training=len(lrs))
    finder.results = {"lr": lrs, "loss": losses}
    return finder.suggestion()


def test_the_suggestion_is_the_steepest_descent_in_log_lr_where_lightning_picks_an_early_wiggle():
    lrs = exponential_sweep()
    x = np.log10(lrs)
    # the loss falls from 2.3 to 0.8 about lr 0.1, fastest there in log10(lr) (the sigmoid's centre), and dips by
    # 0.01 about lr 1e-5: in log10(lr) that slope is ~40 times smaller, against the linear lr over 200 times larger
    losses = list(2.3 - 1.5 / (1 + np.exp(-4 * (x + 1))) - 0.01 * np.exp(-((x + 5) / 0.2) ** 2))
    steepest = steepest_log_descent(lrs, losses)
    assert lrs[steepest] == pytest.approx(0.1, rel=0.1)  # the sweep's lrs are 1.18x apart
    assert lightnings_suggestion(lrs, losses) < 1e-4  # the gradient against the linear lr: the wiggle (#21141)


@pytest.mark.parametrize("seed", range(5))
def test_the_suggestion_is_numpys_steepest_log_descent_past_the_first_ten_and_last_points_and_non_finite_losses(seed):
    rng = np.random.default_rng(seed)
    lrs = exponential_sweep(60, min_lr=1e-5, max_lr=1.0)
    losses = list(2.0 + rng.normal(0, 0.3, 60).cumsum())
    losses[0:10] = [100.0, -100.0] * 5  # the steepest fall of all, in the first ten points: skipped
    losses[-2:] = [50.0, -50.0]  # and in the last: the last point skipped
    for at in rng.choice(np.arange(10, 59), 6, replace=False):
        losses[at] = rng.choice([float("nan"), float("inf")])  # skipped steps and a diverged loss
    kept = [i for i in range(10, 59) if math.isfinite(losses[i])]
    slope = np.gradient(np.array(losses)[kept], np.log10(np.array(lrs)[kept]))
    assert steepest_log_descent(lrs, losses) == kept[int(np.argmin(slope))]


def test_no_suggestion_with_fewer_than_two_finite_losses_in_the_window_as_lightning():
    lrs = exponential_sweep(13)
    for losses, suggested in (([2.0] * 13, True), ([2.0] * 11 + [float("nan"), 1.0], False), ([2.0] * 12, False)):
        assert (steepest_log_descent(lrs[:len(losses)], losses) is not None) is suggested
        assert (lightnings_suggestion(lrs[:len(losses)], losses) is not None) is suggested
