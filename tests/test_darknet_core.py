"""The Darknet's building blocks, against counts and formulas written out here."""

import pytest
import torch
from torch import nn

from lightning_modules.nets.darknet import Darknet, ResLayer, conv_layer

pytestmark = pytest.mark.usefixtures("one_thread")


def test_conv_layer_is_conv_then_batchnorm_with_momentum_001_then_leaky_relu_01():
    block = conv_layer(2, 3, ks=3, stride=2).eval()
    bn = block[1]
    assert bn.momentum == 0.01 and block[2].negative_slope == 0.1
    x = torch.randn(1, 2, 6, 6)
    with torch.no_grad():
        z = nn.functional.conv2d(x, block[0].weight, stride=2, padding=1)  # no bias
        z = (z - bn.running_mean.view(1, -1, 1, 1)) / (bn.running_var.view(1, -1, 1, 1) + bn.eps).sqrt()
        z = z * bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1)
        assert torch.allclose(block(x), torch.where(z > 0, z, 0.1 * z), atol=1e-6)
    block.train()
    block(x)
    conv = nn.functional.conv2d(x, block[0].weight, stride=2, padding=1)
    assert torch.allclose(bn.running_mean, 0.01 * conv.mean(dim=(0, 2, 3)), atol=1e-6)  # 1% of the batch mean


@pytest.mark.parametrize("ni, bottleneck, mid", [(2, 0.5, 1), (2, 0.25, 1), (8, 0.5, 4), (4, 2.0, 8)])
def test_res_layer_inner_width_is_ni_times_bottleneck_at_least_one(ni, bottleneck, mid):
    layer = ResLayer(ni, bottleneck)
    assert layer.body[0][0].weight.shape == (mid, ni, 1, 1) and layer.body[1][0].weight.shape == (ni, mid, 3, 3)


@pytest.mark.parametrize("checkpoint, calls", [(False, 1), (True, 2)])
def test_checkpointed_residual_recomputes_its_body_in_backward_only_when_asked(checkpoint, calls):
    layer = ResLayer(4, checkpoint=checkpoint)
    count = []
    layer.body[0][0].register_forward_hook(lambda *args: count.append(1))  # its first conv: recomputed first
    x = torch.randn(2, 4, 5, 5, requires_grad=True)
    out = layer(x)
    assert torch.allclose(out, x + layer.body(x)) and len(count) == 2  # the check itself ran the body once
    count.clear()
    layer(x).sum().backward()
    assert len(count) == calls
    with torch.no_grad():
        count.clear()
        layer(x)
        assert len(count) == 1  # no recompute without autograd


def test_groups_with_zero_res_layers_are_allowed_and_negative_counts_are_not():
    net = Darknet([0, 1], num_classes=3, nf=4)
    assert sum(isinstance(m, ResLayer) for m in net.modules()) == 1
    assert net(torch.randn(2, 3, 8, 8)).shape == (2, 3)
    with pytest.raises(ValueError, match="num_blocks"):
        Darknet([1, -1])


def test_each_group_halves_the_resolution_except_the_second():
    net = Darknet([1, 1, 1, 1, 1], num_classes=3, nf=4)
    group_convs = [m for m in net.layers[1:] if isinstance(m, nn.Sequential)]  # after the stem
    assert [m[0].stride for m in group_convs] == [(2, 2), (1, 1), (2, 2), (2, 2), (2, 2)]  # the seed's 2-(i==1)
    assert [m[0].out_channels for m in group_convs] == [8, 16, 32, 64, 128]


def test_zero_init_zeroes_the_last_batchnorm_of_each_residual_only():
    net = Darknet([1, 2], num_classes=3, nf=4)
    for layer in (m for m in net.modules() if isinstance(m, ResLayer)):
        assert torch.equal(layer.body[1][1].weight, torch.zeros_like(layer.body[1][1].weight))
        assert torch.equal(layer.body[0][1].weight, torch.ones_like(layer.body[0][1].weight))
    plain = Darknet([1], num_classes=3, nf=4, zero_init_residual=False)
    assert all(torch.equal(m.weight, torch.ones_like(m.weight)) for m in plain.modules()
               if isinstance(m, nn.BatchNorm2d))
