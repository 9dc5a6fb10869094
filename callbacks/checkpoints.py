"""A checkpoint read before a run uses it: its step and epoch length, whether it fits the system and options given
(one line naming the fix where it does not), and `--init_from`'s weights.
"""

import json
import shlex
import sys
import warnings
from pathlib import Path

import torch
import yaml
from lightning.pytorch import Callback
from lightning.pytorch.utilities import rank_zero_warn

from callbacks.configs import model_class_of, system_of
from callbacks.errors import UserError

EVALUATIONS = ("validate", "test")  # subcommands that read a checkpoint and write a folder of their own


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


DATA_TWINS = ("isize",)  # a model option its data module's must equal (the WGAN's image size, checked in its setup)


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
    differ = [k for k, v in saved.items()
              if not k.startswith("_") and k in ours and option_value(ours[k]) != option_value(v)]
    keys = network_options(model, saved, differ)
    flags = " ".join([f"--model.{k} {shlex.quote(option_value(saved[k]))}" for k in keys]
                     + [f"--data.{k} {shlex.quote(option_value(saved[k]))}" for k in DATA_TWINS if k in keys])
    # a reference's file (junyanz's, the WassersteinGAN's) has no hyper-parameters: its reader counted the sizes
    origin = (state.get(EXPORT_KEY) or {}).get("sizes", "from its hyper-parameters")
    options = f"--model options it was trained with ({flags}, {origin})" if flags else \
        "--model options it was trained with"
    return (f"--init_from needs the same network: give the {options}" if for_init
            else f"resume with the {options} and --ckpt_path {path}")


def network_options(model, saved: dict, keys: list[str]) -> list[str]:
    """Of the options `keys`, those whose saved value alone gives the network other parameters than `model`'s: a
    fine-tune told to copy the run's n_epochs too would carry its lr schedule over. All of them when none does
    alone (two that act together) or a model cannot be built here (the style's ImageNet VGG file missing)."""
    from torch.nn.parameter import is_lazy

    def shapes(network):
        return {name: tuple(tensor.shape) for name, tensor in network.state_dict().items() if not is_lazy(tensor)}
    try:
        ours = shapes(model)
        given = {k: v for k, v in model.hparams.items() if not k.startswith("_")}
        with torch.random.fork_rng(), warnings.catch_warnings():  # the probes' weights drawn from a fork of the seed
            warnings.simplefilter("ignore")
            network = [k for k in keys if shapes(type(model)(**{**given, k: saved[k]})) != ours]
    except Exception:  # noqa: BLE001 - any model's refusal of a value: the options are then all named
        return keys
    return network or keys


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
    """A resume whose --model/--data options differ from its checkpoint's: the warning naming each with both values and
    the command that resumes as the run began; None when none differs. A resume may change some on purpose (another
    batch size), and goes on with its own values; one that forgot an option of the run's start (its --data.style)
    would go on with the default without a word. `configs`: the --config files this resume gives."""
    from lightning_modules.inference import run_config_file
    changed = changed_options(state, model, datamodule)
    if not changed:
        return None
    listed = "; ".join(f"{flag}: the checkpoint's {shlex.quote(option_value(theirs))}, this resume's "
                       f"{shlex.quote(option_value(ours))}" for flag, theirs, ours in changed)
    config = run_config_file(path)
    if config is not None and any(Path(str(given)).resolve() == config.resolve() for given in configs):
        how = (f"this resume gives the run's config {config} already: the checkpoint's values above may differ "
               f"from it after an earlier resume that changed them (its config-resume-step*.yaml beside it)")
    elif config is not None:
        how = resume_as_begun(config, path, subcommand)
    else:  # an export or a copied file: the checkpoint's values themselves
        flags = " ".join(f"{flag} {shlex.quote(option_value(theirs))}" for flag, theirs, _ in changed)
        how = f"to resume with the checkpoint's values, give {flags} --ckpt_path {path}"
    return (f"--ckpt_path {path}: this resume's options differ from the checkpoint's hyper-parameters: "
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

    def fix() -> str:  # built only for a refusal: it may build the model again
        return network_fix(path, state, model, for_init)
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
                            f"{tuple(ours.shape)} here); {fix()}")
    saved_keys = state["state_dict"].keys()
    missing, unexpected = sorted(model_state.keys() - saved_keys), sorted(saved_keys - model_state.keys())
    # a resume loads strictly too (the style leaves its VGG out, strict_loading False): another CycleGAN n_blocks
    # renames weights rather than reshaping them, and Lightning's load was a traceback
    if (for_init or getattr(model, "strict_loading", True)) and (missing or unexpected):
        raise UserError(f"{path} holds another network ({len(missing)} weights missing, e.g. {missing[:2]}; "
                        f"{len(unexpected)} not ours, e.g. {unexpected[:2]}); {fix()}")
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
