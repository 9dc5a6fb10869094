"""The Darknet system's net and evaluation options (issue 13): widths, strides, max-pool downsampling, the
whitening stem, airbench's BatchNorm options and test-time augmentation, each against a computation written here."""

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from runs import DARKNET_TINY as TINY
from runs import quiet_trainer as trainer
from torch import nn

from callbacks.errors import UserError
from datamodules import CIFAR10DataModule
from datamodules.augment import normalize
from datamodules.cifar10 import SEED_STATS
from lightning_modules import Darknet, DarknetClassifier
from lightning_modules.darknet_classifier import tta_average, tta_views
from lightning_modules.nets.darknet import init_whitening

pytestmark = pytest.mark.usefixtures("one_thread")



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
    with pytest.raises(ValueError, match="bn_momentum"):
        Darknet([1], bn_momentum=1.5)
    # PyTorch's momentum 1 keeps the last batch's statistics alone: the top of the range, taken
    assert {m.momentum for m in Darknet([1], bn_momentum=1.0).modules() if isinstance(m, nn.BatchNorm2d)} == {1.0}


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
