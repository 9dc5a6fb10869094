"""What a run writes about itself: config.yaml in its folder (a new run from it trains the same recipe), and on the
loggers the whole merged config, the command line, the git commit and what `auto` became.
"""

import subprocess
import sys
from pathlib import Path

import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from lightning.pytorch.trainer.states import TrainerFn

from callbacks import checkpoints, configs

# the config's None values written out, for a faithful re-run: jsonargparse 4.49 renamed skip_none to skip_unset and
# warns on the old name (to be removed in 5.0); the floor, 4.51, has the new one
KEEP_NONE = {"skip_unset": False}


class LogConfig(SaveConfigCallback):
    """config.yaml in the run folder (Lightning's), plus the whole merged config and git commit on the loggers.

    The file gets the config as given (`config`, set by CLI.instantiate_classes), which trains a new run when run
    again; the loggers get the config this run ran with (`effective`: its folder, W&B id, offline). A resume in the
    run's folder (`resumed_at`: the checkpoint's step) keeps the config the run began with, in the file and on the
    loggers, and writes its own beside it: config-resume-step<N>.yaml, and resume_step<N> on the loggers."""

    effective = None
    resumed_at: int | str | None = None  # "unknown" for a checkpoint whose step cannot be read

    def setup(self, trainer, pl_module, stage) -> None:
        if self.resumed_at is None or stage != "fit":
            self.write(trainer, pl_module, stage)

    def on_fit_start(self, trainer, pl_module) -> None:
        # a resume's, once its checkpoint is restored (after setup): a resume refused there (the style's image of
        # another size) left a config-resume file for nothing, and its logged config on the run's W&B run
        if self.resumed_at is not None:
            self.write(trainer, pl_module, "fit")

    def write(self, trainer, pl_module, stage) -> None:
        # Lightning's, but into the run folder: it writes into trainer.log_dir, the logger's folder, which is a W&B
        # save_dir of the user's (shared by runs, each replacing the file) or a CSV logger's version_<n>/
        if self.already_saved:
            return
        if self.resumed_at is not None:
            self.config_filename = f"config-resume-step{self.resumed_at}.yaml"
        if trainer.is_global_zero:
            path = Path(trainer.default_root_dir, self.config_filename)
            path.parent.mkdir(parents=True, exist_ok=True)
            self.parser.save(self.config, str(path), **KEEP_NONE, overwrite=self.overwrite,
                             multifile=self.multifile)
            for logger in trainer.loggers:  # a resume's writer marked its purge_step when Lightning opened it, before
                if isinstance(logger, TensorBoardLogger):  # this hook; tensorboardX's (not torch's) would mark it again
                    logger.experiment.purge_step = None  # on reopening for the test, hiding this run's own steps
            self.save_config(trainer, pl_module, stage)
            self.already_saved = True
        self.already_saved = trainer.strategy.broadcast(self.already_saved)  # every rank as rank 0, as Lightning's

    def save_config(self, trainer, pl_module, stage) -> None:
        config = yaml.safe_load(self.parser.dump(self.effective or self.config, **KEEP_NONE))
        config = config.get(config.get("subcommand")) or config  # `fit --config ...`: the fit section
        config.pop("config", None)
        logged = {"system": configs.system_of(config.get("model", {}).get("class_path", "")), "config": config,
                  "git_commit": git_commit(), "argv": " ".join(sys.argv), "hardware": hardware(trainer)}
        if config.get("ckpt_path") and trainer.state.fn != TrainerFn.FITTING:  # an evaluation: of which step
            logged["checkpoint_step"] = checkpoints.checkpoint_step(Path(config["ckpt_path"]))
        if self.resumed_at is not None:
            logged = {f"resume_step{self.resumed_at}": logged}
        for logger in trainer.loggers:
            logger.log_hyperparams(logged)
            if isinstance(logger, WandbLogger):  # the runs table can sort by the best a checkpoint's monitor reached
                for callback in trainer.checkpoint_callbacks:
                    if isinstance(callback, ModelCheckpoint) and callback.monitor:
                        # on Lightning's x-axis as its "*": a metric defined by name no longer takes the glob's
                        # step_metric, and its chart was drawn against wandb's own _step, unlike every other one
                        logger.experiment.define_metric(callback.monitor, step_metric="trainer/global_step",
                                                        step_sync=True, summary=f"{callback.mode},last")
            online = isinstance(logger, WandbLogger) and not getattr(logger.experiment, "offline", True)
            if online and logger.experiment.url:  # WANDB_MODE=disabled: not offline, and no url
                print(f"W&B: {logger.experiment.url}")  # W&B runs silent (WANDB_SILENT) but says where it is


def hardware(trainer) -> dict:
    """What `auto` became (a config says accelerator/devices/strategy auto), and the batch per optimizer step."""
    batch_size = getattr(trainer.datamodule, "hparams", {}).get("batch_size") if trainer.datamodule else None
    return {"accelerator": type(trainer.accelerator).__name__, "strategy": type(trainer.strategy).__name__,
            "devices": trainer.num_devices, "nodes": trainer.num_nodes, "world_size": trainer.world_size,
            "effective_batch_size": batch_size * trainer.world_size * trainer.accumulate_grad_batches
            if isinstance(batch_size, int) else None}


def git_commit() -> str | None:
    """The checkout's commit, with '-dirty' when it has uncommitted changes; None outside a git checkout."""
    root = Path(__file__).resolve().parents[1]  # the checkout: train.py's folder
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")
