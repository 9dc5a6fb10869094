"""`translate` with unreadable files among the inputs: the others are translated, the page lists the bad ones."""

import html
import re

import numpy as np
import pytest
import torch
from PIL import Image

import lightning_modules.inference
from callbacks import UserError
from lightning_modules import CycleGAN, commands
from lightning_modules.cyclegan_translate import translate

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def tiny_model(monkeypatch):
    torch.manual_seed(0)
    model = CycleGAN(n_blocks=1, ngf=4, ndf=4)
    monkeypatch.setattr(lightning_modules.inference, "load_checkpoint", lambda cls, checkpoint, device: model.eval())
    return model


@pytest.mark.parametrize("error", [
    torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB"),  # a phone photo on a small GPU
    # without a GPU: torch's CPU allocator raises a RuntimeError (the command ended in its traceback, without
    # index.html and without the images after the large one)
    RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried "
                 "to allocate 576000000 bytes. Error code 12")], ids=["gpu", "cpu"])
def test_an_image_too_large_for_the_memory_is_listed_with_max_size_and_the_others_translated(
        error, tiny_model, tmp_path, capsys, monkeypatch):
    inputs = tmp_path / "in"
    inputs.mkdir()
    Image.new("RGB", (60, 40), (200, 10, 30)).save(inputs / "a_large.png")
    Image.new("RGB", (24, 20), (10, 200, 30)).save(inputs / "b_small.png")
    forward = type(tiny_model.gen_a2b).forward

    def small_only(self, x):
        if x.shape[-1] > 40:
            raise error
        return forward(self, x)

    monkeypatch.setattr(type(tiny_model.gen_a2b), "forward", small_only)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    with pytest.raises(SystemExit) as stop:
        commands.cyclegan_translate(["--checkpoint", "unused.ckpt", "--input_dir", str(inputs),
                                     "--output_dir", str(tmp_path / "out"), "--device", "cpu"])
    assert stop.value.code == 1
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["b_small.png"]
    reason = f"{inputs / 'a_large.png'} at 60x40 does not fit in cpu's memory; give --max_size (e.g. 1024"
    assert html.escape(f"a_large.png: {reason}") in (tmp_path / "out" / "index.html").read_text()
    out, err = capsys.readouterr()
    assert "1 of 2 images translated" in out and f"could not translate 1: {reason}" in err
    assert "--device cpu" not in err  # the advice of a GPU run


def test_unreadable_images_are_listed_and_the_others_translated(tiny_model, tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.jpg", "c.png"):
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(inputs / name)
    good = (inputs / "b.jpg").read_bytes()
    (inputs / "b.jpg").write_bytes(good[:len(good) // 2])  # truncated
    (inputs / "d.jpg").write_bytes(b"")  # empty
    with pytest.raises(SystemExit) as stop:  # the others written, and exit status 1 so a script can tell
        commands.cyclegan_translate(["--checkpoint", "unused.ckpt", "--input_dir", str(inputs),
                                     "--output_dir", str(tmp_path / "out")])
    assert stop.value.code == 1
    index = tmp_path / "out" / "index.html"
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["a.png", "c.png"]
    page = index.read_text()
    assert "<img src='a.png'>" in page and "<img src='c.png'>" in page
    assert "Not translated" in page and "b.jpg: cannot read image" in page and "d.jpg: cannot read image" in page
    out, err = capsys.readouterr()
    assert "2 of 4 images translated" in out and "could not translate 2" in err and str(inputs / "b.jpg") in err
    (inputs / "b.jpg").unlink()
    (inputs / "d.jpg").unlink()  # all readable now: status 0, whatever the run before
    Image.new("RGB", (4, 4)).save(tmp_path / "again.png")  # not in the folder: no note
    (tmp_path / "again").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "again" / "b.png")  # an earlier run's, whose b.jpg is gone now
    assert commands.cyclegan_translate(["--checkpoint", "unused.ckpt", "--input_dir", str(inputs),
                                        "--output_dir", str(tmp_path / "again")]) is None
    err = capsys.readouterr().err
    assert "could not translate" not in err
    assert f"note: {tmp_path / 'again'} also holds 1 .png file this run did not write (e.g. b.png;" in err


def test_output_names_are_the_stems_made_distinct():
    from pathlib import Path

    from datamodules.decode import output_names

    files = [Path(p) for p in ("x/a.jpg", "x/a.png", "x/b.png", "y/b.png", "z/c.JPG", "z/c.jpg", "x/d.png", "x/d.png")]
    assert output_names(files) == ["a_jpg", "a_png", "x_b_png", "y_b_png", "z_c_jpg", "z_c_jpg_2", "x_d_png",
                                   "x_d_png_2"]
    assert output_names([Path("p/q.png"), Path("r/s.jpg")]) == ["q", "s"]
    assert output_names([Path("x/A.png"), Path("x/a.png")]) == ["x_A_png", "x_a_png_2"]  # one file on macOS, Windows
    assert output_names([Path(f"x/{i}.png") for i in range(20000)])[-1] == "19999"  # in linear time


def test_inputs_with_one_stem_get_their_own_outputs(tiny_model, tmp_path):
    rng = np.random.default_rng(0)
    both, alone = tmp_path / "both", {}
    both.mkdir()
    for name in ("a.png", "a.bmp"):
        pixels = rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(both / name)
        (tmp_path / name).mkdir()
        Image.fromarray(pixels).save(tmp_path / name / name)
        translate("unused.ckpt", str(tmp_path / name), str(tmp_path / f"out-{name}"))
        alone[name] = np.array(Image.open(tmp_path / f"out-{name}" / "a.png"))
    index = translate("unused.ckpt", str(both), str(tmp_path / "out"))
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["a_bmp.png", "a_png.png"]
    for name, output in (("a.png", "a_png.png"), ("a.bmp", "a_bmp.png")):
        assert np.array_equal(np.array(Image.open(tmp_path / "out" / output)), alone[name])  # its own translation
        assert f"<img src='{output}'>" in index.read_text()
    assert not np.array_equal(alone["a.png"], alone["a.bmp"])


@pytest.mark.parametrize("height, width, pads, mode", [
    (9, 13, (0, 3, 0, 3), "reflect"),     # up to 12 x 16, multiples of 4, mirrored at the bottom and right
    (9, 12, (0, 0, 0, 3), "reflect"),     # only the height needs it
    (4, 12, (0, 0, 0, 4), "replicate"),   # to 8: a reflection needs a pad smaller than the side
    (2, 3, (0, 5, 0, 6), "replicate")])   # to 8 x 8, the generator's least
def test_images_are_padded_at_the_bottom_and_right_then_cut_back(tiny_model, tmp_path, height, width, pads, mode):
    import torch.nn.functional as F
    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    (tmp_path / "in").mkdir()
    Image.fromarray(pixels).save(tmp_path / "in" / "x.png")
    translate("unused.ckpt", str(tmp_path / "in"), str(tmp_path / "out"))
    x = torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        y = tiny_model.gen_a2b(F.pad(x, pads, mode=mode))[0, :, :height, :width]
    expected = ((y + 1) / 2 * 255).round().clamp(0, 255).permute(1, 2, 0).numpy()
    assert np.abs(np.array(Image.open(tmp_path / "out" / "x.png")).astype(float) - expected).max() <= 1


@pytest.mark.parametrize("height, width", [(2, 3), (1, 1), (5, 7), (9, 4)])
def test_images_smaller_than_the_generators_bottleneck_are_translated_at_their_size(tiny_model, tmp_path, height,
                                                                                    width):
    inputs = tmp_path / "in"
    inputs.mkdir()
    Image.fromarray(np.full((height, width, 3), 100, dtype=np.uint8)).save(inputs / "small.png")
    translate("unused.ckpt", str(inputs), str(tmp_path / "out"))
    assert Image.open(tmp_path / "out" / "small.png").size == (width, height)


def reference_state(generator, n_blocks, norm_statistics=False):
    """The generator's tensors under the names junyanz's ResnetGenerator gives them (its nn.Sequential `model`:
    1 the 7x7 conv, 4 and 7 the downsampling convs, 10... the blocks' conv_block.1 and .5, then the transposed
    convs and the last conv), optionally with the instance-norm statistics older PyTorch versions saved."""
    from collections import OrderedDict
    names = ["model.1", "model.4", "model.7", *[f"model.{10 + i}.conv_block.{j}" for i in range(n_blocks)
                                                for j in (1, 5)],
             f"model.{10 + n_blocks}", f"model.{13 + n_blocks}", f"model.{17 + n_blocks}"]
    tensors = list(generator.state_dict().values())
    state = OrderedDict()
    for i, name in enumerate(names):
        state[f"{name}.weight"], state[f"{name}.bias"] = tensors[2 * i], tensors[2 * i + 1]
        if norm_statistics and i < len(names) - 1:
            channels = tensors[2 * i + 1].shape[0]
            state[f"model.{i}.norm.running_mean"], state[f"model.{i}.norm.running_var"] = (torch.zeros(channels),
                                                                                         torch.ones(channels))
    return state


@pytest.mark.parametrize("norm_statistics", [False, True])
def test_a_reference_generator_file_translates_as_that_generator(tmp_path, norm_statistics):
    from lightning_modules.nets.cyclegan import init_cyclegan_, resnet_generator

    torch.manual_seed(0)
    generator = init_cyclegan_(resnet_generator(n_blocks=2, ngf=4)).eval()
    torch.save(reference_state(generator, 2, norm_statistics), tmp_path / "latest_net_G_A.pth")
    inputs = tmp_path / "in"
    inputs.mkdir()
    pixels = np.random.default_rng(0).integers(0, 256, (16, 20, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(inputs / "horse.png")
    translate(str(tmp_path / "latest_net_G_A.pth"), str(inputs), str(tmp_path / "out"))
    with torch.no_grad():
        y = generator(torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 127.5 - 1)[0]
    expected = ((y + 1) / 2 * 255).round().clamp(0, 255).permute(1, 2, 0).numpy()
    assert np.abs(np.array(Image.open(tmp_path / "out" / "horse.png")).astype(float) - expected).max() <= 1
    assert "a2b, junyanz's G_A" in (tmp_path / "out" / "index.html").read_text()  # the file's own direction


def test_a_file_that_is_neither_checkpoint_nor_reference_generator_is_named(tmp_path):
    from callbacks import UserError
    from lightning_modules.nets.cyclegan import resnet_generator

    inputs = tmp_path / "in"
    inputs.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(inputs / "a.png")
    state = reference_state(resnet_generator(n_blocks=2, ngf=4), 2)
    state.popitem()  # a tensor short: another architecture
    torch.save(state, tmp_path / "unet.pth")
    with pytest.raises(UserError, match="junyanz-style generator, but not a resnet_2blocks one of ngf 4"):
        translate(str(tmp_path / "unet.pth"), str(inputs), str(tmp_path / "out"))
    discriminator = {f"model.{i}.weight": torch.zeros(8, 3, 4, 4) for i in (0, 2)}  # latest_net_D_A.pth's kind
    torch.save(discriminator, tmp_path / "latest_net_D_A.pth")
    with pytest.raises(UserError, match="not a ResNet generator \\(a discriminator"):
        translate(str(tmp_path / "latest_net_D_A.pth"), str(inputs), str(tmp_path / "out"))
    torch.save(torch.nn.Conv2d(3, 8, 3).state_dict(), tmp_path / "some_conv.pth")  # tensors, but not junyanz's
    with pytest.raises(UserError, match=r"some_conv.pth is not a Lightning checkpoint .*, or junyanz's checkpoints "
                                        r"folder or a generator file of it \(latest_net_G_A.pth\)$"):
        translate(str(tmp_path / "some_conv.pth"), str(inputs), str(tmp_path / "out"))
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(UserError, match="is not a Lightning checkpoint"):
        translate(str(tmp_path / "list.pth"), str(inputs), str(tmp_path / "out"))


def test_reconstruct_translates_each_output_back_with_the_other_generator(tiny_model, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    pixels = np.random.default_rng(5).integers(0, 256, (21, 30, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(inputs / "p.png")
    Image.fromarray(pixels).save(inputs / "q.png")
    index = translate("unused.ckpt", str(inputs), str(tmp_path / "out"), direction="b2a", reconstruct=True,
                      max_images=1)
    x = torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():  # b2a: F, then G back; 21x30 reflect-padded to 24x32 by hand for each pass
        fake = tiny_model.gen_b2a(torch.nn.functional.pad(x, (0, 2, 0, 3), mode="reflect"))[..., :21, :30]
        rec = tiny_model.gen_a2b(torch.nn.functional.pad(fake, (0, 2, 0, 3), mode="reflect"))[..., :21, :30]
    for path, expected in ((tmp_path / "out" / "p.png", fake), (tmp_path / "out" / "reconstructions" / "p.png", rec)):
        saved = torch.from_numpy(np.array(Image.open(path))).permute(2, 0, 1) / 255
        assert (saved - (expected[0] + 1) / 2).abs().max() <= 1 / 255 + 1e-6
    assert not (tmp_path / "out" / "q.png").exists()  # max_images 1: the first in sorted order only
    assert np.array_equal(np.array(Image.open(tmp_path / "out" / "inputs" / "p.png")), pixels)  # the input, as read
    page = index.read_text()
    assert "<th>reconstruction</th>" in page and "<td><img src='reconstructions/p.png'></td></tr>" in page


def test_reconstruct_with_a_single_reference_generator_is_refused(tmp_path):
    from callbacks import UserError
    from lightning_modules.nets.cyclegan import resnet_generator

    torch.save(reference_state(resnet_generator(n_blocks=2, ngf=4), 2, False), tmp_path / "g.pth")
    inputs = tmp_path / "in"
    inputs.mkdir()
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(inputs / "a.png")
    with pytest.raises(UserError, match="--reconstruct needs both generators.*g.pth holds one"):
        translate(str(tmp_path / "g.pth"), str(inputs), str(tmp_path / "out"), reconstruct=True)
    with pytest.raises(UserError, match="--max_images must be at least 1"):
        translate(str(tmp_path / "g.pth"), str(inputs), str(tmp_path / "out"), max_images=0)


def junyanz_translation(pixels, forward, back):
    """What junyanz's test.py writes for an image: forward(x), and back(forward(x)), as 0..255 floats."""
    def to_pixels(image):
        return ((image[0] + 1) / 2 * 255).round().clamp(0, 255).permute(1, 2, 0).numpy()

    with torch.no_grad():
        y = forward(torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 127.5 - 1)
        return to_pixels(y), to_pixels(back(y))


def junyanz_folder_inputs(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    pixels = np.random.default_rng(0).integers(0, 256, (16, 20, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(inputs / "horse.png")
    return inputs, pixels


def differs(file, expected) -> float:
    return float(np.abs(np.array(Image.open(file)).astype(float) - expected).max())


@pytest.mark.parametrize("direction", ["a2b", "b2a"])
def test_junyanz_checkpoints_folder_translates_either_way_and_reconstructs(direction, tmp_path, capsys):
    """junyanz's test.py --model cycle_gan reads checkpoints/<name>/ (both generators); given here, the folder was
    refused as a run folder without last.ckpt."""
    from test_export import junyanz_nets, save_junyanz

    nets = junyanz_nets(0)
    folder = tmp_path / "checkpoints" / "horse2zebra"
    # the D files are not needed: a folder of the generators alone (b2a here) translates as well
    save_junyanz(nets if direction == "a2b" else {net: nets[net] for net in ("G_A", "G_B")}, folder, "latest")
    save_junyanz(junyanz_nets(1), folder, "5")  # an earlier epoch's save: latest is the one
    inputs, pixels = junyanz_folder_inputs(tmp_path)
    translate(str(folder), str(inputs), str(tmp_path / "out"), direction=direction, reconstruct=True)
    forward, back = (nets["G_A"], nets["G_B"]) if direction == "a2b" else (nets["G_B"], nets["G_A"])
    output, reconstruction = junyanz_translation(pixels, forward, back)
    assert differs(tmp_path / "out" / "horse.png", output) <= 1
    assert differs(tmp_path / "out" / "reconstructions" / "horse.png", reconstruction) <= 1
    assert f"({direction}, junyanz's {'G_A' if direction == 'a2b' else 'G_B'})" in capsys.readouterr().out


@pytest.mark.parametrize("n_layers", [4, 2])
def test_junyanz_checkpoints_folder_translates_whatever_its_discriminators_are(n_layers, tmp_path, capsys):
    """junyanz's test.py reads G_A and G_B alone; a run of --netD n_layers --n_layers_D 4 (a discriminator that
    --init_from cannot load) was refused as "not junyanz's basic PatchGAN" though translate needs no discriminator."""
    from test_export import junyanz_discriminator, junyanz_nets, save_junyanz

    nets = junyanz_nets(0)
    nets.update(D_A=junyanz_discriminator(n_layers=n_layers), D_B=junyanz_discriminator(n_layers=n_layers))
    save_junyanz(nets, tmp_path / "ckpts", "latest")
    inputs, pixels = junyanz_folder_inputs(tmp_path)
    translate(str(tmp_path / "ckpts"), str(inputs), str(tmp_path / "out"), direction="b2a", reconstruct=True)
    output, reconstruction = junyanz_translation(pixels, nets["G_B"], nets["G_A"])
    assert differs(tmp_path / "out" / "horse.png", output) <= 1
    assert differs(tmp_path / "out" / "reconstructions" / "horse.png", reconstruction) <= 1
    assert "new weights" not in capsys.readouterr().err  # no discriminator to speak of


def test_a_junyanz_generator_file_reconstructs_with_the_other_generator_of_its_epoch(tmp_path):
    from test_export import junyanz_nets, save_junyanz

    nets = junyanz_nets(0)
    save_junyanz({name: nets[name] for name in ("G_A", "G_B")}, tmp_path / "ckpts", "latest")
    save_junyanz({"G_A": junyanz_nets(1)["G_A"]}, tmp_path / "ckpts", "5")  # another epoch's G_A: not the way back
    inputs, pixels = junyanz_folder_inputs(tmp_path)
    translate(str(tmp_path / "ckpts" / "latest_net_G_B.pth"), str(inputs), str(tmp_path / "out"), reconstruct=True)
    output, reconstruction = junyanz_translation(pixels, nets["G_B"], nets["G_A"])  # its own direction: B to A
    assert differs(tmp_path / "out" / "horse.png", output) <= 1
    assert differs(tmp_path / "out" / "reconstructions" / "horse.png", reconstruction) <= 1


def test_the_model_zoos_download_folder_translates_with_its_one_generator(tmp_path):
    from test_export import junyanz_nets

    generator = junyanz_nets(0)["G_A"]
    (tmp_path / "zoo").mkdir()
    torch.save(generator.state_dict(), tmp_path / "zoo" / "latest_net_G.pth")  # download_cyclegan_model.sh's
    inputs, pixels = junyanz_folder_inputs(tmp_path)
    translate(str(tmp_path / "zoo"), str(inputs), str(tmp_path / "out"))
    assert differs(tmp_path / "out" / "horse.png", junyanz_translation(pixels, generator, generator)[0]) <= 1
    with pytest.raises(UserError, match="--reconstruct needs both generators"):
        translate(str(tmp_path / "zoo"), str(inputs), str(tmp_path / "out2"), reconstruct=True)


def test_a_g_a_file_refuses_b2a_and_names_its_g_b_and_the_zoos_file_says_it_keeps_its_direction(tmp_path, capsys):
    """--direction b2a with latest_net_G_A.pth translated A to B all the same, saying only 'its own direction'."""
    from test_export import junyanz_nets, save_junyanz

    from callbacks import UserError

    nets = junyanz_nets(0)
    save_junyanz({name: nets[name] for name in ("G_A", "G_B")}, tmp_path / "ckpts", "latest")
    inputs, pixels = junyanz_folder_inputs(tmp_path)
    g_a, g_b = tmp_path / "ckpts" / "latest_net_G_A.pth", tmp_path / "ckpts" / "latest_net_G_B.pth"
    with pytest.raises(UserError, match=rf"--direction b2a: {g_a} is junyanz's G_A, which translates A to B; give "
                                        rf"its G_B \({g_b}\) or the checkpoints folder {g_a.parent}, or leave "
                                        rf"--direction out$"):
        translate(str(g_a), str(inputs), str(tmp_path / "out"), direction="b2a")
    # the other way round too: G_B with --direction AtoB translated B to A, saying only 'its own direction'
    with pytest.raises(UserError, match=rf"--direction AtoB: {g_b} is junyanz's G_B, which translates B to A; give "
                                        rf"its G_A \({g_a}\) or the checkpoints folder"):
        translate(str(g_b), str(inputs), str(tmp_path / "out"), direction="AtoB")
    assert not (tmp_path / "out").exists()
    for direction in ("b2a", None):  # its own direction, as asked or by default
        translate(str(g_b), str(inputs), str(tmp_path / f"out_{direction}"), direction=direction)
        translated = tmp_path / f"out_{direction}" / "horse.png"
        assert differs(translated, junyanz_translation(pixels, nets["G_B"], nets["G_A"])[0]) <= 1
        assert "b2a, junyanz's G_B" in (translated.parent / "index.html").read_text()
    assert "--direction" not in capsys.readouterr().err
    (tmp_path / "zoo").mkdir()
    torch.save(nets["G_A"].state_dict(), tmp_path / "zoo" / "latest_net_G.pth")  # zebra2horse's or horse2zebra's
    translate(str(tmp_path / "zoo"), str(inputs), str(tmp_path / "zoo_out"), direction="b2a")
    assert differs(tmp_path / "zoo_out" / "horse.png", junyanz_translation(pixels, nets["G_A"], nets["G_A"])[0]) <= 1
    assert f"--direction b2a: {tmp_path / 'zoo' / 'latest_net_G.pth'} is one generator, which translates in its own " \
           "direction" in capsys.readouterr().err


@pytest.mark.parametrize("folder, reconstruct", [("inputs", False), ("inputs/horses", False),
                                                 ("reconstructions", True)])
def test_an_output_folder_whose_copies_would_land_on_the_inputs_is_refused(tiny_model, tmp_path, folder, reconstruct):
    """--input_dir inputs --output_dir .: each input was saved again as ./inputs/<name>.png, over itself."""
    inputs = tmp_path / folder
    inputs.mkdir(parents=True)
    Image.fromarray(np.full((20, 24, 3), 200, dtype=np.uint8)).save(inputs / "horse.png")
    before = (inputs / "horse.png").read_bytes()
    with pytest.raises(UserError, match=rf"--output_dir {tmp_path}: translate writes the {folder.split('/')[0]} to "
                                        rf".* which holds the input images .* give another --output_dir"):
        translate("unused.ckpt", str(inputs), str(tmp_path), reconstruct=reconstruct)
    assert (inputs / "horse.png").read_bytes() == before and [p.name for p in inputs.iterdir()] == ["horse.png"]
    if folder == "reconstructions":  # without --reconstruct nothing is written there: the folder is an input like any
        translate("unused.ckpt", str(inputs), str(tmp_path))
        assert (tmp_path / "horse.png").is_file() and (inputs / "horse.png").read_bytes() == before


def test_one_image_translates_and_the_input_folder_is_refused_as_output(tiny_model, tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    for name in ("horse #1?.png", "other.png"):
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(inputs / name)
    before = (inputs / "other.png").read_bytes()
    for output in (inputs, inputs / ".", inputs / ".." / "in"):  # the same folder, spelt three ways
        with pytest.raises(UserError, match="is the input folder: the translations would replace the inputs"):
            translate("unused.ckpt", str(inputs), str(output))
    with pytest.raises(UserError, match="is the input folder"):  # a file's folder counts as the input folder
        translate("unused.ckpt", str(inputs / "other.png"), str(inputs))
    assert (inputs / "other.png").read_bytes() == before and sorted(p.name for p in inputs.iterdir()) == [
        "horse #1?.png", "other.png"]
    index = translate("unused.ckpt", str(inputs / "horse #1?.png"), str(tmp_path / "out"))
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["horse #1?.png"]  # that one only
    # a browser reads '#' as a fragment and '?' as a query: the page links the file by its escaped name
    assert "<img src='horse%20%231%3F.png'>" in index.read_text()


def write_images(folder, names, seed):
    """Random 12x16 RGB images at the given paths below `folder` (subfolders made)."""
    rng = np.random.default_rng(seed)
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(folder / name)
    return folder


def test_images_in_subfolders_are_translated_but_not_an_earlier_runs_outputs(tiny_model, tmp_path):
    """The reference's test.py reads its folder at all depths (make_dataset walks it), as our training folders do."""
    inputs = write_images(tmp_path / "in", ("a.png", "x/b.png", "x/y/c.jpg", "z/b.png"), seed=0)
    translate("unused.ckpt", str(inputs), str(tmp_path))  # an output folder above the input: every input counts
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["a.png", "c.png", "x_b_png.png", "z_b_png.png"]
    for _ in range(2):  # the second run must not translate the first one's outputs, which lie inside the input folder
        index = translate("unused.ckpt", str(inputs), str(inputs / "out"))
        assert sorted(p.name for p in (inputs / "out").glob("*.png")) == ["a.png", "c.png", "x_b_png.png",
                                                                          "z_b_png.png"]
    page = index.read_text()
    assert page.count("<tr><td>") == 4 and "<td>x/y/c.jpg</td>" in page and "<td>z/b.png</td>" in page
    with torch.no_grad():  # z/b.png's own translation under its distinct name
        x = torch.from_numpy(np.array(Image.open(inputs / "z/b.png"))).permute(2, 0, 1)[None].float() / 127.5 - 1
        expected = ((tiny_model.gen_a2b(x)[0] + 1) / 2 * 255).round().clamp(0, 255).permute(1, 2, 0).numpy()
    assert np.abs(np.array(Image.open(inputs / "out" / "z_b_png.png")).astype(float) - expected).max() <= 1


def test_a_page_is_written_into_a_new_nested_folder_when_no_image_could_be_read(tiny_model, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "broken.png").write_bytes(b"not a png")
    index = translate("unused.ckpt", str(tmp_path / "in"), str(tmp_path / "new" / "nested" / "out"))
    assert index.is_file() and "broken.png: cannot read image" in index.read_text()


def test_outputs_of_earlier_runs_are_not_inputs_but_a_translated_folder_can_be_translated_again(tiny_model, tmp_path):
    inputs = write_images(tmp_path / "in", ("a.png", "x/b.png"), seed=1)
    translate("unused.ckpt", str(inputs), str(inputs / "out1"), reconstruct=True)
    translate("unused.ckpt", str(inputs), str(inputs / "out2"))  # out1 (translations, inputs/, reconstructions/) left
    assert sorted(p.name for p in (inputs / "out2").rglob("*.png")) == ["a.png", "a.png", "b.png", "b.png"]
    # out1 as the input (zebras back to horses): its translations, not its inputs/ or reconstructions/
    index = translate("unused.ckpt", str(inputs / "out1"), str(tmp_path / "back"), direction="b2a")
    assert sorted(p.name for p in (tmp_path / "back").glob("*.png")) == ["a.png", "b.png"]
    assert index.read_text().count("<tr><td>") == 2


def test_a_users_folder_named_inputs_is_read_and_a_crashed_runs_output_folder_is_not(tiny_model, tmp_path):
    # the user's own subfolder called inputs (no index.html beside it), and what a run stopped before writing its
    # index.html left in the output folder
    inputs = write_images(tmp_path / "in", ("inputs/a.png", "b.png", "out/c.png", "out/inputs/c.png"), seed=2)
    index = translate("unused.ckpt", str(inputs), str(inputs / "out"))
    assert index.read_text().count("<tr><td>") == 2 and "<td>inputs/a.png</td>" in index.read_text()


def test_max_size_scales_the_longer_side_down_and_leaves_smaller_images_alone(tiny_model, tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "in").mkdir()
    Image.fromarray(rng.integers(0, 256, (30, 41, 3), dtype=np.uint8)).save(tmp_path / "in" / "wide.png")
    Image.fromarray(rng.integers(0, 256, (12, 9, 3), dtype=np.uint8)).save(tmp_path / "in" / "small.png")
    Image.fromarray(np.full((30, 12, 3), 200, dtype=np.uint8)).save(tmp_path / "in" / "tall.png")  # one colour
    Image.fromarray(rng.integers(0, 256, (2, 40, 3), dtype=np.uint8)).save(tmp_path / "in" / "strip.png")
    translate("unused.ckpt", str(tmp_path / "in"), str(tmp_path / "full"))
    translate("unused.ckpt", str(tmp_path / "in"), str(tmp_path / "capped"), max_size=20)
    for folder in ("capped", "capped/inputs"):  # 41 x 30 -> 20 x round(30 * 20 / 41) = 20 x 15
        assert Image.open(tmp_path / folder / "wide.png").size == (20, 15)
        assert Image.open(tmp_path / folder / "tall.png").size == (8, 20)  # the height alone over 20
        assert Image.open(tmp_path / folder / "strip.png").size == (20, 1)  # 2 * 20 / 40 = 1 pixel high
    assert np.array_equal(np.array(Image.open(tmp_path / "capped" / "inputs" / "tall.png")),
                          np.full((20, 8, 3), 200))  # one colour scaled down stays that colour
    assert Image.open(tmp_path / "full" / "wide.png").size == (41, 30)
    for name in ("small.png", "inputs/small.png"):  # below the cap: the full-resolution translation, to the pixel
        assert np.array_equal(np.array(Image.open(tmp_path / "capped" / name)),
                              np.array(Image.open(tmp_path / "full" / name)))
    with pytest.raises(UserError, match="--max_size must be at least 1"):
        translate("unused.ckpt", str(tmp_path / "in"), str(tmp_path / "zero"), max_size=0)


def test_another_runtime_error_in_the_generator_keeps_its_traceback(tiny_model, tmp_path, monkeypatch):
    Image.new("RGB", (24, 20)).save(tmp_path / "a.png")

    def broken(self, x):
        raise RuntimeError("a bug: mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(type(tiny_model.gen_a2b), "forward", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        commands.cyclegan_translate(["--checkpoint", "unused.ckpt", "--input_dir", str(tmp_path / "a.png"),
                                     "--output_dir", str(tmp_path / "out"), "--device", "cpu"])


@pytest.mark.parametrize("direction, side", [(None, "A"), ("BtoA", "B")])
def test_a_data_sets_root_as_input_dir_is_refused_naming_the_domains_test_folder(tmp_path, direction, side):
    """junyanz's --dataroot habit: every image below horse2zebra/, zebras and horses alike, went through one
    generator, without a word."""
    from callbacks import UserError
    root = tmp_path / "horse2zebra"
    for name in ("trainA", "trainB", "testA", "testB"):
        (root / name).mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(root / name / "x.png")
    with pytest.raises(UserError, match=re.escape(
            f"--input_dir {root} is a data set's root (trainA, trainB, testA, testB): both domains would go through "
            f"one generator; give one domain's folder, as junyanz's test.py reads test{side} for "
            f"{'AtoB' if side == 'A' else 'BtoA'}: --input_dir {root / f'test{side}'}")):
        translate(str(tmp_path / "no.ckpt"), str(root), str(tmp_path / "out"), direction=direction)
    assert not (tmp_path / "out").exists()


def test_a_folder_of_one_domains_splits_is_translated_whole(tiny_model, tmp_path):
    """trainA and testA alone are one domain: nothing mixed, nothing to refuse."""
    root = tmp_path / "horses"
    for name in ("trainA", "testA"):
        (root / name).mkdir(parents=True)
        Image.fromarray(np.full((16, 16, 3), 90, dtype=np.uint8)).save(root / name / f"{name}.png")
    translate("tiny.ckpt", str(root), str(tmp_path / "out"))
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["testA.png", "trainA.png"]
