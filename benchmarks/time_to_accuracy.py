"""Time to accuracy on CIFAR-10: airbench94 against our Darknet config, alternating, on the same data and GPU.

    python benchmarks/time_to_accuracy.py [--seeds 5] [--config configs/darknet_fast.yaml] [--out DIR]
                                          [--data-dir DIR] [--data ARCHIVE_OR_FOLDER] [--no-airbench] [--smoke]
                                          [--variant NAME=OVERRIDES]
                                          [-- our overrides...]

One invocation: (1) prepares CIFAR-10 from the shared JPEG archive (../shared/data/cifar10-jpeg.tar.gz, or
$DL2_SHARED_DATA; `--data`: another archive of its layout, or a folder of the official python batches such as the
data/cifar10 train.py downloads) into our format (the official python batches, which CIFAR10DataModule reads) and
airbench's (`cifar10/train.pt` and `test.pt`: dicts of uint8 NHWC `images`, int64 `labels` and `classes`, which
airbench's CifarLoader loads instead of downloading); (2) runs one untimed-for-the-means warm-up of each side (cuDNN
autotuning, torch.compile: reported as `first_run_seconds`), then airbench94 and our config alternately for
each seed; (3) writes `time_to_accuracy.json` and `time_to_accuracy.md` in --out and prints the table.

Wall time of a run = training plus test evaluation (with TTA where the recipe has it), the device synchronised
before and after. Not in it, for both sides: loading the images into memory (airbench: building its loaders;
ours: the DataModule's setup), making the net (airbench: make_net94, as its own timing; ours: LightningCLI, with
parsing the config) and collecting the earlier runs' garbage. airbench94 is `airbench.train94`
(pip airbench 0.1.8, eager) followed by `airbench.evaluate(..., tta_level=2)`, exactly its published recipe.

`--variant "lr0.8=--model.init_args.lr 0.8"` (repeatable) adds a side `ours:lr0.8`, our config with those
overrides on top, run in the same alternation: one invocation (one device call) sweeps a few recipes, and the
compiled graphs of one are reused by the others where the net is the same.

`--smoke` runs our side only, on the CPU, on 20 training and 10 test images per class with a tiny net, to check
the harness end to end (airbench needs CUDA: the smoke mode skips it and says so).
"""

import argparse
import gc
import importlib.util
import io
import json
import os
import pickle
import shlex
import statistics
import sys
import tarfile
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.common import SHARED_DATA  # noqa: E402

SMOKE_OVERRIDES = ["--trainer.accelerator", "cpu", "--trainer.precision", "32-true", "--trainer.max_epochs", "1",
                   "--model.init_args.num_blocks", "[1, 0, 0]", "--model.init_args.widths", "[8, 16, 16]",
                   "--model.init_args.compile", "false", "--model.init_args.whiten_images", "64",
                   "--data.init_args.batch_size", "50", "--data.init_args.eval_batch_size", "50"]


# -- data ------------------------------------------------------------------------------------------------------

def read_archive(archive: Path, per_class: dict | None = None) -> dict:
    """{split: (uint8 NCHW images, labels, classes)} from the fast.ai-layout JPEG archive, files in name order;
    `per_class` ({split: count}) keeps only the first count images of each class."""
    from torchvision.io import ImageReadMode, decode_image
    found = {"train": {}, "test": {}}
    with tarfile.open(archive) as tar:
        for member in tar:
            parts = Path(member.name).parts  # cifar10/<split>/<class>/<file>.jpg
            if not member.isfile() or len(parts) != 4 or parts[1] not in found:
                continue
            found[parts[1]].setdefault(parts[2], []).append((parts[3], tar.extractfile(member).read()))
    out = {}
    for split, by_class in found.items():
        classes = sorted(by_class)
        images, labels = [], []
        for label, name in enumerate(classes):
            files = sorted(by_class[name])[:per_class[split] if per_class else None]
            images += [decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
                       for _, data in files]
            labels += [label] * len(files)
        out[split] = (torch.stack(images), torch.tensor(labels), classes)
    return out


def read_python_batches(folder: Path, per_class: dict | None = None) -> dict:
    """{split: (uint8 NCHW images, labels, classes)} from the official python batches (the original CIFAR-10, which
    train.py downloads into data/cifar10); `per_class` as read_archive's, the first images of each class."""
    from datamodules.cifar10 import find_batches, load_batches
    batches = find_batches(folder)
    if batches is None:
        raise SystemExit(f"--data {folder}: no CIFAR-10 python batches (data_batch_1 ... test_batch) there or in its "
                         f"cifar-10-batches-py; `python train.py --system darknet` downloads them into data/cifar10")
    out = {}
    for split in ("train", "test"):
        images, labels, classes = load_batches(batches, split)
        if per_class:
            keep = torch.cat([(labels == k).nonzero()[:per_class[split], 0] for k in range(len(classes))]).sort()[0]
            images, labels = images[keep], labels[keep]
        out[split] = (images, labels, classes)
    return out


def write_batches(folder: Path, data: dict) -> None:
    """The official python layout: data_batch_1..5 (the training images in five slices), test_batch, batches.meta."""
    folder.mkdir(parents=True, exist_ok=True)
    images, labels, classes = data["train"]
    slices = np.array_split(np.arange(len(labels)), 5)
    names = [(f"data_batch_{i + 1}", data["train"], s) for i, s in enumerate(slices)]
    names.append(("test_batch", data["test"], np.arange(len(data["test"][1]))))
    for name, (images, labels, _), index in names:
        rows = images[index].reshape(len(index), -1).numpy()  # (N, 3072): R, G, B planes
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": rows, b"labels": labels[index].tolist()}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [c.encode() for c in classes]}, f)


def write_airbench(folder: Path, data: dict) -> None:
    """airbench's cache files: train.pt / test.pt with uint8 (N, 32, 32, 3) images, labels, classes."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, (images, labels, classes) in data.items():
        buffer = io.BytesIO()
        torch.save({"images": images.permute(0, 2, 3, 1).contiguous(), "labels": labels, "classes": classes}, buffer)
        (folder / f"{split}.pt").write_bytes(buffer.getvalue())


def prepare(data_dir: Path, smoke: bool, source: Path | None = None) -> tuple[Path, Path]:
    """Ours (python batches) and airbench's (its working folder holding cifar10/*.pt), made once per source: the
    shared JPEG archive (None), another archive of its layout, or a folder of the official python batches."""
    if source is not None:  # a cache of its own: a race on the original CIFAR-10 must not read the JPEG copy's
        data_dir = data_dir / f"from-{source.resolve().name}"
    ours, airbench = data_dir / "cifar-10-batches-py", data_dir / "airbench"
    if not ((ours / "test_batch").is_file() and (airbench / "cifar10" / "test.pt").is_file()):
        archive = source or SHARED_DATA / "cifar10-jpeg.tar.gz"
        if not archive.exists():
            raise SystemExit(f"time_to_accuracy needs the CIFAR-10 JPEG archive at {archive} (or set DL2_SHARED_DATA), "
                             f"or --data data/cifar10 for the official python batches that train.py downloads")
        start = time.perf_counter()
        per_class = {"train": 20, "test": 10} if smoke else None
        data = read_python_batches(archive, per_class) if archive.is_dir() else read_archive(archive, per_class)
        write_batches(ours, data)
        write_airbench(airbench / "cifar10", data)
        print(f"prepared {len(data['train'][1])} training and {len(data['test'][1])} test images in {data_dir} "
              f"({time.perf_counter() - start:.1f} s)")
    return ours, airbench


# -- the two sides -------------------------------------------------------------------------------------------------

def synchronize():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


@contextmanager
def working_directory(path: Path):
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def run_airbench(folder: Path, seed: int) -> dict:
    """airbench94's published recipe; its train() reads the test set from ./cifar10, hence the folder change.

    Its net is made and its test set loaded before the clock, as airbench's own timing leaves them out and as ours
    (the model made by LightningCLI, the test images by setup): train() builds both itself, the net (the same draws
    from the seeded generator, made here first) and a test loader read from disk again that it uses only when
    verbose, so the net comes in through make_net and the loader built here through its CifarLoader."""
    from unittest import mock

    import airbench
    from airbench import utils
    from airbench.lib_airbench94 import hyp
    with working_directory(folder):
        torch.manual_seed(seed)
        train_loader = airbench.CifarLoader("cifar10", train=True, batch_size=hyp["opt"]["batch_size"],
                                            aug=hyp["aug"], altflip=True)
        test_loader = airbench.CifarLoader("cifar10", train=False, batch_size=2000)
        net = airbench.make_net94()
        gc.collect()  # the earlier runs' garbage, not in this run's time
        synchronize()
        start = time.perf_counter()
        with mock.patch.object(utils, "CifarLoader", lambda *args, **kwargs: test_loader):
            model = airbench.train94(train_loader, make_net=lambda: net, verbose=False)
        accuracy = airbench.evaluate(model, test_loader, tta_level=hyp["net"]["tta_level"])
        synchronize()
        return {"accuracy": accuracy, "seconds": time.perf_counter() - start}


def recompile_limit_name() -> str:
    """Dynamo's setting of the graphs kept per code object: recompile_limit, cache_size_limit before torch 2.6."""
    import torch._dynamo
    return "recompile_limit" if hasattr(torch._dynamo.config, "recompile_limit") else "cache_size_limit"


def allow_recompiles(limit: int = 64) -> None:
    """Room for every variant's graphs, each with static shapes: torch.compile of `net(x)` keeps one graph per net
    configuration and mode (train, eval) on the same code object; past dynamo's recompile_limit (8) it silently runs
    the rest eager, and after a second batch size (the eval batch) its automatic dynamic shapes would compile every
    later net with a symbolic batch. Either would slow the later variants of a sweep for no reason of theirs."""
    import torch._dynamo
    config = torch._dynamo.config
    name = recompile_limit_name()
    setattr(config, name, max(getattr(config, name), limit))
    config.automatic_dynamic_shapes = False  # the batch sizes are fixed: training 1024, evaluation 2500 x views


def run_ours(config: Path, data_dir: Path, seed: int, overrides: list[str]) -> dict:
    """Our config through LightningCLI (as train.py builds it), then fit and test timed."""
    from lightning.pytorch.cli import LightningCLI
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")  # ours are the script's own
    start = time.perf_counter()
    args = ["--config", str(config), "--seed_everything", str(seed), "--data.init_args.data_dir", str(data_dir),
            "--data.init_args.seed", str(seed), *overrides]
    cli = LightningCLI(args=args, run=False, subclass_mode_model=True, subclass_mode_data=True,
                       save_config_callback=None, auto_configure_optimizers=False)
    cli.datamodule.prepare_data()
    cli.datamodule.setup("fit")  # the images into memory, outside the timing (as airbench's train loader)
    setup_seconds = time.perf_counter() - start
    gc.collect()  # the earlier runs' garbage (their Trainers sit in reference cycles), not in this run's time
    synchronize()
    start = time.perf_counter()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    synchronize()
    fit_seconds = time.perf_counter() - start  # the split, for the time per step; the sync costs microseconds
    accuracy = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)[0]["test/acc"]
    synchronize()
    return {"accuracy": accuracy, "seconds": time.perf_counter() - start, "setup_seconds": setup_seconds,
            "fit_seconds": fit_seconds, "epochs": cli.trainer.current_epoch, "steps": cli.trainer.global_step}


# -- report ------------------------------------------------------------------------------------------------------

def summarise(runs: list[dict]) -> dict:
    def stats(values):
        return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                "min": min(values), "max": max(values)}
    return {"n": len(runs), "accuracy": stats([r["accuracy"] for r in runs]),
            "seconds": stats([r["seconds"] for r in runs])}


def compare(summary: dict) -> dict:
    """Each of our sides' mean wall time over airbench94's, and our main config's accuracy difference."""
    theirs = summary["airbench94"]
    ratios = {name: s["seconds"]["mean"] / theirs["seconds"]["mean"] for name, s in summary.items()
              if name != "airbench94"}
    return {"ratios": ratios, "ratio": ratios["ours"],
            "accuracy_difference": summary["ours"]["accuracy"]["mean"] - theirs["accuracy"]["mean"]}


def markdown(result: dict) -> str:
    lines = [f"Device: {result['device']}; {result['date']}; `{result['command']}`", "",
             "| system | runs | test accuracy (mean ± std) | wall time s (mean ± std) | first run s "
             "| time / airbench94 |",
             "|---|---|---|---|---|---|"]
    for name, summary in result["summary"].items():
        acc, sec = summary["accuracy"], summary["seconds"]
        lines.append(f"| {name} | {summary['n']} | {100 * acc['mean']:.2f}% ± {100 * acc['std']:.2f} | "
                     f"{sec['mean']:.2f} ± {sec['std']:.2f} | {result['first_run_seconds'].get(name, 0):.2f} | "
                     f"{format(result['ratios'][name], '.2f') if name in result.get('ratios', {}) else '-'} |")
    if "ratio" in result:
        lines += ["", f"Time ratio ours / airbench94: **{result['ratio']:.2f}** (accuracy difference "
                      f"{100 * result['accuracy_difference']:+.2f} points)."]
    if result.get("note"):
        lines += ["", result["note"]]
    return "\n".join(lines) + "\n"


def report(args, runs: dict, first: dict, overrides: list, note: str, device: str, command: str,
           with_airbench: bool, failed: dict | None = None) -> dict:
    """The results so far: time_to_accuracy.json and .md in --out; sides without a finished run left out, failed
    variants listed in the note."""
    done = {name: r for name, r in runs.items() if r}
    note = " ".join([note, *(f"{name} failed ({why})." for name, why in (failed or {}).items())]).strip()
    result = {"device": device, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "command": command,
              "config": str(args.config), "overrides": overrides, "first_run_seconds": first, "runs": runs,
              "summary": {name: summarise(r) for name, r in done.items()}, "note": note, "failed": failed or {}}
    if with_airbench and "airbench94" in done and "ours" in done:
        result.update(compare(result["summary"]))
    (args.out / "time_to_accuracy.json").write_text(json.dumps(result, indent=2))
    result["table"] = markdown(result)
    (args.out / "time_to_accuracy.md").write_text(result["table"])
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "darknet_fast.yaml")
    parser.add_argument("--data-dir", type=Path, default=ROOT / ".cache" / "time_to_accuracy")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "time_to_accuracy")
    parser.add_argument("--no-airbench", action="store_true", help="run our config only")
    parser.add_argument("--smoke", action="store_true", help="ours only, CPU, tiny subset and net")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=OVERRIDES",
                        help="another side: our config with these overrides on top (repeatable)")
    parser.add_argument("--variant-seeds", type=int, default=None, metavar="K",
                        help="the variants run only the first K seeds (default: all); airbench94 and our config all")
    parser.add_argument("--data", type=Path, default=None, metavar="ARCHIVE_OR_FOLDER",
                        help="the CIFAR-10 to race on: a JPEG archive of the fast.ai layout (default: the shared "
                             "cifar10-jpeg.tar.gz) or a folder of the official python batches (data/cifar10, which "
                             "train.py downloads: the original CIFAR-10, on which airbench94 publishes 94%%)")
    parser.add_argument("overrides", nargs="*", help="LightningCLI overrides for our config (after --)")
    args = parser.parse_args(argv)
    with_airbench = not (args.smoke or args.no_airbench)
    if with_airbench and importlib.util.find_spec("airbench") is None:  # before minutes of data preparation
        raise SystemExit("airbench94's side needs its package: pip install airbench==0.1.8 (or --no-airbench to run "
                         "our config alone)")
    data_dir = args.data_dir / "smoke" if args.smoke else args.data_dir
    ours_data, airbench_dir = prepare(data_dir, args.smoke, args.data)
    overrides = (SMOKE_OVERRIDES if args.smoke else []) + args.overrides
    note = ""
    if args.smoke:
        note = "Smoke mode: airbench94 skipped (it needs CUDA); our side on the CPU on a 200-image subset."
    elif with_airbench and not torch.cuda.is_available():
        raise SystemExit("airbench94 needs a CUDA GPU; use --no-airbench or --smoke on a machine without one")
    print(note or f"airbench94 and {args.config.name} alternately, {args.seeds} seeds")

    allow_recompiles()
    sides = {"ours": lambda seed: run_ours(args.config, ours_data.parent, seed, overrides)}
    for variant in args.variant:
        name, _, extra = variant.partition("=")
        if not name or not extra:
            raise SystemExit(f"--variant needs NAME=OVERRIDES, e.g. 'lr0.8=--model.init_args.lr 0.8' (got {variant!r})")
        more = overrides + shlex.split(extra)
        sides[f"ours:{name}"] = lambda seed, more=more: run_ours(args.config, ours_data.parent, seed, more)
    if with_airbench:
        sides = {"airbench94": lambda seed: run_airbench(airbench_dir, seed), **sides}
    args.out.mkdir(parents=True, exist_ok=True)
    first, failed = {}, {}

    def attempt(name, seed):
        """A run; a variant that fails is reported and dropped, so one bad variant does not end a sweep's device call
        (airbench94 and our config still stop it)."""
        try:
            return sides[name](seed)
        except (Exception, SystemExit) as error:  # LightningCLI turns a bad override into SystemExit
            if not name.startswith("ours:"):
                raise
            failed[name] = f"seed {seed}: {type(error).__name__}: {error}"
            print(f"{name:10s} FAILED, dropped: {failed[name]}", flush=True)
            del sides[name]
            return None

    for name in list(sides):  # warm-up: compilation, autotuning
        outcome = attempt(name, 10_000)
        if outcome:
            first[name] = outcome["seconds"]
            print(f"{name:10s} first run (warm-up): {first[name]:.2f} s", flush=True)
    runs = {name: [] for name in sides}
    command = " ".join(["python benchmarks/time_to_accuracy.py", *(argv if argv is not None else sys.argv[1:])])
    device = torch.cuda.get_device_name() if torch.cuda.is_available() and not args.smoke else "cpu"
    for seed in range(args.seeds):
        order = list(sides) if seed % 2 == 0 else list(reversed(sides))  # alternate who goes first
        for name in order:
            if name.startswith("ours:") and args.variant_seeds is not None and seed >= args.variant_seeds:
                continue  # a short device call: the main comparison gets every seed, the variants a look
            outcome = attempt(name, seed)
            if outcome is None:
                continue
            runs[name].append({"seed": seed, **outcome})
            fit = f" (fit {outcome['fit_seconds']:.2f} s, {outcome['steps']} steps)" if "fit_seconds" in outcome else ""
            print(f"{name:10s} seed {seed}: {100 * outcome['accuracy']:.2f}% in {outcome['seconds']:.2f} s{fit}",
                  flush=True)
            # written after every run, so a run stopped by a time limit still reports the seeds it finished
            report(args, runs, first, overrides, note, device, command, with_airbench, failed)
    result = report(args, runs, first, overrides, note, device, command, with_airbench, failed)
    print(result["table"])
    return result


if __name__ == "__main__":
    main()
