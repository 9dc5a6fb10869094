import pytest
import torch
from torch import nn

from lightning_modules import Darknet, DarknetClassifier, ResLayer, conv_layer

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets: threads only add contention


def hand_count(num_blocks, nf=32, num_classes=10, bottleneck=0.5):
    """Parameters from the seed's layer list: conv weights (no bias) + BatchNorm weight and bias."""
    def conv(ni, no, ks):
        return ni * no * ks * ks + 2 * no
    total = conv(3, nf, 3)
    for n in num_blocks:
        total += conv(nf, 2 * nf, 3)
        mid = int(2 * nf * bottleneck)
        total += n * (conv(2 * nf, mid, 1) + conv(mid, 2 * nf, 3))
        nf *= 2
    return total + nf * num_classes + num_classes


def test_default_darknet_parameter_count_matches_the_seed_layer_list():
    assert hand_count([1, 2, 4, 6, 3]) == 31_410_922  # worked out once by hand, as a sanity anchor
    assert sum(p.numel() for p in Darknet().parameters()) == hand_count([1, 2, 4, 6, 3])


def test_wide_bottleneck_knob_changes_the_inner_width():
    net = Darknet([1, 1], nf=8, bottleneck=2.0)
    assert sum(p.numel() for p in net.parameters()) == hand_count([1, 1], nf=8, bottleneck=2.0)
    assert net.layers[2].body[0][0].out_channels == 32  # 16 channels in, 2x wider inside


@pytest.mark.parametrize("size, grid", [(32, 2), (28, 2), (64, 4)])
def test_output_shape_and_final_grid_for_any_image_size(size, grid):
    net = Darknet([1, 1, 1, 1, 1], nf=4)
    features = net.layers[:-3](torch.randn(2, 3, size, size))
    assert features.shape == (2, 128, grid, grid)  # four stride-2 groups; group 1 keeps the resolution
    assert net(torch.randn(2, 3, size, size)).shape == (2, 10)


def test_conv_layer_is_the_seed_block():
    block = conv_layer(3, 8, ks=5, stride=2)
    conv, bn, act = block
    assert conv.bias is None and conv.padding == (2, 2) and conv.stride == (2, 2)
    assert bn.momentum == 0.01 and act.negative_slope == 0.1 and act.inplace


class SeedResLayer(nn.Module):
    """The seed's residual verbatim in spirit: x.add_(conv2(conv1(x)))."""

    def __init__(self, ni):
        super().__init__()
        self.conv1, self.conv2 = conv_layer(ni, ni // 2, ks=1), conv_layer(ni // 2, ni)

    def forward(self, x):
        return x.add_(self.conv2(self.conv1(x)))


def test_seed_in_place_residual_fails_under_autograd_and_ours_does_not():
    x = torch.randn(2, 8, 8, 8, requires_grad=True)
    seed = nn.Sequential(conv_layer(8, 8), SeedResLayer(8), SeedResLayer(8))
    with pytest.raises(RuntimeError, match="inplace"):
        seed(x).sum().backward()
    nn.Sequential(conv_layer(8, 8), ResLayer(8), ResLayer(8))(x).sum().backward()
    assert x.grad is not None


def test_checkpointed_residual_matches_plain_outputs_gradients_and_running_stats():
    torch.manual_seed(0)
    plain = Darknet([1, 2], nf=8)
    saved = Darknet([1, 2], nf=8, checkpoint=True)
    saved.load_state_dict(plain.state_dict())
    x = torch.randn(4, 3, 16, 16)
    plain(x).square().sum().backward()
    saved(x).square().sum().backward()
    for (name, p), q in zip(plain.named_parameters(), saved.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, msg=name)
    for (name, b), c in zip(plain.named_buffers(), saved.buffers(), strict=True):
        torch.testing.assert_close(b, c, msg=name)  # recompute in backward must not update BN stats twice


def test_bad_num_blocks_fails_clearly():
    with pytest.raises(ValueError, match="num_blocks"):
        Darknet([])


def test_classifier_exposes_its_net_and_hyperparameters():
    model = DarknetClassifier(num_blocks=[1], nf=4, label_smoothing=0.1)
    assert isinstance(model.net, Darknet) and model.hparams.label_smoothing == 0.1
    logits = model(torch.randn(2, 3, 32, 32))
    labels = torch.tensor([0, 1])
    expected = 0.9 * nn.functional.cross_entropy(logits, labels) + 0.1 * (-logits.log_softmax(1).mean(1)).mean()
    torch.testing.assert_close(model.loss(logits, labels), expected)


def test_zero_init_residual_makes_every_res_layer_start_as_the_identity():
    net = Darknet([1, 2], nf=4).eval()
    x = torch.randn(2, 8, 6, 6)
    for layer in (m for m in net.modules() if isinstance(m, ResLayer)):
        probe = torch.randn(2, layer.body[0][0].in_channels, 6, 6)
        assert torch.equal(layer(probe), probe)
    plain = Darknet([1, 2], nf=4, zero_init_residual=False).eval()
    layer = next(m for m in plain.modules() if isinstance(m, ResLayer))
    assert not torch.equal(layer(x), x)
