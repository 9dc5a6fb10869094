"""What the Darknet's test interpretation (--model.interpret) adds to a test: confusion matrix, top losses, figures.

    python benchmarks/interpret_cost.py        # CPU, one thread: 10,000 random 32px images, a small Darknet

Prints the test's wall time with interpret off and on, twice each (README, Darknet section, quotes it).
"""

import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lightning_modules import DarknetClassifier  # noqa: E402


class RandomTest(L.LightningDataModule):
    def test_dataloader(self):
        g = torch.Generator().manual_seed(0)
        images, labels = torch.randn(10000, 3, 32, 32, generator=g), torch.randint(10, (10000,), generator=g)
        return torch.utils.data.DataLoader(list(zip(images, labels, strict=True)), batch_size=1000)


def main() -> None:
    torch.set_num_threads(1)
    for interpret in (False, True, False, True):
        model = DarknetClassifier(num_blocks=[1], nf=8, interpret=interpret)
        with tempfile.TemporaryDirectory(prefix="dl2-bench-") as root:
            trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
                                enable_model_summary=False, default_root_dir=root)
            start = time.perf_counter()
            trainer.test(model, RandomTest(), verbose=False)
            print(f"interpret={interpret}: {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
