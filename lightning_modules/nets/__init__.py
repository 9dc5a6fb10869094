"""Network architectures, one screen each; the systems in lightning_modules/ train them."""

from lightning_modules.nets.darknet import Darknet, ResLayer, conv_layer, init_whitening
from lightning_modules.nets.dcgan import ConvBlock, DeconvBlock, critic, generator, mlp_critic, mlp_generator

__all__ = ["ConvBlock", "Darknet", "DeconvBlock", "ResLayer", "conv_layer", "critic", "generator", "init_whitening",
           "mlp_critic", "mlp_generator"]
