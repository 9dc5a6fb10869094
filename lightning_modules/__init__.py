"""The systems: one LightningModule per file; their networks live in lightning_modules.nets.

The names below load on first use (PEP 562), so `python -m lightning_modules.wgan` runs a module the package
has not imported already (no runpy RuntimeWarning) and `import lightning_modules` stays cheap.
"""

import importlib

_HOMES = {"CycleGAN": "cyclegan", "DarknetClassifier": "darknet_classifier", "Darknet": "nets",
          "ResLayer": "nets", "conv_layer": "nets", "StyleTransfer": "style_transfer", "gram": "style_transfer",
          "WGAN": "wgan"}

__all__ = ["CycleGAN", "Darknet", "DarknetClassifier", "ResLayer", "StyleTransfer", "WGAN", "conv_layer", "gram"]


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'lightning_modules' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"lightning_modules.{_HOMES[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
