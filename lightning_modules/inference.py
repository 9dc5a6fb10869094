"""Reading a checkpoint for train.py's resume and the inference commands, a user's usual mistakes named in one line:
a path with no file, a torn or foreign file, a checkpoint of another system."""

from pathlib import Path

import torch

from callbacks.errors import UserError

SYSTEMS = {"DarknetClassifier": "darknet", "WGAN": "wgan", "CycleGAN": "cyclegan", "StyleTransfer": "style"}
# words of Lightning's and torch's errors when a checkpoint without a class path holds another class's values
FOREIGN = ("unexpected keyword argument", "Missing key(s)", "Unexpected key(s)", "size mismatch")


def read_checkpoint(path: str) -> dict:
    """The checkpoint's dict (memory-mapped: the tensors are not read); a missing, unreadable or non-Lightning
    file is a UserError."""
    file = Path(path)
    if not file.is_file():
        what = "is a folder without checkpoints/last.ckpt" if file.is_dir() else "not found"
        raise UserError(f"checkpoint {path} {what}; pass a .ckpt file or a training run's folder "
                        "(python train.py --system NAME writes runs/NAME/<run>/checkpoints/last.ckpt)")
    try:
        state = torch.load(file, map_location="cpu", weights_only=False, mmap=True)
    except Exception as error:  # a torn zip, an empty file, a pickle of something else: all say the same
        if exported_program(file):
            raise UserError(f"{path} is a torch.export program (dl2-export --format pt2), which runs with torch alone: "
                            f"torch.export.load('{path}').module()(inputs); this command takes the .ckpt it was "
                            "exported from") from None
        folder = file.absolute().parent
        others = sorted(p.name for p in folder.glob("*.ckpt") if p.name != file.name)
        raise UserError(f"{path} is not a readable checkpoint (truncated? {type(error).__name__}); use an earlier "
                        f"one in {folder}" + (f" ({', '.join(others)})" if others else "")) from error
    if not isinstance(state, dict) or "state_dict" not in state:
        raise UserError(f"{path} is not a Lightning checkpoint (no state_dict); give a .ckpt written by train.py")
    return state


def exported_program(file: Path) -> bool:
    """Whether a file is a torch.export archive (its zip names archive/archive_format)."""
    import zipfile
    try:
        with zipfile.ZipFile(file) as archive:
            return any(name.endswith("/archive_format") for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def load_by_position(module: torch.nn.Module, tensors: list[torch.Tensor]) -> bool:
    """A reference project's tensors loaded into `module` by position: its net has our layers in our order under
    other names. False, nothing loaded, when the shapes differ from the module's. BatchNorm's batch counts, which
    those files may lack, are not matched: BatchNorm fills them in."""
    state = module.state_dict()
    ours = [key for key in state if not key.endswith("num_batches_tracked")]
    if [tuple(state[key].shape) for key in ours] != [tuple(tensor.shape) for tensor in tensors]:
        return False
    module.load_state_dict(dict(zip(ours, tensors, strict=True)))
    return True


def or_reference(error: UserError, files: str) -> UserError:
    """read_checkpoint's 'not a Lightning checkpoint' for a command that also reads a reference project's `files`."""
    message = str(error)
    return UserError(f"{message}, or {files}") if message.endswith("give a .ckpt written by train.py") else error


def saved_class(state: dict) -> str | None:
    """The LightningModule class path train.py's LightningCLI saved with the hyper-parameters, if any."""
    return (state.get("hyper_parameters") or {}).get("_class_path")


def imported_class(class_path: str, checkpoint: str) -> type | None:
    """A checkpoint's class from its class path: one of ours, or the user's (`--model my_module.MyWGAN`), which must
    import here as it did in training; None for a path that names no class."""
    from callbacks.configs import import_class
    try:
        found = import_class(class_path) if "." in class_path else None
    except (ImportError, AttributeError) as error:
        raise UserError(f"{checkpoint} is a {class_path} checkpoint, and {class_path} cannot be imported here "
                        f"({type(error).__name__}: {error}); run this where it imports, as in training (its "
                        f"folder on PYTHONPATH)") from None
    return found if isinstance(found, type) else None


def system_class_name(class_path: str, checkpoint: str) -> str | None:
    """The name of the system a checkpoint's class is or is built on (a user's subclass of the WGAN: "WGAN"), or
    None for a class that is none of ours."""
    import lightning_modules
    if class_path.rpartition(".")[2] in SYSTEMS:
        return class_path.rpartition(".")[2]
    own = imported_class(class_path, checkpoint)
    return next((name for name in SYSTEMS if own is not None and issubclass(own, getattr(lightning_modules, name))),
                None)


def check_device(device: str | torch.device) -> torch.device:
    """The --device of an inference command, if this machine has it; else a UserError naming the ones it has.
    `auto` (the default) is the first GPU when there is one (CUDA, else Apple's MPS), else the CPU: as train.py's
    accelerator and junyanz's test.py, which runs on GPU 0 unless told otherwise."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise UserError(f"--device {device}: not a device ({error}); e.g. auto, cpu, cuda, cuda:1, mps") from None
    have = ["cpu"]
    if torch.cuda.is_available():
        have += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        have.append("mps")
    if str(device) not in have:
        raise UserError(f"--device {device}: this machine has no such device; it has {', '.join(have)}")
    return device


def checkpoint_file(checkpoint: str, cls) -> str:
    """An inference command's checkpoint argument as a file: a run folder means its checkpoints/last.ckpt, and
    `last` that of the newest training run of cls in runs/*/ (the shipped configs' folders, as train.py's
    `--ckpt_path last`; junyanz's test.py `--epoch latest`). The file used is named on stderr."""
    import sys
    system = SYSTEMS.get(cls.__name__)
    if checkpoint == "last" and system and not Path(checkpoint).exists():
        runs = sorted(trained_runs(cls.__name__))
        if not runs:
            raise UserError(f"last: no {system} run with checkpoints/last.ckpt in {Path('runs').absolute()}/*/; run "
                            f"this from the folder that holds runs/, or give a .ckpt file")
        found = runs[-1][1]
        if not Path(found).is_file():  # not an older run's in its place: another model, without a word
            older = next((last for _, last in reversed(runs) if Path(last).is_file()), None)
            run = Path(found).parent.parent
            why = ("it finished without one: its config keeps no checkpoints" if (run / "results.json").is_file()
                   else "it stopped before its first save, or is still in its first epoch")
            raise UserError(f"last: the newest {system} run, {run}, has no checkpoints/last.ckpt ({why}); give a "
                            "checkpoint: " + (f"an older run's is {older}" if older else "no other run has one"))
    elif (found := run_folder_checkpoint(checkpoint)) == checkpoint:
        return checkpoint
    print(f"checkpoint: {found}", file=sys.stderr)
    return found


def trained_runs(class_name: str, root: Path = Path("runs")) -> list[tuple[float, str]]:
    """(start time, checkpoints/last.ckpt) of each training run of the class in runs/<system>/ of every config of it
    (runs/darknet and runs/darknet_fast) that began training and kept a last.ckpt, or has none yet (killed before
    its first save, or in its first epoch): `last` is the newest's, refused when it has none."""
    import json
    runs = []
    for folder in sorted(root.glob("*/*/")):
        try:
            info = json.loads((folder / "run.json").read_text())
        except (OSError, ValueError):
            continue
        last = folder / "checkpoints" / "last.ckpt"
        # by name, or a run of the system's folder (runs/wgan/) of a class of the user's (--model my_module.MyWGAN)
        ours = info.get("model", "").rpartition(".")[2] == class_name or (
            not info.get("model", "").startswith("lightning_modules.")
            and folder.parent.name.startswith(SYSTEMS.get(class_name, "?")))
        if ours and trained_run(info):
            runs.append((info.get("started", 0.0), str(last)))
    return runs


def trained_run(info: dict) -> bool:
    """A run folder's run.json says it is a training run that began training (not a validate/test or LR finder
    folder, nor a run that stopped at a setup mistake): one `last` may pick (train.py's --ckpt_path, the commands')."""
    return info.get("kind", "fit") == "fit" and info.get("trained", True)


def run_folder_checkpoint(path: str) -> str:
    """A training run's folder stands for its checkpoints/last.ckpt (the inference commands, train.py's --init_from
    and --ckpt_path); any other path is returned as it is."""
    last = Path(path) / "checkpoints" / "last.ckpt"
    return str(last) if Path(path).is_dir() and last.is_file() else path


def run_config_file(path: str) -> Path | None:
    """The config.yaml of a checkpoint's run folder (a checkpoint in RUN/checkpoints/ or Lightning's
    RUN/hpc_ckpt_N.ckpt), None for an export or a copied file."""
    here = Path(path).absolute()
    return next((d / "config.yaml" for d in (here.parent.parent, here.parent) if (d / "config.yaml").is_file()), None)


def load_checkpoint(cls, checkpoint: str, device: str | torch.device = "cpu"):
    """`cls.load_from_checkpoint` in eval mode, after read_checkpoint's checks and the system's; `checkpoint` as
    checkpoint_file takes it (a run folder, `last`)."""
    device = check_device(device)
    checkpoint = checkpoint_file(checkpoint, cls)
    saved = saved_class(read_checkpoint(checkpoint))
    system = SYSTEMS.get(cls.__name__, "NAME")
    written = f"python train.py --system {system} writes them to runs/{system}/<run>/checkpoints/"
    if saved and saved.rpartition(".")[2] != cls.__name__:
        own = imported_class(saved, checkpoint)
        if own is None or not issubclass(own, cls):
            raise UserError(f"{checkpoint} is a {saved.rpartition('.')[2]} checkpoint; this command takes a "
                            f"{cls.__name__} one ({written})")
        cls = own  # a class of the user's built on ours (train.py --model my_module.MyWGAN): its own net
    try:
        return cls.load_from_checkpoint(checkpoint, map_location=device).eval()
    except (TypeError, RuntimeError, KeyError) as error:
        if not (isinstance(error, KeyError) or any(word in str(error) for word in FOREIGN)):
            raise
        lines = str(error).strip().splitlines() or [type(error).__name__]
        telling = next((line.strip() for line in lines if any(word in line for word in FOREIGN)), lines[0])
        raise UserError(f"{checkpoint} is not a {cls.__name__} checkpoint ({telling[:160]}); {written}") from None


def tensor_file(path: str) -> dict[str, torch.Tensor] | None:
    """A plain state dict of tensors (another project's weights file), read without running pickled code; None for
    an unreadable file or anything else."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        return None
    return state
