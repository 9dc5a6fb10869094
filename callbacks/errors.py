"""UserError: a mistake the user can fix; train.py and the inference commands print it as one line."""

import os
import re
import select
import signal
import sys
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path


class UserError(ValueError):
    """A problem in the user's input (a path, a value, a file, a checkpoint), not a bug.

    The message names the problem, the path or value, and the fix. train.py and the inference commands print
    it as one line without a traceback; `--traceback` or DL2_TRACEBACK=1 shows the traceback. Subclasses
    ValueError so code that catches bad values keeps working.
    """


def main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def on_ctrl_c(handler):
    """`handler` for Ctrl-C inside the block, the previous one after it (yielded, for a handler that gives it back
    at the first Ctrl-C); none where signals cannot be set (a thread other than the main one) or for handler None."""
    if handler is None or not main_thread():
        yield None
        return
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield previous
    finally:
        signal.signal(signal.SIGINT, previous)


@contextmanager
def ctrl_c_ends_the_fit(trainer, message: str, enabled: bool = True, **settings):
    """Ctrl-C inside the block: `message` on stderr, the trainer's `settings` set, and the fit ends after the running
    step (a second Ctrl-C stops at once). Yields a list that holds True once the Ctrl-C came."""
    stopped = []

    def stop(signum, frame):
        signal.signal(signal.SIGINT, previous)
        stopped.append(True)
        print(f"\n{message}", file=sys.stderr)
        for name, value in settings.items():
            setattr(trainer, name, value)
        trainer.should_stop = True
    with on_ctrl_c(stop if enabled else None) as previous:
        yield stopped


@contextmanager
def lightning_ctrl_c(trainer):
    """A KeyboardInterrupt in `trainer`'s fit (a Ctrl-C before a handler of ours took it, or a second one) as such:
    Lightning's own path for it exits 1, which reads as a failure; one_line_errors makes it exit 130."""
    try:
        yield
    except SystemExit as stop:
        if stop.code == 1 and trainer.interrupted:
            raise KeyboardInterrupt from None
        raise


@contextmanager
def own_flags(names: dict[str, str]):
    """For a command that builds the training classes itself: their errors name train.py's flags (--data.content);
    say the command's own (--content) instead. A flag not in `names` is left as it is."""
    try:
        yield
    except (UserError, FileNotFoundError) as error:
        message = str(error)
        renamed = re.sub(r"--(?:data|model|trainer)\.\w+", lambda flag: names.get(flag[0], flag[0]), message)
        if renamed == message or user_message(error) is None:
            raise
        raise UserError(renamed) from error


def require_at_least_one(**options: int) -> None:
    """A command's count options (--num_samples 0, --batch_size 0) as one-line errors, before any work."""
    for name, value in options.items():
        if value < 1:
            raise UserError(f"--{name} must be at least 1 (got {value})")


def check_output_folder(path: str | Path, flag: str) -> Path:
    """A command's output folder, refused before any work when a file stands where it or a folder above it goes."""
    refuse_unexpanded_home(path, flag)
    refuse_a_file_on_the_way(Path(path), flag, f"{flag} {path}: ")
    return Path(path)


def check_output_file(path: str | Path, flag: str, example: str) -> Path:
    """A command's output file, refused before any work when it is a folder or a file stands above it."""
    refuse_unexpanded_home(path, flag)
    file = Path(path)
    if file.is_dir() or str(path).endswith(("/", os.sep)):  # Path drops the slash that says a folder was meant
        raise UserError(f"{flag} {path} is a folder; give a file name, e.g. {file / example}")
    refuse_a_file_on_the_way(file.parent, flag, f"{flag} {path}: ")
    return file


def refuse_unexpanded_home(path: str | Path, flag: str) -> None:
    """`--output=~/x`: the shell expands no '~' after '=' (nor does a config file), and a folder named '~' in the
    working folder is one `rm -rf ~` away from the home folder."""
    if str(path).startswith("~"):
        try:
            meant = f"give {Path(path).expanduser()}"
        except RuntimeError:  # ~name of no user here
            meant = "give the folder's whole path"
        raise UserError(f"{flag} {path}: '~' means the home folder only where the shell expands it (not after '=', "
                        f"nor in a config file); {meant}")


def refuse_a_file_on_the_way(folder: Path, flag: str, prefix: str) -> None:
    """The folder, or the nearest folder above it that exists, must be one this user can write into (mkdir would
    fail there after the work, with a traceback). `prefix` begins the message (`--output out/x: `); `flag` is the option
    that moves the folder."""
    for part in (folder, *folder.parents):
        try:
            if part.is_symlink() and not part.exists():
                raise UserError(f"{prefix}{part} is a link to {os.readlink(part)}, which does not exist; create that "
                                f"folder, or give another {flag}")
            if not part.exists():
                continue
        except PermissionError:  # a folder above it cannot be searched: that folder is named below
            continue
        if not part.is_dir():
            raise UserError(f"{prefix}{part} is a file, not a folder; move it away, or give another {flag}")
        if not os.access(part, os.W_OK | os.X_OK):
            raise UserError(f"{prefix}this user cannot write into {part} (permission denied); give another {flag}")
        return


# what a collective raises in one process of a run when another has ended (gloo's words, NCCL's)
PEER_GONE = ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "communicator was aborted")


def peer_gone(error: BaseException) -> bool:
    """Whether `error` is a collective of this process failing because another process of a run of several ended
    first (a user's error there, a stop): that one says why."""
    several = int(os.environ.get("WORLD_SIZE") or os.environ.get("SLURM_NTASKS") or 1) > 1
    if "torch.distributed" in sys.modules:
        import torch.distributed as dist
        several = several or (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1)
    seen, current = [], error
    while several and current is not None and current not in seen:
        if isinstance(current, RuntimeError) and any(words in str(current) for words in PEER_GONE):
            return True
        seen.append(current)
        current = current.__cause__ or current.__context__
    return False


def process_rank() -> str:
    """This process's rank in its run: its process group's, else the launcher's (torchrun's, SLURM's, Lightning's)."""
    if "torch.distributed" in sys.modules:
        import torch.distributed as dist
        if dist.is_available() and dist.is_initialized():
            return str(dist.get_rank())
    return os.environ.get("RANK") or os.environ.get("SLURM_PROCID") or os.environ.get("LOCAL_RANK") or "?"


def user_message(error: BaseException) -> str | None:
    """The one-line message of a user's mistake inside `error` (jsonargparse and DataLoader workers wrap them),
    or None for a bug, which keeps its traceback."""
    from jsonargparse import ArgumentError
    seen, current = [], error
    while current is not None and current not in seen:
        seen.append(current)
        if isinstance(current, UserError) or (isinstance(current, (FileNotFoundError, NotADirectoryError,
                                                                   FileExistsError, IsADirectoryError))
                                              and current.errno is None):  # raised by our code with a message
            return one_line(str(current))
        if isinstance(current, ModuleNotFoundError) and "pip install" in str(current):  # a package an option needs
            return one_line(str(current))  # (Lightning's TensorBoardLogger without tensorboard); not a bug's import
        # explicit `raise ... from` always; an exception raised while handling another only from the wrappers
        # (jsonargparse's ValueError, Lightning's RuntimeError), so a bug in an except block keeps its traceback
        wrapper = isinstance(current, (ValueError, TypeError, ArgumentError, RuntimeError, OSError))
        current = current.__cause__ or (current.__context__ if wrapper and not current.__suppress_context__ else None)
    if isinstance(error, ArgumentError):
        return condense_parser_error(str(error))
    return None


# list options users give one at a time, as argparse's action="append" takes them: jsonargparse keeps the last alone
LIST_OPTIONS = ("content", "style", "style_layers", "style_layer_weights", "style_blend_weights", "pyramid")


def refuse_repeated_lists(argv: list[str]) -> None:
    """`--style a.jpg --style b.jpg` (train.py's --data.style too) ran with b.jpg alone and blended nothing."""
    seen = set()
    for arg in argv:
        flag = arg.partition("=")[0]
        if flag.startswith("--") and flag.rpartition(".")[2].lstrip("-") in LIST_OPTIONS:
            if flag in seen:
                raise UserError(f"{flag} given twice: the second would replace the first; give them as one list, "
                                f"{flag} '[a, b]', or add to the first with {flag}+ b")
            seen.add(flag)


def one_line(message: str) -> str:
    if "Original Traceback (most recent call last)" in message:  # re-raised from a DataLoader worker
        message = message.rstrip().splitlines()[-1]
        message = re.sub(r"^[\w.]*(UserError|Error): ", "", message)
    message = re.sub(r"\x1b\[[0-9;]*m", "", message)  # a terminal's bold and colour codes (torch.load's errors)
    return " ".join(line.strip() for line in message.splitlines() if line.strip())


def condense_parser_error(message: str) -> str:
    """jsonargparse's nested Union report -> `--data.batch_size: Expected a <class 'int'>. Got value: abc`."""
    keys, details, class_path = [], [], None
    for line in message.splitlines():
        text = line.strip()
        if match := re.fullmatch(r'Parser key "(.+)":', text):
            keys.append(match[1])
        elif match := re.fullmatch(r"- Problem with given class_path '(.+)':", text):
            class_path = class_path or match[1]
        elif text.startswith(("Does not validate against any of the Union", "Subtypes:", "Errors:", "Given value",
                              "- Expected a <class 'NoneType'>", "- Problem with given class_path")):
            continue
        elif text:
            details.append(text.lstrip("- "))
    key = ".".join(keys)
    details = list(dict.fromkeys(details))  # one line per class tried (a callback's, then lightning.Callback's)
    required = next((d for d in details if d.startswith("the following arguments are required: ")), None)
    if key and class_path and required:  # `--trainer.logger CSVLogger`: not the other Union types' "Expected a ..."
        flags = ", ".join(f"--{key}.{name}" for name in required.partition(": ")[2].rstrip(".").split(", "))
        return f"--{key}: {class_path.rpartition('.')[2]} needs {flags}; see --help"
    detail = " ".join(details) or message.strip()
    if match := re.fullmatch(r"Expected a <class '(\w+)'>\. Got value: (.*)", detail):
        detail = f"expected {match[1]}, got {match[2]!r}"
        if key and any(a.startswith("--config") for a in _given_args) and match[2] not in flag_values(key):
            return f"{key} in a --config file: {detail}"  # not the flag's value: the file is the one to fix
    if (match := re.fullmatch(r"Option '([^']+)' is not accepted", detail)) or (
            match := re.fullmatch(r"Group '([^']+)' does not accept option '([^']+)'", detail)):
        name = ".".join(part for part in (key, *match.groups()) if part)
        if key == "trainer.callbacks" and class_path:  # jsonargparse gives the flag to the list's last callback
            return (f"--{name}: {class_path.rpartition('.')[2]} (the last callback, which --trainer.callbacks.NAME "
                    f"sets) has no option {match[match.lastindex]}; see --help")
        return f"{name} is not an option{close_option(name)}, as --{name} or in a --config file; see the options " \
               f"with --help"
    if re.match(r"(the following arguments are required|unrecognized arguments|expected \"subcommand\")", detail):
        flag = re.match(r"unrecognized arguments: --([\w.]+)", detail)
        detail = detail.rstrip(".") + (close_option(flag[1]) if flag else "") + "; see --help"  # (no usage block)
    return f"--{key}: {detail}" if key else detail


# the anchor projects' flags that are ours under another name (README's mapping tables): junyanz's CycleGAN, the
# WassersteinGAN reference, jcjohnson/neural-style
OTHER_PROJECTS = {"name": "--run_name", "dataroot": "--data.data_dir", "continue_train": "--ckpt_path last",
                  "epoch_count": "--ckpt_path last (README: junyanz's options)", "netG": "--model.n_blocks",
                  "beta1": "--model.betas", "lambda_A": "--model.lambda_cycle", "lambda_B": "--model.lambda_cycle",
                  "no_flip": "--data.flip false", "display_freq": "--model.log_images_every_n_batches",
                  "imageSize": "--model.isize and --data.isize", "Diters": "--model.d_iters",
                  "clamp_lower": "--model.clip_value", "clamp_upper": "--model.clip_value", "lrD": "--model.lr",
                  "lrG": "--model.lr_generator", "adam": "--model.optimizer adam",
                  "niter": "--trainer.max_epochs (the WassersteinGAN's; junyanz's older --niter: --model.n_epochs)",
                  "experiment": "--trainer.default_root_dir", "style_image": "--data.style",
                  "content_image": "--data.content", "num_iterations": "--trainer.max_steps"}


def close_option(name: str) -> str:
    """' (did you mean trainer.max_epochs?)' for a Trainer option one typo away from `name`; for a flag without a
    group (`--lambda_identity`, junyanz's `--dataroot`) the model's or data's option of that name, or ours for another
    project's flag; else ''."""
    if "." not in name:
        return ungrouped_option(name)
    group, _, option = name.partition(".")
    if group != "trainer" or not option or "." in option:
        return ""
    import difflib
    import inspect

    from lightning.pytorch import Trainer
    close = difflib.get_close_matches(option, inspect.signature(Trainer).parameters, n=1)
    return f" (did you mean trainer.{close[0]}?)" if close else ""


COMMAND_PARSER = [False]  # a dl2-* command's parser (commands.run), whose flags are its own: no train.py hint


@contextmanager
def command_parser():
    COMMAND_PARSER[0] = True
    try:
        yield
    finally:
        COMMAND_PARSER[0] = False


def ungrouped_option(name: str) -> str:
    if COMMAND_PARSER[0]:
        return ""
    if name in OTHER_PROJECTS:
        return f" (did you mean {OTHER_PROJECTS[name]}?)"
    import inspect

    import datamodules
    import lightning_modules
    homes = []
    for group, package in (("model", lightning_modules), ("data", datamodules)):
        classes = [getattr(package, n) for n in package.__all__ if n[0].isupper()]
        if any(name in inspect.signature(c).parameters for c in classes if inspect.isclass(c)):
            homes.append(f"--{group}.{name}")
    return f" (did you mean {' and '.join(homes)}?)" if homes else ""


_partly_failed: list[str] = []


def report_partial_failure(message: str) -> None:
    """Inputs a command skipped while it wrote the others' outputs (images it could not read): named on stderr, and
    the command ends with exit status 1, so a script can tell (as cp, which copies the files it can)."""
    print(message, file=sys.stderr)
    _partly_failed.append(message)


def stdout_reader_gone() -> bool:
    """Whether standard output is a pipe whose reading end was closed (POSIX poll says POLLERR), as opposed to a
    broken pipe of the program's own (a DataLoader worker's), which stays an error with its traceback."""
    try:
        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poll.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows), or no real stdout (a test's capture)
        return False


@contextmanager
def one_line_warnings():
    """A UserWarning as `NAME: warning: MESSAGE` on stderr, as a user's mistake is `NAME: error: MESSAGE` (train.py
    and the commands): a command's warning for its caller's line (stacklevel=2) named jsonargparse's `return
    component(**cfg)`, which called it, and train.py's their file and source line, as if they were the user's. Other
    categories (a library's deprecations) keep their file and line."""
    with warnings.catch_warnings():
        show = warnings.showwarning

        def one_line(message, category, filename, lineno, file=None, line=None):
            if not issubclass(category, UserWarning):
                return show(message, category, filename, lineno, file, line)
            print(f"{Path(sys.argv[0]).name}: warning: {message}", file=sys.stderr if file is None else file)

        warnings.showwarning = one_line  # DataLoader workers forked inside inherit it
        yield


_given_args: list[str] = []  # the command line one_line_errors runs: a bad value there, or in a --config file


def flag_values(key: str) -> list[str]:
    """The values --key was given on that command line (`--key v` or `--key=v`)."""
    flag, args = f"--{key}", _given_args
    return [args[i + 1] if a == flag else a.partition("=")[2] for i, a in enumerate(args)
            if (a == flag and i + 1 < len(args)) or a.startswith(f"{flag}=")]


def one_line_errors(main, args: list[str] | None) -> None:
    """main(argv), a UserError in it printed as one line (exit status 2) unless --traceback or DL2_TRACEBACK=1;
    exit status 1 after it reported inputs it skipped (report_partial_failure), 130 after a Ctrl-C."""
    argv = sys.argv[1:] if args is None else list(args)
    _given_args[:] = argv
    show_traceback = "--traceback" in argv or os.environ.get("DL2_TRACEBACK", "") not in ("", "0")
    argv = [a for a in argv if a != "--traceback"]
    _partly_failed.clear()
    try:
        main(argv)  # its return value is not returned: a console script passes it to sys.exit (a path: status 1)
    except KeyboardInterrupt:  # Ctrl-C where no handler of ours takes it: the files written so far are whole
        print(f"{Path(sys.argv[0]).name}: Ctrl-C: stopped", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:
        if not stdout_reader_gone():
            raise
        # the output's reader left (`train.py --help | head`): stop as a command that SIGPIPE ended, without a
        # traceback; what is still buffered goes nowhere, or its flush at exit would raise again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(128 + signal.SIGPIPE)
    except Exception as error:
        message = None if show_traceback else user_message(error)
        if message is None and not show_traceback and peer_gone(error):
            # the other process's one-line error (or stop) came first: its 30-line traceback here hid it
            print(f"{Path(sys.argv[0]).name}: rank {process_rank()}: stopped, as another process of the run ended "
                  f"first (it says why; --traceback shows this one's)", file=sys.stderr)
            sys.exit(1)
        if message is None:
            raise
        print(f"{Path(sys.argv[0]).name}: error: {message}", file=sys.stderr)
        sys.exit(2)
    if _partly_failed:
        sys.exit(1)
