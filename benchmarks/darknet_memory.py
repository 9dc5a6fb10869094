"""Peak memory of the Darknet residual variants: plain out-of-place, checkpointed, and the seed's in-place.

    python benchmarks/darknet_memory.py [--batch 128] [--device cpu|cuda]

Activation memory is the bytes autograd saves for backward (counted with saved_tensors_hooks; identical
on any device); on CUDA the script also reports torch.cuda.max_memory_allocated for forward + backward,
on CPU the peak resident set of a fresh process doing the same.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lightning_modules.nets.darknet import Darknet, conv_layer  # noqa: E402


class SeedResLayer(nn.Module):
    """The seed's residual, `x.add_(conv2(conv1(x)))`, for the record: autograd rejects it."""

    def __init__(self, ni, bottleneck=0.5, checkpoint=False):
        super().__init__()
        self.conv1, self.conv2 = conv_layer(ni, int(ni * bottleneck), ks=1), conv_layer(int(ni * bottleneck), ni)

    def forward(self, x):
        return x.add_(self.conv2(self.conv1(x)))


def build(variant: str) -> nn.Module:
    if variant == "seed-inplace":
        import lightning_modules.nets.darknet as darknet
        original, darknet.ResLayer = darknet.ResLayer, SeedResLayer
        try:
            return Darknet()
        finally:
            darknet.ResLayer = original
    return Darknet(checkpoint=variant == "checkpoint")


def measure(variant: str, batch: int, device: str) -> dict:
    torch.manual_seed(0)
    net = build(variant).to(device)
    x = torch.randn(batch, 3, 32, 32, device=device)
    saved = 0

    def pack(t):
        nonlocal saved
        saved += t.numel() * t.element_size()
        return t

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    if variant == "seed-inplace":  # saved-tensor hooks skip autograd's version check, so run it bare
        try:
            net(x).logsumexp(1).mean().backward()
        except RuntimeError as error:
            return {"variant": variant, "error": str(error).split("\n")[0][:150]}
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = net(x).logsumexp(1).mean()
        loss.backward()
    except RuntimeError as error:
        return {"variant": variant, "error": str(error).split("\n")[0][:120]}
    result = {"variant": variant, "saved_activations_MB": round(saved / 2**20, 1)}
    if device == "cuda":
        result["cuda_peak_MB"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    else:
        import resource
        result["process_peak_rss_MB"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:  # child process: one variant, so the peak RSS is its own
        print(json.dumps(measure(args.one, args.batch, args.device)))
        return
    print(f"Darknet([1, 2, 4, 6, 3]), batch {args.batch} of 32x32, forward + backward on {args.device}")
    for variant in ("plain", "checkpoint", "seed-inplace"):
        out = subprocess.run([sys.executable, __file__, "--one", variant, "--batch", str(args.batch),
                              "--device", args.device], capture_output=True, text=True, check=True).stdout
        print(json.loads(out.strip().splitlines()[-1]))


if __name__ == "__main__":
    main()
