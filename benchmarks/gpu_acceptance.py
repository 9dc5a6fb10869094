"""GPU acceptance: every system through the real CLI on one GPU, Lightning against plain loops, Darknet accuracy.

One command for a lent GPU machine (no internet; Python 3.12 with torch, torchvision, lightning, torchmetrics):

    python benchmarks/gpu_acceptance.py --prepare     # here, once: .carry/ (data) and .whl/ (wheels), sizes checked
    python3 benchmarks/gpu_acceptance.py --only speed,accuracy --budget 540 --wandb off   # there: carry
                        # [".carry", ".whl"]; all parts take ~12.5 min on an H200, more than a call: choose with --only
    python3 benchmarks/gpu_acceptance.py --only wgan,cyclegan-speed    # a rerun of what failed
    python benchmarks/gpu_acceptance.py --smoke       # the same orchestration on the CPU, tiny (tests run it)

Parts, in order (`--only` takes part names, or a system or a kind: `--only wgan`, `--only speed`):
- `<system>-cli` for darknet, wgan, cyclegan, style: `python train.py --system NAME` with short overrides under the
  config's precision, bf16-mixed, 16-mixed (darknet, wgan) and channels_last where the model has it; each run must
  exit 0 and write results.json, last.ckpt and images, then `--ckpt_path last` must carry on to twice the steps in
  the same run folder. W&B logs offline where wandb imports. The four systems run as parallel lanes.
- `<system>-speed`: the benchmark scripts with `--device cuda --json`, one after another (the GPU to itself).
- `darknet-accuracy`: configs/darknet.yaml as shipped (30 epochs, bf16-mixed unless --accuracy_precision) on the
  real CIFAR-10, then the test set with flip TTA when the model offers `tta`.
Writes gpu_acceptance.json, gpu_acceptance.md (the table for BENCHMARKS.md), gpu_acceptance.log, the children's
logs (logs.tar.gz) and three sample images into $OUT (or --out), and prints each part's wall time.
The data and wheels it carries and installs: acceptance_setup.py; its table and files: acceptance_report.py.
"""

import argparse
import importlib
import inspect
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # model_options imports our modules in this process
from benchmarks.acceptance_report import environment, fmt, log, markdown, percent, write_outputs  # noqa: E402
from benchmarks.acceptance_setup import (  # noqa: E402
    CIFAR_ARCHIVE,
    install_wheels,
    make_tiny_archives,
    prepare,
    unpack,
    wandb_works,
)

SYSTEMS = ["darknet", "wgan", "cyclegan", "style"]
PARTS = [f"{s}-cli" for s in SYSTEMS] + ["darknet-accuracy"] + [f"{s}-speed" for s in SYSTEMS]
PROBE = "--trainer.callbacks+=benchmarks.acceptance_probe.AcceptanceProbe"
# seconds each part takes, measured on an H200 on 2026-11-28 (darknet-accuracy: more than 155 s, stopped there;
# 240 is a guess from 26.6k images/s for 30 epochs, the JPEG decoding at setup and the TTA run's start)
# measured on an H200 (2026-11-28); darknet- and cyclegan-speed plus ~12 s each for their profiles, added since;
# style-speed plus ~3 s for its untimed warm-up runs (2 iterations of each loop in each of its two processes)
ESTIMATES = {"setup": 25, "cli": 185, "darknet-speed": 44, "wgan-speed": 70, "cyclegan-speed": 87, "style-speed": 94,
             "darknet-accuracy": 240}


# ------------------------------------------------------------------------------------------ sizes of each mode
def cli_plan(smoke: bool, cifar_small: Path, h2z: Path, bs_darknet: int) -> dict:
    """Per system: the variants (precision, extra args), overrides, and how far the first run and the resume go.

    `unit` is epochs or steps; `first` its value for the first run (the resume runs to twice that); `steps` the
    global_step the first run must reach (the resume: twice that)."""
    if smoke:
        return {
            "darknet": {"variants": [("32-true", [])], "unit": "epochs", "first": 1,
                        "steps": 8 * 10 // 16,
                        "args": ["--data.data_dir", str(cifar_small), "--model.nf", "4", "--model.num_blocks", "[1]",
                                 "--data.batch_size", "16", "--data.eval_batch_size", "40"]},
            "wgan": {"variants": [("32-true", [])], "unit": "steps", "first": 3, "steps": 3,
                     "args": ["--data.data_dir", str(cifar_small / "train"), "--data.num_workers", "0",
                              "--data.isize", "16", "--model.isize", "16", "--model.ngf", "8", "--model.ndf", "8",
                              "--data.batch_size", "8"]},
            "cyclegan": {"variants": [("32-true", [])], "unit": "epochs", "first": 1, "steps": 3 * 2,
                         "args": ["--data.data_dir", str(h2z), "--data.num_workers", "0", "--model.ngf", "4",
                                  "--model.ndf", "4", "--model.n_blocks", "1", "--data.load_size", "36",
                                  "--data.crop_size", "32", "--model.n_epochs", "1", "--model.n_epochs_decay", "1",
                                  "--trainer.limit_train_batches", "2", "--model.log_images_every_n_batches", "1"]},
            "style": {"variants": [("32-true", [])], "unit": "steps", "first": 2, "steps": 2,
                      "args": ["--model.vgg_weights", "random", "--model.arch", "vgg16", "--data.size", "64",
                               "--model.show_iter", "1", "--model.pyramid", "[[32, 2]]"]},  # resumed at a level's end
        }
    return {
        "darknet": {"variants": [("32-true", []), ("bf16-mixed", []), ("16-mixed", [])], "unit": "epochs",
                    "first": 1, "steps": 200 * 10 // bs_darknet,
                    "args": ["--data.data_dir", str(cifar_small), "--data.batch_size", str(bs_darknet),
                             "--data.eval_batch_size", "500"]},
        "wgan": {"variants": [("32-true", []), ("bf16-mixed", []), ("16-mixed", [])], "unit": "steps",
                 "first": 30, "steps": 30,
                 "args": ["--data.data_dir", str(cifar_small / "train"), "--data.num_workers", "3"]},
        "cyclegan": {"variants": [("32-true", []), ("bf16-mixed", [])], "unit": "epochs", "first": 1, "steps": 3 * 6,
                     "args": ["--data.data_dir", str(h2z), "--data.num_workers", "3", "--model.n_epochs", "1",
                              "--model.n_epochs_decay", "1", "--trainer.limit_train_batches", "6",
                              "--model.log_images_every_n_batches", "3"]},
        "style": {"variants": [("32-true", []), ("bf16-mixed", [])], "unit": "steps", "first": 10, "steps": 10,
                  "args": ["--model.vgg_weights", "random", "--data.size", "256", "--model.show_iter", "5",
                           "--model.pyramid", "[[128, 10]]"]},  # the resume starts the full size: an optimizer swap
    }


def speed_plan(smoke: bool, cifar: Path) -> dict:
    """Per system: the benchmark-script command lines (without --json), each one row group of the table."""
    py = "benchmarks/"
    if smoke:
        return {
            "darknet": [[py + "darknet_throughput.py", "--device", "cpu", "--batch", "16", "--warmup", "1",
                         "--steps", "2", "--repeats", "1", "--nf", "4", "--num_blocks", "1",
                         "--precision", "32-true", "bf16-mixed", "--data_dir", str(cifar), "--profile", "1"]],
            "wgan": [[py + "wgan_speed.py", "--device", "cpu", "--isize", "16", "--batch_size", "4",
                      "--iterations", "2", "--warmup", "1", "--repeats", "1", "--threads", "1",
                      "--precision", "bf16-mixed", "--channels_last", "--profile", "1"]],
            "cyclegan": [[py + "cyclegan_speed.py", "--device", "cpu", "--size", "32", "--n_blocks", "1", "--ngf", "4",
                          "--batch_size", "1", "--steps", "1", "--warmup", "1", "--rounds", "1", "--threads", "1",
                          "--variants", "[system-32, system-bf16-cl, plain-32, plain-bf16-cl]", "--profile", "1"]],
            "style": [[py + "style_lbfgs.py", "--device", "cpu", "--size", "32", "--arch", "vgg16", "--iters", "2",
                       "--batch", "2", "--threads", "1", "--profile", "1"]],
        }
    cyclegan = [py + "cyclegan_speed.py", "--device", "cuda", "--size", "256", "--n_blocks", "9",
                "--variants", "[system-32, system-bf16-cl, plain-32, plain-bf16-cl]"]
    return {
        "darknet": [[py + "darknet_throughput.py", "--device", "cuda", "--batch", "512", "--warmup", "5",
                     "--steps", "25", "--repeats", "3", "--precision", "32-true", "bf16-mixed",
                     "--data_dir", str(cifar), "--profile", "5"]],
        "wgan": [[py + "wgan_speed.py", "--device", "cuda", "--isize", "64", "--batch_size", "64",
                  "--iterations", "300", "--warmup", "20", "--repeats", "3", "--profile", "30"],
                 [py + "wgan_speed.py", "--device", "cuda", "--isize", "64", "--batch_size", "64",
                  "--iterations", "300", "--warmup", "20", "--repeats", "3", "--precision", "bf16-mixed",
                  "--channels_last"]],
        "cyclegan": [cyclegan + ["--batch_size", "1", "--steps", "20", "--warmup", "5", "--rounds", "2",
                                 "--profile", "5"],
                     cyclegan + ["--batch_size", "4", "--steps", "8", "--warmup", "3", "--rounds", "2"]],
        "style": [[py + "style_lbfgs.py", "--device", "cuda", "--size", "512", "--iters", "300", "--batch", "1",
                   "--profile", "20"],
                  [py + "style_lbfgs.py", "--device", "cuda", "--size", "512", "--iters", "60", "--batch", "16",
                   "--profile", "5"]],
    }


def select_parts(only: str) -> list[str]:
    """`--only`: part names (wgan-speed), systems (wgan: its parts) or kinds (cli, speed, accuracy); '' is all."""
    tokens = [t for t in only.replace(" ", "").split(",") if t]
    unknown = [t for t in tokens if not any(t in (p, *p.split("-")) for p in PARTS)]
    if unknown:
        sys.exit(f"gpu_acceptance.py: error: --only {','.join(unknown)} names no part; parts: {', '.join(PARTS)} "
                 f"(or a system, or cli, speed, accuracy)")
    return [p for p in PARTS if not tokens or any(t in (p, *p.split("-")) for t in tokens)]


def model_options(system: str) -> set[str]:
    """The init arguments of the system's model class, read from configs/<system>.yaml's class_path."""
    import yaml
    config = yaml.safe_load((ROOT / "configs" / f"{system}.yaml").read_text())
    module, _, name = config["model"]["class_path"].rpartition(".")
    return set(inspect.signature(getattr(importlib.import_module(module), name).__init__).parameters)


# ------------------------------------------------------------------------------------------ running children
DEADLINE = [float("inf")]  # perf_counter time after which children are stopped, so the report is still written


def run(cmd: list[str], env: dict, log_file: Path, timeout: float) -> tuple[int, float, str]:
    """A child process with its output in log_file; returns its exit code, seconds and last output line."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    timeout = min(timeout, DEADLINE[0] - start)
    with open(log_file, "w") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        if timeout < 5:  # past the deadline: not started, so the call still ends inside the device tool's limit
            f.write("not started: past --budget's deadline (budget + 30 s)\n")
            return 124, 0.0, "not started: past --budget's deadline"
        f.flush()
        try:
            rc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            rc = 124
    seconds = time.perf_counter() - start
    lines = [line for line in log_file.read_text(errors="replace").splitlines() if line.strip()]
    last = "timed out" if rc == 124 else (lines[-1][:300] if lines else "")
    return rc, seconds, last


def tail(log_file: Path, n: int = 25) -> str:
    return "\n".join(log_file.read_text(errors="replace").splitlines()[-n:])


def checkpoint_step(path: Path) -> int | None:
    import torch
    try:
        return int(torch.load(path, map_location="cpu", weights_only=False)["global_step"])
    except Exception:  # reported as a failed check
        return None


def check_run(run_dir: Path, system: str, steps: int, epochs: int | None, wandb: bool,
              start: int | None = None) -> list[str]:
    """What is wrong with a finished run folder (empty: all good); `start`: the step training must have begun at
    (the probe's record: a resume that restarted from 0 reaches the same final step but not from there)."""
    problems = []
    if start is not None:
        probe = run_dir / "acceptance_probe-start.json"
        began = json.loads(probe.read_text())["global_step"] if probe.is_file() else None
        if began != start:
            problems.append(f"training began at global_step {began}, expected {start}")
    results_file = run_dir / "results.json"
    if not results_file.is_file():
        return [f"no {results_file}"]
    results = json.loads(results_file.read_text())
    if results.get("global_step") != steps:
        problems.append(f"results.json global_step {results.get('global_step')}, expected {steps}")
    if epochs is not None and results.get("epochs") != epochs:
        problems.append(f"results.json epochs {results.get('epochs')}, expected {epochs}")
    last = run_dir / "checkpoints" / "last.ckpt"
    if not last.exists():
        problems.append(f"no {last}")
    elif (step := checkpoint_step(last)) != steps:
        problems.append(f"last.ckpt global_step {step}, expected {steps}")
    if system != "darknet" and not list((run_dir / "images").glob("*.png")):
        problems.append(f"no images in {run_dir / 'images'}")
    if wandb and not list(run_dir.rglob("offline-run-*")):
        problems.append(f"no W&B offline run in {run_dir}")
    return problems


def peak_of(run_dir: Path) -> float | None:
    probe = run_dir / "acceptance_probe-fit.json"
    return json.loads(probe.read_text()).get("peak_gib") if probe.is_file() else None


def cli_lane(system: str, plan: dict, ctx: dict) -> dict:
    """All variants of one system: a short run, then --ckpt_path last to twice the steps, each checked."""
    start, rows = time.perf_counter(), []
    for precision, extra in plan["variants"]:
        name = precision + "".join("+" + a.lstrip("-").split(".")[-1] for a in extra if a.startswith("--"))
        root = ctx["work"] / "runs" / f"{system}-{name}"
        base = [sys.executable, "train.py", "--system", system, *plan["args"], *extra,
                "--trainer.precision", precision, "--trainer.default_root_dir", str(root), "--run_name", "acceptance",
                PROBE, *([] if ctx["wandb"] else ["--trainer.logger", "false"])]
        unit = "--trainer.max_epochs" if plan["unit"] == "epochs" else "--trainer.max_steps"
        row = {"system": system, "variant": name, "precision": precision, "extra": extra}
        for phase, factor in (("run", 1), ("resume", 2)):
            cmd = base + [unit, str(plan["first"] * factor)] + (["--ckpt_path", "last"] if phase == "resume" else [])
            log_file = ctx["work"] / "logs" / f"{system}-{name}-{phase}.log"
            rc, seconds, last = run(cmd, ctx["env"], log_file, ctx["timeout"])
            run_dir = root / "acceptance"
            if rc == 0:
                epochs = plan["first"] * factor if plan["unit"] == "epochs" else None
                problems = check_run(run_dir, system, plan["steps"] * factor, epochs, ctx["wandb"],
                                     start=plan["steps"] * (factor - 1))
            else:
                problems = [f"exit {rc}: {last}"]
            row[phase] = {"ok": not problems, "seconds": round(seconds, 1), "problems": problems,
                          "peak_gib": peak_of(run_dir), "steps": plan["steps"] * factor}
            status = "ok" if not problems else "FAILED: " + "; ".join(problems)
            log(f"  {system} {name} {phase}: {status} ({seconds:.1f} s)")
            if problems:
                log(f"  --- last lines of {log_file.name}:\n{tail(log_file)}\n  ---")
                break
        rows.append(row)
    return {"rows": rows, "seconds": round(time.perf_counter() - start, 1)}


def speed_part(system: str, commands: list[list[str]], ctx: dict) -> dict:
    rows, failures = [], []
    for i, args in enumerate(commands):
        out = ctx["work"] / "speed" / f"{system}-{i}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        log_file = ctx["work"] / "logs" / f"{system}-speed-{i}.log"
        rc, seconds, last = run([sys.executable, *args, "--json", str(out)], ctx["env"], log_file, ctx["timeout"])
        if rc == 0 and out.is_file():
            for row in json.loads(out.read_text())["rows"]:
                rows.append({"system": system, **row, "seconds": round(seconds, 1)})
                log(f"  {system} {row['measure']} {row['precision']}: ours {fmt(row['ours'])}, plain "
                    f"{fmt(row['plain'])} {row['unit']}, ratio {row['ours'] / row['plain']:.3f} ({seconds:.1f} s)")
        else:
            failures.append(f"{args[0]} exit {rc}: {last}")
            log(f"  {system} speed {' '.join(args[1:])}: FAILED exit {rc}: {last}\n{tail(log_file)}")
    return {"rows": rows, "failures": failures}


def accuracy_part(ctx: dict, cifar: Path, precision: str, epochs: int | None, extra: list[str]) -> dict:
    """configs/darknet.yaml on the real CIFAR-10; then the test set again with flip TTA if the model has it."""
    root = ctx["work"] / "runs" / "darknet-accuracy"
    args = [sys.executable, "train.py", "--system", "darknet", "--data.data_dir", str(cifar),
            "--trainer.precision", precision, "--trainer.default_root_dir", str(root), "--run_name", "accuracy",
            PROBE, *extra, *([] if ctx["wandb"] else ["--trainer.logger", "false"])]
    if epochs:
        args += ["--trainer.max_epochs", str(epochs)]
    rc, seconds, last = run(args, ctx["env"], ctx["work"] / "logs" / "darknet-accuracy.log", ctx["timeout_long"])
    result = {"precision": precision, "epochs": epochs or 30, "wall_seconds": round(seconds, 1), "ok": rc == 0}
    results_file = root / "accuracy" / "results.json"
    if rc != 0 or not results_file.is_file():
        result["error"] = f"exit {rc}: {last}"
        log(f"  darknet accuracy FAILED: {last}\n{tail(ctx['work'] / 'logs' / 'darknet-accuracy.log')}")
        return result
    results = json.loads(results_file.read_text())
    result.update(test_acc=results["test"].get("test/acc"), fit_seconds=results.get("fit_seconds"),
                  peak_gib=peak_of(root / "accuracy"), tta_acc="n/a (the model has no tta option)")
    if "tta" in model_options("darknet"):
        tta_root = ctx["work"] / "runs" / "darknet-tta"
        tta = [sys.executable, "train.py", "test", "--config", "configs/darknet.yaml", "--data.data_dir", str(cifar),
               "--model.tta", "flip", "--trainer.precision", precision, "--trainer.logger", "false",
               "--trainer.default_root_dir", str(tta_root), PROBE, *extra,
               "--ckpt_path", str(root / "accuracy" / "checkpoints" / "last.ckpt")]
        started = time.time()
        rc, _, last = run(tta, ctx["env"], ctx["work"] / "logs" / "darknet-tta.log", ctx["timeout"])
        # the test subcommand writes a time-stamped folder of its own under tta_root: the newest probe there
        probes = sorted((p for p in tta_root.rglob("acceptance_probe-test.json") if p.stat().st_mtime >= started - 1),
                        key=lambda p: p.stat().st_mtime)
        config = probes[-1].parent / "config.yaml" if probes else None
        # the flag, not the checkpoint's none (nor flip_translate)
        tta_used = config is not None and config.is_file() and "    tta: flip\n" in config.read_text()
        if rc == 0 and probes and not tta_used:
            result["tta_acc"] = f"failed: the test ran without --model.tta flip ({config})"
        elif rc == 0 and probes:
            result["tta_acc"] = json.loads(probes[-1].read_text())["metrics"].get("test/acc")
        else:
            result["tta_acc"] = f"failed: exit {rc}: {last}"
    log(f"  darknet {result['epochs']} epochs {precision}: test accuracy {percent(result['test_acc'])}, flip TTA "
        f"{percent(result['tta_acc'])}, fit {result['fit_seconds']} s, wall {seconds:.1f} s")
    return result


# ------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prepare", action="store_true", help="here: fill .carry and .whl from ../shared/data")
    parser.add_argument("--no_wheels", action="store_true", help="with --prepare: skip fetch_wheels.py")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU (generated data if no .carry)")
    parser.add_argument("--only", default="", help="comma-separated parts, systems or kinds (cli, speed, accuracy)")
    parser.add_argument("--carry", default=str(ROOT / ".carry"), help="folder with the data archives")
    parser.add_argument("--wheels", default=str(ROOT / ".whl"), help="folder with the wheels")
    parser.add_argument("--work", default=None, help="scratch folder (default: a fresh one in /tmp)")
    parser.add_argument("--out", default=os.environ.get("OUT") or str(ROOT / "runs" / "gpu_acceptance"))
    parser.add_argument("--wandb", choices=["auto", "off"], default=None,
                        help="auto: log offline where wandb imports (default; off with --smoke)")
    parser.add_argument("--accuracy_precision", default="bf16-mixed")
    parser.add_argument("--accuracy_epochs", type=int, default=None, help="default: the config's 30")
    parser.add_argument("--budget", type=float, default=470,
                        help="seconds: a part whose estimate (ESTIMATES) would end past it is skipped, and children "
                             "still running 30 s past it are stopped")
    args = parser.parse_args(argv)
    if args.prepare:
        prepare(Path(args.carry), Path(args.wheels), fetch=not args.no_wheels)
        return None

    t0 = time.perf_counter()
    chosen = select_parts(args.only)
    work = Path(args.work) if args.work else Path("/tmp") / f"dl2-gpu-acceptance-{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    carry, out = Path(args.carry), Path(args.out)
    import torch
    if not args.smoke and not torch.cuda.is_available():
        sys.exit("gpu_acceptance.py: error: no CUDA device; use --smoke for the CPU check")

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in [str(ROOT), os.environ.get("PYTHONPATH")] if p),
           "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1" if args.smoke else "4", "WANDB_MODE": "offline",
           "WANDB_SILENT": "true"}
    log(f"gpu_acceptance: parts {', '.join(chosen)}; work {work}; out {out}")
    part_seconds = {}
    installed = install_wheels(Path(args.wheels), work / "site", env)
    if args.smoke and not (carry / CIFAR_ARCHIVE).exists():
        carry = work / "carry"
        make_tiny_archives(carry)
    cifar, cifar_small, h2z = unpack(carry, work / "data", (8, 4) if args.smoke else (200, 50))
    why_not = "off" if (args.wandb or ("off" if args.smoke else "auto")) == "off" else \
        wandb_works(env, work / "wandb-probe")
    use_wandb = why_not is None
    if not use_wandb:
        env["WANDB_MODE"] = "disabled"
    part_seconds["setup"] = round(time.perf_counter() - t0, 1)
    log(f"setup: {installed}; data in {work / 'data'}; W&B {'offline' if use_wandb else 'not used: ' + why_not} "
        f"({part_seconds['setup']} s)")
    ctx = {"work": work, "env": env, "wandb": use_wandb, "timeout": 300 if args.smoke else 240,
           "timeout_long": 300 if args.smoke else 420}
    report = {"command": "python benchmarks/gpu_acceptance.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "smoke": args.smoke, "wandb": use_wandb, "environment": environment(args.smoke), "parts": chosen,
              "cli": [], "speed": [], "failures": [], "part_seconds": part_seconds}

    DEADLINE[0] = t0 + args.budget + 30

    def save():  # after every part: a call stopped at the device tool's limit still returns the parts done
        part_seconds["total"] = round(time.perf_counter() - t0, 1)
        report["markdown"] = markdown(report)
        write_outputs(report, out, work)

    def over_budget(part):
        elapsed = time.perf_counter() - t0
        if elapsed + (0 if args.smoke else ESTIMATES[part]) > args.budget:
            log(f"{part}: skipped, {elapsed:.0f} s gone and it takes ~{ESTIMATES[part]} s: past the "
                f"{args.budget:.0f} s budget (rerun it with --only {part})")
            report["failures"].append(f"{part}: skipped (budget)")
            return True
        return False

    # 1. the CLI runs, one lane per system, in parallel
    plan = cli_plan(args.smoke, cifar_small, h2z, bs_darknet=128)
    for system in SYSTEMS:  # channels_last where the model offers it
        if f"{system}-cli" in chosen and "channels_last" in model_options(system) and not args.smoke:
            plan[system]["variants"].append(("bf16-mixed", ["--model.channels_last", "true"]))
    lanes = [s for s in SYSTEMS if f"{s}-cli" in chosen]
    if lanes:
        start = time.perf_counter()
        log(f"cli: {', '.join(lanes)} in parallel")
        with ThreadPoolExecutor(len(lanes)) as pool:
            done = dict(zip(lanes, pool.map(lambda s: cli_lane(s, plan[s], ctx), lanes), strict=True))
        for system in lanes:
            report["cli"] += done[system]["rows"]
            part_seconds[f"{system}-cli"] = done[system]["seconds"]
        part_seconds["cli (parallel)"] = round(time.perf_counter() - start, 1)
        log(f"cli: {part_seconds['cli (parallel)']} s")
        report["failures"] += [f"{r['system']}-cli {r['variant']}" for r in report["cli"]
                               if not all(r.get(p, {}).get("ok") for p in ("run", "resume"))]
        save()

    # 2. the default Darknet to accuracy (before the speed parts: their figures were measured once, this one never,
    # so a budget that cannot hold all skips a speed part)
    if "darknet-accuracy" in chosen and not over_budget("darknet-accuracy"):
        start = time.perf_counter()
        log("darknet-accuracy:")
        if args.smoke:  # a tiny net on the tiny data: the orchestration, not the figure
            report["accuracy"] = accuracy_part(ctx, cifar, "32-true", 1, plan["darknet"]["args"][2:])
        else:
            report["accuracy"] = accuracy_part(ctx, cifar, args.accuracy_precision, args.accuracy_epochs, [])
        if not report["accuracy"]["ok"]:
            report["failures"].append(f"darknet-accuracy: {report['accuracy'].get('error')}")
        part_seconds["darknet-accuracy"] = round(time.perf_counter() - start, 1)
        log(f"darknet-accuracy: {part_seconds['darknet-accuracy']} s")
        save()

    # 3. the benchmark scripts, one at a time
    speeds = speed_plan(args.smoke, cifar)
    for system in SYSTEMS:
        part = f"{system}-speed"
        if part not in chosen or over_budget(part):
            continue
        start = time.perf_counter()
        log(f"{part}:")
        done = speed_part(system, speeds[system], ctx)
        report["speed"] += done["rows"]
        report["failures"] += [f"{part}: {f}" for f in done["failures"]]
        part_seconds[part] = round(time.perf_counter() - start, 1)
        log(f"{part}: {part_seconds[part]} s")
        save()

    save()
    log("\n" + report["markdown"])
    log("FAILURES: " + "; ".join(report["failures"]) if report["failures"] else "all parts passed")
    write_outputs(report, out, work)
    log(f"written: {', '.join(sorted(p.name for p in out.iterdir()))} in {out}")
    return report


if __name__ == "__main__":
    sys.exit(1 if (r := main()) and r["failures"] else 0)
