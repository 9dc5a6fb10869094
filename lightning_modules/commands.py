"""The inference commands, as console scripts (`pip install` puts them on PATH) and as `python -m` modules.

    dl2-classify CKPT IMAGE [IMAGE ...]                python -m lightning_modules.darknet_classifier classify ...
    dl2-wgan-generate CKPT [--out_dir samples]        python -m lightning_modules.wgan generate CKPT ...
    dl2-wgan-fid CKPT REAL_DIR FEATURES                python -m lightning_modules.wgan fid CKPT ...
    dl2-cyclegan-translate --checkpoint CKPT ...       python -m lightning_modules.cyclegan translate ...
    dl2-stylize --content me.jpg --style skrik.jpg     python -m lightning_modules.style_transfer stylize ...
    dl2-export CKPT --output model.ckpt                python -m lightning_modules.export CKPT ...

Each runs the package's own functions, so a checkpoint naming lightning_modules.WGAN loads under `python -m` too.
A user's mistake (a missing file, another system's checkpoint, a bad value) is one line on stderr and exit
status 2, as in train.py; `--traceback` or DL2_TRACEBACK=1 shows the traceback.
"""

import contextlib
import sys
from pathlib import Path


@contextlib.contextmanager
def stopped_before_start(command_line: bool):
    """Ctrl-C while a command imports torch (seconds, before one_line_errors runs) as one line and exit status 130,
    as train.py's, not Python's traceback: nothing was written yet. From Python (command_line False) it stays a
    KeyboardInterrupt."""
    try:
        yield
    except KeyboardInterrupt:
        if not command_line:
            raise
        print(f"{Path(sys.argv[0]).name}: Ctrl-C: stopped before the command began (nothing was written)",
              file=sys.stderr)
        sys.exit(130)


with stopped_before_start(Path(sys.argv[0]).name.startswith("dl2-")):  # a console script imports this module first
    from jsonargparse import CLI

    from callbacks.errors import UserError, command_parser, one_line_errors, one_line_warnings, refuse_repeated_lists
    from callbacks.progress import quiet

TRACEBACK_HELP = "--traceback (or DL2_TRACEBACK=1): show the traceback of a user error, not its one line"


def run(components, args: list[str] | None, **cli_options):
    """jsonargparse's CLI, with a user's mistake as `NAME: error: MESSAGE` and exit status 2 (a bug: traceback), and
    a warning as `NAME: warning: MESSAGE`."""
    quiet()  # Lightning's tips, as train.py
    # exit_on_error False: a bad value raises, and one_line_errors prints it as one line, as train.py's
    with one_line_warnings(), command_parser():
        return one_line_errors(lambda argv: refuse_repeated_lists(argv) or CLI(
            components, args=argv, exit_on_error=False, **{"epilog": TRACEBACK_HELP, **cli_options}), args)


def classify(args: list[str] | None = None, prog: str | None = None):
    """argparse, not jsonargparse: it takes any number of image paths after the checkpoint."""
    import argparse

    with stopped_before_start(args is None):
        from lightning_modules.darknet_classify import classify

    class OneLineParser(argparse.ArgumentParser):
        def error(self, message):  # one line and exit status 2 (one_line_errors), as the other commands
            raise UserError(f"{message}; see --help")

    parser = OneLineParser(prog=prog, description=classify.__doc__.split("\n")[0])
    parser.add_argument("checkpoint", help="a DarknetClassifier .ckpt (runs/darknet/<run>/checkpoints/last.ckpt), a "
                                           "run folder (its last.ckpt), or last (the newest Darknet run's in runs/*/: "
                                           "darknet or darknet_fast)")
    parser.add_argument("images", nargs="+", help="image files (.png/.jpg/.jpeg/.webp/.bmp/.tif/.ppm) or folders "
                                                  "of them, searched at all depths")
    parser.add_argument("--top_k", type=int, default=3, help="classes printed per image (default 3)")
    parser.add_argument("--tta", choices=["none", "flip", "flip_translate"], default=None,
                        help="test-time augmentation (default: the model's own)")
    parser.add_argument("--size", type=int, default=None, help="shorter side resized to this, then the central "
                                                               "square cut (default: the size the net was trained "
                                                               "at, kept in its checkpoint; else 32)")
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--output", default=None, help="also write a CSV of every class's probability")
    parser.add_argument("--device", default="auto", help="auto (a GPU when there is one, else the CPU; the default), "
                                                         "cpu, cuda, cuda:1, mps")
    parser.add_argument("--ensemble", action="append", metavar="CKPT", default=None,
                        help="another checkpoint of the same classes (e.g. a cycle snapshot of save_cycles), its "
                             "probabilities averaged with the first's; repeat the flag for more")
    parser.add_argument("--traceback", action="store_true", help="show the traceback of a user error")
    with one_line_warnings():
        return one_line_errors(lambda argv: classify(**{k: v for k, v in vars(parser.parse_args(argv)).items()
                                                         if k != "traceback"}), args)


def wgan_generate(args: list[str] | None = None):
    with stopped_before_start(args is None):
        from lightning_modules.wgan_generate import generate
    return run(generate, args)


def wgan_fid(args: list[str] | None = None):
    with stopped_before_start(args is None):
        from lightning_modules.wgan_fid import fid
    return run(fid, args)


def cyclegan_translate(args: list[str] | None = None):
    with stopped_before_start(args is None):
        from lightning_modules.cyclegan_translate import translate
    return run(translate, args, as_positional=False)


def stylize(args: list[str] | None = None):
    with stopped_before_start(args is None):
        from lightning_modules.stylize import stylize
    return run(stylize, args)


def export(args: list[str] | None = None):
    with stopped_before_start(args is None):
        from lightning_modules.export import export
    return run(export, args)


def darknet(args: list[str] | None = None):
    """`python -m lightning_modules.darknet_classifier classify ...`"""
    argv = sys.argv[1:] if args is None else list(args)
    if argv[:1] in (["-h"], ["--help"]):
        return classify(["--help"], prog="python -m lightning_modules.darknet_classifier classify")
    if not argv or argv[0] != "classify":
        print("usage: python -m lightning_modules.darknet_classifier classify CHECKPOINT IMAGE [IMAGE ...] "
              "[--top_k K] [--tta flip] [--output preds.csv] [--device cuda]", file=sys.stderr)
        sys.exit(2)  # a usage mistake, as argparse's
    return classify(argv[1:], prog="python -m lightning_modules.darknet_classifier classify")


def wgan(args: list[str] | None = None):
    """`python -m lightning_modules.wgan {generate,fid} ...`"""
    from lightning_modules.wgan_fid import fid
    from lightning_modules.wgan_generate import generate
    return run([generate, fid], args)


def cyclegan(args: list[str] | None = None):
    """`python -m lightning_modules.cyclegan translate ...`"""
    from lightning_modules.cyclegan_translate import translate
    return run({"translate": translate}, args, as_positional=False)


def style_transfer(args: list[str] | None = None):
    """`python -m lightning_modules.style_transfer stylize ...`"""
    from lightning_modules.stylize import stylize
    return run({"stylize": stylize}, args)
