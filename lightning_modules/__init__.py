"""The systems: one LightningModule per file; their networks live in lightning_modules.nets."""

from lightning_modules.cyclegan import CycleGAN
from lightning_modules.darknet_classifier import DarknetClassifier
from lightning_modules.nets import Darknet, ResLayer, conv_layer
from lightning_modules.style_transfer import StyleTransfer, gram
from lightning_modules.wgan import WGAN

__all__ = ["CycleGAN", "Darknet", "DarknetClassifier", "ResLayer", "StyleTransfer", "WGAN", "conv_layer", "gram"]
