"""Train a system: `python train.py --system darknet [--model.* --data.* --trainer.* overrides]`.

`--system NAME` runs configs/NAME.yaml as a whole job: fit, test, then results.json in the run folder.
The native LightningCLI form (`python train.py fit --config configs/darknet.yaml`) works as well.

Exit status: 0 done; 2 a mistake the user can fix, printed as one line `train.py: error: ...` (`--traceback` or
DL2_TRACEBACK=1 shows the traceback); 130 (Ctrl-C) or 143 (SIGTERM) stopped after saving checkpoints/last.ckpt.

Here: the command line (`--system NAME` to its config, help, exit status). What a run builds on is in callbacks/, by
role: cli (the LightningCLI: its options, a run's checks, the callbacks every run gets), job (fit, test,
results.json), run_folder (its folder chosen and checked), run_checkpoint (`--ckpt_path last`, run.json),
run_lifecycle (the folder made, its lock, a refused run's clean-up), checkpoints (a checkpoint's checks,
`--init_from`), saving (timed and stop-signal saves, SLURM's requeue), resume, run_config (config.yaml), lr_finder
(`--lr_find`), wandb_run, configs (the `--system` names).
"""

import contextlib
import os
import sys
from pathlib import Path

try:
    import yaml
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    import callbacks.job
    from callbacks import configs, run_checkpoint, run_lifecycle, saving, wandb_run
    from callbacks.cli import CLI, SUBCOMMANDS
    from callbacks.errors import UserError, one_line_errors, one_line_warnings, refuse_repeated_lists, user_message
    from callbacks.lr_finder import lr_find
    from callbacks.progress import quiet
    from callbacks.run_config import LogConfig
    from callbacks.saving import RequeueSignal
except KeyboardInterrupt:  # Ctrl-C while torch is imported (seconds): nothing was written yet, so no traceback
    if __name__ != "__main__":
        raise
    print("train.py: Ctrl-C: stopped before the run began (nothing was written)", file=sys.stderr)
    sys.exit(130)

# LightningCLI's predict needs a predict step, which no system has: each system's inference command does that job
INFERENCE_COMMANDS = ("dl2-classify (darknet), dl2-wgan-generate (wgan), dl2-cyclegan-translate (cyclegan), "
                      "dl2-stylize (style)")


def system_to_config(argv: list[str]) -> list[str]:
    """`--system wgan ...` -> `--config configs/wgan.yaml ...`; other arguments pass through."""
    name, rest = find_system(argv)
    if name is None and any(a == "--config" or a.startswith("--config=") for a in argv):
        return argv  # a whole config of its own, e.g. a run's config.yaml
    if name is None:
        raise UserError(f"give --system NAME (one of: {', '.join(configs.systems())}), a whole config (--config "
                        f"runs/<system>/<run>/config.yaml) or a subcommand ({', '.join(sorted(SUBCOMMANDS))}) with "
                        f"--config")
    for config in given_configs(rest):  # a second config of another system's model would replace --system's
        if (other := config_model(config)) and other != config_model(configs.FOLDER / f"{name}.yaml"):
            raise UserError(f"--system {name} and --config {config}, a config of {other}: give "
                            f"--config {config} alone to run it (--config {configs.FOLDER.name}/{name}.yaml --config "
                            f"{config} for your model in the shipped recipe), or --system {name} with a config of its "
                            f"options")
    return ["--config", str(configs.FOLDER / f"{name}.yaml"), *rest]


def refuse_old_run_config(argv: list[str], resuming: bool) -> None:
    """A run's config.yaml written before 2026-11-29 (commits 0d45064, c6be0fb, e6c4698) holds that run's own folder
    as trainer.default_root_dir, its checkpoint folder, its W&B id, run_name and lr_find: a new run from it trained
    inside the old run, replacing its last.ckpt and best-*.ckpt and logging into its W&B run, and test/validate
    refused it as 'does not accept option lr_find.run'. A resume of that run with it (--ckpt_path) still works. A
    config.yaml of today edited to name its own run's folder is refused the same way."""
    for config in given_configs(argv):
        path = Path(config).expanduser()
        try:
            root = ((yaml.safe_load(path.read_text()) or {}).get("trainer") or {}).get("default_root_dir")
        except (OSError, yaml.YAMLError, AttributeError):
            continue  # LightningCLI says what is wrong with the file
        if resuming or not isinstance(root, str) or not (path.parent / run_checkpoint.RUN_FILE).is_file():
            continue
        # its own folder, or that folder where it was before the runs were moved or copied (another clone, a laptop
        # from the cluster): runs/<system>/<run> by its last two names (a new run there, and its old W&B run)
        here, there = Path(os.path.realpath(path.parent)), Path(os.path.realpath(Path(root).expanduser()))
        if here != there and (here.parts[-2:] != there.parts[-2:] or len(there.parts) < 3):
            continue
        raise UserError(f"{config} names its own run's folder as trainer.default_root_dir ({root}), as a run's "
                        f"config.yaml did before 2026-11-29 (with its checkpoint folder and W&B run): a run or an "
                        f"evaluation from it would write into that run. Resume the run with --config {config} "
                        f"--ckpt_path {path.parent / 'checkpoints' / 'last.ckpt'}; for a new run or a test, give a "
                        f"copy without trainer.default_root_dir, run_name, lr_find, the ModelCheckpoint's dirpath and "
                        f"the WandbLogger's save_dir, id and name")


def given_configs(argv: list[str]) -> list[str]:
    """The files of `--config FILE`, `--config=FILE` and LightningCLI's `-c` forms."""
    return [arg.partition("=")[2] if "=" in arg else argv[i + 1] for i, arg in enumerate(argv)
            if (arg in ("--config", "-c") and i + 1 < len(argv)) or arg.startswith(("--config=", "-c="))]


def config_model(path) -> str | None:
    """The model class a YAML config names, None when it names none (or cannot be read here)."""
    try:
        model = (yaml.safe_load(Path(path).read_text()) or {}).get("model")
    except (OSError, yaml.YAMLError, AttributeError):
        return None  # LightningCLI says what is wrong with the file
    name = model.get("class_path") if isinstance(model, dict) else None
    return name.rpartition(".")[2] if isinstance(name, str) else None  # LightningCLI takes the short name too


def find_system(argv: list[str]) -> tuple[str | None, list[str]]:
    for i, arg in enumerate(argv):
        if arg == "--system" or arg.startswith("--system="):
            name = arg.partition("=")[2] if "=" in arg else (argv[i + 1] if i + 1 < len(argv) else "")
            if name not in configs.systems():
                raise UserError(f"unknown --system {name!r}; choose one of: {', '.join(configs.systems())}")
            return name, argv[:i] + argv[i + (1 if "=" in arg else 2):]
    return None, argv


# what a run sets in os.environ for itself and the ranks Lightning launches, put back as it was when train.main ends
# (a notebook's next call): an offline WandbLogger's WANDB_MODE=dryrun (the next run, logged in by then, stayed
# offline), WANDB_SILENT (the notebook's own wandb.init silenced), seed_everything's (the next `seed_everything: true`
# took this run's seed), the run folder and checkpoint handed to the ranks
RUN_ENVIRONMENT = ("WANDB_MODE", "WANDB_SILENT", "PL_GLOBAL_SEED", "PL_SEED_WORKERS", "DL2_RUN_NAME", "DL2_CKPT_PATH")


def main(argv: list[str] | None = None) -> None:
    """Run train.py in this process; errors propagate (the command line prints them, see `command_line`)."""
    environment = {name: os.environ.get(name) for name in RUN_ENVIRONMENT}
    try:
        run_main(argv)
    finally:
        for name, value in environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_main(argv: list[str] | None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    argv = [a for a in argv if a != "--traceback"]
    quiet()
    if argv[:1] == ["predict"]:
        raise UserError(f"predict: no system here has a predict step; its inference command does that job: "
                        f"{INFERENCE_COMMANDS} (README, each system's section)")
    job = not (argv and argv[0] in SUBCOMMANDS)
    refuse_repeated_lists(argv)
    if not job and find_system(argv[1:])[0]:  # `test --system darknet`: the config of --system, as the job's
        argv = argv[:1] + system_to_config(argv[1:])
    refuse_old_run_config(argv, resuming=(job or argv[0] == "fit")
                          and any(a == "--ckpt_path" or a.startswith("--ckpt_path=") for a in argv))
    if job and ("--help-trainer" in argv):
        argv = ["--help" if a == "--help-trainer" else a for a in argv]
        argv = system_to_config(argv) if find_system(argv)[0] else argv
    elif job and any(a in ("-h", "--help") for a in argv):
        print_system_help(argv)
        return
    elif job:
        argv = ["--lr_find.run=true" if a == "--lr_find" else a for a in system_to_config(argv)]
    import datamodules
    import lightning_modules
    for package in (datamodules, lightning_modules):  # their classes known by their short names too (--data
        for name in package.__all__:                   # ImageFolderDataModule): the packages load them lazily
            getattr(package, name)
    saved_argv = sys.argv
    # SLURM's time-limit signal from now on (a task's setup may be long)
    saving.requeue_signal = RequeueSignal.install()
    # one of the caller's: Lightning's WandbLogger logs into it, left open
    earlier_wandb_run = wandb_run.current_wandb_run()
    try:
        # LightningCLI warns (with the whole argv) when it sees both args and sys.argv, so it gets one of them; a
        # native subcommand runs inside CLI(), where DDP's launcher starts the other ranks with sys.argv: they need the
        # arguments
        sys.argv = saved_argv[:1] + ([] if job else argv)
        try:
            cli = CLI(subclass_mode_model=True, subclass_mode_data=True, args=argv if job else None, run=not job,
                      job=job, save_config_callback=LogConfig, save_config_kwargs={"overwrite": True},
                      auto_configure_optimizers=False,
                      # allow_abbrev: a typo that is a prefix of an option (--trainer.max_epoch) is refused, not taken;
                      # LightningCLI gives a subcommand's parser (`fit`) only the kwargs under its name, and
                      # jsonargparse before 4.53 does not pass allow_abbrev on to it
                      parser_kwargs={"exit_on_error": False, "allow_abbrev": False,
                                     **{name: {"allow_abbrev": False} for name in CLI.subcommands()}})
        finally:
            sys.argv = saved_argv  # DDP's launcher starts the other ranks with sys.argv
        if job and cli.config.lr_find.run:
            lr_find(cli, **{k: v for k, v in vars(cli.config.lr_find).items()})
        elif job:
            callbacks.job.run_job(cli)
    except BaseException as error:
        # Ctrl-C or SIGTERM before the training began (RunBegan: a run that began is no longer fresh), as a refusal:
        # the folder it made goes, W&B run and all (a bug's stays, for its logs)
        stopped = isinstance(error, (KeyboardInterrupt, SystemExit))
        if stopped or (isinstance(error, Exception) and user_message(error) is not None):
            removed = run_lifecycle.discard_fresh_runs()
            if stopped and removed:
                print(f"Stopped before the training began: removed {', '.join(map(str, removed))} (nothing was "
                      "written there yet)", file=sys.stderr)
        if isinstance(error, Exception) and user_message(error) is not None:
            run_lifecycle.discard_refused_resume()
        wandb_run.finish_wandb_run(earlier_wandb_run, exit_status(error))
        raise
    else:
        wandb_run.finish_wandb_run(earlier_wandb_run, 0)
    finally:
        run_lifecycle.forget_runs()
        if saving.requeue_signal is not None:
            saving.requeue_signal.uninstall()
            saving.requeue_signal = None


def exit_status(error: BaseException) -> int:
    """The exit status `error` ends the process with: sys.exit's (None 0, an int itself, else 1), 130 for Ctrl-C."""
    if isinstance(error, KeyboardInterrupt):
        return 130
    if not isinstance(error, SystemExit):
        return 1
    return 0 if error.code is None else error.code if isinstance(error.code, int) else 1


def print_system_help(argv: list[str]) -> None:
    """`--system NAME --help`: the system's model and data options with the config's values; without --system,
    the systems."""
    name, _ = find_system(argv)
    if name is None:
        print("usage: python train.py --system NAME [--model.ARG V] [--data.ARG V] [--trainer.ARG V] [--ckpt_path "
              "last] [--run_name NAME] [--lr_find] [--traceback]\n       python train.py fit|validate|test --config "
              "FILE ...  (LightningCLI's own form)\n\nsystems (configs/NAME.yaml; options: python train.py --system "
              "NAME --help):")
        width = max(map(len, configs.systems()))
        for system in configs.systems():
            first = (configs.FOLDER / f"{system}.yaml").read_text().splitlines()[0]
            first = first.lstrip("# ").split(" (")[0].rstrip(":")
            print(f"  {system:{width}s}  {first}")
        return
    from jsonargparse import ArgumentParser  # LightningCLI's parser, for the same help format
    config = yaml.safe_load((configs.FOLDER / f"{name}.yaml").read_text())
    parser = ArgumentParser(prog="python train.py", exit_on_error=False,
                            usage=f"python train.py --system {name} [--model.ARG V] [--data.ARG V] [--trainer.ARG V] "
                                  f"[--ckpt_path last] [--run_name NAME] [...]",
                            description=f"Options of --system {name} (configs/{name}.yaml); values shown as "
                                        f"'default' are the config's. Lightning Trainer options (--trainer.*): "
                                        f"python train.py --system {name} --help-trainer.")
    parser.add_argument("--system", choices=configs.systems(), default=name,
                        help="the system to train (configs/NAME.yaml)")
    for group in ("model", "data"):
        class_path = config[group]["class_path"]
        module, _, cls_name = class_path.rpartition(".")
        cls = getattr(__import__(module, fromlist=[cls_name]), cls_name)
        parser.add_class_arguments(cls, group)
        for key, value in (config[group].get("init_args") or {}).items():
            with contextlib.suppress(KeyError):
                parser.set_defaults({f"{group}.{key}": value})
    run = parser.add_argument_group("Run options")
    run.add_argument("--ckpt_path", help="checkpoint to resume from, or 'last': the newest run of this system")
    run.add_argument("--init_from", help="start a new run from a checkpoint's weights (same system and network), "
                                         "with fresh optimizers, schedule and counters (fine-tuning)")
    run.add_argument("--run_name", help="run folder under trainer.default_root_dir (default: time stamp or "
                                        "slurm-<job id>); with --ckpt_path last, resume that run")
    run.add_argument("--save_every_minutes", type=float, default=10.0,
                     help="also save checkpoints/last.ckpt every this many minutes (0: never)")
    run.add_argument("--lr_find", action="store_true", help="Lightning's LR finder instead of training "
                                                            "(--lr_find.* options: --help-trainer)")
    run.add_argument("--traceback", action="store_true", help="show the traceback of a user error "
                                                              "(or DL2_TRACEBACK=1)")
    trainer = parser.add_argument_group("Trainer values in the config (any Lightning Trainer option: --help-trainer)")
    for key, value in (config.get("trainer") or {}).items():
        if key in ("callbacks", "plugins", "logger") and value:  # false, null and [] are shown as written
            items = value if isinstance(value, list) else [value]
            value = ", ".join(str(item["class_path"] if isinstance(item, dict) else item).rpartition(".")[2]
                              for item in items)
        trainer.add_argument(f"--trainer.{key}", default=value, help="the config's value (--print_config: all of it)")
    parser.print_help()


def command_line() -> None:
    """`python train.py ...`: a user's mistake is one line on stderr and exit status 2, a bug its traceback; a
    warning is `train.py: warning: ...` (not main's, which a notebook calls: its warnings stay as it shows them)."""
    try:
        with one_line_warnings():
            one_line_errors(lambda argv: main(), None)  # main reads sys.argv, --traceback included
    except SIGTERMException as stop:
        sys.exit(stop.code if isinstance(stop.code, int) else 143)


if __name__ == "__main__":
    command_line()
