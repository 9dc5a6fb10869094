"""Callbacks and trainer plugins shared by every system."""

from callbacks.checkpoint_io import AtomicCheckpointIO

__all__ = ["AtomicCheckpointIO"]
