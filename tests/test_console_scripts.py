"""The inference commands' entry points (lightning_modules/commands.py): console scripts, python -m, exits, errors."""

import configparser
import importlib
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT, seeded_rows, tiny_wgan_checkpoint
from PIL import Image

from lightning_modules import WGAN, commands
from lightning_modules.darknet_classify import classify

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.xdist_group("inference_commands")]


SCRIPTS = {"dl2-classify": "classify", "dl2-wgan-generate": "wgan_generate", "dl2-wgan-fid": "wgan_fid",
           "dl2-cyclegan-translate": "cyclegan_translate", "dl2-stylize": "stylize", "dl2-export": "export"}


def console_scripts() -> dict[str, str]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    lines = [line for line in config["options.entry_points"]["console_scripts"].splitlines() if line.strip()]
    return dict(tuple(part.strip() for part in line.split("=")) for line in lines)


def test_setup_cfg_declares_a_prefixed_console_script_per_command():
    declared = console_scripts()
    assert declared == {name: f"lightning_modules.commands:{fn}" for name, fn in SCRIPTS.items()}
    for target in declared.values():
        module, _, function = target.partition(":")
        assert callable(getattr(importlib.import_module(module), function))


# `python -m lightning_modules.X SUBCOMMAND --help` for each X, each in a child forked from one fresh interpreter that
# imported the third-party packages alone (torch, Lightning...: 8-14 s of one core per interpreter on the 2-core CPU,
# paid once). A child runs the module as `python -m` does (runpy._run_module_as_main), with lightning_modules not yet
# imported, so the package's own imports are what decide the runpy warning, as in a fresh interpreter.
PYTHON_M = """
import os, runpy, sys, traceback
import jsonargparse, lightning, torch, torchvision  # noqa: F401  (not lightning_modules, datamodules nor callbacks)
assert not any(name.split(".")[0] in ("lightning_modules", "datamodules", "callbacks") for name in sys.modules)
out, commands = sys.argv[1], sys.argv[2:]
children = {}
for module, subcommand in zip(commands[::2], commands[1::2]):
    sys.stdout.flush(); sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        for fd, suffix in ((1, "out"), (2, "err")):
            os.dup2(os.open(os.path.join(out, f"{module}.{suffix}"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
        sys.argv = ["-m", subcommand, "--help"]
        try:
            runpy._run_module_as_main(f"lightning_modules.{module}")
            code = 0
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush(); sys.stderr.flush()
        os._exit(code)
    children[pid] = module
for _ in children:
    pid, status = os.wait()
    print(children[pid], os.waitstatus_to_exitcode(status))
"""


def test_python_m_runs_without_runpy_warning(tmp_path):
    """Each `python -m lightning_modules.X SUBCOMMAND --help`: exit status 0, its usage, no warning (-W
    error::RuntimeWarning: runpy's 'found in sys.modules' warning is an error, as it is for the forked children)."""
    commands_ = [("wgan", "fid"), ("cyclegan", "translate"), ("style_transfer", "stylize"),
                 ("darknet_classifier", "classify")]
    server = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-c", PYTHON_M, str(tmp_path),
                             *[part for command in commands_ for part in command]], cwd=ROOT, capture_output=True,
                            text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=180)
    assert server.returncode == 0 and "Warning" not in server.stderr, server.stderr[-2000:]
    codes = dict(line.split() for line in server.stdout.splitlines())
    for module, _ in commands_:
        out, err = ((tmp_path / f"{module}.{suffix}").read_text() for suffix in ("out", "err"))
        assert codes[module] == "0" and "Warning" not in err, f"{module}: {err[-2000:]}"
        assert "usage:" in out, module


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_every_console_script_returns_none_so_its_exit_status_is_0(name, monkeypatch):
    """setuptools' console script runs sys.exit(FUNCTION()): a returned path or list would be printed to stderr
    and exit with status 1 after a successful run."""
    monkeypatch.setattr(commands, "CLI", lambda *args, **kwargs: "a returned value")
    import lightning_modules.darknet_classify as darknet

    def fake_classify(**kwargs):
        """Stands in for the real one."""
        return ["a returned value"]
    monkeypatch.setattr(darknet, "classify", fake_classify)
    assert getattr(commands, SCRIPTS[name])(["ckpt", "image.png"]) is None


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_every_console_scripts_help_names_traceback(name, capsys):
    """Every command takes --traceback (one_line_errors reads it before the parser): dl2-classify's help listed it, the
    jsonargparse commands' did not."""
    with pytest.raises(SystemExit) as stopped:
        getattr(commands, SCRIPTS[name])(["--help"])
    assert stopped.value.code == 0
    assert "--traceback" in " ".join(capsys.readouterr().out.split())


def test_console_script_generate_writes_the_samples(tmp_path, capsys):
    model = WGAN.load_from_checkpoint(tiny_wgan_checkpoint(tmp_path), map_location="cpu")
    for batch_size in ("256", "1"):  # the same seed gives the same images, whatever the batch size
        commands.wgan_generate([str(tmp_path / "wgan.ckpt"), "--out_dir", str(tmp_path / batch_size),
                                "--num_samples", "3", "--nrow", "1", "--batch_size", batch_size])
        # the samples alone: an FID tool reading the folder takes every .png in it for a sample
        assert sorted(p.name for p in (tmp_path / batch_size).iterdir()) == ["000000.png", "000001.png",
                                                                             "000002.png"]
        assert (tmp_path / f"{batch_size}_grid.png").is_file()
    noise = seeded_rows(3, 8, seed=0)  # the default seed, N(0, 1), a row at a time
    with torch.no_grad():
        expected = (model.eval().generator(noise) + 1) / 2
    for batch_size in ("256", "1"):
        for i in range(3):
            image = torch.from_numpy(np.array(Image.open(tmp_path / batch_size / f"{i:06d}.png"))).permute(2, 0, 1)
            assert (image / 255 - expected[i]).abs().max() <= 1 / 255 + 1e-6
    assert "note:" not in capsys.readouterr().err
    # fewer samples into the same folder: the earlier run's third image stays, and is named (and another .png)
    Image.new("RGB", (4, 4)).save(tmp_path / "1" / "grid.png")
    commands.wgan_generate([str(tmp_path / "wgan.ckpt"), "--out_dir", str(tmp_path / "1"), "--num_samples", "2",
                            "--nrow", "1"])
    assert (f"note: {tmp_path / '1'} also holds 2 .png files this run did not write (e.g. 000002.png; from an "
            f"earlier run?)") in capsys.readouterr().err


def test_ctrl_c_in_a_command_exits_130_in_one_line_and_keeps_whole_files(tmp_path, capsys, monkeypatch):
    """It was a KeyboardInterrupt traceback; each file is written to a temp file and renamed, so none is torn."""
    import lightning_modules.wgan_generate as wgan
    tiny_wgan_checkpoint(tmp_path)
    save_png = wgan.save_png

    def interrupted_at_the_third(image, path):
        if path.name == "000002.png":
            raise KeyboardInterrupt
        return save_png(image, path)
    monkeypatch.setattr(wgan, "save_png", interrupted_at_the_third)
    monkeypatch.setattr(sys, "argv", ["/venv/bin/dl2-wgan-generate", "wgan.ckpt"])  # as the console script starts
    with pytest.raises(SystemExit) as stop:
        commands.wgan_generate([str(tmp_path / "wgan.ckpt"), "--out_dir", str(tmp_path / "out"), "--num_samples", "4"])
    assert stop.value.code == 130  # 128 + SIGINT, as a shell reports a Ctrl-C
    err = capsys.readouterr().err
    assert err.strip() == "dl2-wgan-generate: Ctrl-C: stopped"  # one line, the command named
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["000000.png", "000001.png"]
    assert Image.open(tmp_path / "out" / "000001.png").size == (16, 16)


def test_ctrl_c_while_a_console_script_imports_its_packages_is_one_line_and_130(tmp_path):
    """Ctrl-C in the seconds a dl2-* command takes to import torch and Lightning printed Python's KeyboardInterrupt
    traceback. A jsonargparse that raises it as lightning_modules.commands imports it stands in for the key; the
    script is setuptools' console script's two lines."""
    stand_ins = tmp_path / "stand_ins"
    stand_ins.mkdir()
    (stand_ins / "jsonargparse.py").write_text("raise KeyboardInterrupt\n")
    script = ("import sys; sys.argv[0] = '/venv/bin/dl2-wgan-generate'\n"
              "from lightning_modules.commands import wgan_generate\nsys.exit(wgan_generate())\n")
    result = subprocess.run([sys.executable, "-c", script, "wgan.ckpt"], cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(stand_ins), str(ROOT)])},
                            timeout=120)
    assert result.returncode == 130, result.stderr[-2000:]
    assert result.stderr.strip() == "dl2-wgan-generate: Ctrl-C: stopped before the command began (nothing was written)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stand_ins"]


class InterruptedImport:
    """A meta path finder that raises KeyboardInterrupt when `name` is imported: a Ctrl-C at that moment."""

    def __init__(self, name: str):
        self.name = name

    def find_spec(self, name, path=None, target=None):
        if name == self.name:
            raise KeyboardInterrupt


@pytest.mark.parametrize("function, module", [("classify", "darknet_classify"), ("wgan_generate", "wgan_generate"),
                                              ("wgan_fid", "wgan_fid"), ("cyclegan_translate", "cyclegan_translate"),
                                              ("stylize", "stylize"), ("export", "export")])
def test_ctrl_c_while_a_command_imports_its_module_is_one_line_and_130_but_stays_an_interrupt_from_python(
        function, module, monkeypatch, capsys):
    """The command's own module (torchvision, the system) is imported inside the command, before one_line_errors."""
    name = f"lightning_modules.{module}"
    monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setattr(sys, "meta_path", [InterruptedImport(name), *sys.meta_path])
    monkeypatch.setattr(sys, "argv", [f"/venv/bin/dl2-{function.replace('_', '-')}", "x.ckpt"])
    with pytest.raises(SystemExit) as stop:
        getattr(commands, function)()  # as the console script calls it: its arguments from sys.argv
    assert stop.value.code == 130
    assert capsys.readouterr().err.strip() == (f"dl2-{function.replace('_', '-')}: Ctrl-C: stopped before the "
                                               f"command began (nothing was written)")
    with pytest.raises(KeyboardInterrupt):  # a notebook's call: its Ctrl-C is the notebook's to handle
        getattr(commands, function)(["x.ckpt"])


@pytest.mark.parametrize("command, option", [("wgan_generate", "--num_samples"), ("wgan_generate", "--batch_size"),
                                             ("wgan_generate", "--nrow"), ("classify", "--size"),
                                             ("classify", "--batch_size"), ("classify", "--top_k"),
                                             ("wgan_fid", "--num_samples"),
                                             ("wgan_fid", "--batch_size")])
def test_a_count_below_one_is_refused_in_one_line(command, option, capsys):
    args = ["absent.ckpt"] + {"classify": ["image.png"], "wgan_fid": ["real", "features.ckpt"]}.get(command, [])
    with pytest.raises(SystemExit) as stop:  # checked before the checkpoint or the images are read
        getattr(commands, command)([*args, option, "0"])
    assert stop.value.code == 2 and f"{option} must be at least 1 (got 0)" in capsys.readouterr().err



def test_a_count_of_1_is_taken_and_each_count_is_checked():
    from callbacks.errors import UserError, require_at_least_one
    assert require_at_least_one(num_samples=1, batch_size=1, nrow=1) is None
    with pytest.raises(UserError, match=r"^--nrow must be at least 1 \(got -3\)$"):  # not only the first
        require_at_least_one(num_samples=1, batch_size=64, nrow=-3)


def test_a_commands_own_flags_replace_train_pys_in_a_users_mistake_and_a_bugs_error_keeps_its_type():
    """own_flags (dl2-stylize, dl2-wgan-fid) renames the flags of a UserError or of our FileNotFoundError; one without
    train.py's flags is raised as it was, and the OS's own FileNotFoundError (errno set: a bug, not a message of ours)
    stays itself even when its path reads as a flag."""
    from callbacks.errors import UserError, own_flags
    names = {"--data.content": "--content", "--model.vgg_weights": "--vgg_weights"}
    with pytest.raises(UserError) as renamed:
        with own_flags(names):
            raise UserError("--data.content a.jpg: no such image; --model.vgg_weights and --data.size unchanged")
    assert str(renamed.value) == "--content a.jpg: no such image; --vgg_weights and --data.size unchanged"
    mine = FileNotFoundError("--model.vgg_weights w.pth: no such file")
    with pytest.raises(UserError, match=r"^--vgg_weights w.pth: no such file$") as renamed:
        with own_flags(names):
            raise mine
    assert renamed.value.__cause__ is mine
    oserror = FileNotFoundError(2, "No such file or directory", "--data.content")
    with pytest.raises(FileNotFoundError) as kept:
        with own_flags(names):
            raise oserror
    assert kept.value is oserror
    plain = UserError("--size 16 is too small")
    with pytest.raises(UserError) as kept:
        with own_flags(names):
            raise plain
    assert kept.value is plain

@pytest.mark.parametrize("command, args, message", [
    ("wgan_generate", ["w.ckpt", "--num_samples", "abc"], "--num_samples: expected int, got 'abc'"),
    ("cyclegan_translate", ["--checkpoint", "c.ckpt", "--input_dir", "in", "--direction", "sideways"],
     "--direction: "),  # jsonargparse's wording of the choices differs between versions
    ("stylize", ["--content", "c.jpg", "--bogus", "1"], "unrecognized arguments: --bogus 1; see --help"),
    ("wgan_fid", ["w.ckpt"], "the following arguments are required: data_dir, features; see --help"),
    ("wgan", [], 'expected "subcommand" to be one of {generate,fid}, but it was not provided; see --help'),
    ("classify", ["c.ckpt", "x.png", "--top_k", "abc"], "argument --top_k: invalid int value: 'abc'; see --help"),
    ("classify", [], "the following arguments are required: checkpoint, images; see --help"),
])
def test_a_value_the_parser_refuses_is_one_line(command, args, message, capsys):
    with pytest.raises(SystemExit) as stop:
        getattr(commands, command)(args)
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and message in err and len(err.splitlines()) == 1, err  # no usage block


@pytest.mark.parametrize("argv", [[], ["predict", "x.ckpt"]])
def test_darknet_module_without_classify_prints_its_usage_with_status_2(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        commands.darknet(argv)
    assert stop.value.code == 2 and "darknet_classifier classify CHECKPOINT IMAGE" in capsys.readouterr().err


def test_darknet_module_help_is_classifys_with_status_0(capsys):
    with pytest.raises(SystemExit) as stop:
        commands.darknet(["--help"])
    assert stop.value.code == 0 and "--top_k TOP_K" in capsys.readouterr().out


def recorded_classify(monkeypatch):
    """The dl2-classify parser's call of darknet_classify.classify, recorded instead of run."""
    given = []

    def called(**options):
        """Classify images (a stand-in that keeps its arguments)."""
        given.append(options)
    monkeypatch.setattr("lightning_modules.darknet_classify.classify", called)
    return given


def test_dl2_classify_gives_classify_its_own_defaults_and_every_option_but_traceback(monkeypatch, capsys):
    import inspect
    defaults = {name: p.default for name, p in inspect.signature(classify).parameters.items()
                if p.default is not inspect.Parameter.empty}
    with pytest.raises(SystemExit) as stop:
        commands.classify(["--help"])
    summary = classify.__doc__.split("\n")[0]  # "Classify images with a trained Darknet: ..."
    assert stop.value.code == 0 and summary in " ".join(capsys.readouterr().out.split())
    given = recorded_classify(monkeypatch)
    commands.classify(["m.ckpt", "a.png", "photos"])
    assert given.pop() == {"checkpoint": "m.ckpt", "images": ["a.png", "photos"], **defaults}
    commands.classify(["m.ckpt", "--top_k", "1", "--tta", "flip", "--size", "40", "--batch_size", "2", "--output",
                       "p.csv", "--device", "cpu", "--ensemble", "x.ckpt", "a.png", "--ensemble", "y.ckpt",
                       "--traceback"])
    assert given.pop() == {"checkpoint": "m.ckpt", "images": ["a.png"], "top_k": 1, "tta": "flip", "size": 40,
                           "batch_size": 2, "output": "p.csv", "device": "cpu", "ensemble": ["x.ckpt", "y.ckpt"]}


@pytest.mark.parametrize("argv", [["classify", "m.ckpt", "a.png"], None])
def test_darknet_module_passes_what_follows_classify_to_dl2_classify(argv, monkeypatch):
    given = recorded_classify(monkeypatch)
    monkeypatch.setattr(sys, "argv", ["/x/darknet_classifier.py", "classify", "m.ckpt", "a.png"])  # as `python -m`
    commands.darknet(argv)
    assert [(g["checkpoint"], g["images"]) for g in given] == [("m.ckpt", ["a.png"])]


def test_darknet_module_help_comes_first_whatever_follows(capsys):
    with pytest.raises(SystemExit) as stop:
        commands.darknet(["-h", "classify"])
    assert stop.value.code == 0 and "--top_k TOP_K" in capsys.readouterr().out


def test_fid_needs_two_samples_for_a_covariance(capsys):
    with pytest.raises(SystemExit) as stop:
        commands.wgan_fid(["absent.ckpt", "real", "features.ckpt", "--num_samples", "1"])
    assert stop.value.code == 2 and "--num_samples must be at least 2 (got 1)" in capsys.readouterr().err


def test_output_cut_short_by_its_reader_ends_quietly_but_a_broken_pipe_of_the_program_s_own_is_shown(tmp_path):
    # `train.py --help | head -2`: the reader closes the pipe; the rest of the help is not wanted, no traceback
    # (exit 141, as a command SIGPIPE ended); here the pipe's reading end is closed before anything is written
    script = tmp_path / "cut.py"
    # callbacks/errors.py alone, without the package's torch and Lightning imports (a second apiece)
    script.write_text("import importlib.util, os, sys\n"
                      "spec = importlib.util.spec_from_file_location('errors', sys.argv[1] + '/callbacks/errors.py')\n"
                      "errors = importlib.util.module_from_spec(spec)\nspec.loader.exec_module(errors)\n"
                      "one_line_errors = errors.one_line_errors\n"
                      "def main(argv):\n    if argv == ['own']:\n        read, write = os.pipe()\n"
                      "        os.close(read)\n        os.write(write, b'x')\n"
                      "    for _ in range(100):\n        print('a line of help', flush=True)\n"
                      "one_line_errors(main, sys.argv[2:])\n")
    for own in (False, True):
        process = subprocess.Popen([sys.executable, str(script), str(ROOT), *(["own"] if own else [])],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = process.communicate() if own else (process.stdout.close(), process.stderr.read())
        process.stderr.close()
        if own:  # a pipe the program broke itself (a worker's): an error, with its traceback
            assert process.wait() == 1 and err.strip().endswith("BrokenPipeError: [Errno 32] Broken pipe"), err
        else:
            assert process.wait() == 141 and err == ""


def test_stdout_reader_gone_only_for_a_pipe_whose_reader_closed(capsys):
    from callbacks.errors import stdout_reader_gone
    assert not stdout_reader_gone()  # pytest's capture: no file descriptor to poll, so not a widowed pipe
    read, write = os.pipe()
    with open(write, "w") as out:
        saved, sys.stdout = sys.stdout, out
        try:
            open_reader = stdout_reader_gone()
            os.close(read)
            closed_reader = stdout_reader_gone()
        finally:
            sys.stdout = saved
    assert (open_reader, closed_reader) == (False, True)



def test_a_commands_unknown_flag_gets_no_hint_of_train_pys_groups(capsys, monkeypatch):
    """train.py's '--dataroot (did you mean --data.data_dir?)' is wrong for dl2-cyclegan-translate, whose flags are
    its own (--input_dir)."""
    monkeypatch.setattr(sys, "argv", ["/venv/bin/dl2-cyclegan-translate"])
    with pytest.raises(SystemExit) as stop:
        commands.cyclegan_translate(["--dataroot", "x"])
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip() == ("dl2-cyclegan-translate: error: unrecognized arguments: --dataroot x; "
                                               "see --help")
    from callbacks.errors import close_option
    assert close_option("dataroot") == " (did you mean --data.data_dir?)"  # train.py's parser, after the command
