"""Critic iterations per second: the WGAN system under a Lightning Trainer against a plain PyTorch loop.

Same nets, same init, same in-memory batches, same schedule (the seed's steady state, 5 critic iterations
per generator iteration), clamp after each critic step, RMSprop. Runs alternate (A, B, A, B, ...) so a
shared machine's load hits both alike (A B, then B A, ...). The seed saw 10.74 it/s (64px, batch 64) on its 2018 GPU.

    python benchmarks/wgan_speed.py --isize 64 --batch_size 64 --iterations 30 --repeats 3           # CPU
    python benchmarks/wgan_speed.py --device cuda --iterations 500 --repeats 3 --precision bf16-mixed  # GPU
    python benchmarks/wgan_speed.py --device cuda --precision bf16-mixed --channels_last --json out.json

--channels_last puts both loops' nets and batches in NHWC (model.to(memory_format=...) before the fit).
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import Batches, Clock, fresh_start, profiled, sync  # noqa: E402
from lightning_modules.wgan import WGAN  # noqa: E402

STEADY = {"d_iters": 5, "d_iters_long": 5, "long_until": 0, "long_every": 10**9, "sample_every": 10**9}


def batches(n: int, batch_size: int, isize: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.rand(batch_size, 3, isize, isize, generator=g) * 2 - 1 for _ in range(n)]


def lightning_run(data, args) -> float:
    torch.manual_seed(0)
    model = WGAN(isize=args.isize, ngf=args.width, ndf=args.width, **STEADY)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    clock = Clock(args.warmup)
    with tempfile.TemporaryDirectory(prefix="dl2-bench-") as root:  # the final gallery, thrown away
        trainer = L.Trainer(accelerator="gpu" if args.device == "cuda" else "cpu", devices=1, max_epochs=1,
                            default_root_dir=root, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, precision=args.precision,
                            callbacks=[clock])
        trainer.fit(model, train_dataloaders=Batches(data))
    return (len(data) - args.warmup) / clock.seconds


def plain_run(data, args) -> float:
    """The seed's loop in today's PyTorch, clamp moved after the step, no Lightning; its kernels are the system's
    (fp32 means of the critic's scores, the clamp as two foreach kernels), so the ratio is Lightning's cost alone."""
    torch.manual_seed(0)
    device = torch.device(args.device)
    model = WGAN(isize=args.isize, ngf=args.width, ndf=args.width, **STEADY).to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    netD, netG = model.critic, model.generator
    params_d = list(netD.parameters())
    opt_d, opt_g = torch.optim.RMSprop(netD.parameters(), 1e-4), torch.optim.RMSprop(netG.parameters(), 1e-4)
    dtype = torch.bfloat16 if args.precision == "bf16-mixed" else None
    i, start = 0, None
    while i < len(data):
        j = 0
        while j < 5 and i < len(data):
            if i == args.warmup:
                sync(device)
                start = time.perf_counter()
            real = data[i].to(device, non_blocking=True)
            j, i = j + 1, i + 1
            netD.requires_grad_(True)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                with torch.no_grad():
                    fake = netG(torch.randn(len(real), 100, 1, 1, device=device))
                loss_d = netD(real).float().mean() - netD(fake).float().mean()
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            with torch.no_grad():
                torch._foreach_clamp_min_(params_d, -0.01)
                torch._foreach_clamp_max_(params_d, 0.01)
        netD.requires_grad_(False)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss_g = netD(netG(torch.randn(len(real), 100, 1, 1, device=device))).float().mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
    sync(device)
    return (len(data) - args.warmup) / (time.perf_counter() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--isize", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--width", type=int, default=64, help="ngf = ndf; 1 with --batch_size 1 leaves little but "
                        "the host's work per step (kernel dispatch, Python), the regime of a small GAN on a fast GPU")
    parser.add_argument("--iterations", type=int, default=30, help="timed critic iterations per run")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="32-true", help="32-true or bf16-mixed")
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0 leaves torch's default")
    parser.add_argument("--channels_last", action="store_true", help="NHWC nets and batches in both loops")
    parser.add_argument("--json", default=None, help="also write the rates and CUDA peak memory to this file")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="after the timing, N critic iterations of each loop under torch.profiler (printed)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)  # on an overloaded CPU, 1 avoids OpenMP spinning between processes
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    data = [b.contiguous(memory_format=fmt) for b in batches(args.iterations + args.warmup, args.batch_size,
                                                             args.isize)]
    results, peak = {"lightning": [], "plain": []}, {}
    cuda = args.device.startswith("cuda")
    for r in range(args.repeats):
        order = (("lightning", lightning_run), ("plain", plain_run))
        for name, run in order if r % 2 == 0 else order[::-1]:  # A B B A A B ...: cancels a drifting load
            fresh_start(args.device)
            results[name].append(run(data, args))
            if cuda:
                peak[name] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
            print(f"repeat {r} {name}: {results[name][-1]:.3f} critic it/s", flush=True)
    if args.profile:
        short = argparse.Namespace(**{**vars(args), "iterations": args.profile})
        for name, run in (("lightning", lightning_run), ("plain", plain_run)):
            with profiled(f"wgan {name}, {args.profile + args.warmup} critic iterations", args.device):
                run(data[:args.warmup + args.profile], short)
    best = {k: max(v) for k, v in results.items()}
    median = {k: sorted(v)[len(v) // 2] for k, v in results.items()}
    print(f"{args.device} isize {args.isize} batch {args.batch_size} {args.precision} threads "
          f"{torch.get_num_threads()}: lightning {best['lightning']:.3f} it/s, plain {best['plain']:.3f} it/s "
          f"(best of {args.repeats}); ratio lightning/plain {best['lightning'] / best['plain']:.3f}; "
          f"medians {median['lightning']:.3f} / {median['plain']:.3f}")
    if args.json:
        precision = args.precision + ("+channels_last" if args.channels_last else "")
        row = {"measure": f"critic it/s, {args.isize}px, batch {args.batch_size}", "precision": precision,
               "ours": median["lightning"], "plain": median["plain"], "unit": "it/s",
               "peak_ours_gib": peak.get("lightning"), "peak_plain_gib": peak.get("plain"),
               "trials_ours": results["lightning"], "trials_plain": results["plain"]}
        Path(args.json).write_text(json.dumps({"script": "wgan_speed", "device": args.device,
                                               "settings": vars(args), "rows": [row]}, indent=2))


if __name__ == "__main__":
    main()
