"""StyleTransferDataModule: scale_match, crops, batches, the shipped defaults and bad paths."""

import numpy as np
import pytest
import torch
from PIL import Image

from datamodules import StyleTransferDataModule
from datamodules.style import DEFAULT_CONTENT, DEFAULT_STYLE, resize_crop, scale_match


def test_scale_match_covers_the_content_and_keeps_the_top_left():
    style = torch.zeros(3, 50, 100)  # 50 high, 100 wide: red left half, blue right half
    style[0, :, :50], style[2, :, 50:] = 1, 1
    matched = scale_match(style, 32, 32)
    # the seed: rat = max(32 / 50, 32 / 100) = 0.64 -> 32 x 64, then [:32, :32] is the red half
    assert matched.shape == (3, 32, 32)
    assert torch.allclose(matched[:, :, :30].mean((1, 2)), torch.tensor([1.0, 0.0, 0.0]), atol=1e-3)


def test_resize_crop_takes_the_central_square():
    image = torch.zeros(3, 40, 80)
    image[0, :, :16], image[1, :, 16:64], image[2, :, 64:] = 1, 1, 1  # red | green | blue
    cropped = resize_crop(image, 20, crop=True)  # 40x80 -> 20x40 (green 8..32) -> the central columns 10..30
    assert cropped.shape == (3, 20, 20)
    assert torch.allclose(cropped.mean((1, 2)), torch.tensor([0.0, 1.0, 0.0]), atol=1e-3)


def test_content_batch_and_matched_style(style_images):
    content, style = style_images
    data = StyleTransferDataModule([str(content[1]), str(content[0])], str(style), size=32)
    data.setup("fit")
    assert data.content.shape == (2, 3, 32, 32) and data.style.shape == (1, 3, 32, 32)
    assert data.content_names == ["content1", "content0"]
    first = np.asarray(Image.open(content[1]), dtype=np.float32) / 255
    assert torch.allclose(data.content[0], torch.from_numpy(first).permute(2, 0, 1), atol=1e-6)
    batches = iter(data.train_dataloader())
    assert all(torch.equal(next(batches)[0], data.content) for _ in range(3))  # the same batch every step


def test_a_folder_of_content_images_is_taken_in_name_order(style_images, tmp_path):
    content, style = style_images
    (tmp_path / "photos").mkdir()
    for name, source in (("b.png", content[0]), ("a.png", content[1])):
        (tmp_path / "photos" / name).write_bytes(source.read_bytes())
    data = StyleTransferDataModule([str(tmp_path / "photos")], str(style), size=32)
    data.setup("fit")
    assert data.content_names == ["a", "b"] and data.content.shape == (2, 3, 32, 32)


def test_content_images_of_one_name_in_two_folders_get_two_output_names(style_images, tmp_path):
    content, style = style_images
    for folder, source in (("c1", content[0]), ("c2", content[1])):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "x.png").write_bytes(source.read_bytes())
    data = StyleTransferDataModule([str(tmp_path / "c1"), str(tmp_path / "c2")], str(style), size=32)
    data.setup("fit")
    assert data.content_names == ["c1_x_png", "c2_x_png"]  # each names its result: stylized/<name>.png


def test_several_style_images_are_each_scaled_to_cover_the_content(style_images, tmp_path):
    """A list (or a folder) of style images: each as a single --data.style would give it, stacked."""
    content, style = style_images
    wide = tmp_path / "wide.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 100, 3), dtype=np.uint8)).save(wide)
    both = StyleTransferDataModule([str(content[0])], [str(style), str(wide)], size=32, style_scale=1.5)
    both.setup("fit")
    assert both.style.shape == (2, 3, 48, 48)
    for i, single in enumerate((style, wide)):
        alone = StyleTransferDataModule([str(content[0])], str(single), size=32, style_scale=1.5)
        alone.setup("fit")
        assert torch.equal(both.style[i], alone.style[0])


def test_shipped_defaults_are_small_and_load():
    assert DEFAULT_CONTENT.stat().st_size + DEFAULT_STYLE.stat().st_size < 300_000
    data = StyleTransferDataModule(size=64)
    data.setup("fit")
    assert data.content.shape == (1, 3, 64, 64) and data.content_names == ["kodim23_macaws"]


def test_missing_content_image_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"image .*absent.jpg not found.*--data.content"):
        StyleTransferDataModule([str(tmp_path / "absent.jpg")]).setup("fit")


def test_missing_style_image_names_the_path(style_images, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"absent.png not found.*--data.style"):
        StyleTransferDataModule([str(style_images[0][0])], str(tmp_path / "absent.png")).setup("fit")


def test_a_file_that_is_not_an_image_is_named(style_images, tmp_path):
    (tmp_path / "notes.jpg").write_text("not an image")
    with pytest.raises(ValueError, match="cannot read image .*notes.jpg"):
        StyleTransferDataModule([str(tmp_path / "notes.jpg")], str(style_images[1])).setup("fit")


@pytest.mark.parametrize("shape", [(32, 64), (64, 32)])  # wider, then taller, than the 32px square
def test_uncropped_images_of_different_shapes_cannot_batch(style_images, tmp_path, shape):
    Image.fromarray(np.zeros((*shape, 3), dtype=np.uint8)).save(tmp_path / "other.png")
    data = StyleTransferDataModule([str(style_images[0][0]), str(tmp_path / "other.png")], str(style_images[1]),
                                   size=32, crop=False)
    with pytest.raises(ValueError, match="different shapes.*--data.crop true"):
        data.setup("fit")


def test_resize_crop_of_a_tall_image_is_the_central_square_of_the_resized_image():
    image = torch.rand(3, 80, 40, generator=torch.Generator().manual_seed(0))
    resized = torch.nn.functional.interpolate(image[None], size=(40, 20), mode="bilinear", antialias=True)[0]
    expected = resized.clamp(0, 1)[:, 10:30, :]  # shorter side 40 -> 20: 40 x 20, rows 10..30 in the middle
    assert torch.allclose(resize_crop(image, 20, crop=True), expected, atol=1e-6)
    assert torch.allclose(resize_crop(image, 20, crop=False), resized.clamp(0, 1), atol=1e-6)


def test_a_size_vgg_cannot_take_is_refused_in_one_line():
    from callbacks import UserError
    with pytest.raises(UserError, match="--data.size must be at least 32 .*got 16.*--data.size 288"):
        StyleTransferDataModule(size=16).setup("fit")  # checked at setup: LightningCLI passes the message through


def test_the_repeated_batch_is_moved_to_the_training_device_once():
    """Lightning moves every step's batch to the device; the batch already there (the same tensors each step)
    costs no copy. The meta device stands in for a GPU."""
    from types import SimpleNamespace
    data = StyleTransferDataModule(size=32)
    data.setup("fit")
    data.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device("meta")))
    steps = iter(data.train_dataloader())
    (content, style), (content2, style2) = next(steps), next(steps)
    assert content.device.type == style.device.type == "meta"
    assert content is content2 and style is style2
    assert content.shape == data.content.shape and data.content.device.type == "cpu"  # the host copy is kept


@pytest.mark.parametrize("scale, shape", [(0.5, (32, 32)), (2.0, (128, 128))])
def test_style_scale_sizes_the_style_image_against_the_content(style_images, scale, shape):
    content, style = style_images
    data = StyleTransferDataModule([str(content[0])], str(style), size=64, style_scale=scale)
    data.setup("fit")
    pixels = torch.from_numpy(np.asarray(Image.open(style), dtype=np.float32) / 255).permute(2, 0, 1)  # 40 x 48
    height, width = shape
    rat = max(height / 40, width / 48)  # the seed's rule, at style_scale x the 64px content: cover it, keep top-left
    expected = torch.nn.functional.interpolate(pixels[None], size=(max(height, round(40 * rat)),
                                                                   max(width, round(48 * rat))),
                                               mode="bilinear", antialias=True)[0].clamp(0, 1)[:, :height, :width]
    assert data.content.shape == (1, 3, 64, 64) and data.style.shape == (1, 3, *shape)
    assert torch.allclose(data.style[0], expected, atol=1e-6)


def test_a_style_scale_below_32px_is_refused(style_images):
    content, style = style_images
    with pytest.raises(ValueError, match="style_scale 0.25 makes the style image smaller than 32px"):
        StyleTransferDataModule([str(content[0])], str(style), size=64, style_scale=0.25).setup("fit")


def test_a_white_image_stays_white_and_no_pixel_goes_above_1(tmp_path):
    """Pixels are in [0, 1] (read_image's promise, which the VGG's normalisation and the saved PNGs rely on); a
    resize's weights sum to 1 only up to float rounding, which can put a white pixel a little above 1."""
    for name, (height, width) in (("content.png", (37, 53)), ("style.png", (50, 100))):
        Image.fromarray(np.full((height, width, 3), 255, dtype=np.uint8)).save(tmp_path / name)
    data = StyleTransferDataModule(str(tmp_path / "content.png"), str(tmp_path / "style.png"), size=32)
    data.setup("fit")
    for images in (data.content, data.style):
        assert images.shape == (1, 3, 32, 32)
        assert images.max() <= 1 and torch.allclose(images, torch.ones_like(images), atol=1e-6)
