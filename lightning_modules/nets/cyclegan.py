"""CycleGAN's ResNet generator and 70x70 PatchGAN (Zhu et al. 2017, appendix 7.2; DL2 2018 lesson 12).

Layer lists as in the paper's appendix and junyanz/pytorch-CycleGAN-and-pix2pix's defaults
(`resnet_9blocks`, `basic` discriminator, instance norm without affine parameters, no dropout).
"""

from collections.abc import Callable
from functools import partial
from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from callbacks.errors import UserError

Norm = Callable[[int], nn.Module]
instance_norm: Norm = partial(nn.InstanceNorm2d, affine=False)  # the paper's; convs keep their bias


def conv_norm_relu(ni: int, nf: int, ks: int = 3, stride: int = 1, norm: Norm = instance_norm) -> nn.Sequential:
    """c7s1-k (ks 7) and dk (ks 3, stride 2): reflection padding for stride 1, as the paper's appendix says."""
    if stride == 1:
        conv = [nn.ReflectionPad2d(ks // 2), nn.Conv2d(ni, nf, ks)]
    else:  # the reference's downsampling convs zero-pad
        conv = [nn.Conv2d(ni, nf, ks, stride, padding=ks // 2)]
    return nn.Sequential(*conv, norm(nf), nn.ReLU(inplace=True))


def upsample_norm_relu(ni: int, nf: int, mode: str, norm: Norm = instance_norm) -> nn.Sequential:
    """uk: doubles the resolution, by a 3x3 stride-1/2 transposed conv (the paper) or resize then conv.

    Transposed convs with kernel 3 and stride 2 overlap unevenly and can leave checkerboard patterns
    (Odena et al. 2016, distill.pub/2016/deconv-checkerboard, discussed in the seed); "resize" upsamples
    by nearest neighbour and then applies an ordinary 3x3 conv, which spreads every output evenly.
    """
    if mode == "transposed":
        up = [nn.ConvTranspose2d(ni, nf, 3, stride=2, padding=1, output_padding=1)]
    elif mode == "resize":
        up = [nn.Upsample(scale_factor=2, mode="nearest"), nn.ReflectionPad2d(1), nn.Conv2d(ni, nf, 3)]
    else:
        raise UserError(f"upsample must be 'transposed' or 'resize' (got {mode!r})")
    return nn.Sequential(*up, norm(nf), nn.ReLU(inplace=True))


class ResBlock(nn.Module):  # a class only because of the skip connection
    """Rk: two 3x3 convs with reflection padding and the same number of filters, plus the input."""

    def __init__(self, nf: int, norm: Norm = instance_norm):
        super().__init__()
        self.body = nn.Sequential(conv_norm_relu(nf, nf, 3, norm=norm)[:-1], nn.ReLU(inplace=True),
                                  conv_norm_relu(nf, nf, 3, norm=norm)[:-1])  # no ReLU after the sum

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


def resnet_generator(n_blocks: int = 9, ngf: int = 64, upsample: Literal["transposed", "resize"] = "transposed",
                     channels: int = 3, norm: Norm = instance_norm) -> nn.Sequential:
    """c7s1-64, d128, d256, n_blocks x R256, u128, u64, c7s1-3, tanh: 9 blocks for 256px, 6 for 128px.

    Height and width must be multiples of 4 for the output to match the input (two stride-2 steps).
    """
    if n_blocks < 0 or ngf < 1:
        raise UserError(f"n_blocks must be >= 0 and ngf >= 1 (got n_blocks={n_blocks}, ngf={ngf})")
    return nn.Sequential(
        conv_norm_relu(channels, ngf, 7, norm=norm),                  # (N, 64, H, W)
        conv_norm_relu(ngf, ngf * 2, 3, stride=2, norm=norm),         # (N, 128, H/2, W/2)
        conv_norm_relu(ngf * 2, ngf * 4, 3, stride=2, norm=norm),     # (N, 256, H/4, W/4)
        *[ResBlock(ngf * 4, norm) for _ in range(n_blocks)],
        upsample_norm_relu(ngf * 4, ngf * 2, upsample, norm),         # (N, 128, H/2, W/2)
        upsample_norm_relu(ngf * 2, ngf, upsample, norm),             # (N, 64, H, W)
        nn.ReflectionPad2d(3), nn.Conv2d(ngf, channels, 7), nn.Tanh(),  # (N, 3, H, W) in [-1, 1]
    )


def patch_block(ni: int, nf: int, stride: int, norm: Norm | None = instance_norm) -> nn.Sequential:
    """Ck: 4x4 conv, instance norm (none on the first layer), LeakyReLU 0.2."""
    # padding 1, not ks // 2: with it a 256px input gives the reference's 30x30 patch map
    layers = [nn.Conv2d(ni, nf, 4, stride, padding=1)] + ([norm(nf)] if norm else [])
    return nn.Sequential(*layers, nn.LeakyReLU(0.2, inplace=True))


def patch_discriminator(ndf: int = 64, channels: int = 3, norm: Norm = instance_norm) -> nn.Sequential:
    """70x70 PatchGAN: C64-C128-C256 (stride 2), C512 (stride 1), then a 1-channel 4x4 conv.

    Every output scores one 70x70 patch of the input as real or fake (logits, no sigmoid).
    """
    return nn.Sequential(
        patch_block(channels, ndf, 2, norm=None),   # (N, 64, H/2, W/2)
        patch_block(ndf, ndf * 2, 2, norm),         # (N, 128, H/4, W/4)
        patch_block(ndf * 2, ndf * 4, 2, norm),     # (N, 256, H/8, W/8)
        patch_block(ndf * 4, ndf * 8, 1, norm),     # (N, 512, H/8-1, W/8-1)
        nn.Conv2d(ndf * 8, 1, 4, 1, padding=1),     # (N, 1, H/8-2, W/8-2): 30x30 for 256px
    )


def init_cyclegan_(module: nn.Module, std: float = 0.02) -> nn.Module:
    """Gaussian N(0, 0.02) weights and zero biases for every conv, as the paper's reference code."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.normal_(m.weight, 0.0, std)
            nn.init.zeros_(m.bias)
    return module


JUNYANZ_DIRECTIONS = {"AtoB": "a2b", "BtoA": "b2a"}  # its --direction, ours a2b and b2a


def pad_to_multiple(image: Tensor, multiple: int = 4, least: int = 8) -> Tensor:
    """Reflect-pad the bottom and right of a (N, C, H, W) image up to multiples of `multiple`, and to at least
    `least` pixels: below 8 the generator's bottleneck (1/4 of the size) is too small for its 1-pixel reflection
    pads and instance norm."""
    height, width = image.shape[-2:]
    pad_h, pad_w = max(-height % multiple, least - height), max(-width % multiple, least - width)
    if not (pad_h or pad_w):
        return image
    mode = "reflect" if pad_h < height and pad_w < width else "replicate"  # reflect needs pad < size
    return F.pad(image, (0, pad_w, 0, pad_h), mode=mode)


def translated(generator: nn.Module, images: Tensor) -> Tensor:
    """A generator on images of any size: padded for its two stride-2 convs (pad_to_multiple), the padding cut off."""
    height, width = images.shape[-2:]
    return generator(pad_to_multiple(images))[..., :height, :width]
