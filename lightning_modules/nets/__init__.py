"""Network architectures, one screen each; the systems in lightning_modules/ train them."""

from lightning_modules.nets.darknet import Darknet, ResLayer, conv_layer

__all__ = ["Darknet", "ResLayer", "conv_layer"]
