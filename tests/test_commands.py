"""The inference commands: console scripts declared in setup.cfg, `python -m` without runpy warnings."""

import configparser
import importlib
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from conftest import ROOT, make_style_images, seeded_rows, tiny_darknet_checkpoint, tiny_wgan_checkpoint
from PIL import Image

from callbacks import UserError
from lightning_modules import WGAN, commands
from lightning_modules.darknet_classify import classify

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.xdist_group("test_commands")]

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


def test_console_script_stylize_writes_the_image(tmp_path):
    content, style = make_style_images(tmp_path / "in")
    commands.stylize(["--content", str(content[0]), "--style", str(style), "--output", str(tmp_path / "out"),
                      "--size", "32", "--max_iter", "1", "--vgg_weights", "random", "--arch", "vgg16",
                      "--accelerator", "cpu"])
    assert Image.open(tmp_path / "out" / "content0.png").size == (32, 32)


def test_stylize_errors_name_its_own_flags(tmp_path, capsys):
    """The data module and the VGG loader name train.py's flags (--data.style, --model.vgg_weights); dl2-stylize
    says its own."""
    content, _ = make_style_images(tmp_path / "in")
    for args, expected in (
            (["--style", str(tmp_path / "absent.jpg"), "--vgg_weights", "random"],
             "give an existing image file as --style s.jpg"),
            (["--vgg_weights", str(tmp_path / "absent.pth")], f"--vgg_weights {tmp_path / 'absent.pth'}: no such file"),
            (["--size", "16", "--vgg_weights", "random"], "try --size 288")):
        with pytest.raises(SystemExit) as stop:
            commands.stylize(["--content", str(content[0]), "--output", str(tmp_path / "out"), *args])
        err = capsys.readouterr().err
        assert stop.value.code == 2 and expected in err and "--data." not in err and "--model." not in err, err


# -- dl2-classify ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def darknet_checkpoint(tmp_path_factory):
    """A tiny Darknet trained 2 steps on generated CIFAR-style folders (classes cat, dog, frog), its checkpoint."""
    return tiny_darknet_checkpoint(tmp_path_factory.mktemp("classify"), compile=True,
                                   compile_options={"backend": "eager"})  # classify must not compile


def by_hand(checkpoint, images: torch.Tensor, flip: bool = False) -> torch.Tensor:
    """Class probabilities written out: the seed's normalisation, the net, a softmax (of the mean logits with
    the mirror image when flip)."""
    from lightning_modules import DarknetClassifier
    model = DarknetClassifier.load_from_checkpoint(checkpoint, map_location="cpu").eval()
    mean = torch.tensor([0.4914, 0.48216, 0.44653]).view(1, 3, 1, 1)
    std = torch.tensor([0.24703, 0.24349, 0.26159]).view(1, 3, 1, 1)
    x = (images.float() / 255 - mean) / std
    with torch.no_grad():
        logits = model.net(x)
        if flip:
            logits = (logits + model.net(x.flip(-1))) / 2
    return logits.softmax(1)


def no_compilation(monkeypatch):
    import lightning_modules.darknet_classifier as darknet

    def refuse(options):
        raise AssertionError("classify compiled the net")
    monkeypatch.setattr(darknet, "compiled_call", refuse)


def test_a_run_folder_or_last_stands_for_the_runs_last_checkpoint(darknet_checkpoint, tmp_path, capsys, monkeypatch):
    """`last`: the newest darknet training run's checkpoints/last.ckpt in runs/darknet (as train.py's --ckpt_path
    last); a run folder: its own. Told apart by their weights: each run's checkpoint is another net."""
    import json
    checkpoint, data_dir = darknet_checkpoint
    runs = tmp_path / "runs" / "darknet"
    state = torch.load(checkpoint, weights_only=False)
    for k, (name, started, model) in enumerate([("old", 1.0, "lightning_modules.DarknetClassifier"),
                                                ("new", 0.5, "lightning_modules.DarknetClassifier"),
                                                ("newer-test", 3.0, "lightning_modules.DarknetClassifier"),
                                                ("../darknet_fast/fast", 0.7, "lightning_modules.DarknetClassifier"),
                                                ("untrained", 5.0, "lightning_modules.DarknetClassifier"),
                                                ("newest-wgan", 4.0, "lightning_modules.WGAN")]):
        (runs / name / "checkpoints").mkdir(parents=True)
        kind = "test" if name == "newer-test" else "fit"
        (runs / name / "run.json").write_text(json.dumps({"model": model, "started": started, "kind": kind,
                                                          "trained": name != "untrained"}))
        torch.manual_seed(k)
        weights = {key: value + 0.5 * torch.randn_like(value) if value.is_floating_point() else value
                   for key, value in state["state_dict"].items()}
        torch.save({**state, "state_dict": weights}, runs / name / "checkpoints" / "last.ckpt")
    (runs / "aaa-no-run-json" / "checkpoints").mkdir(parents=True)  # first in the order the folders are read
    (runs / "aaa-no-run-json" / "checkpoints" / "last.ckpt").write_bytes(b"")
    run_json = runs / "old" / "run.json"
    run_json.write_text(json.dumps({k: v for k, v in json.loads(run_json.read_text()).items() if k != "started"}))
    image = sorted((data_dir / "test").rglob("*.png"))[0]
    pixels = torch.from_numpy(np.array(Image.open(image))).permute(2, 0, 1)[None]
    monkeypatch.chdir(tmp_path)
    for argument, run in [("last", "../darknet_fast/fast"), (str(runs / "old"), "old")]:
        (result,) = classify(argument, [str(image)], top_k=3)
        expected = by_hand(runs / run / "checkpoints" / "last.ckpt", pixels)[0]
        assert torch.allclose(torch.tensor(list(result["probabilities"].values())), expected, atol=1e-5)
        used = Path("runs/darknet_fast/fast") if argument == "last" else runs / run
        assert f"checkpoint: {used / 'checkpoints' / 'last.ckpt'}\n" == capsys.readouterr().err  # which, on stderr
    assert not torch.allclose(by_hand(runs / "old" / "checkpoints" / "last.ckpt", pixels),
                              by_hand(runs / "new" / "checkpoints" / "last.ckpt", pixels), atol=1e-3)
    for argument, needle in [(str(tmp_path / "absent.ckpt"), f"checkpoint {tmp_path / 'absent.ckpt'} not found"),
                             (str(runs), f"checkpoint {runs} is a folder without checkpoints/last.ckpt")]:
        with pytest.raises(UserError, match=needle):
            classify(argument, [str(image)])
    monkeypatch.chdir(tmp_path / "runs")  # no runs/darknet here
    with pytest.raises(SystemExit) as stop:
        commands.classify(["last", str(image)])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1, err
    assert f"last: no darknet run with checkpoints/last.ckpt in {tmp_path / 'runs' / 'runs'}/*/" in err


@pytest.mark.parametrize("command, args", [
    ("wgan_generate", ["last"]), ("cyclegan_translate", ["--checkpoint", "last", "--input_dir", "a.png", "--output_dir",
                                                         "out"])])
def test_last_without_a_run_is_named_by_the_gan_commands_too(command, args, tmp_path, capsys, monkeypatch):
    """Their fallback to the reference's generator files (a .ckpt that does not load) must not hide it."""
    monkeypatch.chdir(tmp_path)
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    with pytest.raises(SystemExit) as stop:
        getattr(commands, command)(args)
    system = command.partition("_")[0]
    err = capsys.readouterr().err
    assert stop.value.code == 2, err
    assert f"last: no {system} run with checkpoints/last.ckpt in {tmp_path / 'runs'}" in err, err


def test_classify_gives_each_images_classes_and_probabilities_and_writes_them(darknet_checkpoint, tmp_path,
                                                                              capsys, monkeypatch):
    import csv
    checkpoint, data_dir = darknet_checkpoint
    no_compilation(monkeypatch)
    csv_path = tmp_path / "out" / "deeper" / "predictions.csv"
    for _ in range(2):  # into folders it makes, then over the file it wrote
        assert commands.classify([str(checkpoint), str(data_dir / "test"), "--top_k", "2", "--output",
                                  str(csv_path)]) is None  # sys.exit(None): status 0
    results = classify(str(checkpoint), [str(data_dir / "test")], top_k=2)
    files = sorted((data_dir / "test").rglob("*.png"))
    assert [r["path"] for r in results] == [str(f) for f in files]  # the class folders searched, in path order
    pixels = torch.stack([torch.from_numpy(__import__("numpy").array(Image.open(f))).permute(2, 0, 1) for f in files])
    expected = by_hand(checkpoint, pixels)
    names = ["cat", "dog", "frog"]  # the data's class folders, kept in the checkpoint
    for result, p in zip(results, expected, strict=True):
        assert list(result["probabilities"]) == names
        assert torch.allclose(torch.tensor(list(result["probabilities"].values())), p, atol=1e-5)
        assert result["prediction"] == names[int(p.argmax())] and result["probability"] == pytest.approx(float(p.max()))
        assert [name for name, _ in result["top"]] == [names[i] for i in p.argsort(descending=True)[:2]]
    printed = capsys.readouterr().out.splitlines()
    assert printed[:len(files)] == printed[2 * (len(files) + 1):]  # the command's lines (twice), the function's
    top = results[0]["top"]
    assert printed[0] == f"{files[0]}: {top[0][0]} {100 * top[0][1]:.1f}%, {top[1][0]} {100 * top[1][1]:.1f}%"
    with open(csv_path) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["path", "prediction", "probability", *names] and len(rows) == 1 + len(files)
    assert float(rows[1][3 + names.index(rows[1][1])]) == pytest.approx(float(expected[0].max()), abs=1e-6)


def test_classify_flip_tta_averages_the_mirror_logits(darknet_checkpoint):
    checkpoint, data_dir = darknet_checkpoint
    file = data_dir / "test" / "dog" / "0001.png"
    result, = classify(str(checkpoint), [str(file)], tta="flip", top_k=1)
    assert len(result["top"]) == 1
    pixels = torch.from_numpy(__import__("numpy").array(Image.open(file))).permute(2, 0, 1)[None]
    expected = by_hand(checkpoint, pixels, flip=True)[0]
    assert torch.allclose(torch.tensor(list(result["probabilities"].values())), expected, atol=1e-5)
    assert not torch.allclose(expected, by_hand(checkpoint, pixels)[0], atol=1e-5)  # the mirror mattered


def test_classify_resizes_other_sizes_to_the_training_size(darknet_checkpoint, tmp_path, monkeypatch):
    """What the net is given: a uniform 50x70 image becomes the 32x32 one of its colour; a 32x64 image is cut to
    its central 32x32 square (junk on both sides), normalised with the seed's statistics."""
    import numpy as np

    from lightning_modules import DarknetClassifier
    checkpoint, _ = darknet_checkpoint
    seen = []
    forward = DarknetClassifier.forward
    monkeypatch.setattr(DarknetClassifier, "forward", lambda self, x: seen.append(x.clone()) or forward(self, x))
    Image.new("RGB", (70, 50), (200, 30, 90)).save(tmp_path / "uniform.png")
    centre = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    junk = np.random.default_rng(1).integers(0, 256, (32, 16, 3), dtype=np.uint8)
    Image.fromarray(np.concatenate([junk, centre, junk[:, ::-1]], axis=1)).save(tmp_path / "wide.png")
    classify(str(checkpoint), [str(tmp_path / "uniform.png"), str(tmp_path / "wide.png")])
    mean = torch.tensor([0.4914, 0.48216, 0.44653]).view(3, 1, 1)
    std = torch.tensor([0.24703, 0.24349, 0.26159]).view(3, 1, 1)
    uniform = ((torch.tensor([200, 30, 90]).view(3, 1, 1) / 255 - mean) / std).expand(3, 32, 32)
    wide = (torch.from_numpy(centre).permute(2, 0, 1) / 255 - mean) / std
    assert seen[0].shape == (2, 3, 32, 32)
    assert torch.allclose(seen[0][0], uniform, atol=1e-4) and torch.allclose(seen[0][1], wide, atol=1e-4)


def trained_at(root: Path, image_size: int, phases=None) -> tuple[Path, Path]:
    """A tiny Darknet trained 2 steps on 32px folders resized to `image_size` (--data.image_size), its checkpoint."""
    from conftest import make_folders

    from callbacks import TrainingPhase, TrainingPhaseScheduler
    from datamodules import CIFAR10DataModule
    from lightning_modules import DarknetClassifier
    data_dir = make_folders(root / "cifar", per_class=(4, 2))
    torch.manual_seed(0)
    model = DarknetClassifier(num_blocks=[1], nf=4, num_classes=3, one_cycle=None)
    callbacks = [TrainingPhaseScheduler([TrainingPhase(**p) for p in phases], plot=False)] if phases else []
    trainer = L.Trainer(accelerator="cpu", max_steps=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        default_root_dir=root, callbacks=callbacks)
    data = CIFAR10DataModule(str(data_dir), batch_size=4, download=False, image_size=image_size)
    trainer.fit(model, datamodule=data)
    trainer.save_checkpoint(root / "darknet.ckpt")
    return root / "darknet.ckpt", data_dir


@pytest.mark.parametrize("case", ["data", "phase", "older checkpoint", "--size"])
def test_classify_gives_the_net_the_size_it_was_trained_at(case, tmp_path, monkeypatch):
    """A net trained at --data.image_size 40 (or a last phase's data image_size 40) is given 40px images, not 32px
    ones: a uniform 32x32 image becomes the uniform 40x40 one of its colour. A checkpoint written before the size was
    kept gives its data module's image_size; --size still chooses."""
    from lightning_modules import DarknetClassifier
    if case == "phase":
        checkpoint, _ = trained_at(tmp_path, 32, phases=[{"epochs": 0.5, "lr": 0.01, "data": {"image_size": 24}},
                                                         {"epochs": 1, "lr": 0.01, "data": {"image_size": 40}}])
    else:
        checkpoint, _ = trained_at(tmp_path, 40)
    if case == "older checkpoint":
        state = torch.load(checkpoint, weights_only=False)
        del state["image_size"]
        torch.save(state, checkpoint)
    seen = []
    forward = DarknetClassifier.forward
    monkeypatch.setattr(DarknetClassifier, "forward", lambda self, x: seen.append(x.clone()) or forward(self, x))
    Image.new("RGB", (32, 32), (200, 30, 90)).save(tmp_path / "uniform.png")
    classify(str(checkpoint), [str(tmp_path / "uniform.png")], **({"size": 24} if case == "--size" else {}))
    side = 24 if case == "--size" else 40
    mean = torch.tensor([0.4914, 0.48216, 0.44653]).view(3, 1, 1)
    std = torch.tensor([0.24703, 0.24349, 0.26159]).view(3, 1, 1)
    uniform = ((torch.tensor([200, 30, 90]).view(3, 1, 1) / 255 - mean) / std).expand(3, side, side)
    assert seen[0].shape == (1, 3, side, side)
    assert torch.allclose(seen[0][0], uniform, atol=1e-4)


def test_testing_a_checkpoint_at_another_image_size_warns(tmp_path):
    from datamodules import CIFAR10DataModule
    from lightning_modules import DarknetClassifier
    checkpoint, data_dir = trained_at(tmp_path, 40)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path)
    model = DarknetClassifier(num_blocks=[1], nf=4, num_classes=3, one_cycle=None, interpret=False)
    with pytest.warns(UserWarning, match="trained on 40px images, the data gives it 32px ones"):
        trainer.test(model, datamodule=CIFAR10DataModule(str(data_dir), download=False), ckpt_path=checkpoint)


def test_a_checkpoint_without_class_names_numbers_the_classes(darknet_checkpoint, tmp_path):
    checkpoint, data_dir = darknet_checkpoint
    state = torch.load(checkpoint, weights_only=False)
    del state["class_names"]
    torch.save(state, tmp_path / "old.ckpt")
    result, = classify(str(tmp_path / "old.ckpt"), [str(data_dir / "test" / "cat" / "0000.png")])
    assert list(result["probabilities"]) == ["0", "1", "2"]


@pytest.mark.parametrize("case", ["missing", "wgan", "torn", "not lightning", "other system"])
def test_inference_commands_say_a_wrong_checkpoint_in_one_line(darknet_checkpoint, tmp_path, capsys, case,
                                                               monkeypatch):
    checkpoint, data_dir = darknet_checkpoint
    image = str(data_dir / "test" / "cat" / "0000.png")
    if case == "missing":
        path, needle = tmp_path / "nothing.ckpt", "nothing.ckpt not found; pass a .ckpt file"
    elif case == "wgan":
        model = WGAN(isize=16, nz=8, ngf=4, ndf=4)
        trainer = L.Trainer(accelerator="cpu", max_steps=0, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
        trainer.strategy.connect(model)
        trainer.save_checkpoint(tmp_path / "wgan.ckpt")
        path, needle = tmp_path / "wgan.ckpt", ("wgan.ckpt is not a DarknetClassifier checkpoint (Missing key(s) in "
                                                "state_dict: ")
    elif case == "torn":
        (tmp_path / "torn.ckpt").write_bytes(checkpoint.read_bytes()[:1000])
        (tmp_path / "earlier.ckpt").write_bytes(b"")
        path, needle = tmp_path / "torn.ckpt", f"torn.ckpt is not a readable checkpoint (truncated? " \
                                               f"RuntimeError); use an earlier one in {tmp_path} (earlier.ckpt)"
    elif case == "not lightning":
        torch.save({"weights": torch.zeros(2)}, tmp_path / "plain.ckpt")
        path, needle = tmp_path / "plain.ckpt", "plain.ckpt is not a Lightning checkpoint (no state_dict)"
    else:  # as train.py's LightningCLI saves them: the class path beside the hyper-parameters
        state = torch.load(checkpoint, weights_only=False)
        state["hyper_parameters"]["_class_path"] = "lightning_modules.WGAN"
        torch.save(state, tmp_path / "cli.ckpt")
        path, needle = tmp_path / "cli.ckpt", ("cli.ckpt is a WGAN checkpoint; this command takes a DarknetClassifier "
                                               "one (python train.py --system darknet writes them to runs/darknet/")
    with pytest.raises(SystemExit) as stop:
        commands.classify([str(path), image])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err and "Traceback" not in err
    with pytest.raises(SystemExit) as stop:  # the other commands read checkpoints the same way
        commands.wgan_generate([str(tmp_path / "nothing.ckpt")])
    assert stop.value.code == 2 and "nothing.ckpt not found" in capsys.readouterr().err
    from callbacks import UserError
    with pytest.raises(UserError):  # --traceback: the error itself
        commands.classify([str(path), image, "--traceback"])
    if case == "missing":
        monkeypatch.setenv("DL2_TRACEBACK", "1")  # or the environment's
        with pytest.raises(UserError):
            commands.classify([str(path), image])
        monkeypatch.setenv("DL2_TRACEBACK", "0")
        monkeypatch.setattr(sys, "argv", ["/venv/bin/dl2-classify", str(path), image])  # as a console script runs
        with pytest.raises(SystemExit):
            commands.classify()
        assert capsys.readouterr().err.startswith(f"dl2-classify: error: checkpoint {path} not found; pass a .ckpt")


def test_a_failure_that_is_not_the_users_keeps_its_traceback(darknet_checkpoint, monkeypatch):
    from lightning_modules import DarknetClassifier
    from lightning_modules.inference import load_checkpoint
    checkpoint, _ = darknet_checkpoint

    def broken(*args, **kwargs):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")
    monkeypatch.setattr(DarknetClassifier, "load_from_checkpoint", broken)
    with pytest.raises(RuntimeError, match="illegal memory access"):
        load_checkpoint(DarknetClassifier, str(checkpoint))


def test_classify_ensemble_averages_the_nets_probabilities(darknet_checkpoint, tmp_path):
    from lightning_modules import DarknetClassifier
    checkpoint, data_dir = darknet_checkpoint
    other = DarknetClassifier.load_from_checkpoint(checkpoint, map_location="cpu")
    with torch.no_grad():
        for parameter in other.parameters():
            parameter.mul_(1.5)  # another net of the same classes
    trainer = L.Trainer(accelerator="cpu", logger=False)
    trainer.strategy.connect(other)
    trainer.save_checkpoint(tmp_path / "snapshot.ckpt")
    files = sorted((data_dir / "test").rglob("*.png"))
    csv_path = tmp_path / "ensemble.csv"
    commands.classify([str(checkpoint), "--ensemble", str(tmp_path / "snapshot.ckpt"), str(data_dir / "test"),
                       "--output", str(csv_path)])  # the flag, as a user types it, before the images too
    rows = [line.split(",") for line in csv_path.read_text().splitlines()[1:]]
    pixels = torch.stack([torch.from_numpy(__import__("numpy").array(Image.open(f))).permute(2, 0, 1) for f in files])
    expected = (by_hand(checkpoint, pixels) + by_hand(tmp_path / "snapshot.ckpt", pixels)) / 2
    assert not torch.allclose(by_hand(checkpoint, pixels), expected, atol=1e-3)  # the second net mattered
    assert [row[0] for row in rows] == [str(f) for f in files]
    for row, p in zip(rows, expected, strict=True):
        assert torch.allclose(torch.tensor([float(x) for x in row[3:]]), p, atol=1e-5)
    other.class_names = ["a", "b", "c"]
    trainer.save_checkpoint(tmp_path / "other_classes.ckpt")
    with pytest.raises(UserError, match="an ensemble needs nets of the same classes"):
        classify(str(checkpoint), [str(files[0])], ensemble=[str(tmp_path / "other_classes.ckpt")])


@pytest.mark.parametrize("device, message", [("cuda:7", "this machine has no such device; it has cpu"),
                                             ("cpu:1", "this machine has no such device"),
                                             ("gpu0", "not a device")])
def test_a_device_this_machine_lacks_is_one_line(device, message, tmp_path, capsys):
    """Checked before the checkpoint is read (torch's deserialisation error would say nothing of --device)."""
    for command, args in (("wgan_generate", ["absent.ckpt"]), ("cyclegan_translate", [
            "--checkpoint", "absent.ckpt", "--input_dir", str(tmp_path), "--output_dir", str(tmp_path / "out")]),
            ("classify", ["absent.ckpt", "image.png"])):
        with pytest.raises(SystemExit) as stop:
            getattr(commands, command)([*args, "--device", device])
        assert stop.value.code == 2 and f"--device {device}: {message}" in capsys.readouterr().err, command


def test_fid_needs_two_samples_for_a_covariance(capsys):
    with pytest.raises(SystemExit) as stop:
        commands.wgan_fid(["absent.ckpt", "real", "features.ckpt", "--num_samples", "1"])
    assert stop.value.code == 2 and "--num_samples must be at least 2 (got 1)" in capsys.readouterr().err


def test_stylize_refuses_zero_iterations_and_repeats_itself_with_a_seed(tmp_path, capsys):
    content, style = make_style_images(tmp_path / "in")
    args = ["--content", str(content[0]), "--style", str(style), "--size", "32", "--vgg_weights", "random",
            "--arch", "vgg16", "--accelerator", "cpu"]
    with pytest.raises(SystemExit) as stop:  # it wrote nothing, and said it had
        commands.stylize([*args, "--output", str(tmp_path / "none"), "--max_iter", "0"])
    assert stop.value.code == 2 and "--max_iter must be at least 1 (got 0)" in capsys.readouterr().err
    results = {}
    for run, seed in (("a", 3), ("b", 3), ("c", 4)):
        torch.manual_seed(100 + len(results))  # the global generator elsewhere: the seed alone decides
        commands.stylize([*args, "--output", str(tmp_path / run), "--max_iter", "1", "--seed", str(seed)])
        results[run] = np.asarray(Image.open(tmp_path / run / "content0.png"))
    assert np.array_equal(results["a"], results["b"]) and not np.array_equal(results["a"], results["c"])


def test_stylize_blends_several_styles_and_takes_the_layers(tmp_path, capsys):
    """Blend weights [1, 0] give the first style alone; other layers give another image; a bad layer is named."""
    content, style = make_style_images(tmp_path / "in")
    other = tmp_path / "other.png"
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(other)
    args = ["--content", str(content[0]), "--size", "32", "--vgg_weights", "random", "--arch", "vgg16",
            "--accelerator", "cpu", "--max_iter", "2", "--init", "content"]

    def result(run, *extra):
        commands.stylize([*args, "--output", str(tmp_path / run), *extra])
        return np.asarray(Image.open(tmp_path / run / "content0.png")).astype(int)

    alone = result("alone", "--style", str(style))
    blended = result("blended", "--style", f"[{style}, {other}]", "--style_blend_weights", "[1, 0]")
    even = result("even", "--style", f"[{style}, {other}]")
    assert np.abs(blended - alone).max() <= 1 and np.abs(even - alone).max() > 8
    layers = result("layers", "--style", str(style), "--content_layer", "relu2_2", "--style_layers", "[relu1_1]")
    assert np.abs(layers - alone).max() > 8
    with pytest.raises(SystemExit) as stop:
        commands.stylize([*args, "--output", str(tmp_path / "bad"), "--style_layers", "[relu9_9]"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "unknown layers ['relu9_9']; the vgg16's are ['relu1_1'" in err, err


def test_a_machine_with_two_gpus_takes_cuda_cuda0_cuda1_and_cpu(monkeypatch):
    from lightning_modules.inference import check_device
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    for device in ("cpu", "cuda", "cuda:0", "cuda:1"):
        assert check_device(device) == torch.device(device)
    with pytest.raises(UserError, match="--device cuda:2: this machine has no such device; it has cpu, cuda, "
                                        "cuda:0, cuda:1"):
        check_device("cuda:2")


@pytest.mark.parametrize("cuda, mps, expected", [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")])
def test_the_default_device_auto_is_a_gpu_when_there_is_one(cuda, mps, expected, monkeypatch):
    # as junyanz's test.py (GPU 0 unless --gpu_ids -1) and train.py's accelerator: a user with a GPU need not ask
    import inspect

    from lightning_modules.cyclegan_translate import translate
    from lightning_modules.darknet_classify import classify
    from lightning_modules.inference import check_device
    from lightning_modules.wgan_fid import fid
    from lightning_modules.wgan_generate import generate
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: int(cuda))
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert check_device("auto") == torch.device(expected)
    assert all(inspect.signature(command).parameters["device"].default == "auto"
               for command in (translate, classify, generate, fid))
    given = {}

    def called(**options):
        """Classify images (a stand-in that keeps its arguments)."""
        given.update(options)

    monkeypatch.setattr("lightning_modules.darknet_classify.classify", called)
    commands.classify(["model.ckpt", "cat.png"])  # dl2-classify's own parser (argparse) has its default too
    assert given["device"] == "auto"


def test_classify_skips_an_unreadable_image_names_it_and_classifies_the_others(darknet_checkpoint, tmp_path, capsys):
    import csv
    import shutil
    checkpoint, data_dir = darknet_checkpoint
    folder = tmp_path / "mixed"
    shutil.copytree(data_dir / "test" / "cat", folder)
    (folder / "0000b.png").write_bytes((folder / "0000.png").read_bytes()[:40])  # torn, between two good ones
    good = sorted(p for p in folder.iterdir() if p.name != "0000b.png")
    with pytest.raises(SystemExit) as stop:  # the others classified, and exit status 1 so a script can tell
        commands.classify([str(checkpoint), str(folder), "--output", str(tmp_path / "p.csv")])
    assert stop.value.code == 1
    err = capsys.readouterr().err
    assert "could not read 1 of 3 images: cannot read image" in err and "0000b.png" in err
    with open(tmp_path / "p.csv") as f:
        rows = list(csv.reader(f))[1:]
    assert [row[0] for row in rows] == list(map(str, good))
    pixels = torch.stack([torch.from_numpy(np.array(Image.open(f))).permute(2, 0, 1) for f in good])
    for row, p in zip(rows, by_hand(checkpoint, pixels), strict=True):
        assert float(row[2]) == pytest.approx(float(p.max()), abs=1e-6)
    (folder / "0000.png").write_bytes(b"")
    (folder / "0001.png").write_bytes(b"")
    with pytest.raises(SystemExit) as stop:  # nothing could be read: an error, not an empty result
        commands.classify([str(checkpoint), str(folder)])
    assert stop.value.code == 2 and "none of the 3 images could be read" in capsys.readouterr().err


@pytest.mark.parametrize("command, flag", [("wgan_generate", "--out_dir"), ("cyclegan_translate", "--output_dir"),
                                           ("stylize", "--output"), ("classify", "--output")])
@pytest.mark.parametrize("where", ["a file", "below a file"])
def test_an_output_path_a_file_blocks_is_refused_in_one_line_before_any_work(command, flag, where, tmp_path, capsys):
    (tmp_path / "taken.png").write_bytes(b"a file")
    path = tmp_path / "taken.png" / ("out.csv" if command == "classify" else "out") if where == "below a file" \
        else tmp_path / "taken.png"
    args = {"wgan_generate": ["absent.ckpt", flag, str(path)],
            "cyclegan_translate": ["--checkpoint", "absent.ckpt", "--input_dir", str(tmp_path), flag, str(path)],
            "stylize": ["--content", "absent.jpg", flag, str(path)],
            "classify": ["absent.ckpt", "absent.png", flag, str(path)]}[command]
    if command == "classify" and where == "a file":  # over a file: the CSV replaces it; a folder is refused
        args[-1], expected = str(tmp_path), f"{flag} {tmp_path} is a folder; give a file name, e.g. "
    else:
        expected = (f"{flag} {path}: {tmp_path / 'taken.png'} is a file, not a folder; move it away, or give "
                    f"another {flag}")
    with pytest.raises(SystemExit) as stop:
        getattr(commands, command)(args)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and expected in err and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.png"]  # nothing written beside it


@pytest.mark.parametrize("command, flag, path", [
    ("wgan_generate", "--out_dir", "~/out"), ("cyclegan_translate", "--output_dir", "~/out"),
    ("stylize", "--output", "~/out"), ("classify", "--output", "~/out.csv"),
    ("train", "--trainer.default_root_dir", "~/out"), ("train", "--trainer.logger.save_dir", "~/out"),
    ("train", "--trainer.callbacks.dirpath", "~/out"),
    ("wgan_generate", "--out_dir", "~nosuchuser0/out")])  # ~name of no user: no home folder to name
def test_an_output_path_with_a_tilde_the_shell_left_is_refused_naming_the_home_folder(command, flag, path, tmp_path,
                                                                                       capsys, monkeypatch):
    """`--output=~/out`: no shell expands '~' after '=' (nor does a config file); the folder made was ./~/out."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    given = [f"{flag}={path}"]
    args = {"wgan_generate": ["absent.ckpt", *given],
            "cyclegan_translate": ["--checkpoint", "absent.ckpt", "--input_dir", str(tmp_path), *given],
            "stylize": ["--content", "absent.jpg", *given],
            "classify": ["absent.ckpt", "absent.png", *given],
            "train": ["--system", "darknet", "--data.data_dir", str(tmp_path), "--trainer.default_root_dir",
                      str(tmp_path / "runs"), *(["--trainer.callbacks+=ModelCheckpoint"] if "callbacks" in flag else
                                                []), *given]}[command]
    with pytest.raises(SystemExit) as stop:
        if command == "train":
            __import__("callbacks").errors.one_line_errors(__import__("train").main, args)
        else:
            getattr(commands, command)(args)
    err = capsys.readouterr().err
    meant = "the folder's whole path" if "nosuchuser" in path else tmp_path / "home" / path[2:]
    expected = f"{flag} {path}: '~' means the home folder only where the shell expands it (not after '=', nor in a " \
               f"config file); give {meant}"
    assert stop.value.code == 2 and expected in err and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no folder named '~', nor runs/


@pytest.mark.parametrize("command, flag", [("wgan_generate", "--out_dir"), ("cyclegan_translate", "--output_dir"),
                                           ("stylize", "--output"), ("classify", "--output")])
@pytest.mark.parametrize("where", ["a dangling link", "below a dangling link", "an unwritable folder"])
def test_an_output_path_through_a_dangling_link_or_an_unwritable_folder_is_refused_in_one_line(
        command, flag, where, tmp_path, capsys, monkeypatch):
    (tmp_path / "gone").symlink_to(tmp_path / "moved")
    (tmp_path / "locked").mkdir()
    leaf = "out.csv" if command == "classify" else "out"
    path = {"a dangling link": tmp_path / "gone", "below a dangling link": tmp_path / "gone" / leaf,
            "an unwritable folder": tmp_path / "locked" / "new" / leaf}[where]
    if where == "a dangling link" and command == "classify":
        path = tmp_path / "gone" / leaf
    if where == "an unwritable folder":  # the tests run as root, whom no mode bit stops: os.access says no instead
        real_access, real_exists = os.access, Path.exists
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: not (Path(p) == tmp_path / "locked" and mode & os.W_OK)
                            and real_access(p, mode))

        def exists(self):  # and below it a folder this user may not search (stat: permission denied)
            if self.is_relative_to(tmp_path / "locked" / "new"):
                raise PermissionError(13, "Permission denied", str(self))
            return real_exists(self)
        monkeypatch.setattr(Path, "exists", exists)
        expected = f"{flag} {path}: this user cannot write into {tmp_path / 'locked'} (permission denied)"
    else:
        expected = (f"{flag} {path}: {tmp_path / 'gone'} is a link to {tmp_path / 'moved'}, which does not exist; "
                    f"create that folder, or give another {flag}")
    args = {"wgan_generate": ["absent.ckpt", flag, str(path)],
            "cyclegan_translate": ["--checkpoint", "absent.ckpt", "--input_dir", str(tmp_path), flag, str(path)],
            "stylize": ["--content", "absent.jpg", flag, str(path)],
            "classify": ["absent.ckpt", "absent.png", flag, str(path)]}[command]
    with pytest.raises(SystemExit) as stop:
        getattr(commands, command)(args)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and expected in err and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gone", "locked"] and not any((tmp_path / "locked").iterdir())


@pytest.mark.parametrize("accelerator, expected", [
    ("gpu", "--accelerator gpu: this machine has none; it has auto, cpu"),
    ("cuda", "--accelerator cuda: this machine has none"),
    ("foo", "--accelerator foo: not an accelerator; it has auto, cpu")])
def test_stylize_names_an_accelerator_this_machine_lacks_in_one_line(accelerator, expected, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(SystemExit) as stop:
        commands.stylize(["--accelerator", accelerator, "--vgg_weights", "random"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and expected in err and err.count("\n") == 1, err


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


@pytest.mark.parametrize("option, value, message", [
    ("--seed", "-1", "--seed must be from 0 to 4294967295 (got -1)"),  # neural-style's default -seed, a random one
    ("--seed", str(2**32), f"--seed must be from 0 to 4294967295 (got {2**32})"),
    ("--precision", "32-bit", "--precision 32-bit: not a precision"),
])
def test_stylize_refuses_a_seed_or_precision_lightning_cannot_take_in_one_line(option, value, message, tmp_path,
                                                                               capsys):
    content, style = make_style_images(tmp_path / "in")
    with pytest.raises(SystemExit) as stop:
        commands.stylize(["--content", str(content[0]), "--style", str(style), "--size", "32", "--vgg_weights",
                          "random", "--arch", "vgg16", "--accelerator", "cpu", "--output", str(tmp_path / "out"),
                          "--max_iter", "1", option, value])
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out").exists()
