"""dl2-stylize and the style system's checks and losses, each against what was asked or a computation written here:
the files the command writes, the accelerators a machine has, the seed's noise start (a median filter in numpy),
the content and Gram losses with their weights (Gatys et al.'s formulas), a checkpoint read without a run."""

import copy
import os
import re
import signal
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
from conftest import make_style_images
from PIL import Image
from test_style import MEAN, STD

from callbacks import UserError
from callbacks.images import LABEL_HEIGHT
from lightning_modules import StyleTransfer, commands
from lightning_modules.style_transfer import median_filtered_noise
from lightning_modules.stylize import check_accelerator, check_results_spare_inputs, stylize

pytestmark = pytest.mark.usefixtures("one_thread")


def median_filter_by_hand(image: np.ndarray, size: int) -> np.ndarray:
    """(C, H, W): each pixel the median of the size x size window from size // 2 before it to (size - 1) // 2 after
    it, the edges mirrored without repeating the edge pixel (scipy.ndimage's mode "mirror"); an even window's median
    the upper of its two middle values (scipy's median_filter: rank size * size // 2 of the sorted window)."""
    channels, height, width = image.shape
    before, after = size // 2, (size - 1) // 2
    out = np.empty_like(image)
    for c in range(channels):
        for y in range(height):
            for x in range(width):
                rows = [abs(r) if r < 0 else (2 * (height - 1) - r if r >= height else r)
                        for r in range(y - before, y + after + 1)]
                cols = [abs(k) if k < 0 else (2 * (width - 1) - k if k >= width else k)
                        for k in range(x - before, x + after + 1)]
                window = np.sort(image[c][np.ix_(rows, cols)].ravel())
                out[c, y, x] = window[size * size // 2]
    return out


@pytest.mark.parametrize("size", [8, 3])
def test_the_noise_start_is_uniform_noise_median_filtered_per_image_and_channel_then_halved(size):
    shape = (2, 3, 9, 12)  # not square: rows and columns kept apart
    torch.manual_seed(0)
    noise = torch.rand(shape).numpy()  # the draw the function makes
    torch.manual_seed(0)
    start = median_filtered_noise(shape, size) if size != 8 else median_filtered_noise(shape)
    assert start.shape == shape
    expected = np.stack([median_filter_by_hand(image, size) for image in noise]) / 2
    np.testing.assert_array_equal(start.numpy(), expected)
    assert 0 <= start.min() and start.max() <= 0.5


@pytest.mark.parametrize("cuda, mps, have", [(False, False, ["auto", "cpu"]),
                                             (True, False, ["auto", "cpu", "gpu", "cuda"]),
                                             (False, True, ["auto", "cpu", "gpu", "mps"])])
def test_an_accelerator_is_taken_when_the_machine_has_it_and_the_refusal_lists_the_ones_it_has(cuda, mps, have,
                                                                                                monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    for accelerator in have:
        check_accelerator(accelerator)
    for accelerator in sorted({"gpu", "cuda", "mps"} - set(have)):
        with pytest.raises(UserError, match=rf"^--accelerator {accelerator}: this machine has none; it has "
                                            rf"{', '.join(have)}$"):
            check_accelerator(accelerator)
    with pytest.raises(UserError, match=rf"^--accelerator tpu: not an accelerator; it has {', '.join(have)}$"):
        check_accelerator("tpu")


def features_by_hand(model: StyleTransfer, images: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
    """The model's VGG16 layers run in float64 on ImageNet-normalised images, up to each ReLU (configuration D: conv,
    relu per conv, a pool after two)."""
    vgg = copy.deepcopy(model.vgg).double()
    index = {"relu1_1": 1, "relu1_2": 3, "relu2_1": 6}
    x = (images.double() - MEAN.double()) / STD.double()
    return {name: vgg[:index[name] + 1](x) for name in layers}


def gram_by_hand(x: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    return torch.stack([sum(torch.outer(x[i, :, y, k], x[i, :, y, k]) for y in range(h) for k in range(w)) / (c * h * w)
                        for i in range(n)])


@pytest.mark.parametrize("content_weight, style_weight", [(2.5, 0.5), (0.0, 0.5), (2.5, 0.0)])
def test_losses_are_the_weighted_content_mse_and_each_layers_weighted_gram_mse_scaled_as_the_seed(content_weight,
                                                                                                   style_weight):
    """Per image: content_weight x 1e6 x the mean squared activation difference at the content layer, and per style
    layer style_weight x 1e12 x its layer weight x the mean squared Gram difference (the seed's comb_loss: MSE x 1e6,
    Gram x 1e6 squared); a weight 0 gives zeros of the same shapes."""
    torch.manual_seed(0)
    style_layers, layer_weights = ["relu1_1", "relu2_1"], [1.0, 3.0]
    model = StyleTransfer(arch="vgg16", vgg_weights="random", content_layer="relu1_2", style_layers=style_layers,
                          style_layer_weights=layer_weights, content_weight=content_weight, style_weight=style_weight,
                          show_iter=0)
    images, content, style = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8), torch.rand(1, 3, 10, 12)
    model.image = torch.nn.Parameter(images.clone())
    c_loss, s_layers = model.losses(model.image, content, style)
    assert c_loss.shape == (2,) and s_layers.shape == (2, len(style_layers) if style_weight else 1)
    mine = features_by_hand(model, images, [*style_layers * bool(style_weight), "relu1_2"])
    content_mse = ((mine["relu1_2"] - features_by_hand(model, content, ["relu1_2"])["relu1_2"]) ** 2).mean((1, 2, 3))
    assert torch.allclose(c_loss.double(), content_weight * 1e6 * content_mse, rtol=1e-4)
    if not style_weight:
        assert torch.equal(s_layers, torch.zeros(2, 1))
        return
    theirs = features_by_hand(model, style, style_layers)
    for k, (name, weight) in enumerate(zip(style_layers, layer_weights, strict=True)):
        gram_mse = ((gram_by_hand(mine[name]) - gram_by_hand(theirs[name])) ** 2).mean((1, 2))
        assert torch.allclose(s_layers[:, k].double(), style_weight * 1e12 * weight * gram_mse, rtol=1e-4), name


def test_stylize_writes_a_png_per_content_image_at_the_size_asked_a_side_by_side_and_nothing_else(tmp_path, capsys,
                                                                                                   caplog):
    """Two content images of other sizes and shapes cut to 32 x 32 (--crop true), each result named after its image, one
    content | style | result grid at the last iteration, no checkpoints, logs or per-iteration images; a progress line
    every tenth of the iterations (21: every second), and neither the seed nor a model summary on the terminal."""
    rng = np.random.default_rng(3)
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name, (height, width) in (("wide.png", (40, 56)), ("tall.jpg", (60, 44)), ("style.png", (48, 40))):
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(inputs / name)
    out = tmp_path / "out"
    written = stylize(content=[str(inputs / "wide.png"), str(inputs / "tall.jpg")], style=str(inputs / "style.png"),
                      output=str(out), size=32, crop=True, max_iter=21, vgg_weights="random", arch="vgg16",
                      content_layer="relu1_1", style_layers=["relu1_1"], accelerator="cpu")
    assert written == [out / "wide.png", out / "tall.png"]
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [
        "images/style_side_by_side-000021.png", "tall.png", "wide.png"]
    for path in written:
        with Image.open(path) as image:
            assert image.size == (32, 32) and image.mode == "RGB"
    with Image.open(out / "images" / "style_side_by_side-000021.png") as grid:
        assert grid.size == (3 * 34 + 2, LABEL_HEIGHT + 2 * 34 + 2)  # two rows of three 32px tiles, their names
    printed = capsys.readouterr().out
    assert [int(step) for step in re.findall(r"\bstep (\d+)/\d+ \|", printed)] == list(range(2, 21, 2))
    assert f"Wrote {out / 'wide.png'}, {out / 'tall.png'}\n" in printed
    assert "Seed set" not in caplog.text and "Trainable params" not in caplog.text  # Lightning's log lines


def test_a_checkpoint_read_without_a_run_gives_its_images(tmp_path):
    """StyleTransfer.load_from_checkpoint has no data module: the image takes the checkpoint's shape and values."""
    torch.manual_seed(0)
    image = torch.rand(2, 3, 24, 40)
    hparams = {"arch": "vgg16", "vgg_weights": "random", "content_layer": "relu1_1", "style_layers": ["relu1_1"]}
    torch.save({"state_dict": {"image": image}, "hyper_parameters": hparams,
                "pytorch-lightning_version": L.__version__}, tmp_path / "run.ckpt")
    model = StyleTransfer.load_from_checkpoint(tmp_path / "run.ckpt")
    assert isinstance(model.image, torch.nn.Parameter) and torch.equal(model.image.detach(), image)


@pytest.mark.parametrize("max_steps, refused", [(None, True), (-1, True), (0, False), (1, False)])
def test_max_steps_is_refused_only_when_unset(max_steps, refused):
    """-1 is Lightning's "no limit" (its default), None none given; 0 is a number of iterations, as a resume to a
    run's own end (train.py's "nothing left to train")."""
    model = StyleTransfer(arch="vgg16", vgg_weights="random", content_layer="relu1_1", style_layers=["relu1_1"])
    trainer = SimpleNamespace(precision="32-true", accumulate_grad_batches=1, world_size=1, max_steps=max_steps,
                              strategy=SimpleNamespace())  # a process started the usual way
    if refused:
        with pytest.raises(UserError, match="set --trainer.max_steps: the number of L-BFGS iterations"):
            model.check_trainer(trainer)
    else:
        model.check_trainer(trainer)


@pytest.mark.parametrize("saved, given, message", [
    (1, 2, "the checkpoint holds 1 image, this run has 2 content images"),
    (2, 1, "the checkpoint holds 2 images, this run has 1 content image;")])
def test_a_resume_names_the_checkpoints_and_the_runs_image_counts(saved, given, message):
    model = StyleTransfer(arch="vgg16", vgg_weights="random", content_layer="relu1_1", style_layers=["relu1_1"])
    model._trainer = SimpleNamespace(datamodule=SimpleNamespace(content=torch.zeros(given, 3, 32, 32)))
    with pytest.raises(UserError, match=message):
        model.on_load_checkpoint({"state_dict": {"image": torch.zeros(saved, 3, 32, 32)}})


def test_a_negative_style_layer_weight_is_refused_as_a_negative_style_weight():
    with pytest.raises(UserError, match=r"style_layer_weights must be 0 or more \(got \[1.0, -5.0\]\)"):
        StyleTransfer(arch="vgg16", vgg_weights="random", style_layers=["relu1_1", "relu2_1"],
                      style_layer_weights=[1.0, -5.0])
    StyleTransfer(arch="vgg16", vgg_weights="random", style_layers=["relu1_1", "relu2_1"],
                  style_layer_weights=[0.0, 2.0])  # a layer left out by its weight


@pytest.mark.parametrize("content_weight", [0.0, 1.0])
def test_an_empty_style_layer_list_with_a_style_weight_is_refused_in_one_line(content_weight):
    with pytest.raises(UserError, match="style_layers is empty: give at least one layer"):
        StyleTransfer(arch="vgg16", vgg_weights="random", content_layer="relu1_1", style_layers=[],
                      content_weight=content_weight)
    model = StyleTransfer(arch="vgg16", vgg_weights="random", content_layer="relu1_1", style_layers=[],
                          style_weight=0.0)  # the content alone, as style_weight 0 with the default layers
    assert model.layers == ["relu1_1"]


@pytest.mark.parametrize("saved, step, refused", [
    ((64, 96), 5, False),  # this run's size
    ((128, 128), 5, True),  # begun at another --data.size (and crop): not resized to this run's unasked
    ((96, 64), 5, True),  # the same pixels turned: another content image
    ((32, 48), 3, False),  # the pyramid's 32px level, its last iteration
    ((128, 128), 3, True),  # after the level's last iteration: its size named, not the next one's
    ((32, 48), 4, True),  # after 4 iterations the image has moved on to the full size
    ((32, 48), 0, False)])  # saved before the first iteration
def test_a_resume_of_an_image_of_another_size_is_refused_with_the_runs_config(saved, step, refused, tmp_path):
    model = StyleTransfer(arch="vgg16", vgg_weights="random", content_layer="relu1_1", style_layers=["relu1_1"],
                          pyramid=[[32, 3]])
    model._trainer = SimpleNamespace(datamodule=SimpleNamespace(content=torch.zeros(1, 3, 64, 96)), ckpt_path=None)
    checkpoint = {"state_dict": {"image": torch.zeros(1, 3, *saved)}, "global_step": step}
    if refused:
        size = "32x48" if step == 3 else "64x96"
        with pytest.raises(UserError, match=rf"the checkpoint's image is {saved[0]}x{saved[1]} px after iteration "
                                            rf"{step}, this run's would be {size} px.*resume with the run's own "
                                            r"config: its --data and --model.pyramid options$"):
            model.on_load_checkpoint(copy.deepcopy(checkpoint))
        run = tmp_path / "run"  # a run folder's checkpoint: the fix is the run's config.yaml, whole
        (run / "checkpoints").mkdir(parents=True)
        (run / "config.yaml").write_text("model: {}\n")
        model._trainer.ckpt_path = str(run / "checkpoints" / "last.ckpt")
        with pytest.raises(UserError, match=rf"own config: --config {run / 'config.yaml'} --ckpt_path "
                                            rf"{run / 'checkpoints' / 'last.ckpt'}$"):
            model.on_load_checkpoint(checkpoint)
    else:
        model.on_load_checkpoint(checkpoint)
        assert model.image.shape == (1, 3, *saved)


@pytest.mark.parametrize("stop_at, size, level", [(2, (48, 32), ", at the pyramid's 32px level"), (5, (60, 40), "")])
def test_ctrl_c_says_the_iteration_and_the_pyramid_level_it_stopped_at(stop_at, size, level, tmp_path, capsys,
                                                                     monkeypatch):
    """A 60 x 40 content image, its shorter side kept at 40 (no crop), with one pyramid level of edge 32 for three
    iterations: a Ctrl-C in the second iteration stops at that level (48 x 32) and says so, one in the fifth at the
    full size; the image is written as it is. Under ten iterations, a progress line each. The level was named by the
    image's width, 48px for this one."""
    rng = np.random.default_rng(4)
    for name, (height, width) in (("wide.png", (40, 60)), ("style.png", (40, 40))):
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(tmp_path / name)
    step = StyleTransfer.training_step

    def interrupted(self, batch, batch_idx):
        if self.global_step == stop_at - 1:  # a terminal's Ctrl-C during iteration stop_at
            os.kill(os.getpid(), signal.SIGINT)
        return step(self, batch, batch_idx)
    monkeypatch.setattr(StyleTransfer, "training_step", interrupted)
    with pytest.raises(SystemExit) as stop:
        stylize(content=str(tmp_path / "wide.png"), style=str(tmp_path / "style.png"), output=str(tmp_path / "out"),
                size=40, crop=False, pyramid=[[32, 3]], max_iter=6, vgg_weights="random", arch="vgg16",
                content_layer="relu1_1", style_layers=["relu1_1"], accelerator="cpu")
    printed = capsys.readouterr()
    assert stop.value.code == 130
    assert f"Stopped by Ctrl-C after iteration {stop_at} of --max_iter 6{level}\n" in printed.err
    assert [int(n) for n in re.findall(r"\bstep (\d+)/\d+ \|", printed.out)] == list(range(1, stop_at + 1))
    with Image.open(tmp_path / "out" / "wide.png") as image:
        assert image.size == size


def test_ctrl_c_in_the_first_shapes_batch_stops_the_command_and_names_the_images_not_begun(tmp_path, capsys,
                                                                                           monkeypatch):
    """Photos of two shapes run one shape after another: a Ctrl-C in the first writes that batch's image as it is
    and stops, the other photo not begun (not started after it). The seed's upper bound is taken."""
    rng = np.random.default_rng(5)
    for name, (height, width) in (("wide.png", (32, 48)), ("tall.png", (48, 32)), ("style.png", (32, 32))):
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(tmp_path / name)
    step = StyleTransfer.training_step

    def interrupted(self, batch, batch_idx):
        if self.global_step == 1:
            os.kill(os.getpid(), signal.SIGINT)
        return step(self, batch, batch_idx)
    monkeypatch.setattr(StyleTransfer, "training_step", interrupted)
    with pytest.raises(SystemExit) as stop:
        stylize(content=[str(tmp_path / "wide.png"), str(tmp_path / "tall.png")], style=str(tmp_path / "style.png"),
                output=str(tmp_path / "out"), size=32, crop=False, max_iter=4, vgg_weights="random", arch="vgg16",
                content_layer="relu1_1", style_layers=["relu1_1"], accelerator="cpu", seed=2**32 - 1)
    printed = capsys.readouterr()
    assert stop.value.code == 130
    assert "Stopped by Ctrl-C after iteration 2 of --max_iter 4; 1 image not begun\n" in printed.err
    assert f"Wrote {tmp_path / 'out' / 'wide.png'}\n" in printed.out
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["wide.png"]


def test_an_output_folder_given_as_content_is_refused_in_a_list_too_and_no_content_given_passes(tmp_path):
    """--content [photos, other.jpg] as --content photos: the results would join the photos; no --content (the
    shipped images) refuses nothing."""
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (40, 40)).save(photos / "me.jpg")
    Image.new("RGB", (40, 40)).save(tmp_path / "other.jpg")
    files, style = [photos / "me.jpg", tmp_path / "other.jpg"], [tmp_path / "style.jpg"]
    with pytest.raises(UserError, match=f"--output {photos} is a --content folder"):
        check_results_spare_inputs(str(photos), [str(photos), str(tmp_path / "other.jpg")], files, style)
    check_results_spare_inputs(str(tmp_path / "out"), [str(photos), str(tmp_path / "other.jpg")], files, style)
    check_results_spare_inputs(str(photos), None, [tmp_path / "other.jpg"], style)


def test_an_output_folder_given_as_style_is_refused_too(tmp_path, capsys):
    """--style styles/ --output styles/: the next run on that folder would blend this run's results into its style."""
    styles = tmp_path / "styles"
    styles.mkdir()
    Image.new("RGB", (40, 40), (200, 30, 30)).save(styles / "red.png")
    Image.new("RGB", (40, 40)).save(tmp_path / "me.png")
    from lightning_modules.commands import stylize as stylize_command
    with pytest.raises(SystemExit) as stop:
        stylize_command(["--content", str(tmp_path / "me.png"), "--style", str(styles), "--output", str(styles),
                         "--size", "32", "--max_iter", "1", "--vgg_weights", "random", "--accelerator", "cpu"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and f"--output {styles} is a --style folder" in err
    assert sorted(p.name for p in styles.iterdir()) == ["red.png"]  # nothing written there
    with pytest.raises(UserError, match=f"--output {styles} is a --style folder"):
        check_results_spare_inputs(str(styles), None, [tmp_path / "me.png"], [styles / "red.png"], [str(styles)])
    check_results_spare_inputs(str(tmp_path / "out"), None, [tmp_path / "me.png"], [styles / "red.png"], str(styles))


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



def test_neural_styles_comma_separated_lists_are_taken_as_lists_by_the_model_and_both_commands(tmp_path, capsys):
    """`-style_layers relu1_1,relu2_1` and `-style_blend_weights 3,1` (neural-style's form, which the README maps to
    these flags) were 'expected list, got ...'; one layer alone too."""
    model = StyleTransfer(vgg_weights="random", arch="vgg16", style_layers="relu1_2, relu2_2",
                          style_layer_weights="3,1", style_blend_weights="2")
    assert model.style_layers == ["relu1_2", "relu2_2"] and model.style_layer_weights == [3.0, 1.0]
    assert (model.hparams.style_layers, model.hparams.style_layer_weights, model.hparams.style_blend_weights) == (
        ["relu1_2", "relu2_2"], [3.0, 1.0], [2.0])  # saved as lists: the checkpoint's config reads back
    assert StyleTransfer(vgg_weights="random", arch="vgg16", style_layers="relu3_3").style_layers == ["relu3_3"]
    with pytest.raises(UserError, match=r"style_layer_weights '3,x': give numbers, as \[3, 1\] or 3,1"):
        StyleTransfer(vgg_weights="random", arch="vgg16", style_layers="relu1_2,relu2_2", style_layer_weights="3,x")
    content, style = make_style_images(tmp_path / "in")
    commands.stylize(["--content", str(content[0]), "--style", str(style), "--output", str(tmp_path / "out"),
                      "--size", "32", "--max_iter", "1", "--vgg_weights", "random", "--arch", "vgg16",
                      "--style_layers", "relu1_2,relu2_2", "--style_layer_weights", "3,1"])
    assert (tmp_path / "out" / "content0.png").is_file()
    with pytest.raises(SystemExit) as stop:  # one weight for two layers, counted from the comma form
        commands.stylize(["--content", str(content[0]), "--output", str(tmp_path / "out"), "--vgg_weights", "random",
                          "--arch", "vgg16", "--style_layers", "relu1_2,relu2_2", "--style_layer_weights", "3"])
    assert stop.value.code == 2
    assert "2 style_layers but 1 style_layer_weights" in capsys.readouterr().err


def test_a_list_option_given_twice_is_refused_not_cut_to_its_last(tmp_path, capsys, monkeypatch):
    """`--style a.jpg --style b.jpg` (argparse's append habit) ran with b.jpg alone: jsonargparse keeps the last."""
    import train
    from callbacks.errors import refuse_repeated_lists
    monkeypatch.setattr("sys.argv", ["/venv/bin/dl2-stylize"])
    with pytest.raises(SystemExit) as stop:
        commands.stylize(["--style", "a.jpg", "--style=b.jpg", "--output", str(tmp_path / "out")])
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip() == ("dl2-stylize: error: --style given twice: the second would replace "
                                               "the first; give them as one list, --style '[a, b]', or add to the "
                                               "first with --style+ b")
    with pytest.raises(UserError, match=r"--model.style_layers given twice"):
        train.main(["--system", "style", "--model.style_layers", "[relu1_2]", "--model.style_layers", "[relu2_2]"])
    refuse_repeated_lists(["--style", "a.jpg", "--style+", "b.jpg", "--content", "c.jpg", "--size", "32",
                           "--size", "64", "--data.style", "a.jpg"])  # an append, other flags, one each: taken
    assert not (tmp_path / "out").exists()


def test_stylize_keeps_each_photos_shape_by_default_one_shape_after_another(tmp_path, capsys):
    """A 4:3 photo came out as a square crop (the seed's --crop), where neural-style and pystiche keep the whole
    image; photos of several shapes were refused as one batch ('stylize them in separate runs'): each shape is now a
    fit of its own, and the names stay distinct over all of them (a.png and a.jpg)."""
    rng = np.random.default_rng(3)
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name, (height, width) in (("a.png", (40, 56)), ("a.jpg", (60, 44)), ("b.png", (80, 112))):
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(inputs / name)
    _, style = make_style_images(tmp_path / "style")
    out = tmp_path / "out"
    written = stylize(content=[str(inputs / n) for n in ("a.png", "a.jpg", "b.png")], style=str(style),
                      output=str(out), size=32, max_iter=2, vgg_weights="random", arch="vgg16",
                      content_layer="relu1_1", style_layers=["relu1_1"], accelerator="cpu")
    assert written == [out / "a_png.png", out / "b.png", out / "a_jpg.png"]  # a.png's shape's batch, then a.jpg's
    # the shorter side at 32, the aspect kept: 40x56 -> 32x45, 80x112 -> 32x45, 60x44 -> 44x32 (PIL's width, height)
    assert [Image.open(path).size for path in written] == [(45, 32), (45, 32), (32, 44)]
    assert capsys.readouterr().out.count("Wrote ") == 1
    # a side-by-side per shape, each of its own photos (the second replaced the first: both at step 2)
    grids = sorted(p.name for p in (out / "images").iterdir())
    assert grids == ["style_side_by_side_1-000002.png", "style_side_by_side_2-000002.png"]
    with Image.open(out / "images" / grids[0]) as first, Image.open(out / "images" / grids[1]) as second:
        assert first.size == (3 * 47 + 2, LABEL_HEIGHT + 2 * 34 + 2)  # two 32 x 45 photos, rows of three
        assert second.size == (3 * 34 + 2, LABEL_HEIGHT + 46 + 2)  # one 44 x 32 photo
