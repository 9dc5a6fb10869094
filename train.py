"""Train a system: `python train.py --system darknet [--model.* --data.* --trainer.* overrides]`.

`--system NAME` runs configs/NAME.yaml as a whole job: fit, test, then results.json in the run folder.
The native LightningCLI form (`python train.py fit --config configs/darknet.yaml`) works as well.
"""

import json
import os
import sys
import time
from pathlib import Path
from typing import Literal

from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities.model_helpers import is_overridden

CONFIGS = Path(__file__).resolve().parent / "configs"
SUBCOMMANDS = {"fit", "validate", "test", "predict"}


def systems() -> list[str]:
    return sorted(p.stem for p in CONFIGS.glob("*.yaml"))


def system_to_config(argv: list[str]) -> list[str]:
    """`--system wgan ...` -> `--config configs/wgan.yaml ...`; other arguments pass through."""
    for i, arg in enumerate(argv):
        if arg == "--system" or arg.startswith("--system="):
            name = arg.partition("=")[2] if "=" in arg else (argv[i + 1] if i + 1 < len(argv) else "")
            if name not in systems():
                sys.exit(f"train.py: error: unknown --system {name!r}; choose one of: {', '.join(systems())}")
            rest = argv[:i] + argv[i + (1 if "=" in arg else 2):]
            return ["--config", str(CONFIGS / f"{name}.yaml"), *rest]
    sys.exit(f"train.py: error: give --system NAME (one of: {', '.join(systems())}) or a subcommand "
             f"({', '.join(sorted(SUBCOMMANDS))}) with --config")


class CLI(LightningCLI):
    """LightningCLI plus the job's run folder, W&B offline fallback and resume from the newest run."""

    def __init__(self, *args, job: bool, **kwargs):
        self.job = job
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser):
        if self.job:  # the subcommands bring their own --ckpt_path
            parser.add_argument("--ckpt_path", type=str | None, default=None,
                                help="checkpoint to resume from, or 'last' for the newest run's last.ckpt")
            parser.add_function_arguments(lr_find, "lr_find", skip={"cli"})
        parser.add_argument("--run_name", type=str | None, default=None,
                            help="run folder under trainer.default_root_dir (default: time stamp or SLURM job)")

    def job_config(self):
        return self.config if self.job else self.config[self.config.subcommand]

    def before_instantiate_classes(self):
        prepare_run(self.job_config())


def newest_last_checkpoint(root: Path) -> str:
    found = sorted(root.glob("*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    if not found:
        sys.exit(f"train.py: error: --ckpt_path last, but no {root}/*/checkpoints/last.ckpt exists yet")
    return str(found[-1])


def new_time_stamped(root: Path) -> Path:
    """root/<time stamp>, with a suffix when a job started in the same second already has that folder."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir, n = root / stamp, 1
    while run_dir.exists():
        n += 1
        run_dir = root / f"{stamp}-{n}"
    return run_dir


def prepare_run(config) -> None:
    """Point checkpoints, logs and results at one run folder; W&B offline when it has no credentials."""
    trainer = config.trainer
    root = Path(trainer.default_root_dir or "runs")
    if config.get("ckpt_path") == "last":
        config.ckpt_path = newest_last_checkpoint(root)
    if config.get("ckpt_path") and Path(config.ckpt_path).parent.name == "checkpoints":
        run_dir = Path(config.ckpt_path).parent.parent  # a resumed run carries on in its own folder
    else:
        # DDP's re-launched ranks (LOCAL_RANK set by Lightning's launcher) and SLURM tasks must all agree
        # on the folder, hence no per-process clock for them
        launched_rank = "LOCAL_RANK" in os.environ and "DL2_RUN_NAME" in os.environ
        name = (config.run_name or (os.environ["DL2_RUN_NAME"] if launched_rank else None)
                or (f"slurm-{os.environ['SLURM_JOB_ID']}" if "SLURM_JOB_ID" in os.environ else None))
        run_dir = root / name if name else new_time_stamped(root)
    os.environ["DL2_RUN_NAME"] = run_dir.name  # inherited by the ranks Lightning launches
    trainer.default_root_dir = str(run_dir)
    for callback in trainer.callbacks or []:
        if callback.class_path.endswith("ModelCheckpoint") and not callback.init_args.get("dirpath"):
            callback.init_args.dirpath = str(run_dir / "checkpoints")
    logger = trainer.logger
    if logger is False or logger is None:  # LearningRateMonitor refuses to run without a logger
        trainer.callbacks = [c for c in trainer.callbacks or [] if not c.class_path.endswith("LearningRateMonitor")]
    if hasattr(logger, "class_path") and logger.class_path.endswith("WandbLogger"):
        args = logger.init_args
        if args.get("save_dir") in (None, "."):
            args.save_dir = str(run_dir)
        args.name = args.get("name") or run_dir.name
        if not args.get("offline") and not wandb_credentials():
            args.offline = True
            print(f"W&B: no credentials, logging offline to {run_dir}/wandb; "
                  f"upload later with `wandb sync {run_dir}/wandb/offline-run-*`")


def wandb_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_MODE") in ("online", "offline", "disabled"):
        return True  # WANDB_MODE set: the user has decided
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return netrc.is_file() and "api.wandb.ai" in netrc.read_text()


def run_job(cli: CLI) -> dict:
    """Fit, then test the final weights (systems with a test_step), then write <run folder>/results.json."""
    config, trainer, model = cli.job_config(), cli.trainer, cli.model
    start = time.perf_counter()
    trainer.fit(model, datamodule=cli.datamodule, ckpt_path=config.ckpt_path)
    fit_seconds = time.perf_counter() - start
    final = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    test = trainer.test(model, datamodule=cli.datamodule, verbose=False)[0] if is_overridden("test_step", model) else {}
    run_dir = Path(trainer.default_root_dir)
    results = {"test": test, "final_metrics": final, "fit_seconds": round(fit_seconds, 2),
               "epochs": trainer.current_epoch, "global_step": trainer.global_step,
               "world_size": trainer.world_size, "precision": str(trainer.precision), "run_dir": str(run_dir),
               "checkpoint": {"last": str(run_dir / "checkpoints" / "last.ckpt"),
                              "best": getattr(trainer.checkpoint_callback, "best_model_path", None) or None}}
    if trainer.is_global_zero:
        path = run_dir / "results.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(results, indent=2))
        os.replace(tmp, path)
        shown = test or final
        print(("Test metrics: " if test else "Final metrics: ") + ", ".join(f"{k} {v:.4f}" for k, v in shown.items()))
        print(f"Results written to {path}")
    return results


def lr_find(cli: CLI, run: bool = False, mode: Literal["exponential", "linear"] = "exponential",
            min_lr: float = 1e-6, max_lr: float = 10.0, num_training: int = 100, stop_div: float | None = 4.0,
            linear_axis: bool = False) -> float | None:
    """Lightning's LR finder instead of training: saves lr_find.png and lr_find.json, prints the suggestion.

    Args:
        run: run the finder (`--lr_find.run true`, or just `--lr_find`) instead of fit and test.
        mode: exponential or linear growth of the lr between min_lr and max_lr.
        min_lr: first lr tried.
        max_lr: last lr tried.
        num_training: steps of the sweep.
        stop_div: stop once the loss exceeds stop_div x the best loss so far (the seed's stop_div); null never.
        linear_axis: plot lr on a linear axis (the seed's plot(linear=True)) instead of a log axis.
    """
    from lightning.pytorch.tuner import Tuner

    from callbacks import TrainingPhaseScheduler
    trainer = cli.trainer
    # the finder drives the lr itself; a phase scheduler would fight it
    trainer.callbacks = [c for c in trainer.callbacks if not isinstance(c, TrainingPhaseScheduler)]
    finder = Tuner(trainer).lr_find(cli.model, datamodule=cli.datamodule, min_lr=min_lr, max_lr=max_lr,
                                    num_training=num_training, mode=mode, early_stop_threshold=stop_div,
                                    update_attr=False)
    if not trainer.is_global_zero:
        return None
    suggestion = finder.suggestion()
    figure = finder.plot(suggest=suggestion is not None)
    figure.axes[0].set_xscale("linear" if linear_axis else "log")
    run_dir = Path(trainer.default_root_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    figure.savefig(run_dir / "lr_find.png", dpi=100)
    (run_dir / "lr_find.json").write_text(json.dumps({**finder.results, "suggestion": suggestion}))
    print(f"LR finder: suggested lr {suggestion:.3g} (steepest loss descent); train with --model.lr {suggestion:.3g}"
          if suggestion is not None else "LR finder: no suggestion (too few points); widen --lr_find.max_lr")
    print(f"LR finder plot: {run_dir / 'lr_find.png'}")
    return suggestion


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    job = not (argv and argv[0] in SUBCOMMANDS)
    if job and not any(a in ("-h", "--help") for a in argv):
        argv = ["--lr_find.run=true" if a == "--lr_find" else a for a in system_to_config(argv)]
    cli = CLI(subclass_mode_model=True, subclass_mode_data=True, args=argv, run=not job, job=job,
              save_config_kwargs={"overwrite": True}, auto_configure_optimizers=False)
    if job and cli.config.lr_find.run:
        lr_find(cli, **{k: v for k, v in vars(cli.config.lr_find).items()})
    elif job:
        run_job(cli)


if __name__ == "__main__":
    main()
