"""A short CycleGAN run on the real horse2zebra at a reduced size: its loss terms and its visual grids.

    python benchmarks/cyclegan_horse2zebra.py --size 64 --batches 240       # a few minutes on a CPU
    python benchmarks/cyclegan_horse2zebra.py --size 256 --n_blocks 9 --batches 2000 \
        --extra "[--trainer.accelerator, gpu, --trainer.precision, bf16-mixed]"

Unpacks ../shared/data/horse2zebra.tar into data/ (git-ignored) when data/horse2zebra is missing, trains
`--system cyclegan` for `batches` batches with every loss term written to a CSV log, tests on the first 20
images of testA and of testB (`limit_test_batches` counts per domain loader at batch 1)
and prints the mean of each term over the first and the last `window` batches, plus the grid files.
"""

import csv
import json
import sys
import tarfile
from pathlib import Path

import torch
from jsonargparse import CLI

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import train  # noqa: E402  (a script at the root)

TERMS = ["gan_a2b", "gan_b2a", "cycle_a", "cycle_b", "identity_a", "identity_b", "gen_total", "disc_a", "disc_b"]


def main(archive: str = str(ROOT.parent / "shared" / "data" / "horse2zebra.tar"), data_root: str = "data",
         size: int = 64, batches: int = 240, n_blocks: int = 6, ngf: int = 64, window: int = 40,
         images_every: int = 80, threads: int = 0, run_name: str = "bench-horse2zebra", extra: list[str] = ()):
    """Train briefly on horse2zebra and summarise the losses.

    Args:
        archive: the horse2zebra tar (horse2zebra/{trainA,trainB,testA,testB}).
        data_root: where it is unpacked.
        size: crop size; images are first resized to size * 286 / 256 (the paper's ratio).
        batches: training batches (batch 1; 3 optimizer steps each).
        n_blocks: generator residual blocks.
        ngf: generator (and discriminator) width.
        window: batches averaged at the start and at the end.
        images_every: a visual grid every N batches.
        threads: torch CPU threads (0: the default).
        run_name: run folder under runs/cyclegan.
        extra: more train.py arguments.
    """
    if threads:
        torch.set_num_threads(threads)
    data_dir = Path(data_root) / "horse2zebra"
    if not (data_dir / "trainA").is_dir():
        from datamodules.download import extract_tar  # the 'data' filter, or its checks on older Pythons
        with tarfile.open(archive) as tar:
            extract_tar(tar, data_root)
    runs = ROOT / "runs" / "cyclegan"
    logger = {"class_path": "lightning.pytorch.loggers.CSVLogger",
              "init_args": {"save_dir": str(runs / run_name), "name": "csv"}}
    train.main(["--system", "cyclegan", "--data.data_dir", str(data_dir), "--data.load_size", str(size * 286 // 256),
                "--data.crop_size", str(size), "--data.num_workers", "1", "--model.n_blocks", str(n_blocks),
                "--model.ngf", str(ngf), "--model.ndf", str(ngf),
                "--model.log_images_every_n_batches", str(images_every), "--trainer.max_steps", str(3 * batches),
                "--trainer.log_every_n_steps", "1", "--trainer.limit_test_batches", "20",
                "--trainer.enable_progress_bar", "false", "--trainer.logger", json.dumps(logger),
                "--run_name", run_name, "--trainer.default_root_dir", str(runs), *extra])
    run_dir = runs / run_name
    metrics = next(run_dir.glob("csv/*/metrics.csv")).read_text().splitlines()
    rows = [r for r in csv.DictReader(metrics) if r.get("train/gen_total")]
    summary = {}
    for term in TERMS:
        values = [float(r[f"train/{term}"]) for r in rows]
        summary[term] = {"first": sum(values[:window]) / len(values[:window]),
                         "last": sum(values[-window:]) / len(values[-window:])}
    results = json.loads((run_dir / "results.json").read_text())
    print(json.dumps({"size": size, "load_size": size * 286 // 256, "n_blocks": n_blocks, "ngf": ngf,
                      "batches": len(rows), "fit_seconds": results["fit_seconds"], "test": results["test"],
                      f"mean over the first / last {window} batches": summary,
                      "grids": sorted(str(p) for p in (run_dir / "images").glob("*.png"))}, indent=2))


if __name__ == "__main__":
    CLI(main, as_positional=False)
