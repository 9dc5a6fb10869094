"""CIFAR-10 held as one uint8 tensor, augmented a whole batch at a time on the training device."""

import hashlib
import os
import pickle
import warnings
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from callbacks import UserError
from callbacks.checkpoint_io import replaced
from datamodules.augment import alternating_flip, in_input_precision, normalize, random_crop, random_flip
from datamodules.decode import IMAGE_SUFFIXES, hidden, image_name, read_rgb
from datamodules.download import DownloadError, MissingDataError, download, prepare, unpack
from datamodules.workers import overfitting, restart_skip

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
BATCHES = "cifar-10-batches-py"
DECODED = ".decoded"  # <data_dir>/.decoded/<split>.pt: the folders' pixels, decoded once (cached_folders)
DECODED_VERSION = 1
SEED_STATS = ((0.4914, 0.48216, 0.44653), (0.24703, 0.24349, 0.26159))  # the seed's per-channel stats


def check_batch_size(name: str, value: int, example: int) -> None:
    if value <= 0:
        raise UserError(f"--data.{name} must be at least 1 (got {value}); e.g. --data.{name} {example}")


def check_folder(path: Path, what: str = "--data.data_dir") -> None:
    """A file where a folder is expected: say so before anything tries to read it or to make it."""
    for part in (path, *path.parents):
        if part.exists() and not part.is_dir():
            raise UserError(f"{what} {path}: {part} is a file, not a folder; pass the folder that holds the data")


def cifar10_layout(root: Path) -> str | None:
    """Which CIFAR-10 layout `root` holds: the fast.ai folders, the official python batches, or none."""
    if (root / "train").is_dir() and (root / "test").is_dir():
        return "folders"
    return "batches" if find_batches(root) else None


def prepare_cifar10(root: Path, download_on: bool, url: str = "", md5: str | None = None) -> None:
    """Download and unpack the official archive into `root`/cifar-10-batches-py unless a layout is there.

    Under a lock, into a temporary sibling folder renamed into place (see datamodules.download.prepare); a
    failed or refused download creates nothing, so a mistyped --data.data_dir leaves no empty folders.
    """
    check_folder(root)
    if cifar10_layout(root):
        return
    if (root / "train").is_dir():  # a user's image folders, one split short: never download CIFAR-10 into them
        named = [name for name in ("valid", "val", "validation") if (root / name).is_dir()]
        fix = (f"rename {root / named[0]} to {root / 'test'}" if named
               else f"add {root / 'test'}/<class>/ folders of images")
        raise MissingDataError(f"no CIFAR-10 found in {root}: it has train/ but no test/; image folders are read as "
                               f"train/<class>/ and test/<class>/ (the seed's val_name='test'); {fix}")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not hidden(d.name)
                     and any(image_name(f.name) for f in d.iterdir())) if root.is_dir() else []
    if classes:  # one split's class folders (torchvision's ImageFolder root): never download CIFAR-10 into them
        raise MissingDataError(f"{root} holds class folders of images ({', '.join(classes[:3])}"
                               f"{', ...' if len(classes) > 3 else ''}), one split's; give the folder that holds "
                               f"train/<class>/ and test/<class>/: --data.data_dir {root.parent}")
    where = (f"put CIFAR-10 in {root} as train/<class>/*.png and test/<class>/*.png or as the official python "
             f"batches ({root / BATCHES}), or pass --data.data_dir")
    if not download_on:
        raise MissingDataError(f"no CIFAR-10 found in {root}: {where} (or drop --data.download false)")

    def fill(tmp: Path) -> None:
        archive = tmp / "cifar-10-python.tar.gz"
        print(f"Downloading CIFAR-10 from {url} to {root}")
        download(url, archive, md5)
        unpack(archive, tmp)
        if not (tmp / BATCHES).is_dir():
            raise DownloadError(f"{url} does not contain the folder {BATCHES}")

    try:
        prepare(root / BATCHES, lambda _: cifar10_layout(root) is not None, fill, member=BATCHES)
    except DownloadError as error:
        raise MissingDataError(f"no CIFAR-10 found in {root} and {error}. Offline? {where}; "
                               f"the archive is {CIFAR10_URL}") from None


def find_batches(data_dir: Path) -> Path | None:
    for folder in (data_dir, data_dir / BATCHES):
        if (folder / "data_batch_1").is_file() and (folder / "test_batch").is_file():
            return folder
    return None


def load_batches(folder: Path, split: str) -> tuple[Tensor, Tensor, list[str]]:
    """The official python batches: pickled dicts of (N, 3072) uint8 rows, R then G then B planes."""
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    images, labels = [], []
    for name in names:
        with open(folder / name, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels += batch[b"labels"]
    with open(folder / "batches.meta", "rb") as f:
        classes = [c.decode() for c in pickle.load(f, encoding="bytes")[b"label_names"]]
    return torch.from_numpy(np.concatenate(images)), torch.tensor(labels), classes


def folder_files(root: Path, split: str) -> tuple[list[str], list[list[Path]]]:
    """The class names and each class's image files of <split>/<class>/*.png|jpg, in the order they are loaded."""
    split_dir = root / split
    classes = sorted(d.name for d in split_dir.iterdir() if d.is_dir() and not hidden(d.name))
    if not classes:
        raise MissingDataError(f"{split_dir} has no class folders; expected {split_dir}/<class>/*.png")
    return classes, [sorted(f for f in (split_dir / name).iterdir() if image_name(f.name)) for name in classes]


def load_folders(root: Path, split: str) -> tuple[Tensor, Tensor, list[str]]:
    """The fast.ai layout the seed reads with `from_paths(PATH, val_name='test')`: <split>/<class>/*.png|jpg."""
    split_dir = root / split
    classes, per_class = folder_files(root, split)
    images, labels = [], []
    for label, (name, files) in enumerate(zip(classes, per_class, strict=True)):
        if not files:
            raise MissingDataError(f"class folder {split_dir / name} has no .png or .jpg images (nor "
                                   f"{'/'.join(sorted(IMAGE_SUFFIXES - {'.png', '.jpg'}))}); "
                                   "remove the folder or add its images")
        for file in files:
            image = read_rgb(file)  # every file is decoded here once: a corrupt one stops setup, named
            if image.shape[1] != image.shape[2]:  # the crops, flips and whitening patches assume squares
                raise UserError(f"{file} is {image.shape[2]}x{image.shape[1]} pixels (width x height), not square; "
                                f"CIFAR10DataModule takes square images, as CIFAR-10's 32x32: crop or resize them "
                                f"square")
            if images and image.shape != images[0].shape:
                raise UserError(f"{file} is {tuple(image.shape[1:])} pixels, the others "
                                f"{tuple(images[0].shape[1:])}; CIFAR-10 images are all 32x32: resize the odd "
                                f"one to the others' size, or remove it")
            images.append(image)
        labels += [label] * len(files)
    return torch.stack(images), torch.tensor(labels), classes


def folder_fingerprint(split_dir: Path) -> str:
    """A digest of every class folder's name and every image's name, size and modification time: what make and
    rsync compare. One stat per file (0.7 s for CIFAR-10's 50,000 training images on the 2-core CPU), against
    20-50 s to decode them."""
    digest = hashlib.sha256()
    for class_dir in sorted(d for d in split_dir.iterdir() if d.is_dir() and not hidden(d.name)):
        digest.update(f"{class_dir.name}/\n".encode())
        for entry in sorted(os.scandir(class_dir), key=lambda e: e.name):
            if image_name(entry.name):
                stat = entry.stat()
                digest.update(f"{entry.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def cached_folders(root: Path, split: str) -> tuple[Tensor, Tensor, list[str]]:
    """load_folders, decoded once: the pixels are kept in <root>/.decoded/<split>.pt with the folder's fingerprint
    and read from there while it matches (1.06 s against 19.7 s for the CIFAR-10 JPEGs on a 2-core CPU: BENCHMARKS.md).
    A file changed, added or removed decodes the split again; a damaged or foreign cache file is decoded over;
    a folder this process cannot write to still loads, decoded every time, with a warning."""
    path = root / DECODED / f"{split}.pt"
    fingerprint = folder_fingerprint(root / split)  # before decoding: a file changed meanwhile decodes next time
    try:
        saved = torch.load(path, weights_only=True)
        if (isinstance(saved, dict) and saved.get("version") == DECODED_VERSION
                and saved.get("fingerprint") == fingerprint
                and saved["images"].shape[-1] == saved["images"].shape[-2]):  # else decoded again, and refused
            return saved["images"], saved["labels"], saved["classes"]
    except Exception:  # noqa: BLE001 - no file yet, or a truncated or foreign one: only a cache miss
        pass
    images, labels, classes = load_folders(root, split)
    try:  # written beside its place and renamed: a killed run leaves no half file under the real name
        with replaced(path) as tmp:
            torch.save({"version": DECODED_VERSION, "fingerprint": fingerprint, "images": images, "labels": labels,
                        "classes": classes}, tmp)
    except OSError as error:
        warnings.warn(f"could not keep the decoded {split} images in {path} ({error}); every run decodes "
                      f"{root / split} again (--data.cache_decoded false turns this off)", stacklevel=2)
    return images, labels, classes


class TensorBatches:
    """Batches of (uint8 images, labels) cut from tensors in memory, reshuffled every epoch.

    Replaces DataLoader(TensorDataset) because its per-item indexing and collate cost more than
    the whole batch gather. Under DDP each rank takes its own slice of one shared permutation.
    """

    def __init__(self, images: Tensor, labels: Tensor, batch_size: int, shuffle: bool, drop_last: bool,
                 seed: int = 0, rank: int = 0, world_size: int = 1, flipped_first: Tensor | None = None,
                 trainer=None):
        self.images, self.labels, self.trainer = images, labels, trainer  # the trainer: restart_skip
        self.same_order = overfitting(trainer)  # Trainer(overfit_batches=N): the first epoch's order, always
        self.flipped_first = flipped_first  # per image: mirrored in even epochs (alternating flip), or None
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch = 0
        self.order: Tensor | None = None  # the order of the epoch being iterated
        self.sampler, self.batch_sampler = self, None  # Lightning calls loader.sampler.set_epoch(epoch)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _order(self) -> Tensor:
        if self.shuffle:  # drawn on the CPU, so the order is the same wherever the images are
            epoch = 0 if self.same_order else self.epoch
            order = torch.randperm(len(self.labels), generator=torch.Generator().manual_seed(self.seed + epoch))
        else:
            order = torch.arange(len(self.labels))
        order = order.to(self.images.device)
        if self.drop_last:  # training: equal shares, so every rank takes the same number of steps; interleaved, as
            # DistributedSampler's, so k batches on each of N ranks train the shuffle's first k x N batches: a resume
            # on another number of processes goes on with the images not yet trained (callbacks.EpochLengthResume)
            return order[:len(order) // self.world_size * self.world_size][self.rank::self.world_size]
        return order[self.rank::self.world_size]  # evaluation: every image, on exactly one rank

    def __len__(self) -> int:
        if self.drop_last:
            return len(self.labels) // self.world_size // self.batch_size
        return -(-len(range(self.rank, len(self.labels), self.world_size)) // self.batch_size)

    def indices(self, batch: int) -> Tensor:
        """The positions in `images` of the batch numbered `batch` of the epoch being iterated, on the images'
        device (the test's top losses name their images)."""
        return self.order[batch * self.batch_size:(batch + 1) * self.batch_size]

    def __iter__(self):
        skip = restart_skip(self)
        order = self.order = self._order()  # kept: indices() reads it without a copy to the device per batch
        for i in range(skip, len(self)):
            index = order[i * self.batch_size:(i + 1) * self.batch_size]
            images = self.images[index]
            if self.flipped_first is not None:
                images = alternating_flip(images, self.flipped_first[index], self.epoch)
            yield images, self.labels[index]


class CIFAR10DataModule(L.LightningDataModule):
    """CIFAR-10 with the seed's augmentation (pad 4 as `pad_mode`, random 32px crop, flip) done per batch.

    Args:
        data_dir: the fast.ai layout (`train/<class>/*.png`, `test/<class>/...`) or the official python
            batches (`cifar-10-batches-py/`, or their folder itself). Downloaded here when neither is there.
        batch_size: training batch per process: the seed's 256, which DarknetClassifier's default lr 1.3 is for
            (configs/darknet.yaml trains at 512 with lr 0.4).
        eval_batch_size: batch for validation and test.
        val_size: images held out of train for validation; 0 validates on the test split, as the seed does.
        pad: pixels of mirror padding (`pad_mode`) on each side before the random crop.
        pad_mode: "symmetric", the edge pixel repeated (the seed's, OpenCV's BORDER_REFLECT), or "reflect", not
            repeated (torch's, airbench94's).
        flip: random horizontal flips.
        alternating_flip: with flip, mirror each training image every other epoch (the first epoch at random)
            instead of at random every epoch (airbench, Jordan 2024, arXiv:2404.00498).
        image_size: size the batches are resized to (progressive resizing, e.g. 28 then 32).
        on_device: keep the images on the training device and cut the batches there, as airbench's loader does
            (180 MB for CIFAR-10): no gather, flip and host-to-device copy on the host at every step.
        cache_decoded: keep the decoded pixels of image folders in <data_dir>/.decoded/ and read them from there
            while no file has changed (decoding the CIFAR-10 JPEGs takes 20-50 s on a 2-core CPU); false decodes
            every run.
        download: fetch the official archive when the data is missing.
        url: where the archive is downloaded from (the official python version's, or a mirror of it).
        md5: the archive's checksum, checked after the download.
        seed: seed of the shuffling and the validation split.
    """

    def __init__(self, data_dir: str = "data/cifar10", batch_size: int = 256, eval_batch_size: int = 1000,
                 val_size: int = 0, pad: int = 4, pad_mode: Literal["symmetric", "reflect"] = "symmetric",
                 flip: bool = True, alternating_flip: bool = False, image_size: int = 32,
                 download: bool = True, url: str = CIFAR10_URL, md5: str = CIFAR10_MD5, seed: int = 0,
                 on_device: bool = False, cache_decoded: bool = True):
        super().__init__()
        self.save_hyperparameters()
        # prepare_data runs on the first process of every node (Lightning's default, kept deliberately): data/
        # may be a node's local disk, where each node needs its own copy; on a shared filesystem the nodes'
        # first processes meet at prepare()'s lock, one downloads and the others find the data ready
        self.prepare_data_per_node = True
        self.image_size = image_size  # an attribute: the phase scheduler may change it per phase
        self.classes: list[str] = []

    @property
    def data_dir(self) -> Path:
        return Path(self.hparams.data_dir).expanduser()

    def layout(self) -> str | None:
        return cifar10_layout(self.data_dir)

    def check(self) -> None:
        """The values, checked when the data is first used rather than in __init__, where LightningCLI would bury
        the one-line message in a dump of every type it tried."""
        check_batch_size("batch_size", self.hparams.batch_size, 256)
        check_batch_size("eval_batch_size", self.hparams.eval_batch_size, 1000)

    def prepare_data(self) -> None:
        """Once per node: download and unpack the official archive if no layout is found; decode image folders into
        the cache, so that the other processes of the node read it instead of decoding them each."""
        self.check()
        prepare_cifar10(self.data_dir, self.hparams.download, self.hparams.url, self.hparams.md5)
        if self.layout() == "folders" and self.hparams.cache_decoded:
            self._decoded = {split: cached_folders(self.data_dir, split) for split in ("train", "test")}

    def load(self, split: str) -> tuple[Tensor, Tensor]:
        check_folder(self.data_dir)
        layout = self.layout()
        if layout is None:
            raise MissingDataError(f"no CIFAR-10 found in {self.data_dir}; run prepare_data() first")
        if layout == "folders":
            decoded = self.__dict__.get("_decoded", {}).pop(split, None)  # this process's prepare_data's
            if decoded is None:
                decoded = (cached_folders if self.hparams.cache_decoded else load_folders)(self.data_dir, split)
            images, labels, classes = decoded
        else:
            images, labels, classes = load_batches(find_batches(self.data_dir), split)
        if self.classes and classes != self.classes:
            raise UserError(f"{split} classes {classes} differ from train classes {self.classes} in "
                            f"{self.data_dir}; give test/ the same class folders as train/")
        self.classes = classes
        return images, labels

    def setup(self, stage: str) -> None:
        """On every process: the whole split as uint8 (N, 3, 32, 32) tensors (180 MB for all of CIFAR-10)."""
        if hasattr(self, "test_images"):
            return
        self.check()
        train_images, train_labels = self.load("train")
        self.test_images, self.test_labels = self.load("test")
        side, reflect = train_images.shape[-1], self.hparams.pad_mode == "reflect"
        if side != self.hparams.image_size:  # a folder of 48px images trained at 32px without a word
            rank_zero_warn(f"the images in {self.data_dir} are {side}x{side} pixels: each batch is resized to "
                           f"--data.image_size {self.hparams.image_size}, the size the net trains at; give "
                           f"--data.image_size {side} to train at theirs")
        if not 0 <= self.hparams.pad <= side - reflect:
            raise UserError(f"--data.pad {self.hparams.pad} is outside 0 to {side - reflect}, the most "
                            f"{self.hparams.pad_mode} padding of {side}-pixel images allows; e.g. --data.pad 4")
        if self.hparams.val_size:
            if not 0 < self.hparams.val_size < len(train_labels):
                raise UserError(f"--data.val_size must be from 1 to {len(train_labels) - 1} (got "
                                f"{self.hparams.val_size}), or 0 to validate on the test split; e.g. --data.val_size "
                                f"5000")
            order = torch.randperm(len(train_labels), generator=torch.Generator().manual_seed(self.hparams.seed))
            val, train = order[:self.hparams.val_size], order[self.hparams.val_size:]
            self.val_images, self.val_labels = train_images[val], train_labels[val]
            train_images, train_labels = train_images[train], train_labels[train]
        else:
            self.val_images, self.val_labels = self.test_images, self.test_labels
        self.train_images, self.train_labels = train_images, train_labels

    def test_files(self) -> list[Path] | None:
        """The test split's image files in the order of its images; None for the official batches (no files)."""
        if self.layout() != "folders":
            return None
        return [file for files in folder_files(self.data_dir, "test")[1] for file in files]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def _batches(self, images, labels, batch_size, train):
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        if self.hparams.on_device and self.trainer is not None:
            images, labels = self._on_device(images), self._on_device(labels)
        return TensorBatches(images, labels, batch_size, shuffle=train, drop_last=train, seed=self.hparams.seed,
                             rank=rank, world_size=world, trainer=self.trainer if train else None)

    def _on_device(self, tensor: Tensor) -> Tensor:
        """`tensor` on the training device, copied there once per tensor and device."""
        device = self.trainer.strategy.root_device
        if tensor.device == device:
            return tensor
        copies = self.__dict__.setdefault("_device_copies", {})
        key = (id(tensor), str(device))
        if key not in copies:
            copies[key] = (tensor, tensor.to(device))  # the source kept, so its id is not reused
        return copies[key][1]

    def train_dataloader(self):
        batches = self._batches(self.train_images, self.train_labels, self.hparams.batch_size, train=True)
        if self.hparams.flip and self.hparams.alternating_flip:
            draw = torch.Generator().manual_seed(self.hparams.seed)
            batches.flipped_first = (torch.rand(len(self.train_labels), generator=draw) < 0.5).to(batches.images.device)
        if len(batches) == 0:
            raise UserError(f"batch_size {self.hparams.batch_size} is more than the {len(self.train_labels)} "
                            f"training images per process can fill; lower --data.batch_size")
        return batches

    def val_dataloader(self):
        return self._batches(self.val_images, self.val_labels, self.hparams.eval_batch_size, train=False)

    def test_dataloader(self):
        return self._batches(self.test_images, self.test_labels, self.hparams.eval_batch_size, train=False)

    def on_after_batch_transfer(self, batch, dataloader_idx):
        images, labels = batch
        images = normalize(images, *SEED_STATS)
        if self.trainer is not None and self.trainer.training:
            if self.hparams.pad:
                images = random_crop(images, images.shape[-1], self.hparams.pad, mode=self.hparams.pad_mode)
            if self.hparams.flip and not self.hparams.alternating_flip:
                images = random_flip(images)
        return in_input_precision(self.trainer, (self._sized(images), labels))

    def _sized(self, images: Tensor) -> Tensor:
        """Batches resized to image_size (progressive resizing), when they are not that size."""
        if images.shape[-1] == self.image_size:
            return images
        return F.interpolate(images, size=self.image_size, mode="bilinear", antialias=True, align_corners=False)

    def plain_training_images(self, count: int, device=None) -> Tensor:
        """The first `count` training images of epoch 0's order (the same on every rank), normalised and sized as
        evaluation's, not augmented: what airbench94 computes its whitening from."""
        order = TensorBatches(self.train_images, self.train_labels, 1, shuffle=True, drop_last=True,
                              seed=self.hparams.seed)._order()[:count]
        return self._sized(normalize(self.train_images[order].to(device), *SEED_STATS))
