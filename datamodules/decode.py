"""Image files to uint8 (3, H, W) tensors with PIL, naming the file when it cannot be read.

torchvision's `read_file`/`decode_image` are deprecated since torchvision 0.29 (superseded by TorchCodec, a
video library that needs FFmpeg); PIL is already installed with torchvision, reads every format we take
(JPEG, PNG, WebP, BMP; grayscale, palette and RGBA become RGB) and decodes to the same pixels; its
Python-level header parsing makes it slower per file (benchmarks/data_decode.py; figures in BENCHMARKS.md).
A photo tagged with an EXIF orientation is turned upright, as viewers show it.
"""

import io
import os
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from callbacks import UserError


class UnreadableImageError(UserError):
    """An image file that is empty, truncated or not an image; the message names it."""


FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "PPM")  # only these are probed: 8% faster on CIFAR-sized files
# the files of those formats the data modules take (TIFF and PPM: the CycleGAN reference's folders may hold them)
ORIENTATION = 0x0112  # the EXIF tag cameras write instead of turning the pixels
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm"}


def hidden(name: str) -> bool:
    """A hidden file or folder, passed over as fastai does: Jupyter's .ipynb_checkpoints/ (copies of the images opened
    in a notebook: a class of their own, or each image twice), macOS's ._x.jpg (no image at all)."""
    return name.startswith(".")


def image_name(name: str) -> bool:
    """A file name the image folders take: a format read_rgb reads, not hidden."""
    return Path(name).suffix.lower() in IMAGE_SUFFIXES and not hidden(name)


def image_tree(root: Path) -> list[Path]:
    """The image files under `root` at all depths, sorted. Symlinked folders are followed, as torchvision's
    ImageFolder and fastai's get_image_files do (Path.rglob before Python 3.13 passed them over without a word); a
    link to a folder above it, which would be walked forever, is not."""
    files = []
    for folder, dirs, names in os.walk(root, followlinks=True):
        real = Path(folder).resolve()
        dirs[:] = [d for d in dirs if not hidden(d) and not real.is_relative_to(Path(folder, d).resolve())]
        files += [Path(folder, name) for name in names if image_name(name)]
    return sorted(file for file in files if file.is_file())


def image_files(paths: list[str], fix: str, recursive: bool = False) -> list[Path]:
    """Each path an image file or a folder of them, taken in path order (`recursive`: at all depths); a path that
    is not there, or a folder without images, is a MissingDataError ending with `fix`."""
    from datamodules.download import MissingDataError
    files = []
    for path in (Path(p).expanduser() for p in paths):  # ~/photos from a YAML config, where no shell expands it
        if path.is_dir():
            found = image_tree(path) if recursive else sorted(
                p for p in path.iterdir() if image_name(p.name) and p.is_file())
            if not found:
                raise MissingDataError(f"no {'/'.join(sorted(IMAGE_SUFFIXES))} images {'under' if recursive else 'in'} "
                                       f"{path}; {fix}")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise MissingDataError(f"image {path} not found; {fix}")
    return files



def output_names(files: list[Path]) -> list[str]:
    """A distinct name per file for what is written from it: the stem, where stems repeat the suffix too (a.jpg and
    a.png give a_jpg and a_png), then the folder's name (x/a.png, y/a.png give x_a_png, y_a_png), then a count."""
    names = [file.stem for file in files]
    for widen in (lambda f: f"{f.stem}_{f.suffix[1:].lower()}",
                  lambda f: f"{f.parent.name}_{f.stem}_{f.suffix[1:].lower()}"):
        counts = Counter(name.lower() for name in names)  # A.png and a.png are one file on macOS and Windows
        names = [widen(file) if counts[name.lower()] > 1 else name for file, name in zip(files, names, strict=True)]
    taken, seen, unique = {name.lower() for name in names}, set(), []
    for name in names:
        if name.lower() in seen:  # still the same: number the later ones
            name = next(f"{name}_{k}" for k in range(2, len(names) + 2) if f"{name}_{k}".lower() not in taken)
            taken.add(name.lower())
        seen.add(name.lower())
        unique.append(name)
    return unique


def _to_tensor(image: Image.Image) -> Tensor:
    if image.getexif().get(ORIENTATION, 1) != 1:  # a phone's portrait photo is stored on its side: show it upright
        image = ImageOps.exif_transpose(image)
    if image.mode.startswith("I;16") or (image.mode == "I" and (image.format in ("PNG", "PPM")
                                                                 or image.getextrema()[1] > 255)):
        # 16-bit grayscale (I;16, I;16B; a 16-bit PPM or TIFF opens as I): convert() would clip it at 255. A PPM or
        # PNG in mode I is 16-bit whatever its values (a dark one's all under 256); a TIFF's I may hold 8-bit values
        image = Image.fromarray((np.asarray(image, dtype=np.float64) / 257).round().clip(0, 255).astype(np.uint8))
    elif image.mode == "F":  # a float TIFF (scientific tools): 0..1 scaled (convert() gave black), 0..255 rounded
        scale = 255 if image.getextrema()[1] <= 1 else 1
        pixels = np.nan_to_num(np.asarray(image, dtype=np.float64) * scale)
        image = Image.fromarray(pixels.round().clip(0, 255).astype(np.uint8))
    if image.mode != "RGB":
        image = image.convert("RGB")
    width, height = image.size
    # tobytes() decodes the whole file (truncation shows here); bytearray: a writable copy torch may own,
    # 10% faster than np.array(image) on CIFAR-sized files
    return torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).view(height, width, 3).permute(2, 0, 1)


def read_rgb(path: str | Path) -> Tensor:
    """uint8 (3, H, W) pixels of an image file; raises UnreadableImageError naming the file."""
    try:
        with Image.open(path, formats=FORMATS) as image:
            return _to_tensor(image)
    except PermissionError:  # not a bad file: "delete or replace it" would lose a good image
        raise UnreadableImageError(f"cannot read image {path}: permission denied; give this user read access "
                                   "(chmod), or leave it out") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        if other := _other_format(path):
            raise UnreadableImageError(f"cannot read image {path}: {other} is not a format read here "
                                       f"({', '.join(FORMATS)}); convert the file, or delete it") from None
        raise UnreadableImageError(f"cannot read image {path} ({error}); delete or replace the file "
                                   "(empty, truncated or not an image)") from None


def _other_format(path: str | Path) -> str | None:
    """The format of an image file PIL reads but we do not take (GIF, ICO...), or None."""
    try:
        with Image.open(path) as image:
            return None if image.format in (*FORMATS, "MPO") else image.format  # MPO: a camera's JPEG, cut short
    except Exception:  # not an image in any format PIL knows: the caller says so
        return None


def decode_rgb(data: bytes, name: str) -> Tensor:
    """uint8 (3, H, W) pixels of encoded image bytes (an LSUN lmdb value); `name` says where they came from."""
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as image:
            return _to_tensor(image)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise UnreadableImageError(f"cannot decode image {name} ({error}); the database entry is damaged") from None
