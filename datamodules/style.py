"""Content and style images for style transfer, the style resized to cover the content (DL2 2018 lesson 13)."""

from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor

from callbacks import UserError
from datamodules.decode import image_files, output_names, read_rgb

STYLE_IMAGES = Path(__file__).resolve().parent / "style_images"  # the shipped defaults; credits in README
DEFAULT_CONTENT = STYLE_IMAGES / "kodim23_macaws.jpg"
DEFAULT_STYLE = STYLE_IMAGES / "starry_night.jpg"


def read_image(path: Path) -> Tensor:
    """(3, H, W) float pixels in [0, 1]; an unreadable file is named (UnreadableImageError)."""
    return read_rgb(path).float() / 255


def resize(image: Tensor, height: int, width: int) -> Tensor:
    return F.interpolate(image[None], size=(height, width), mode="bilinear", antialias=True,
                         align_corners=False)[0].clamp(0, 1)


def shorter_side_to(height: int, width: int, size: int) -> tuple[int, int]:
    """The (height, width) an image of that shape is resized to for its shorter side to be `size`."""
    rat = size / min(height, width)
    return max(size, round(height * rat)), max(size, round(width * rat))


def resize_crop(image: Tensor, size: int, crop: bool) -> Tensor:
    """Shorter side to `size`; then the central size x size square when `crop` (the seed's val_tfms)."""
    image = resize(image, *shorter_side_to(*image.shape[1:], size))
    if not crop:
        return image
    top, left = (image.shape[1] - size) // 2, (image.shape[2] - size) // 2
    return image[:, top:top + size, left:left + size]


def scale_match(style: Tensor, height: int, width: int) -> Tensor:
    """The seed's scale_match: scale the style until it covers height x width, keep its top-left corner."""
    sh, sw = style.shape[1:]
    rat = max(height / sh, width / sw)
    return resize(style, max(height, round(sh * rat)), max(width, round(sw * rat)))[:, :height, :width]


class RepeatBatch:
    """The same (content, style) batch forever: each trainer step is one L-BFGS iteration on it."""

    def __init__(self, content: Tensor, style: Tensor):
        self.content, self.style = content, style

    def __iter__(self):
        while True:
            yield self.content, self.style


class StyleTransferDataModule(L.LightningDataModule):
    """Content images stylized as one batch, with the style image(s) scale-matched to them.

    Args:
        content: a content image file or folder of them, or a list of those; null: the shipped Kodak macaws
            (kodim23).
        style: the style image, or a list of them (or a folder) whose Gram matrices are blended
            (--model.style_blend_weights); null: the shipped Starry Night (Van Gogh, 1889).
        size: content images are resized so their shorter side is `size` (the seed: 288).
        crop: then cut to the central size x size square, as the seed's val_tfms did. Without it the
            whole image is kept, and all content images must come out the same shape to form a batch.
        style_scale: the style image is scaled to cover style_scale times the content's height and width (the
            seed: 1, the same size); below 1 its strokes and patterns come out smaller in the result, above 1 larger:
            VGG's filters see a fixed number of pixels, so a stroke keeps its pixel size (jcjohnson/neural-style's
            -style_scale). The style loss compares Gram matrices, which do not
            depend on the image size.
    """

    def __init__(self, content: list[str] | str | None = None, style: list[str] | str | None = None, size: int = 288,
                 crop: bool = True, style_scale: float = 1.0):
        super().__init__()
        self.save_hyperparameters()

    def content_files(self) -> list[Path]:
        content = str(DEFAULT_CONTENT) if self.hparams.content is None else self.hparams.content
        return image_files([content] if isinstance(content, str) else content,
                           "give existing image files or folders as --data.content [a.jpg, b.png]")

    def style_files(self) -> list[Path]:
        style = str(DEFAULT_STYLE) if self.hparams.style is None else self.hparams.style
        return image_files([style] if isinstance(style, str) else style,
                           "give an existing image file as --data.style s.jpg (or several: [a.jpg, b.jpg])")

    def setup(self, stage: str) -> None:
        if hasattr(self, "content"):
            return
        hp = self.hparams
        if hp.size < 32:
            raise UserError(f"--data.size must be at least 32 (VGG16 pools 5 times; got {hp.size}); try --data.size "
                            "288")
        if hp.style_scale * hp.size < 32:
            raise UserError(f"style_scale {hp.style_scale} makes the style image smaller than 32px at size {hp.size} "
                            "(VGG16 pools 5 times); raise --data.style_scale (1: the content's size)")
        files = self.content_files()
        images = [resize_crop(read_image(f), hp.size, hp.crop) for f in files]
        shapes = {tuple(im.shape[1:]) for im in images}
        if len(shapes) > 1:
            raise UserError(f"content images come out in different shapes {sorted(shapes)} and cannot form one "
                            "batch; use --data.crop true (size x size squares) or stylize them in separate runs")
        self.content = torch.stack(images)  # (N, 3, H, W)
        self.content_names = output_names(files)  # the stems, made distinct: each names an output file
        style_files = self.style_files()
        height, width = (max(1, round(hp.style_scale * side)) for side in self.content.shape[2:])
        # (S, 3, H, W) x style_scale: each style image scaled on its own to cover the same size
        self.style = torch.stack([scale_match(read_image(f), height, width) for f in style_files])

    def train_dataloader(self):
        content, style = self.content, self.style
        if self.trainer is not None:  # moved once: Lightning's per-step transfer then finds them there (16 content
            device = self.trainer.strategy.root_device  # images at 512 px are 50 MB, a copy at every iteration)
            content, style = content.to(device), style.to(device)
        return RepeatBatch(content, style)
