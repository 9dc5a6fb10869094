import pytest
import torch
from torch import nn

from lightning_modules.nets import ConvBlock, DeconvBlock, critic, generator, mlp_critic, mlp_generator

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets on a shared 2-core CPU


def conv_params(ni, no, ks):
    return ni * no * ks * ks  # no bias anywhere in DCGAN


def test_critic_parameter_count_matches_the_seeds_layer_list():
    # DCGAN_D(64, nc=3, ndf=64, n_extra_layers=1): 4x4/2 conv 3->64 (no bn), 3x3 conv 64->64 + bn,
    # pyramid 64->128->256->512 (32 -> 4 px) with bn, final 4x4 conv 512->1
    expected = (conv_params(3, 64, 4) + conv_params(64, 64, 3) + 2 * 64
                + sum(conv_params(c, 2 * c, 4) + 2 * 2 * c for c in (64, 128, 256)) + conv_params(512, 1, 4))
    assert sum(p.numel() for p in critic(64, 3, 64, n_extra_layers=1).parameters()) == expected == 2_802_560


def test_generator_parameter_count_matches_the_seeds_layer_list():
    # DCGAN_G(64, nz=100, nc=3, ngf=64, n_extra_layers=1): 100->512 at 4px, 512->256->128->64 up to 32px,
    # one 3x3 64->64, last 4x4/2 64->3; bn after every block but the last
    expected = (conv_params(100, 512, 4) + 2 * 512 + sum(conv_params(c, c // 2, 4) + c for c in (512, 256, 128))
                + conv_params(64, 64, 3) + 2 * 64 + conv_params(64, 3, 4))
    assert sum(p.numel() for p in generator(64, 100, 3, 64, n_extra_layers=1).parameters()) == expected


@pytest.mark.parametrize("isize", [16, 32, 64, 128])
def test_shapes_for_each_isize(isize):
    g, d = generator(isize, nz=8, ngf=4, n_extra_layers=1), critic(isize, ndf=4, n_extra_layers=1)
    images = g(torch.randn(2, 8, 1, 1))
    assert images.shape == (2, 3, isize, isize)
    assert images.abs().max() <= 1  # tanh
    assert d(images).shape == (2,)
    grids = []
    final_conv = [m for m in d.modules() if isinstance(m, nn.Conv2d)][-1]
    final_conv.register_forward_hook(lambda m, inp, out: grids.append(inp[0].shape[-2:]))
    d(images)
    assert tuple(grids[0]) == (4, 4)  # the pyramid stops at 4x4, then one 4x4 conv
    halvings = sum(isinstance(m, nn.Conv2d) and m.stride == (2, 2) for m in d.modules())
    assert 2 ** halvings * 4 == isize


@pytest.mark.parametrize("isize, nearest", [(0, 16), (8, 16), (24, 32), (48, 64), (65, 64), (96, 128), (100, 128)])
def test_bad_isize_fails_at_construction_saying_power_of_2(isize, nearest):
    """48 and 96, multiples of 16, reach a 3x3 grid before the 4x4 conv: the reference's assert lets them through."""
    message = f"isize must be a power of 2, at least 16 \\(got {isize}\\).*isize {nearest}$"
    with pytest.raises(ValueError, match=message):
        critic(isize)
    with pytest.raises(ValueError, match="power of 2"):
        generator(isize)


def test_conv_block_order_is_the_seeds_and_optionally_dcgans():
    seed = [type(m) for m in ConvBlock(3, 8, 4, 2)]
    dcgan = [type(m) for m in ConvBlock(3, 8, 4, 2, bn_last=False)]
    assert seed == [nn.Conv2d, nn.LeakyReLU, nn.BatchNorm2d]
    assert dcgan == [nn.Conv2d, nn.BatchNorm2d, nn.LeakyReLU]
    assert [type(m) for m in ConvBlock(3, 8, 4, 2, bn=False)] == [nn.Conv2d, nn.LeakyReLU]
    assert ConvBlock(3, 8, 4, 2)[1].negative_slope == 0.2


def test_conv_block_default_padding_halves_or_keeps_the_grid():
    x = torch.randn(1, 3, 16, 16)
    assert ConvBlock(3, 8, 4, 2)(x).shape[-1] == 8  # pad = 4 // 2 // 2 = 1
    assert ConvBlock(3, 8, 3, 1)(x).shape[-1] == 16  # pad = 3 // 2 // 1 = 1


def test_deconv_block_is_transposed_conv_relu_batchnorm():
    block = DeconvBlock(8, 4, 4, 2, 1)
    assert [type(m) for m in block] == [nn.ConvTranspose2d, nn.ReLU, nn.BatchNorm2d]
    assert block(torch.randn(2, 8, 4, 4)).shape == (2, 4, 8, 8)


def test_the_mlp_nets_are_the_references_mlp_g_and_mlp_d():
    """The reference's MLP_G: Linear nz -> ngf, ReLU, twice ngf -> ngf with ReLU, ngf -> nc x isize^2, viewed as
    images (no tanh); its MLP_D the same from the flattened image to 1, averaged over the batch (ours: per image)."""
    torch.manual_seed(0)
    nz, ngf, ndf, nc, isize = 6, 10, 12, 3, 16
    ours_g, ours_d = mlp_generator(isize, nz, nc, ngf), mlp_critic(isize, nc, ndf)
    reference_g = nn.Sequential(nn.Linear(nz, ngf), nn.ReLU(), nn.Linear(ngf, ngf), nn.ReLU(), nn.Linear(ngf, ngf),
                                nn.ReLU(), nn.Linear(ngf, nc * isize * isize))
    reference_d = nn.Sequential(nn.Linear(nc * isize * isize, ndf), nn.ReLU(), nn.Linear(ndf, ndf), nn.ReLU(),
                                nn.Linear(ndf, ndf), nn.ReLU(), nn.Linear(ndf, 1))
    for ours, reference in ((ours_g, reference_g), (ours_d, reference_d)):
        assert [tuple(p.shape) for p in ours.parameters()] == [tuple(p.shape) for p in reference.parameters()]
        ours.load_state_dict(dict(zip(ours.state_dict(), reference.state_dict().values(), strict=True)))
    noise = torch.randn(5, nz, 1, 1) * 30  # large enough that a tanh would show
    with torch.no_grad():
        images = ours_g(noise)
        expected = reference_g(noise.view(5, nz)).view(5, nc, isize, isize)
        assert images.shape == (5, nc, isize, isize) and torch.allclose(images, expected, atol=1e-6)
        assert images.abs().max() > 1  # linear output
        scores = ours_d(images)
        assert scores.shape == (5,) and torch.allclose(scores, reference_d(images.view(5, -1))[:, 0], atol=1e-5)
