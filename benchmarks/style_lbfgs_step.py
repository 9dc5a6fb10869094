"""Seconds per optimizer step with a full history: BatchLBFGS against torch.optim.LBFGS (one iteration a step).

The closure is a cheap separable function, so the time is the optimizer's own (two-loop recursion over
`history_size` pairs of image-sized vectors). Interleaved: torch, batch, torch, batch...

    python benchmarks/style_lbfgs_step.py --size 288 --history 100 --rounds 3
"""

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lightning_modules.lbfgs import BatchLBFGS  # noqa: E402


def seconds_per_step(optimizer_class, args, **kwargs) -> float:
    torch.manual_seed(0)
    curvature = torch.rand(1, 3 * args.size**2) + 0.5
    x = torch.randn(1, 3 * args.size**2, requires_grad=True)
    optimizer = optimizer_class([x], lr=1.0, history_size=args.history, **kwargs)

    def closure():
        optimizer.zero_grad()
        loss = (curvature * x * x).sum() + 1e-3 * (x**4).sum()
        loss.backward()
        return loss

    for _ in range(args.history):  # fill the history
        optimizer.step(closure)
    start = time.perf_counter()
    for _ in range(args.steps):
        optimizer.step(closure)
    return (time.perf_counter() - start) / args.steps


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=288)
    parser.add_argument("--history", type=int, default=100)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    for r in range(args.rounds):
        plain = seconds_per_step(torch.optim.LBFGS, args, max_iter=1)
        batch = seconds_per_step(BatchLBFGS, args)
        print(f"round {r}: torch.optim.LBFGS {plain:.3f} s/step, BatchLBFGS {batch:.3f} s/step, "
              f"ratio {batch / plain:.2f}", flush=True)


if __name__ == "__main__":
    main()
