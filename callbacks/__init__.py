"""Callbacks, trainer plugins and logging helpers shared by every system; and, in their own modules, the run
bookkeeping train.py builds on (run_folder, run_checkpoint, run_lifecycle, checkpoints, saving, run_config, lr_finder,
wandb_run, configs)."""

from callbacks.checkpoint_io import AtomicCheckpointIO
from callbacks.errors import UserError
from callbacks.images import log_image_grid, save_png
from callbacks.lookahead import Lookahead
from callbacks.phase_scheduler import TrainingPhaseScheduler, plot_phases, plot_schedule
from callbacks.progress import ProgressBar, WriteLoggingSteps, logging_step
from callbacks.resume import EpochLengthResume, MaxStepsResume, RerunStoppedValidation, SeedPerRankAndStep
from callbacks.strategy import destroy_process_group_at_exit
from callbacks.training_phase import (
    DecayType,
    TrainingPhase,
    annealed,
    flat_cos,
    one_cycle,
    one_cycle_cos,
    sgdr,
    triangle,
)

__all__ = ["AtomicCheckpointIO", "DecayType", "EpochLengthResume", "Lookahead", "MaxStepsResume", "ProgressBar",
           "RerunStoppedValidation", "SeedPerRankAndStep", "TrainingPhase", "TrainingPhaseScheduler", "UserError",
           "WriteLoggingSteps", "annealed", "flat_cos", "log_image_grid", "logging_step", "one_cycle", "one_cycle_cos",
           "plot_phases", "plot_schedule", "save_png", "sgdr", "triangle"]

destroy_process_group_at_exit()  # train.py and every system import this package, so each process of a run does it
