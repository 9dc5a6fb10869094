"""Checkpoints (and the JSON files beside them) written to a temporary file beside their target, then renamed over
it."""

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
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
        with replaced(Path(path)) as tmp:
            torch.save(checkpoint, tmp)


@contextmanager
def replaced(path: Path) -> Iterator[Path]:
    """A temporary file beside `path` (in its folder, made if missing) to write, renamed over `path` when the block
    ends, removed when it fails: a crash never leaves half a file under the real name, and a rename within one folder
    stays atomic on network file systems. The name holds the process id: two processes never share one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with suppress(OSError):  # gone once renamed; never made in a folder that cannot be written to
            tmp.unlink()


def remove_stale_temporaries(folder: Path) -> None:
    """The temporary files `replaced` left in `folder` when its process was killed mid-write (a checkpoint's: hundreds
    of MB a crash, never removed). Only while no other process writes there: the run's lock held."""
    for tmp in folder.glob(".*.tmp"):
        name, _, pid = tmp.name[:-len(".tmp")].rpartition(".")
        if name and pid.isdigit() and int(pid) != os.getpid() and tmp.is_file():
            with suppress(OSError):
                tmp.unlink()


def write_json(path: Path, data: dict) -> None:
    """A JSON file (run.json, results.json, an export's config) written beside and renamed into place."""
    with replaced(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2))
