"""train.py's LightningCLI: its options (--ckpt_path, --init_from, --run_name, --save_every_minutes, --lr_find), the
checks of a run before its folder is made, and the callbacks every run gets (saves, resumes, run folder marks)."""

import inspect
import os
import re
import secrets
import sys
import warnings
from pathlib import Path

import torch
from jsonargparse.typing import register_type
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from lightning.pytorch.trainer.states import TrainerStatus
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from lightning.pytorch.utilities.model_helpers import is_overridden

from callbacks import checkpoints, configs, run_checkpoint, run_folder, run_lifecycle, saving
from callbacks.checkpoint_io import write_json
from callbacks.checkpoints import EVALUATIONS
from callbacks.errors import UserError, user_message
from callbacks.lr_finder import lr_find
from callbacks.progress import MonitorSummary, WriteLoggingSteps
from callbacks.resume import EpochLengthResume, LastStepLr, MaxStepsResume, RerunStoppedValidation, SeedPerRankAndStep
from callbacks.run_config import LogConfig
from callbacks.saving import EpochEndSave, SaveOnStop, TimedSave
from callbacks.strategy import auto_ddp_strategy, check_launched_processes, refuse_started_processes

# StochasticWeightAveraging's `device` is a torch.device, which jsonargparse could not write into config.yaml (it
# warned "Unable to serialize instance cpu" twice in every run with SWA)
register_type(torch.device, serializer=str, deserializer=torch.device)
# The Trainer's limit_*_batches are Optional[Union[int, float]]: an int counts batches, a float a fraction (1.0: all).
# typing caches a Union by its set of members, so lightning.fabric's earlier Optional[Union[float, int]] is handed back
# for them, and jsonargparse, trying the members in order, read `--trainer.limit_train_batches 1` as 1.0: a whole epoch
for _name in ("limit_train_batches", "limit_val_batches", "limit_test_batches", "limit_predict_batches"):
    Trainer.__init__.__annotations__[_name] = int | float | None

SUBCOMMANDS = {"fit", "validate", "test"}


def model_flags(argv: list[str]) -> list[str]:
    """The model arguments a command line sets: `--model.tta flip`, `--model.init_args.nf=8` -> tta, nf."""
    names = []
    for arg in argv:
        if arg.startswith("--model."):
            path = arg.partition("=")[0].removeprefix("--model.").removeprefix("init_args.").rstrip("+")
            names.append(path.split(".")[0])
    return names


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
        run_checkpoint.resolve_checkpoint(self.config[subcommand], subcommand)
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
            # an evaluation reads the weights: the training's callbacks and their states play no part
            warnings.filterwarnings("ignore", message=r"(?s)Be aware that when using `ckpt_path`, callbacks used to "
                                                      r"create the checkpoint need to be provided")
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
            run_checkpoint.resolve_checkpoint(self.job_config(), kind)
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
                if isinstance(callback, ModelCheckpoint) and callback.save_last and callback.dirpath is not None \
                        and Path(callback.dirpath).absolute() == last.parent.absolute():
                    # train.py's own saves write last.ckpt too: with its counter on, Lightning took that file for
                    # another's and wrote last-v1.ckpt, then one more a launch (the shipped configs turn it off)
                    callback._enable_version_counter = False
            if config.save_every_minutes > 0:  # a killed run loses minutes, not an epoch
                trainer.callbacks.append(TimedSave(last, config.save_every_minutes))
            trainer.callbacks.append(SaveOnStop(last))
            trainer.callbacks.append(EpochEndSave(last))
        if check_trainer := getattr(self.model, "check_trainer", None):  # before DDP starts a process per device
            check_trainer(trainer)
        refuse_started_processes(trainer, config.trainer.get("strategy"))
        check_launched_processes(trainer)
        auto_ddp_strategy(trainer, self.model, config.trainer.get("strategy"))
        trainer.callbacks.append(run_lifecycle.MarkTraining(run_dir))
        trainer.callbacks.append(run_lifecycle.RunBegan(run_dir))
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
        # the config is accepted: the run folder, its lock, run.json, wandb/
        run_lifecycle.make_run_folder(self.run_plan)


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
    if run_checkpoint.launched_by_lightning("PL_GLOBAL_SEED"):
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
