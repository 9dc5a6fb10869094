"""benchmarks/time_to_accuracy.py's smoke mode and configs/darknet_fast.yaml, end to end on the CPU."""

import json
import pickle

import pytest
import torch
from conftest import SHARED_DATA

import train
from benchmarks import time_to_accuracy

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_FAST = ["--model.num_blocks", "[1, 0, 0]", "--model.widths", "[8, 16, 16]", "--model.num_classes", "3",
             "--model.compile", "false", "--model.whiten_images", "16", "--trainer.precision", "32-true",
             "--trainer.max_epochs", "2", "--data.batch_size", "8", "--data.eval_batch_size", "12"]


def test_fast_config_runs_end_to_end_with_tiny_overrides(tiny_cifar, tmp_path):
    runs = tmp_path / "runs"
    ema = "--trainer.callbacks+=lightning.pytorch.callbacks.EMAWeightAveraging"  # the EMA, from the command line
    train.main(["--system", "darknet_fast", "--data.data_dir", str(tiny_cifar), "--trainer.default_root_dir",
                str(runs), *TINY_FAST, ema])
    (run_dir,) = list(runs.iterdir())
    results = json.loads((run_dir / "results.json").read_text())
    assert 0 <= results["test"]["test/acc"] <= 1 and results["global_step"] == 6  # 24 images / 8, two epochs
    assert "EMAWeightAveraging" in (run_dir / "config.yaml").read_text()


def test_smoke_prepares_both_formats_and_reports_our_runs(tmp_path, capsys):
    if not (SHARED_DATA / "cifar10-jpeg.tar.gz").exists():
        pytest.skip("real CIFAR-10 archive not found")
    result = time_to_accuracy.main(["--smoke", "--seeds", "2", "--data-dir", str(tmp_path / "data"),
                                    "--out", str(tmp_path / "out")])
    printed = capsys.readouterr().out
    assert "airbench94 skipped (it needs CUDA)" in printed
    runs = result["runs"]["ours"]
    assert [r["seed"] for r in runs] == [0, 1] and all(0 <= r["accuracy"] <= 1 and r["seconds"] > 0 for r in runs)
    summary = result["summary"]["ours"]
    seconds = [r["seconds"] for r in runs]
    assert summary["seconds"]["mean"] == pytest.approx(sum(seconds) / 2)
    assert summary["seconds"]["std"] == pytest.approx(abs(seconds[0] - seconds[1]) / 2 ** 0.5)
    assert "ours" in result["first_run_seconds"] and "airbench94" not in result["runs"]
    assert json.loads((tmp_path / "out" / "time_to_accuracy.json").read_text())["summary"] == result["summary"]
    assert "| ours | 2 |" in (tmp_path / "out" / "time_to_accuracy.md").read_text()
    # airbench's files: uint8 NHWC images, labels and classes; ours: the python batches, same images
    airbench = torch.load(tmp_path / "data" / "smoke" / "airbench" / "cifar10" / "test.pt")
    assert airbench["images"].shape == (100, 32, 32, 3) and airbench["images"].dtype == torch.uint8
    assert airbench["classes"][0] == "airplane" and torch.bincount(airbench["labels"]).tolist() == [10] * 10
    with open(tmp_path / "data" / "smoke" / "cifar-10-batches-py" / "test_batch", "rb") as f:
        ours = pickle.load(f)
    rows = torch.from_numpy(ours[b"data"]).view(100, 3, 32, 32)
    assert torch.equal(rows.permute(0, 2, 3, 1), airbench["images"]) and ours[b"labels"] == airbench["labels"].tolist()
