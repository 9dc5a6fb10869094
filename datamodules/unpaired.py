"""Two unpaired image folders, as CycleGAN's datasets: <root>/trainA, trainB, testA, testB."""

import os
import warnings
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from lightning.pytorch.utilities import rank_zero_warn
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms.v2.functional import InterpolationMode, resize

from callbacks import UserError
from datamodules.augment import in_input_precision
from datamodules.cifar10 import check_batch_size, check_folder
from datamodules.decode import IMAGE_SUFFIXES, UnreadableImageError, image_name, image_tree, read_rgb
from datamodules.download import DownloadError, MissingDataError, download, prepare, unpack
from datamodules.workers import ResumableSampler, loader

FOLDERS = ("trainA", "trainB", "testA", "testB")
CYCLEGAN_URL = "https://efrosgans.eecs.berkeley.edu/cyclegan/datasets/{name}.zip"  # the reference's datasets
# sha256 of the reference's zips as TensorFlow Datasets publishes them (url_checksums/cycle_gan.txt, for their
# earlier address people.eecs.berkeley.edu/~taesung_park/CycleGAN/datasets/); the images per folder where known
PUBLISHED = {
    "horse2zebra": ("a74d9d392eecca9966b51287a76ca126af473d9de4f3e8fc0e9cda08fa1730a1", (1067, 1334, 120, 140)),
    "apple2orange": ("845a191e9af8926408ea597001cd03a452e3300a1f44a79fe329b3d59f6e3eb8", None),
    "summer2winter_yosemite": ("167fe1726807a9d22bd106b4a6c0bd7953b688af924ac1bf967439c4961e49f9", None),
    "monet2photo": ("88f91b00fc228f97c9411fbf1880ec1d119c98f1722e4cfcfaa2fb35fac05b04", None),
    "cezanne2photo": ("3a6c10ca21f9485862f1cbd707744b9dc258954a04631271d23a3605eeb63cff", None),
    "ukiyoe2photo": ("02a2a2fb5ecf425ca1bf86aca7304377da64a2a1d3b86df54eb65e4068bf3b08", None),
    "vangogh2photo": ("362c3473e70be0944bda08d49d660eafdc2854df55d697835b8186d1d79caaff", None),
}


def image_files(folder: Path, max_count: int | None = None) -> list[Path]:
    """The folder's images at all depths, sorted; the first max_count of them (the reference's max_dataset_size)."""
    if not folder.is_dir():
        raise MissingDataError(f"{folder} is missing; an unpaired dataset has trainA and trainB folders of images "
                               f"under --data.data_dir, and testA and testB for its validation and test if it has "
                               f"them (horse2zebra: downloaded into data/horse2zebra when that folder does not exist)")
    files = image_tree(folder)  # at all depths, as the reference's make_dataset
    if not files:
        raise MissingDataError(f"{folder} has no {'/'.join(sorted(IMAGE_SUFFIXES))} images; add them or point "
                               "--data.data_dir elsewhere")
    return files[:max_count]


def load_image(file: Path, size: int) -> Tensor:
    """uint8 (3, size, size): grayscale and RGBA files become RGB; squashed to a square as the reference."""
    image = read_rgb(file)
    if image.shape[-2:] != (size, size):
        image = resize(image, [size, size], InterpolationMode.BICUBIC, antialias=True)
    return image


def load_for_crop(file: Path, preprocess: str, load_size: int, crop_size: int) -> Tensor:
    """uint8 (3, H, W) to be cropped to crop_size, as the reference's --preprocess: resize_and_crop squashes to
    load_size x load_size; scale_width_and_crop scales to width load_size, keeping the aspect (height at least
    crop_size); crop keeps the file's size, which must be at least crop_size."""
    if preprocess == "resize_and_crop":
        return load_image(file, load_size)
    image = read_rgb(file)
    height, width = image.shape[-2:]
    if preprocess == "crop":
        if min(height, width) < crop_size:  # check_crop_sizes said so at setup, unless the file changed since
            raise too_small([f"{file} ({width}x{height})"], crop_size)
        return image
    size = [max(int(load_size * height / width), crop_size), load_size]  # scale_width_and_crop
    if list(image.shape[-2:]) != size:
        image = resize(image, size, InterpolationMode.BICUBIC, antialias=True)
    return image


def too_small(files: list[str], crop_size: int) -> UserError:
    listed = ", ".join(files[:3]) + (", ..." if len(files) > 3 else "")
    return UserError(f"{len(files)} training image{'s are' if len(files) > 1 else ' is'} smaller than crop_size "
                     f"{crop_size}, which --data.preprocess crop cuts from each image as it is: {listed}; lower "
                     f"--data.crop_size or use --data.preprocess resize_and_crop")


def check_crop_sizes(files: list[Path], crop_size: int) -> None:
    """--data.preprocess crop cuts crop_size squares from the files as they are: name those that are smaller (from
    their headers; an unreadable file is left to the loader, which skips it with a warning)."""
    small = []
    for file in files:
        try:
            with Image.open(file) as image:
                width, height = image.size
        except (OSError, ValueError):
            continue
        if min(width, height) < crop_size:
            small.append(f"{file} ({width}x{height})")
    if small:
        raise too_small(small, crop_size)


def load_readable(files: list[Path], index: int, load) -> Tensor:
    """load(files[index]), or of the next readable file after a warning naming each unreadable one (as
    ImageFiles)."""
    for k in range(len(files)):
        try:
            return load(files[(index + k) % len(files)])
        except UnreadableImageError as error:
            warnings.warn(f"skipped: {error}", stacklevel=1)
    raise MissingDataError(f"none of the {len(files)} images in {files[0].parent} can be read; check the folder")


def count_images(root: Path) -> tuple[int, ...]:
    return tuple(sum(image_name(f.name) for f in (root / folder).iterdir()) for folder in FOLDERS)


class UnpairedImages(Dataset):
    """The training set. Item i: A image i mod |A| with a B image drawn at random (the reference's unaligned
    dataset; with `serial`, B image i mod |B|); as long as the larger domain. Items are resized as `preprocess`
    says (`load_for_crop`), randomly cropped to crop_size and flipped. (Test and validation take each domain's
    images once instead: `DomainImages`.)

    Keys are (index, epoch) pairs from `EpochSampler`: every random choice comes from a generator seeded
    by (seed, epoch, index), so an item is the same whatever the worker, the process or a resume.
    """

    def __init__(self, files_a: list[Path], files_b: list[Path], load_size: int, crop_size: int, flip: bool,
                 seed: int = 0, preprocess: str = "resize_and_crop", serial: bool = False):
        self.files_a, self.files_b = files_a, files_b
        self.load_size, self.crop_size, self.flip, self.seed = load_size, crop_size, flip, seed
        self.preprocess, self.serial = preprocess, serial

    def load(self, file: Path) -> Tensor:
        return load_for_crop(file, self.preprocess, self.load_size, self.crop_size)

    def __len__(self) -> int:
        return max(len(self.files_a), len(self.files_b))

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Tensor, Tensor]:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        rng = np.random.default_rng([self.seed, epoch, index])
        b = int(rng.integers(len(self.files_b)))  # unpaired: B is drawn anew for every item
        if self.serial:
            b = index % len(self.files_b)
        return (self.augment(load_readable(self.files_a, index % len(self.files_a), self.load), rng),
                self.augment(load_readable(self.files_b, b, self.load), rng))

    def augment(self, image: Tensor, rng: np.random.Generator) -> Tensor:
        """Random crop_size crop, then a left-right flip with probability 1/2 (uint8 slicing: no resampling)."""
        top, left = (rng.integers(side - self.crop_size + 1) for side in image.shape[-2:])
        image = image[:, top:top + self.crop_size, left:left + self.crop_size]
        if self.flip and rng.random() < 0.5:
            image = image.flip(-1)
        return image.contiguous()


class DomainImages(Dataset):
    """One domain's images, each once, resized to size x size: the test and validation sets (CycleGAN's
    test/cycle_l1_* and val/fid)."""

    def __init__(self, files: list[Path], size: int):
        self.files, self.size = files, size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Tensor:
        return load_image(self.files[i], self.size)


class EpochSampler(ResumableSampler):
    """ResumableSampler whose keys carry the epoch (the crops, flips and B draws are drawn from it)."""

    def __iter__(self):
        return ((index, self.epoch) for index in super().__iter__())


class UnpairedImageDataModule(L.LightningDataModule):
    """CycleGAN's unpaired data: trainA/trainB for fit, testA/testB for test and validation; batches in [-1, 1].

    Args:
        data_dir: folder with trainA, trainB, testA, testB image folders (horse2zebra: data/horse2zebra). When it
            does not exist and is named after one of the reference's datasets (horse2zebra, apple2orange,
            monet2photo, ...), that zip is downloaded and unpacked there.
        batch_size: pairs per batch and process (the paper: 1).
        load_size: training images are first resized to load_size x load_size (the reference: 286).
        crop_size: then randomly cropped to crop_size (256); test images are resized to it. Multiple of 4.
        flip: random left-right flips of training images.
        preprocess: how training images come to crop_size, as the reference's --preprocess: resize_and_crop
            (squashed to load_size x load_size, then a random crop), scale_width_and_crop (width scaled to
            load_size keeping the aspect, then a random crop: for wide images such as Cityscapes'), crop (a random
            crop of the image as it is). Test and validation images are squashed to crop_size in all three.
        max_dataset_size: at most this many training images of each domain, the first in sorted order (null: all);
            testA and testB stay whole, so the test and val/fid compare with other runs (the reference's test.py
            limits them with its own --num_test).
        serial_batches: take A and B images in order (A image i with B image i mod |B|), no shuffle: the
            reference's --serial_batches. Off: A images shuffled, each with a B image drawn at random.
        num_workers: DataLoader worker processes decoding the images (at most the CPUs this process may use).
        seed: seed of the shuffle, the B draws, the crops and the flips.
        download: fetch the reference's zip when data_dir is missing. Verified by its published sha256 (where
            known), the CRC-32 of every member and, for horse2zebra, the official image counts.
        url: the zip to fetch; null: the reference's address for data_dir's name.
        verify_sha256: check the published sha256; false relies on the CRCs and counts alone (if the
            publisher ever re-packs the zip).
    """

    def __init__(self, data_dir: str = "data/horse2zebra", batch_size: int = 1, load_size: int = 286,
                 crop_size: int = 256, flip: bool = True,
                 preprocess: Literal["resize_and_crop", "scale_width_and_crop", "crop"] = "resize_and_crop",
                 max_dataset_size: int | None = None, serial_batches: bool = False, num_workers: int = 4,
                 seed: int = 0, download: bool = True, url: str | None = None, verify_sha256: bool = True):
        super().__init__()
        self.save_hyperparameters()
        self.prepare_data_per_node = True  # as CIFAR10DataModule: per node, and safe on a shared filesystem

    @property
    def root(self) -> Path:
        return Path(self.hparams.data_dir).expanduser()

    def check(self) -> None:
        """The values, checked when the data is first used rather than in __init__, where LightningCLI would bury
        the one-line message in a dump of every type it tried."""
        hp = self.hparams
        check_batch_size("batch_size", hp.batch_size, 1)
        if hp.crop_size % 4 or hp.crop_size < 32:
            raise UserError(f"crop_size must be a multiple of 4 and at least 32 (got {hp.crop_size}): the generator "
                            f"halves the size twice and the PatchGAN needs 32px; try --data.crop_size "
                            f"{max(32, 4 * ((hp.crop_size + 2) // 4))}")
        if hp.preprocess not in ("resize_and_crop", "scale_width_and_crop", "crop"):
            raise UserError(f"preprocess must be resize_and_crop, scale_width_and_crop or crop (got "
                            f"{hp.preprocess!r}); the reference's scale_width and none give images of other sizes "
                            f"than crop_size, which this module's batches and grids need")
        if hp.load_size < hp.crop_size and hp.preprocess != "crop":
            raise UserError(f"load_size {hp.load_size} is smaller than crop_size {hp.crop_size}; "
                            f"set --data.load_size to crop_size or more (the reference: 286 for 256)")
        if hp.max_dataset_size is not None:
            check_batch_size("max_dataset_size", hp.max_dataset_size, 1)

    def prepare_data(self) -> None:
        """Once per node: download the reference's zip when data_dir does not exist (never into a folder the
        user made: setup then names what is missing in it)."""
        hp, root = self.hparams, self.root
        self.check()
        check_folder(root)
        if root.exists() or not hp.download:
            return
        name = root.name
        if hp.url is None and name not in PUBLISHED:
            raise MissingDataError(f"no unpaired dataset at {root}; name the folder after one of the reference's "
                                   f"datasets to download it ({', '.join(PUBLISHED)}), pass --data.url, or put "
                                   f"{', '.join(FOLDERS)} image folders there")
        url = hp.url or CYCLEGAN_URL.format(name=name)
        sha256, counts = PUBLISHED.get(name, (None, None))

        def fill(tmp: Path) -> None:
            archive = tmp / f"{name}.zip"
            print(f"Downloading {url} to {root}")
            download(url, archive, sha256 if hp.verify_sha256 else None, "sha256", timeout=120)
            unpack(archive, tmp)  # checks every member's CRC-32
            archive.unlink()
            found = [d for d in (tmp, *tmp.iterdir()) if d.is_dir() and all((d / f).is_dir() for f in FOLDERS)]
            if not found:
                raise DownloadError(f"{url} has no {'/'.join(FOLDERS)} folders")
            if counts is not None and count_images(found[0]) != counts:
                raise DownloadError(f"{url} unpacked to {count_images(found[0])} images in {'/'.join(FOLDERS)}, "
                                    f"not the official {counts}")
            if found[0] == tmp:  # a zip of the four folders themselves (zip -r x.zip trainA trainB testA testB)
                (tmp / "unpacked").mkdir()
                for entry in [e for e in tmp.iterdir() if e.name != "unpacked"]:
                    os.replace(entry, tmp / "unpacked" / entry.name)
            else:
                os.replace(found[0], tmp / "unpacked")

        try:
            prepare(root, lambda target: all((target / f).is_dir() for f in FOLDERS), fill, member="unpacked")
        except DownloadError as error:
            raise MissingDataError(f"no {name} at {root} and {error}. Offline? Fetch {url} elsewhere and unzip it "
                                   f"into {root.parent}, or pass --data.data_dir") from None

    def setup(self, stage: str) -> None:
        hp, root = self.hparams, self.root
        self.check()
        check_folder(root)
        if stage == "fit":
            count = hp.max_dataset_size
            self.train_set = UnpairedImages(image_files(root / "trainA", count), image_files(root / "trainB", count),
                                            hp.load_size, hp.crop_size, hp.flip, hp.seed, hp.preprocess,
                                            hp.serial_batches)
            if hp.preprocess == "crop":  # now, from the files' headers, rather than hours in from a worker
                check_crop_sizes(self.train_set.files_a + self.train_set.files_b, hp.crop_size)
            try:  # training needs only trainA and trainB, as the reference's; say now what the test will lack
                self.domain_sets()
                self.has_test_data = True
            except MissingDataError as missing:
                self.has_test_data = False  # train.py skips its test after the fit
                rank_zero_warn(f"{missing}. Training goes on; the test after it is skipped")
        else:
            self.domain_sets()  # names a missing or empty testA/testB now rather than in the loop

    def domain_sets(self) -> list[DomainImages]:
        return [DomainImages(image_files(self.root / f"test{side}"), self.hparams.crop_size) for side in "AB"]

    def _loader(self, dataset: Dataset, sampler=None) -> DataLoader:
        return loader(dataset, self.hparams.batch_size, self.hparams.num_workers, persistent=True, sampler=sampler)

    def train_dataloader(self) -> DataLoader:
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        return self._loader(self.train_set, EpochSampler(self.train_set, world, rank, self.hparams.batch_size,
                                                         self.trainer, shuffle=not self.hparams.serial_batches,
                                                         seed=self.hparams.seed))

    def _domain_loaders(self) -> list[DataLoader]:
        """testA and testB at crop_size, each image once over all ranks: loader 0 is domain A, loader 1 domain B.

        A loader per domain, so that neither domain's images are repeated to pair them with the other's; and
        a share of the images per rank without Lightning's default DistributedSampler padding, which would
        count some twice. Lightning keeps this subclass of it as is; the ranks may differ by one batch, which
        evaluation (no gradient sync) allows.
        """
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        return [self._loader(images, UnrepeatedDistributedSampler(images, world, rank, shuffle=False))
                for images in self.domain_sets()]

    def test_dataloader(self) -> list[DataLoader]:
        """The two domain loaders: CycleGAN's test/cycle_l1_a is over testA, test/cycle_l1_b over testB."""
        return self._domain_loaders()

    def val_dataloader(self) -> list[DataLoader]:
        """The two domain loaders (CycleGAN's val/fid)."""
        return self._domain_loaders()

    def on_after_batch_transfer(self, batch, dataloader_idx):
        if isinstance(batch, Tensor):  # a test or validation batch: one domain
            return in_input_precision(self.trainer, batch.float() / 127.5 - 1)
        # uint8 [0, 255] -> [-1, 1]
        return in_input_precision(self.trainer, tuple(images.float() / 127.5 - 1 for images in batch))
