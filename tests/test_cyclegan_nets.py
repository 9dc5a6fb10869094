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


class ReferenceResnetBlock(nn.Module):
    """junyanz's ResnetBlock (padding_type 'reflect', no dropout): pad, conv, norm, ReLU, pad, conv, norm; x + that."""

    def __init__(self, dim):
        super().__init__()
        self.conv_block = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), nn.InstanceNorm2d(dim),
                                        nn.ReLU(), nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3),
                                        nn.InstanceNorm2d(dim))

    def forward(self, x):
        return x + self.conv_block(x)


def reference_resnet_generator(n_blocks, ngf):
    """junyanz's ResnetGenerator(3, 3, ngf, InstanceNorm2d, n_blocks=n_blocks) in its layer order: reflection pad 3,
    7x7 conv, norm, ReLU; two 3x3 stride-2 convs (zero padding 1) doubling the channels; the blocks; two 3x3
    stride-2 transposed convs (padding 1, output padding 1) halving them; reflection pad 3, 7x7 conv to 3, tanh.
    Instance norm without affine parameters, so every conv has a bias."""
    layers = [nn.ReflectionPad2d(3), nn.Conv2d(3, ngf, 7), nn.InstanceNorm2d(ngf), nn.ReLU()]
    for mult in (1, 2):
        layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1), nn.InstanceNorm2d(ngf * mult * 2),
                   nn.ReLU()]
    layers += [ReferenceResnetBlock(ngf * 4) for _ in range(n_blocks)]
    for mult in (4, 2):
        layers += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1),
                   nn.InstanceNorm2d(ngf * mult // 2), nn.ReLU()]
    return nn.Sequential(*layers, nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7), nn.Tanh())


def reference_patch_discriminator(ndf):
    """junyanz's NLayerDiscriminator(3, ndf, n_layers=3, InstanceNorm2d): 4x4 convs of padding 1; stride 2 to ndf
    (no norm), 2 ndf, 4 ndf, then stride 1 to 8 ndf, each with LeakyReLU(0.2); a stride-1 4x4 conv to 1 channel."""
    layers = [nn.Conv2d(3, ndf, 4, 2, 1), nn.LeakyReLU(0.2)]
    for n_in, n_out, stride in ((1, 2, 2), (2, 4, 2), (4, 8, 1)):
        layers += [nn.Conv2d(ndf * n_in, ndf * n_out, 4, stride, 1), nn.InstanceNorm2d(ndf * n_out), nn.LeakyReLU(0.2)]
    return nn.Sequential(*layers, nn.Conv2d(ndf * 8, 1, 4, 1, 1))


def copy_weights(ours, reference):
    """The reference's tensors into ours in order (instance norm without affine parameters holds none)."""
    theirs = list(reference.state_dict().values())
    assert [t.shape for t in ours.state_dict().values()] == [t.shape for t in theirs]
    ours.load_state_dict(dict(zip(ours.state_dict(), theirs, strict=True)))


@pytest.mark.parametrize("n_blocks", [0, 2])
def test_the_generator_computes_junyanzs_resnet_generator(n_blocks):
    """The reference's layers with its weights copied in give its translations: this sees what the parameter count
    cannot, the reflection padding's width, instance norm inside the blocks, the skip connection's sign."""
    torch.manual_seed(0)
    reference = reference_resnet_generator(n_blocks, ngf=4)
    ours = resnet_generator(n_blocks, ngf=4)
    copy_weights(ours, reference)
    x = torch.rand(2, 3, 20, 28) * 2 - 1
    with torch.no_grad():
        expected = reference(x)
        assert expected.shape == (2, 3, 20, 28) and expected.std() > 0.01
        assert torch.allclose(ours(x), expected, atol=1e-5)


def test_the_patchgan_computes_junyanzs_n_layer_discriminator():
    torch.manual_seed(0)
    reference, ours = reference_patch_discriminator(ndf=4), patch_discriminator(ndf=4)
    copy_weights(ours, reference)
    x = torch.rand(2, 3, 40, 48) * 2 - 1
    with torch.no_grad():
        expected = reference(x)
        assert expected.shape == (2, 1, 3, 4)  # 40 / 8 - 2 by 48 / 8 - 2
        assert torch.allclose(ours(x), expected, atol=1e-5)


def test_a_generator_without_blocks_or_of_one_filter_is_built_and_fewer_refused():
    """junyanz's ResnetGenerator asserts n_blocks >= 0: 0 blocks is the encoder and decoder alone."""
    assert count(resnet_generator(0)) == generator_by_hand(0)
    assert resnet_generator(0, ngf=1)(torch.zeros(1, 3, 8, 8)).shape == (1, 3, 8, 8)
    for n_blocks, ngf in ((-1, 64), (9, 0), (-1, 0)):
        with pytest.raises(ValueError, match=f"^n_blocks must be >= 0 and ngf >= 1 \\(got n_blocks={n_blocks}, "
                                             f"ngf={ngf}\\)$"):
            resnet_generator(n_blocks, ngf)
