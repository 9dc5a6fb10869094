"""Unlabeled images for GANs: a folder tree, the seed's CSV file list, or an LSUN lmdb database.

The seed (DL2 2018 lesson 12, wgan) wrote every LSUN bedroom path into a CSV, kept a random 10% for
quick runs, and read it with fastai's `from_csv` at 64px with `inception_stats` (mean = std = 0.5, so
pixels land in [-1, 1], the generator's tanh range). LSUN itself ships as an lmdb database of WebP
images keyed by id (`bedroom_train_lmdb/data.mdb`); it is read here directly, without exporting files.
"""

import copy
import csv
import os
import random
import warnings
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from torch.utils.data import Dataset, Subset
from torchvision.transforms.v2 import functional as TF

from callbacks import UserError
from datamodules.augment import in_input_precision
from datamodules.cifar10 import (
    CIFAR10_MD5,
    CIFAR10_URL,
    TensorBatches,
    check_batch_size,
    check_folder,
    find_batches,
    load_batches,
    prepare_cifar10,
)
from datamodules.decode import IMAGE_SUFFIXES, UnreadableImageError, decode_rgb, image_tree, read_rgb
from datamodules.download import MissingDataError
from datamodules.workers import ResumableSampler, loader

LSUN_URL = "http://dl.yf.io/lsun/scenes/{name}.zip"  # the LSUN authors' server (43 GB for bedroom_train_lmdb)


def square(image: Tensor, isize: int, random_crop: bool = False) -> Tensor:
    """uint8 (3, H, W) -> (3, isize, isize): the shorter side resized to isize, then an isize square cropped,
    at a random place along the longer side (the seed's fastai CropType.RANDOM) or in the centre."""
    if min(image.shape[-2:]) != isize:
        image = TF.resize(image, isize, antialias=True)
    if not random_crop:
        return TF.center_crop(image, isize)
    top = int(torch.randint(image.shape[-2] - isize + 1, ()))
    left = int(torch.randint(image.shape[-1] - isize + 1, ()))
    return image[:, top:top + isize, left:left + isize]


def folder_files(root: Path) -> list[Path]:
    return image_tree(root)


def csv_files(csv_file: Path, root: Path, skip_header: bool) -> list[Path]:
    """The seed's list: one `relative/path.jpg,label` row per image, paths relative to `root`."""
    if not csv_file.is_file():
        raise MissingDataError(f"no file list at {csv_file} (--data.csv_file); write one with `python -m "
                               f"datamodules.image_folder {root} {csv_file}`, or pass --data.csv_file null to read "
                               f"every image under {root}")
    with open(csv_file, newline="") as f:
        rows = list(csv.reader(f))[1 if skip_header else 0:]
    files = [root / row[0] for row in rows if row]
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise MissingDataError(f"{len(missing)} files listed in {csv_file} are missing, e.g. {missing[0]}; "
                               f"the paths are read relative to --data.data_dir ({root})")
    return files


def write_file_list(root: str, csv_file: str, fraction: float = 1.0, seed: int = 0) -> int:
    """Write the seed's CSV of the images under `root` (`path,0` rows), keeping a random `fraction`.

    Args:
        root: the image folder; the CSV's paths are relative to it (pass it as --data.data_dir).
        csv_file: the CSV to write (--data.csv_file).
        fraction: the share of images kept, each independently at random (the seed: 0.1).
        seed: random seed.
    """
    files = folder_files(Path(root))
    if not files:
        raise MissingDataError(f"no {'/'.join(sorted(IMAGE_SUFFIXES))} images under {root}; give the image folder "
                               "as the first argument")
    rng = random.Random(seed)
    kept = [f for f in files if rng.random() < fraction]
    with open(csv_file, "w", newline="") as f:
        csv.writer(f).writerows([str(p.relative_to(root)), 0] for p in kept)
    print(f"{len(kept)} of {len(files)} images listed in {csv_file}")
    return len(kept)


HELD_OUT_SPLITS = ("test", "val", "valid", "validation")


def warn_split_folders(root: Path) -> None:
    """A dataset's root with its train/ and test/ folders (CIFAR-10's, data/cifar10) as the GAN's training images
    trains on the held-out split too, and an FID against that split then measures images the GAN was trained on; the
    WassersteinGAN reference's `--dataset cifar10` reads the training split alone. A warning: it may be meant."""
    held_out = [name for name in HELD_OUT_SPLITS if (root / name).is_dir()]
    if (root / "train").is_dir() and held_out:
        rank_zero_warn(f"{root} holds the split folders train/ and {'/, '.join(held_out)}/: the GAN trains on all of "
                      f"them; give --data.data_dir {root / 'train'} to train on the training split alone (as the "
                      f"WassersteinGAN reference's --dataset cifar10 does)")


class ImageFiles(Dataset):
    """Decodes one image file and squares it to isize; uint8 (3, isize, isize).

    An unreadable file (empty, truncated, not an image) is skipped with a warning naming it, and the next
    readable file takes its place: checking every file at setup would cost a full decoding pass (CIFAR-10's
    JPEGs: 48 s on a 2-core CPU, LSUN's 10% sample: many minutes; BENCHMARKS.md), and one bad file in 300,000
    should not end a run.
    """

    def __init__(self, files: list[Path], isize: int, random_crop: bool = False):
        self.files, self.isize, self.random_crop = files, isize, random_crop

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Tensor:
        for k in range(len(self.files)):
            try:
                return square(read_rgb(self.files[(i + k) % len(self.files)]), self.isize, self.random_crop)
            except UnreadableImageError as error:
                warnings.warn(f"skipped: {error}", stacklevel=1)
        raise UserError(f"none of the {len(self.files)} images under --data.data_dir can be read; "
                        "check the folder (see the warnings above)")


class ReadableImageFiles(ImageFiles):
    """ImageFiles for statistics, in which each image counts once (val/fid's and the fid command's real images, the
    in-memory copy): item i is a batch of file i alone, (1, 3, isize, isize), or of nothing, (0, 3, isize, isize),
    when the file is unreadable (a warning names it); no stand-in, which would count another image twice. Batched by
    torch.cat (`each_image_once`)."""

    def __getitem__(self, i: int) -> Tensor:
        try:
            return square(read_rgb(self.files[i]), self.isize, self.random_crop)[None]
        except UnreadableImageError as error:
            warnings.warn(f"skipped: {error}", stacklevel=1)
            return torch.empty(0, 3, self.isize, self.isize, dtype=torch.uint8)


def each_image_once(dataset: Dataset) -> tuple[Dataset, dict]:
    """The dataset with its unreadable files left out rather than stood in for, and the loader options that batch it:
    files as ReadableImageFiles (centre crops), the others (decoded tensors, lmdb entries) as they are."""
    if isinstance(dataset, ImageFiles):
        return ReadableImageFiles(dataset.files, dataset.isize), {"collate_fn": torch.cat}
    return dataset, {}


class TensorImages(Dataset):
    """Images already in memory, uint8 (N, 3, H, W) (the CIFAR-10 python batches), squared to isize."""

    def __init__(self, images: Tensor, isize: int):
        self.images, self.isize = images, isize

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> Tensor:
        return square(self.images[i], self.isize)


class LMDBImages(Dataset):
    """LSUN's format: an lmdb database of encoded images (WebP) under arbitrary keys, squared as ImageFiles does.

    The environment is opened lazily in each worker process: lmdb handles do not survive a fork.
    """

    def __init__(self, path: Path, isize: int, keys: list[bytes] | None = None, random_crop: bool = False):
        self.path, self.isize, self.random_crop, self.env = str(path), isize, random_crop, None
        if keys is None:
            with self.open().begin() as txn:
                keys = list(txn.cursor().iternext(keys=True, values=False))
        self.keys = keys

    def open(self):
        import lmdb
        if self.env is None or self.pid != os.getpid():
            self.env = lmdb.open(self.path, readonly=True, lock=False, readahead=False, meminit=False)
            self.pid = os.getpid()
        return self.env

    def __getstate__(self):
        return {**self.__dict__, "env": None}

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> Tensor:
        with self.open().begin() as txn:
            data = txn.get(self.keys[i])
        return square(decode_rgb(data, f"{self.keys[i]!r} in {self.path}"), self.isize, self.random_crop)


class ImageFolderDataModule(L.LightningDataModule):
    """Unlabeled images squared to `isize` and scaled to [-1, 1] on the device; batches are image tensors.

    Args:
        data_dir: a folder tree of images (any depth; .png .jpg .jpeg .webp .bmp .tif .tiff .ppm), or an LSUN
            lmdb database folder (the one holding `data.mdb`, e.g. `bedroom_train_lmdb`), or the root the CSV
            paths start from, or `<root>/train` (or `test`) of CIFAR-10 in either layout: the fast.ai folders
            or, when that folder is missing, the official python batches in <root> (what the Darknet's download
            leaves).
        csv_file: the seed's file list, `relative/path.jpg,label` per row (label ignored); null reads data_dir.
        csv_skip_header: the CSV's first row is a header.
        sample_fraction: keep this random fraction of the images (the seed: 0.1 for quick experiments).
        isize: output size, a power of 2 from 16; shorter side resized to it, then a square cropped. Must equal
            --model.isize.
        random_crop: crop the square at a random place along the longer side, every time an image is read,
            as the seed does (fastai's CropType.RANDOM); false: the centre. Square images (CIFAR-10) are not
            affected, nor the validation sample (centred). `in_memory` keeps one centre crop per image, so it needs
            random_crop false.
        batch_size: real images per process and critic step, and the noise batch of the critic's fakes and
            the generator's step (the paper's m, 64; the seed read real images at 128 and sampled 64 noise vectors).
        num_workers: decoding processes (at most the CPUs this process may use); unused when `in_memory`.
        in_memory: decode every image once in setup and keep them as one uint8 tensor (3 * isize**2 bytes
            each: 50,000 images at 32px are 150 MB); the fast path for CIFAR-sized sets.
        download: when data_dir is `.../cifar10/train` (the default) or `.../cifar10/test` and neither layout
            is there, download CIFAR-10 into `.../cifar10` as the Darknet does (checksummed).
        seed: seed of the sample and, in memory, of the shuffling.
        val_dir: real images for the validation (the WGAN's `val/fid`), read as data_dir is; null: the training images.
        val_size: a fixed random sample of this many of them is the validation set (fewer if there are fewer).
    """

    def __init__(self, data_dir: str = "data/cifar10/train", csv_file: str | None = None,
                 csv_skip_header: bool = False, sample_fraction: float = 1.0, isize: int = 64,
                 batch_size: int = 64, num_workers: int = 4, in_memory: bool = False, random_crop: bool = False,
                 download: bool = True, seed: int = 0, val_dir: str | None = None, val_size: int = 2000):
        super().__init__()
        self.save_hyperparameters()
        self.prepare_data_per_node = True  # as CIFAR10DataModule: per node, and safe on a shared filesystem
        self.dataset: Dataset | None = None
        self.option = "--data.data_dir"  # the flag its messages name (a val_dir's: --data.val_dir)

    @property
    def root(self) -> Path:
        return Path(self.hparams.data_dir).expanduser()

    def cifar10_root(self) -> Path | None:
        """<root> when data_dir is a missing <root>/train or <root>/test that the CIFAR-10 batches can stand for."""
        root = self.root
        if self.hparams.csv_file or root.exists() or root.name not in ("train", "test"):
            return None
        if find_batches(root.parent) or (self.hparams.download and root.parent.name == "cifar10"):
            return root.parent
        return None

    @property
    def source(self) -> str:
        if self.hparams.csv_file:
            return "csv"
        if self.cifar10_root() is not None:
            return "cifar10"
        return "lmdb" if (self.root / "data.mdb").is_file() else "folder"

    def check(self, any_isize: bool = False) -> None:
        """The values, checked when the data is first used rather than in __init__, where LightningCLI would bury
        the one-line message in a dump of every type it tried. `any_isize`: the size is a generator's own (the fid
        command's real images for the reference's MLP_G at MNIST's 28px), not one to train a DCGAN critic at."""
        hp = self.hparams
        check_batch_size("batch_size", hp.batch_size, 64)
        if not 0 < hp.sample_fraction <= 1:
            raise UserError(f"--data.sample_fraction must be in (0, 1] (got {hp.sample_fraction}); 0.1 keeps 10%")
        if not any_isize and (hp.isize < 16 or hp.isize & (hp.isize - 1)):
            from lightning_modules.nets.dcgan import nearest_power_of_two
            raise UserError(f"--data.isize must be a power of 2, at least 16 (got {hp.isize}): the DCGAN critic "
                            f"halves the image down to 4x4; try --data.isize {nearest_power_of_two(hp.isize)} (and "
                            "the same --model.isize)")
        if hp.in_memory and hp.random_crop:
            raise UserError("--data.in_memory true keeps one centre crop per image; add --data.random_crop false")

    def prepare_data(self) -> None:
        """Once per node: CIFAR-10 downloaded when the default data_dir is missing (nothing else is fetched)."""
        self.check()
        check_folder(self.root)
        cifar10 = self.cifar10_root()
        if cifar10 is not None and not find_batches(cifar10):
            prepare_cifar10(cifar10, self.hparams.download, CIFAR10_URL, CIFAR10_MD5)

    def missing(self) -> MissingDataError:
        root = self.root
        if "lsun" in str(root).lower() or root.name.endswith("_lmdb"):
            name = root.name if root.name.endswith("_lmdb") else "bedroom_train_lmdb"
            zipped = root.parent / f"{name}.zip"
            return MissingDataError(
                f"no LSUN database at {root}, and LSUN cannot be downloaded automatically (43 GB for bedrooms); get "
                f"it with: mkdir -p {root.parent} && curl -L -o {zipped} {LSUN_URL.format(name=name)} && unzip "
                f"{zipped} -d {root.parent}  (then {self.option} {root.parent / name})")
        return MissingDataError(f"no image folder at {root}; put images there (any sub-folders), an LSUN lmdb folder "
                                f"(with data.mdb), or CIFAR-10 as data/cifar10/train, or pass {self.option}")

    def build_dataset(self, any_isize: bool = False) -> Dataset:
        """The images squared to isize (`any_isize`: any size, as `check` says)."""
        hp, root = self.hparams, self.root
        self.check(any_isize)
        check_folder(root)
        cifar10 = self.cifar10_root()
        if cifar10 is not None:
            batches = find_batches(cifar10)
            if batches is None:
                raise MissingDataError(f"no CIFAR-10 found at {root} or as python batches in {cifar10}; training "
                                       f"(`python train.py --system wgan`) downloads it there, or put images in {root}")
            images = load_batches(batches, root.name)[0]
            return TensorImages(images[self.sample(len(images))], hp.isize)
        if not root.is_dir():
            raise self.missing()
        if self.source == "lmdb":
            dataset = LMDBImages(root, hp.isize)
            keep = self.sample(len(dataset))
            return LMDBImages(root, hp.isize, [dataset.keys[i] for i in keep], hp.random_crop)
        files = csv_files(Path(hp.csv_file), root, hp.csv_skip_header) if hp.csv_file else folder_files(root)
        if not files:
            hint = (f"; it holds torchvision's CIFAR-10 batches: give {self.option} {root / 'train'} (or test) to read "
                    f"them" if find_batches(root) else f"; point {self.option} at a folder of images")
            raise MissingDataError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {root}"
                                   + (f" listed in {hp.csv_file}" if hp.csv_file else "") + hint)
        return ImageFiles([files[i] for i in self.sample(len(files))], hp.isize, hp.random_crop)

    def sample(self, n: int) -> list[int]:
        if self.hparams.sample_fraction == 1:
            return list(range(n))
        k = max(1, round(n * self.hparams.sample_fraction))
        return sorted(torch.randperm(n, generator=torch.Generator().manual_seed(self.hparams.seed))[:k].tolist())

    def setup(self, stage: str) -> None:
        if self.dataset is not None:
            return
        self.dataset = self.build_dataset()
        if self.source == "folder":
            warn_split_folders(self.root)
        count = len(self.dataset)
        if self.hparams.in_memory:  # decode once, with the workers, into (N, 3, isize, isize) uint8; an unreadable
            dataset, options = each_image_once(self.dataset)  # file left out: a stand-in would be kept twice
            self.images = torch.cat(list(loader(dataset, 256, self.hparams.num_workers, **options)))
            count = len(self.images)
        if count < self.hparams.batch_size * (self.trainer.world_size if self.trainer else 1):
            raise UserError(f"{count} images cannot fill one batch of {self.hparams.batch_size} "
                            "per process; lower --data.batch_size or add images")

    def train_dataloader(self):
        hp = self.hparams
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        if hp.in_memory:
            return TensorBatches(self.images, torch.zeros(len(self.images)), hp.batch_size, shuffle=True,
                                 drop_last=True, seed=hp.seed, rank=rank, world_size=world, trainer=self.trainer)
        sampler = ResumableSampler(self.dataset, world, rank, hp.batch_size, self.trainer, seed=hp.seed)
        return loader(self.dataset, hp.batch_size, hp.num_workers, persistent=True, sampler=sampler, drop_last=True,
                      pin_memory=torch.cuda.is_available())

    def val_dataloader(self):
        """val_size images drawn once (seeded) from val_dir or the training set; each on one rank under DDP. An
        unreadable file is left out (a warning names it), not stood in for: the real statistics count each image once.
        """
        hp = self.hparams
        if hp.val_dir is None:
            dataset, images = self.dataset, self.images if hp.in_memory else None
            if getattr(dataset, "random_crop", False):  # the same images at every validation, as val_dir's: centred
                dataset = copy.copy(dataset)
                dataset.random_crop = False
        else:
            held_out = ImageFolderDataModule(hp.val_dir, isize=hp.isize, num_workers=hp.num_workers)
            held_out.option = "--data.val_dir"
            dataset, images = held_out.build_dataset(), None
        dataset, options = each_image_once(dataset)
        count = len(images) if images is not None else len(dataset)
        order = torch.randperm(count, generator=torch.Generator().manual_seed(hp.seed))[:hp.val_size]
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        if images is not None:
            return TensorBatches(images[order], torch.zeros(len(order)), hp.batch_size, shuffle=False,
                                 drop_last=False, rank=rank, world_size=world)
        sample = Subset(dataset, order.tolist())  # without DistributedSampler's padding, which counts some twice:
        return loader(sample, hp.batch_size, hp.num_workers, persistent=True,
                      sampler=UnrepeatedDistributedSampler(sample, world, rank, shuffle=False), **options)

    def on_after_batch_transfer(self, batch, dataloader_idx):
        images = batch[0] if isinstance(batch, list | tuple) else batch
        # uint8 over the bus (4x less), [-1, 1] on the device
        return in_input_precision(self.trainer, images.float() / 127.5 - 1)


if __name__ == "__main__":
    from lightning_modules.commands import run  # a user's mistake in one line, as the other commands

    run(write_file_list, None)
