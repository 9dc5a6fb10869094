"""Files written through a temporary file and a rename: a write that fails half-way keeps the previous file."""

import json

import pytest
import torch

from callbacks import AtomicCheckpointIO
from callbacks.checkpoint_io import remove_stale_temporaries, replaced, write_json
from lightning_modules.darknet_interpret import write_rows


def test_a_checkpoint_save_that_fails_half_way_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"global_step": 1}, path)  # makes the folder
    before = path.read_bytes()

    def torn_save(obj, file):  # a crash (disk full, a kill) after part of the file is out
        with open(file, "wb") as f:
            f.write(before[:10])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(OSError, match="No space left"):
        AtomicCheckpointIO().save_checkpoint({"global_step": 2}, path)
    assert path.read_bytes() == before and sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]
    monkeypatch.undo()
    AtomicCheckpointIO().save_checkpoint({"global_step": 3}, path)
    assert torch.load(path)["global_step"] == 3 and sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]


def test_json_and_csv_writes_that_fail_keep_the_previous_file(tmp_path):
    results = tmp_path / "results.json"
    write_json(results, {"test": {"acc": 0.5}})
    with pytest.raises(TypeError):
        write_json(results, {"test": {"acc": object()}})  # not JSON: the dump fails before anything is renamed
    assert json.loads(results.read_text()) == {"test": {"acc": 0.5}}

    class Unprintable:
        def __str__(self):
            raise ValueError("no text")

    table = tmp_path / "predictions.csv"
    write_rows(table, ["path", "prediction"], [["a.png", "cat"]])
    with pytest.raises(ValueError, match="no text"):
        write_rows(table, ["path", "prediction"], [["b.png", "dog"], ["c.png", Unprintable()]])
    assert table.read_text().splitlines() == ["path,prediction", "a.png,cat"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["predictions.csv", "results.json"]


def test_replaced_writes_in_the_target_folder_under_a_name_of_this_process(tmp_path):
    import os
    with replaced(tmp_path / "new" / "file.txt") as tmp:
        assert tmp.parent == tmp_path / "new" and str(os.getpid()) in tmp.name and tmp.name.startswith(".")
        tmp.write_text("done")
    assert (tmp_path / "new" / "file.txt").read_text() == "done" and not tmp.exists()


def test_files_are_written_into_folders_several_levels_down_that_do_not_exist_yet(tmp_path):
    # a run's images/ or an export's folder under a run root not made yet
    write_json(tmp_path / "runs" / "a" / "run.json", {"trained": True})
    AtomicCheckpointIO().save_checkpoint({"global_step": 4}, tmp_path / "out" / "b" / "c" / "model.ckpt")
    assert json.loads((tmp_path / "runs" / "a" / "run.json").read_text()) == {"trained": True}
    assert torch.load(tmp_path / "out" / "b" / "c" / "model.ckpt")["global_step"] == 4
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()) == [
        "out/b/c/model.ckpt", "runs/a/run.json"]


def test_only_the_temporaries_of_other_processes_are_removed_as_stale(tmp_path):
    """A kill mid-save leaves `.last.ckpt.<pid>.tmp`; the user's files, and this process's own writes, stay."""
    import os
    names = {".last.ckpt.4242.tmp": False, ".results.json.17.tmp": False,  # stale: another process's
             f".last.ckpt.{os.getpid()}.tmp": True,  # this process's, being written
             ".notes.tmp": True, ".x.y.tmp": True, "last.ckpt.4242.tmp": True, ".last.ckpt.4242.tmp.bak": True}
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / ".folder.42.tmp").mkdir()  # not a file of ours
    remove_stale_temporaries(tmp_path)
    assert {name: (tmp_path / name).exists() for name in names} == names
    assert (tmp_path / ".folder.42.tmp").is_dir()
