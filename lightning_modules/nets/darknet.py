"""The seed's Darknet for CIFAR-10 (DL2 2018 lesson 12, cifar10-darknet; after Redmon & Farhadi 2018)."""

from contextlib import contextmanager, nullcontext

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from callbacks.errors import UserError


def conv_layer(ni: int, nf: int, ks: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(ni, nf, ks, stride, padding=ks // 2, bias=False),
        nn.BatchNorm2d(nf, momentum=0.01),
        nn.LeakyReLU(0.1, inplace=True),
    )


@contextmanager
def batchnorm_stats_kept(module: nn.Module):
    """Undo running-stat updates made inside the block (a checkpoint's recompute would count twice)."""
    buffers = [b for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) for b in m.buffers()]
    saved = [b.clone() for b in buffers]
    try:
        yield
    finally:
        for b, s in zip(buffers, saved, strict=True):
            b.copy_(s)


class ResLayer(nn.Module):  # a class only because of the skip connection
    """Darknet residual: 1x1 conv to ni * bottleneck, 3x3 conv back to ni, plus the input.

    The seed wrote `x.add_(body(x))` to save memory; autograd rejects it because the 1x1 conv saved x
    for its backward. `checkpoint=True` gets a larger saving in a form autograd accepts: only x is kept
    and the body is recomputed during backward (about a third more compute; BENCHMARKS.md has the memory).
    """

    def __init__(self, ni: int, bottleneck: float = 0.5, checkpoint: bool = False):
        super().__init__()
        mid = max(1, int(ni * bottleneck))
        self.body = nn.Sequential(conv_layer(ni, mid, ks=1), conv_layer(mid, ni))
        self.checkpoint = checkpoint

    def forward(self, x: Tensor) -> Tensor:
        if self.checkpoint and torch.is_grad_enabled():
            return x + checkpoint(self.body, x, use_reentrant=False, context_fn=self._contexts)
        return x + self.body(x)  # out of place: the seed's x.add_ fails under autograd

    def _contexts(self):
        return nullcontext(), batchnorm_stats_kept(self)  # (forward, recompute)


def downsample_layer(ni: int, nf: int, stride: int, how: str = "conv") -> nn.Sequential:
    """The seed's stride-2 conv_layer; "maxpool": conv_layer then a 2x2 max-pool (same output size); "pool_first":
    the conv, the max-pool, then BatchNorm and LeakyReLU (airbench94's order: they run on a quarter of the values)."""
    if how == "conv" or stride == 1:
        return conv_layer(ni, nf, stride=stride)
    if how == "pool_first":
        conv, norm, act = conv_layer(ni, nf)
        return nn.Sequential(conv, nn.MaxPool2d(stride), norm, act)
    return nn.Sequential(conv_layer(ni, nf), nn.MaxPool2d(stride))


def whitening_layer(kernel: int = 2) -> nn.Sequential:
    """A frozen kxk conv with 2 * 3k^2 filters, then BatchNorm and LeakyReLU (airbench, Jordan 2024,
    arXiv:2404.00498; tysam-code hlb-cifar10). Its weights are set from the data by `init_whitening`."""
    width = 2 * 3 * kernel * kernel
    conv = nn.Conv2d(3, width, kernel, padding=0, bias=False)
    conv.weight.requires_grad_(False)
    return nn.Sequential(conv, nn.BatchNorm2d(width, momentum=0.01), nn.LeakyReLU(0.1, inplace=True))


@torch.no_grad()
def init_whitening(conv: nn.Conv2d, images: Tensor, eps: float = 5e-4) -> None:
    """Filters that whiten the kxk patches of `images`: the eigenvectors of the patches' (uncentred) second
    moment scaled by 1/sqrt(eigenvalue + eps), each filter also negated (so a ReLU-like layer keeps both signs)."""
    k = conv.kernel_size[0]
    patches = images.float().unfold(2, k, 1).unfold(3, k, 1)  # (N, C, H', W', k, k)
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, images.shape[1] * k * k)
    moment = patches.T @ patches / len(patches)
    values, vectors = torch.linalg.eigh(moment.double())
    filters = (vectors.T / (values[:, None] + eps).sqrt()).float().view(-1, images.shape[1], k, k)
    conv.weight.copy_(torch.cat([filters, -filters]).to(conv.weight))


class Darknet(nn.Module):
    """conv_layer stem, then per group a stride-2 conv_layer doubling the channels and its ResLayers.

    The seed's default is Darknet([1, 2, 4, 6, 3], num_classes=10, nf=32). Its Wide-ResNet homework
    (wider, fewer layers, a fatter bottleneck such as ni * 2) is `nf`, `widths`, `num_blocks` and `bottleneck`.
    `zero_init_residual` zeroes the last BatchNorm weight of every ResLayer, so each starts as the identity.
    `widths`: channels per group (default nf doubled per group); `strides`: per group (default the seed's
    2, 1, 2, 2, ...); `downsample`: "conv" (the seed's stride-2 conv), "maxpool" (conv, BatchNorm, LeakyReLU, then
    max-pool) or "pool_first" (conv, max-pool, then BatchNorm and LeakyReLU, as airbench94);
    `whiten`: 0 for the seed's conv stem, or k for a frozen kxk patch-whitening stem (`init_whitening`).
    `bn_momentum`: PyTorch's momentum of every BatchNorm's running statistics (the seed's 0.01; airbench94's
    0.4, which it writes as 1 - 0.4 = 0.6). `bn_weight`: False freezes every BatchNorm weight at 1 (airbench94).
    `logit_scale`: the logits are multiplied by it (airbench94: 1/9).
    """

    def __init__(self, num_blocks=(1, 2, 4, 6, 3), num_classes: int = 10, nf: int = 32,
                 bottleneck: float = 0.5, checkpoint: bool = False, zero_init_residual: bool = True,
                 widths=None, strides=None, downsample: str = "conv", whiten: int = 0, bn_momentum: float = 0.01,
                 bn_weight: bool = True, logit_scale: float = 1.0):
        if not num_blocks or any(n < 0 for n in num_blocks):
            raise UserError(f"num_blocks must be a non-empty list of counts >= 0 (got {num_blocks})")
        # group 1 keeps the resolution: the seed's stride 2-(i==1) leaves 32px CIFAR at 2x2, not 1x1
        strides = list(strides) if strides is not None else [2 - (i == 1) for i in range(len(num_blocks))]
        widths = list(widths) if widths is not None else [nf * 2 ** (i + 1) for i in range(len(num_blocks))]
        for name, values in (("widths", widths), ("strides", strides)):
            if len(values) != len(num_blocks) or any(v < 1 for v in values):
                raise UserError(f"{name} needs one value >= 1 per group of num_blocks ({len(num_blocks)}), "
                                 f"got {values}")
        if downsample not in ("conv", "maxpool", "pool_first"):
            raise UserError(f"downsample must be 'conv', 'maxpool' or 'pool_first' (got {downsample!r})")
        if whiten < 0:
            raise UserError(f"whiten must be 0 (the seed's conv stem) or a kernel size >= 1 (got {whiten})")
        if not 0 < bn_momentum <= 1:
            raise UserError(f"bn_momentum is PyTorch's, in (0, 1]: the seed's 0.01, airbench94's 0.4 "
                            f"(got {bn_momentum})")
        if zero_init_residual and not bn_weight and any(num_blocks):
            raise UserError("zero_init_residual zeroes a BatchNorm weight that bn_weight false would freeze, "
                            "switching every residual off for good; set --model.zero_init_residual false")
        layers = [whitening_layer(whiten) if whiten else conv_layer(3, nf)]
        ni = 2 * 3 * whiten * whiten if whiten else nf
        for n, width, stride in zip(num_blocks, widths, strides, strict=True):
            layers += [downsample_layer(ni, width, stride, downsample)]
            layers += [ResLayer(width, bottleneck, checkpoint) for _ in range(n)]
            ni = width
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(ni, num_classes)]
        super().__init__()
        self.layers = nn.Sequential(*layers)
        self.whiten, self.logit_scale = whiten, logit_scale
        for norm in self.modules():
            if isinstance(norm, nn.modules.batchnorm._BatchNorm):
                norm.momentum = bn_momentum
                norm.weight.requires_grad_(bn_weight)
        if zero_init_residual:
            # each ResLayer starts as the identity (Goyal et al. 2017, arXiv:1706.02677): with today's BN init
            # (weight 1; PyTorch 0.3 drew it from U(0, 1)) the 16 stacked residuals of the default net blew the
            # loss from 2.5 to 20 in 10 SGD steps at lr 0.05 on CIFAR-10; zero-init fell to 1.95 (2026-11-27, CPU)
            for layer in self.modules():
                if isinstance(layer, ResLayer):
                    nn.init.zeros_(layer.body[-1][1].weight)

    @property
    def whitening(self) -> nn.Conv2d | None:
        """The frozen whitening conv of the stem, or None for the seed's stem."""
        return self.layers[0][0] if self.whiten else None

    def forward(self, x: Tensor) -> Tensor:
        logits = self.layers(x)  # (N, 3, H, W) -> (N, num_classes)
        return logits if self.logit_scale == 1 else logits * self.logit_scale
