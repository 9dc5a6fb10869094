"""What the training signal on screen costs: steps/s of the Darknet and the WGAN with each kind of progress output.

    python benchmarks/progress_cost.py [--steps 60] [--repeats 5] [--every 20] [--device cpu|cuda]

Modes, run interleaved (trial i of every mode before trial i+1 of any, so machine load hits all alike):
  none      no progress output (enable_progress_bar false)
  tqdm      Lightning's default bar (only v_num: what the systems showed before)
  bar       callbacks.ProgressBar, TQDM mode: the training signal read once per --every steps
  text      callbacks.ProgressBar, plain lines (a log file)
  prog_bar  the naive way: the same metrics logged with prog_bar=True (Lightning reads them after every step)
Small nets (Darknet [1, 1] nf 16 at 32 px, WGAN 32 px ngf/ndf 16), so per-step overhead shows.
"""

import argparse
import contextlib
import io
import statistics
import sys
import tempfile
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import Clock  # noqa: E402
from callbacks import ProgressBar  # noqa: E402
from lightning_modules import WGAN, DarknetClassifier  # noqa: E402

MODES = ["none", "tqdm", "bar", "text", "prog_bar"]


class ProgBarDarknet(DarknetClassifier):
    def log(self, name, value, *args, **kwargs):
        super().log(name, value, *args, **{**kwargs, "prog_bar": name in self.progress_bar_metrics})


class ProgBarWGAN(WGAN):
    def log(self, name, value, *args, **kwargs):
        super().log(name, value, *args, **{**kwargs, "prog_bar": name in self.progress_bar_metrics})

    def log_dict(self, values, *args, **kwargs):
        for name, value in values.items():
            self.log(name, value)


def model_and_data(system: str, mode: str, n: int):
    torch.manual_seed(0)
    if system == "darknet":
        model = (ProgBarDarknet if mode == "prog_bar" else DarknetClassifier)(num_blocks=[1, 1], nf=16, lr=0.1,
                                                                             one_cycle=None)
        data = TensorDataset(torch.randn(n * 32, 3, 32, 32), torch.randint(0, 10, (n * 32,)))
        return model, DataLoader(data, batch_size=32)
    model = (ProgBarWGAN if mode == "prog_bar" else WGAN)(isize=32, ngf=16, ndf=16, nz=32, sample_every=10 ** 9)
    return model, DataLoader(torch.rand(n * 32, 3, 32, 32) * 2 - 1, batch_size=32)


def run(system: str, mode: str, args) -> float:
    """Timed steps per second."""
    n = args.warmup + args.steps
    model, data = model_and_data(system, mode, n)
    timer = Clock(args.warmup)
    callbacks = [timer] + ([ProgressBar(text=mode == "text")] if mode in ("bar", "text") else [])
    with tempfile.TemporaryDirectory(prefix="dl2-bench-") as root:  # the final gallery, thrown away
        trainer = L.Trainer(accelerator="gpu" if args.device == "cuda" else "cpu", devices=1, max_epochs=1,
                            default_root_dir=root, logger=False, enable_checkpointing=False,
                            enable_model_summary=False, log_every_n_steps=args.every,
                            enable_progress_bar=mode != "none", callbacks=callbacks)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            trainer.fit(model, data)
    return args.steps / timer.seconds


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--every", type=int, default=20, help="log_every_n_steps")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for system in ("darknet", "wgan"):
        results = {mode: [] for mode in MODES}
        for _ in range(args.repeats):
            for mode in MODES:
                results[mode].append(run(system, mode, args))
        base = statistics.median(results["none"])
        for mode in MODES:
            median = statistics.median(results[mode])
            print(f"{system:8s} {mode:9s} {median:7.2f} steps/s (median of {args.repeats}; "
                  f"{median / base:.3f} x none)", flush=True)


if __name__ == "__main__":
    main()
