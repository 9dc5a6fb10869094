"""Style transfer's options from Gatys et al. and jcjohnson/neural-style: average pooling, the total-variation term,
original colours; each against a computation written out here."""

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from test_style import MEAN, STD, fit

from callbacks import UserError
from callbacks.images import LABEL_HEIGHT
from datamodules import StyleTransferDataModule
from lightning_modules import StyleTransfer
from lightning_modules.nets.vgg import relu_layers, vgg_features
from lightning_modules.style_transfer import original_colors, total_variation

pytestmark = pytest.mark.usefixtures("one_thread")


def test_average_pooling_runs_the_same_layers_with_2x2_means():
    torch.manual_seed(0)
    model = StyleTransfer(arch="vgg16", vgg_weights="random", show_iter=0, pooling="avg", content_layer="relu3_1",
                          style_layers=["relu1_2", "relu3_1"])
    assert relu_layers(model.vgg) == {k: v for k, v in relu_layers(vgg_features("vgg16")).items() if v <= 11}
    x = torch.rand(1, 3, 32, 32)
    h = (x - MEAN) / STD
    for i, layer in enumerate(model.vgg):  # by hand: conv and ReLU layers as they are, F.avg_pool2d at the pools
        h = F.avg_pool2d(h, 2) if i in (4, 9) else layer(h)
        if i == 11:
            break
    assert torch.allclose(model.features(x)["relu3_1"], h, atol=1e-6)
    max_model = StyleTransfer(arch="vgg16", vgg_weights="random", show_iter=0, content_layer="relu3_1",
                              style_layers=["relu1_2"])
    max_model.vgg.load_state_dict(model.vgg.state_dict())
    assert not torch.allclose(max_model.features(x)["relu3_1"], h, atol=1e-3)  # max-pooling differs


def test_total_variation_is_the_mean_squared_neighbour_difference():
    image = torch.tensor([[[0.0, 1.0, 3.0], [2.0, 2.0, 2.0], [2.0, 0.0, 2.0]]])[None]  # (1, 1, 3, 3)
    vertical = ((2 - 0) ** 2 + (2 - 1) ** 2 + (2 - 3) ** 2 + 0 + (0 - 2) ** 2 + 0) / 6
    horizontal = ((1 - 0) ** 2 + (3 - 1) ** 2 + 0 + 0 + (0 - 2) ** 2 + (2 - 0) ** 2) / 6
    assert total_variation(image).tolist() == pytest.approx([vertical + horizontal])
    assert total_variation(torch.ones(2, 3, 5, 5)).tolist() == [0.0, 0.0]


class FirstLoss(L.Callback):
    """The start image and the loss the first iteration computed on it."""

    def on_train_start(self, trainer, pl_module):
        self.start = pl_module.image.detach().clone()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.loss = getattr(self, "loss", None) or outputs["loss"].item()


def test_tv_weight_adds_its_term_to_each_images_loss(style_images, tmp_path):
    content, style = style_images
    runs = {}
    for tv_weight in (0.0, 1e5):  # large: the term must show above float32 rounding of the ~3e5 loss
        torch.manual_seed(0)
        model = StyleTransfer(arch="vgg16", vgg_weights="random", show_iter=0, tv_weight=tv_weight)
        first = FirstLoss()
        trainer = L.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                            callbacks=[first])
        trainer.fit(model, datamodule=StyleTransferDataModule([str(c) for c in content], str(style), size=32))
        runs[tv_weight] = first
    plain, with_tv = runs[0.0], runs[1e5]
    assert torch.equal(plain.start, with_tv.start)  # the same seeded start, two images
    expected = 1e5 * total_variation(plain.start).sum().item()  # the step's loss is the sum over images
    assert expected > 0 and with_tv.loss - plain.loss == pytest.approx(expected, rel=1e-3)


def test_original_colors_keep_the_results_luminance_and_the_contents_colours():
    g = torch.Generator().manual_seed(0)
    result, content = 0.4 + 0.2 * torch.rand(2, 3, 8, 8, generator=g), 0.35 + 0.3 * torch.rand(2, 3, 8, 8, generator=g)
    out = original_colors(result, content)
    assert 0 < out.min() and out.max() < 1  # nothing clamped: the identities below are exact

    def yuv(x):  # BT.601, written out
        r, g_, b = x.unbind(1)
        return (0.299 * r + 0.587 * g_ + 0.114 * b, -0.14713 * r - 0.28886 * g_ + 0.436 * b,
                0.615 * r - 0.51499 * g_ - 0.10001 * b)
    (y_out, u_out, v_out), (y_res, _, _), (_, u_con, v_con) = yuv(out), yuv(result), yuv(content)
    assert torch.allclose(y_out, y_res, atol=1e-5) and torch.allclose(u_out, u_con, atol=1e-5)
    assert torch.allclose(v_out, v_con, atol=1e-5)


def test_original_colors_change_the_saved_result_only(style_images, tmp_path):
    content, style = style_images
    torch.manual_seed(0)
    model = StyleTransfer(arch="vgg16", vgg_weights="random", show_iter=0, original_colors=True)
    data = StyleTransferDataModule([str(content[0])], str(style), size=32)
    fit(model, data, 2, tmp_path)
    saved = torch.from_numpy(np.asarray(Image.open(tmp_path / "stylized" / "content0.png"), dtype=np.float32) / 255)
    expected = original_colors(model.image.detach().clamp(0, 1), data.content)[0].permute(1, 2, 0)
    assert (saved - expected).abs().max() <= 1 / 255 + 1e-6
    assert not torch.allclose(model.image.detach().clamp(0, 1)[0].permute(1, 2, 0), expected, atol=0.05)


def test_original_colors_clamp_what_falls_outside_the_rgb_cube():
    result, content = torch.full((1, 3, 2, 2), 0.95), torch.zeros(1, 3, 2, 2)
    content[:, 0] = 1.0  # pure red: strong chrominance on a bright luminance leaves the cube
    out = original_colors(result, content)
    y = 0.95  # the result's luminance; the content's U and V (BT.601, written out)
    u, v = -0.14713, 0.615
    unclamped = torch.tensor([y + 1.13983 * v, y - 0.39465 * u - 0.58060 * v, y + 2.03211 * u])
    assert unclamped.max() > 1  # red: 1.65
    assert torch.allclose(out[0, :, 0, 0], unclamped.clamp(0, 1), atol=2e-4)


def test_the_side_by_side_shows_content_the_style_at_the_contents_size_and_the_result(style_images, tmp_path):
    content, style = style_images
    torch.manual_seed(0)
    model = StyleTransfer(arch="vgg16", vgg_weights="random", show_iter=0)
    data = StyleTransferDataModule([str(c) for c in content], str(style), size=32, style_scale=2.0)  # style 64px
    fit(model, data, 2, tmp_path)
    grid = torch.from_numpy(np.asarray(Image.open(tmp_path / "images" / "style_side_by_side-000002.png"),
                                       dtype=np.float32) / 255).permute(2, 0, 1)[:, LABEL_HEIGHT:]  # names above
    assert grid.shape == (3, 2 + 2 * 34, 2 + 3 * 34)  # make_grid: 2 rows (images) of 3, 2px padding
    shown_style = F.interpolate(data.style, size=(32, 32), mode="bilinear", antialias=True).clamp(0, 1)[0]
    for row in range(2):
        top = 2 + row * 34
        cells = [grid[:, top:top + 32, 2 + column * 34:2 + column * 34 + 32] for column in range(3)]
        expected = [data.content[row], shown_style, model.image.detach()[row].clamp(0, 1)]
        for cell, image in zip(cells, expected, strict=True):
            assert (cell - image).abs().max() <= 1 / 255 + 1e-6
    with torch.no_grad():
        model.image[:, :, :4, :4] = 1.7  # L-BFGS may leave [0, 1]: results are shown and saved clamped
    model.on_train_end()
    saved = np.asarray(Image.open(tmp_path / "stylized" / "content0.png"))
    assert (saved[:4, :4] == 255).all()


def test_several_styles_blend_their_gram_matrices_by_the_given_weights(style_images, tmp_path):
    """neural-style's -style_blend_weights: the target Gram of each layer is the weighted mean of the style images'."""
    content, style = style_images
    other = tmp_path / "other.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(other)
    torch.manual_seed(0)
    model = StyleTransfer(arch="vgg16", vgg_weights="random", show_iter=0, content_layer="relu2_1",
                          style_layers=["relu1_1", "relu2_1"], style_blend_weights=[3.0, 1.0])
    data = StyleTransferDataModule([str(content[0])], [str(style), str(other)], size=32)
    fit(model, data, 1, tmp_path)  # through the training step: the targets it optimized against
    _, grams = model.targets(data.content, data.style)
    for layer, target in zip(["relu1_1", "relu2_1"], grams, strict=True):
        by_hand = []
        for image in data.style:
            f = model.features(image[None])[layer][0]  # (C, H, W)
            flat = f.reshape(f.shape[0], -1)
            by_hand.append(flat @ flat.T / f.numel())
        assert target.shape == (1, *by_hand[0].shape)
        assert torch.allclose(target[0], (3 * by_hand[0] + by_hand[1]) / 4, rtol=1e-5, atol=1e-8)
        assert not torch.allclose(target[0], (by_hand[0] + by_hand[1]) / 2, rtol=1e-3)  # the weights count
    torch.manual_seed(0)
    even = StyleTransfer(arch="vgg16", vgg_weights="random", show_iter=0, content_layer="relu2_1",
                         style_layers=["relu1_1"])  # no weights given: the plain mean
    fit(even, data, 1, tmp_path / "even")
    f = [even.features(image[None])["relu1_1"][0].flatten(1) for image in data.style]
    assert torch.allclose(even.targets(data.content, data.style)[1][0][0],
                          sum(x @ x.T / x.numel() for x in f) / 2, rtol=1e-5, atol=1e-8)


def test_blend_weights_are_one_per_style_image_and_not_negative(style_images, tmp_path):
    content, style = style_images
    with pytest.raises(UserError, match="style_blend_weights must be 0 or more, not all 0"):
        StyleTransfer(arch="vgg16", vgg_weights="random", style_blend_weights=[1.0, -1.0])
    with pytest.raises(UserError, match="style_blend_weights must be 0 or more, not all 0"):
        StyleTransfer(arch="vgg16", vgg_weights="random", style_blend_weights=[0.0, 0.0])
    model = StyleTransfer(arch="vgg16", vgg_weights="random", show_iter=0, style_blend_weights=[1.0, 2.0])
    data = StyleTransferDataModule([str(content[0])], [str(style)], size=32)
    with pytest.raises(UserError, match="style_blend_weights has 2 weights for 1 style image; give one per"):
        fit(model, data, 1, tmp_path)
