"""Style transfer's coarse-to-fine pyramid (Gatys et al. 2017; pystiche's ImagePyramid): the image at each level's
size, upsampled at a level's start with a fresh L-BFGS, and a resume across a level boundary."""

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from test_style_cli import job

import train
from callbacks import UserError
from datamodules import StyleTransferDataModule
from lightning_modules import StyleTransfer

pytestmark = pytest.mark.usefixtures("one_thread")


class Watch(L.Callback):
    """The image's shape after each iteration, the image after iteration 2, and the image and optimizer that
    iteration 3 starts from (its first backward, before its update)."""

    def __init__(self):
        self.shapes, self.after_two, self.start_three, self.optimizers = [], None, None, []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.shapes.append(tuple(pl_module.image.shape[-2:]))
        self.optimizers.append(trainer.optimizers[0])
        if trainer.global_step == 2:
            self.after_two = pl_module.image.detach().clone()

    def on_before_backward(self, trainer, pl_module, loss):
        if trainer.global_step == 2 and self.start_three is None:
            self.start_three = pl_module.image.detach().clone()
            self.optimizer_state = dict(trainer.optimizers[0].state)


def test_levels_run_at_their_size_and_the_next_starts_from_the_upsampled_image(style_images, tmp_path):
    content, style = style_images
    torch.manual_seed(0)
    model = StyleTransfer(arch="vgg16", vgg_weights="random", show_iter=0, pyramid=[[32, 2]])
    watch = Watch()
    trainer = L.Trainer(accelerator="cpu", max_steps=4, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                        callbacks=[watch])
    trainer.fit(model, datamodule=StyleTransferDataModule([str(content[0])], str(style), size=64))
    assert watch.shapes == [(32, 32), (32, 32), (64, 64), (64, 64)]
    upsampled = F.interpolate(watch.after_two, size=(64, 64), mode="bilinear", align_corners=False).clamp(0, 1)
    assert torch.allclose(watch.start_three, upsampled, atol=1e-6)
    assert watch.optimizers[1] is not watch.optimizers[2] and not watch.optimizer_state  # L-BFGS afresh
    assert trainer.optimizers[0].param_groups[0]["params"][0] is model.image
    assert model.image.shape == (1, 3, 64, 64)


def test_each_level_compares_with_content_and_style_scaled_by_its_factor(style_images, tmp_path):
    content, style = style_images
    torch.manual_seed(0)
    model = StyleTransfer(arch="vgg16", vgg_weights="random", show_iter=0, pyramid=[[32, 1]])
    data = StyleTransferDataModule([str(content[0])], str(style), size=64, style_scale=2.0)  # style 128px
    targets = []
    original = model.targets

    def spy(content_batch, style_batch):
        fresh = model._targets is None
        result = original(content_batch, style_batch)
        if fresh:
            targets.append((model.image.shape[-1], result))
        return result
    model.targets = spy
    L.Trainer(accelerator="cpu", max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, default_root_dir=tmp_path).fit(model, datamodule=data)
    assert [size for size, _ in targets] == [32, 64]
    (_, (content_32, grams_32)), (_, (content_64, grams_64)) = targets
    by_hand = model.features(F.interpolate(data.content, size=(32, 32), mode="bilinear", antialias=True).clamp(0, 1))
    assert torch.allclose(content_32, by_hand[model.content_layer], atol=1e-5)
    style_64 = F.interpolate(data.style, size=(64, 64), mode="bilinear", antialias=True).clamp(0, 1)  # 128 x 1/2
    from lightning_modules import gram
    assert torch.allclose(grams_32[0], gram(model.features(style_64)[model.style_layers[0]]), atol=1e-6)
    assert torch.allclose(content_64, model.features(data.content)[model.content_layer], atol=1e-5)


def test_a_resume_across_a_level_boundary_matches_an_uninterrupted_run(style_images, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    levels = ["--data.size", "64", "--model.pyramid", "[[32, 2]]"]
    train.main(job(style_images, straight, *levels, "--trainer.max_steps", "4"))
    train.main(job(style_images, split, *levels, "--trainer.max_steps", "2"))  # saved at the level's last step
    train.main(job(style_images, split, *levels, "--trainer.max_steps", "4", "--ckpt_path", "last"))

    def image(runs):
        (run_dir,) = runs.iterdir()
        return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]["image"]

    assert image(split).shape == (2, 3, 64, 64)
    assert torch.allclose(image(split), image(straight), atol=1e-5)


def test_a_run_that_ends_within_the_levels_warns(style_images, tmp_path):
    content, style = style_images
    model = StyleTransfer(arch="vgg16", vgg_weights="random", show_iter=0, pyramid=[[32, 4]], original_colors=True)
    with pytest.warns(UserWarning, match="leaving none of --trainer.max_steps 3 for the full size"):
        L.Trainer(accelerator="cpu", max_steps=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                  enable_model_summary=False, default_root_dir=tmp_path).fit(
            model, datamodule=StyleTransferDataModule([str(content[0])], str(style), size=64))
    assert model.image.shape[-2:] == (32, 32)
    assert Image.open(tmp_path / "stylized" / "content0.png").size == (32, 32)  # saved at the size it reached
    assert Image.open(tmp_path / "images" / "style_side_by_side-000003.png").size[1] > 32


@pytest.mark.parametrize("pyramid, max_steps, message", [
    ([[64, 2]], 4, "below the content's shorter side, 64px"),
    ([[48, 1], [32, 1]], 4, "increasing edges of at least 32px"),
    ([[16, 1]], 4, "increasing edges of at least 32px")])
def test_bad_pyramids_are_named(style_images, tmp_path, pyramid, max_steps, message):
    content, style = style_images
    with pytest.raises(UserError, match=message):
        model = StyleTransfer(arch="vgg16", vgg_weights="random", show_iter=0, pyramid=pyramid)
        L.Trainer(accelerator="cpu", max_steps=max_steps, logger=False, enable_checkpointing=False,
                  enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path).fit(
            model, datamodule=StyleTransferDataModule([str(content[0])], str(style), size=64))


def test_a_style_too_small_at_the_first_level_is_named(style_images, tmp_path):
    content, style = style_images
    model = StyleTransfer(arch="vgg16", vgg_weights="random", show_iter=0, pyramid=[[32, 1]])
    data = StyleTransferDataModule([str(content[0])], str(style), size=128, style_scale=0.25)  # a 32px style
    with pytest.raises(UserError, match="the style image comes to 8px"):
        L.Trainer(accelerator="cpu", max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                  enable_model_summary=False, default_root_dir=tmp_path).fit(model, datamodule=data)


def test_stylize_refuses_levels_that_take_every_iteration(tmp_path):
    from lightning_modules.stylize import stylize
    with pytest.raises(UserError, match="leaving none of --max_iter 2 for the full size"):
        stylize(max_iter=2, pyramid=[[32, 2]], vgg_weights="random", output=str(tmp_path), size=64)


def test_two_levels_of_a_wide_image_and_a_start_from_the_content(style_images, tmp_path, monkeypatch):
    _, style = style_images
    wide = tmp_path / "wide.png"
    pixels = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)  # 48 high, 64 wide
    Image.fromarray(pixels).save(wide)
    torch.manual_seed(0)
    model = StyleTransfer(arch="vgg16", vgg_weights="random", show_iter=0, init="content", pyramid=[[32, 1], [40, 1]])
    data = StyleTransferDataModule([str(wide)], str(style), size=48, crop=False)

    class Start(L.Callback):
        def on_train_start(self, trainer, pl_module):
            self.image = pl_module.image.detach().clone()

    import lightning_modules.style_transfer as style_transfer
    sizes, original = [], style_transfer.resized
    monkeypatch.setattr(style_transfer, "resized", lambda images, size: sizes.append(tuple(size)) or original(images,
                                                                                                            size))
    watch, start = Watch(), Start()
    trainer = L.Trainer(accelerator="cpu", max_steps=4, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                        callbacks=[watch, start])
    trainer.fit(model, datamodule=data)
    # the shorter side at each edge, the longer scaled alike: 64 x 32/48 = 42.7 -> 43, 64 x 40/48 = 53.3 -> 53
    assert watch.shapes == [(32, 43), (40, 53), (48, 64), (48, 64)]
    first, second, third, fourth = watch.optimizers
    assert first is not second and second is not third and third is fourth  # a fresh L-BFGS per level only
    content = torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255
    expected = F.interpolate(content, size=(32, 43), mode="bilinear", antialias=True).clamp(0, 1)
    assert torch.allclose(start.image, expected, atol=1e-5)  # init content: the content at the first level's size
    # per level: the content to the image's size, the style (48 x 64, matched to the content) by the same factor
    assert sizes == [(32, 43), (32, 43), (32, 43), (40, 53), (40, 53), (40, 53), (48, 64)]


def test_levels_taking_exactly_max_steps_warn(style_images, tmp_path):
    content, style = style_images
    model = StyleTransfer(arch="vgg16", vgg_weights="random", show_iter=0, pyramid=[[32, 2]])
    with pytest.warns(UserWarning, match="leaving none of --trainer.max_steps 2"):
        L.Trainer(accelerator="cpu", max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                  enable_model_summary=False, default_root_dir=tmp_path).fit(
            model, datamodule=StyleTransferDataModule([str(content[0])], str(style), size=64))
