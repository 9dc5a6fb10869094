"""Lightning's documented strategy names for systems that need one, given to train.py's plain `ddp`."""

import importlib


def documented_ddp_strategy(config) -> None:
    """train.py's hook (LightningCLI config, before instantiation): `--trainer.strategy ddp` for a system with a
    `ddp_strategy` attribute (the WGAN and the CycleGAN: ddp_find_unused_parameters_true) becomes that name."""
    if config.trainer.get("strategy") != "ddp" or not config.get("model"):
        return
    module, _, name = config.model.class_path.rpartition(".")
    config.trainer.strategy = getattr(getattr(importlib.import_module(module), name), "ddp_strategy", "ddp")
