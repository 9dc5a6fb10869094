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


def reference_dcgan_g(isize, nz, nc, ngf, n_extra_layers):
    """martinarjovsky/WassersteinGAN's models/dcgan.py DCGAN_G, in its layer order: cngf is ngf/2 doubled until 4
    reaches isize; ConvTranspose(nz, cngf, 4, 1, 0), batchnorm, ReLU; halve the channels, double the grid up to
    isize/2 (ConvTranspose 4, 2, 1); extra layers as plain 3x3 convolutions (Conv2d 3, 1, 1); ConvTranspose(cngf, nc,
    4, 2, 1) and tanh. No biases."""
    cngf, tisize = ngf // 2, 4
    while tisize != isize:
        cngf, tisize = cngf * 2, tisize * 2
    layers = [nn.ConvTranspose2d(nz, cngf, 4, 1, 0, bias=False), nn.BatchNorm2d(cngf), nn.ReLU()]
    csize = 4
    while csize < isize // 2:
        layers += [nn.ConvTranspose2d(cngf, cngf // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(cngf // 2), nn.ReLU()]
        cngf, csize = cngf // 2, csize * 2
    for _ in range(n_extra_layers):
        layers += [nn.Conv2d(cngf, cngf, 3, 1, 1, bias=False), nn.BatchNorm2d(cngf), nn.ReLU()]
    return nn.Sequential(*layers, nn.ConvTranspose2d(cngf, nc, 4, 2, 1, bias=False), nn.Tanh())


@pytest.mark.parametrize("isize, extra", [(16, 1), (32, 2)])
def test_the_generator_is_the_references_dcgan_g_on_any_grid_of_noise(isize, extra):
    """Ours in DCGAN's block order (bn_last=False) with the reference's weights and batchnorm statistics gives its
    images from (N, nz, 1, 1) noise, and its maps from a 2x2 grid of noise vectors too, where each layer's stride
    and padding show (a 1x1 input gives 4x4 whatever the first layer's stride). The reference's extra 3x3 convs
    are our stride-1 transposed convs with the kernel's channel axes swapped and its taps flipped."""
    torch.manual_seed(0)
    nz, nc, ngf = 6, 3, 4
    reference = reference_dcgan_g(isize, nz, nc, ngf, extra)
    for m in reference:
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.normal_(m.weight, 0, 0.5)  # wide enough that the images are not all saturated tanh
        if isinstance(m, nn.BatchNorm2d):
            for tensor in (m.weight, m.bias, m.running_mean):
                nn.init.normal_(tensor, 0, 0.5)
            nn.init.uniform_(m.running_var, 0.5, 2)
    reference.eval()
    theirs = [t.transpose(0, 1).flip(2, 3) if isinstance(m, nn.Conv2d) and t.dim() == 4 else t
              for m in reference for t in m.state_dict().values()]
    ours = generator(isize, nz, nc, ngf, extra, bn_last=False).eval()
    assert [tuple(t.shape) for t in ours.state_dict().values()] == [tuple(t.shape) for t in theirs]
    ours.load_state_dict(dict(zip(ours.state_dict(), theirs, strict=True)))
    with torch.no_grad():
        for grid, side in ((1, isize), (2, 5 * isize // 4)):  # 2 -> 5 (4x4 kernel, stride 1), then doubled
            noise = torch.randn(3, nz, grid, grid)
            expected = reference(noise)
            assert expected.shape == (3, nc, side, side) and expected.std() > 0.1
            assert torch.allclose(ours(noise), expected, atol=1e-5)


def test_init_dcgan_draws_conv_weights_from_n_0_002_and_batchnorm_scales_from_n_1_002():
    """The reference's weights_init: every conv's weights N(0, 0.02), every batchnorm's scale N(1, 0.02), shift 0."""
    from lightning_modules.nets.dcgan import init_dcgan_

    torch.manual_seed(0)
    nets = [critic(64, ndf=64, n_extra_layers=1), generator(64, ngf=64, n_extra_layers=1)]
    norms = [m for net in nets for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    convs = [m for net in nets for m in net.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    with torch.no_grad():
        for m in norms:
            m.bias.fill_(3.0)  # not the default 0: the init must set it
    for net in nets:
        net.apply(init_dcgan_)
    with torch.no_grad():
        weights = torch.cat([m.weight.flatten() for m in convs])
        scales, shifts = torch.cat([m.weight for m in norms]), torch.cat([m.bias for m in norms])
    # 960 + 1024 batchnorm channels: the mean's standard error 0.02 / sqrt(1984) = 0.00045, the std's about 1.6%
    assert len(scales) == 1984 and scales.mean().item() == pytest.approx(1.0, abs=0.003)
    assert scales.std().item() == pytest.approx(0.02, rel=0.1) and shifts.abs().max() == 0
    assert weights.mean().abs() < 1e-4 and weights.std().item() == pytest.approx(0.02, rel=0.01)


def test_nearest_power_of_two_rounds_the_exponent_and_keeps_the_least():
    from lightning_modules.nets.dcgan import nearest_power_of_two

    # 2 ** round(log2 n): 1 is 2^0, 3 (log2 1.58) rounds up to 4, 5 (2.32) down to 4, 90 (6.49) to 64, 91 (6.51) to 128
    assert [nearest_power_of_two(n, least=1) for n in (0, 1, 2, 3, 5, 90, 91)] == [1, 1, 2, 4, 4, 64, 128]
    assert [nearest_power_of_two(n) for n in (0, 1, 20, 24, 40)] == [16, 16, 16, 32, 32]
