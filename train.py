"""Train a system: `python train.py --system darknet [--model.* --data.* --trainer.* overrides]`.

`--system NAME` runs configs/NAME.yaml as a whole job: fit, test, then results.json in the run folder.
The native LightningCLI form (`python train.py fit --config configs/darknet.yaml`) works as well.

Exit status: 0 done; 2 a mistake the user can fix, printed as one line `train.py: error: ...` (`--traceback` or
DL2_TRACEBACK=1 shows the traceback); 130 (Ctrl-C) or 143 (SIGTERM) stopped after saving checkpoints/last.ckpt.

Here: the command line and the job. What a run builds on is in callbacks/, by role: run_folder (its folder, run.json,
lock, `--ckpt_path last`), checkpoints (a checkpoint's checks, `--init_from`), saving (timed and stop-signal saves,
SLURM's requeue), resume, run_config (config.yaml), lr_finder (`--lr_find`), wandb_run, configs (the `--system`
names).
"""

import contextlib
import inspect
import os
import re
import secrets
import signal
import sys
import time
import warnings
from pathlib import Path

import torch
import yaml
from jsonargparse.typing import register_type
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from lightning.pytorch.trainer.states import TrainerStatus
from lightning.pytorch.utilities.exceptions import MisconfigurationException, SIGTERMException
from lightning.pytorch.utilities.model_helpers import is_overridden

from callbacks import checkpoints, configs, run_folder, saving, wandb_run
from callbacks.checkpoint_io import write_json
from callbacks.checkpoints import EVALUATIONS
from callbacks.errors import UserError, lightning_ctrl_c, on_ctrl_c, one_line_errors, user_message
from callbacks.lr_finder import lr_find
from callbacks.progress import MonitorSummary, WriteLoggingSteps, format_number, quiet
from callbacks.resume import EpochLengthResume, LastStepLr, MaxStepsResume, RerunStoppedValidation, SeedPerRankAndStep
from callbacks.run_config import LogConfig
from callbacks.saving import EpochEndSave, RequeueSignal, SaveOnStop, TimedSave
from callbacks.strategy import auto_ddp_strategy, check_launched_processes, refuse_started_processes

SUBCOMMANDS = {"fit", "validate", "test"}
# LightningCLI's predict needs a predict step, which no system has: each system's inference command does that job
INFERENCE_COMMANDS = ("dl2-classify (darknet), dl2-wgan-generate (wgan), dl2-cyclegan-translate (cyclegan), "
                      "dl2-stylize (style)")
# StochasticWeightAveraging's `device` is a torch.device, which jsonargparse could not write into config.yaml (it
# warned "Unable to serialize instance cpu" twice in every run with SWA)
register_type(torch.device, serializer=str, deserializer=torch.device)
# The Trainer's limit_*_batches are Optional[Union[int, float]]: an int counts batches, a float a fraction (1.0: all).
# typing caches a Union by its set of members, so lightning.fabric's earlier Optional[Union[float, int]] is handed back
# for them, and jsonargparse, trying the members in order, read `--trainer.limit_train_batches 1` as 1.0: a whole epoch
for _name in ("limit_train_batches", "limit_val_batches", "limit_test_batches", "limit_predict_batches"):
    Trainer.__init__.__annotations__[_name] = int | float | None


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
        if resuming or not isinstance(root, str) or not (path.parent / run_folder.RUN_FILE).is_file():
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
            if name not in configs.systems():
                raise UserError(f"unknown --system {name!r}; choose one of: {', '.join(configs.systems())}")
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
        run_folder.resolve_checkpoint(self.config[subcommand], subcommand)
        # before Lightning builds the checkpoint's class on this data
        checkpoints.check_checkpoint_class(self.config[subcommand], subcommand)
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
            model_class = configs.import_class(configs.model_class_of(self.job_config()))
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
            run_folder.resolve_checkpoint(self.job_config(), kind)
            if not self.job:  # the job form's check_checkpoint says it in its own words
                checkpoints.check_checkpoint_class(self.job_config(), kind)
        # the folder is chosen and the config pointed at it; it is made at the end of instantiate_classes, after the
        # checks of the model, data and Trainer, so that a run they refuse leaves nothing behind (a new time stamp is
        # claimed now, an empty folder, which such a refusal removes)
        self.run_plan = run_folder.prepare_run(self.job_config(), kind, make=False)

    def instantiate_classes(self):
        try:
            self.instantiate_checked()
        except Exception as error:  # a model or data module refusing its options; a resume's may be the run's own
            message = user_message(error)
            hint = message and checkpoints.resume_config_hint(self.job_config(), self.fits(),
                                                              "" if self.job else "fit ")
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
                    step = checkpoints.checkpoint_step(Path(config.ckpt_path))
                    callback.resumed_at = "unknown" if step is None else step
                    for system_part in (self.model, self.datamodule):  # Lightning's own logging of the hyper-
                        system_part._log_hyperparams = False  # parameters would show this resume's on top
        # their writers' purge_step (Lightning passes its kwargs on): TensorBoard hides the events from that step on
        # that the stopped run logged after its checkpoint, instead of drawing both; the file read only for them
        tensorboards = [logger for logger in trainer.loggers
                        if isinstance(logger, TensorBoardLogger) and logger._kwargs.get("purge_step") is None]
        if resumed and tensorboards and (batches := checkpoints.checkpoint_batches(
                Path(config.ckpt_path), trainer.accumulate_grad_batches)) is not None:
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
        trainer.callbacks.append(run_folder.MarkTraining(run_dir))
        trainer.callbacks.append(run_folder.RunBegan(run_dir))
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
            checkpoints.warn_changed_options(trainer, config.ckpt_path, read_checkpoint(config.ckpt_path), self.model,
                                             self.datamodule, "fit ", config.get("config") or ())
        run_folder.make_run_folder(self.run_plan)  # the config is accepted: the run folder, its lock, run.json, wandb/


def check_data(model_class: str, datamodule) -> None:
    """`--data` another system's data module (one of the shipped configs'): refused before the run, which failed at
    its first batch (a tuple where images were due, labels missing). A data module of the user's is not checked."""
    shipped = {system: configs.shipped_class(system, "data") for system in configs.systems()}
    system, given = configs.system_of(model_class), type(datamodule).__name__
    if system is None or datamodule is None or given == shipped[system] or given not in shipped.values():
        return
    owner = next(name for name, data in shipped.items() if data == given)
    raise UserError(f"--data {given} is the data of --system {owner}; {model_class.rpartition('.')[2]} trains on "
                    f"{shipped[system]} (configs/{system}.yaml): leave --data out, or give a data module of your own")


def check_job(cli: "CLI", config) -> int | None:
    """The job form's refusals that the model and the config decide (an LR finder asked of a GAN, --init_from of
    another network, a checkpoint of another system), before the run folder is made; the --init_from weights go on
    the Trainer. Returns the step of the checkpoint it resumes, None for a new run."""
    model, trainer, system = cli.model, cli.trainer, configs.describe(cli.config.model.class_path)
    if config.lr_find.run and not model.automatic_optimization:  # Lightning's finder would stop with a traceback
        raise UserError(f"--lr_find sweeps the lr of one optimizer that Lightning steps; {type(model).__name__} "
                        "steps its optimizers itself (a GAN's alternating updates): tune its lr with short runs")
    if config.get("init_from"):
        trainer.callbacks.append(checkpoints.init_from(config.init_from, model, system, bool(config.ckpt_path)))
    if not config.ckpt_path:
        return None
    try:
        state = checkpoints.check_checkpoint(config.ckpt_path, model, system)
    except UserError:
        checkpoints.refuse_reference_resume(config.ckpt_path, type(model))
        raise
    checkpoints.warn_changed_options(trainer, config.ckpt_path, state, model, cli.datamodule,
                                     configs=config.get("config") or ())
    return state.get("global_step")


def random_seed() -> int:
    """`--seed_everything true`'s seed: a new one, or on a rank Lightning launched, rank 0's (its seed_everything set
    PL_GLOBAL_SEED before the launch). The processes torchrun or SLURM start would each draw their own: refused."""
    if run_folder.launched_by_lightning("PL_GLOBAL_SEED"):
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
    earlier = run_folder.read_json(run_dir / "results.json") if trainer.global_step == start_step else None
    if earlier and earlier.get("global_step") == trainer.global_step:  # nothing trained, and these results say so
        if trainer.is_global_zero:
            print(f"Nothing left to train: the run is at step {trainer.global_step}, where its --trainer.max_steps or "
                  f"--trainer.max_epochs end it; raise them to train on. {run_dir / 'results.json'} (written when it "
                  f"got there) is kept")
            for callback in trainer.callbacks:  # the config-resume-step<N>.yaml of a resume that trained nothing
                if isinstance(callback, LogConfig) and callback.resumed_at is not None and callback.already_saved:
                    (run_dir / callback.config_filename).unlink(missing_ok=True)
        # and its W&B folder, with nothing in it (offline: one more to `wandb sync`)
        run_folder.discard_refused_resume()
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
            run_job(cli)
    except BaseException as error:
        # Ctrl-C or SIGTERM before the training began (RunBegan: a run that began is no longer fresh), as a refusal:
        # the folder it made goes, W&B run and all (a bug's stays, for its logs)
        stopped = isinstance(error, (KeyboardInterrupt, SystemExit))
        if stopped or (isinstance(error, Exception) and user_message(error) is not None):
            removed = run_folder.discard_fresh_runs()
            if stopped and removed:
                print(f"Stopped before the training began: removed {', '.join(map(str, removed))} (nothing was "
                      "written there yet)", file=sys.stderr)
        if isinstance(error, Exception) and user_message(error) is not None:
            run_folder.discard_refused_resume()
        wandb_run.finish_wandb_run(earlier_wandb_run, exit_status(error))
        raise
    else:
        wandb_run.finish_wandb_run(earlier_wandb_run, 0)
    finally:
        run_folder.forget_runs()
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
    """`python train.py ...`: a user's mistake is one line on stderr and exit status 2, a bug its traceback."""
    try:
        one_line_errors(lambda argv: main(), None)  # main reads sys.argv, --traceback included
    except SIGTERMException as stop:
        sys.exit(stop.code if isinstance(stop.code, int) else 143)


if __name__ == "__main__":
    command_line()
