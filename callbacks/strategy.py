"""Lightning's documented strategy names for systems that need one, given to train.py's plain `ddp` and `auto`, the
refusal of processes started from train.py's own, the check of a launcher's process count, and the process group's end
at exit."""

import atexit
import os

from callbacks.configs import import_class


def documented_ddp_strategy(config) -> None:
    """train.py's hook (LightningCLI config, before instantiation): `--trainer.strategy ddp` for a system with a
    `ddp_strategy` attribute (the WGAN and the CycleGAN: ddp_find_unused_parameters_true) becomes that name."""
    if config.trainer.get("strategy") != "ddp" or not config.get("model"):
        return
    config.trainer.strategy = getattr(import_class(config.model.class_path), "ddp_strategy", "ddp")


def auto_ddp_strategy(trainer, model, given) -> None:
    """`--trainer.strategy auto` (the configs') on several devices: Lightning's choice is plain DDP, under which a
    system with a `ddp_strategy` (the GANs) stops at its fit's start; that DDP gets the system's unused-parameter
    detection instead, so `python train.py --system wgan` runs on a machine of several GPUs as on one."""
    from lightning.pytorch.strategies import DDPStrategy

    if given not in (None, "auto") or type(trainer.strategy) is not DDPStrategy:
        return
    if getattr(type(model), "ddp_strategy", None) == "ddp_find_unused_parameters_true":
        # private: the strategy is built, and hands these to DistributedDataParallel as the fit starts
        trainer.strategy._ddp_kwargs["find_unused_parameters"] = True


def refuse_started_processes(trainer, given) -> None:
    """train.py's fit under ddp_spawn, ddp_fork or ddp_notebook (Lightning's choice for several devices in a notebook):
    the ranks run in processes started from this one, which hand back only the weights and metrics (Lightning's docs
    discourage it for that): a Ctrl-C there hung without saving, results.json and the test after the fit saw no
    training. Refused before any folder is made, naming ddp, where each rank is a process of its own."""
    from lightning.pytorch.strategies.launchers.multiprocessing import _MultiProcessingLauncher

    from callbacks.errors import UserError

    launcher = getattr(trainer.strategy, "launcher", None)
    if type(launcher) is not _MultiProcessingLauncher:  # (XLA's subclass: TPUs, not train.py's)
        return
    name = given if isinstance(given, str) and given != "auto" else f"{given} ({type(trainer.strategy).__name__})"
    raise UserError(f"--trainer.strategy {name} starts the ranks from this process ({launcher._start_method}), "
                    "which get back only their weights and metrics: a Ctrl-C or SLURM's signal could not save, and "
                    "results.json and the test after the fit would see no training; use --trainer.strategy ddp (one "
                    "process per rank; from a notebook, run python train.py in a terminal)")


def check_launched_processes(trainer) -> None:
    """train.py under torchrun or SLURM with several processes: the Trainer's devices per node and nodes must be the
    launcher's, each process one rank. Lightning checks only the DDP strategies' product, as the fit starts (a
    traceback, the run folder made), and not at all for one device, where each process trained a run of its own."""
    from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

    from callbacks.errors import UserError

    def counted(n: int, what: str) -> str:
        return f"{n} {what}" if n == 1 else f"{n} {what}{'es' if what.endswith('s') else 's'}"

    # the environment Lightning chose (torchrun's before SLURM's: torchrun may run inside a SLURM job's task)
    environment = trainer._accelerator_connector.cluster_environment
    if isinstance(environment, TorchElasticEnvironment):
        world = int(os.environ["WORLD_SIZE"])
        launched, nodes = f"torchrun started {counted(world, 'process')}", \
            max(1, world // int(os.environ.get("LOCAL_WORLD_SIZE") or world))
    elif isinstance(environment, SLURMEnvironment):
        world, nodes = int(os.environ["SLURM_NTASKS"]), int(os.environ.get("SLURM_NNODES") or 1)
        launched = f"the SLURM job runs {counted(world, 'task')}"
    else:
        return
    devices, wanted = f"{counted(trainer.num_devices, 'device')} on {counted(trainer.num_nodes, 'node')}", \
        trainer.num_devices * trainer.num_nodes
    if world % nodes:  # (SLURM: --ntasks not a multiple of --nodes)
        raise UserError(f"{launched} on {counted(nodes, 'node')}, not as many on each, but the Trainer has {devices}: "
                        f"give each node the same number (--ntasks-per-node)")
    if (trainer.num_devices, trainer.num_nodes) == (world // nodes, nodes):
        return
    raise UserError(f"{launched} ({world // nodes} per node on {counted(nodes, 'node')}), but the Trainer has "
                    f"{devices}: give --trainer.devices {world // nodes} --trainer.num_nodes {nodes}, one rank per "
                    f"process, or start {counted(wanted, 'process')}")


def require_unused_parameter_detection(module) -> None:
    """Stop a GAN under plain DDP before its first step, naming Lightning's strategy for it (call in on_fit_start):
    each backward reaches only one optimizer's nets, so DDP without unused-parameter detection would fail later."""
    from torch.nn.parallel import DistributedDataParallel

    from callbacks.errors import UserError

    wrapped = module.trainer.strategy.model
    if isinstance(wrapped, DistributedDataParallel) and not wrapped.find_unused_parameters:
        # train.py turns --trainer.strategy ddp into it: this is a plain Trainer's (a notebook's) or a config's own
        raise UserError(f"{type(module).__name__} needs DDP's unused-parameter detection; use Lightning's name for "
                        f"it: Trainer(strategy=\"ddp_find_unused_parameters_true\") from Python, "
                        f"--trainer.strategy ddp_find_unused_parameters_true in train.py")


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
