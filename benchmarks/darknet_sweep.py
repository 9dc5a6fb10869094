"""The prepared GPU sweep of issue 13: airbench94 against configs/darknet_fast.yaml and a few variants, one call.

    python3 benchmarks/darknet_sweep.py [--seeds 3] [--variant-seeds K] [--only NAME,NAME] [--list] [--smoke]

On the lent GPU machine (device tool: carry [".carry", ".whl"], as prepared by `gpu_acceptance.py --prepare`):
installs the carried wheels into /tmp when jsonargparse or airbench does not import, takes the CIFAR-10 JPEG archive
from .carry/ (or $DL2_SHARED_DATA), then runs benchmarks/time_to_accuracy.py once with every variant below as a
`--variant`, so airbench94, our config and the variants alternate seed by seed in one process (one compilation per
net, shared by the variants that keep it). Results: time_to_accuracy.json and .md in $OUT (or --out), written after
every run, so a call stopped by its time limit still reports the seeds it finished.

`--list` prints the variants, why each is there, and the estimated device time; `--smoke` runs the same variants
on the CPU with time_to_accuracy's tiny smoke setup (tests/test_time_to_accuracy.py), so the overrides cannot rot.
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.fetch_wheels import JSONARGPARSE_MODULES  # noqa: E402

M = "--model.init_args."
# name: (overrides on top of the config, why, whether the net changes: a new compilation)
VARIANTS = {
    "host": ("--data.init_args.on_device false", "batches cut, flipped and copied on the host (the first config's "
                                                  "data path): what on_device saves", False),
    "maxpool": (f"{M}downsample maxpool", "BatchNorm and LeakyReLU before the pooling (the first config's order): "
                                          "the cost of normalising 4x the values", True),
    "bn0.01": (f"{M}bn_momentum 0.01", "the seed's BatchNorm momentum (the first config's): its running statistics "
                                       "lagging the weights, at full scale (the CPU probe: -20 points)", True),
    "look": ("--trainer.callbacks+=callbacks.Lookahead", "airbench's Lookahead (every 5 steps, decay 0.95^5 (t/T)^3)",
             False),
    "ep8": ("--trainer.max_steps 384", "8 epochs (384 steps): shorter, if the accuracy allows", False),
    "ep12": ("--trainer.max_epochs 12 --trainer.max_steps 576", "12 epochs (576 steps)", False),
    "lr1": (f"{M}lr 1.0", "peak lr 1.0 instead of airbench's 1.5", False),
    "lr2.2": (f"{M}lr 2.2", "peak lr 2.2", False),
}
# device seconds on the H200 (2026-11-28 figures: airbench94 6.9 s first, 2.25 s a run; our first config 38.8 s first,
# 6.15 s a run, of which ~33 s compilation), for the estimate
START, AIRBENCH_FIRST, AIRBENCH_RUN, COMPILE, OURS_RUN = 45, 6.9, 2.25, 33.0, 6.15


def estimate(names: list[str], seeds: int, variant_seeds: int | None = None) -> float:
    """Seconds of device time: start-up and data, airbench94 and ours (a warm-up and `seeds` runs each), variants
    (a warm-up and `variant_seeds` runs each, default `seeds`)."""
    total = START + AIRBENCH_FIRST + seeds * AIRBENCH_RUN + COMPILE + (1 + seeds) * OURS_RUN
    runs = 1 + (seeds if variant_seeds is None else min(seeds, variant_seeds))
    for name in names:
        scale = {"ep8": 0.8, "ep12": 1.2}.get(name, 1.0)
        total += (COMPILE if VARIANTS[name][2] else 0) + runs * OURS_RUN * scale
    return total


def with_wheels(wheels: Path, site: Path, argv: list[str], modules: str) -> None:
    """When one of `modules` does not import: the carried wheels into site/ (as gpu_acceptance.py), then this
    script again with site/ on PYTHONPATH, so that every import (Lightning's check of jsonargparse included) sees
    them."""
    probe = subprocess.run([sys.executable, "-c", f"import {modules}"], capture_output=True)
    if probe.returncode == 0 or not wheels.is_dir() or os.environ.get("DARKNET_SWEEP_SITE"):
        return
    from benchmarks.fetch_wheels import install_offline
    result = install_offline(sorted(wheels.glob("*.whl")), site)
    if result.returncode:  # pip's reason (wheels for another Python, two versions of one), not a bare exit status
        sys.exit(f"darknet_sweep.py: the carried wheels in {wheels} did not install:\n{result.stderr.strip()}")
    path = os.pathsep.join(p for p in (str(site), str(ROOT), os.environ.get("PYTHONPATH")) if p)
    os.execve(sys.executable, [sys.executable, __file__, *argv],
              {**os.environ, "PYTHONPATH": path, "DARKNET_SWEEP_SITE": str(site)})


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--variant-seeds", type=int, default=None, metavar="K",
                        help="the variants run the first K seeds only; airbench94 and the config all --seeds")
    parser.add_argument("--only", default="", help="comma-separated variant names (default: all)")
    parser.add_argument("--list", action="store_true", help="print the variants and the estimate, run nothing")
    parser.add_argument("--smoke", action="store_true", help="the same variants, tiny, on the CPU")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or ROOT / "runs" / "darknet_sweep"))
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/darknet_sweep"))
    args = parser.parse_args(argv)
    if not args.list:  # the smoke skips airbench (it needs CUDA), so it needs only jsonargparse of the wheels
        with_wheels(ROOT / ".whl", Path("/tmp/darknet_sweep_site"), sys.argv[1:] if argv is None else argv,
                    JSONARGPARSE_MODULES + ("" if args.smoke else ", airbench"))
    names = [n for n in args.only.split(",") if n] or list(VARIANTS)
    unknown = set(names) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"unknown variants {sorted(unknown)}; known: {', '.join(VARIANTS)}")
    each = args.seeds if args.variant_seeds is None else min(args.seeds, args.variant_seeds)
    print(f"airbench94 and our config {args.seeds} seeds each; variants {each} seeds each, alternating with them:")
    for name in names:
        overrides, why, new_net = VARIANTS[name]
        print(f"  ours:{name:9s} {why}{' [compiles its own net]' if new_net else ''}\n      {overrides}")
    print(f"estimated device time: {estimate(names, args.seeds, args.variant_seeds) / 60:.1f} min "
          f"(H200 figures of 2026-11-28)")
    if args.list:
        return None
    carry = ROOT / ".carry"  # the smoke too: it rehearses the device call, which has no ../shared/data
    if (carry / "cifar10-jpeg.tar.gz").is_file() and "DL2_SHARED_DATA" not in os.environ:
        os.environ["DL2_SHARED_DATA"] = str(carry)
    from benchmarks import common, time_to_accuracy
    common.SHARED_DATA = time_to_accuracy.SHARED_DATA = Path(os.environ.get("DL2_SHARED_DATA", common.SHARED_DATA))
    run_args = ["--seeds", str(args.seeds), "--data-dir", str(args.data_dir), "--out", str(args.out)]
    run_args += [] if args.variant_seeds is None else ["--variant-seeds", str(args.variant_seeds)]
    run_args += ["--smoke"] if args.smoke else []
    run_args += [f"--variant={name}={VARIANTS[name][0]}" for name in names]
    return time_to_accuracy.main(run_args)


if __name__ == "__main__":
    main()
