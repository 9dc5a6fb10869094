"""Callbacks, trainer plugins and logging helpers shared by every system."""

from callbacks.checkpoint_io import AtomicCheckpointIO
from callbacks.images import log_image_grid, save_png

__all__ = ["AtomicCheckpointIO", "log_image_grid", "save_png"]
