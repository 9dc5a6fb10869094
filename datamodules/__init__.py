"""LightningDataModules; each keeps its real download code and says where to put data offline."""

from datamodules.cifar10 import CIFAR10DataModule
from datamodules.image_folder import ImageFolderDataModule
from datamodules.style import StyleTransferDataModule
from datamodules.unpaired import UnpairedImageDataModule

__all__ = ["CIFAR10DataModule", "ImageFolderDataModule", "StyleTransferDataModule", "UnpairedImageDataModule"]
