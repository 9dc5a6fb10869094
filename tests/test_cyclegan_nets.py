import pytest
import torch
from torch import nn

from lightning_modules.nets.cyclegan import (
    init_cyclegan_,
    patch_discriminator,
    resnet_generator,
    upsample_norm_relu,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def conv(ni, nf, k):  # weights + bias of one conv with a k x k kernel
    return ni * nf * k * k + nf


def count(net):
    return sum(p.numel() for p in net.parameters())


def generator_by_hand(n_blocks):
    """The paper's appendix: c7s1-64, d128, d256, n x R256 (two 3x3 convs), u128, u64, c7s1-3."""
    return (conv(3, 64, 7) + conv(64, 128, 3) + conv(128, 256, 3) + n_blocks * 2 * conv(256, 256, 3)
            + conv(256, 128, 3) + conv(128, 64, 3) + conv(64, 3, 7))


def test_resnet9_generator_has_the_reference_parameter_count():
    assert generator_by_hand(9) == 11_378_179  # junyanz's print_network: 11.378 M for resnet_9blocks
    assert count(resnet_generator(9)) == generator_by_hand(9)


def test_resnet6_generator_for_128px_has_three_blocks_fewer():
    assert count(resnet_generator(6)) == generator_by_hand(6) == 11_378_179 - 3 * 2 * conv(256, 256, 3)


def test_patchgan_has_the_reference_parameter_count():
    by_hand = conv(3, 64, 4) + conv(64, 128, 4) + conv(128, 256, 4) + conv(256, 512, 4) + conv(512, 1, 4)
    assert by_hand == 2_764_737  # junyanz's 2.765 M for the basic (n_layers=3) discriminator
    assert count(patch_discriminator()) == by_hand


@pytest.mark.parametrize("upsample", ["transposed", "resize"])
def test_generator_output_matches_its_input_size_in_tanh_range(upsample):
    net = resnet_generator(2, ngf=8, upsample=upsample)
    y = net(torch.randn(2, 3, 36, 44))
    assert y.shape == (2, 3, 36, 44) and y.abs().max() <= 1


def test_patchgan_scores_30x30_patches_of_a_256px_image():
    assert patch_discriminator(ndf=4)(torch.randn(1, 3, 256, 256)).shape == (1, 1, 30, 30)


def test_patchgan_output_sees_a_70x70_window():
    net = patch_discriminator(ndf=4, norm=lambda n: nn.Identity())  # instance norm would couple every pixel
    x = torch.randn(1, 3, 256, 256, requires_grad=True)
    net(x)[0, 0, 15, 15].backward()
    rows, cols = x.grad.abs().sum((0, 1)).nonzero(as_tuple=True)
    assert (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) == (70, 70)


def test_resize_upsampling_has_no_checkerboard_where_transposed_conv_has_one():
    constant = torch.ones(1, 4, 8, 8)
    interiors = {}
    for mode in ("transposed", "resize"):
        up = upsample_norm_relu(4, 4, mode)[:-2]  # the upsampling convolution alone, before norm and ReLU
        for m in up.modules():
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
                nn.init.ones_(m.weight), nn.init.zeros_(m.bias)
        interiors[mode] = up(constant)[0, 0, 2:-2, 2:-2]
    assert interiors["transposed"].unique().numel() > 1  # uneven overlap: a period-2 pattern
    assert interiors["resize"].unique().numel() == 1


def test_weights_are_initialised_normal_0_002_with_zero_biases():
    torch.manual_seed(0)
    net = init_cyclegan_(resnet_generator(9)).requires_grad_(False)
    weights = torch.cat([m.weight.flatten() for m in net.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)])
    biases = torch.cat([m.bias for m in net.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)])
    assert weights.mean().abs() < 1e-4 and weights.std() == pytest.approx(0.02, rel=0.01)
    assert biases.abs().max() == 0


def test_bad_upsample_mode_is_named():
    with pytest.raises(ValueError, match="'transposed' or 'resize'"):
        resnet_generator(upsample="bilinear")
