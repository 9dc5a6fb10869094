"""dl2-export: a weights-only file every inference command reads as the checkpoint it came from, the reference
projects' generator files under their own key names, and one-line refusals."""

import json
import os
from collections import OrderedDict
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import make_unpaired, seeded_rows, tiny_darknet_checkpoint, tiny_wgan_checkpoint
from PIL import Image
from torch import nn

import train
from callbacks import UserError
from lightning_modules import WGAN, CycleGAN, commands
from lightning_modules.cyclegan_reference import reference_generator as junyanz_generator
from lightning_modules.cyclegan_translate import translate
from lightning_modules.export import export
from lightning_modules.wgan_generate import generate
from lightning_modules.wgan_reference import reference_generator as wgan_reference

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.xdist_group("test_export")]

CYCLEGAN = ["--model.ngf", "4", "--model.ndf", "4", "--model.n_blocks", "1", "--model.n_epochs", "1",
            "--model.n_epochs_decay", "0", "--model.log_images_every_n_batches", "0", "--data.load_size", "36",
            "--data.crop_size", "32", "--data.batch_size", "2", "--data.num_workers", "0", "--trainer.max_epochs", "1",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--trainer.logger", "false"]
TRAINING_STATE = ("optimizer_states", "lr_schedulers", "loops", "callbacks", "image_pools", "batches_trained")


def cyclegan_job(root, *extra):
    return ["--system", "cyclegan", "--data.data_dir", str(root / "unpaired"), "--trainer.default_root_dir",
            str(root / "runs" / "cyclegan"), *CYCLEGAN, *extra]


@pytest.fixture(scope="module")
def cyclegan_run(tmp_path_factory):
    """A tiny CycleGAN trained one epoch by train.py (its checkpoint has the class path, the pools, three Adams)."""
    root = tmp_path_factory.mktemp("cyclegan")
    make_unpaired(root / "unpaired")
    train.main(cyclegan_job(root, "--run_name", "first"))
    return root, root / "runs" / "cyclegan" / "first"


@pytest.fixture(scope="module")
def wgan_checkpoint(tmp_path_factory):
    """A tiny WGAN in the reference's block order (bn_last false), after one step: critic and generator trained."""
    return tiny_wgan_checkpoint(tmp_path_factory.mktemp("wgan"), n_extra_layers=1, bn_last=False)


def pixels(folder: Path) -> dict[str, np.ndarray]:
    return {str(p.relative_to(folder)): np.array(Image.open(p)) for p in sorted(folder.rglob("*.png"))}


def test_a_cyclegan_export_translates_as_its_checkpoint_without_the_training_state(cyclegan_run, tmp_path):
    root, run = cyclegan_run
    full = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    export(str(run), str(tmp_path / "all.ckpt"))  # the run folder stands for its last.ckpt
    export(str(run), str(tmp_path / "g.ckpt"), generators_only=True)
    for name, discriminators in (("all.ckpt", True), ("g.ckpt", False)):
        exported = torch.load(tmp_path / name, weights_only=True)  # plain tensors and values: no pickled code
        assert not set(TRAINING_STATE) & exported.keys() and set(TRAINING_STATE[:4]) < full.keys()
        assert exported["hyper_parameters"] == full["hyper_parameters"]  # with train.py's class path
        ours = {k for k in full["state_dict"] if discriminators or not k.startswith(("disc_a.", "disc_b."))}
        assert exported["state_dict"].keys() == ours and any(k.startswith("disc_b.") for k in full["state_dict"])
        assert all(torch.equal(v, full["state_dict"][k]) for k, v in exported["state_dict"].items())
    assert (tmp_path / "g.ckpt").stat().st_size < (tmp_path / "all.ckpt").stat().st_size < (
        run / "checkpoints" / "last.ckpt").stat().st_size / 2
    for checkpoint in (run / "checkpoints" / "last.ckpt", tmp_path / "all.ckpt", tmp_path / "g.ckpt"):
        translate(str(checkpoint), str(root / "unpaired" / "testA"), str(tmp_path / f"out-{checkpoint.name}"),
                  reconstruct=True)
    expected = pixels(tmp_path / "out-last.ckpt")
    assert len(expected) == 3 * 2  # outputs, inputs, reconstructions
    for name in ("all.ckpt", "g.ckpt"):
        got = pixels(tmp_path / f"out-{name}")
        assert got.keys() == expected.keys() and all(np.array_equal(got[k], expected[k]) for k in expected)


def test_train_refuses_an_export_as_ckpt_path_and_starts_from_its_generators(cyclegan_run, tmp_path, capsys):
    root, run = cyclegan_run
    export(str(run), str(tmp_path / "g.ckpt"), generators_only=True)
    with pytest.raises(UserError, match=rf"--ckpt_path {tmp_path / 'g.ckpt'} is an exported weights file .*; start a "
                                        rf"new run from its weights with --init_from {tmp_path / 'g.ckpt'}$"):
        train.main(cyclegan_job(root, "--run_name", "resumed", "--ckpt_path", str(tmp_path / "g.ckpt")))
    assert not (root / "runs" / "cyclegan" / "resumed").exists()
    with pytest.raises(UserError, match=rf"--ckpt_path {tmp_path / 'g.ckpt'} is an exported weights file"):
        train.main(["fit", "--config", str(run / "config.yaml"), "--ckpt_path", str(tmp_path / "g.ckpt")])  # native
    train.main(cyclegan_job(root, "--run_name", "tuned", "--init_from", str(tmp_path / "g.ckpt"),
                            "--trainer.callbacks+=runs.StartWeights"))
    assert "an export without disc_a, disc_b, which start from new weights" in capsys.readouterr().err
    start = torch.load(root / "runs" / "cyclegan" / "tuned" / "start.pt", weights_only=False)["weights"]
    trained = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert all(torch.equal(start[k], v) for k, v in trained.items() if k.startswith(("gen_a2b", "gen_b2a")))
    assert not torch.equal(start["disc_a.0.0.weight"], trained["disc_a.0.0.weight"])  # new, not the trained ones


def test_junyanz_files_carry_its_key_names_and_translate_as_our_generators(cyclegan_run, tmp_path):
    _, run = cyclegan_run
    commands.export([str(run), "--output", str(tmp_path / "ref"), "--format", "reference"])
    assert sorted(p.name for p in (tmp_path / "ref").iterdir()) == ["latest_net_G_A.pth", "latest_net_G_B.pth"]
    # ResnetGenerator(n_blocks=1)'s `model`: 1 conv 7x7, 4 and 7 stride-2 convs, 10 the block (its conv_block's
    # convs at 1 and 5), 11 and 14 transposed convs, 18 the last conv; no norm tensors (instance norm, no affine)
    convs = ["model.1", "model.4", "model.7", "model.10.conv_block.1", "model.10.conv_block.5", "model.11",
             "model.14", "model.18"]
    model = CycleGAN.load_from_checkpoint(run / "checkpoints" / "last.ckpt", map_location="cpu").eval()
    x = torch.rand(1, 3, 20, 24) * 2 - 1
    for file, ours in (("latest_net_G_A.pth", model.gen_a2b), ("latest_net_G_B.pth", model.gen_b2a)):
        state = torch.load(tmp_path / "ref" / file, weights_only=True)
        assert list(state) == [f"{conv}.{kind}" for conv in convs for kind in ("weight", "bias")]
        with torch.no_grad():
            assert torch.equal(junyanz_generator(str(tmp_path / "ref" / file))(x), ours(x))


def test_a_wgan_export_is_its_generator_and_generates_the_checkpoints_images(wgan_checkpoint, tmp_path):
    export(str(wgan_checkpoint), str(tmp_path / "g.ckpt"))
    export(str(wgan_checkpoint), str(tmp_path / "all.ckpt"), generators_only=False)
    keys = torch.load(wgan_checkpoint, weights_only=False)["state_dict"].keys()
    assert torch.load(tmp_path / "g.ckpt", weights_only=True)["state_dict"].keys() == {
        k for k in keys if not k.startswith("critic.")}
    assert torch.load(tmp_path / "all.ckpt", weights_only=True)["state_dict"].keys() == keys
    for checkpoint in (wgan_checkpoint, tmp_path / "g.ckpt", tmp_path / "all.ckpt"):
        generate(str(checkpoint), str(tmp_path / checkpoint.stem), num_samples=4, seed=3)
    expected = pixels(tmp_path / "wgan")
    assert len(expected) == 4 and len({a.tobytes() for a in expected.values()}) == 4
    for name in ("g", "all"):
        assert all(np.array_equal(a, expected[k]) for k, a in pixels(tmp_path / name).items())


@pytest.mark.parametrize("options, keys, flags", [
    # DCGAN_G_nobn(isize 16, nz 8, nc 3, ngf 4, no extra layer): the convs alone; any block order (no batchnorm)
    ({"generator_batchnorm": False, "n_extra_layers": 0},
     ["main.initial:8-8:convt.weight", "main.pyramid:8-4:convt.weight", "main.final:4-3:convt.weight"],
     {"noBN": True, "mlp_G": False, "ngf": 4, "n_extra_layers": 0}),
    # MLP_G(isize 16, nz 8, nc 3, ngf 4): Linear 8 -> 4, 4 -> 4, 4 -> 4, 4 -> 768 at main.0, .2, .4, .6
    ({"mlp_generator": True, "generator_batchnorm": False},  # noBN stays false: the reference reads it first
     [f"main.{i}.{kind}" for i in (0, 2, 4, 6) for kind in ("weight", "bias")],
     {"noBN": False, "mlp_G": True, "ngf": 4, "n_extra_layers": 1})])
def test_the_wassersteingan_files_of_its_nobn_and_mlp_generators(tmp_path, options, keys, flags):
    """The reference's --noBN and --mlp_G generators: its key names, the flags its generate.py reads, and read back
    by our reader as the generator they came from."""
    checkpoint = tiny_wgan_checkpoint(tmp_path, **options)
    commands.export([str(checkpoint), "--output", str(tmp_path / "ref"), "--format", "reference"])
    state = torch.load(tmp_path / "ref" / "netG.pth", weights_only=True)
    assert list(state) == keys
    assert json.loads((tmp_path / "ref" / "generator_config.json").read_text()) == {
        "imageSize": 16, "nz": 8, "nc": 3, "ngpu": 1, **flags}
    model = WGAN.load_from_checkpoint(checkpoint, map_location="cpu").eval()
    noise = seeded_rows(3, 8, seed=0)
    with torch.no_grad():
        torch.testing.assert_close(wgan_reference(str(tmp_path / "ref" / "netG.pth")).generator(noise),
                                   model.generator(noise), atol=1e-6, rtol=0)


@pytest.mark.parametrize("batchnorm", [True, False])
def test_an_odd_ngf_is_refused_in_the_references_format_whose_dcgan_g_has_other_widths(tmp_path, capsys, batchnorm):
    """The reference's DCGAN_G (and _nobn) starts from ngf // 2 doubled: at ngf 3 and isize 16 its convs are
    8 -> 4 -> 2 -> 3 channels, ours 8 -> 6 -> 3 -> 3, so its generate.py could not load such a netG.pth."""
    checkpoint = tiny_wgan_checkpoint(tmp_path, ngf=3, bn_last=False, generator_batchnorm=batchnorm)
    with pytest.raises(SystemExit) as stop:
        commands.export([str(checkpoint), "--output", str(tmp_path / "ref"), "--format", "reference"])
    assert stop.value.code == 2 and not (tmp_path / "ref" / "netG.pth").exists()
    error = capsys.readouterr().err
    assert "has an odd --model.ngf (3)" in error
    assert f"ngf // 2 doubled: {2 * (3 // 2)} channels before its last layer, this generator 3" in error
    commands.export([str(checkpoint), "--output", str(tmp_path / "ours.ckpt")])  # our format takes it
    assert (tmp_path / "ours.ckpt").exists()


def test_the_wassersteingan_file_carries_dcgan_gs_key_names_and_generates_as_ours(wgan_checkpoint, tmp_path):
    commands.export([str(wgan_checkpoint), "--output", str(tmp_path / "ref"), "--format", "reference"])
    state = torch.load(tmp_path / "ref" / "netG.pth", weights_only=True)
    bn = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    # DCGAN_G(isize 16, nz 8, nc 3, ngf 4, 1 extra layer): cngf 8; initial 8 -> 8, pyramid 8 -> 4, extra at 4, final
    assert list(state) == ["main.initial:8-8:convt.weight", *[f"main.initial:8:batchnorm.{t}" for t in bn],
                           "main.pyramid:8-4:convt.weight", *[f"main.pyramid:4:batchnorm.{t}" for t in bn],
                           "main.extra-layers-0:4:conv.weight", *[f"main.extra-layers-0:4:batchnorm.{t}" for t in bn],
                           "main.final:4-3:convt.weight"]
    assert json.loads((tmp_path / "ref" / "generator_config.json").read_text()) == {
        "imageSize": 16, "nz": 8, "nc": 3, "ngf": 4, "ngpu": 1, "n_extra_layers": 1, "noBN": False, "mlp_G": False}
    model = WGAN.load_from_checkpoint(wgan_checkpoint, map_location="cpu").eval()
    noise = seeded_rows(3, 8, seed=0)
    with torch.no_grad():  # the extra layer's plain conv holds the transposed one's kernel, swapped and flipped
        torch.testing.assert_close(wgan_reference(str(tmp_path / "ref" / "netG.pth")).generator(noise),
                                   model.generator(noise), atol=1e-6, rtol=0)
        reference = torch.nn.Conv2d(4, 4, 3, 1, 1, bias=False)
        reference.weight.copy_(state["main.extra-layers-0:4:conv.weight"])
        h = torch.randn(2, 4, 8, 8)
        torch.testing.assert_close(reference(h), model.generator[2][0](h), atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def darknet_checkpoint(tmp_path_factory):
    """A tiny Darknet trained 2 steps on generated folders of classes cat, dog, frog (kept in its checkpoint)."""
    return tiny_darknet_checkpoint(tmp_path_factory.mktemp("darknet"))


def test_a_darknet_export_classifies_as_its_checkpoint(darknet_checkpoint, tmp_path, capsys):
    checkpoint, data_dir = darknet_checkpoint
    commands.export([str(checkpoint), "--output", str(tmp_path / "darknet-export.ckpt")])
    assert torch.load(tmp_path / "darknet-export.ckpt", weights_only=True)["class_names"] == ["cat", "dog", "frog"]
    for name, path in (("full", checkpoint), ("export", tmp_path / "darknet-export.ckpt")):
        commands.classify([str(path), str(data_dir / "test"), "--tta", "flip", "--output", str(tmp_path / name)])
    full, exported = ((tmp_path / name).read_text() for name in ("full", "export"))
    assert exported == full and "cat" in full.splitlines()[0] and len(full.splitlines()) == 1 + 3 * 2
    for args, message in ((["--format", "reference"], "the Darknet has no reference project's file format here"),
                          (["--generators_only", "true"], "is a Darknet's, which has no generators")):
        with pytest.raises(SystemExit) as stop:
            commands.export([str(checkpoint), "--output", str(tmp_path / "x"), *args])
        err = capsys.readouterr().err
        assert stop.value.code == 2 and err.count("\n") == 1 and message in err, err


@pytest.mark.parametrize("case", ["missing", "a folder", "unwritable", "the input", "the input via its run",
                                  "style"])
def test_mistakes_are_one_line_and_leave_the_checkpoint_as_it_was(case, wgan_checkpoint, tmp_path, capsys,
                                                                  monkeypatch):
    checkpoint, before = str(wgan_checkpoint), wgan_checkpoint.read_bytes()
    output = str(tmp_path / "out.ckpt")
    if case == "missing":
        checkpoint, message = str(tmp_path / "absent.ckpt"), f"checkpoint {tmp_path / 'absent.ckpt'} not found"
    elif case == "a folder":
        (tmp_path / "out.ckpt").mkdir()
        message = f"--output {output} is a folder; give a file name, e.g. {tmp_path / 'out.ckpt' / 'model.ckpt'}"
    elif case == "unwritable":  # the tests run as root, whom no mode bit stops: os.access says no instead
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: Path(p) != tmp_path and real(p, mode))
        message = f"--output {output}: this user cannot write into {tmp_path} (permission denied)"
    elif case == "the input":
        output, message = checkpoint, f"{checkpoint} is the checkpoint being exported, which is never written over"
    elif case == "the input via its run":  # a run folder stands for checkpoints/last.ckpt, a link to the epoch's file
        run = tmp_path / "run"
        (run / "checkpoints").mkdir(parents=True)
        (run / "checkpoints" / "epoch=000.ckpt").write_bytes(before)
        (run / "checkpoints" / "last.ckpt").symlink_to("epoch=000.ckpt")
        checkpoint, output = str(run), str(run / "checkpoints" / "epoch=000.ckpt")
        message = "is the checkpoint being exported, which is never written over; give another file name"
    else:  # as train.py saves a style run: the image is the only weight
        torch.save({"state_dict": {"image": torch.rand(1, 3, 8, 8)}, "pytorch-lightning_version": L.__version__,
                    "hyper_parameters": {"_class_path": "lightning_modules.StyleTransfer"}}, tmp_path / "style.ckpt")
        checkpoint = str(tmp_path / "style.ckpt")
        message = "is a style transfer checkpoint: nothing to export, its result is the image"
    with pytest.raises(SystemExit) as stop:
        commands.export([checkpoint, "--output", output])
    err = capsys.readouterr().err.splitlines()  # a run folder's file is named first ("checkpoint: ...")
    assert stop.value.code == 2 and message in err[-1] and len(err) == 1 + (case == "the input via its run"), err
    assert wgan_checkpoint.read_bytes() == before and not list(tmp_path.rglob("*.tmp"))
    assert case != "the input via its run" or Path(output).read_bytes() == before
    assert case in ("a folder", "the input via its run") or not (tmp_path / "out.ckpt").exists()


def test_last_is_the_newest_run_of_the_one_system_that_has_runs(cyclegan_run, tmp_path, monkeypatch, capsys):
    _, run = cyclegan_run
    (tmp_path / "runs" / "cyclegan").mkdir(parents=True)
    (tmp_path / "runs" / "cyclegan" / "first").symlink_to(run)
    monkeypatch.chdir(tmp_path)  # where runs/ is
    commands.export(["last", "--output", "a.ckpt"])
    assert "checkpoint: runs/cyclegan/first/checkpoints/last.ckpt" in capsys.readouterr().err
    other = tmp_path / "runs" / "darknet" / "r"  # a Darknet run beside it: `last` is ambiguous
    (other / "checkpoints").mkdir(parents=True)
    (other / "checkpoints" / "last.ckpt").write_bytes(b"")
    (other / "run.json").write_text(json.dumps({"model": "lightning_modules.DarknetClassifier", "started": 1.0}))
    with pytest.raises(UserError, match="last: runs of darknet and cyclegan in .*; say which with --system darknet"):
        export("last", "b.ckpt")
    with pytest.raises(UserError, match=r"--system darknet_fast: its runs are the Darknet's, give --system darknet "):
        export("last", "b.ckpt", system="darknet_fast")  # train.py's system, a config of the Darknet's
    export("last", "b.ckpt", system="cyclegan")
    assert torch.equal(torch.load("b.ckpt", weights_only=True)["state_dict"]["gen_a2b.0.1.weight"],
                       torch.load("a.ckpt", weights_only=True)["state_dict"]["gen_a2b.0.1.weight"])


def test_an_existing_output_file_is_replaced(wgan_checkpoint, tmp_path):
    keys = torch.load(wgan_checkpoint, weights_only=False)["state_dict"].keys()
    export(str(wgan_checkpoint), str(tmp_path / "out.ckpt"), generators_only=False)
    export(str(wgan_checkpoint), str(tmp_path / "out.ckpt"))  # over the first: the critic left out now
    assert torch.load(tmp_path / "out.ckpt", weights_only=True)["state_dict"].keys() == {
        k for k in keys if not k.startswith("critic.")}


@pytest.mark.parametrize("state, name", [
    ({"hyper_parameters": {"_class_path": "collections.OrderedDict"}}, "OrderedDict"),  # our key names, not our class
    ({"hyper_parameters": {"_class_path": "their_project.MyGAN"}}, None),  # a class that does not import here
    ({}, "network"),  # no class path, and no weights of ours
])
def test_a_checkpoint_of_a_class_this_project_does_not_know_is_refused(tmp_path, state, name):
    weights = {"generator.0.weight": torch.zeros(1)} if state else {"fc.weight": torch.zeros(1)}
    torch.save({**state, "state_dict": weights}, tmp_path / "x.ckpt")
    with pytest.raises(UserError) as error:
        export(str(tmp_path / "x.ckpt"), str(tmp_path / "out.ckpt"))
    assert str(error.value) == (
        f"{tmp_path / 'x.ckpt'} holds a {name} this project does not know; dl2-export takes the checkpoints of "
        "train.py's systems (darknet, wgan, cyclegan, style) and of classes built on them" if name else
        f"{tmp_path / 'x.ckpt'} is a their_project.MyGAN checkpoint, and their_project.MyGAN cannot be imported here "
        "(ModuleNotFoundError: No module named 'their_project'); run this where it imports, as in training (its "
        "folder on PYTHONPATH)")
    assert not (tmp_path / "out.ckpt").exists()


def test_last_among_runs_of_three_systems_names_them_and_a_path_is_read_as_given(wgan_checkpoint, tmp_path,
                                                                                 monkeypatch):
    monkeypatch.chdir(tmp_path)
    for system, cls in (("darknet", "DarknetClassifier"), ("wgan", "WGAN"), ("cyclegan", "CycleGAN")):
        (tmp_path / "runs" / system / "r" / "checkpoints").mkdir(parents=True)
        (tmp_path / "runs" / system / "r" / "checkpoints" / "last.ckpt").write_bytes(b"")
        (tmp_path / "runs" / system / "r" / "run.json").write_text(
            json.dumps({"model": f"lightning_modules.{cls}", "started": 1.0}))
    with pytest.raises(UserError) as error:
        export("last", "out.ckpt")
    assert str(error.value) == (f"last: runs of darknet and wgan and cyclegan in {tmp_path / 'runs'}; say which with "
                                "--system darknet (or wgan, cyclegan)")
    with pytest.raises(UserError, match="^checkpoint typo.ckpt not found; pass a .ckpt file"):  # not `last`
        export("typo.ckpt", "out.ckpt")
    (tmp_path / "last").write_bytes(wgan_checkpoint.read_bytes())  # a file named last is that file
    export("last", "out.ckpt")
    assert torch.load("out.ckpt", weights_only=True)["state_dict"].keys() == {
        k for k in torch.load(wgan_checkpoint, weights_only=False)["state_dict"] if not k.startswith("critic.")}


def test_reference_files_of_a_checkpoint_without_its_sizes_are_those_of_the_systems_defaults():
    """A checkpoint whose hyper-parameters lack a size is read at the system's default (CycleGAN: 9 blocks; WGAN:
    64 px, nz 100, nc 3, ngf 64, 1 extra layer), and one without bn_last as the seed's block order."""
    from lightning_modules.export import reference_files
    from lightning_modules.nets.dcgan import generator
    # junyanz's resnet_9blocks: the blocks at 10 ... 18, the transposed convs at 19 and 22, the last conv at 26
    convs = ["model.1", "model.4", "model.7", *[f"model.{b}.conv_block.{j}" for b in range(10, 19) for j in (1, 5)],
             "model.19", "model.22", "model.26"]
    junyanz = [f"{conv}.{kind}" for conv in convs for kind in ("weight", "bias")]
    tensors = [torch.tensor([float(i)]) for i in range(48)]
    weights = {f"{net}.{i}.w": t for net in ("gen_a2b", "gen_b2a") for i, t in enumerate(tensors)}
    files = reference_files({"state_dict": weights}, "CycleGAN", "c.ckpt")
    assert list(files) == ["latest_net_G_A.pth", "latest_net_G_B.pth"]
    assert list(files["latest_net_G_B.pth"]) == junyanz and list(files["latest_net_G_B.pth"].values()) == tensors
    with pytest.raises(UserError) as error:  # a 1-block generator's 16 tensors
        reference_files({"state_dict": {k: v for k, v in weights.items() if int(k.split(".")[1]) < 16}}, "CycleGAN",
                        "c.ckpt")
    assert str(error.value) == ("--format reference: c.ckpt's gen_a2b holds 16 tensors, a resnet_9blocks generator 48; "
                                "not a ResNet generator")
    # the WassersteinGAN reference's DCGAN_G at its defaults: 512 -> 256 -> 128 -> 64 channels, an extra layer at 64
    bn = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    blocks = [("initial:100-512:convt", "initial:512"), ("pyramid:512-256:convt", "pyramid:256"),
              ("pyramid:256-128:convt", "pyramid:128"), ("pyramid:128-64:convt", "pyramid:64"),
              ("extra-layers-0:64:conv", "extra-layers-0:64")]
    dcgan_g = [name for conv, norm in blocks for name in (f"main.{conv}.weight", *[f"main.{norm}:batchnorm.{t}"
                                                                                 for t in bn])]
    dcgan_g.append("main.final:64-3:convt.weight")
    state = {f"generator.{k}": v for k, v in generator(64, 100, 3, 64, 1, bn_last=False).state_dict().items()}
    files = reference_files({"hyper_parameters": {"bn_last": False}, "state_dict": state}, "WGAN", "w.ckpt")
    assert list(files["netG.pth"]) == dcgan_g
    assert [tuple(files["netG.pth"][k].shape) for k in dcgan_g if k.endswith("conv.weight") or "convt" in k] == [
        (100, 512, 4, 4), (512, 256, 4, 4), (256, 128, 4, 4), (128, 64, 4, 4), (64, 64, 3, 3), (64, 3, 4, 4)]
    assert files["generator_config.json"] == {"imageSize": 64, "nz": 100, "nc": 3, "ngf": 64, "ngpu": 1,
                                              "n_extra_layers": 1, "noBN": False, "mlp_G": False}
    with pytest.raises(UserError, match="^--format reference: w.ckpt has the seed's conv, ReLU, batchnorm blocks"):
        reference_files({"state_dict": state}, "WGAN", "w.ckpt")


class JunyanzResnetBlock(nn.Module):
    """junyanz's ResnetBlock (reflect padding, no dropout): `conv_block` = pad, conv, norm, ReLU, pad, conv, norm."""

    def __init__(self, dim):
        super().__init__()
        self.conv_block = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), nn.InstanceNorm2d(dim),
                                        nn.ReLU(True), nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3),
                                        nn.InstanceNorm2d(dim))

    def forward(self, x):
        return x + self.conv_block(x)


class Junyanz(nn.Module):
    """A net of junyanz's networks.py: its layers in one nn.Sequential named `model`, so its keys are model.N.*."""

    def __init__(self, *layers):
        super().__init__()
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


def junyanz_resnet_generator(n_blocks=1, ngf=4):
    """junyanz's ResnetGenerator(3, 3, ngf, InstanceNorm2d, n_blocks) in its order, default (random) weights."""
    layers = [nn.ReflectionPad2d(3), nn.Conv2d(3, ngf, 7), nn.InstanceNorm2d(ngf), nn.ReLU(True),
              nn.Conv2d(ngf, ngf * 2, 3, 2, 1), nn.InstanceNorm2d(ngf * 2), nn.ReLU(True),
              nn.Conv2d(ngf * 2, ngf * 4, 3, 2, 1), nn.InstanceNorm2d(ngf * 4), nn.ReLU(True),
              *[JunyanzResnetBlock(ngf * 4) for _ in range(n_blocks)],
              nn.ConvTranspose2d(ngf * 4, ngf * 2, 3, 2, 1, output_padding=1), nn.InstanceNorm2d(ngf * 2),
              nn.ReLU(True),
              nn.ConvTranspose2d(ngf * 2, ngf, 3, 2, 1, output_padding=1), nn.InstanceNorm2d(ngf), nn.ReLU(True),
              nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7), nn.Tanh()]
    return Junyanz(*layers).eval()


def junyanz_discriminator(ndf=4, n_layers=3):
    """junyanz's NLayerDiscriminator(3, ndf, n_layers, InstanceNorm2d): model.0 a 4x4 stride-2 conv, LeakyReLU; then
    conv, norm, LeakyReLU (model.2, .5; the stride-1 one at .8); model.11 the last conv to 1 channel. Biases on all."""
    layers = [nn.Conv2d(3, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
    mult = 1
    for n in range(1, n_layers + 1):
        before, mult = mult, min(2 ** n, 8)
        layers += [nn.Conv2d(ndf * before, ndf * mult, 4, 2 if n < n_layers else 1, 1), nn.InstanceNorm2d(ndf * mult),
                   nn.LeakyReLU(0.2, True)]
    return Junyanz(*layers, nn.Conv2d(ndf * mult, 1, 4, 1, 1)).eval()


def junyanz_nets(seed):
    torch.manual_seed(seed)
    return {"G_A": junyanz_resnet_generator(), "G_B": junyanz_resnet_generator(), "D_A": junyanz_discriminator(),
            "D_B": junyanz_discriminator()}


def save_junyanz(nets, folder, epoch):
    folder.mkdir(parents=True, exist_ok=True)
    for name, net in nets.items():
        torch.save(net.state_dict(), folder / f"{epoch}_net_{name}.pth")


def start_model(runs, name):
    """The CycleGAN training started from (runs.StartWeights' file), in eval mode."""
    model = CycleGAN(n_blocks=1, ngf=4, ndf=4)
    model.load_state_dict(torch.load(runs / name / "start.pt", weights_only=False)["weights"])
    return model.eval()


def computes_as(model, nets):
    """Our nets against junyanz's as it names them: G_A translates A -> B; D_A judges domain B images (fake_B)."""
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        return {name: torch.allclose(ours(x), nets[name](x), atol=1e-5) for name, ours in (
            ("G_A", model.gen_a2b), ("G_B", model.gen_b2a), ("D_A", model.disc_b), ("D_B", model.disc_a))}


def test_init_from_junyanz_checkpoints_folder_goes_on_from_its_four_nets(tmp_path, capsys):
    """Its --continue_train: the folder's latest_ files (beside older epochs), or a file's epoch."""
    make_unpaired(tmp_path / "unpaired")
    latest, fifth = junyanz_nets(0), junyanz_nets(1)
    folder = tmp_path / "checkpoints" / "horse2zebra"
    save_junyanz(latest, folder, "latest")
    save_junyanz(fifth, folder, "5")
    options = ["--trainer.max_steps", "3", "--trainer.callbacks+=runs.StartWeights"]
    runs = tmp_path / "runs" / "cyclegan"
    train.main(cyclegan_job(tmp_path, *options, "--run_name", "folder", "--init_from", str(folder)))
    assert f"--init_from {folder}: junyanz's checkpoints in {folder}, epoch latest of 5, latest" in \
        capsys.readouterr().err
    assert computes_as(start_model(runs, "folder"), latest) == {"G_A": True, "G_B": True, "D_A": True, "D_B": True}
    # one of the files: its epoch's four
    train.main(cyclegan_job(tmp_path, *options, "--run_name", "file", "--init_from", str(folder / "5_net_D_B.pth")))
    assert "epoch 5: 5_net_G_A.pth as gen_a2b, 5_net_G_B.pth as gen_b2a, 5_net_D_A.pth as disc_b, 5_net_D_B.pth as " \
           "disc_a" in capsys.readouterr().err
    assert computes_as(start_model(runs, "file"), fifth) == {"G_A": True, "G_B": True, "D_A": True, "D_B": True}


def test_a_junyanz_folder_without_latest_is_its_highest_epoch_and_reads_as_older_versions_saved(tmp_path):
    """`module.` (DataParallel) prefixes and the instance-norm statistics older PyTorch saved, which junyanz's
    load_networks deletes, are read past."""
    tenth, ninth = junyanz_nets(0), junyanz_nets(1)
    save_junyanz(ninth, tmp_path, "9")
    save_junyanz(ninth, tmp_path, "iter_20000")  # its --save_by_iter files: an epoch's are preferred
    save_junyanz(tenth, tmp_path, "10")
    old = OrderedDict()
    for key, tensor in tenth["D_A"].state_dict().items():
        old[f"module.{key}"] = tensor
        if key in ("model.2.bias", "model.5.bias"):  # their norms' statistics, as an older version saved them
            norm = f"module.model.{int(key.split('.')[1]) + 1}"
            old[f"{norm}.running_mean"], old[f"{norm}.running_var"] = torch.zeros_like(tensor), torch.ones_like(tensor)
            old[f"{norm}.num_batches_tracked"] = torch.tensor(0)
    torch.save(old, tmp_path / "10_net_D_A.pth")
    state = CycleGAN.reference_checkpoint(str(tmp_path))
    assert state["hyper_parameters"] == {"n_blocks": 1, "ngf": 4, "ndf": 4, "upsample": "transposed"}
    assert "epoch 10 of iter_20000, 9, 10" in state["dl2_export"]["from"] and state["dl2_export"]["left_out"] == []
    model = CycleGAN(n_blocks=1, ngf=4, ndf=4)
    model.load_state_dict(state["state_dict"])
    assert computes_as(model.eval(), tenth) == {"G_A": True, "G_B": True, "D_A": True, "D_B": True}


def test_init_from_junyanz_model_zoo_generator_is_g_a_and_the_other_nets_start_new(tmp_path, capsys):
    make_unpaired(tmp_path / "unpaired")
    nets = junyanz_nets(0)
    zoo = tmp_path / "checkpoints" / "horse2zebra_pretrained"
    zoo.mkdir(parents=True)
    torch.save(OrderedDict((f"module.{k}", v) for k, v in nets["G_A"].state_dict().items()), zoo / "latest_net_G.pth")
    runs = tmp_path / "runs" / "cyclegan"
    train.main(cyclegan_job(tmp_path, "--trainer.max_steps", "3", "--trainer.callbacks+=runs.StartWeights",
                            "--run_name", "zoo", "--init_from", str(zoo / "latest_net_G.pth")))
    assert "junyanz's generator latest_net_G.pth as G_A (A->B, gen_a2b); gen_b2a, disc_a and disc_b start from new " \
           "weights" in capsys.readouterr().err
    model = start_model(runs, "zoo")
    assert computes_as(model, nets)["G_A"]
    fresh = CycleGAN(n_blocks=1, ngf=4, ndf=4)  # new weights: N(0, 0.02), zero biases
    assert not torch.equal(model.gen_b2a[0][1].weight, nets["G_B"].model[1].weight)
    assert torch.equal(model.disc_a[0][0].bias, fresh.disc_a[0][0].bias)  # zeros, as init_cyclegan_ leaves them
    # its download folder stands for the file
    assert CycleGAN.reference_checkpoint(str(zoo))["dl2_export"]["left_out"] == ["disc_a.", "disc_b.", "gen_b2a."]


def test_a_junyanz_folder_missing_one_discriminator_loads_the_other_and_says_which_starts_new(tmp_path):
    """D_A missing: D_B still loads (as disc_a), disc_b starts new, and the message names it; a model zoo
    generator's sizes are named for a mismatch; discriminators of two widths or a file that is not junyanz's refused."""
    nets = junyanz_nets(0)
    save_junyanz({name: net for name, net in nets.items() if name != "D_A"}, tmp_path / "run", "latest")
    state = CycleGAN.reference_checkpoint(str(tmp_path / "run"))
    assert state["dl2_export"]["left_out"] == ["disc_b."]
    assert state["dl2_export"]["from"].startswith(f"junyanz's checkpoints in {tmp_path / 'run'}, epoch latest: ")
    assert state["dl2_export"]["from"].endswith("no latest_net_D_A.pth: disc_b starts from new weights")
    model = CycleGAN(n_blocks=1, ngf=4, ndf=4)
    model.load_state_dict(state["state_dict"], strict=False)
    assert computes_as(model.eval(), nets)["D_B"]
    torch.manual_seed(3)
    torch.save(junyanz_resnet_generator(n_blocks=2, ngf=6).state_dict(), tmp_path / "latest_net_G.pth")
    assert CycleGAN.reference_checkpoint(str(tmp_path / "latest_net_G.pth"))["hyper_parameters"] == {
        "n_blocks": 2, "ngf": 6, "upsample": "transposed"}
    torch.save(junyanz_discriminator(ndf=8).state_dict(), tmp_path / "run" / "latest_net_D_A.pth")
    with pytest.raises(UserError, match="are discriminators of other sizes"):
        CycleGAN.reference_checkpoint(str(tmp_path / "run"))
    torch.save({"weight": torch.zeros(4, 3, 4, 4)}, tmp_path / "run" / "latest_net_D_A.pth")  # not model.*
    with pytest.raises(UserError, match="is not a junyanz discriminator file"):
        CycleGAN.reference_checkpoint(str(tmp_path / "run"))


def test_init_from_junyanz_files_that_do_not_fit_is_one_line(tmp_path, capsys, monkeypatch):
    from conftest import run_in_process
    from runs import assert_one_line_error

    make_unpaired(tmp_path / "unpaired")
    folder = tmp_path / "checkpoints" / "h2z"
    save_junyanz(junyanz_nets(0), folder, "latest")
    result = run_in_process(cyclegan_job(tmp_path, "--model.ngf", "8", "--init_from", str(folder)), capsys,
                            monkeypatch)  # our run's sizes against the files' (junyanz's --ngf 4)
    assert_one_line_error(result, "was trained with other settings", "--model.ngf 4, counted from its weights)")
    for given in (folder, folder / "latest_net_G_A.pth"):  # its --continue_train's files given to our resume
        result = run_in_process(cyclegan_job(tmp_path, "--ckpt_path", str(given)), capsys, monkeypatch)
        assert_one_line_error(result, f"--ckpt_path {given} is junyanz's checkpoints folder",
                              f"to start one from those weights give --init_from {given}")
    torch.save(junyanz_discriminator(n_layers=4).state_dict(), folder / "latest_net_D_A.pth")  # --n_layers_D 4
    result = run_in_process(cyclegan_job(tmp_path, "--init_from", str(folder)), capsys, monkeypatch)
    assert_one_line_error(result, f"{folder / 'latest_net_D_A.pth'} holds a discriminator that is not junyanz's basic "
                                  "PatchGAN")
    torch.save(junyanz_nets(0)["D_A"].state_dict(), folder / "latest_net_D_A.pth")
    (folder / "latest_net_G_B.pth").unlink()
    result = run_in_process(cyclegan_job(tmp_path, "--init_from", str(folder / "latest_net_D_A.pth")), capsys,
                            monkeypatch)
    assert_one_line_error(result, "latest_net_G_B.pth is not in")
    torch.save(torch.zeros(3), tmp_path / "notes.pth")  # neither ours nor junyanz's: both named
    result = run_in_process(cyclegan_job(tmp_path, "--init_from", str(tmp_path / "notes.pth")), capsys, monkeypatch)
    assert_one_line_error(result, "is not a Lightning checkpoint", "or junyanz's checkpoints folder")


LOAD_ALONE = """import json, sys, torch
extra = {"dl2.json": ""}
program = torch.export.load(sys.argv[1], extra_files=extra).module()
inputs = torch.load(sys.argv[2])
with torch.no_grad():  # a list: one call each (images of other sizes)
    torch.save([program(x) for x in inputs] if isinstance(inputs, list) else program(inputs), sys.argv[3])
print(json.dumps({"about": json.loads(extra["dl2.json"]),
                  "ours": sorted(m for m in sys.modules if m.split(".")[0] in ("lightning_modules", "callbacks",
                                                                           "datamodules", "lightning"))}))
"""


def run_alone(program: Path, inputs: torch.Tensor, tmp_path: Path) -> tuple[torch.Tensor, dict]:
    """The exported program run by a process that imports torch alone (fastai's load_learner needs fastai)."""
    import subprocess
    import sys
    torch.save(inputs, tmp_path / "inputs.pt")
    result = subprocess.run([sys.executable, "-c", LOAD_ALONE, str(program), str(tmp_path / "inputs.pt"),
                             str(tmp_path / "outputs.pt")], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    printed = json.loads(result.stdout.strip().splitlines()[-1])
    assert printed["ours"] == []  # neither this package nor Lightning
    return torch.load(tmp_path / "outputs.pt"), printed["about"]


def test_a_darknet_exports_as_a_program_of_torch_alone_with_its_tta_normalisation_and_classes(tmp_path):
    """An airbench or fastai user's deployment: no way to run the export without this package (its keys needed our
    Darknet class, the preprocessing was in no file)."""
    from lightning_modules import DarknetClassifier
    checkpoint, _ = tiny_darknet_checkpoint(tmp_path / "dn", tta="flip")
    export(str(checkpoint), str(tmp_path / "out"), format="pt2")
    images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)  # another batch size than the export's example
    probabilities, about = run_alone(tmp_path / "out" / "darknet.pt2", images, tmp_path)
    model = DarknetClassifier.load_from_checkpoint(checkpoint, map_location="cpu").eval()
    x = (images.float() / 255 - torch.tensor([0.4914, 0.48216, 0.44653]).view(1, 3, 1, 1)) / torch.tensor(
        [0.24703, 0.24349, 0.26159]).view(1, 3, 1, 1)  # the seed's statistics, written out
    with torch.no_grad():
        expected = ((model.net(x) + model.net(x.flip(-1))) / 2).softmax(1)  # flip TTA: the mean of the logits
    assert torch.allclose(probabilities, expected, atol=1e-5)
    assert about["classes"] == ["cat", "dog", "frog"] and about["image_size"] == 32 and about["tta"] == "flip"


def test_a_wgan_exports_its_generator_and_a_cyclegan_a_program_per_direction(wgan_checkpoint, cyclegan_run, tmp_path):
    export(str(wgan_checkpoint), str(tmp_path / "wgan"), format="pt2")
    noise = torch.randn(3, 8, 1, 1)
    images, about = run_alone(tmp_path / "wgan" / "generator.pt2", noise, tmp_path)
    model = WGAN.load_from_checkpoint(wgan_checkpoint, map_location="cpu").eval()
    with torch.no_grad():
        assert torch.allclose(images, model.generator(noise), atol=1e-5)
    assert about["input"] == "float (N, 8, 1, 1) standard normal noise"
    assert about["output"] == "(N, 3, 16, 16) images in [-1, 1]" and about["from"] == str(wgan_checkpoint.absolute())
    mlp = tiny_wgan_checkpoint(tmp_path / "mlp", mlp_generator=True)  # a linear last layer: no tanh bounds it
    export(str(mlp), str(tmp_path / "mlp" / "out"), format="pt2")
    _, about = run_alone(tmp_path / "mlp" / "out" / "generator.pt2", noise, tmp_path)
    assert about["output"] == ("(N, 3, 16, 16) images in [-1, 1] (the MLP generator's last layer is linear: clamp "
                               "them to it)")
    _, run = cyclegan_run
    export(str(run), str(tmp_path / "cyclegan"), format="pt2")
    assert sorted(p.name for p in (tmp_path / "cyclegan").iterdir()) == ["a2b.pt2", "b2a.pt2"]
    cyclegan = CycleGAN.load_from_checkpoint(run / "checkpoints" / "last.ckpt", map_location="cpu").eval()
    x = torch.rand(1, 3, 40, 48) * 2 - 1  # another size and batch than the export's example
    odd = torch.rand(2, 3, 37, 50) * 2 - 1  # a photo's sides: no multiples of 4 (it came back 40 x 52)
    for direction, generator, source, target in (("a2b", cyclegan.gen_a2b, "A", "B"),
                                                 ("b2a", cyclegan.gen_b2a, "B", "A")):
        translated, about = run_alone(tmp_path / "cyclegan" / f"{direction}.pt2", [x, odd], tmp_path)
        with torch.no_grad():
            assert torch.allclose(translated[0], generator(x), atol=1e-5)
            # as dl2-cyclegan-translate: reflected up to 40 x 52, translated, cut back
            expected = generator(F.pad(odd, (0, 2, 0, 3), mode="reflect"))[..., :37, :50]
            assert translated[1].shape == odd.shape and torch.allclose(translated[1], expected, atol=1e-5)
        assert about["input"].startswith(f"float (N, 3, H, W) images in [-1, 1] of domain {source}, ")
        assert about["output"] == f"the same shape, translated into domain {target}"
    photo = tmp_path / "horse.png"
    Image.new("RGB", (16, 16)).save(photo)
    for program, command in ((tmp_path / "wgan" / "generator.pt2", generate),
                             (tmp_path / "cyclegan" / "a2b.pt2", translate)):  # "truncated?" it said
        with pytest.raises(UserError, match=rf"^{program} is a torch.export program \(dl2-export --format pt2\), "
                                            rf"which runs with torch alone: .*takes the .ckpt it was exported from$"):
            command(str(program), **({"input_dir": str(photo), "output_dir": str(tmp_path / "t")}
                                     if command is translate else {"out_dir": str(tmp_path / "s")}))


def test_a_darknet_checkpoint_that_keeps_no_size_exports_at_cifar10s_32(tmp_path):
    """A checkpoint from before the image_size key (or a plain Trainer's of a model never fitted on our data)."""
    checkpoint, _ = tiny_darknet_checkpoint(tmp_path / "dn")
    state = torch.load(checkpoint, weights_only=False)
    state.pop("image_size", None)
    state.pop("datamodule_hyper_parameters", None)
    torch.save(state, tmp_path / "sizeless.ckpt")
    export(str(tmp_path / "sizeless.ckpt"), str(tmp_path / "out"), format="pt2")
    probabilities, about = run_alone(tmp_path / "out" / "darknet.pt2",
                                     torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8), tmp_path)
    assert about["image_size"] == 32 and probabilities.shape == (2, 3)


@pytest.mark.parametrize("finished", [False, True])
def test_last_is_refused_when_the_newest_run_has_no_checkpoint_and_names_an_older_runs(finished, tmp_path,
                                                                                       monkeypatch):
    """A run killed before its first save (or one whose config keeps none) made `last` the run before it, another
    model (a 3-class net from other data), without a word; train.py's --ckpt_path last refuses the same."""
    from lightning_modules import DarknetClassifier
    from lightning_modules.inference import checkpoint_file
    monkeypatch.chdir(tmp_path)
    for name, started in (("older", 1.0), ("killed", 2.0), ("oldest", 0.5)):
        run = tmp_path / "runs" / "darknet" / name
        (run / "checkpoints").mkdir(parents=True)
        if name != "killed":
            (run / "checkpoints" / "last.ckpt").write_bytes(b"")
        elif finished:
            (run / "results.json").write_text("{}")
        (run / "run.json").write_text(json.dumps({"model": "lightning_modules.DarknetClassifier", "started": started,
                                                  "trained": True}))
    why = ("it finished without one: its config keeps no checkpoints" if finished else
           "it stopped before its first save, or is still in its first epoch")
    with pytest.raises(UserError) as error:
        checkpoint_file("last", DarknetClassifier)
    assert str(error.value) == (f"last: the newest darknet run, {Path('runs/darknet/killed')}, has no "
                                f"checkpoints/last.ckpt ({why}); give a checkpoint: an older run's is "
                                f"{Path('runs/darknet/older/checkpoints/last.ckpt')}")
    with pytest.raises(UserError, match="darknet run, .*killed.*no other run has one$"):
        for name in ("older", "oldest"):
            (tmp_path / "runs" / "darknet" / name / "checkpoints" / "last.ckpt").unlink()
        checkpoint_file("last", DarknetClassifier)
    (tmp_path / "runs" / "darknet" / "killed" / "checkpoints" / "last.ckpt").write_bytes(b"")  # its first save
    assert checkpoint_file("last", DarknetClassifier) == str(Path("runs/darknet/killed/checkpoints/last.ckpt"))


def test_a_channels_last_darknet_exports_without_torchs_archive_warnings(tmp_path):
    """Its weights, channels_last, made torch.export's archive warn "No complete tensor found in the group!" once
    per weight, shown as dl2-export's own warnings."""
    import warnings

    from lightning_modules import DarknetClassifier
    from lightning_modules.darknet_classify import class_probabilities
    checkpoint, _ = tiny_darknet_checkpoint(tmp_path / "dn", channels_last=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export(str(checkpoint), str(tmp_path / "out"), format="pt2")
    assert not [w for w in caught if "complete tensor" in str(w.message)]
    model = DarknetClassifier.load_from_checkpoint(checkpoint, map_location="cpu").eval()
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        expected = class_probabilities([model], images, model.hparams.tta)  # dl2-classify's, checked above
        assert torch.allclose(torch.export.load(tmp_path / "out" / "darknet.pt2").module()(images), expected, atol=1e-6)
