"""LightningDataModules; each keeps its real download code and says where to put data offline.

The names below load on first use (PEP 562), as in lightning_modules: `python -m datamodules.image_folder` then
runs a module the package has not imported already (no runpy RuntimeWarning).
"""

import importlib

_HOMES = {"CIFAR10DataModule": "cifar10", "ImageFolderDataModule": "image_folder",
          "StyleTransferDataModule": "style", "UnpairedImageDataModule": "unpaired"}

__all__ = ["CIFAR10DataModule", "ImageFolderDataModule", "StyleTransferDataModule", "UnpairedImageDataModule"]


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'datamodules' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"datamodules.{_HOMES[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
