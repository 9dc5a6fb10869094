"""The seed's DCGAN critic and generator for WGAN (DL2 2018 lesson 12, wgan; Radford et al. 2016)."""

import math

from torch import nn

from callbacks.errors import UserError


def check_isize(isize: int) -> None:
    """A power of 2 from 16: each stride-2 block halves the grid, down to the 4x4 of the last conv (48 would reach 3).
    The seed and the reference assert a multiple of 16, which lets 48, 80 or 96 through to a crash."""
    if isize < 16 or isize & (isize - 1):
        raise UserError(f"isize must be a power of 2, at least 16 (got {isize}): the pyramid halves the grid down "
                         f"to 4x4; try --model.isize {nearest_power_of_two(isize)}")


def nearest_power_of_two(n: int, least: int = 16) -> int:
    return max(least, 2 ** round(math.log2(max(n, 1))))


def ConvBlock(ni: int, no: int, ks: int, stride: int, bn: bool = True, pad: int | None = None,
              bn_last: bool = True) -> nn.Sequential:
    """Conv (no bias), LeakyReLU(0.2), BatchNorm: the seed's order; `bn_last=False` is DCGAN's conv, bn, act."""
    pad = ks // 2 // stride if pad is None else pad  # the seed's rule: 1 for (4, 2) and for (3, 1)
    layers = [nn.Conv2d(ni, no, ks, stride, pad, bias=False), nn.LeakyReLU(0.2, inplace=True)]
    if bn:
        layers.insert(len(layers) if bn_last else 1, nn.BatchNorm2d(no))
    return nn.Sequential(*layers)


def DeconvBlock(ni: int, no: int, ks: int, stride: int, pad: int, bn: bool = True,
                bn_last: bool = True) -> nn.Sequential:
    """ConvTranspose (no bias), ReLU, BatchNorm, in the seed's order (`bn_last=False`: conv, bn, act)."""
    layers = [nn.ConvTranspose2d(ni, no, ks, stride, pad, bias=False), nn.ReLU(inplace=True)]
    if bn:
        layers.insert(len(layers) if bn_last else 1, nn.BatchNorm2d(no))
    return nn.Sequential(*layers)


def critic(isize: int, nc: int = 3, ndf: int = 64, n_extra_layers: int = 0, bn: bool = True,
           bn_last: bool = True) -> nn.Sequential:
    """DCGAN_D: (N, nc, isize, isize) images -> (N,) scores; the seed's net also averaged over the batch."""
    check_isize(isize)
    layers = [ConvBlock(nc, ndf, 4, 2, bn=False)]  # (N, ndf, isize/2, isize/2)
    layers += [ConvBlock(ndf, ndf, 3, 1, bn, bn_last=bn_last) for _ in range(n_extra_layers)]
    size, nf = isize // 2, ndf
    while size > 4:  # the pyramid: halve the grid, double the channels
        layers.append(ConvBlock(nf, nf * 2, 4, 2, bn, bn_last=bn_last))
        size, nf = size // 2, nf * 2
    # (N, ndf * isize / 8, 4, 4)
    layers += [nn.Conv2d(nf, 1, 4, padding=0, bias=False), nn.Flatten(0)]  # (N, 1, 1, 1) -> (N,)
    return nn.Sequential(*layers)


def generator(isize: int, nz: int = 100, nc: int = 3, ngf: int = 64, n_extra_layers: int = 0,
              bn_last: bool = True, bn: bool = True) -> nn.Sequential:
    """DCGAN_G: (N, nz, 1, 1) noise -> (N, nc, isize, isize) images in [-1, 1]; `bn=False` is the reference code's
    DCGAN_G_nobn (--noBN), the paper's generator without batchnorm."""
    check_isize(isize)
    nf = ngf * isize // 8  # the seed's `cngf`: ngf/2, doubled until 4 reaches isize
    layers = [DeconvBlock(nz, nf, 4, 1, 0, bn, bn_last)]  # (N, nf, 4, 4)
    size = 4
    while size < isize // 2:
        layers.append(DeconvBlock(nf, nf // 2, 4, 2, 1, bn, bn_last))
        size, nf = size * 2, nf // 2
    # (N, ngf, isize/2, isize/2)
    layers += [DeconvBlock(nf, nf, 3, 1, 1, bn, bn_last) for _ in range(n_extra_layers)]
    layers += [nn.ConvTranspose2d(nf, nc, 4, 2, 1, bias=False), nn.Tanh()]  # (N, nc, isize, isize)
    return nn.Sequential(*layers)


def linear_relu(ni: int, no: int) -> list[nn.Module]:
    return [nn.Linear(ni, no), nn.ReLU(inplace=True)]


def mlp_generator(isize: int, nz: int = 100, nc: int = 3, ngf: int = 64) -> nn.Sequential:
    """The WGAN paper's MLP generator (the reference's --mlp_G; the paper: 512 units): (N, nz, 1, 1) noise through
    three ReLU layers of ngf units to (N, nc, isize, isize) images. Its output is linear, no tanh, as the reference's,
    so a sample may leave [-1, 1] (the saved images are clamped)."""
    return nn.Sequential(nn.Flatten(), *linear_relu(nz, ngf), *linear_relu(ngf, ngf), *linear_relu(ngf, ngf),
                         nn.Linear(ngf, nc * isize * isize), nn.Unflatten(1, (nc, isize, isize)))


def mlp_critic(isize: int, nc: int = 3, ndf: int = 64) -> nn.Sequential:
    """The reference's MLP_D (--mlp_D): (N, nc, isize, isize) images through three ReLU layers of ndf units to (N,)
    scores (the reference averaged them over the batch)."""
    return nn.Sequential(nn.Flatten(), *linear_relu(nc * isize * isize, ndf), *linear_relu(ndf, ndf),
                         *linear_relu(ndf, ndf), nn.Linear(ndf, 1), nn.Flatten(0))


def init_dcgan_(module: nn.Module) -> None:
    """The WGAN reference code's init: conv weights N(0, 0.02), batchnorm scale N(1, 0.02) and shift 0."""
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)
