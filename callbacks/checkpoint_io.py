"""Checkpoints (and the JSON files beside them) written to a temporary file beside their target, then renamed over
it."""

import json
import os
from pathlib import Path

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    """A crash mid-save leaves the previous checkpoint intact.

    Lightning's own save stages the file in the system temp folder and moves it; when that folder is on
    another file system (node-local /tmp, checkpoints on NFS or Lustre) the move becomes a plain copy
    into the target, which a crash can cut short. Staging in the target's folder keeps it one rename.
    """

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            torch.save(checkpoint, tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


def write_json(path: Path, data: dict) -> None:
    """A JSON file (run.json, results.json, an export's config) written beside and renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)
