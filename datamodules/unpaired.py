"""Two unpaired image folders, as CycleGAN's datasets: <root>/trainA, trainB, testA, testB."""

from pathlib import Path

import lightning as L
import numpy as np
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from torchvision.io import ImageReadMode, decode_image, read_file
from torchvision.transforms.v2.functional import InterpolationMode, resize

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
FOLDERS = ("trainA", "trainB", "testA", "testB")


def image_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is missing; an unpaired dataset has {', '.join(FOLDERS)} folders of "
                                f"images under --data.data_dir (horse2zebra: tar xf ../shared/data/horse2zebra.tar "
                                f"-C data, or the official zip from efrosgans.eecs.berkeley.edu/cyclegan/datasets)")
    files = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"{folder} has no {'/'.join(sorted(IMAGE_SUFFIXES))} images")
    return files


def load_image(file: Path, size: int) -> Tensor:
    """uint8 (3, size, size): grayscale and RGBA files become RGB; squashed to a square as the reference."""
    image = decode_image(read_file(str(file)), mode=ImageReadMode.RGB)
    if image.shape[-2:] != (size, size):
        image = resize(image, [size, size], InterpolationMode.BICUBIC, antialias=True)
    return image


class UnpairedImages(Dataset):
    """Item i: A image i mod |A| with a B image drawn at random (the reference's unaligned dataset);
    as long as the larger domain. Training items are resized to load_size, randomly cropped to crop_size
    and flipped; test items are resized to crop_size and B is i mod |B|.

    Keys are (index, epoch) pairs from `EpochSampler`: every random choice comes from a generator seeded
    by (seed, epoch, index), so an item is the same whatever the worker, the process or a resume.
    """

    def __init__(self, files_a: list[Path], files_b: list[Path], load_size: int, crop_size: int, flip: bool,
                 train: bool, seed: int = 0):
        self.files_a, self.files_b = files_a, files_b
        self.load_size, self.crop_size, self.flip, self.train, self.seed = load_size, crop_size, flip, train, seed

    def __len__(self) -> int:
        return max(len(self.files_a), len(self.files_b))

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Tensor, Tensor]:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        if not self.train:
            return (load_image(self.files_a[index % len(self.files_a)], self.crop_size),
                    load_image(self.files_b[index % len(self.files_b)], self.crop_size))
        rng = np.random.default_rng([self.seed, epoch, index])
        b = int(rng.integers(len(self.files_b)))  # unpaired: B is drawn anew for every item
        return (self.augment(load_image(self.files_a[index % len(self.files_a)], self.load_size), rng),
                self.augment(load_image(self.files_b[b], self.load_size), rng))

    def augment(self, image: Tensor, rng: np.random.Generator) -> Tensor:
        """Random crop_size crop, then a left-right flip with probability 1/2 (uint8 slicing: no resampling)."""
        top, left = rng.integers(self.load_size - self.crop_size + 1, size=2)
        image = image[:, top:top + self.crop_size, left:left + self.crop_size]
        if self.flip and rng.random() < 0.5:
            image = image.flip(-1)
        return image.contiguous()


class DomainImages(Dataset):
    """One domain's images, each once, resized to size x size: the validation sets (CycleGAN's val/fid)."""

    def __init__(self, files: list[Path], size: int):
        self.files, self.size = files, size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Tensor:
        return load_image(self.files[i], self.size)


class EpochSampler(DistributedSampler):
    """DistributedSampler (one shared shuffle per epoch, a slice per rank) whose keys carry the epoch.

    Lightning calls set_epoch every epoch, also after a resume, and keeps a DistributedSampler as is
    under DDP; with one process it is a plain seeded shuffle.
    """

    def __iter__(self):
        return ((index, self.epoch) for index in super().__iter__())


class UnpairedImageDataModule(L.LightningDataModule):
    """CycleGAN's unpaired data: trainA/trainB for fit, testA/testB for test and validation; batches in [-1, 1].

    Args:
        data_dir: folder with trainA, trainB, testA, testB image folders (horse2zebra: data/horse2zebra).
        batch_size: pairs per batch and process (the paper: 1).
        load_size: training images are first resized to load_size x load_size (the reference: 286).
        crop_size: then randomly cropped to crop_size (256); test images are resized to it. Multiple of 4.
        flip: random left-right flips of training images.
        num_workers: DataLoader worker processes decoding the images.
        seed: seed of the shuffle, the B draws, the crops and the flips.
    """

    def __init__(self, data_dir: str = "data/horse2zebra", batch_size: int = 1, load_size: int = 286,
                 crop_size: int = 256, flip: bool = True, num_workers: int = 4, seed: int = 0):
        super().__init__()
        if crop_size % 4 or crop_size < 32:
            raise ValueError(f"crop_size must be a multiple of 4 and at least 32 (got {crop_size}): the generator "
                             f"halves the size twice and the PatchGAN needs 32px; try --data.crop_size 256")
        if load_size < crop_size:
            raise ValueError(f"load_size {load_size} is smaller than crop_size {crop_size}; "
                             f"set --data.load_size to crop_size or more (the reference: 286 for 256)")
        self.save_hyperparameters()

    def setup(self, stage: str) -> None:
        hp, root = self.hparams, Path(self.hparams.data_dir).expanduser()
        split = "train" if stage == "fit" else "test"
        files_a, files_b = image_files(root / f"{split}A"), image_files(root / f"{split}B")
        dataset = UnpairedImages(files_a, files_b, hp.load_size, hp.crop_size, hp.flip, split == "train", hp.seed)
        setattr(self, f"{split}_set", dataset)

    def _loader(self, dataset: Dataset, sampler=None) -> DataLoader:
        return DataLoader(dataset, self.hparams.batch_size, sampler=sampler, num_workers=self.hparams.num_workers,
                          persistent_workers=self.hparams.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        return self._loader(self.train_set, EpochSampler(self.train_set, world, rank, seed=self.hparams.seed))

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set)

    def val_dataloader(self) -> list[DataLoader]:
        """testA and testB at crop_size, each image once over all ranks: loader 0 is domain A, loader 1 domain B."""
        root = Path(self.hparams.data_dir).expanduser()
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        sets = [DomainImages(image_files(root / f"test{side}"), self.hparams.crop_size) for side in "AB"]
        # a share of the images per rank without DistributedSampler's padding, which would count some twice
        return [self._loader(images, UnrepeatedDistributedSampler(images, world, rank, shuffle=False))
                for images in sets]

    def on_after_batch_transfer(self, batch, dataloader_idx):
        if isinstance(batch, Tensor):  # a validation batch: one domain
            return batch.float() / 127.5 - 1
        return tuple(images.float() / 127.5 - 1 for images in batch)  # uint8 [0, 255] -> [-1, 1]
