import csv
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from callbacks import UserError
from datamodules import ImageFolderDataModule
from datamodules.image_folder import write_file_list

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets on a shared 2-core CPU

COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)]


def solid(colour, size=(24, 16)):
    return Image.new("RGB", size, colour)  # size is (width, height)


def colours_of(images: torch.Tensor) -> set:
    """The mean colour of each image of a batch in [-1, 1], back in 0..255."""
    return {tuple(int(v) for v in ((c + 1) * 127.5).round()) for c in images.mean((2, 3))}


def load_all(data: ImageFolderDataModule) -> torch.Tensor:
    data.setup("fit")
    return torch.cat([data.on_after_batch_transfer(b, 0) for b in data.train_dataloader()])


@pytest.fixture
def tree(tmp_path):
    """Images at several depths, sizes and formats, one colour each."""
    root = tmp_path / "tree"
    paths = ["a.png", "x/b.jpg", "x/y/c.png", "x/y/z/d.PNG", "e.webp"]
    for path, colour in zip(paths, COLOURS, strict=True):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        solid(colour).save(root / path, **({"lossless": True} if path.endswith("webp") else {}))
    (root / "notes.txt").write_text("not an image")
    return root


def test_folder_tree_is_read_at_any_depth_squared_and_scaled(tree):
    images = load_all(ImageFolderDataModule(str(tree), isize=16, batch_size=5, num_workers=0))
    assert images.shape == (5, 3, 16, 16) and images.dtype == torch.float32
    assert images.min() >= -1 and images.max() <= 1
    assert {(255, 0, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)} <= colours_of(images)  # all but the JPEG exactly


def test_symlinked_sub_folders_are_read_and_a_link_back_up_the_tree_is_not_walked_again(tmp_path):
    """Path.rglob (Python < 3.13) passed symlinked folders over without a word: half of a tree of class folders, one
    of them a link to another disk, was trained on. torchvision's ImageFolder (the WassersteinGAN reference's reader)
    follows them."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    solid(COLOURS[1]).save(elsewhere / "g.png")
    root = tmp_path / "faces"
    (root / "own").mkdir(parents=True)
    solid(COLOURS[0]).save(root / "own" / "r.png")
    (root / "linked").symlink_to(elsewhere, target_is_directory=True)
    (root / "own" / "loop").symlink_to(root, target_is_directory=True)  # walked forever if followed
    images = load_all(ImageFolderDataModule(str(root), isize=16, batch_size=1, num_workers=0))
    assert len(images) == 2 and colours_of(images) == {COLOURS[0], COLOURS[1]}


def test_hidden_folders_and_files_are_not_read(tmp_path):
    """Jupyter's .ipynb_checkpoints/ (copies of the images a notebook opened) trained each such image twice, without a
    word; fastai passes hidden files and folders over."""
    root = tmp_path / "faces"
    (root / "own" / ".ipynb_checkpoints").mkdir(parents=True)
    solid(COLOURS[0]).save(root / "own" / "r.png")
    solid(COLOURS[1]).save(root / "own" / ".ipynb_checkpoints" / "r-checkpoint.png")
    solid(COLOURS[2]).save(root / "own" / ".hidden.png")
    images = load_all(ImageFolderDataModule(str(root), isize=16, batch_size=1, num_workers=0))
    assert len(images) == 1 and colours_of(images) == {COLOURS[0]}


def test_wide_image_keeps_its_centre(tmp_path):
    stripes = np.zeros((16, 48, 3), dtype=np.uint8)
    stripes[:, :16], stripes[:, 16:32], stripes[:, 32:] = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    (tmp_path / "img").mkdir()
    Image.fromarray(stripes).save(tmp_path / "img" / "s.png")
    images = load_all(ImageFolderDataModule(str(tmp_path / "img"), isize=16, batch_size=1, num_workers=0))
    assert colours_of(images) == {(0, 255, 0)}  # the middle third; shorter side already 16, so no resize
    assert images.amin((2, 3)).equal(images.amax((2, 3)))  # nothing of the side stripes


def test_large_image_is_resized_by_its_shorter_side(tmp_path):
    (tmp_path / "img").mkdir()
    solid((0, 0, 255), size=(100, 40)).save(tmp_path / "img" / "s.png")
    images = load_all(ImageFolderDataModule(str(tmp_path / "img"), isize=32, batch_size=1, num_workers=0))
    assert images.shape == (1, 3, 32, 32) and colours_of(images) == {(0, 0, 255)}


def test_csv_file_list_with_sample_fraction(tree, tmp_path):
    csv_file = tmp_path / "files.csv"
    assert write_file_list(str(tree), str(csv_file)) == 5
    rows = list(csv.reader(csv_file.open()))
    assert len(rows) == 5 and all(label == "0" and (tree / path).is_file() for path, label in rows)  # the seed's rows
    data = ImageFolderDataModule(str(tree), csv_file=str(csv_file), sample_fraction=0.4, isize=16, batch_size=2,
                                 num_workers=0)
    data.setup("fit")
    assert len(data.dataset) == 2  # round(5 * 0.4)
    assert set(data.dataset.files) <= {tree / path for path, _ in rows}


def test_csv_with_a_missing_file_names_it(tree, tmp_path):
    csv_file = tmp_path / "files.csv"
    csv_file.write_text("a.png,0\nmissing/q.png,0\n")
    data = ImageFolderDataModule(str(tree), csv_file=str(csv_file), isize=16, batch_size=1, num_workers=0)
    with pytest.raises(FileNotFoundError, match="1 files listed in .* are missing, e.g. .*missing/q.png"):
        data.setup("fit")


def test_a_missing_csv_file_is_refused_in_one_line_that_says_how_to_write_one(tree, tmp_path):
    csv_file = tmp_path / "nofile.csv"
    data = ImageFolderDataModule(str(tree), csv_file=str(csv_file), isize=16, batch_size=1, num_workers=0)
    with pytest.raises(UserError, match=f"no file list at {csv_file} .--data.csv_file.; write one with `python -m "
                                        f"datamodules.image_folder {tree} {csv_file}`, or pass --data.csv_file null"):
        data.setup("fit")
    assert not csv_file.exists()


def test_lsun_lmdb_database_is_read_directly(tmp_path):
    import lmdb

    db = tmp_path / "bedroom_train_lmdb"
    env = lmdb.open(str(db), map_size=1 << 24)
    with env.begin(write=True) as txn:  # LSUN's layout: hex ids as keys, WebP bytes as values
        for i, colour in enumerate(COLOURS):
            encoded = io.BytesIO()
            solid(colour, size=(40, 30)).save(encoded, format="webp", lossless=True)
            txn.put(f"{i:040x}".encode(), encoded.getvalue())
    env.close()
    data = ImageFolderDataModule(str(db), isize=16, batch_size=5, num_workers=0)
    assert data.source == "lmdb"
    assert colours_of(load_all(data)) == set(COLOURS)


def test_lmdb_reader_works_in_worker_processes(tmp_path):
    import lmdb

    db = tmp_path / "db"
    env = lmdb.open(str(db), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for i, colour in enumerate(COLOURS[:4]):
            encoded = io.BytesIO()
            solid(colour).save(encoded, format="png")
            txn.put(f"{i}".encode(), encoded.getvalue())
    env.close()
    data = ImageFolderDataModule(str(db), isize=16, batch_size=2, num_workers=2)
    assert colours_of(load_all(data)) == set(COLOURS[:4])


def test_in_memory_gives_the_same_images(tree):
    kwargs = {"data_dir": str(tree), "isize": 16, "batch_size": 5, "num_workers": 0}
    from_files = load_all(ImageFolderDataModule(**kwargs))
    in_memory = load_all(ImageFolderDataModule(**kwargs, in_memory=True))  # centre crops, as random_crop false
    assert colours_of(in_memory) == colours_of(from_files) and in_memory.shape == from_files.shape


def test_missing_or_empty_folders_and_bad_fractions_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="no image folder at .*absent.*--data.data_dir"):
        ImageFolderDataModule(str(tmp_path / "absent"), num_workers=0).setup("fit")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images .* under"):
        ImageFolderDataModule(str(tmp_path / "empty"), num_workers=0).setup("fit")
    with pytest.raises(UserError, match="sample_fraction must be in \\(0, 1\\]"):
        ImageFolderDataModule(str(tmp_path), sample_fraction=10).setup("fit")


def test_fewer_images_than_a_batch_fail_clearly(tree):
    with pytest.raises(ValueError, match="5 images cannot fill one batch of 64"):
        ImageFolderDataModule(str(tree), batch_size=64, num_workers=0).setup("fit")


# --- CIFAR-10 for the WGAN, errors, workers --------------------------------------------------------

def test_wgan_default_reads_the_cifar10_python_batches_the_darknet_download_leaves(tmp_path):
    import pickle

    from conftest import make_batches
    batches = make_batches(tmp_path / "cifar10" / "cifar-10-batches-py")
    data = ImageFolderDataModule(str(tmp_path / "cifar10" / "train"), isize=32, batch_size=6, num_workers=0)
    data.prepare_data()  # the batches are there: nothing downloaded
    assert data.source == "cifar10"
    images = load_all(data)
    assert images.shape == (30, 3, 32, 32)  # the 5 training batches of 6, not the test batch
    with open(batches / "data_batch_1", "rb") as f:
        rows = pickle.load(f, encoding="bytes")[b"data"]
    expected = {tuple(int(v) for v in row.reshape(3, 32, 32)[:, 0, 0]) for row in rows}  # top-left pixels
    got = {tuple(int(v) for v in ((image[:, 0, 0] + 1) * 127.5).round()) for image in images}
    assert expected <= got
    assert not (tmp_path / "cifar10" / "train").exists()


def test_wgan_default_downloads_cifar10_when_missing(tmp_path, monkeypatch):
    """The real download path, from a server on 127.0.0.1 serving a small CIFAR-10 archive made here."""
    import hashlib
    import tarfile

    from conftest import http_server, make_batches, reply

    import datamodules.image_folder as module
    make_batches(tmp_path / "src" / "cifar-10-batches-py")
    with tarfile.open(tmp_path / "cifar.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    archive = (tmp_path / "cifar.tar.gz").read_bytes()

    with http_server(lambda handler: reply(handler, archive)) as url:
        monkeypatch.setattr(module, "CIFAR10_URL", f"{url}/cifar.tar.gz")
        monkeypatch.setattr(module, "CIFAR10_MD5", hashlib.md5(archive).hexdigest())
        data = ImageFolderDataModule(str(tmp_path / "data" / "cifar10" / "train"), isize=32, batch_size=6,
                                     num_workers=0)
        data.prepare_data()
    assert sorted(p.name for p in (tmp_path / "data" / "cifar10").iterdir()) == ["cifar-10-batches-py"]
    assert load_all(data).shape == (30, 3, 32, 32)


def test_a_mistyped_folder_downloads_nothing_and_creates_nothing(tmp_path):
    for typo in ("data/cifra10/train", "data/cifar10/trian"):
        data = ImageFolderDataModule(str(tmp_path / typo), num_workers=0)
        data.prepare_data()
        with pytest.raises(UserError, match="no image folder at .*--data.data_dir"):
            data.setup("fit")
    assert list(tmp_path.iterdir()) == []


def test_missing_lsun_names_the_command_that_gets_it(tmp_path):
    root = tmp_path / "lsun" / "bedroom_train_lmdb"
    with pytest.raises(UserError, match=f"LSUN cannot be downloaded automatically.*curl -L -o "
                                        f"{root.parent}/bedroom_train_lmdb.zip http://dl.yf.io/lsun/scenes/"
                                        f"bedroom_train_lmdb.zip && unzip"):
        ImageFolderDataModule(str(root), num_workers=0).setup("fit")


@pytest.mark.parametrize("kwargs, message", [
    ({"batch_size": 0}, "--data.batch_size must be at least 1 \\(got 0\\)"),
    ({"batch_size": -4}, "--data.batch_size must be at least 1 \\(got -4\\)"),
    ({"isize": 40}, "--data.isize must be a power of 2, at least 16 \\(got 40\\).*try --data.isize 32"),
    ({"isize": 48}, "--data.isize must be a power of 2, at least 16 \\(got 48\\).*try --data.isize 64"),
    ({"isize": 8}, "--data.isize must be a power of 2, at least 16 \\(got 8\\).*try --data.isize 16"),
    ({"in_memory": True, "random_crop": True}, "add --data.random_crop false"),
])
def test_bad_values_are_refused_in_one_line(kwargs, message):
    with pytest.raises(UserError, match=message):
        ImageFolderDataModule(**kwargs).prepare_data()  # checked before any download


def test_a_file_as_data_dir_is_refused(tmp_path):
    (tmp_path / "images.zip").write_bytes(b"PK")
    data = ImageFolderDataModule(str(tmp_path / "images.zip"), num_workers=0)
    with pytest.raises(UserError, match="images.zip is a file, not a folder"):
        data.prepare_data()
    with pytest.raises(UserError, match="images.zip is a file, not a folder"):
        data.setup("fit")


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_a_corrupt_image_is_skipped_with_a_warning_naming_it(tree, damage):
    bad = tree / "x" / "b.jpg"
    bad.write_bytes(bad.read_bytes()[:len(bad.read_bytes()) // 2] if damage == "truncated" else b"")
    data = ImageFolderDataModule(str(tree), isize=16, batch_size=5, num_workers=0)
    with pytest.warns(UserWarning, match=f"skipped: cannot read image {bad}"):
        images = load_all(data)
    assert images.shape == (5, 3, 16, 16)  # the next readable file took its place
    assert colours_of(images) <= {(255, 0, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)}


def test_random_crop_takes_windows_along_the_longer_side(tmp_path):
    stripes = np.zeros((16, 48, 3), dtype=np.uint8)
    stripes[:, :16], stripes[:, 16:32], stripes[:, 32:] = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    (tmp_path / "img").mkdir()
    Image.fromarray(stripes).save(tmp_path / "img" / "s.png")
    data = ImageFolderDataModule(str(tmp_path / "img"), isize=16, batch_size=1, num_workers=0, random_crop=True)
    data.setup("fit")
    torch.manual_seed(0)
    crops = [data.dataset[0] for _ in range(40)]
    full = torch.from_numpy(stripes).permute(2, 0, 1)
    lefts = set()
    for crop in crops:
        left = next(x for x in range(33) if torch.equal(full[:, :, x:x + 16], crop))  # a window of the image
        lefts.add(left)
    assert len(lefts) > 10 and min(lefts) < 8 and max(lefts) > 24  # spread along the whole width


def test_workers_are_capped_at_the_cpus_this_process_may_use(tree, monkeypatch, recwarn):
    import os

    import datamodules.workers as workers
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert workers.max_workers(4) == 2 and workers.max_workers(1) == 1 and workers.max_workers(0) == 0
    data = ImageFolderDataModule(str(tree), isize=16, batch_size=5, num_workers=64)
    data.setup("fit")
    assert data.train_dataloader().num_workers == 2


# --- resizing, crops, lists, samples and batches against values worked out by hand --------------------------------

def pil_square(pixels: np.ndarray, width: int, height: int, left: int, top: int, isize: int) -> np.ndarray:
    """PIL's bilinear resize (antialiased when it shrinks) to width x height, then the isize square at left, top."""
    resized = np.asarray(Image.fromarray(pixels).resize((width, height), Image.BILINEAR))
    return resized[top:top + isize, left:left + isize].astype(int)


# (width, height) of the noise image -> the resized size and the centre square's corner, by hand: the shorter side
# becomes 16, the longer one 16 * long / short truncated, and the crop starts half the excess in
@pytest.mark.parametrize("size, resized, corner", [
    ((100, 60), (26, 16), (5, 0)),  # 16 * 100 / 60 = 26.7: shrunk, the antialiasing shows on noise
    ((60, 100), (16, 26), (0, 5)),
    ((16, 8), (32, 16), (8, 0)),  # as wide as the square but too low: enlarged, not padded
])
def test_an_image_is_resized_by_its_shorter_side_as_pil_does_then_centre_cropped(tmp_path, size, resized, corner):
    pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    (tmp_path / "img").mkdir()
    Image.fromarray(pixels).save(tmp_path / "img" / "noise.png")
    data = ImageFolderDataModule(str(tmp_path / "img"), isize=16, batch_size=1, num_workers=0)
    data.setup("fit")
    got = data.dataset[0].permute(1, 2, 0).numpy().astype(int)
    expected = pil_square(pixels, *resized, *corner, 16)
    assert got.shape == (16, 16, 3) and np.abs(got - expected).max() <= 1  # uint8 rounding


def one_image(folder: Path, pixels: np.ndarray, source: str) -> str:
    """A data_dir holding the one image: a folder with its PNG, or an lmdb database of its PNG bytes (LSUN's format)."""
    (folder / "img").mkdir()
    Image.fromarray(pixels).save(folder / "img" / "s.png")
    if source == "folder":
        return str(folder / "img")
    import lmdb
    env = lmdb.open(str(folder / "db"), map_size=1 << 24)
    with env.begin(write=True) as txn:
        txn.put(b"0", (folder / "img" / "s.png").read_bytes())
    env.close()
    return str(folder / "db")


@pytest.mark.parametrize("source", ["folder", "lmdb"])  # LSUN's are not square either
@pytest.mark.parametrize("size", [(20, 16), (16, 20)])
def test_random_crops_take_every_window_and_only_those(tmp_path, size, source):
    """A 20 x 16 image at 16 px has 20 - 16 + 1 = 5 windows along its longer side: 400 draws find all five."""
    pixels = np.random.default_rng(1).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    data = ImageFolderDataModule(one_image(tmp_path, pixels, source), isize=16, batch_size=1, num_workers=0,
                                 random_crop=True)
    assert data.source == source
    data.setup("fit")
    full = torch.from_numpy(pixels).permute(2, 0, 1)
    windows = [full[:, :, x:x + 16] if size[0] > 16 else full[:, x:x + 16, :] for x in range(5)]
    torch.manual_seed(0)
    found = set()
    for _ in range(400):
        crop = data.dataset[0]
        assert crop.shape == (3, 16, 16)
        found.add(next(x for x, window in enumerate(windows) if torch.equal(window, crop)))
    assert found == {0, 1, 2, 3, 4}


@pytest.mark.parametrize("source", ["folder", "lmdb"])
def test_the_validation_sample_of_random_crops_is_centred_as_val_dirs(tmp_path, source):
    """random_crop is a training augmentation: the validation sample (val/fid's real images) drawn from the training
    set is the same crops at every validation, the centre ones val_dir's images get; training still draws all five."""
    pixels = np.random.default_rng(2).integers(0, 256, (16, 20, 3), dtype=np.uint8)  # 20 wide, 16 high
    data = ImageFolderDataModule(one_image(tmp_path, pixels, source), isize=16, batch_size=1, num_workers=0,
                                 random_crop=True, val_size=1)
    data.setup("fit")
    centre = torch.from_numpy(pixels[:, 2:18]).permute(2, 0, 1)  # (20 - 16) / 2 = 2 columns off each side
    torch.manual_seed(0)
    for _ in range(20):
        (batch,) = list(data.val_dataloader())
        assert torch.equal(batch[0], centre)
    assert len({tuple(data.dataset[0][0, 0].tolist()) for _ in range(100)}) == 5


@pytest.mark.parametrize("skip_header", [False, True])
def test_a_csv_lists_its_rows_in_order_and_skips_only_a_header_row(tree, tmp_path, skip_header):
    rows = ["x/y/c.png,0", "a.png,0", "e.webp,0"]
    csv_file = tmp_path / "files.csv"
    csv_file.write_text("\n".join((["path,label"] if skip_header else []) + rows) + "\n")
    data = ImageFolderDataModule(str(tree), csv_file=str(csv_file), csv_skip_header=skip_header, isize=16,
                                 batch_size=1, num_workers=0)
    data.setup("fit")
    assert data.dataset.files == [tree / "x/y/c.png", tree / "a.png", tree / "e.webp"]


def test_an_unreadable_file_is_replaced_by_the_next_one_in_the_list(tmp_path):
    from datamodules.image_folder import ImageFiles
    for name, colour in (("red", (255, 0, 0)), ("green", (0, 255, 0))):
        solid(colour, size=(16, 16)).save(tmp_path / f"{name}.png")
    (tmp_path / "bad.png").write_bytes(b"")
    red, green, bad = tmp_path / "red.png", tmp_path / "green.png", tmp_path / "bad.png"
    with pytest.warns(UserWarning, match="skipped: cannot read image .*bad.png"):
        assert ImageFiles([red, bad, green], 16)[1][:, 0, 0].tolist() == [0, 255, 0]  # green, not red before it
    with pytest.warns(UserWarning, match="skipped: cannot read image .*bad.png"):
        assert ImageFiles([red, green, bad], 16)[2][:, 0, 0].tolist() == [255, 0, 0]  # after the last: the first


def test_a_tiny_fraction_keeps_one_image(tree):
    data = ImageFolderDataModule(str(tree), sample_fraction=0.01, isize=16, batch_size=1, num_workers=0)
    data.setup("fit")
    assert len(data.dataset) == 1  # round(5 * 0.01) = 0, at least 1


@pytest.mark.parametrize("fraction", [0, 1.5])
def test_a_fraction_outside_0_to_1_is_refused(fraction):
    with pytest.raises(UserError, match=rf"--data.sample_fraction must be in \(0, 1\] \(got {fraction}\)"):
        ImageFolderDataModule(sample_fraction=fraction).prepare_data()


def test_an_existing_train_folder_is_read_even_beside_the_cifar10_python_batches(tmp_path):
    from conftest import make_batches
    make_batches(tmp_path / "cifar10" / "cifar-10-batches-py")  # 30 training images
    (tmp_path / "cifar10" / "train").mkdir()
    for i, colour in enumerate(COLOURS[:3]):
        solid(colour, size=(32, 32)).save(tmp_path / "cifar10" / "train" / f"{i}.png")
    data = ImageFolderDataModule(str(tmp_path / "cifar10" / "train"), isize=32, batch_size=1, num_workers=0)
    assert data.source == "folder"
    data.setup("fit")
    assert len(data.dataset) == 3


def test_a_missing_database_folder_gets_the_download_command_by_its_name_or_its_parent(tmp_path):
    root = tmp_path / "church_outdoor_train_lmdb"  # not under a folder named after the dataset
    with pytest.raises(UserError, match=f"LSUN cannot be downloaded .*curl -L -o {tmp_path}/church_outdoor_train_lmdb"
                                        ".zip http://dl.yf.io/lsun/scenes/church_outdoor_train_lmdb.zip"):
        ImageFolderDataModule(str(root), num_workers=0).setup("fit")
    root = tmp_path / "LSUN" / "bedrooms"  # a folder of any name under one named after it: the bedrooms
    with pytest.raises(UserError, match=f"no LSUN database at {root}.*--data.data_dir {root.parent}/bedroom_train_"):
        ImageFolderDataModule(str(root), num_workers=0).setup("fit")


def test_each_process_must_fill_a_batch(tree):
    from types import SimpleNamespace
    data = ImageFolderDataModule(str(tree), isize=16, batch_size=3, num_workers=0)
    data.trainer = SimpleNamespace(world_size=2)  # two processes need 6 images
    with pytest.raises(UserError, match="5 images cannot fill one batch of 3 per process"):
        data.setup("fit")


def test_the_lmdb_database_is_read_without_writing_to_it_or_its_folder(tmp_path):
    import lmdb

    db = tmp_path / "db"
    env = lmdb.open(str(db), map_size=1 << 24)
    with env.begin(write=True) as txn:
        encoded = io.BytesIO()
        solid(COLOURS[0]).save(encoded, format="png")
        txn.put(b"0", encoded.getvalue())
    env.close()
    (db / "lock.mdb").unlink()  # a database copied without it (a read-only medium cannot take one)
    before = (db / "data.mdb").read_bytes()
    data = ImageFolderDataModule(str(db), isize=16, batch_size=1, num_workers=0)
    data.setup("fit")
    assert colours_of(data.dataset[0][None].float() / 127.5 - 1) == {COLOURS[0]}
    assert [p.name for p in db.iterdir()] == ["data.mdb"] and (db / "data.mdb").read_bytes() == before
    with pytest.raises(lmdb.ReadonlyError):
        data.dataset.open().begin(write=True).put(b"1", b"")


def pixels_of(batch) -> list[tuple]:
    """Each image's top-left pixel: a loader's batch of images, or TensorBatches' (images, labels)."""
    images = batch[0] if isinstance(batch, list | tuple) else batch
    return [tuple(int(v) for v in image[:, 0, 0]) for image in images]


def eight_colours(folder) -> list[tuple]:
    colours = [(i * 30, 255 - i * 30, (i * 70) % 256) for i in range(8)]
    folder.mkdir()
    for i, colour in enumerate(colours):
        solid(colour, size=(16, 16)).save(folder / f"{i}.png")
    return colours


@pytest.mark.parametrize("in_memory", [False, True])
def test_training_batches_are_full_distinct_and_shuffled(tmp_path, in_memory):
    colours = eight_colours(tmp_path / "img")
    data = ImageFolderDataModule(str(tmp_path / "img"), isize=16, batch_size=3, num_workers=0, in_memory=in_memory)
    data.setup("fit")
    batches = [pixels_of(batch) for batch in data.train_dataloader()]
    assert [len(batch) for batch in batches] == [3, 3]  # 8 // 3: the last 2 images wait for the next epoch
    seen = [colour for batch in batches for colour in batch]
    assert len(set(seen)) == 6 and set(seen) <= set(colours)
    assert seen != colours[:6]  # not the files' order


def test_workers_outlive_an_epoch_and_a_validation(tree, monkeypatch):
    import os
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    data = ImageFolderDataModule(str(tree), isize=16, batch_size=2, num_workers=1)
    data.setup("fit")
    assert data.train_dataloader().persistent_workers and data.val_dataloader().persistent_workers


def test_the_validation_sample_comes_from_val_dir_whole_without_a_trainer(tmp_path):
    eight_colours(tmp_path / "train")
    held_out = [(200, 10 * i, 100) for i in range(7)]
    (tmp_path / "val").mkdir()
    for i, colour in enumerate(held_out):
        solid(colour, size=(16, 16)).save(tmp_path / "val" / f"{i}.png")
    data = ImageFolderDataModule(str(tmp_path / "train"), val_dir=str(tmp_path / "val"), val_size=5, isize=16,
                                 batch_size=2, num_workers=0)
    data.setup("fit")
    batches = list(data.val_dataloader())
    assert [len(batch) for batch in batches] == [2, 2, 1]  # 5 of the 7, every one once
    seen = [pixel for batch in batches for pixel in pixels_of(batch)]
    assert len(set(seen)) == 5 and set(seen) <= set(held_out)


def test_a_missing_val_dir_is_named_by_its_own_flag(tmp_path):
    eight_colours(tmp_path / "train")
    data = ImageFolderDataModule(str(tmp_path / "train"), val_dir=str(tmp_path / "nope"), val_size=5, isize=16,
                                 batch_size=2, num_workers=0)
    data.setup("fit")
    with pytest.raises(UserError, match=f"no image folder at {tmp_path / 'nope'}; .* or pass --data.val_dir$"):
        data.val_dataloader()
    (tmp_path / "empty").mkdir()
    data = ImageFolderDataModule(str(tmp_path / "train"), val_dir=str(tmp_path / "empty"), isize=16, batch_size=2,
                                 num_workers=0)
    data.setup("fit")
    with pytest.raises(UserError, match="point --data.val_dir at a folder of images"):
        data.val_dataloader()


def test_the_validation_sample_is_the_same_from_files_or_from_memory(tmp_path):
    eight_colours(tmp_path / "img")
    batches = {}
    for in_memory in (False, True):
        data = ImageFolderDataModule(str(tmp_path / "img"), val_size=5, isize=16, batch_size=2, num_workers=0,
                                     in_memory=in_memory)
        data.setup("fit")
        batches[in_memory] = [pixels_of(batch) for batch in data.val_dataloader()]
    assert [len(batch) for batch in batches[True]] == [2, 2, 1]  # 5 of the 8, every one once
    assert len({pixel for batch in batches[True] for pixel in batch}) == 5
    assert batches[False] == batches[True]  # in the same order


@pytest.mark.parametrize("held_out", ["test", "valid"])
def test_a_dataset_root_with_its_split_folders_warns_that_the_held_out_split_is_trained_on(tmp_path, held_out):
    """data/cifar10 (train/ and test/) as the WGAN's --data.data_dir trained on all 60,000 images without a word, the
    WassersteinGAN reference's --dataset cifar10 on the 50,000 of the training split."""
    for split, colour in (("train", COLOURS[0]), (held_out, COLOURS[1])):
        for k in range(3):
            (tmp_path / split / "cat").mkdir(parents=True, exist_ok=True)
            solid(colour).save(tmp_path / split / "cat" / f"{k}.png")
    with pytest.warns(UserWarning) as caught:
        images = load_all(ImageFolderDataModule(str(tmp_path), isize=16, batch_size=2, num_workers=0))
    assert len(images) == 6 and colours_of(images) == {COLOURS[0], COLOURS[1]}  # still all: it may be meant
    (message,) = [str(w.message) for w in caught if "split folders" in str(w.message)]
    assert message == (f"{tmp_path} holds the split folders train/ and {held_out}/: the GAN trains on all of them; "
                       f"give --data.data_dir {tmp_path / 'train'} to train on the training split alone (as the "
                       f"WassersteinGAN reference's --dataset cifar10 does)")


def test_the_training_split_or_a_plain_tree_does_not_warn_of_split_folders(tmp_path, tree, recwarn):
    for k in range(2):
        (tmp_path / "data" / "train").mkdir(parents=True, exist_ok=True)
        solid(COLOURS[k]).save(tmp_path / "data" / "train" / f"{k}.png")
    load_all(ImageFolderDataModule(str(tmp_path / "data" / "train"), isize=16, batch_size=2, num_workers=0))
    (tmp_path / "only_train" / "train").mkdir(parents=True)  # train/ without a held-out split beside it
    solid(COLOURS[0]).save(tmp_path / "only_train" / "train" / "0.png")
    solid(COLOURS[1]).save(tmp_path / "only_train" / "1.png")
    load_all(ImageFolderDataModule(str(tmp_path / "only_train"), isize=16, batch_size=2, num_workers=0))
    load_all(ImageFolderDataModule(str(tree), isize=16, batch_size=2, num_workers=0))
    assert not [w for w in recwarn if "split folders" in str(w.message)]


def test_a_folder_of_torchvisions_cifar10_batches_names_its_train_path(tmp_path):
    """torchvision's CIFAR10(root) leaves root/cifar-10-batches-py, which <root>/train reads; the error only said to
    point at a folder of images."""
    from conftest import make_batches
    make_batches(tmp_path / "cifar-10-batches-py")
    with pytest.raises(UserError) as refused:
        ImageFolderDataModule(str(tmp_path), isize=32, batch_size=2, num_workers=0).setup("fit")
    assert str(refused.value).endswith(f"under {tmp_path}; it holds torchvision's CIFAR-10 batches: give "
                                       f"--data.data_dir {tmp_path / 'train'} (or test) to read them")
    data = ImageFolderDataModule(str(tmp_path / "train"), isize=32, batch_size=2, num_workers=0)
    assert len(load_all(data)) == 30  # the path it names reads them
