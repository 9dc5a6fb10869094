"""`train.py --system style`, the stylize command (python -m lightning_modules.style_transfer), VGG16 weights."""

import contextlib
import io
import json
import urllib.error
import warnings
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
from conftest import make_style_images
from jsonargparse import CLI
from PIL import Image
from runs import only_run

import train
from callbacks.errors import UserError
from callbacks.images import LABEL_HEIGHT
from datamodules import StyleTransferDataModule
from lightning_modules import StyleTransfer, commands
from lightning_modules.nets.vgg import load_vgg, vgg_features
from lightning_modules.stylize import stylize

# tiny nets: threads only add contention
pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.xdist_group("test_style_cli")]


def job(style_images, runs, *extra):
    content, style = style_images
    return ["--system", "style", "--model.vgg_weights", "random", "--model.arch", "vgg16",
            "--data.content", json.dumps([str(c) for c in content]), "--data.style", str(style), "--data.size", "32",
            "--trainer.default_root_dir", str(runs), "--trainer.logger", "false",
            "--trainer.enable_progress_bar", "false", *extra]


@pytest.fixture(scope="module")
def job_run(tmp_path_factory):
    """One 3-iteration job with random weights, shared by the tests that look at what it wrote."""
    runs = tmp_path_factory.mktemp("runs")
    out, threads = io.StringIO(), torch.get_num_threads()
    torch.set_num_threads(1)  # module scope: set up before the one_thread fixture applies
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(out):
        warnings.simplefilter("always")
        train.main(job(make_style_images(tmp_path_factory.mktemp("style")), runs, "--trainer.max_steps", "3",
                       "--model.show_iter", "2"))
    torch.set_num_threads(threads)
    (run_dir,) = runs.iterdir()
    return SimpleNamespace(run_dir=run_dir, printed=out.getvalue(), warnings=[str(w.message) for w in caught])


def test_random_weights_say_the_result_is_not_art(job_run):
    assert any("result is not art" in w for w in job_run.warnings) and "result is not art" in job_run.printed


def test_job_writes_results_and_the_stylized_pngs(job_run):
    results = json.loads((job_run.run_dir / "results.json").read_text())
    assert results["global_step"] == 3 and results["test"] == {} and "train/loss" in results["final_metrics"]
    for name in ("content0", "content1"):
        assert Image.open(job_run.run_dir / "stylized" / f"{name}.png").size == (32, 32)
    assert (job_run.run_dir / "images" / "style_image-000002.png").is_file()  # every show_iter iterations
    # said where they are: the run ended at 'Results written to .../results.json', which does not name them
    assert (f"Wrote {job_run.run_dir / 'stylized' / 'content0.png'}, {job_run.run_dir / 'stylized' / 'content1.png'}"
            in job_run.printed.splitlines())


def test_job_writes_a_content_style_result_side_by_side(job_run):
    # two rows of content | style | result under their names, 32px tiles with make_grid's 2px padding
    grid = Image.open(job_run.run_dir / "images" / "style_side_by_side-000003.png")
    assert grid.size == (3 * 34 + 2, LABEL_HEIGHT + 2 * 34 + 2)


def test_checkpoint_holds_the_image_not_the_frozen_vgg(job_run):
    state = torch.load(job_run.run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert list(state["state_dict"]) == ["image"] and state["state_dict"]["image"].shape == (2, 3, 32, 32)


def test_load_from_checkpoint_restores_the_image_and_says_nothing_of_the_vgg_left_out(job_run):
    """The checkpoint leaves out the frozen VGG (its weights come from vgg_weights): Lightning's load_from_checkpoint
    listed its keys as missing in a warning of some 90 names."""
    path = job_run.run_dir / "checkpoints" / "last.ckpt"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = StyleTransfer.load_from_checkpoint(path, map_location="cpu")
    assert not [w for w in caught if "not in the checkpoint" in str(w.message) or "vgg." in str(w.message)]
    assert torch.equal(model.image, torch.load(path, weights_only=False)["state_dict"]["image"])


def test_lr_find_writes_its_plot_and_no_stylized_image(style_images, tmp_path):
    """The sweep's last image (each step at a larger lr) was written as the run's result, stylized/<name>.png."""
    runs = tmp_path / "runs"
    train.main(job(style_images, runs, "--lr_find", "--lr_find.num_training", "6"))
    run_dir = only_run(runs)
    assert (run_dir / "lr_find.png").is_file() and (run_dir / "lr_find.json").is_file()
    assert not (run_dir / "stylized").exists() and not list(run_dir.glob("images/*side_by_side*"))


def test_a_resume_refused_as_its_model_is_built_names_the_runs_config(style_images, tmp_path):
    """A run begun with --model.vgg_weights random (or a file), resumed with `--ckpt_path last` alone: the ImageNet
    weights it then asks for are refused in one line that did not say the run had others; the run's config does."""
    runs = tmp_path / "runs"
    args = job(style_images, runs, "--trainer.max_steps", "2", "--run_name", "r")
    train.main(args)
    config, last = runs / "r" / "config.yaml", runs / "r" / "checkpoints" / "last.ckpt"
    resume = [*args[:args.index("--run_name")], "--ckpt_path", "last", "--model.vgg_weights", str(tmp_path / "no.pth")]
    with pytest.raises(UserError, match=rf"--model.vgg_weights {tmp_path / 'no.pth'}: no such file; .*; this resumes "
                                        rf"{last}: to resume as the run began, give its config: python train.py "
                                        rf"--config {config} --ckpt_path {last}$"):
        train.main(resume)
    from callbacks.errors import user_message
    with pytest.raises(ValueError) as refused:  # the run's config given already: no hint
        train.main(["--config", str(config), *resume])
    assert user_message(refused.value).endswith("or 'random'")
    with pytest.raises(ValueError) as refused:  # no resume: no hint
        train.main([*args[:args.index("--run_name")], "--model.vgg_weights", str(tmp_path / "no.pth")])
    assert user_message(refused.value).endswith("or 'random'")


def test_a_refused_resume_leaves_the_run_and_its_wandb_run_as_they_were(style_images, tmp_path, monkeypatch):
    """A resume at another --data.size is refused as the checkpoint is restored, after Lightning reopened the run's
    W&B run: it left a config-resume-step2.yaml and a second offline W&B folder (which `wandb sync` would upload as
    a failed part of the run)."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    runs = tmp_path / "runs"
    args = [a for a in job(style_images, runs, "--trainer.max_steps", "2", "--run_name", "r")]
    at = args.index("--trainer.logger")
    del args[at:at + 2]  # the shipped config's W&B logger
    train.main(args)
    run_dir = runs / "r"
    before = sorted(p.relative_to(run_dir) for p in run_dir.rglob("*"))
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 1
    with pytest.raises(UserError, match="the checkpoint's image is 32x32 px after iteration 2"):
        train.main([*args, "--data.size", "48", "--trainer.max_steps", "3", "--ckpt_path", "last"])
    assert sorted(p.relative_to(run_dir) for p in run_dir.rglob("*")) == before
    train.main([*args, "--trainer.max_steps", "3", "--ckpt_path", "last"])  # the resume as the run began goes on
    assert (run_dir / "config-resume-step2.yaml").is_file() and len(list((run_dir / "wandb").glob("offline-*"))) == 2


def test_resumed_run_matches_an_uninterrupted_one(style_images, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    train.main(job(style_images, straight, "--trainer.max_steps", "3"))
    train.main(job(style_images, split, "--trainer.max_steps", "2"))  # one curvature pair in the checkpoint
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train.main(job(style_images, split, "--trainer.max_steps", "3", "--ckpt_path", "last"))
    assert not [w for w in caught if "options differ" in str(w.message)]  # the run's own options: nothing said

    def image(runs):
        (run_dir,) = runs.iterdir()
        return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]["image"]

    assert torch.allclose(image(split), image(straight), atol=1e-5)  # L-BFGS history restored, not restarted
    (run_dir,) = split.iterdir()
    results = json.loads((run_dir / "results.json").read_text())
    # an endless loader has no epochs (Lightning counted one more per resume); the iterations are the count
    assert results["epochs"] is None and results["epochs_completed"] is None and results["batches"] == 3


@pytest.mark.parametrize("given", [1, 3])
def test_a_resume_with_another_number_of_content_images_is_refused_and_keeps_the_checkpoint(style_images, tmp_path,
                                                                                              given):
    content, style = style_images  # two content images
    runs = tmp_path / "runs"
    train.main(job(style_images, runs, "--trainer.max_steps", "2"))
    (run_dir,) = runs.iterdir()
    last = run_dir / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    other = job(([*content, content[0]][:given], style), runs, "--trainer.max_steps", "4", "--ckpt_path", "last")
    with pytest.raises(train.UserError, match=rf"the checkpoint holds 2 images, this run has {given} content "
                                              rf"image{'s' * (given != 1)}; resume with the run's own --data.content"):
        train.main(other)
    assert last.read_bytes() == before  # not trained on (two images chasing one content) nor overwritten


def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_network(url, dst, *args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)


def test_without_weights_the_error_says_how_to_supply_them(style_images, tmp_path, monkeypatch):
    offline(monkeypatch, tmp_path)
    args = [a for a in job(style_images, tmp_path / "runs") if a != "random"]
    args.remove("--model.vgg_weights")
    with pytest.raises(ValueError, match=r"not in the torch cache .*vgg16-397923af.pth.*--model.vgg_weights PATH"):
        train.main(args)  # jsonargparse re-raises the FileNotFoundError as a ValueError with its message


def test_imagenet_weights_come_from_the_torch_cache(tmp_path, monkeypatch):
    offline(monkeypatch, tmp_path)
    torch.manual_seed(0)
    state = {f"features.{k}": v for k, v in vgg_features("vgg16").state_dict().items()}
    (tmp_path / "torch" / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(state, tmp_path / "torch" / "hub" / "checkpoints" / "vgg16-397923af.pth")
    assert torch.equal(load_vgg("vgg16", "imagenet")[28].weight, state["features.28.weight"])


def test_a_local_weights_file_is_loaded_and_a_wrong_one_named(tmp_path):
    torch.manual_seed(0)
    state = {f"features.{k}": v for k, v in vgg_features("vgg16").state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)  # torchvision's files carry the classifier too
    torch.save(state, tmp_path / "vgg16.pth")
    loaded = load_vgg("vgg16", str(tmp_path / "vgg16.pth"))
    assert torch.equal(loaded[0].weight, state["features.0.weight"])
    assert not any(p.requires_grad for p in loaded.parameters()) and not loaded.training  # frozen
    with pytest.raises(UserError, match="holds torchvision vgg16 weights, not vgg16_bn: .*--model.arch vgg16"):
        load_vgg("vgg16_bn", str(tmp_path / "vgg16.pth"))
    torch.save(vgg_features("vgg16_bn").state_dict(), tmp_path / "vgg16_bn.pth")
    with pytest.raises(UserError, match="holds torchvision vgg16_bn weights, not vgg16: .*--model.arch vgg16_bn"):
        load_vgg("vgg16", str(tmp_path / "vgg16_bn.pth"))
    vgg19 = vgg_features("vgg19").state_dict()
    torch.save(vgg19, tmp_path / "vgg19.pth")
    with pytest.raises(UserError, match="holds torchvision vgg19 weights, not vgg16: .*--model.arch vgg19"):
        load_vgg("vgg16", str(tmp_path / "vgg19.pth"))
    assert torch.equal(load_vgg("vgg19", str(tmp_path / "vgg19.pth"))[34].weight, vgg19["34.weight"])  # conv5_4
    torch.save(torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3)).state_dict(), tmp_path / "other_net.pth")
    (tmp_path / "notes.txt").write_text("not weights")
    torch.save([torch.zeros(1)], tmp_path / "a_list.pth")
    for name, problem in (("other_net.pth", "does not hold torchvision VGG weights"),
                          ("notes.txt", "is not a PyTorch weights file"),
                          ("a_list.pth", "holds a list, not a state dict")):
        with pytest.raises(UserError, match=problem):
            load_vgg("vgg16", str(tmp_path / name))
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_vgg("vgg16", str(tmp_path / "absent.pth"))


def test_stylize_command_writes_the_images(style_images, tmp_path):
    content, style = style_images
    CLI({"stylize": stylize}, args=["stylize", "--content", str(content[0]), "--style", str(style), "--output",
                                    str(tmp_path / "out"), "--size", "32", "--max_iter", "2", "--vgg_weights", "random",
                                    "--arch", "vgg16", "--accelerator", "cpu"])
    assert Image.open(tmp_path / "out" / "content0.png").size == (32, 32)
    assert list((tmp_path / "out" / "images").glob("style_side_by_side-*.png"))


def test_ctrl_c_ends_stylize_after_the_iteration_and_writes_the_images_as_they_are(style_images, tmp_path, capsys,
                                                                                  monkeypatch):
    """neural-style's users stop a run whose image looks done and keep its last save; here Ctrl-C wrote nothing (and
    exited 1 after Lightning's 'Detected KeyboardInterrupt')."""
    import os
    import signal
    content, style = style_images
    step, images, models = StyleTransfer.training_step, [], []

    def interrupted_at_the_third(self, batch, batch_idx):
        if self.global_step == 2:  # a terminal's Ctrl-C during the third iteration
            os.kill(os.getpid(), signal.SIGINT)
        images.append(self.image.detach().clone())
        models[:] = [self]
        return step(self, batch, batch_idx)
    monkeypatch.setattr(StyleTransfer, "training_step", interrupted_at_the_third)
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(SystemExit) as stop:
        commands.stylize(["--content", str(content[0]), "--style", str(style), "--output", str(tmp_path / "out"),
                         "--size", "32", "--max_iter", "10", "--vgg_weights", "random", "--arch", "vgg16",
                         "--accelerator", "cpu"])
    assert stop.value.code == 130 and signal.getsignal(signal.SIGINT) is before
    err = capsys.readouterr().err
    assert "Ctrl-C: stopping after this iteration" in err
    assert "Stopped by Ctrl-C after iteration 3 of --max_iter 10" in err
    # the image after the third iteration, the last to run (each step sees the image before its iteration)
    assert len(images) == 3
    after = models[0].image.detach()[0].clamp(0, 1)
    written = torch.from_numpy(np.array(Image.open(tmp_path / "out" / "content0.png"))).permute(2, 0, 1).float() / 255
    assert (written - after).abs().max() <= 0.5 / 255 + 1e-6 and (after - images[2][0].clamp(0, 1)).abs().max() > 0.01
    assert list((tmp_path / "out" / "images").glob("style_side_by_side-*.png"))


class CtrlCAt(L.Callback):
    """A terminal's Ctrl-C after the second iteration."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == 2:
            import os
            import signal
            os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_in_a_style_run_saves_last_ckpt_and_writes_the_images_as_they_are(style_images, tmp_path, capsys):
    """As dl2-stylize (above): train.py saved last.ckpt and wrote no image, the result the user stopped it for."""
    runs = tmp_path / "runs"
    with pytest.raises(SystemExit) as stop:
        train.main(job(style_images, runs, "--trainer.max_steps", "10", "--trainer.callbacks+=test_style_cli.CtrlCAt",
                       "--run_name", "stopped"))
    assert stop.value.code == 130
    run_dir = runs / "stopped"
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert saved["global_step"] == 2
    for i, name in enumerate(("content0", "content1")):  # the checkpoint's image, as an 8-bit PNG
        written = torch.from_numpy(np.array(Image.open(run_dir / "stylized" / f"{name}.png"))).permute(2, 0, 1) / 255
        assert (written - saved["state_dict"]["image"][i].clamp(0, 1)).abs().max() <= 0.5 / 255 + 1e-6
    out, err = capsys.readouterr()
    assert f"Wrote the images as they are after iteration 2 to {run_dir / 'stylized'}" in err
    assert "Wrote " not in out  # once, not also as at the end


def test_a_second_ctrl_c_stops_stylize_at_once_with_exit_130(style_images, tmp_path, capsys, monkeypatch):
    import os
    import signal
    content, style = style_images
    step = StyleTransfer.training_step

    def interrupted_twice(self, batch, batch_idx):
        if self.global_step == 1:
            os.kill(os.getpid(), signal.SIGINT)  # stop after this iteration
            os.kill(os.getpid(), signal.SIGINT)  # no: at once (Python's KeyboardInterrupt, Lightning's exit 1)
        return step(self, batch, batch_idx)
    monkeypatch.setattr(StyleTransfer, "training_step", interrupted_twice)
    try:
        with pytest.raises(SystemExit) as stop:
            commands.stylize(["--content", str(content[0]), "--style", str(style), "--output", str(tmp_path / "out"),
                             "--size", "32", "--max_iter", "10", "--vgg_weights", "random", "--arch", "vgg16",
                             "--accelerator", "cpu"])
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Lightning's path ignores Ctrl-C from then on
    err = capsys.readouterr().err
    assert stop.value.code == 130 and err.strip().endswith("Ctrl-C: stopped") and "Traceback" not in err
    assert not (tmp_path / "out" / "content0.png").exists()  # stopped at once: nothing written


def test_stylize_into_a_used_output_folder_names_the_results_it_did_not_write(style_images, tmp_path, capsys):
    # as dl2-wgan-generate and dl2-cyclegan-translate: the folder would pass for this run's results
    content, style = style_images
    args = ["--style", str(style), "--output", str(tmp_path / "out"), "--size", "32", "--max_iter", "1",
            "--vgg_weights", "random", "--arch", "vgg16", "--accelerator", "cpu"]
    commands.stylize(["--content", str(content[0]), *args])
    assert "note:" not in capsys.readouterr().err
    commands.stylize(["--content", str(content[1]), *args])
    assert (f"note: {tmp_path / 'out'} also holds 1 .png file this run did not write (e.g. "
            f"{content[0].stem}.png; from an earlier run?)") in capsys.readouterr().err


def test_stylize_refuses_a_content_folder_as_output_before_reading_the_weights(tmp_path, capsys):
    # the results would be read as content by the next run on the folder (me.jpg, then me.png and me_jpg.png...);
    # refused before the VGG weights are read (a path that is not there: the weights' error would come first)
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("RGB", (40, 40), (200, 30, 30)).save(folder / "me.jpg")
    for output in (folder, tmp_path / "." / "photos"):
        with pytest.raises(SystemExit) as stop:
            commands.stylize(["--content", str(folder), "--output", str(output), "--size", "32", "--max_iter", "1",
                              "--vgg_weights", str(tmp_path / "absent.pth"), "--accelerator", "cpu"])
        assert stop.value.code == 2 and (f"--output {output} is a --content folder: the results would be read as "
                                         "content images by the next run") in capsys.readouterr().err
    assert sorted(p.name for p in folder.iterdir()) == ["me.jpg"]


@pytest.mark.parametrize("output", ["content folder", "style folder"])
def test_stylize_refuses_an_output_folder_where_a_result_would_replace_an_input(style_images, tmp_path, capsys,
                                                                                  output):
    # the results are <output>/<content name>.png: into the folder of PNG inputs they would overwrite them
    content, style = style_images
    folder = content[0].parent
    inputs = {file: file.read_bytes() for file in folder.iterdir()}
    if output == "style folder":  # a content image named like the style file, from elsewhere
        other = tmp_path / "elsewhere" / style.name
        other.parent.mkdir()
        other.write_bytes(content[0].read_bytes())
        content = [other]
    with pytest.raises(SystemExit) as stop:
        commands.stylize(["--content", str(content[0]), "--style", str(style), "--output", str(folder), "--size",
                          "32", "--max_iter", "1", "--vgg_weights", "random", "--arch", "vgg16", "--accelerator",
                          "cpu"])
    result = folder / f"{content[0].stem}.png"
    assert stop.value.code == 2 and (f"--output {folder}: the result {result} would replace the input image of that "
                                     "name; give another --output folder") in capsys.readouterr().err
    assert {file: file.read_bytes() for file in folder.iterdir()} == inputs  # nothing written, nothing replaced


@pytest.mark.parametrize("device, expected", [("cpu", ("cpu", 1)), ("cuda", ("cuda", 1)), ("cuda:1", ("cuda", [1])),
                                              ("cuda:2", "--device cuda:2: this machine has no such device; it has "
                                                         "cpu, cuda, cuda:0, cuda:1")])
def test_stylize_device_picks_the_accelerator_and_the_gpu_as_the_other_commands(device, expected, style_images,
                                                                                 monkeypatch):
    """--device as dl2-classify's and dl2-cyclegan-translate's; cuda:1 is the second GPU, which --accelerator cannot
    pick. A stand-in Trainer records what it was given (two GPUs pretended)."""
    import lightning_modules.stylize as module
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    given = {}

    def trainer(**kwargs):
        given.update(kwargs)
        raise RuntimeError("stand-in trainer")

    monkeypatch.setattr(module.L, "Trainer", trainer)
    content, style = style_images
    args = ["--content", str(content[0]), "--style", str(style), "--vgg_weights", "random", "--arch", "vgg16",
            "--size", "32", "--device", device]
    options = {**dict(zip((a.removeprefix("--") for a in args[::2]), args[1::2], strict=True)), "size": 32}
    if isinstance(expected, str):
        with pytest.raises(UserError, match=expected):
            stylize(**options)
        return
    with pytest.raises(RuntimeError, match="stand-in trainer"):
        stylize(**options)
    assert (given["accelerator"], given["devices"]) == expected


def test_stylize_refuses_device_and_accelerator_together(style_images):
    with pytest.raises(UserError, match="--device cpu and --accelerator cpu: give one of them"):
        stylize(device="cpu", accelerator="cpu", vgg_weights="random")


def test_stylize_names_its_own_size_flag(style_images, tmp_path):
    content, style = style_images
    with pytest.raises(UserError, match=r"^--size must be at least 32 .*got 8.*try --size 288$"):
        stylize(content=str(content[0]), style=str(style), output=str(tmp_path / "out"), size=8, max_iter=1,
                vgg_weights="random")


def stub_setup(style_images, **trainer):
    """model.setup() against a stand-in trainer: the checks that need a GPU or several processes to reach."""
    content, style = style_images
    model = StyleTransfer(arch="vgg16", vgg_weights="random", style_weight=0.0)
    data = StyleTransferDataModule([str(content[0])], str(style), size=32)
    model.trainer = SimpleNamespace(**{"precision": "32-true", "world_size": 1, "max_steps": 5, "datamodule": data,
                                       "accumulate_grad_batches": 1, "strategy": SimpleNamespace(), **trainer})
    model.setup("fit")


def test_16_mixed_precision_is_refused_with_the_fix(style_images):
    with pytest.raises(ValueError, match="use --trainer.precision 32-true or bf16-mixed"):
        stub_setup(style_images, precision="16-mixed")  # on a CPU Lightning turns 16-mixed into bf16-mixed


def test_true_16_bit_precision_and_accumulation_are_refused_with_the_reason(style_images):
    for precision in ("bf16-true", "16-true"):
        with pytest.raises(ValueError, match=r"need more than 16-bit weights\); use --trainer.precision 32-true"):
            stub_setup(style_images, precision=precision)
    with pytest.raises(ValueError, match="accumulate_grad_batches 2: L-BFGS evaluates the loss itself"):
        stub_setup(style_images, accumulate_grad_batches=2)


def test_several_devices_are_refused_with_the_fix(style_images):
    with pytest.raises(ValueError, match="one device; give a batch of content images"):
        stub_setup(style_images, world_size=2)


def test_several_devices_are_refused_once_before_any_process_starts(style_images, tmp_path):
    """Refused in setup alone, each of the two processes DDP starts printed it (interleaved on one line). A real
    process: Lightning's launcher starts its second one from sys.argv."""
    from runs import assert_one_line_error
    from runs import run_cli_script as run_script
    result = run_script(job(style_images, tmp_path / "runs", "--trainer.accelerator", "cpu", "--trainer.devices", "2",
                            "--trainer.max_steps", "1"), tmp_path)
    assert_one_line_error(result, "style transfer optimizes one image tensor on one device")
    assert result.stderr.count("one image tensor") == 1 and "Starting with 2 processes" not in result.stdout
    assert not (tmp_path / "runs").exists()  # refused before the run folder is made (run.json, W&B, the lock)


def test_a_spawned_process_is_refused_in_one_line(style_images, tmp_path, capsys, monkeypatch):
    """ddp_spawn on one device ran the iterations in a spawned process, then stopped with torch's traceback (status 1)
    as Lightning loaded its weights into the main process's model: 'size mismatch for image'."""
    from conftest import run_in_process
    from runs import assert_one_line_error
    result = run_in_process(job(style_images, tmp_path / "runs", "--trainer.accelerator", "cpu", "--trainer.strategy",
                                "ddp_spawn", "--trainer.max_steps", "1"), capsys, monkeypatch)
    assert_one_line_error(result, "with start method spawn: style transfer runs in one process")
    assert not (tmp_path / "runs").exists()


def test_a_run_without_max_steps_is_refused(style_images):
    with pytest.raises(ValueError, match="set --trainer.max_steps"):
        stub_setup(style_images, max_steps=-1)


def test_bf16_mixed_runs_with_a_float32_image(style_images, tmp_path):
    content, style = style_images
    torch.manual_seed(0)
    model = StyleTransfer(arch="vgg16", vgg_weights="random", style_weight=0.0, show_iter=0)
    data = StyleTransferDataModule([str(content[0])], str(style), size=32)
    trainer = L.Trainer(accelerator="cpu", precision="bf16-mixed", max_steps=2, logger=False, default_root_dir=tmp_path,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, datamodule=data)
    loss = trainer.callback_metrics["train/loss"]
    assert trainer.global_step == 2 and model.image.dtype == torch.float32 and torch.isfinite(loss) and loss > 0


def test_init_from_is_refused_for_style_transfer(style_images, tmp_path, capsys, monkeypatch):
    """Its parameter is the image, optimized afresh each run: there are no trained weights to start from."""
    from conftest import run_in_process
    from runs import assert_one_line_error
    result = run_in_process(job(style_images, tmp_path / "runs", "--init_from", str(tmp_path / "a.ckpt"),
                                "--trainer.max_steps", "1"), capsys, monkeypatch)
    assert_one_line_error(result, "style transfer optimizes a new image from fixed VGG weights")
