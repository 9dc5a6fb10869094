"""What every inference command takes or refuses in one line: a checkpoint, `last`, a device, an output path."""

import os
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from PIL import Image

from callbacks import UserError
from lightning_modules import WGAN, commands

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.xdist_group("inference_commands")]


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



@pytest.mark.parametrize("existing", ["photo.jpg", "model.ckpt", "notes.csv"])
def test_classify_never_writes_its_csv_over_an_image_a_checkpoint_or_another_csv(existing, tmp_path, capsys):
    """`dl2-classify model.ckpt photo.jpg --output photo.jpg` replaced the photo (or the checkpoint) with the CSV;
    only an earlier predictions CSV of the command (its header) is written over."""
    target = tmp_path / existing
    target.write_bytes(b"\xff\xd8 pixels" if existing != "notes.csv" else b"name,grade\nme,1\n")
    with pytest.raises(SystemExit) as stop:
        commands.classify(["absent.ckpt", str(target), "--output", str(target)])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1, err
    assert f"--output {target} exists and is not a predictions CSV of dl2-classify" in err
    assert target.read_bytes() != b"" and sorted(p.name for p in tmp_path.iterdir()) == [existing]
    from lightning_modules.darknet_classify import check_predictions_file
    target.write_text("path,prediction,probability,cat,dog\na.png,cat,0.9,0.9,0.1\n")  # an earlier run's output
    check_predictions_file(str(target))


@pytest.mark.parametrize("command, args", [("classify", ["absent.ckpt", "absent.png", "--output"]),
                                           ("export", ["absent.ckpt", "--output"])])
def test_an_output_file_given_as_a_folder_name_with_its_slash_is_refused(command, args, tmp_path, capsys):
    """`--output results/`: the slash said a folder, and a file named `results` was written."""
    with pytest.raises(SystemExit) as stop:
        getattr(commands, command)([*args, f"{tmp_path / 'results'}/"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and f"--output {tmp_path / 'results'}/ is a folder; give a file name" in err, err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("format, output", [("pt2", "model.pt2"), ("reference", "netG.pth")])
def test_a_folder_format_given_a_file_name_is_refused(format, output, tmp_path, capsys):
    """`--format pt2 --output model.pt2` made a folder model.pt2 holding darknet.pt2."""
    with pytest.raises(SystemExit) as stop:
        commands.export(["absent.ckpt", "--format", format, "--output", str(tmp_path / output)])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and f"--format {format} writes a folder of files" in err, err
    assert f"give a folder, e.g. --output {tmp_path / Path(output).stem}" in err and not list(tmp_path.iterdir())


def test_generate_refuses_an_out_dir_whose_parent_the_grid_cannot_go_into(tmp_path, capsys, monkeypatch):
    """The grid goes beside the folder (samples_grid.png): --out_dir . in a folder whose parent is read-only wrote the
    samples, then stopped with a PermissionError traceback."""
    (tmp_path / "locked" / "mine").mkdir(parents=True)
    real = os.access  # the tests run as root, whom no mode bit stops: os.access says no instead
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: Path(p) != tmp_path / "locked" and real(p, mode))
    monkeypatch.chdir(tmp_path / "locked" / "mine")
    with pytest.raises(SystemExit) as stop:
        commands.wgan_generate(["absent.ckpt", "--out_dir", "."])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1, err
    assert (f"--out_dir .: the grid goes beside it, into {tmp_path / 'locked'}: this user cannot write into "
            f"{tmp_path / 'locked'} (permission denied); give another --out_dir") in err
    assert not list((tmp_path / "locked").rglob("*.png"))
