"""Train a system: `python train.py --system darknet [--model.* --data.* --trainer.* overrides]`.

`--system NAME` runs configs/NAME.yaml as a whole job: fit, test, then results.json in the run folder.
The native LightningCLI form (`python train.py fit --config configs/darknet.yaml`) works as well.

Exit status: 0 done; 2 a mistake the user can fix, printed as one line `train.py: error: ...` (`--traceback` or
DL2_TRACEBACK=1 shows the traceback); 130 (Ctrl-C) or 143 (SIGTERM) stopped after saving checkpoints/last.ckpt.
"""

import contextlib
import importlib
import inspect
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import string
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
import yaml
from jsonargparse.typing import register_type
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from lightning.pytorch.trainer.states import TrainerFn, TrainerStatus
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.exceptions import MisconfigurationException, SIGTERMException
from lightning.pytorch.utilities.model_helpers import is_overridden

from callbacks import saving
from callbacks.checkpoint_io import remove_stale_temporaries, replaced, write_json
from callbacks.errors import (
    UserError,
    check_output_folder,
    ctrl_c_ends_the_fit,
    lightning_ctrl_c,
    on_ctrl_c,
    one_line_errors,
    refuse_a_file_on_the_way,
    refuse_unexpanded_home,
    user_message,
)
from callbacks.images import log_to_loggers, subplots
from callbacks.progress import MonitorSummary, WriteLoggingSteps, add_progress_bar, format_number, quiet
from callbacks.resume import EpochLengthResume, LastStepLr, MaxStepsResume, RerunStoppedValidation, SeedPerRankAndStep
from callbacks.saving import EpochEndSave, RequeueSignal, SaveOnStop, TimedSave, global_rank_zero
from callbacks.strategy import (
    auto_ddp_strategy,
    check_launched_processes,
    documented_ddp_strategy,
    refuse_started_processes,
)

CONFIGS = Path(__file__).resolve().parent / "configs"
SUBCOMMANDS = {"fit", "validate", "test"}
EVALUATIONS = ("validate", "test")  # subcommands that read a checkpoint and write a folder of their own
# LightningCLI's predict needs a predict step, which no system has: each system's inference command does that job
INFERENCE_COMMANDS = ("dl2-classify (darknet), dl2-wgan-generate (wgan), dl2-cyclegan-translate (cyclegan), "
                      "dl2-stylize (style)")
RUN_FILE = "run.json"  # in each run folder: which system wrote it, when, its W&B run id
# StochasticWeightAveraging's `device` is a torch.device, which jsonargparse could not write into config.yaml (it
# warned "Unable to serialize instance cpu" twice in every run with SWA)
register_type(torch.device, serializer=str, deserializer=torch.device)
# The Trainer's limit_*_batches are Optional[Union[int, float]]: an int counts batches, a float a fraction (1.0: all).
# typing caches a Union by its set of members, so lightning.fabric's earlier Optional[Union[float, int]] is handed back
# for them, and jsonargparse, trying the members in order, read `--trainer.limit_train_batches 1` as 1.0: a whole epoch
for _name in ("limit_train_batches", "limit_val_batches", "limit_test_batches", "limit_predict_batches"):
    Trainer.__init__.__annotations__[_name] = int | float | None


def systems() -> list[str]:
    return sorted(p.stem for p in CONFIGS.glob("*.yaml"))


def shipped_class(system: str, part: str) -> str:
    """The class name (without its module) that configs/<system>.yaml gives its `part`: model or data."""
    config = yaml.safe_load((CONFIGS / f"{system}.yaml").read_text())
    return (config.get(part) or {}).get("class_path", "").rpartition(".")[2]


def system_of(class_path: str) -> str | None:
    """The --system whose shipped config trains `class_path` (compared by class name), or None."""
    name = class_path.rpartition(".")[2]
    return next((system for system in systems() if shipped_class(system, "model") == name), None)


def system_to_config(argv: list[str]) -> list[str]:
    """`--system wgan ...` -> `--config configs/wgan.yaml ...`; other arguments pass through."""
    name, rest = find_system(argv)
    if name is None and any(a == "--config" or a.startswith("--config=") for a in argv):
        return argv  # a whole config of its own, e.g. a run's config.yaml
    if name is None:
        raise UserError(f"give --system NAME (one of: {', '.join(systems())}), a whole config (--config "
                        f"runs/<system>/<run>/config.yaml) or a subcommand ({', '.join(sorted(SUBCOMMANDS))}) with "
                        f"--config")
    for config in given_configs(rest):  # a second config of another system's model would replace --system's
        if (other := config_model(config)) and other != config_model(CONFIGS / f"{name}.yaml"):
            raise UserError(f"--system {name} and --config {config}, a config of {other}: give "
                            f"--config {config} alone to run it (--config {CONFIGS.name}/{name}.yaml --config {config} "
                            f"for your model in the shipped recipe), or --system {name} with a config of its options")
    return ["--config", str(CONFIGS / f"{name}.yaml"), *rest]


def refuse_old_run_config(argv: list[str], resuming: bool) -> None:
    """A run's config.yaml written before 2026-11-29 (commits 0d45064, c6be0fb, e6c4698) holds that run's own folder
    as trainer.default_root_dir, its checkpoint folder, its W&B id, run_name and lr_find: a new run from it trained
    inside the old run, replacing its last.ckpt and best-*.ckpt and logging into its W&B run, and test/validate
    refused it as 'does not accept option lr_find.run'. A resume of that run with it (--ckpt_path) still works."""
    for config in given_configs(argv):
        path = Path(config).expanduser()
        try:
            root = ((yaml.safe_load(path.read_text()) or {}).get("trainer") or {}).get("default_root_dir")
        except (OSError, yaml.YAMLError, AttributeError):
            continue  # LightningCLI says what is wrong with the file
        if resuming or not isinstance(root, str) or not (path.parent / RUN_FILE).is_file():
            continue
        # its own folder, or that folder where it was before the runs were moved or copied (another clone, a laptop
        # from the cluster): runs/<system>/<run> by its last two names (a new run there, and its old W&B run)
        here, there = Path(os.path.realpath(path.parent)), Path(os.path.realpath(Path(root).expanduser()))
        if here != there and (here.parts[-2:] != there.parts[-2:] or len(there.parts) < 3):
            continue
        raise UserError(f"{config} was written by a dl2-lightning before 2026-11-29: it names its own run's folder "
                        f"(trainer.default_root_dir {root}), checkpoint folder and W&B run, so a run or an evaluation "
                        f"from it would write into that run. Resume the run with --config {config} --ckpt_path "
                        f"{path.parent / 'checkpoints' / 'last.ckpt'}; for a new run or a test, give a copy without "
                        f"trainer.default_root_dir, run_name, lr_find, the ModelCheckpoint's dirpath and the "
                        f"WandbLogger's save_dir, id and name")


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


def model_flags(argv: list[str]) -> list[str]:
    """The model arguments a command line sets: `--model.tta flip`, `--model.init_args.nf=8` -> tta, nf."""
    names = []
    for arg in argv:
        if arg.startswith("--model."):
            path = arg.partition("=")[0].removeprefix("--model.").removeprefix("init_args.").rstrip("+")
            names.append(path.split(".")[0])
    return names


def find_system(argv: list[str]) -> tuple[str | None, list[str]]:
    for i, arg in enumerate(argv):
        if arg == "--system" or arg.startswith("--system="):
            name = arg.partition("=")[2] if "=" in arg else (argv[i + 1] if i + 1 < len(argv) else "")
            if name not in systems():
                raise UserError(f"unknown --system {name!r}; choose one of: {', '.join(systems())}")
            return name, argv[:i] + argv[i + (1 if "=" in arg else 2):]
    return None, argv


class CLI(LightningCLI):
    """LightningCLI plus the job's run folder, W&B run, resume from the newest run, saves on time and on stop."""

    def __init__(self, *args, job: bool, **kwargs):
        self.job = job
        self.checkpoint_resolved = False  # by _parse_ckpt_path, which LightningCLI calls since 2.6 (not 2.5)
        super().__init__(*args, **kwargs)

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {name: skip for name, skip in LightningCLI.subcommands().items() if name in SUBCOMMANDS}

    def add_arguments_to_parser(self, parser):
        if self.job:  # the subcommands bring their own --ckpt_path
            parser.add_argument("--ckpt_path", type=str | None, default=None,
                                help="checkpoint to resume from, or 'last': the newest run of this system "
                                     "(--run_name picks another run)")
            parser.add_function_arguments(lr_find, "lr_find", skip={"cli"})
            parser.add_argument("--init_from", type=str | None, default=None,
                                help="start a new run from a checkpoint's weights (same system and network), with "
                                     "fresh optimizers, schedule and counters: fine-tuning, junyanz's "
                                     "--continue_train --epoch_count 1")
        else:  # a fine-tuned run's config.yaml names it: accepted, ignored by validate/test, refused by fit
            parser.add_argument("--init_from", type=str | None, default=None,
                                help="the job form's (python train.py --system NAME --init_from CKPT); accepted here "
                                     "so that a fine-tuned run's config.yaml can be read, and not used")
        parser.add_argument("--run_name", type=str | None, default=None,
                            help="run folder under trainer.default_root_dir (default: time stamp or SLURM job); "
                                 "for validate/test, with --ckpt_path last: the run whose checkpoint is read")
        parser.add_argument("--save_every_minutes", type=float, default=10.0,
                            help="also save checkpoints/last.ckpt every this many minutes of training (0: never)")

    def _parse_ckpt_path(self):
        """Lightning's: a native subcommand with --ckpt_path builds the model from the checkpoint's hyper-parameters
        (over the config file's, so a run's own net is rebuilt). It drops the command line's --model.* flags as well
        (`test --model.tta flip` tested without TTA; Lightning PR #21455 is open): those are put back on top."""
        subcommand = self.config.get("subcommand")
        if not subcommand:  # the job form: no checkpoint hyper-parameters are read
            return super()._parse_ckpt_path()
        # `last` to its file first, or Lightning (which reads only files) builds the config file's net
        resolve_checkpoint(self.config[subcommand], subcommand)
        # before Lightning builds the checkpoint's class on this data
        check_checkpoint_class(self.config[subcommand], subcommand)
        self.checkpoint_resolved = True
        given = self.config.clone()
        super()._parse_ckpt_path()
        for name in model_flags(sys.argv[1:]):  # main() puts the arguments there
            key = f"{subcommand}.model.init_args.{name}"
            if given.get(key) is not None or name in (given.get(f"{subcommand}.model.init_args") or {}):
                self.config[key] = given[key]

    def job_config(self):
        return self.config if self.job else self.config[self.config.subcommand]

    def _set_seed(self):
        """Lightning's, with a seed numpy cannot take (neural-style's and many scripts' -1 for a random one) refused in
        one line: seed_everything raised a bare ValueError. `true` draws a random seed, as Lightning's CLI documents
        it: Lightning 2.6 seeded 0 for it, every run alike."""
        config = self.job_config()
        seed = config.get("seed_everything")
        if isinstance(seed, int) and not isinstance(seed, bool) and not 0 <= seed < 2**32:
            raise UserError(f"--seed_everything {seed}: a seed is from 0 to {2**32 - 1}; for a new random seed each "
                            "run give one from the shell, --seed_everything $RANDOM (config.yaml keeps it)")
        if seed is True:
            config["seed_everything"] = random_seed()
        super()._set_seed()

    def _run_subcommand(self, subcommand: str) -> None:
        """Lightning's, and for validate/test their metrics in <folder>/results.json, as the job form writes its
        own (they were printed as a table and logged to W&B only, nothing a script could read)."""
        super()._run_subcommand(subcommand)
        trainer = self.trainer
        if subcommand in EVALUATIONS and trainer.is_global_zero and trainer.state.status == TrainerStatus.FINISHED:
            path = Path(trainer.default_root_dir) / "results.json"
            metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
            write_json(path, {subcommand: metrics, "checkpoint": self.job_config().ckpt_path,
                              "world_size": trainer.world_size, "precision": str(trainer.precision),
                              "run_dir": str(path.parent)})
            print(f"Results written to {path}")

    def before_instantiate_classes(self):
        kind = ("lr_find" if self.config.lr_find.run else "fit") if self.job else self.config.subcommand
        # config.yaml holds the config as given, before prepare_run points it at this run's folder, checkpoint folder
        # and W&B run: `--config <run>/config.yaml` then trains a new run beside it (with those in it, the new run
        # trained inside the old folder, into its checkpoints/ and its W&B run, and replaced its config.yaml)
        self.config_as_given = self.job_config().clone()
        if kind not in EVALUATIONS:  # where a fit resumed from is not part of its recipe; an evaluation's checkpoint is
            self.config_as_given.ckpt_path = None
            self.config_as_given.run_name = None  # its folder's name, as default_root_dir its place
        if kind == "fit":  # the job form's own options, left out at their defaults so that the native subcommands
            # (`test --config <run>/config.yaml --ckpt_path ...`) take the file too
            self.config_as_given.pop("lr_find", None)
            if self.config_as_given.get("init_from") is None:
                self.config_as_given.pop("init_from", None)
            if self.config_as_given.get("weights_only") is None:  # the native fit's (Lightning 2.6), refused by the
                self.config_as_given.pop("weights_only", None)    # job form
        if self.job and not self.config.lr_find.run:  # the finder's options alone would train a whole run
            defaults = inspect.signature(lr_find).parameters
            if changed := [name for name, value in vars(self.config.lr_find).items()
                           if value != defaults[name].default]:
                raise UserError(f"--lr_find.{changed[0]} is an LR finder option, but the finder runs only with "
                                "--lr_find (else this trains); add --lr_find, or drop the option")
        if kind in EVALUATIONS:  # before a folder is made: Lightning's "No test_step() method defined" traceback
            model_class = import_class(model_class_of(self.job_config()))
            step = {"validate": "validation_step", "test": "test_step"}[kind]
            if not is_overridden(step, model_class, parent=LightningModule):
                raise UserError(f"{kind}: {model_class.__name__} has no {step}; "
                                f"{'the systems with one: darknet, cyclegan' if kind == 'test' else 'use fit'}")
        if not self.job and kind == "fit" and self.job_config().get("init_from"):
            raise UserError("--init_from starts a run in the job form: python train.py --config FILE --init_from CKPT "
                            "(without the fit subcommand); to resume a fine-tuned run add --init_from null")
        if self.job_config().trainer.get("fast_dev_run") and self.job_config().get("ckpt_path") and kind == "fit":
            raise UserError("--trainer.fast_dev_run with --ckpt_path would run its one batch in that run's folder and "
                            "write its results there; drop --ckpt_path (a smoke test starts a run of its own)")
        run_name = self.job_config().get("run_name")
        if run_name is not None and ("/" in run_name or os.sep in run_name or run_name in ("", ".", "..")):
            raise UserError(f"--run_name {run_name!r}: one folder's name under --trainer.default_root_dir, without "
                            f"'/' (give a deeper --trainer.default_root_dir for a folder tree)")
        if self.job_config().save_every_minutes < 0:
            raise UserError(f"--save_every_minutes {self.job_config().save_every_minutes}: give minutes, or 0 for no "
                            "timed saves")
        if not self.checkpoint_resolved:  # the job form, and a native subcommand under Lightning 2.5
            resolve_checkpoint(self.job_config(), kind)
            if not self.job:  # the job form's check_checkpoint says it in its own words
                check_checkpoint_class(self.job_config(), kind)
        # the folder is chosen and the config pointed at it; it is made at the end of instantiate_classes, after the
        # checks of the model, data and Trainer, so that a run they refuse leaves nothing behind (a new time stamp is
        # claimed now, an empty folder, which such a refusal removes)
        self.run_plan = prepare_run(self.job_config(), kind, make=False)

    def instantiate_classes(self):
        try:
            self.instantiate_checked()
        except Exception as error:  # a model or data module refusing its options; a resume's may be the run's own
            message = user_message(error)
            hint = message and resume_config_hint(self.job_config(), self.fits(), "" if self.job else "fit ")
            if not hint:
                raise
            raise UserError(f"{message}; {hint}") from None
        self.check_instances()

    def fits(self) -> bool:
        """The job form (fit, or the LR finder's sweep) or the native fit subcommand."""
        return self.job or self.config.get("subcommand") == "fit"

    def instantiate_checked(self):
        """LightningCLI's instantiate_classes, its refusals of the Trainer's and callbacks' options in one line."""
        try:
            super().instantiate_classes()
        except MisconfigurationException as error:  # the Trainer's checks of its options (a traceback, status 1)
            raise UserError(f"the Trainer refuses its options: {' '.join(str(error).split())} Check the --trainer "
                            f"values (--help-trainer lists them)") from None
        except TypeError as error:  # the same checks' refusal of --trainer.devices -1, [0, 1] or 2x on the CPU
            if "`devices`" not in str(error):
                raise
            raise UserError(f"the Trainer refuses its options: {' '.join(str(error).split())} (--trainer.devices "
                            f"{self.job_config().trainer.get('devices')}) Check the --trainer values (--help-trainer "
                            "lists them)") from None
        except ValueError as error:  # jsonargparse's, around a Lightning class's refusal of its options (a
            # ModelCheckpoint given both every_n_epochs and every_n_train_steps): that refusal, in one line
            refusal = error.__cause__ or error.__context__
            if not isinstance(refusal, MisconfigurationException):
                raise
            callbacks = re.search(r"^Subtypes: .*Callback", str(error), re.MULTILINE)  # the Union jsonargparse tried
            what = "a --trainer.callbacks entry" if callbacks else "a class of the config"
            raise UserError(f"{what} refuses its options: {' '.join(str(refusal).split())} Check its values "
                            "(--print_config shows the config)") from None
        except RuntimeError as error:  # a callback added beside the config's own of the same class and settings
            if not (twin := re.match(r"Found more than one stateful callback of type `(\w+)`", str(error))):
                raise
            if twin[1] == "ModelCheckpoint":
                raise UserError("two ModelCheckpoint callbacks with the same monitor, mode, every_n_epochs, "
                                "every_n_train_steps or train_time_interval: a checkpoint keeps each one's state under "
                                "those, so Lightning refuses the pair; give the one you added another monitor or "
                                "another interval of the config's kind (--print_config shows the config's)") from None
            raise UserError(f"two {twin[1]} callbacks with the same settings: a checkpoint keeps each one's state "
                            "under them, so Lightning refuses the pair; drop one, or give it other settings") from None

    def check_instances(self):
        """The run's checks and settings once its classes are built (check_job's refusals get no resume hint)."""
        config, trainer = self.job_config(), self.trainer
        if saving.requeue_signal is not None:
            saving.requeue_signal.follow(trainer)
        run_dir = Path(trainer.default_root_dir)
        resumed = self.fits() and config.get("ckpt_path")
        for callback in trainer.callbacks:
            if isinstance(callback, LogConfig):
                callback.effective, callback.config = callback.config, self.config_as_given
                if resumed and (run_dir / "config.yaml").is_file():  # in its own folder
                    step = checkpoint_step(Path(config.ckpt_path))
                    callback.resumed_at = "unknown" if step is None else step
                    for system_part in (self.model, self.datamodule):  # Lightning's own logging of the hyper-
                        system_part._log_hyperparams = False  # parameters would show this resume's on top
        # their writers' purge_step (Lightning passes its kwargs on): TensorBoard hides the events from that step on
        # that the stopped run logged after its checkpoint, instead of drawing both; the file read only for them
        tensorboards = [logger for logger in trainer.loggers
                        if isinstance(logger, TensorBoardLogger) and logger._kwargs.get("purge_step") is None]
        if resumed and tensorboards and (batches := checkpoint_batches(Path(config.ckpt_path),
                                                                       trainer.accumulate_grad_batches)) is not None:
            for logger in tensorboards:
                logger._kwargs["purge_step"] = batches
        if trainer.fast_dev_run:  # Lightning 2.6's ModelCheckpoint saves save_last at train end even then
            for callback in trainer.checkpoint_callbacks:
                if isinstance(callback, ModelCheckpoint):
                    callback.save_last = False
        if trainer.checkpoint_callbacks:
            last = run_dir / "checkpoints" / "last.ckpt"
            for callback in trainer.checkpoint_callbacks:
                if isinstance(callback, ModelCheckpoint) and callback.dirpath is None:
                    # Lightning's own, in a config without one (--trainer.callbacks "[]"): in the run folder, with
                    # the last.ckpt that --ckpt_path last and results.json name (it would go under the logger's)
                    callback.dirpath, callback.save_last = str(last.parent), True
            if config.save_every_minutes > 0:  # a killed run loses minutes, not an epoch
                trainer.callbacks.append(TimedSave(last, config.save_every_minutes))
            trainer.callbacks.append(SaveOnStop(last))
            trainer.callbacks.append(EpochEndSave(last))
        if check_trainer := getattr(self.model, "check_trainer", None):  # before DDP starts a process per device
            check_trainer(trainer)
        refuse_started_processes(trainer, config.trainer.get("strategy"))
        check_launched_processes(trainer)
        auto_ddp_strategy(trainer, self.model, config.trainer.get("strategy"))
        trainer.callbacks.append(MarkTraining(run_dir))
        trainer.callbacks.append(RunBegan(run_dir))
        if trainer.loggers:  # the first, each epoch's last and the last step's metrics, which Lightning skips
            trainer.callbacks.append(WriteLoggingSteps())
        if any(isinstance(logger, WandbLogger) for logger in trainer.loggers):
            trainer.callbacks.append(MonitorSummary())
        trainer.callbacks.insert(0, MaxStepsResume())  # before other callbacks' on_train_start read the epoch
        trainer.callbacks.append(EpochLengthResume())
        trainer.callbacks.append(RerunStoppedValidation())
        trainer.callbacks.append(SeedPerRankAndStep())
        trainer.callbacks.append(LastStepLr())
        for system_part in (self.model, self.datamodule):
            # LightningCLI's own entry in the hyper-parameters (for load_from_checkpoint): Lightning keeps its
            # `_class_path` off the loggers, not this one, which showed as a W&B config value of every run
            getattr(system_part, "_hparams_initial", {}).pop("_instantiator", None)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger) and logger._wandb_init.get("anonymous", 0) is None:
                # Lightning 2.6 passes anonymous=None, which wandb 0.31 warns about on every run
                logger._wandb_init.pop("anonymous")
        check_data(config.model.class_path, self.datamodule)
        if self.job:  # the job's own refusals, decided before its folder is made
            self.start_step = check_job(self, config)
        elif resumed:  # the native fit's (its checkpoint read, and checked, by check_checkpoint_class)
            from lightning_modules.inference import read_checkpoint
            warn_changed_options(trainer, config.ckpt_path, read_checkpoint(config.ckpt_path), self.model,
                                 self.datamodule, "fit ", config.get("config") or ())
        make_run_folder(self.run_plan)  # the config is accepted: the run folder, its lock, run.json, wandb/


def check_data(model_class: str, datamodule) -> None:
    """`--data` another system's data module (one of the shipped configs'): refused before the run, which failed at
    its first batch (a tuple where images were due, labels missing). A data module of the user's is not checked."""
    shipped = {system: shipped_class(system, "data") for system in systems()}
    system, given = system_of(model_class), type(datamodule).__name__
    if system is None or datamodule is None or given == shipped[system] or given not in shipped.values():
        return
    owner = next(name for name, data in shipped.items() if data == given)
    raise UserError(f"--data {given} is the data of --system {owner}; {model_class.rpartition('.')[2]} trains on "
                    f"{shipped[system]} (configs/{system}.yaml): leave --data out, or give a data module of your own")


def check_job(cli: "CLI", config) -> int | None:
    """The job form's refusals that the model and the config decide (an LR finder asked of a GAN, --init_from of
    another network, a checkpoint of another system), before the run folder is made; the --init_from weights go on
    the Trainer. Returns the step of the checkpoint it resumes, None for a new run."""
    model, trainer, system = cli.model, cli.trainer, describe(cli.config.model.class_path)
    if config.lr_find.run and not model.automatic_optimization:  # Lightning's finder would stop with a traceback
        raise UserError(f"--lr_find sweeps the lr of one optimizer that Lightning steps; {type(model).__name__} "
                        "steps its optimizers itself (a GAN's alternating updates): tune its lr with short runs")
    if config.get("init_from"):
        trainer.callbacks.append(init_from(config.init_from, model, system, bool(config.ckpt_path)))
    if not config.ckpt_path:
        return None
    try:
        state = check_checkpoint(config.ckpt_path, model, system)
    except UserError:
        refuse_reference_resume(config.ckpt_path, type(model))
        raise
    warn_changed_options(trainer, config.ckpt_path, state, model, cli.datamodule, configs=config.get("config") or ())
    return state.get("global_step")


def refuse_reference_resume(path: str, model_class: type) -> None:
    """--ckpt_path given a reference project's files (the WassersteinGAN's netG_epoch_N.pth, junyanz's checkpoints),
    which its users resume with --netG or --continue_train: the way here is --init_from, which reads them."""
    reader = getattr(model_class, "reference_checkpoint", None)
    if reader is None:
        return
    try:
        reference = reader(path) is not None
    except UserError:  # theirs, but not loadable as it is: --init_from says why
        reference = True
    if reference:
        raise UserError(f"--ckpt_path {path} is {model_class.reference_files}: --ckpt_path resumes a run of train.py; "
                        f"to start one from those weights give --init_from {path}")


# the config's None values written out, for a faithful re-run: jsonargparse 4.49 renamed skip_none to skip_unset and
# warns on the old name (to be removed in 5.0); the floor, 4.51, has the new one
KEEP_NONE = {"skip_unset": False}


class LogConfig(SaveConfigCallback):
    """config.yaml in the run folder (Lightning's), plus the whole merged config and git commit on the loggers.

    The file gets the config as given (`config`, set by CLI.instantiate_classes), which trains a new run when run
    again; the loggers get the config this run ran with (`effective`: its folder, W&B id, offline). A resume in the
    run's folder (`resumed_at`: the checkpoint's step) keeps the config the run began with, in the file and on the
    loggers, and writes its own beside it: config-resume-step<N>.yaml, and resume_step<N> on the loggers."""

    effective = None
    resumed_at: int | str | None = None  # "unknown" for a checkpoint whose step cannot be read

    def setup(self, trainer, pl_module, stage) -> None:
        if self.resumed_at is None or stage != "fit":
            self.write(trainer, pl_module, stage)

    def on_fit_start(self, trainer, pl_module) -> None:
        # a resume's, once its checkpoint is restored (after setup): a resume refused there (the style's image of
        # another size) left a config-resume file for nothing, and its logged config on the run's W&B run
        if self.resumed_at is not None:
            self.write(trainer, pl_module, "fit")

    def write(self, trainer, pl_module, stage) -> None:
        # Lightning's, but into the run folder: it writes into trainer.log_dir, the logger's folder, which is a W&B
        # save_dir of the user's (shared by runs, each replacing the file) or a CSV logger's version_<n>/
        if self.already_saved:
            return
        if self.resumed_at is not None:
            self.config_filename = f"config-resume-step{self.resumed_at}.yaml"
        if trainer.is_global_zero:
            path = Path(trainer.default_root_dir, self.config_filename)
            path.parent.mkdir(parents=True, exist_ok=True)
            self.parser.save(self.config, str(path), **KEEP_NONE, overwrite=self.overwrite,
                             multifile=self.multifile)
            for logger in trainer.loggers:  # a resume's writer marked its purge_step when Lightning opened it, before
                if isinstance(logger, TensorBoardLogger):  # this hook; tensorboardX's (not torch's) would mark it again
                    logger.experiment.purge_step = None  # on reopening for the test, hiding this run's own steps
            self.save_config(trainer, pl_module, stage)
            self.already_saved = True
        self.already_saved = trainer.strategy.broadcast(self.already_saved)  # every rank as rank 0, as Lightning's

    def save_config(self, trainer, pl_module, stage) -> None:
        config = yaml.safe_load(self.parser.dump(self.effective or self.config, **KEEP_NONE))
        config = config.get(config.get("subcommand")) or config  # `fit --config ...`: the fit section
        config.pop("config", None)
        logged = {"system": system_of(config.get("model", {}).get("class_path", "")), "config": config,
                  "git_commit": git_commit(), "argv": " ".join(sys.argv), "hardware": hardware(trainer)}
        if config.get("ckpt_path") and trainer.state.fn != TrainerFn.FITTING:  # an evaluation: of which step
            logged["checkpoint_step"] = checkpoint_step(Path(config["ckpt_path"]))
        if self.resumed_at is not None:
            logged = {f"resume_step{self.resumed_at}": logged}
        for logger in trainer.loggers:
            logger.log_hyperparams(logged)
            if isinstance(logger, WandbLogger):  # the runs table can sort by the best a checkpoint's monitor reached
                for callback in trainer.checkpoint_callbacks:
                    if isinstance(callback, ModelCheckpoint) and callback.monitor:
                        # on Lightning's x-axis as its "*": a metric defined by name no longer takes the glob's
                        # step_metric, and its chart was drawn against wandb's own _step, unlike every other one
                        logger.experiment.define_metric(callback.monitor, step_metric="trainer/global_step",
                                                        step_sync=True, summary=f"{callback.mode},last")
            online = isinstance(logger, WandbLogger) and not getattr(logger.experiment, "offline", True)
            if online and logger.experiment.url:  # WANDB_MODE=disabled: not offline, and no url
                print(f"W&B: {logger.experiment.url}")  # W&B runs silent (WANDB_SILENT) but says where it is


def hardware(trainer) -> dict:
    """What `auto` became (a config says accelerator/devices/strategy auto), and the batch per optimizer step."""
    batch_size = getattr(trainer.datamodule, "hparams", {}).get("batch_size") if trainer.datamodule else None
    return {"accelerator": type(trainer.accelerator).__name__, "strategy": type(trainer.strategy).__name__,
            "devices": trainer.num_devices, "nodes": trainer.num_nodes, "world_size": trainer.world_size,
            "effective_batch_size": batch_size * trainer.world_size * trainer.accumulate_grad_batches
            if isinstance(batch_size, int) else None}


def git_commit() -> str | None:
    """The checkout's commit, with '-dirty' when it has uncommitted changes; None outside a git checkout."""
    root = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")


class MarkTraining(Callback):
    """Records in run.json that training began: --ckpt_path last passes over a folder left by a run that stopped
    before (killed in its set-up; a refused run's new folder is removed), which has nothing to resume."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir

    def on_train_start(self, trainer, pl_module):
        info = read_run(self.run_dir) if trainer.is_global_zero else None  # rank 0 writes run.json
        if info is not None and not info.get("trained", True) and not trainer.fast_dev_run:  # a smoke test keeps none
            write_json(self.run_dir / RUN_FILE, {**info, "trained": True})


class RunBegan(Callback):
    """The run's training (an LR finder's sweep) or evaluation began: its folder is kept whatever happens next."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir

    def on_train_start(self, trainer, pl_module):
        _fresh_runs.pop(self.run_dir, None)
        _resumed_wandb.pop(self.run_dir, None)

    def on_validation_start(self, trainer, pl_module):
        if trainer.state.fn == TrainerFn.VALIDATING:  # the validate subcommand's (a fit's come after on_train_start)
            _fresh_runs.pop(self.run_dir, None)

    def on_test_start(self, trainer, pl_module):
        _fresh_runs.pop(self.run_dir, None)


def read_run(run_dir: Path) -> dict | None:
    return read_json(run_dir / RUN_FILE)


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def describe(model_class: str) -> str:
    """'wgan' for lightning_modules.WGAN (the --system that trains it), else the class path."""
    return system_of(model_class) or model_class


def newest_last_checkpoint(root: Path, model_class: str, run_name: str | None, evaluation: bool = False) -> Path:
    """--ckpt_path last: checkpoints/last.ckpt of the newest training run of this system (or of --run_name)."""
    from lightning_modules.inference import trained_run
    system = describe(model_class)
    start = f"train one first (python train.py --system {system})" if evaluation else "start one without --ckpt_path"
    if run_name:
        run_dir = root / run_name
        if not run_dir.is_dir():
            raise UserError(f"--run_name {run_name}: no run folder {run_dir}; runs there: "
                            f"{', '.join(sorted(p.name for p in root.glob('*/') if p.is_dir())) or 'none'}")
        check_run_owner(run_dir, model_class)
        if (kind := (read_run(run_dir) or {}).get("kind", "fit")) != "fit":
            raise UserError(f"--run_name {run_name}: {run_dir} holds a {kind}, not a training run with checkpoints")
        last = run_dir / "checkpoints" / "last.ckpt"
        if not last.is_file():
            refuse_without_last(run_dir)
            fix = "give another run" if evaluation else "start a new run without --ckpt_path"
            raise UserError(f"--ckpt_path last: run {run_dir} has no checkpoints/last.ckpt (it stopped before its "
                            f"first save); {fix}")
        return last
    runs = [(info.get("started", 0.0), d) for d in (root.iterdir() if root.is_dir() else [])
            if (info := read_run(d)) and info.get("model") == model_class and trained_run(info)]
    if not runs:
        unknown = sorted(p.parent.parent for p in root.glob("*/checkpoints/last.ckpt") if read_run(p.parent.parent)
                         is None)
        hint = (f"; folders without {RUN_FILE} (older train.py): give --ckpt_path {unknown[-1]}/checkpoints/last.ckpt"
                if unknown else "")
        raise UserError(f"--ckpt_path last: no {system} run in {root} yet; {start}{hint}")
    runs.sort(key=lambda r: r[0])
    newest = runs[-1][1]
    last = newest / "checkpoints" / "last.ckpt"
    if not last.is_file():
        refuse_without_last(newest)
        older = [d.name for _, d in runs[:-1] if (d / "checkpoints" / "last.ckpt").is_file()]
        also = (f"; or resume an older run: --run_name {older[-1]} --ckpt_path last" if older else "")
        why = ("it finished without one: its config keeps no checkpoints" if (newest / "results.json").is_file()
               else "it stopped before its first save")
        raise UserError(f"--ckpt_path last: the newest {system} run, {newest}, has no checkpoint ({why}); start a "
                        f"new run without --ckpt_path{also}")
    return last


def saved_checkpoints(run_dir: Path) -> dict[Path, int]:
    """The readable checkpoints in a run's checkpoints/ folder (last.ckpt, epoch or step saves, best-*, cycle
    snapshots) and their steps."""
    steps = {path: checkpoint_step(path) for path in sorted((run_dir / "checkpoints").glob("*.ckpt"))
             if path.is_file()}
    return {path: step for path, step in steps.items() if step is not None}


def refuse_without_last(run_dir: Path) -> None:
    """A run without last.ckpt that saved nonetheless: Lightning's save_last "link" (the CycleGAN's) removes the link
    and the previous epoch's file before linking the new one, and a crash there left the run's newest save alone."""
    if saved := saved_checkpoints(run_dir):
        path = max(saved, key=saved.get)
        raise UserError(f"--ckpt_path last: run {run_dir} has no checkpoints/last.ckpt, but it saved {path.name} "
                        f"(step {saved[path]}; a crash as last.ckpt was relinked?); give --ckpt_path "
                        f"{path}")


def check_run_owner(run_dir: Path, model_class: str) -> None:
    info = read_run(run_dir)
    if info and info.get("model") and info["model"] != model_class:
        theirs = describe(info["model"])
        raise UserError(f"run folder {run_dir} belongs to a {theirs} run, this is {describe(model_class)}; "
                        f"use --system {theirs} or another --run_name")


_new_stamps: set[Path] = set()  # the folder new_time_stamped chose for the run prepare_run is choosing one for


def new_time_stamped(root: Path) -> Path:
    """root/<time stamp>, with a suffix when a job started in the same second already has that folder."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir, n = root / stamp, 1
    while run_dir.exists():
        n += 1
        run_dir = root / f"{stamp}-{n}"
    _new_stamps.add(run_dir)
    return run_dir


def missing_folders(folder: Path) -> list[Path]:
    """`folder` and the folders above it that do not exist yet: what making it makes, and a refusal removes."""
    return [f for f in (folder, *folder.parents) if not f.exists()]


def claim_time_stamped(root: Path, run_dir: Path) -> Path:
    """The new time-stamped folder `run_dir` made at once, empty, by the job's first process, so that no job started in
    the same second takes it while this one builds its model, data and Trainer (the next free name when one took it
    since its choice); a refused run removes it (discard_fresh_runs). Made only once the config was accepted, a name
    that ten jobs started together chose went to one of them, the others building everything again for the next name,
    and some gave up."""
    while True:
        made = missing_folders(run_dir)
        root.mkdir(parents=True, exist_ok=True)
        try:
            run_dir.mkdir()
        except FileExistsError:
            run_dir = new_time_stamped(root)
            continue
        _fresh_runs[run_dir] = made
        return run_dir


def new_wandb_id() -> str:
    """Eight lower-case letters and digits, the form of wandb's own run ids."""
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))


def random_seed() -> int:
    """`--seed_everything true`'s seed: a new one, or on a rank Lightning launched, rank 0's (its seed_everything set
    PL_GLOBAL_SEED before the launch). The processes torchrun or SLURM start would each draw their own: refused."""
    if launched_by_lightning("PL_GLOBAL_SEED"):
        return int(os.environ["PL_GLOBAL_SEED"])
    from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment
    # (not WORLD_SIZE alone: Lightning's own launcher leaves it set in the process that launched an in-process DDP)
    for environment, variable, launcher in ((TorchElasticEnvironment, "WORLD_SIZE", "torchrun"),
                                            (SLURMEnvironment, "SLURM_NTASKS", "the SLURM job")):
        if environment.detect() and int(os.environ.get(variable) or 1) > 1:
            raise UserError(f"--seed_everything true: each of the {os.environ[variable]} processes {launcher} started "
                            "would draw a seed of its own; give them one from the shell, --seed_everything $RANDOM "
                            "(config.yaml keeps it)")
    return secrets.randbelow(2**32)


def launched_by_lightning(variable: str) -> bool:
    """A rank that Lightning's DDP launcher started from rank 0 (LOCAL_RANK >= 1), which inherits rank 0's choices in
    `variable`; not torchrun's rank 0, nor a process that ran an in-process DDP before (both have LOCAL_RANK 0)."""
    return int(os.environ.get("LOCAL_RANK") or 0) >= 1 and variable in os.environ


def named_run(config) -> str | None:
    """--run_name, or on a rank Lightning launched, rank 0's run folder."""
    return config.run_name or (os.environ["DL2_RUN_NAME"] if launched_by_lightning("DL2_RUN_NAME") else None)


def slurm_folder() -> str | None:
    """A SLURM job's run folder, slurm-<job id>: its requeues carry on there."""
    return f"slurm-{os.environ['SLURM_JOB_ID']}" if "SLURM_JOB_ID" in os.environ else None


def run_root(config) -> Path:
    refuse_unexpanded_home(config.trainer.default_root_dir or "runs", "--trainer.default_root_dir")
    return Path(config.trainer.default_root_dir or "runs").absolute()


def import_class(class_path: str) -> type:
    """The class a config's class_path names (lightning_modules.WGAN)."""
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def model_class_of(config) -> str:
    return config.model.class_path if hasattr(config.model, "class_path") else str(config.model)


def resolve_checkpoint(config, kind: str) -> None:
    """--ckpt_path last -> the checkpoints/last.ckpt it means, the same file in every process of a job; for an
    evaluation (validate/test) also the checks of its flags."""
    root, model_class, ckpt_path = run_root(config), model_class_of(config), config.get("ckpt_path")
    if kind in EVALUATIONS:
        if not ckpt_path:  # Lightning would evaluate the untrained weights of a new model
            raise UserError(f"{kind} needs --ckpt_path: a .ckpt file, or last (the newest "
                            f"{describe(model_class)} run's; --run_name NAME --ckpt_path last: that run's)")
        if ckpt_path != "last":
            if config.run_name:
                raise UserError(f"--run_name with {kind} picks the run whose checkpoint it reads (--run_name NAME "
                                f"--ckpt_path last); the outputs go to a folder of their own, so drop --run_name here")
        elif launched_by_lightning("DL2_CKPT_PATH"):
            config.ckpt_path = os.environ["DL2_CKPT_PATH"]
        else:
            config.ckpt_path = str(newest_last_checkpoint(root, model_class, config.run_name, evaluation=True))
    elif kind == "lr_find" and ckpt_path:  # it would write into that run's folder, and the sweep never loads it
        raise UserError("--lr_find starts from new weights and writes a folder of its own; drop --ckpt_path")
    elif ckpt_path == "last":  # a SLURM requeue narrows to its own folder, a new SLURM job does not
        slurm_name = slurm_folder()
        requeue = slurm_name if slurm_name and (root / slurm_name).is_dir() else None
        config.ckpt_path = str(newest_last_checkpoint(root, model_class, named_run(config) or requeue))
    if config.get("ckpt_path"):  # a run folder stands for its last.ckpt, as for --init_from and the commands
        from lightning_modules.inference import run_folder_checkpoint
        config.ckpt_path = run_folder_checkpoint(config.ckpt_path)
        if Path(config.ckpt_path).is_dir():
            try:
                system_class = import_class(model_class)
            except (ImportError, AttributeError, ValueError):  # a user's class path: Lightning's error names it
                system_class = None
            if system_class is not None:
                refuse_reference_resume(config.ckpt_path, system_class)
            raise UserError(f"--ckpt_path {config.ckpt_path}: a folder without checkpoints/last.ckpt; give a .ckpt "
                            "file, a run folder or 'last' for the newest run")
        if not Path(config.ckpt_path).is_file():
            raise UserError(f"--ckpt_path {config.ckpt_path}: no such file; give a .ckpt file or 'last' for the "
                            "newest run")


def refuse_exported_resume(state: dict, path: str) -> None:
    """A fit's --ckpt_path, read: dl2-export's weights-only file holds no optimizer states, loops or counters, so a fit
    cannot resume from it, but can start from its weights."""
    from lightning_modules.export import EXPORT_KEY
    if EXPORT_KEY in state:
        raise UserError(f"--ckpt_path {path} is an exported weights file (dl2-export): no optimizer states or training "
                        f"progress to resume; start a new run from its weights with --init_from {path}")


def check_checkpoint_class(config, kind: str) -> None:
    """A native subcommand's --ckpt_path: a readable checkpoint of the config's model class (and for fit, one it can
    resume). Lightning 2.6 builds the checkpoint's own class over the config's, so another system's checkpoint met the
    config's data module and trainer (a CycleGAN tested on CIFAR-10: a traceback from its test step; a WGAN validated
    on horse2zebra)."""
    from lightning_modules.inference import read_checkpoint, run_config_file, saved_class
    path = config.get("ckpt_path")
    if not path:
        return
    state = read_checkpoint(path)
    if kind not in EVALUATIONS:
        refuse_exported_resume(state, path)
    saved, model_class = saved_class(state), model_class_of(config)
    theirs, ours = (name.rpartition(".")[2] if name else None for name in (saved, model_class))
    if saved and theirs != ours:
        run_config = run_config_file(path)
        system = system_of(saved)
        fix = (f"give its run's config, --config {run_config}" if run_config is not None
               else f"give its system's config, --config configs/{system}.yaml" if system
               else "give the config that trained it")
        raise UserError(f"--ckpt_path {path} is a {theirs} checkpoint, but the config's model is a {ours}; {fix}")


def fit_folder(config, root: Path, model_class: str) -> Path:
    """fit and lr_find: the run folder, a resumed run's own, --run_name's, a SLURM job's or a new time stamp."""
    run_name, slurm_name, ckpt_path = named_run(config), slurm_folder(), config.get("ckpt_path")
    own_folder = Path(ckpt_path).absolute().parent.parent if ckpt_path else None
    if own_folder is not None and Path(ckpt_path).parent.name == "checkpoints" and (
            run_name is None or own_folder.name == run_name):
        run_dir = own_folder  # a resumed run carries on in its own folder
        check_run_owner(run_dir, model_class)
        if not (slurm_restart() and resume_own_newest(config, run_dir)):
            check_not_earlier(Path(ckpt_path), run_dir)
    elif run_name or slurm_name:
        run_dir = root / (run_name or slurm_name)
        if read_run(run_dir) is not None:
            check_run_owner(run_dir, model_class)
            # a SLURM requeue: the same job carries on in its folder (SLURM counts the restarts); a job's earlier
            # training (a second train.py in one sbatch script or salloc shell) is no requeue
            requeued = slurm_restart()
            # a run that stopped before training (a typo'd path) may be retried in its folder: nothing to lose
            retry = not read_run(run_dir).get("trained", True) and not ckpt_path
            # the other ranks follow rank 0 (a rank Lightning launched has LOCAL_RANK >= 1: never global rank zero)
            if global_rank_zero() and not (requeued or retry):
                if not run_name:
                    raise UserError(f"run folder {run_dir} holds an earlier training of SLURM job "
                                    f"{os.environ['SLURM_JOB_ID']}, and this is no requeue of the job "
                                    f"(SLURM_RESTART_COUNT unset); give each training of a job its own --run_name, "
                                    f"or resume that run with --run_name {run_dir.name} --ckpt_path last")
                raise UserError(f"run folder {run_dir} exists already; resume it with --run_name {run_dir.name} "
                                f"--ckpt_path last, or choose another --run_name")
            if requeued:
                resume_own_newest(config, run_dir)
    else:
        run_dir = new_time_stamped(root)
    return run_dir


def slurm_restart() -> bool:
    """A SLURM requeue of this job (SLURM counts the restarts)."""
    return slurm_folder() is not None and int(os.environ.get("SLURM_RESTART_COUNT", 0)) > 0


def resume_own_newest(config, run_dir: Path) -> bool:
    """A requeued job carries on from its run's own newest state, whatever --ckpt_path its command line gave (the
    checkpoint it began from: read again, it would undo the job's training): of Lightning's hpc_ckpt files (its saves
    on SLURM's time-limit signal), checkpoints/last.ckpt and the other saves there (a crash as Lightning's save_last
    "link" relinked last.ckpt left none: refuse_without_last), the one of the latest step (Lightning would take its
    newest hpc_ckpt, however old: a requeue after a later preemption went back to it). False when the job saved nothing
    yet."""
    last = run_dir / "checkpoints" / "last.ckpt"
    saved = [path for path in (*run_dir.glob("hpc_ckpt_*.ckpt"), *(run_dir / "checkpoints").glob("*.ckpt"))
             if path.is_file()]  # last.ckpt among them
    if not saved:
        return False
    steps = {path: checkpoint_step(path) for path in saved}  # None: torn (a crash mid-save), taken only if alone
    config.ckpt_path = str(max(saved, key=lambda path: (-1 if steps[path] is None else steps[path], path == last)))
    if config.get("init_from"):  # the job began from those weights, and its checkpoint carries them on: loading
        config.init_from = None  # them again would undo its training
    return True


def mapped_checkpoint(path: Path) -> dict | None:
    """A checkpoint's contents, memory-mapped (no tensor is read), or None for a file that is not one."""
    for mmap in (True, False):  # files of torch.save's legacy (non-zip) format cannot be memory-mapped
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=mmap)
        except Exception:
            continue
        return checkpoint if isinstance(checkpoint, dict) else None
    return None


def checkpoint_step(path: Path) -> int | None:
    """A checkpoint's global_step, or None for a file that is not one."""
    checkpoint = mapped_checkpoint(path)
    return None if checkpoint is None else checkpoint.get("global_step")


def checkpoint_batches(path: Path, accumulate_grad_batches: int = 1) -> int | None:
    """The step a fit resumed from the checkpoint logs its first batch at (the batches it had trained), or None when
    it does not say. Lightning counts a batch at its very end, after on_train_batch_end: a save there (TimedSave,
    SaveOnStop under DDP, a ModelCheckpoint of every_n_train_steps) holds one batch less, which the resume adds
    (Lightning's _TrainingEpochLoop.reset: unless the save came after the batch's end, or mid-accumulation)."""
    try:
        loop = mapped_checkpoint(path)["loops"]["fit_loop"]
        batches, progress = loop["epoch_loop.state_dict"]["_batches_that_stepped"], loop["epoch_loop.batch_progress"]
        total = progress["total"]
        after_the_batch = total["ready"] == total["started"] == total["processed"] == total["completed"]
        # Lightning steps the optimizer at an epoch's last batch whether or not the accumulation is complete
        accumulating = progress["current"]["ready"] % accumulate_grad_batches != 0 and not progress["is_last_batch"]
        return batches if after_the_batch or accumulating else batches + 1
    except Exception:
        return None


def check_not_earlier(checkpoint: Path, run_dir: Path) -> None:
    """A fit from a run's own earlier checkpoint (best-*.ckpt, a cycle snapshot) would carry on in that folder and
    replace its later last.ckpt, test outputs and results.json: refused, with the form that keeps them."""
    last = run_dir / "checkpoints" / "last.ckpt"
    if checkpoint.absolute() == last.absolute() or not last.is_file():
        return
    step, newest = checkpoint_step(checkpoint), checkpoint_step(last)
    if step is not None and newest is not None and step < newest:
        raise UserError(f"--ckpt_path {checkpoint}: an earlier checkpoint of run {run_dir.name} (step {step}; the run "
                        f"is at step {newest}); carried on in that folder it would replace the run's later checkpoints "
                        f"and results. Add --run_name NEW to carry it on in a new run folder")


def evaluation_folder(config, root: Path, kind: str) -> Path:
    """validate/test: a folder of its own for the outputs, never the checkpoint's run, whose config.yaml and
    test outputs they would replace. DDP's launched ranks take rank 0's; a SLURM job step's tasks (and a requeue)
    meet in slurm-<job id>[-<step>]-<kind>, which refuses another checkpoint's evaluation."""
    os.environ["DL2_CKPT_PATH"] = config.ckpt_path  # inherited by the ranks Lightning launches
    # the checkpoint's ModelCheckpoint state names its own run's folder, which Lightning warns about
    warnings.filterwarnings("ignore", message=r"The dirpath has changed from")
    if launched_by_lightning("DL2_RUN_NAME"):
        return root / os.environ["DL2_RUN_NAME"]
    if (slurm_name := slurm_folder()) is None:
        return new_time_stamped(root)
    step = os.environ.get("SLURM_STEP_ID", "")
    run_dir = root / f"{slurm_name}{'-' + step if step.isdigit() else ''}-{kind}"
    earlier = (read_run(run_dir) or {}).get("checkpoint")
    if earlier and earlier != str(Path(config.ckpt_path).absolute()):  # every task reads the same run.json
        raise UserError(f"{run_dir} holds this job's {kind} of {earlier}; run each {kind} in a step of its own "
                        f"(srun), or give this one another --trainer.default_root_dir")
    return run_dir


@dataclass
class RunPlan:
    """A run folder chosen by prepare_run, and what make_run_folder writes there once the config is accepted."""
    run_dir: Path
    kind: str
    info: dict
    wandb_dir: Path | None = None
    wandb_id: str | None = None
    notes: list[str] = field(default_factory=list)  # printed when the folder is made, not for a refused run


def prepare_run(config, kind: str = "fit", make: bool = True) -> RunPlan:
    """Point checkpoints, logs and results at one run folder and W&B run; offline when wandb is not logged in.
    With make (the default) the folder is made at once; else make_run_folder makes it, once the config is accepted.

    kind: fit, lr_find, or the LightningCLI subcommand validate/test, which gets a folder of its own (not
    the checkpoint's run, whose config.yaml and test outputs it would replace)."""
    trainer, root, model_class = config.trainer, run_root(config), model_class_of(config)
    check_output_folder(root, "--trainer.default_root_dir")  # a dangling link or a read-only folder: one line
    # DDP's re-launched ranks (LOCAL_RANK set by Lightning's launcher) and SLURM tasks must all agree on the
    # folder, hence no per-process clock for them
    _new_stamps.clear()
    if kind in EVALUATIONS:
        run_dir = evaluation_folder(config, root, kind)
    else:
        run_dir = fit_folder(config, root, model_class)
    if run_dir in _new_stamps and global_rank_zero():  # torchrun's other ranks choose their own, and write nothing
        run_dir = claim_time_stamped(root, run_dir)
    os.environ["DL2_RUN_NAME"] = run_dir.name  # inherited by the ranks Lightning launches
    trainer.default_root_dir = str(run_dir)
    for callback in trainer.callbacks or []:
        if callback.class_path.endswith("ModelCheckpoint") and not callback.init_args.get("dirpath"):
            callback.init_args.dirpath = str(run_dir / "checkpoints")
        elif callback.class_path.endswith("ModelCheckpoint"):
            refuse_unexpanded_home(callback.init_args.dirpath, "--trainer.callbacks.dirpath")
    info = read_run(run_dir) or {"system": describe(model_class), "model": model_class, "started": time.time(),
                                 "kind": kind, "trained": False}
    if kind in EVALUATIONS:
        info["checkpoint"] = str(Path(config.ckpt_path).absolute())
    plan = RunPlan(run_dir, kind, info)
    if trainer.get("enable_checkpointing") is False:  # Lightning refuses the flag beside the config's ModelCheckpoint
        trainer.callbacks = [c for c in trainer.callbacks or [] if not c.class_path.endswith("ModelCheckpoint")]
    loggers = trainer.logger if isinstance(trainer.logger, list) else [trainer.logger]  # a config's list of loggers
    loggers = [logger for logger in loggers if logger not in (False, None)]
    if not loggers:  # LearningRateMonitor refuses to run without a logger
        trainer.callbacks = [c for c in trainer.callbacks or [] if not c.class_path.endswith("LearningRateMonitor")]
    wandb_loggers = [logger for logger in loggers if getattr(logger, "class_path", "").endswith("WandbLogger")]
    if wandb_loggers:  # the first: two would share the run's W&B id
        args = wandb_loggers[0].init_args
        if args.get("save_dir") in (None, "."):
            args.save_dir = str(run_dir)
        refuse_unexpanded_home(args.save_dir, "--trainer.logger.save_dir")
        plan.wandb_dir = Path(args.save_dir, "wandb")  # older wandb falls back to /tmp without it
        # a resume keeps the name the run began with (wandb renames the run to the name it is given); wandb's own
        # variables (WANDB_NAME, WANDB_TAGS, WANDB_RUN_GROUP, WANDB_JOB_TYPE) stand for the options not given, as
        # wandb.init reads them: the values set here in their place had them ignored
        args.name = args.get("name") or os.environ.get("WANDB_NAME") or info.get("wandb_name") or run_dir.name
        # a W&B run open in this process (a notebook's wandb.init, or an earlier plain Trainer's WandbLogger, which
        # leaves its run open): Lightning's WandbLogger logs into it whatever it is given, so run.json names that run,
        # where a resume goes on; a resume of a run of another W&B id would log into it and is refused
        callers_run = open_run = current_wandb_run() if global_rank_zero() else None
        if open_run is not None and getattr(open_run, "disabled", False):  # wandb.init(mode="disabled"): no W&B run
            plan.notes.append("W&B: a disabled W&B run is open in this process (wandb.init(mode=\"disabled\")), which "
                              "Lightning's WandbLogger logs into: nothing of this run goes to W&B; call wandb.finish() "
                              "before train.main to log it")
            open_run = None  # its id, project and entity ("dummy") are no W&B run's to resume in
        if open_run is not None and info.get("wandb_id") not in (None, open_run.id):
            raise UserError(f"a W&B run is open in this process ({open_run.id}, project {open_run.project}): "
                            f"Lightning's WandbLogger would log this run, W&B run {info['wandb_id']}, into it; call "
                            f"wandb.finish() first (or --trainer.logger false)")
        if open_run is not None:
            info.update(wandb_id=open_run.id, wandb_project=open_run.project or None,
                        wandb_entity=open_run.entity or None)
            args.id, args.name = open_run.id, open_run.name or args.name
            plan.notes.append(f"W&B: logging into the W&B run open in this process, {open_run.id} (project "
                              f"{open_run.project}), as Lightning's WandbLogger does; call wandb.finish() before "
                              f"train.main for a W&B run of its own")
        info["wandb_name"] = args.name
        # a resume goes on in the W&B run the run began, as run.json keeps it: a run id names a run of one project, so
        # a resume without the first part's --trainer.logger.project/entity logged into a new run of the config's
        # project; and wandb replaces a resumed run's tags with those given (the system's alone)
        for key in ("project", "entity"):
            if info.get(f"wandb_{key}") is not None:
                setattr(args, key, info[f"wandb_{key}"])
            elif os.environ.get("WANDB_SWEEP_ID") and os.environ.get(f"WANDB_{key.upper()}"):
                # a sweep agent's run, which wandb logs in the sweep's project and entity (the agent sets them),
                # whatever it is given: a later resume of its folder outside the agent went to the config's
                setattr(args, key, os.environ[f"WANDB_{key.upper()}"])
            elif key == "entity" and not args.get("entity") and os.environ.get("WANDB_ENTITY"):
                args.entity = os.environ["WANDB_ENTITY"]  # wandb.init's for an entity not given: where the run is
            info[f"wandb_{key}"] = args.get(key)
        # the dashboard can filter by system (beside the tags given) and tell a fit from a test or an LR finder's run
        tags = [tag for tag in args.get("tags") or env_tags() if tag != info["system"]] or info.get("wandb_tags") or []
        args.tags = [info["system"], *tags]
        info["wandb_tags"] = tags
        args.group = args.get("group") or os.environ.get("WANDB_RUN_GROUP") or info.get("wandb_group")
        info["wandb_group"] = args.group
        args.job_type = args.get("job_type") or os.environ.get("WANDB_JOB_TYPE") or kind
        if args.get("id") or args.get("version"):  # the user's id, kept for a resume that does not give it again
            info.setdefault("wandb_id", args.get("id") or args.get("version"))
        else:  # one W&B run per run folder, across resumes
            # a W&B sweep's agent gives each run its id (WANDB_RUN_ID), and wandb.init ignores any other there
            info.setdefault("wandb_id", os.environ.get("WANDB_RUN_ID") or new_wandb_id())
            args.id = info["wandb_id"]
        # the W&B run this train.main begins, ended (and removed) if the run is refused before it begins; never the
        # caller's open run, which it only logs into
        plan.wandb_id = None if callers_run is not None else args.get("id") or args.get("version")
        if os.environ.get("WANDB_MODE", "").lower() in ("offline", "dryrun"):
            args.offline = True  # as wandb will run: the logged config said offline: false under WANDB_MODE=offline
        if not args.get("offline") and global_rank_zero() and not wandb_logged_in():  # only rank 0 logs
            args.offline = True
            plan.notes.append(f"W&B: not logged in (`wandb login`), logging offline to {plan.wandb_dir}; "
                              f"upload later with `wandb sync {plan.wandb_dir}/offline-run-*`")
        forget_wandb_settings(bool(args.get("offline")))
        if args.get("offline") and args.get("log_model"):  # WandbLogger refuses the pair; checkpoints stay local
            args.log_model = False
            plan.notes.append("W&B: offline, so --trainer.logger.log_model is off (the checkpoints stay in the run "
                              "folder)")
    for logger in loggers:  # <save_dir>/<system>/<run name>/: a resume goes on in the run's TensorBoard folder
        if getattr(logger, "class_path", "").endswith("TensorBoardLogger"):  # (Lightning's: lightning_logs/version_N)
            if logger.init_args.get("name") in (None, "lightning_logs"):
                logger.init_args.name = info["system"]
            if logger.init_args.get("version") is None:
                logger.init_args.version = run_dir.name
    check_run_folders(run_dir, [Path(c.init_args.dirpath) for c in trainer.callbacks or []
                                if c.class_path.endswith("ModelCheckpoint")], plan.wandb_dir)
    documented_ddp_strategy(config)  # --trainer.strategy ddp -> ddp_find_unused_parameters_true for the GANs
    add_progress_bar(trainer)  # the training signal, read once per logging interval; plain lines off a terminal
    if make:
        make_run_folder(plan)
    return plan


def env_tags() -> list[str]:
    """WANDB_TAGS's tags, comma-separated as wandb reads them."""
    return [tag.strip() for tag in os.environ.get("WANDB_TAGS", "").split(",") if tag.strip()]


def check_run_folders(run_dir: Path, checkpoint_dirs: list[Path], wandb_dir: Path | None) -> None:
    """The run folder and the folders the run writes into (checkpoints, images, the style's results, W&B's): a file
    standing where one goes, or above one (a --trainer.callbacks.dirpath or --trainer.logger.save_dir below a file),
    stopped the run with a traceback when first written to, the checkpoints' after the first epoch's training, the
    images' in the test after the fit. Refused before the run's folder is made."""
    inside = [run_dir / "images", run_dir / "stylized"]
    outside = [*((d, "--trainer.callbacks.dirpath", d) for d in checkpoint_dirs),
               *([(wandb_dir, "--trainer.logger.save_dir", wandb_dir.parent)] if wandb_dir is not None else [])]
    refuse_a_file_on_the_way(run_dir, "--run_name", "")
    for folder, option, given in outside:  # the option that moves it, and its value, unless in the run folder
        if not folder.is_relative_to(run_dir):
            refuse_a_file_on_the_way(folder, option, f"{option} {given}: ")
            # in another run's folder: its last.ckpt and best-*.ckpt replaced by this run's, Lightning said no more
            # than "exists and is not empty"
            other = next((part for part in (folder, *folder.parents) if (part / RUN_FILE).is_file()), None)
            if other is not None:
                raise UserError(f"{option} {given}: {other} is the folder of another run ({RUN_FILE} there), whose "
                                f"files this run's would replace or mix with; give a folder outside it")
        else:
            inside.append(folder)
    for folder in inside:
        refuse_a_file_on_the_way(folder, "--run_name", f"run folder {run_dir}: ")


# run folder -> the folders made for it by make_run_folder or claim_time_stamped (the run folder, then those above it
# that it made), while a refusal of the run would discard them: until its training or evaluation begins (RunBegan)
_fresh_runs: dict[Path, list[Path]] = {}
# run folder -> its W&B run id, for the fresh ones: wandb.run may be an earlier run's (train.main twice in a notebook)
_fresh_wandb: dict[Path, str] = {}
# run folder -> its W&B run id and wandb's links in its W&B folder (latest-run, debug.log) as they were, for a run
# folder there before (a resume) until its training begins (RunBegan)
_resumed_wandb: dict[Path, tuple[str, dict[Path, str]]] = {}


def make_run_folder(plan: RunPlan) -> None:
    """The run folder of a run whose config was accepted: its lock (a fit's), its W&B folder and run.json, made by the
    job's first process (the others follow it and write nothing). A folder made here (or a new time-stamped one,
    claimed when its name was chosen) is discarded if the run is refused before its training or evaluation begins
    (discard_fresh_runs)."""
    if not global_rank_zero():  # the rank that logs; torchrun's others choose their own time stamps and write nothing
        return
    run_dir = plan.run_dir
    made = missing_folders(run_dir)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        run_dir.mkdir()
    except FileExistsError:  # a folder of its own before (a resume, a retry, a SLURM job's tasks' meeting place), or
        made = []  # a new time stamp claimed by prepare_run, already in _fresh_runs
    if plan.kind not in EVALUATIONS:  # before anything is written or printed for this run
        try:
            hold_run_lock(run_dir)
        except UserError:  # another process trains there: a folder this one made or claimed is that one's now
            _fresh_runs.pop(run_dir, None)
            raise
    if made:
        _fresh_runs[run_dir] = made
    for note in plan.notes:
        print(note)
    if plan.wandb_dir is not None:
        wandb_made = missing_folders(plan.wandb_dir)
        plan.wandb_dir.mkdir(parents=True, exist_ok=True)
        if run_dir in _fresh_runs:  # a save_dir of the user's outside the run folder: emptied ones go too
            _fresh_runs[run_dir] += [folder for folder in wandb_made if run_dir not in folder.parents]
            if plan.wandb_id:
                _fresh_wandb[run_dir] = plan.wandb_id
        elif plan.wandb_id and plan.kind not in EVALUATIONS:
            links = {link: os.readlink(link) for link in plan.wandb_dir.iterdir() if link.is_symlink()}
            _resumed_wandb[run_dir] = (plan.wandb_id, links)
    write_json(run_dir / RUN_FILE, plan.info)


def discard_fresh_runs() -> list[Path]:
    """A refused run, or one stopped before it began, leaves nothing behind: the folders its make_run_folder made,
    when its training or evaluation never began and they hold no checkpoint or results (its W&B run is ended first:
    it writes there). A folder that was there before (a resume, a retry under --run_name) is never touched, nor a
    folder made above it that another process has written into since. Returns the run folders removed."""
    if not _fresh_runs:
        return []
    run = current_wandb_run()
    # the W&B run of a fresh run (in a notebook wandb.run may be an earlier run's, which is left alone)
    owner = next((d for d in _fresh_runs if run is not None and _fresh_wandb.get(d) == getattr(run, "id", None)), None)
    wandb_run = end_wandb_run(run, exit_code=2) if owner is not None else None
    removed = []
    for run_dir, made in _fresh_runs.items():
        if any(run_dir.rglob("*.ckpt")) or (run_dir / "results.json").exists():
            continue
        # under its lock: a retry under its name meanwhile is refused, not left training in a folder being removed
        shutil.rmtree(run_dir, ignore_errors=True)
        removed.append(run_dir)
        if run_dir == owner and wandb_run is not None and run_dir not in wandb_run.parents:  # a save_dir of the
            remove_wandb_run(wandb_run)                                                       # user's: it goes too
        for folder in sorted(made[1:], key=lambda f: len(f.parts), reverse=True):  # one that is not empty stays
            with contextlib.suppress(OSError):
                folder.rmdir()
    release_run_locks()
    _fresh_runs.clear()
    _fresh_wandb.clear()
    return removed


def discard_refused_resume() -> None:
    """A resume refused before its training began (the style's image of another size, found as the checkpoint is
    restored), or one with nothing left to train, leaves its run's W&B run as it was: Lightning had reopened it, and
    it ended as failed, with a new local folder (offline, one more to `wandb sync`). It is ended as the run's earlier
    part ended it, and this process's folder of it goes (wandb's links beside it point where they pointed before)."""
    run = current_wandb_run()
    links = next((links for wandb_id, links in _resumed_wandb.values() if wandb_id == getattr(run, "id", None)), None)
    if run is not None and links is not None:
        folder = end_wandb_run(run, exit_code=0)
        # wandb names a folder by the second the run began: a part begun in the earlier part's second shares its folder
        if folder is not None and folder.name not in {Path(target).parts[0] for target in links.values() if target}:
            remove_wandb_run(folder)
            for link, target in links.items():
                with contextlib.suppress(OSError):
                    link.unlink(missing_ok=True)
                    link.symlink_to(target)
    _resumed_wandb.clear()


def end_wandb_run(run, exit_code: int) -> Path | None:
    """End the W&B run `run` (wandb.finish) and return its folder, offline-run-<time>-<id>/ in the W&B save_dir;
    None when it cannot be read. The run is ended first: it writes there."""
    folder = None
    with contextlib.suppress(Exception):
        folder = Path(run.dir).parent
    with contextlib.suppress(Exception):
        sys.modules["wandb"].finish(exit_code=exit_code)
    return folder


def remove_wandb_run(folder: Path) -> None:
    """A W&B run's folder and wandb's links beside it that point into it (latest-run, debug.log, debug-internal.log),
    which would dangle."""
    real = Path(os.path.realpath(folder))
    shutil.rmtree(folder, ignore_errors=True)
    for link in folder.parent.iterdir() if folder.parent.is_dir() else []:
        target = Path(os.path.realpath(link))
        if link.is_symlink() and (target == real or real in target.parents):
            with contextlib.suppress(OSError):
                link.unlink()


_held_locks: dict[Path, object] = {}  # run folder -> its open lock file, held while this process trains there
LOCK_PATIENCE_SECONDS = 120


def hold_run_lock(run_dir: Path) -> None:
    """An exclusive lock on <run>/.lock while this process trains there (released by the OS when it exits, however
    it ends): a second process resuming the same run (`--ckpt_path last` in another terminal, a second job) is
    refused instead of writing the same checkpoints. Where the filesystem has no locks, nothing is checked."""
    try:
        import fcntl
    except ImportError:  # Windows
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = open(run_dir / ".lock", "a+")
    # a requeued SLURM job's earlier allocation has ended: a lock still held is a dead node's on NFS, which the
    # server keeps until its lease runs out (about 90 s on NFSv4); wait that out, then go on
    deadline = time.monotonic() + (LOCK_PATIENCE_SECONDS if slurm_restart() else 0)
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() < deadline:
                time.sleep(5)
                continue
            lock.seek(0)
            holder = lock.read().strip() or "unknown"
            lock.close()
            if slurm_restart():
                print(f"warning: {run_dir / '.lock'} is still held ({holder}) after {LOCK_PATIENCE_SECONDS} s; this "
                      f"requeued job goes on without it", file=sys.stderr)
                return
            raise UserError(f"run {run_dir} is being trained by another process ({holder}, which holds "
                            f"{run_dir / '.lock'}); wait for it to end or stop it, or train another run (--run_name "
                            f"NEW)") from None
        except OSError:  # no locks on this filesystem
            lock.close()
            return
    lock.seek(0)
    lock.truncate()
    job = f", SLURM job {os.environ['SLURM_JOB_ID']}" if "SLURM_JOB_ID" in os.environ else ""
    lock.write(f"pid {os.getpid()} on {socket.gethostname()}{job}\n")
    lock.flush()
    _held_locks[run_dir] = lock
    for folder in (run_dir, run_dir / "checkpoints"):  # what the earlier processes killed mid-save left
        remove_stale_temporaries(folder)


def release_run_locks() -> None:
    """At the end of a run in this process (a second run of the same process may resume it), and in a forked child (a
    DataLoader worker): a flock lock belongs to the open file, which the child shares, so workers left running by a
    kill -9 held the run for seconds after its end."""
    for lock in _held_locks.values():
        lock.close()
    _held_locks.clear()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=release_run_locks)


def wandb_logged_in() -> bool:
    """wandb's own check (API key, netrc, settings file, identity token) without a prompt or the network.

    WANDB_MODE set means the user has decided (offline, disabled or online): the logger is left as configured.
    """
    if os.environ.get("WANDB_MODE"):
        return True
    import wandb
    if wandb.run is not None:  # a run the caller began (wandb.init in a notebook), which the logger logs into: the
        return True             # check's teardown below would end it
    wandb.teardown()  # set up by an earlier run of the process (offline: wandb warned it could not verify a login)
    try:
        logged_in = bool(wandb.login(prompt=False, verify=False))
    except TypeError:  # wandb before login(prompt=...) (0.19 at the floor): its API's stored key, no prompt
        logged_in = bool(wandb.api.api_key)
    wandb.teardown()  # the check fixed wandb's settings (mode) for the process; the logger's wandb.init re-reads them
    return logged_in


def forget_wandb_settings(offline: bool) -> None:
    """Before the logger's wandb.init: wandb reads its environment (WANDB_MODE, through which WandbLogger makes a run
    offline; WANDB_RUN_ID, WANDB_SWEEP_ID, ...) once per process, as it is first set up. Set up earlier (a notebook's
    wandb.init, a run before `%env WANDB_MODE=...`, a sweep run's), it kept those: online, it asked for a login; a
    sweep's run id stood in for the next run's. Its set-up is dropped when the environment changed since or its mode is
    not the run's (kept otherwise: a notebook's wandb.setup with its server's base_url), unless a run of the caller's
    is open. An older wandb, whose set-up cannot be read here, is always set up afresh."""
    wandb = sys.modules.get("wandb")
    if wandb is None or getattr(wandb, "run", None) is not None or not hasattr(wandb, "teardown"):
        return
    setup = sys.modules.get("wandb.sdk.wandb_setup")
    if setup is not None and hasattr(setup, "_singleton"):
        singleton = setup._singleton
        if singleton is None or getattr(singleton, "_pid", None) != os.getpid():
            return  # not set up in this process: wandb.init reads the environment
        def mode(value) -> str:
            return {"dryrun": "offline"}.get(str(value).lower(), str(value).lower())
        wanted = os.environ.get("WANDB_MODE") or ("offline" if offline else "online")
        changed = getattr(singleton, "did_environment_change", None)
        if mode(getattr(singleton.settings, "mode", None)) == mode(wanted) and callable(changed) and not changed():
            return
    wandb.teardown()


def plain_value(value):
    """numpy's and torch's numbers and arrays as Python's (np.int64(5) is 5, not the string "5"), tuples as lists."""
    if callable(getattr(value, "tolist", None)):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [plain_value(item) for item in value]
    if isinstance(value, dict):
        return {key: plain_value(item) for key, item in value.items()}
    return value


def json_default(value):  # json.dumps's for what it cannot write: numpy's and torch's as Python's, others as text
    return value.tolist() if callable(getattr(value, "tolist", None)) else str(value)


def option_value(value) -> str:
    """A value as on the command line: a string as it is, others as JSON (null, [1, 2]); a tuple and a list of the same
    values are the same option."""
    try:
        return value if isinstance(value, str) else json.dumps(value, default=json_default)
    except (TypeError, ValueError):  # a dict with tuple keys, a circular value: a user module's, as Python shows it
        return repr(value)


def network_fix(path: str, state: dict, model, for_init: bool) -> str:
    """The fix for a checkpoint of another network: the config.yaml of its run folder, else (an export, a copied
    file) the --model options its saved hyper-parameters hold that differ from this model's: a config path that is
    not there fixes nothing."""
    from lightning_modules.export import EXPORT_KEY
    from lightning_modules.inference import run_config_file
    config = run_config_file(path)
    if config is not None:
        return (f"--init_from needs the same network: give the --model options of its config {config}" if for_init
                else f"resume with its config: --config {config} --ckpt_path {path}")
    saved = state.get("hyper_parameters") or {}
    ours = dict(getattr(model, "hparams", None) or {})
    flags = " ".join(f"--model.{k} {shlex.quote(option_value(v))}" for k, v in saved.items()
                     if not k.startswith("_") and k in ours and option_value(ours[k]) != option_value(v))
    # a reference's file (junyanz's, the WassersteinGAN's) has no hyper-parameters: its reader counted the sizes
    origin = (state.get(EXPORT_KEY) or {}).get("sizes", "from its hyper-parameters")
    options = f"--model options it was trained with ({flags}, {origin})" if flags else \
        "--model options it was trained with"
    return (f"--init_from needs the same network: give the {options}" if for_init
            else f"resume with the {options} and --ckpt_path {path}")


def changed_options(state: dict, model, datamodule) -> list[tuple[str, object, object]]:
    """The model and data options a resume gives other values than its checkpoint's hyper-parameters (Lightning saves
    the model's and the data module's): (flag, the run's value, this resume's). An option only one side has (added
    or dropped since) is left out, and so are Lightning's and LightningCLI's own entries (`_class_path`, ...), but for
    another data module class."""
    changed = []
    for group, key, part in (("model", "hyper_parameters", model), ("data", "datamodule_hyper_parameters", datamodule)):
        saved = state.get(key) or {}
        ours = dict(getattr(part, "hparams", None) or {}) if part is not None else {}
        theirs_class, our_class = saved.get("_class_path"), ours.get("_class_path")
        if group == "data" and theirs_class and our_class and \
                theirs_class.rpartition(".")[2] != our_class.rpartition(".")[2]:
            changed.append(("--data", theirs_class, our_class))
        for name, value in saved.items():
            if name.startswith("_") or name not in ours:
                continue
            theirs, here = plain_value(value), plain_value(ours[name])
            if theirs != here and option_value(theirs) != option_value(here):  # 1 and 1.0 are the same lr
                changed.append((f"--{group}.{name}", value, ours[name]))
    return changed


def changed_options_warning(path: str, state: dict, model, datamodule, subcommand: str = "",
                            configs=()) -> str | None:
    """A resume whose --model/--data options differ from the run's: the warning that names each with both values and
    the command that resumes as the run began; None when none differs. A resume may change some on purpose (another
    batch size), and goes on with its own values; one that forgot an option of the run's start (its --data.style)
    would go on with the default without a word. `configs`: the --config files this resume gives."""
    from lightning_modules.inference import run_config_file
    changed = changed_options(state, model, datamodule)
    if not changed:
        return None
    listed = "; ".join(f"{flag}: the run's {shlex.quote(option_value(theirs))}, this resume's "
                       f"{shlex.quote(option_value(ours))}" for flag, theirs, ours in changed)
    config = run_config_file(path)
    if config is not None and any(Path(str(given)).resolve() == config.resolve() for given in configs):
        how = (f"this resume gives the run's config {config} already: the run's values above are its checkpoint's, "
               f"which an earlier resume may have changed (its config-resume-step*.yaml beside it)")
    elif config is not None:
        how = resume_as_begun(config, path, subcommand)
    else:  # an export or a copied file: the checkpoint's values themselves
        flags = " ".join(f"{flag} {shlex.quote(option_value(theirs))}" for flag, theirs, _ in changed)
        how = f"to resume with the run's values, give {flags} --ckpt_path {path}"
    return (f"--ckpt_path {path}: this resume's options differ from the run's (its checkpoint's hyper-parameters): "
            f"{listed}. The resume goes on with this resume's values (a resume may change some on purpose, e.g. "
            f"--data.batch_size); {how}")


def resume_config_hint(config, fit: bool, subcommand: str = "") -> str | None:
    """A resume refused as its model or data module are built (the style's --model.vgg_weights the run began with
    given no more, its ImageNet weights not on this machine): the run's config.yaml, which resumes as it began; None
    when this is no resume, the run has none, or this resume gives it already."""
    from lightning_modules.inference import run_config_file
    path = config.get("ckpt_path")
    if not fit or not path or not Path(str(path)).is_file():
        return None
    run_config = run_config_file(str(path))
    if run_config is None or any(Path(str(given)).resolve() == run_config.resolve()
                                 for given in config.get("config") or ()):
        return None
    return f"this resumes {path}: {resume_as_begun(run_config, path, subcommand)}"


def resume_as_begun(config: Path, path: str, subcommand: str = "") -> str:
    """The command that resumes the checkpoint `path` with its run's config.yaml `config`."""
    try:  # a fine-tuned run's config names its --init_from, which a resume must drop
        init_from = (yaml.safe_load(config.read_text()) or {}).get("init_from")
    except (OSError, yaml.YAMLError, AttributeError):
        init_from = None
    return (f"to resume as the run began, give its config: python train.py {subcommand}--config {config} "
            f"--ckpt_path {path}{' --init_from null' if init_from else ''}")


class WarnChangedOptions(Callback):
    """Says changed_options_warning's warning once (rank 0) as the fit starts: after the checkpoint's checks and the
    set-up, whose refusals of the resume come alone, before the first batch."""

    def __init__(self, message: str):
        self.message = message

    def on_fit_start(self, trainer, pl_module):
        rank_zero_warn(self.message)


def warn_changed_options(trainer, path: str, state: dict, model, datamodule, subcommand: str = "", configs=()) -> None:
    """A resume's options that differ from its checkpoint's: warned of as the fit starts (WarnChangedOptions)."""
    if message := changed_options_warning(path, state, model, datamodule, subcommand, configs):
        trainer.callbacks.append(WarnChangedOptions(message))


def check_checkpoint(path: str, model, system: str, for_init: bool = False, state: dict | None = None) -> dict:
    """Before fitting: the checkpoint can be read and was written by this system, with the same shapes (for
    --init_from also the same weights: no resume fills the missing ones in); returns it. `state`: the checkpoint
    already read (a reference project's files, in our names)."""
    from torch.nn.parameter import is_lazy

    from lightning_modules.export import restore_left_out
    from lightning_modules.inference import read_checkpoint, saved_class
    state = read_checkpoint(path) if state is None else state
    fix = network_fix(path, state, model, for_init)
    if not for_init:
        refuse_exported_resume(state, path)
    restore_left_out(model, state)  # dl2-export --generators_only: the model's new discriminators stand in for them
    saved = saved_class(state)
    if saved and saved.rpartition(".")[2] != type(model).__name__:
        theirs = system_of(saved)
        other = f"use --system {theirs}" if theirs else f"train a {saved} with the config that wrote it"
        raise UserError(f"{path} is a {saved.rpartition('.')[2]} checkpoint, this is {system}; {other}")
    model_state = model.state_dict()
    for key, tensor in state["state_dict"].items():
        ours = model_state.get(key)
        if ours is None or is_lazy(ours) or ours.numel() == 0:  # built in setup (the style image): no shape yet
            continue
        if tuple(ours.shape) != tuple(tensor.shape):
            raise UserError(f"{path} was trained with other settings ({key}: {tuple(tensor.shape)} there, "
                            f"{tuple(ours.shape)} here); {fix}")
    saved_keys = state["state_dict"].keys()
    missing, unexpected = sorted(model_state.keys() - saved_keys), sorted(saved_keys - model_state.keys())
    if for_init and (missing or unexpected):
        raise UserError(f"{path} holds another network ({len(missing)} weights missing, e.g. {missing[:2]}; "
                        f"{len(unexpected)} not ours, e.g. {unexpected[:2]}); {fix}")
    return state


def init_from(path: str, model, system: str, resuming: bool) -> Callback:
    """--init_from: checked now, the checkpoint's weights loaded when fitting starts (after the model's setup, which
    would recompute a Darknet's whitening stem from the new data); optimizers, schedule and the systems' counters
    and pools start afresh."""
    if resuming:
        raise UserError("--init_from starts a new run from a checkpoint's weights and --ckpt_path resumes a run; "
                        "give one of them (resuming with a run's config.yaml that has one: add --init_from null)")
    if system == "style":
        raise UserError("--init_from takes a trained network's weights; style transfer optimizes a new image from "
                        "fixed VGG weights (resume a style run with --ckpt_path)")
    from lightning_modules.export import EXPORT_KEY
    from lightning_modules.inference import run_folder_checkpoint
    try:
        state = check_checkpoint(run_folder_checkpoint(path), model, system, for_init=True)
    except UserError as error:  # perhaps a reference project's own files (the WassersteinGAN's netG; junyanz's)
        reference = getattr(model, "reference_checkpoint", None)
        if reference is None:
            raise
        state = reference(path)
        if state is None:
            from lightning_modules.inference import or_reference
            raise or_reference(error, model.reference_files) from None
        state = check_checkpoint(path, model, system, for_init=True, state=state)
        print(f"--init_from {path}: {state[EXPORT_KEY]['from']}", file=sys.stderr)  # which files, which nets
        return LoadWeights(state["state_dict"])
    left_out = (state.get(EXPORT_KEY) or {}).get("left_out", [])
    if left_out:  # the generators go on training against new discriminators (the WGAN's warm-up trains its critic)
        print(f"--init_from {path}: an export without {', '.join(p.rstrip('.') for p in left_out)}, which start from "
              "new weights", file=sys.stderr)
    return LoadWeights(state["state_dict"])


class LoadWeights(Callback):
    """The weights of --init_from, loaded in on_fit_start: after setup and the optimizers' creation (in place, so
    they keep their parameters), before the first batch."""

    def __init__(self, weights: dict):
        self.weights = weights

    def on_fit_start(self, trainer, pl_module):
        pl_module.load_state_dict(self.weights)
        self.weights = None  # memory-mapped tensors: let the file go


@contextlib.contextmanager
def ctrl_c_stops_the_test(run_dir: Path, trainer=None):
    """Ctrl-C during the test after the fit: exit 130 saying how to test the saved run (Lightning's exit 1 read as a
    failure). A SIGTERM there is Lightning's SIGTERMException, exit 143.

    Under DDP rank 0 alone says so, and sends the Ctrl-C on to the ranks it launched, as Lightning sends on a SIGTERM:
    a Ctrl-C to rank 0 alone (`kill -INT`) had left them testing, orphaned, until their next collective failed with
    gloo's traceback. The other ranks stop once: the Ctrl-C sent on after the terminal's own is not raised again while
    they unwind, nor after the block (ignored from then on): a rank's unwinding can take a few milliseconds, and the
    one sent on came in its exit's atexit callbacks, a KeyboardInterrupt's traceback."""
    stopped = []
    rank_0 = trainer is None or trainer.is_global_zero

    def stop(signum, frame):
        if stopped and not rank_0:
            return
        if not stopped and rank_0:
            print(f"\nCtrl-C: the test stopped; the training is saved. Test it with: python train.py test --config "
                  f"{run_dir / 'config.yaml'} --ckpt_path {run_dir / 'checkpoints' / 'last.ckpt'}", file=sys.stderr)
        launcher = trainer.strategy.launcher if trainer is not None else None
        if not stopped and getattr(launcher, "procs", None):  # Lightning's launcher on rank 0; none under torchrun
            launcher.kill(signal.SIGINT)
        stopped.append(signum)
        raise SIGTERMException(130)
    try:
        with on_ctrl_c(stop):
            yield
    finally:
        if stopped and not rank_0:
            signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def weights_in_memory(trainer):
    """trainer.test(model) tests the model's weights, except in a SLURM job whose run folder holds an hpc_ckpt_N.ckpt:
    Lightning then loads that (its save on the time-limit signal, older than the weights just trained). Hidden from
    it for the call."""
    connector = type(trainer._checkpoint_connector)
    hpc = connector.__dict__.get("_hpc_resume_path")
    if not isinstance(hpc, property):  # a Lightning that no longer has it
        yield
        return
    connector._hpc_resume_path = property(lambda self: None)
    try:
        yield
    finally:
        connector._hpc_resume_path = hpc


def fit_progress(trainer) -> dict:
    """Epochs as batches trained / batches per epoch: a run stopped at 13% of its first epoch says 0.13. A loader
    without epochs (the style system's endless one) has none: null, not Lightning's count of how often it began."""
    batches = trainer.fit_loop.epoch_loop.batch_progress.total.completed
    per_epoch = trainer.num_training_batches
    finite = isinstance(per_epoch, int) and per_epoch > 0
    return {"epochs": round(batches / per_epoch, 4) if finite else None,
            "epochs_completed": batches // per_epoch if finite else None, "batches": batches}


def run_job(cli: CLI) -> dict:
    """Fit, then test the final weights (systems with a test_step), then write <run folder>/results.json."""
    config, trainer, model = cli.job_config(), cli.trainer, cli.model
    start_step = cli.start_step  # the checkpoint's, checked by check_job
    if config.ckpt_path:
        # a resumed run finds its own checkpoints there; Lightning's warning is for new runs
        warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
        # a mid-epoch resume (timed or on-stop last.ckpt) trains the epoch's remaining batches (restart_position)
        warnings.filterwarnings("ignore", message=r"You're resuming from a checkpoint that ended before the epoch")
        # checkpoints of train.py before 2026-11-28 hold the state of its timed ModelCheckpoint, now TimedSave
        warnings.filterwarnings("ignore", message=r"(?s)Be aware that when using `ckpt_path`.*"
                                                  r"'train_time_interval': datetime")
    start = time.perf_counter()
    try:
        with lightning_ctrl_c(trainer):  # a Ctrl-C before SaveOnStop takes it at on_fit_start, or a second one
            trainer.fit(model, datamodule=cli.datamodule, ckpt_path=config.ckpt_path)
    except MisconfigurationException as error:  # Lightning's checks as the fit starts, with a traceback
        if past := re.search(r"restored a checkpoint with current_epoch=(\d+)", str(error)):
            raise UserError(f"--ckpt_path {config.ckpt_path}: the run is at epoch {past[1]}, past --trainer.max_epochs "
                            f"{config.trainer.max_epochs}; raise it to train on") from None  # as given: SWA adds one
        if "manual optimization" in str(error) and (manual := re.search(r"Trainer\((\w+)=(.*?)\)", str(error))):
            raise UserError(f"--trainer.{manual[1]} {manual[2]}: {type(model).__name__} steps its optimizers itself "
                            f"(a GAN's alternating updates), which Lightning cannot clip or accumulate for; drop "
                            f"it") from None
        raise  # Lightning raises it for a bug in a step or a log call too: its traceback
    except ValueError as error:
        interval = re.search(r"val_check_interval` \((\d+)\) must be .* training batches \((\d+)\)", str(error))
        if isinstance(error, UserError) or not interval:
            raise
        raise UserError(f"--trainer.val_check_interval {interval[1]} is more than the {interval[2]} batches of an "
                        f"epoch: give a fraction of the epoch (0.5), at most {interval[2]} batches, or "
                        f"--trainer.check_val_every_n_epoch null to count batches across epochs") from None
    fit_seconds = time.perf_counter() - start
    # what fit resumed from, ours or Lightning's own on a SLURM requeue (hpc_ckpt_N.ckpt); test() resets it
    resumed_from = str(Path(trainer.ckpt_path).absolute()) if trainer.ckpt_path else None
    run_dir = Path(trainer.default_root_dir)
    earlier = read_json(run_dir / "results.json") if trainer.global_step == start_step else None
    if earlier and earlier.get("global_step") == trainer.global_step:  # nothing trained, and these results say so
        if trainer.is_global_zero:
            print(f"Nothing left to train: the run is at step {trainer.global_step}, where its --trainer.max_steps or "
                  f"--trainer.max_epochs end it; raise them to train on. {run_dir / 'results.json'} (written when it "
                  f"got there) is kept")
            for callback in trainer.callbacks:  # the config-resume-step<N>.yaml of a resume that trained nothing
                if isinstance(callback, LogConfig) and callback.resumed_at is not None and callback.already_saved:
                    (run_dir / callback.config_filename).unlink(missing_ok=True)
        discard_refused_resume()  # and its W&B folder, with nothing in it (offline: one more to `wandb sync`)
        return earlier
    # not LearningRateMonitor's lr-*: logged every log_every_n_steps, they held a step's before the last (a 1cycle's
    # 0.178 for its final 0.0035); the lr the last batch trained at instead
    final = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1 and not k.startswith("lr-")}
    final_lr = next((c.lr for c in trainer.callbacks if isinstance(c, LastStepLr) and c.lr is not None),
                    [[group["lr"] for group in optimizer.param_groups] for optimizer in trainer.optimizers])
    final_lr = [[float(lr) for lr in groups] for groups in final_lr]
    progress = fit_progress(trainer)
    testable = is_overridden("test_step", model) and getattr(cli.datamodule, "has_test_data", True)
    with ctrl_c_stops_the_test(run_dir, trainer), weights_in_memory(trainer):
        # no result at all under --trainer.limit_test_batches 0 (README: "0 means none"): an empty test, not a crash
        test = (trainer.test(model, datamodule=cli.datamodule, verbose=False) or [{}])[0] if testable else {}
    results = {"test": test, "final_metrics": final, "final_lr": final_lr, "fit_seconds": round(fit_seconds, 2),
               **progress,
               "global_step": trainer.global_step,
               "resumed_from": resumed_from,
               "world_size": trainer.world_size, "precision": str(trainer.precision), "run_dir": str(run_dir),
               "checkpoint": {"last": str(run_dir / "checkpoints" / "last.ckpt")
                              if trainer.checkpoint_callbacks and not trainer.fast_dev_run else None,
                              "best": getattr(trainer.checkpoint_callback, "best_model_path", None) or None}}
    if trainer.is_global_zero:
        path = run_dir / "results.json"
        write_json(path, results)
        shown = test or final
        # 4 significant digits, as the progress line: a WGAN's early Loss_D printed -0.0000 with 4 decimals
        print(("Test metrics: " if test else "Final metrics: ") + ", ".join(f"{k} {format_number(v)}"
                                                                             for k, v in shown.items()))
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
        stop_div: stop once the smoothed loss exceeds stop_div x the best so far, or is not finite (the seed's
            stop_div; the average debiased as fastai's, not as Lightning's: callbacks/lr_finder.py); null never.
        linear_axis: plot lr on a linear axis (the seed's plot(linear=True)) instead of a log axis.
    """
    from lightning.pytorch.tuner import Tuner

    from callbacks import TrainingPhaseScheduler
    from callbacks.lr_finder import debiased_loss_record, early_end_not_called_divergence
    trainer = cli.trainer  # a GAN's manual optimization is refused by check_job
    # the finder drives the lr itself; a phase scheduler would fight it, and there is nothing to save
    trainer.callbacks = [c for c in trainer.callbacks if not isinstance(c, (TrainingPhaseScheduler, SaveOnStop))]
    # the sweep keeps its folder, however it ends (RunBegan does not see it: Lightning's finder swaps the callbacks)
    _fresh_runs.pop(Path(trainer.default_root_dir), None)
    # Ctrl-C ends the sweep after the running batch and plots what it has (Lightning would exit 1 with nothing);
    # one process only: under DDP every rank must stop at the same step, and Lightning's SIGTERM path discards the
    # sweep. No validation then: Lightning validates on stopping early, up to num_training batches
    with ctrl_c_ends_the_fit(trainer, "Ctrl-C: ending the sweep after this batch and plotting it (Ctrl-C again to "
                             "stop at once)", enabled=trainer.world_size == 1, limit_val_batches=0) as stopped, \
            debiased_loss_record(), early_end_not_called_divergence(stopped), lightning_ctrl_c(trainer), \
            warnings.catch_warnings():
        # a sweep stopped at once restores the model with the finder's callbacks still in place: Lightning's advice
        # to add ModelCheckpoint to the Trainer is not for the user
        warnings.filterwarnings("ignore", "Be aware that when using `ckpt_path`")
        finder = Tuner(trainer).lr_find(cli.model, datamodule=cli.datamodule, min_lr=min_lr, max_lr=max_lr,
                                        num_training=num_training, mode=mode, early_stop_threshold=stop_div,
                                        update_attr=False)
    if not trainer.is_global_zero:
        return None
    suggestion = None if stopped else finder.suggestion()  # a partial sweep's steepest descent is no advice
    figure, axes = subplots()  # not pyplot's: a notebook calling train.main keeps its own backend
    finder.plot(suggest=suggestion is not None, ax=axes)
    axes.set_xscale("linear" if linear_axis else "log")
    run_dir = Path(trainer.default_root_dir)
    with replaced(run_dir / "lr_find.png") as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    write_json(run_dir / "lr_find.json", {**finder.results, "suggestion": suggestion})
    log_to_loggers(trainer, "lr_find", run_dir / "lr_find.png", at_batch=False,
                   caption="no suggestion" if suggestion is None else f"suggested lr {suggestion:.3g}")
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.summary["lr_find/suggestion"] = suggestion  # the runs table's column
    if stopped:
        lrs = finder.results["lr"]
        print(f"LR finder: stopped by Ctrl-C after {len(lrs)} of {num_training} steps, at lr {lrs[-1]:.3g} (the sweep "
              f"goes up to {max_lr:g}); no suggestion from part of a sweep. Plot: {run_dir / 'lr_find.png'}")
        raise SystemExit(130)
    print(f"LR finder: suggested lr {suggestion:.3g} (steepest loss descent); train with --model.lr {suggestion:.3g}"
          if suggestion is not None else "LR finder: no suggestion (too few points, or the loss diverged early); try a "
                                         "larger --lr_find.num_training, a smaller --lr_find.max_lr or "
                                         "--lr_find.stop_div null")
    print(f"LR finder plot: {run_dir / 'lr_find.png'}")
    return suggestion


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
    earlier_wandb_run = current_wandb_run()  # one of the caller's: Lightning's WandbLogger logs into it, left open
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
            run_job(cli)
    except BaseException as error:
        # Ctrl-C or SIGTERM before the training began (RunBegan: a run that began is no longer fresh), as a refusal:
        # the folder it made goes, W&B run and all (a bug's stays, for its logs)
        stopped = isinstance(error, (KeyboardInterrupt, SystemExit))
        if _fresh_runs and (stopped or (isinstance(error, Exception) and user_message(error) is not None)):
            removed = discard_fresh_runs()
            if stopped and removed:
                print(f"Stopped before the training began: removed {', '.join(map(str, removed))} (nothing was "
                      "written there yet)", file=sys.stderr)
        if _resumed_wandb and isinstance(error, Exception) and user_message(error) is not None:
            discard_refused_resume()
        finish_wandb_run(earlier_wandb_run, exit_status(error))
        raise
    else:
        finish_wandb_run(earlier_wandb_run, 0)
    finally:
        _fresh_runs.clear()
        _fresh_wandb.clear()
        _resumed_wandb.clear()
        release_run_locks()
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


def current_wandb_run():
    wandb = sys.modules.get("wandb")
    return getattr(wandb, "run", None) if wandb is not None else None


def finish_wandb_run(earlier, exit_code: int) -> None:
    """End the W&B run this train.main began, as the process's end would: Lightning's WandbLogger leaves it open, and
    a second train.main in the same process (a notebook, a sweep script) logged into the first one's run."""
    run = current_wandb_run()
    if run is not None and run is not earlier:
        with contextlib.suppress(Exception):
            sys.modules["wandb"].finish(exit_code=exit_code)


def print_system_help(argv: list[str]) -> None:
    """`--system NAME --help`: the system's model and data options with the config's values; without --system,
    the systems."""
    name, _ = find_system(argv)
    if name is None:
        print("usage: python train.py --system NAME [--model.ARG V] [--data.ARG V] [--trainer.ARG V] [--ckpt_path "
              "last] [--run_name NAME] [--lr_find] [--traceback]\n       python train.py fit|validate|test --config "
              "FILE ...  (LightningCLI's own form)\n\nsystems (configs/NAME.yaml; options: python train.py --system "
              "NAME --help):")
        width = max(map(len, systems()))
        for system in systems():
            first = (CONFIGS / f"{system}.yaml").read_text().splitlines()[0].lstrip("# ").split(" (")[0].rstrip(":")
            print(f"  {system:{width}s}  {first}")
        return
    from jsonargparse import ArgumentParser  # LightningCLI's parser, for the same help format
    config = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    parser = ArgumentParser(prog="python train.py", exit_on_error=False,
                            usage=f"python train.py --system {name} [--model.ARG V] [--data.ARG V] [--trainer.ARG V] "
                                  f"[--ckpt_path last] [--run_name NAME] [...]",
                            description=f"Options of --system {name} (configs/{name}.yaml); values shown as "
                                        f"'default' are the config's. Lightning Trainer options (--trainer.*): "
                                        f"python train.py --system {name} --help-trainer.")
    parser.add_argument("--system", choices=systems(), default=name, help="the system to train (configs/NAME.yaml)")
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
    """`python train.py ...`: a user's mistake is one line on stderr and exit status 2, a bug its traceback."""
    try:
        one_line_errors(lambda argv: main(), None)  # main reads sys.argv, --traceback included
    except SIGTERMException as stop:
        sys.exit(stop.code if isinstance(stop.code, int) else 143)


if __name__ == "__main__":
    command_line()
