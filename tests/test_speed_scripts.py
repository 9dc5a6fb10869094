"""The benchmark scripts' methodology (benchmarks/*_speed.py, style_lbfgs.py): what their figures include."""

import json
import sys

import pytest
import torch
from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import style_lbfgs  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def test_style_lbfgs_times_neither_loop_s_first_run_in_the_process(tmp_path, monkeypatch):
    """On a GPU a process's first run loads cuDNN, cuBLAS and their kernels; A (Lightning) always ran first, so its
    figure alone carried that. Fake loops whose first run in the process is the slow one (100 s, then 1 s)."""
    calls = []

    def fake(name):
        def run(args, data):
            calls.append((name, args.iters))
            return (100.0 if [c[0] for c in calls].count(name) == 1 else 1.0), 0.5
        return run

    monkeypatch.setattr(style_lbfgs, "lightning_run", fake("A"))
    monkeypatch.setattr(style_lbfgs, "plain_run", fake("B"))
    out = tmp_path / "style.json"
    style_lbfgs.main(["--size", "32", "--iters", "10", "--order", "AB", "--json", str(out)])
    row = json.loads(out.read_text())["rows"][0]
    assert row["trials_ours"] == [1.0] and row["trials_plain"] == [1.0]
    assert row["ours"] == row["plain"] == 10.0  # 10 iterations in 1 s each
    assert calls == [("A", 2), ("B", 2), ("A", 10), ("B", 10)]  # the warm-ups: --warmup 2 iterations each


def test_wgan_speed_starts_each_run_with_the_earlier_runs_freed(monkeypatch, tmp_path):
    """A Lightning Trainer and its model sit in reference cycles: alive after fit returns until Python's collector
    runs, their CUDA tensors counted in the next run's peak memory (the plain loop's). Each run's measurement
    starts with every earlier run's model gone."""
    import weakref

    import wgan_speed

    models, alive_at_start = [], []

    class Tracked(wgan_speed.WGAN):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            models.append(weakref.ref(self))

    fresh_start = wgan_speed.fresh_start

    def checked(device):
        fresh_start(device)
        alive_at_start.append(sum(m() is not None for m in models))

    monkeypatch.setattr(wgan_speed, "WGAN", Tracked)
    monkeypatch.setattr(wgan_speed, "fresh_start", checked)
    monkeypatch.chdir(tmp_path)
    wgan_speed.main(["--isize", "16", "--batch_size", "2", "--width", "2", "--iterations", "2", "--warmup", "1",
                     "--repeats", "2", "--threads", "1"])
    assert len(models) == 4 and alive_at_start == [0, 0, 0, 0]  # ours, plain, plain, ours: none left over


def test_wgan_speed_s_plain_loop_does_the_system_s_work(monkeypatch, tmp_path):
    """The ratio is Lightning's cost only if the plain loop runs the system's kernels: the same weights after the
    same batches, and the clamp as the system's two foreach kernels, not two per parameter (28 launches a critic
    step for the 64 px critic's 14 tensors). fp32: under bf16-mixed Lightning's autocast keeps no cache of the
    weights' casts (cache_enabled=False), its own cost, which moves the last bits."""
    import argparse

    import wgan_speed
    from torch.utils._python_dispatch import TorchDispatchMode

    models = []

    class Kept(wgan_speed.WGAN):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            models.append(self)

    class Clamps(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if "clamp" in func.__name__:
                self.ops.append(func.__name__.split(".")[0])
            return func(*args, **(kwargs or {}))

    monkeypatch.setattr(wgan_speed, "WGAN", Kept)
    monkeypatch.chdir(tmp_path)
    args = argparse.Namespace(isize=16, width=2, warmup=1, channels_last=False, device="cpu", precision="32-true")
    data = wgan_speed.batches(11, 2, 16)  # 11 critic iterations: generator steps after the 5th, 10th and 11th
    clamps = {}
    for name, run in (("system", wgan_speed.lightning_run), ("plain", wgan_speed.plain_run)):
        with Clamps() as mode:
            run(data, args)
        clamps[name] = mode.ops
    system, plain = models
    for a, b in ((system.critic, plain.critic), (system.generator, plain.generator)):
        for p, q in zip(a.parameters(), b.parameters(), strict=True):
            assert torch.equal(p.detach(), q.detach())
    assert clamps["plain"] == ["_foreach_clamp_min_", "_foreach_clamp_max_"] * 11
    # the system's too, beside the clamp_ of its first batch's image grid (real_samples)
    assert [op for op in clamps["system"] if op.startswith("_foreach")] == clamps["plain"]


def test_darknet_throughput_s_plain_loop_moves_batches_as_lightning_does(monkeypatch):
    """Lightning moves each batch to a GPU with non_blocking=True (move_data_to_device); a blocking copy in the plain
    loop waits for every queued kernel at each step, a sync only the plain side had. The copies' flags, on the CPU."""
    import types

    import darknet_throughput

    flags = []
    to = torch.Tensor.to

    def recording_to(self, *args, **kwargs):
        if args and args[0] == "cpu" and self.dtype in (torch.uint8, torch.int64):
            flags.append(kwargs.get("non_blocking", False))
        return to(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", recording_to)
    data = types.SimpleNamespace(train_images=torch.randint(0, 256, (12, 3, 32, 32), dtype=torch.uint8),
                                 train_labels=torch.randint(0, 10, (12,)))
    rate = darknet_throughput.plain_loop(data, 4, 1, 1, "cpu", net_args={"nf": 4, "num_blocks": [1]})
    assert rate > 0 and flags == [True, True] * 2  # images and labels of the warm-up step and the timed one
