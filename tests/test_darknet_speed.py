"""The Darknet system's speed options (issue 13), each against a computation written here."""

from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import EMAWeightAveraging
from torch import nn

from callbacks import Lookahead, TrainingPhase, TrainingPhaseScheduler
from callbacks.errors import UserError
from datamodules import CIFAR10DataModule
from datamodules.augment import alternating_flip, normalize
from datamodules.cifar10 import SEED_STATS, TensorBatches
from lightning_modules import Darknet, DarknetClassifier
from lightning_modules.darknet_classifier import compiled_call, tta_average, tta_views
from lightning_modules.nets.darknet import init_whitening

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {"num_blocks": [1], "nf": 4, "num_classes": 3}


def trainer(**kwargs):
    defaults = {"max_epochs": 1, "logger": False, "enable_checkpointing": False, "enable_progress_bar": False,
                "enable_model_summary": False}
    return L.Trainer(**{**defaults, **kwargs})


# -- the net: widths, strides, max-pool downsampling, whitening stem ----------------------------------------

def test_widths_strides_and_maxpool_downsampling_by_hand():
    net = Darknet([1, 0], num_classes=5, widths=[6, 10], strides=[2, 2], downsample="maxpool")
    conv = lambda ni, no, ks: ni * no * ks * ks + 2 * no  # noqa: E731  (bias-free conv + BatchNorm)
    expected = conv(3, 32, 3) + conv(32, 6, 3) + conv(6, 3, 1) + conv(3, 6, 3) + conv(6, 10, 3) + 10 * 5 + 5
    assert sum(p.numel() for p in net.parameters()) == expected
    features = net.layers[:-3](torch.randn(2, 3, 32, 32))
    assert features.shape == (2, 10, 8, 8)  # 32 -> 16 -> 8 by two 2x2 max-pools
    assert sum(isinstance(m, nn.MaxPool2d) for m in net.modules()) == 2
    assert all(m.stride == (1, 1) for m in net.modules() if isinstance(m, nn.Conv2d))  # pools do the striding


def test_pool_first_pools_the_conv_then_normalises_and_activates_the_quarter():
    torch.manual_seed(0)
    net = Darknet([0], num_classes=3, widths=[6], strides=[2], downsample="pool_first")
    layer = net.layers[1]
    x = torch.randn(4, 32, 8, 8)
    conv = F.conv2d(x, layer[0].weight, padding=1)
    pooled = F.max_pool2d(conv, 2)
    mean, var = pooled.mean(dim=(0, 2, 3)), pooled.var(dim=(0, 2, 3))  # BatchNorm's, on the pooled values
    z = (pooled - mean.view(1, -1, 1, 1)) / (pooled.var(dim=(0, 2, 3), unbiased=False).view(1, -1, 1, 1) + 1e-5).sqrt()
    torch.testing.assert_close(layer(x), F.leaky_relu(z, 0.1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(layer[2].running_var, 0.99 + 0.01 * var)
    assert [type(m) for m in layer] == [nn.Conv2d, nn.MaxPool2d, nn.BatchNorm2d, nn.LeakyReLU]


def test_default_strides_are_the_seeds():
    net = Darknet([0, 0, 0], nf=4)
    assert net.layers[:-3](torch.randn(1, 3, 32, 32)).shape == (1, 32, 8, 8)  # strides 2, 1, 2


@pytest.mark.parametrize("kwargs, message", [({"widths": [8]}, "widths"), ({"strides": [2, 0]}, "strides"),
                                             ({"downsample": "avg"}, "downsample"), ({"whiten": -1}, "whiten")])
def test_bad_net_options_fail_clearly(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Darknet([1, 1], **kwargs)


def test_whitening_filters_make_the_patch_second_moment_the_identity():
    torch.manual_seed(0)
    images = F.avg_pool2d(torch.randn(64, 3, 18, 18), 3, 1)  # neighbouring pixels correlated
    net = Darknet([0], whiten=2)
    conv = net.whitening
    init_whitening(conv, images, eps=0.0)
    out = conv(images)[:, :12].permute(0, 2, 3, 1).reshape(-1, 12)  # the first half; the rest is its negative
    torch.testing.assert_close(out.T @ out / len(out), torch.eye(12), atol=2e-4, rtol=0)
    torch.testing.assert_close(conv(images)[:, 12:], -conv(images)[:, :12])
    assert not conv.weight.requires_grad and conv.kernel_size == (2, 2) and conv.padding == (0, 0)


def test_whitening_eps_leaves_each_direction_eigenvalue_over_eigenvalue_plus_eps_of_variance():
    # airbench's eps 5e-4: the filter v / sqrt(lambda + eps) of an eigenvector v of the patches' second moment gives
    # its direction a variance lambda / (lambda + eps); images this faint have eigenvalues of about eps
    torch.manual_seed(0)
    images = 0.03 * F.avg_pool2d(torch.randn(64, 3, 18, 18), 3, 1)
    conv = Darknet([0], whiten=2).whitening
    init_whitening(conv, images)
    patches = F.unfold(images.double(), 2).transpose(1, 2).reshape(-1, 12)  # every 2x2 patch of 3 channels
    values = torch.linalg.eigvalsh(patches.T @ patches / len(patches))
    out = conv(images)[:, :12].permute(0, 2, 3, 1).reshape(-1, 12).double()
    torch.testing.assert_close(out.T @ out / len(out), torch.diag(values / (values + 5e-4)), atol=1e-4, rtol=0)


def test_whitening_stem_is_its_frozen_conv_then_batchnorm_then_leaky_relu_01():
    torch.manual_seed(0)
    stem = Darknet([0], whiten=2).layers[0].eval()
    init_whitening(stem[0], torch.randn(8, 3, 8, 8))
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        z = F.conv2d(x, stem[0].weight) / (1 + 1e-5) ** 0.5  # a new BatchNorm: mean 0, variance 1, weight 1, bias 0
        torch.testing.assert_close(stem(x), torch.where(z > 0, z, 0.1 * z))
    assert z.shape == (2, 24, 7, 7) and (z < 0).any()


def test_whitening_is_set_in_setup_from_plain_training_images_and_left_out_of_the_optimizer(tiny_cifar):
    """airbench94 whitens from plain images: not cropped from a padded image, not flipped (it was, in fit's setup)."""
    model = DarknetClassifier(**TINY, whiten=2, whiten_images=20, lr=0.01, one_cycle=None)
    data = CIFAR10DataModule(str(tiny_cifar), batch_size=8, pad=2, alternating_flip=True)
    before = model.net.whitening.weight.clone()
    trainer(max_steps=1, limit_val_batches=0).fit(model, data)
    optimized = {id(p) for g in model.trainer.optimizers[0].param_groups for p in g["params"]}
    assert id(model.net.whitening.weight) not in optimized
    order = torch.randperm(24, generator=torch.Generator().manual_seed(0))  # epoch 0's shuffle, seed 0
    expected = Darknet([0], whiten=2).whitening
    init_whitening(expected, normalize(data.train_images[order[:20]], *SEED_STATS))
    assert not torch.equal(model.net.whitening.weight, before)
    torch.testing.assert_close(model.net.whitening.weight, expected.weight)


def test_setup_keeps_the_datas_class_names_and_refuses_another_count():
    model = DarknetClassifier(**TINY)
    model.trainer = SimpleNamespace(datamodule=SimpleNamespace(classes=["cat", "dog", "frog"]))
    model.setup("validate")
    assert model.class_names == ["cat", "dog", "frog"]
    model.trainer = SimpleNamespace(datamodule=SimpleNamespace(classes=["a", "b", "c", "d"]))
    with pytest.raises(ValueError, match="4 classes but the model 3"):
        model.setup("fit")


@pytest.mark.parametrize("world_size", [1, 2])
def test_whitening_sample_is_epoch_0s_first_plain_images_the_same_on_every_rank(tiny_cifar, world_size):
    data = CIFAR10DataModule(str(tiny_cifar), batch_size=8, pad=2, alternating_flip=True, image_size=24)
    data.trainer = SimpleNamespace(training=True, global_rank=world_size - 1, world_size=world_size)
    data.setup("fit")
    model = DarknetClassifier(**TINY)
    model.trainer = SimpleNamespace(datamodule=data, strategy=SimpleNamespace(root_device=torch.device("cpu")))
    order = torch.randperm(24, generator=torch.Generator().manual_seed(0))  # epoch 0's shuffle, seed 0
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in SEED_STATS)
    expected = F.interpolate((data.train_images[order[:17]].float() / 255 - mean) / std, size=24, mode="bilinear",
                             antialias=True, align_corners=False)  # the size evaluation's batches are given
    torch.testing.assert_close(model.training_sample(17), expected)
    model.trainer.datamodule = SimpleNamespace()
    with pytest.raises(UserError, match="plain_training_images.*or set --model.whiten 0"):
        model.training_sample(17)


def test_airbench_batchnorm_options_momentum_frozen_weights_and_logit_scale():
    torch.manual_seed(0)
    net = Darknet([1, 1], num_classes=3, nf=4, bn_momentum=0.4, bn_weight=False, zero_init_residual=False,
                  logit_scale=1 / 9)
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 1 + 3 + 3 and all(m.momentum == 0.4 and not m.weight.requires_grad for m in norms)
    assert all(m.bias.requires_grad for m in norms)
    stem = net.layers[0]
    x = torch.randn(4, 3, 8, 8)
    net(x)  # training mode: running mean = 0.6 * 0 + 0.4 * the batch mean
    torch.testing.assert_close(stem[1].running_mean, 0.4 * stem[0](x).mean(dim=(0, 2, 3)))
    net.eval()
    torch.testing.assert_close(net(x), net.layers(x) / 9)
    model = DarknetClassifier(**TINY, bn_weight=False, zero_init_residual=False, one_cycle=None)
    optimized = {id(p) for g in model.configure_optimizers().param_groups for p in g["params"]}
    assert optimized == {id(p) for p in model.parameters() if p.requires_grad}
    assert id(model.net.layers[0][1].weight) not in optimized and id(model.net.layers[0][1].bias) in optimized


@pytest.mark.parametrize("scale", [1 / 9, 1.0, 2.0])
def test_airbench_logit_scale_multiplies_the_logits(scale):
    torch.manual_seed(0)
    net = Darknet([0], num_classes=3, nf=4, logit_scale=scale).eval()
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(net(x), scale * net.layers(x))


def test_frozen_batchnorm_weights_refuse_zero_init_residual_and_bad_momentum():
    with pytest.raises(ValueError, match="zero_init_residual"):
        Darknet([1], bn_weight=False)  # a frozen zero weight would switch the residual off for good
    Darknet([0], bn_weight=False)  # no residual, nothing to zero
    with pytest.raises(ValueError, match="bn_momentum"):
        Darknet([1], bn_momentum=0.0)


# -- evaluation: test-time augmentation -------------------------------------------------------------------------

def test_tta_views_and_weights_match_airbench_by_index():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(5))
    x = torch.randn(2, 3, 6, 6)
    up_left = x[:, :, [1, 0, 1, 2, 3, 4]][:, :, :, [1, 0, 1, 2, 3, 4]]  # reflect-pad 1, take rows/cols 0..5
    down_right = x[:, :, [1, 2, 3, 4, 5, 4]][:, :, :, [1, 2, 3, 4, 5, 4]]  # ... rows/cols 2..7
    mirror = lambda v: (net(v) + net(v.flip(-1))) / 2  # noqa: E731
    expected = {"none": net(x), "flip": mirror(x),
                "flip_translate": 0.5 * mirror(x) + 0.25 * mirror(up_left) + 0.25 * mirror(down_right)}
    for tta, logits in expected.items():
        torch.testing.assert_close(tta_average(net(tta_views(x, tta)), tta), logits)


def test_tta_is_used_in_test_step_and_bad_values_fail():
    with pytest.raises(ValueError, match="tta"):
        DarknetClassifier(**TINY, tta="mirror")
    model = DarknetClassifier(**TINY, tta="flip").eval()
    x, labels = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 0])
    model.log = lambda name, value, **kw: None
    model.test_step((x, labels), 0)
    flipped = (model.net(x) + model.net(x.flip(-1))) / 2
    torch.testing.assert_close(model.test_loss.compute(), F.cross_entropy(flipped, labels))


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


# -- channels_last and torch.compile -------------------------------------------------------------------------------

def test_channels_last_gives_the_same_logits_with_nhwc_weights():
    torch.manual_seed(0)
    plain = DarknetClassifier(**TINY).eval()
    nhwc = DarknetClassifier(**TINY, channels_last=True).eval()
    nhwc.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(nhwc(x), plain(x), atol=1e-5, rtol=1e-5)
    conv = nhwc.net.layers[0][0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()


RECORDED_GRAPHS = []  # the graphs given to the test's torch.compile backend, "darknet_test_recorder"


def recorder(graph, example_inputs, **kwargs):
    RECORDED_GRAPHS.append(graph)
    return graph.forward  # run as traced, as the eager backend does


def test_compiled_forward_is_built_once_per_process_and_reused_by_a_new_model():
    from torch._dynamo.utils import counters
    if "darknet_test_recorder" not in torch._dynamo.list_backends(exclude_tags=()):
        torch._dynamo.register_backend(recorder, "darknet_test_recorder")  # so the options must reach torch.compile
    torch._dynamo.reset()
    compiled_call.cache_clear()
    RECORDED_GRAPHS.clear()
    options = {"backend": "darknet_test_recorder", "options": {}}  # a nested dict, as torch.compile's, is a fine key
    x = torch.randn(2, 3, 8, 8)
    first = DarknetClassifier(**TINY, compile=True, compile_options=options).eval()
    torch.testing.assert_close(first(x), first.net(x))
    graphs = counters["stats"]["unique_graphs"]
    assert len(RECORDED_GRAPHS) == 1
    # the next seed's model, its options written in another order: the same options, the same compiled call
    reordered = {"options": {}, "backend": "darknet_test_recorder"}
    second = DarknetClassifier(**TINY, compile=True, compile_options=reordered).eval()
    torch.testing.assert_close(second(x), second.net(x))
    assert counters["stats"]["unique_graphs"] == graphs >= 1 and len(RECORDED_GRAPHS) == 1
    assert compiled_call.cache_info().currsize == 1


# -- data: airbench's alternating flip -------------------------------------------------------------------------------

def test_alternating_flip_mirrors_each_image_every_other_epoch():
    images = torch.arange(6 * 1 * 2 * 3, dtype=torch.uint8).view(6, 1, 2, 3)
    first = torch.tensor([True, False, True, True, False, False])
    for epoch in range(4):
        out = alternating_flip(images, first, epoch)
        for i in range(6):
            mirrored = bool(first[i]) != (epoch % 2 == 1)
            assert torch.equal(out[i], images[i, :, :, [2, 1, 0]] if mirrored else images[i])


def test_training_batches_alternate_and_the_random_flip_is_off(tiny_cifar):
    data = CIFAR10DataModule(str(tiny_cifar), batch_size=8, alternating_flip=True, pad=0)
    data.setup("fit")
    loader = data.train_dataloader()
    first = loader.flipped_first
    assert first.dtype == torch.bool and len(first) == 24 and 0 < first.sum() < 24
    by_image = {bytes(img.numpy()): i for i, img in enumerate(data.train_images)}
    by_mirror = {bytes(img.flip(-1).numpy()): i for i, img in enumerate(data.train_images)}
    for epoch in range(3):
        loader.set_epoch(epoch)
        for images, _ in loader:
            for img in images:
                key = bytes(img.numpy())
                i = by_image.get(key, by_mirror.get(key))
                assert (key in by_mirror and key not in by_image) == (bool(first[i]) != (epoch % 2 == 1))
    x = torch.zeros(8, 3, 32, 32, dtype=torch.uint8)
    x[..., 0] = 255  # left column bright: a random flip would move it
    data.trainer = trainer()
    data.trainer.training = True
    out, _ = data.on_after_batch_transfer((x, torch.zeros(8, dtype=torch.long)), 0)
    assert (out[..., 0] > out[..., -1]).all()


@pytest.mark.parametrize("flip, alternate", [(True, False), (False, True)])
def test_training_batches_alternate_only_when_asked_and_with_flip(tiny_cifar, flip, alternate):
    # the seed's random flip happens after the transfer; flip false means no flip at all, alternating or not
    data = CIFAR10DataModule(str(tiny_cifar), batch_size=8, flip=flip, alternating_flip=alternate, pad=0)
    data.setup("fit")
    loader = data.train_dataloader()
    stored = sorted(bytes(img.numpy()) for img in data.train_images)
    for epoch in range(2):
        loader.set_epoch(epoch)
        assert sorted(bytes(img.numpy()) for images, _ in loader for img in images) == stored


def test_tensor_batches_without_flip_bits_are_unchanged():
    images = torch.arange(4 * 3, dtype=torch.uint8).view(4, 3, 1, 1)
    batches = TensorBatches(images, torch.arange(4), 2, shuffle=False, drop_last=False)
    assert torch.equal(torch.cat([b for b, _ in batches]), images)


def test_on_device_cuts_batches_where_the_images_were_copied_once(tiny_cifar):
    from types import SimpleNamespace
    data = CIFAR10DataModule(str(tiny_cifar), batch_size=8, alternating_flip=True, on_device=True)
    data.setup("fit")
    meta = torch.device("meta")  # stands for the GPU: the copies and batches must land there
    data.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=meta), global_rank=0, world_size=1)
    loaders = [data.train_dataloader(), data.train_dataloader(), data.test_dataloader()]
    assert loaders[0].images is loaders[1].images and loaders[0].images.device == meta  # one copy
    assert loaders[0].flipped_first.device == meta and loaders[2].labels.device == meta
    for loader in loaders:
        images, labels = next(iter(loader))
        assert images.device == meta and labels.device == meta and images.shape[1:] == (3, 32, 32)
    assert data.train_images.device.type == "cpu"  # the host copy is left as it was
    # on the host the same option changes nothing: the same batches in the same order
    plain = CIFAR10DataModule(str(tiny_cifar), batch_size=8, alternating_flip=True)
    plain.setup("fit")
    data.trainer = plain.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device("cpu")),
                                                   global_rank=0, world_size=1)
    for a, b in zip(data.train_dataloader(), plain.train_dataloader(), strict=True):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


# -- the lean step: no host sync in training batches ---------------------------------------------------------------

HOST_READS = ["item", "tolist", "__bool__", "__float__", "__int__", "__index__", "cpu", "numpy"]


class HostReads(L.Callback):
    """Counts tensor reads by the host (each a device sync on a GPU) between a training batch's start and end."""

    def __init__(self, monkeypatch):
        self.inside, self.reads = False, []
        for name in HOST_READS:
            original = getattr(torch.Tensor, name)

            def counted(tensor, *args, _original=original, _name=name, **kwargs):
                if self.inside:
                    self.reads.append(_name)
                return _original(tensor, *args, **kwargs)
            monkeypatch.setattr(torch.Tensor, name, counted)

    def on_train_batch_start(self, *args):
        self.inside = True

    def on_train_batch_end(self, *args):
        self.inside = False


def lean_fit(tiny_cifar, tmp_path, callbacks):
    from lightning.pytorch.loggers import CSVLogger
    model = DarknetClassifier(**TINY, whiten=2, whiten_images=8, tta="flip_translate", nesterov=True,
                              label_smoothing=0.2, no_decay_bn_bias=True, bn_bias_lr_scale=64, one_cycle=None)
    data = CIFAR10DataModule(str(tiny_cifar), batch_size=4, alternating_flip=True)
    schedule = TrainingPhaseScheduler(one_cycle={"div": 20, "pct": 10}, plot=False)
    trainer(max_epochs=2, logger=CSVLogger(tmp_path), log_every_n_steps=1000, limit_val_batches=0,
            callbacks=[schedule, *callbacks]).fit(model, data)
    return model


def test_training_steps_read_nothing_back_to_the_host(tiny_cifar, tmp_path, monkeypatch):
    reads = HostReads(monkeypatch)
    model = lean_fit(tiny_cifar, tmp_path, [reads])
    assert model.trainer.global_step == 12 and reads.reads == []
    # the check itself works: Lightning's EMAWeightAveraging reads torch's AveragedModel.n_averaged at each update,
    # after steps 0, 3, 6, 9: twice an update (torch 2.5 reads it once more for each parameter)
    reads = HostReads(monkeypatch)
    lean_fit(tiny_cifar, tmp_path, [EMAWeightAveraging(decay=0.9, update_every_n_steps=3), reads])
    assert reads.reads.count("__bool__") >= 2 * 12 // 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="sync detection needs CUDA")
def test_training_steps_do_not_synchronise_the_gpu(tiny_cifar, tmp_path):
    class Strict(L.Callback):
        def on_train_batch_start(self, *args):
            torch.cuda.set_sync_debug_mode("error")

        def on_train_batch_end(self, *args):
            torch.cuda.set_sync_debug_mode("default")
    try:
        lean_fit(tiny_cifar, tmp_path, [Strict()])
    finally:
        torch.cuda.set_sync_debug_mode("default")
