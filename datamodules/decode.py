"""Image files to uint8 (3, H, W) tensors with PIL, naming the file when it cannot be read.

torchvision's `read_file`/`decode_image` are deprecated since torchvision 0.29 (superseded by TorchCodec, a
video library that needs FFmpeg); PIL is already installed with torchvision, reads every format we take
(JPEG, PNG, WebP, BMP; grayscale, palette and RGBA become RGB) and decodes about as fast on a CPU
(benchmarks/data_decode.py; figures in BENCHMARKS.md).
"""

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from callbacks import UserError


class UnreadableImageError(UserError):
    """An image file that is empty, truncated or not an image; the message names it."""


def _to_tensor(image: Image.Image) -> Tensor:
    if image.mode != "RGB":
        image = image.convert("RGB")
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)  # np.array: a writable copy torch may own


def read_rgb(path: str | Path) -> Tensor:
    """uint8 (3, H, W) pixels of an image file; raises UnreadableImageError naming the file."""
    try:
        with Image.open(path) as image:
            return _to_tensor(image)  # convert() or np.array() decodes the whole file: truncation shows here
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise UnreadableImageError(f"cannot read image {path} ({error}); delete or replace the file "
                                   "(empty, truncated or not an image)") from None


def decode_rgb(data: bytes, name: str) -> Tensor:
    """uint8 (3, H, W) pixels of encoded image bytes (an LSUN lmdb value); `name` says where they came from."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return _to_tensor(image)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise UnreadableImageError(f"cannot decode image {name} ({error}); the database entry is damaged") from None
