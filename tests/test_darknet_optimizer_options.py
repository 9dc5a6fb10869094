"""The Darknet system's optimizer options (issue 13): parameter groups, the BatchNorm-bias lr, the seed's one-cycle,
Nesterov SGD, label smoothing, EMA weights and Lookahead, each against a computation written here."""

from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging
from runs import DARKNET_TINY as TINY
from runs import quiet_trainer as trainer
from torch import nn

from callbacks import Lookahead, TrainingPhase, TrainingPhaseScheduler
from datamodules import CIFAR10DataModule
from lightning_modules import DarknetClassifier

pytestmark = pytest.mark.usefixtures("one_thread")



# -- optimizer: parameter groups, BatchNorm-bias lr, Nesterov, label smoothing ---------------------------------

def groups_by_tensor(optimizer):
    return {id(p): g for g in optimizer.param_groups for p in g["params"]}


def test_no_decay_and_bn_bias_lr_scale_groups_by_hand():
    model = DarknetClassifier(**TINY, lr=0.1, weight_decay=0.01, no_decay_bn_bias=True, bn_bias_lr_scale=8,
                              one_cycle=None)
    optimizer = model.configure_optimizers()
    where = groups_by_tensor(optimizer)
    stem_conv, stem_bn = model.net.layers[0][0], model.net.layers[0][1]
    linear = model.net.layers[-1]
    # Darknet([1]): stem, one downsampling conv, a ResLayer of two convs: 4 convs + BN, and the linear layer
    assert sum(len(g["params"]) for g in optimizer.param_groups) == 4 * 3 + 2 == len(list(model.parameters()))
    assert (where[id(stem_conv.weight)]["weight_decay"], where[id(stem_conv.weight)]["lr"]) == (0.01, 0.1)
    assert (where[id(linear.weight)]["weight_decay"], where[id(linear.weight)]["lr"]) == (0.01, 0.1)
    assert (where[id(stem_bn.weight)]["weight_decay"], where[id(stem_bn.weight)]["lr"]) == (0.0, 0.1)
    assert (where[id(linear.bias)]["weight_decay"], where[id(linear.bias)]["lr"]) == (0.0, 0.1)
    assert (where[id(stem_bn.bias)]["weight_decay"], where[id(stem_bn.bias)]["lr"]) == (0.0, 0.8)
    # behaviour: with zero gradients and no momentum one step shrinks only the decayed weights, by 1 - lr * wd
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    for g in optimizer.param_groups:
        g["momentum"] = 0.0
    conv_before, bn_before = stem_conv.weight.clone(), stem_bn.weight.clone()
    optimizer.step()
    torch.testing.assert_close(stem_conv.weight, conv_before * (1 - 0.1 * 0.01))
    assert torch.equal(stem_bn.weight, bn_before)


def test_bn_bias_lr_scale_leaves_their_weight_decay_per_step_alone():
    # airbench94 (hyp["opt"]["bias_scaler"]): "scales up learning rate (but not weight decay) for BatchNorm biases",
    # so with zero gradients one SGD step shrinks a BatchNorm bias by the same 1 - lr * wd as a conv weight
    model = DarknetClassifier(**TINY, lr=0.1, weight_decay=0.01, bn_bias_lr_scale=8, one_cycle=None)
    optimizer = model.configure_optimizers()
    stem_conv, stem_bn = model.net.layers[0][0], model.net.layers[0][1]
    with torch.no_grad():
        stem_bn.bias.fill_(2.0)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    for g in optimizer.param_groups:
        g["momentum"] = 0.0
    conv_before = stem_conv.weight.clone()
    optimizer.step()
    torch.testing.assert_close(stem_conv.weight, conv_before * (1 - 0.1 * 0.01))
    torch.testing.assert_close(stem_bn.bias, torch.full_like(stem_bn.bias, 2.0 * (1 - 0.1 * 0.01)))
    # while a gradient still moves it 8 times as far as the lr alone would
    stem_bn.bias.grad = torch.ones_like(stem_bn.bias)
    before = stem_bn.bias.clone()
    optimizer.step()
    torch.testing.assert_close(stem_bn.bias, before * (1 - 0.1 * 0.01) - 0.1 * 8 * 1.0)


def test_bn_bias_lr_scale_zero_freezes_the_batchnorm_biases():
    model = DarknetClassifier(**TINY, lr=0.1, weight_decay=0.01, bn_bias_lr_scale=0, one_cycle=None)
    optimizer = model.configure_optimizers()  # no division by the scale
    bias = model.net.layers[0][1].bias
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    before = bias.clone()
    optimizer.step()
    assert torch.equal(bias, before)


def test_default_is_the_seeds_single_group_with_decay_everywhere():
    optimizer = DarknetClassifier(**TINY, weight_decay=0.01, one_cycle=None).configure_optimizers()
    assert len(optimizer.param_groups) == 1 and optimizer.param_groups[0]["weight_decay"] == 0.01


def test_bn_bias_scale_survives_the_phase_scheduler_and_its_lr_multipliers(tiny_cifar):
    model = DarknetClassifier(**TINY, lr=0.1, bn_bias_lr_scale=64, one_cycle=None)
    phases = [TrainingPhase(1, "SGD", lr=0.05, momentum=0.9, lr_multipliers=[1.0, 1.0, 0.5])]
    data = CIFAR10DataModule(str(tiny_cifar), batch_size=8)
    trainer(max_steps=2, limit_val_batches=0, callbacks=[TrainingPhaseScheduler(phases=phases, plot=False)]).fit(
        model, data)
    where = groups_by_tensor(model.trainer.optimizers[0])
    assert where[id(model.net.layers[0][0].weight)]["lr"] == 0.05
    assert where[id(model.net.layers[0][1].weight)]["lr"] == 0.05
    assert where[id(model.net.layers[0][1].bias)]["lr"] == pytest.approx(0.05 * 0.5 * 64)


def test_bn_bias_scale_under_one_cycle_raises_that_groups_peak(tiny_cifar):
    model = DarknetClassifier(**TINY, lr=0.2, bn_bias_lr_scale=64, one_cycle=(20, 20, 0.95, 0.85))
    trainer(max_steps=1, limit_val_batches=0).fit(model, CIFAR10DataModule(str(tiny_cifar), batch_size=8))
    where = groups_by_tensor(model.trainer.optimizers[0])
    assert where[id(model.net.layers[0][0].weight)]["max_lr"] == pytest.approx(0.2)
    assert where[id(model.net.layers[0][1].bias)]["max_lr"] == pytest.approx(0.2 * 64)
    assert where[id(model.net.layers[0][1].bias)]["initial_lr"] == pytest.approx(0.2 * 64 / 20)


def test_groups_keep_every_trainable_parameter_when_batchnorm_weights_are_frozen():
    # airbench94's net: BatchNorm weights frozen at 1 (each before its module's bias), biases at 64 x the lr
    model = DarknetClassifier(**TINY, lr=0.1, weight_decay=0.01, bn_weight=False, zero_init_residual=False,
                              no_decay_bn_bias=True, bn_bias_lr_scale=64, one_cycle=None)
    groups = model.parameter_groups()
    grouped = [id(p) for g in groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters() if p.requires_grad)
    where = {id(p): g for g in groups for p in g["params"]}
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 4 and all(where[id(m.bias)]["lr"] == pytest.approx(0.1 * 64) for m in norms)


def test_seed_one_cycle_is_three_linear_phases_by_hand():
    # fastai 0.7's use_clr_beta=(div, pct, max_mom, min_mom) = (20, 20, 0.95, 0.85): lr/div up to lr over
    # (100 - pct) / 2 % of the steps, down to lr/div over as many, then to lr/div/100 over the last pct %; momentum
    # 0.95 down to 0.85 and back, then held. torch's steps: a phase ending at fraction f of T steps ends at f T - 1,
    # the second 2 f T - 2, the last T - 1: with T = 100 the knots are steps 0, 39, 78, 99
    model = DarknetClassifier(**TINY, lr=0.4, one_cycle=(20, 20, 0.95, 0.85))
    model.trainer = SimpleNamespace(estimated_stepping_batches=100)
    configured = model.configure_optimizers()
    optimizer, schedule = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    assert len(optimizer.param_groups) == 1 and configured["lr_scheduler"]["interval"] == "step"
    lrs, momenta = [], []
    for _ in range(100):
        lrs.append(optimizer.param_groups[0]["lr"])
        momenta.append(optimizer.param_groups[0]["momentum"])
        optimizer.step()
        schedule.step()
    knots = [0, 39, 78, 99]
    np.testing.assert_allclose(lrs, np.interp(range(100), knots, [0.4 / 20, 0.4, 0.4 / 20, 0.4 / 2000]), rtol=1e-9)
    np.testing.assert_allclose(momenta, np.interp(range(100), knots, [0.95, 0.85, 0.95, 0.95]), rtol=1e-9)


def test_nesterov_sgd_follows_the_formula():
    model = DarknetClassifier(**TINY, lr=0.1, momentum=0.9, weight_decay=0.0, nesterov=True, one_cycle=None)
    optimizer = model.configure_optimizers()
    p = model.net.layers[-1].bias
    start, grads = p.detach().clone(), [torch.randn_like(p) for _ in range(3)]
    expected, buffer = start.clone(), torch.zeros_like(p)
    for g in grads:  # Sutskever et al. 2013 in PyTorch's form: b = m b + g; p -= lr (g + m b)
        buffer = 0.9 * buffer + g
        expected -= 0.1 * (g + 0.9 * buffer)
        for q in model.parameters():
            q.grad = torch.zeros_like(q)
        p.grad = g.clone()
        optimizer.step()
    torch.testing.assert_close(p.detach(), expected)


def test_label_smoothing_against_its_formula():
    model = DarknetClassifier(**TINY, label_smoothing=0.2)
    logits, labels = torch.randn(5, 3), torch.tensor([0, 2, 1, 1, 0])
    target = torch.full((5, 3), 0.2 / 3)
    target[torch.arange(5), labels] += 0.8
    torch.testing.assert_close(model.loss(logits, labels), -(target * logits.log_softmax(1)).sum(1).mean())


# -- weight averaging: Lightning's EMAWeightAveraging with this module --------------------------------------------

class Recorder(L.Callback):
    """The weights after every optimizer step and the weights seen by each validation."""

    def __init__(self):
        self.steps, self.validated = [], []

    def on_train_batch_end(self, trainer, pl_module, *args):
        self.steps.append([p.detach().clone() for p in pl_module.parameters()])

    def on_validation_batch_start(self, trainer, pl_module, *args):
        self.validated.append([p.detach().clone() for p in pl_module.parameters()])


def test_ema_weights_are_validated_tested_and_checkpointed(tiny_cifar, tmp_path):
    model = DarknetClassifier(**TINY, lr=0.05, one_cycle=None)
    data = CIFAR10DataModule(str(tiny_cifar), batch_size=8, eval_batch_size=12)
    recorder = Recorder()
    fit = trainer(max_epochs=2, enable_checkpointing=True, default_root_dir=tmp_path, num_sanity_val_steps=0,
                  callbacks=[recorder, EMAWeightAveraging(decay=0.7)])
    fit.fit(model, data)
    ema = None
    averages = []
    for weights in recorder.steps:  # the first update copies, later ones: ema = 0.7 ema + 0.3 w
        if ema is None:
            ema = [w.clone() for w in weights]
        else:
            ema = [0.7 * e + 0.3 * w for e, w in zip(ema, weights, strict=True)]
        averages.append(ema)
    assert len(averages) == 6 and len(recorder.validated) == 2 * 1  # 3 steps an epoch, 1 validation batch each
    for seen, expected in zip(recorder.validated, (averages[2], averages[5]), strict=True):
        for s, e in zip(seen, expected, strict=True):
            torch.testing.assert_close(s, e)
    for p, e in zip(model.parameters(), averages[-1], strict=True):  # after fit the model holds the average
        torch.testing.assert_close(p.detach(), e)
    saved = torch.load(fit.checkpoint_callback.last_model_path or fit.checkpoint_callback.best_model_path,
                       weights_only=False)["state_dict"]
    for (name, _), e in zip(model.named_parameters(), averages[-1], strict=True):
        torch.testing.assert_close(saved[name], e)


class WeightsAfterStep(L.Callback):
    """The floating-point state (weights and BatchNorm statistics) at each batch end, as this callback sees it."""

    def __init__(self):
        self.start, self.steps = None, []

    def on_train_start(self, trainer, pl_module):
        self.start = state(pl_module)

    def on_train_batch_end(self, trainer, pl_module, *args):
        self.steps.append(state(pl_module))


def state(module):
    return [t.detach().clone() for t in module.state_dict().values() if t.is_floating_point()]


@pytest.mark.parametrize("accumulate, every, power", [(1, 5, 1.0), (2, 2, 3.0)])
def test_lookahead_resets_the_weights_to_a_slow_copy_with_a_growing_decay(tiny_cifar, accumulate, every, power):
    model = DarknetClassifier(**TINY, lr=0.05, one_cycle=None)
    before, after = WeightsAfterStep(), WeightsAfterStep()  # around the Lookahead: its input and its output
    fit = trainer(max_epochs=2, limit_val_batches=0, accumulate_grad_batches=accumulate,
                  callbacks=[before, Lookahead(decay=0.9, every=every, power=power), after])
    fit.fit(model, CIFAR10DataModule(str(tiny_cifar), batch_size=4))
    assert len(before.steps) == 12  # 24 images in batches of 4, two epochs
    total = 12 // accumulate  # optimizer steps
    # optimizer step s is taken in batch accumulate * s; every `every` of them the slow copy moves. A batch that only
    # accumulated leaves the weights alone but not the BatchNorm statistics, which are averaged too
    updates = {accumulate * s: 0.9 * (s / total) ** power for s in range(every, total + 1, every)}
    slow = before.start
    for batch, (fast, seen) in enumerate(zip(before.steps, after.steps, strict=True), start=1):
        if batch in updates:
            slow = [s + (1 - updates[batch]) * (w - s) for s, w in zip(slow, fast, strict=True)]
        # the last step makes the weights the slow copy (before the epoch's end saves them); others keep them
        expected = slow if batch in updates or batch == len(before.steps) else fast
        for s, e in zip(seen, expected, strict=True):
            torch.testing.assert_close(s, e)
    for s, e in zip(state(model), slow, strict=True):
        torch.testing.assert_close(s, e)


class StopAtEpochEnd(L.Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, pl_module):
        trainer.should_stop = trainer.should_stop or trainer.current_epoch == self.epoch


def test_lookahead_resumes_its_slow_copy_and_last_ckpt_holds_the_final_weights(tiny_cifar, tmp_path):
    def run(folder, stop=None, resume=None):
        torch.manual_seed(0)
        model = DarknetClassifier(**TINY, lr=0.05, one_cycle=None)
        saves = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / folder, save_last=True)
        fit = trainer(max_epochs=2, limit_val_batches=0, enable_checkpointing=True, default_root_dir=tmp_path,
                      callbacks=[Lookahead(decay=0.9, every=4, power=1.0), saves]
                      + ([StopAtEpochEnd(stop)] if stop is not None else []))
        # no random crops or flips: the two runs see the same batches whatever the random state at the resume
        fit.fit(model, CIFAR10DataModule(str(tiny_cifar), batch_size=4, pad=0, flip=False), ckpt_path=resume)
        return model, tmp_path / folder / "last.ckpt"

    whole, whole_last = run("whole")
    _, stopped_last = run("stopped", stop=0)  # 6 steps: the slow copy moved at step 4, the weights after it
    assert torch.load(stopped_last, weights_only=False)["global_step"] == 6
    resumed, _ = run("resumed", resume=stopped_last)
    for r, w in zip(state(resumed), state(whole), strict=True):
        torch.testing.assert_close(r, w)
    saved = torch.load(whole_last, weights_only=False)["state_dict"]
    for name, value in whole.state_dict().items():
        torch.testing.assert_close(saved[name], value)


class ZeroWeightsAtTrainEnd(L.Callback):
    def on_train_end(self, trainer, pl_module):
        with torch.no_grad():
            for parameter in pl_module.parameters():
                parameter.zero_()


def test_lookahead_ends_once_so_a_callback_that_sets_the_weights_at_the_end_keeps_them(tiny_cifar):
    """The weights become the slow copy at the last step; its on_train_end must not copy it over them again (an SWA
    listed before it puts its average in at training's end)."""
    model = DarknetClassifier(**TINY, lr=0.05, one_cycle=None)
    fit = trainer(max_epochs=1, limit_val_batches=0, callbacks=[ZeroWeightsAtTrainEnd(), Lookahead(every=2)])
    fit.fit(model, CIFAR10DataModule(str(tiny_cifar), batch_size=4))
    assert all(not parameter.any() for parameter in model.parameters())


def test_lookahead_takes_decay_0_to_1_and_every_from_1():
    for decay, every in [(0.0, 1), (1.0, 1), (0.5, 5)]:  # decay 0: the slow copy follows the weights
        Lookahead(decay=decay, every=every)
    for decay, every in [(-0.01, 5), (1.01, 5), (0.5, 0)]:
        with pytest.raises(ValueError, match="decay"):
            Lookahead(decay=decay, every=every)
