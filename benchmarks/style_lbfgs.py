"""Seconds for N L-BFGS iterations: StyleTransfer under Lightning (A) against the seed's plain PyTorch loop (B).

Both start from the same seeded VGG16 and noise and run the same algorithm (BatchLBFGS makes torch.optim.LBFGS's
iterates for one image): their losses agree over the first iterations, then rounding differences, grown by L-BFGS
without line search, take the trajectories apart. With --batch > 1 the plain loop's torch.optim.LBFGS couples the
images (other iterates, the same work per iteration). Runs alternate A, B, A, B... on a shared machine. Each
loop first runs --warmup iterations untimed: on a GPU the process's first run loads cuDNN, cuBLAS and their
kernels, which A, always first, paid alone before.

    python benchmarks/style_lbfgs.py                                   # CPU: 100 iterations at 288x288
    python benchmarks/style_lbfgs.py --order A; python benchmarks/style_lbfgs.py --order B   # one run per call
    python benchmarks/style_lbfgs.py --device cuda --size 512 --iters 1000 --batch 1
    python benchmarks/style_lbfgs.py --device cuda --size 512 --iters 1000 --batch 16
    ... --json out.json      # also evaluations/s (= iterations/s, no line search) and CUDA peak memory
"""

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import fresh_start, profiled  # noqa: E402
from datamodules.style import DEFAULT_CONTENT, StyleTransferDataModule  # noqa: E402
from lightning_modules.nets.vgg import block_ends, load_vgg, normalize_imagenet  # noqa: E402
from lightning_modules.style_transfer import StyleTransfer, median_filtered_noise  # noqa: E402


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def lightning_run(args, data) -> tuple[float, float]:
    torch.manual_seed(0)
    model = StyleTransfer(arch=args.arch, vgg_weights=args.vgg_weights, show_iter=0)
    with tempfile.TemporaryDirectory(prefix="dl2-bench-") as root:  # its PNGs, out of the checkout and thrown away
        trainer = L.Trainer(max_steps=args.iters, accelerator="gpu" if args.device == "cuda" else "cpu", devices=1,
                            logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, log_every_n_steps=args.iters, default_root_dir=root)
        sync(args.device)
        start = time.perf_counter()
        trainer.fit(model, datamodule=data)
        sync(args.device)
    return time.perf_counter() - start, float(trainer.callback_metrics["train/loss"])


def plain_run(args, data) -> tuple[float, float]:
    """The seed's loop: forward hooks, comb_loss, optim.LBFGS(lr=1) stepped while n_iter < iters (closure calls)."""
    torch.manual_seed(0)
    vgg = load_vgg(args.arch, args.vgg_weights).to(args.device)
    ends = list(block_ends(vgg).values())
    saved = {}
    hooks = [vgg[i].register_forward_hook(lambda m, i, o, k=k: saved.__setitem__(k, o)) for k, i in enumerate(ends)]

    def gram(x):  # per image, as the seed's gram for its batch of one: x x^T / numel * 1e6
        n, c, h, w = x.shape
        flat = x.reshape(n, c, -1)
        return flat @ flat.transpose(1, 2) / (c * h * w) * 1e6

    def features(x):
        vgg(normalize_imagenet(x))
        return [saved[k] for k in range(len(ends))]

    sync(args.device)
    start = time.perf_counter()
    content, style = data.content.to(args.device), data.style.to(args.device)
    image = median_filtered_noise(content.shape).to(args.device).requires_grad_()
    with torch.no_grad():
        target_content = features(content)[3].clone()
        target_grams = [gram(s) for s in features(style)]
    optimizer = torch.optim.LBFGS([image], lr=1.0, max_iter=math.gcd(20, args.iters))  # the seed's 20 per step
    n_iter, last = 0, None

    def step():
        nonlocal n_iter, last
        optimizer.zero_grad()
        outs = features(image)
        loss = sum(F.mse_loss(gram(o), t.expand(len(o), -1, -1)) for o, t in zip(outs, target_grams, strict=True))
        loss = loss + F.mse_loss(outs[3], target_content) * 1e6
        loss.backward()
        n_iter += 1
        last = loss.detach()
        return loss

    while n_iter < args.iters:
        optimizer.step(step)
    sync(args.device)
    seconds = time.perf_counter() - start
    for hook in hooks:
        hook.remove()
    return seconds, float(last)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--size", type=int, default=288)
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--batch", type=int, default=1, help="copies of the content image stylized at once")
    parser.add_argument("--pairs", type=int, default=1, help="interleaved (A, B) pairs")
    parser.add_argument("--order", default="AB", choices=["AB", "BA", "A", "B"],
                        help="runs in each pair; A or B alone lets a slow machine alternate whole invocations")
    parser.add_argument("--arch", default="vgg16_bn", choices=["vgg16", "vgg16_bn"])
    parser.add_argument("--vgg_weights", default="random", help="speed does not depend on the weights")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--json", default=None, help="also write evaluations/s and CUDA peak memory to this file")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="after the timing, N iterations of each loop under torch.profiler (printed)")
    parser.add_argument("--warmup", type=int, default=2, metavar="N",
                        help="first, untimed: a run of N iterations of each loop (0: none)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = StyleTransferDataModule(content=[str(DEFAULT_CONTENT)] * args.batch, size=args.size)
    data.setup("fit")
    runs = {"A": lightning_run, "B": plain_run}
    if args.warmup:  # the first run in a process loads cuDNN, cuBLAS and their kernels: untimed, for both loops
        short = argparse.Namespace(**{**vars(args), "iters": args.warmup})
        for name in dict.fromkeys(args.order):
            seconds, _ = runs[name](short, data)
            print(f"warm-up {name}: {seconds:.1f} s for {args.warmup} iterations (not timed)", flush=True)
    times, peak = {"A": [], "B": []}, {}
    for pair in range(args.pairs):
        for name in args.order:
            fresh_start(args.device)
            seconds, loss = runs[name](args, data)
            if args.device == "cuda":
                peak[name] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
            times[name].append(seconds)
            print(f"pair {pair} {name} ({'Lightning' if name == 'A' else 'plain'}): {seconds:.1f} s, "
                  f"{seconds / args.iters:.3f} s/iteration, final loss {loss:.6g}", flush=True)
    if args.profile:
        short = argparse.Namespace(**{**vars(args), "iters": args.profile})
        for name in args.order:
            with profiled(f"style {'Lightning' if name == 'A' else 'plain'}, {args.profile} iterations", args.device):
                runs[name](short, data)
    if len(args.order) < 2:
        return
    a, b = sum(times["A"]) / len(times["A"]), sum(times["B"]) / len(times["B"])
    print(f"mean: Lightning {a:.1f} s, plain {b:.1f} s, ratio Lightning/plain {a / b:.3f} "
          f"({args.iters} iterations, {args.batch}x{args.size}x{args.size}, {args.arch}, {args.device}, "
          f"{torch.get_num_threads()} threads)")
    if args.json:
        row = {"measure": f"L-BFGS evaluations/s, {args.size}px, {args.batch} image{'s' * (args.batch > 1)}",
               "precision": "32-true", "ours": args.iters / a, "plain": args.iters / b, "unit": "evaluations/s",
               "per_image_ours": args.batch * args.iters / a, "per_image_plain": args.batch * args.iters / b,
               "peak_ours_gib": peak.get("A"), "peak_plain_gib": peak.get("B"),
               "trials_ours": times["A"], "trials_plain": times["B"]}
        Path(args.json).write_text(json.dumps({"script": "style_lbfgs", "device": args.device,
                                               "settings": vars(args), "rows": [row]}, indent=2))


if __name__ == "__main__":
    main()
