import hashlib
import os
import shutil
import tarfile
import time
from pathlib import Path

import pytest
import torch
from conftest import CLASSES, http_server, make_batches, make_folders, reply

from callbacks import UserError
from datamodules import CIFAR10DataModule
from datamodules.cifar10 import TensorBatches


def loaded(data_dir, **kwargs):
    data = CIFAR10DataModule(str(data_dir), **kwargs)
    data.prepare_data()
    data.setup("fit")
    return data


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_fastai_folder_layout_loads_as_uint8_tensors(tmp_path, suffix):
    data = loaded(make_folders(tmp_path / "c", per_class=(5, 2), suffix=suffix), download=False)
    assert data.classes == CLASSES
    assert data.train_images.shape == (15, 3, 32, 32) and data.train_images.dtype == torch.uint8
    assert data.train_labels.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    assert data.test_images.shape == (6, 3, 32, 32)
    assert data.val_images is data.test_images  # the seed validates on the test split


def test_png_pixels_arrive_unchanged(tmp_path):
    import numpy as np
    from PIL import Image
    root = make_folders(tmp_path / "c", per_class=(1, 1))
    image = np.array(Image.open(root / "train" / "dog" / "0000.png"))
    data = loaded(root, download=False)
    assert torch.equal(data.train_images[1], torch.from_numpy(image).permute(2, 0, 1))


@pytest.mark.parametrize("suffix, options", [(".bmp", {}), (".webp", {"lossless": True}), (".tif", {}),
                                             (".JPEG", {"quality": 100})])
def test_every_format_the_other_modules_read_is_a_training_image_of_its_class(tmp_path, suffix, options):
    """A .bmp, .webp or .tif in a class folder was left out without a word (only .png/.jpg/.jpeg were taken), while
    the WGAN, the CycleGAN and dl2-classify read them."""
    import numpy as np
    from PIL import Image
    root = make_folders(tmp_path / "c", per_class=(2, 1))
    pixels = np.zeros((32, 32, 3), dtype=np.uint8)
    pixels[..., 2] = 255
    Image.fromarray(pixels).save(root / "train" / "dog" / f"extra{suffix}", **options)
    data = loaded(root, download=False)
    assert data.train_labels.tolist() == [0, 0, 1, 1, 1, 2, 2]  # cat, dog and the extra, frog
    blue = data.train_images[data.train_labels == 1][-1]  # sorted: 0000.png, 0001.png, extra.*
    assert (blue[2] >= 250).all() and (blue[:2] <= 5).all()


def test_hidden_folders_and_files_are_no_class_and_no_image(tmp_path):
    """Jupyter's .ipynb_checkpoints/ in train/ (a notebook that opened the images) became an 11th class, and a
    macOS ._0000.png (AppleDouble: no image) stopped setup; fastai passes hidden files and folders over."""
    import shutil
    root = make_folders(tmp_path / "c", per_class=(2, 1))
    shutil.copytree(root / "train" / "dog", root / "train" / ".ipynb_checkpoints")
    (root / "train" / "cat" / "._0000.png").write_bytes(b"\x00\x05\x16\x07 not an image")
    data = loaded(root, download=False)
    assert data.classes == ["cat", "dog", "frog"] and data.train_labels.tolist() == [0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize("nested", [True, False])
def test_official_python_batches_load(tmp_path, nested):
    folder = make_batches(tmp_path / "c" / "cifar-10-batches-py" if nested else tmp_path / "c")
    data = loaded(tmp_path / "c", download=False)
    assert data.classes == CLASSES
    assert data.train_images.shape == (30, 3, 32, 32) and data.test_images.shape == (6, 3, 32, 32)
    import pickle
    with open(folder / "data_batch_1", "rb") as f:
        first = pickle.load(f, encoding="bytes")[b"data"][0]
    assert torch.equal(data.train_images[0, 0, 0], torch.from_numpy(first[:32]))  # red plane, row 0


def test_val_size_holds_images_out_of_train(tmp_path):
    data = loaded(make_folders(tmp_path / "c", per_class=(10, 2)), val_size=6, download=False)
    assert len(data.train_labels) == 24 and len(data.val_labels) == 6


@pytest.mark.parametrize("val_size", [30, -1])
def test_a_val_size_that_leaves_no_training_image_is_refused_with_the_range(tmp_path, val_size):
    """The message said 'between 0 and 30' and refused 30: the bound it gave was not allowed."""
    with pytest.raises(ValueError, match=rf"--data.val_size must be from 1 to 29 \(got {val_size}\), or 0 to "
                                         r"validate on the test split"):
        loaded(make_folders(tmp_path / "c", per_class=(10, 2)), val_size=val_size, download=False)


def test_missing_data_without_download_says_where_to_put_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="train/<class>/.*--data.data_dir"):
        CIFAR10DataModule(str(tmp_path / "nothing"), download=False).prepare_data()


@pytest.mark.parametrize("split", ["valid", None])
def test_image_folders_without_test_are_refused_not_replaced_by_a_cifar10_download(tmp_path, server, archive, hits,
                                                                                   split):
    """fastai's default layout is train/ + valid/: with download on, CIFAR-10 was fetched into the user's folder and
    trained on in place of their images (cifar-10-batches-py beside train/), saying only 'Downloading CIFAR-10'."""
    root = make_folders(tmp_path / "mine", per_class=(2, 1))
    if split is None:
        shutil.rmtree(root / "test")
    else:
        (root / "test").rename(root / split)
    fix = f"rename {root / split} to {root / 'test'}" if split else "add .*test/<class>/ folders"
    with pytest.raises(UserError, match=f"has train/ but no test/.*{fix}"):
        CIFAR10DataModule(str(root), url=f"{server}/good", md5=hashlib.md5(archive).hexdigest()).prepare_data()
    assert hits == [] and sorted(p.name for p in root.iterdir()) == sorted({"train", split or "train"})


def test_one_splits_class_folders_are_refused_naming_the_folder_above_not_downloaded_into(tmp_path, server, archive,
                                                                                           hits):
    """--data.data_dir data/cifar10/train (torchvision's ImageFolder root) began a CIFAR-10 download into the
    user's folder of class folders."""
    root = make_folders(tmp_path / "mine", per_class=(2, 1))
    train = root / "train"
    hidden = train / ".ipynb_checkpoints"  # a notebook's, no class: not named (it sorts first)
    hidden.mkdir()
    shutil.copy(next((train / CLASSES[0]).iterdir()), hidden / "copy.png")
    before = sorted(p.relative_to(train) for p in train.rglob("*"))
    with pytest.raises(UserError, match=rf"{train} holds class folders of images \(\w+, \w+(, \w+)?(, \.\.\.)?\), one "
                                        rf"split's; give the folder that holds train/<class>/ and test/<class>/: "
                                        rf"--data.data_dir {root}$"):
        CIFAR10DataModule(str(train), url=f"{server}/good", md5=hashlib.md5(archive).hexdigest()).prepare_data()
    assert hits == [] and sorted(p.relative_to(train) for p in train.rglob("*")) == before
    for name in os.listdir(train):  # hidden folders of images alone are no class folders: the data is missing
        if name != hidden.name:
            shutil.rmtree(train / name)
    with pytest.raises(UserError, match=rf"no CIFAR-10 found in {train}: put CIFAR-10"):
        CIFAR10DataModule(str(train), download=False).prepare_data()


def test_empty_class_folder_is_named(tmp_path):
    root = make_folders(tmp_path / "c")
    (root / "train" / "zebra").mkdir()
    with pytest.raises(FileNotFoundError, match="zebra has no .png or .jpg"):
        loaded(root, download=False)


def test_batches_reshuffle_every_epoch_and_ranks_get_disjoint_slices():
    images, labels = torch.arange(20).view(20, 1), torch.arange(20)
    loaders = [TensorBatches(images, labels, 4, shuffle=True, drop_last=True, rank=r, world_size=2) for r in (0, 1)]
    seen = [torch.cat([y for _, y in loader]) for loader in loaders]
    assert len(loaders[0]) == 2 and set(seen[0].tolist()).isdisjoint(seen[1].tolist())
    assert [len(set(labels.tolist())) for labels in seen] == [2 * 4] * 2  # both ranks: 2 batches of 4 images
    loaders[0].set_epoch(1)
    assert not torch.equal(torch.cat([y for _, y in loaders[0]]), seen[0])


@pytest.mark.parametrize("seed, epoch", [(0, 0), (0, 1), (3, 2)])
def test_shuffled_tensor_batches_follow_the_distributed_samplers_order(seed, epoch):
    # one process: the order torch's DistributedSampler (what Lightning gives a shuffled DataLoader under DDP) draws
    # for the same seed and epoch
    from torch.utils.data import DistributedSampler
    labels = torch.arange(20)
    batches = TensorBatches(labels[:, None], labels, 4, shuffle=True, drop_last=True, seed=seed)
    batches.set_epoch(epoch)
    sampler = DistributedSampler(range(20), num_replicas=1, rank=0, shuffle=True, seed=seed, drop_last=True)
    sampler.set_epoch(epoch)
    assert torch.cat([y for _, y in batches]).tolist() == list(sampler)


@pytest.mark.parametrize("ranks", [2, 3])
def test_each_ranks_training_batches_follow_the_distributed_samplers_share(ranks):
    # its rank-interleaved shares (not contiguous slices): after k batches on each rank the shuffle's first k x ranks
    # batches are trained, so a resume on another number of processes can go on with the rest
    from torch.utils.data import DistributedSampler
    labels = torch.arange(23)
    for rank in range(ranks):
        batches = TensorBatches(labels[:, None], labels, 2, shuffle=True, drop_last=True, seed=5, rank=rank,
                                world_size=ranks)
        batches.set_epoch(1)
        sampler = DistributedSampler(range(23), num_replicas=ranks, rank=rank, shuffle=True, seed=5, drop_last=True)
        sampler.set_epoch(1)
        share = list(sampler)
        assert torch.cat([y for _, y in batches]).tolist() == share[:len(share) // 2 * 2]


def test_evaluation_batches_cover_every_image_once_across_ranks():
    labels = torch.arange(11)
    loaders = [TensorBatches(labels[:, None], labels, 4, shuffle=False, drop_last=False, rank=r, world_size=2)
               for r in (0, 1)]
    seen = sorted(torch.cat([y for loader in loaders for _, y in loader]).tolist())
    assert seen == list(range(11)) and [len(loader) for loader in loaders] == [2, 2]


def test_batch_larger_than_the_training_set_fails_clearly(tiny_cifar):
    with pytest.raises(ValueError, match="lower --data.batch_size"):
        loaded(tiny_cifar, download=False).train_dataloader()


@pytest.mark.parametrize("pad, mode, most", [(33, "symmetric", 32), (32, "reflect", 31), (-1, "symmetric", 32)])
def test_padding_wider_than_the_images_allow_is_refused_at_setup(tiny_cifar, pad, mode, most):
    with pytest.raises(UserError, match=f"--data.pad {pad} is outside 0 to {most}, the most {mode} padding of "
                                        f"32-pixel images allows"):
        loaded(tiny_cifar, download=False, pad=pad, pad_mode=mode)
    loaded(tiny_cifar, download=False, pad=most, pad_mode=mode)  # the most is allowed
    loaded(tiny_cifar, download=False, pad=0, pad_mode=mode)  # and none


def test_an_image_of_another_size_is_named_with_the_fix(tiny_cifar):
    from PIL import Image
    odd = sorted((tiny_cifar / "train").glob("*/*.png"))[-1]  # read after 32x32 ones
    Image.new("RGB", (40, 40)).save(odd)
    with pytest.raises(UserError, match=f"{odd} is \\(40, 40\\) pixels, the others \\(32, 32\\); CIFAR-10 images are "
                                        "all 32x32: resize the odd one to the others' size, or remove it"):
        loaded(tiny_cifar, download=False, cache_decoded=False)


@pytest.mark.parametrize("size", [(50, 20), (32, 48)])
@pytest.mark.parametrize("cache", ["none", "decoded before the check"])
def test_images_that_are_not_square_are_refused_even_all_of_one_size(size, cache, tmp_path):
    from PIL import Image

    from datamodules.cifar10 import DECODED, DECODED_VERSION, folder_fingerprint
    for split in ("train", "test"):
        for name in ("cat", "dog"):
            (tmp_path / split / name).mkdir(parents=True)
            Image.new("RGB", size, (60, 0, 0)).save(tmp_path / split / name / "0.png")
        if cache != "none":  # the cache a train.py before this check wrote of the same folder, still matching it
            (tmp_path / DECODED).mkdir(exist_ok=True)
            torch.save({"version": DECODED_VERSION, "fingerprint": folder_fingerprint(tmp_path / split),
                        "images": torch.full((2, 3, size[1], size[0]), 60, dtype=torch.uint8),
                        "labels": torch.tensor([0, 1]), "classes": ["cat", "dog"]}, tmp_path / DECODED / f"{split}.pt")
    first = tmp_path / "train" / "cat" / "0.png"
    with pytest.raises(UserError, match=f"{first} is {size[0]}x{size[1]} pixels \\(width x height\\), not square; "
                                        "CIFAR10DataModule takes square images, as CIFAR-10's 32x32: crop or resize"):
        loaded(tmp_path, download=False, cache_decoded=cache != "none")


def test_training_batches_are_augmented_and_resized_on_transfer(tiny_cifar):
    data = loaded(tiny_cifar, download=False, batch_size=8)

    class FakeTrainer:
        training, global_rank, world_size = True, 0, 1

    data.trainer = FakeTrainer()
    images, labels = next(iter(data.train_dataloader()))
    data.image_size = 28
    out, out_labels = data.on_after_batch_transfer((images, labels), 0)
    assert out.shape == (len(images), 3, 28, 28) and out.dtype == torch.float32
    assert torch.equal(out_labels, labels)


# --- download, against a server on 127.0.0.1 ---------------------------------------------------

@pytest.fixture
def archive(tmp_path):
    make_batches(tmp_path / "src" / "cifar-10-batches-py")
    path = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return path.read_bytes()


@pytest.fixture
def hits():
    return []


@pytest.fixture
def server(archive, hits):
    """Serves /good and /slow (the archive, /slow after 1 s), /cut (the first half, with the full Content-Length)."""
    def do_get(handler):
        hits.append(handler.path)
        if handler.path == "/slow":
            time.sleep(1)
        reply(handler, archive[:len(archive) // 2] if handler.path == "/cut" else archive, length=len(archive))

    with http_server(do_get) as url:
        yield url


def test_download_with_good_checksum_extracts_and_loads(tmp_path, server, archive):
    data = loaded(tmp_path / "d", url=f"{server}/good", md5=hashlib.md5(archive).hexdigest())
    assert (tmp_path / "d" / "cifar-10-batches-py" / "test_batch").is_file()
    assert data.train_images.shape == (30, 3, 32, 32)
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["cifar-10-batches-py"]  # archive removed


def test_download_on_a_python_without_tarfiles_data_filter_extracts_too(tmp_path, server, archive, monkeypatch):
    """Python 3.10.0-3.10.11 and 3.11.0-3.11.3 (Debian 12's 3.11.2) refuse extractall's filter argument: the
    download stopped with a traceback after fetching all 163 MB."""
    monkeypatch.delattr(tarfile, "data_filter")
    extractall = tarfile.TarFile.extractall

    def old_extractall(self, path=".", members=None, *, numeric_owner=False, **kwargs):
        assert not kwargs, f"unexpected keyword arguments {kwargs}"  # as those Pythons: a TypeError
        return extractall(self, path, members, numeric_owner=numeric_owner)
    monkeypatch.setattr(tarfile.TarFile, "extractall", old_extractall)
    data = loaded(tmp_path / "d", url=f"{server}/good", md5=hashlib.md5(archive).hexdigest())
    assert data.train_images.shape == (30, 3, 32, 32)


@pytest.mark.parametrize("member", ["../outside.txt", "/tmp/absolute.txt", "link"])
def test_without_the_data_filter_an_archive_reaching_outside_is_refused(tmp_path, monkeypatch, member):
    import io

    from datamodules.download import DownloadError, extract_tar
    monkeypatch.delattr(tarfile, "data_filter")
    path = tmp_path / "evil.tar"
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo(member)
        if member == "link":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
        else:
            info.size = 4
            tar.addfile(info, io.BytesIO(b"evil"))
    with tarfile.open(path) as tar, pytest.raises(DownloadError, match=f"holds '{member}', which is not a plain file"):
        extract_tar(tar, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "outside.txt").exists()


@pytest.mark.parametrize("path, md5, message", [
    ("/good", "0" * 32, "checksum mismatch"),
    ("/cut", None, "interrupted"),
])
def test_failed_download_leaves_no_files(tmp_path, server, archive, path, md5, message):
    md5 = md5 or hashlib.md5(archive).hexdigest()
    with pytest.raises(UserError, match=message) as error:
        CIFAR10DataModule(str(tmp_path / "d" / "cifar10"), url=server + path, md5=md5).prepare_data()
    assert error.value.__cause__ is None and error.value.__suppress_context__  # one message, no chained traceback
    assert not (tmp_path / "d").exists()  # neither d/ nor d/cifar10 nor a lock or temporary folder was left


def test_offline_download_says_where_to_put_the_data_in_one_line_and_creates_nothing(tmp_path):
    with pytest.raises(UserError, match="Offline.*train/<class>") as error:
        CIFAR10DataModule(str(tmp_path / "data" / "cifar10"), url="http://127.0.0.1:9/none").prepare_data()
    assert "\n" not in str(error.value) and error.value.__cause__ is None and error.value.__suppress_context__
    assert list(tmp_path.iterdir()) == []


def test_mistyped_data_dir_without_download_creates_nothing(tmp_path):
    with pytest.raises(UserError, match="no CIFAR-10 found in .*cifra10"):
        CIFAR10DataModule(str(tmp_path / "data" / "cifra10"), download=False).prepare_data()
    assert list(tmp_path.iterdir()) == []


def test_data_dir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "cifar10").write_text("not a folder")
    for path in (tmp_path / "cifar10", tmp_path / "cifar10" / "inner"):
        with pytest.raises(UserError, match="cifar10 is a file, not a folder"):
            CIFAR10DataModule(str(path)).prepare_data()


@pytest.mark.parametrize("name, value", [("batch_size", 0), ("batch_size", -4), ("eval_batch_size", 0)])
def test_batch_sizes_below_one_are_refused(name, value):
    import inspect
    default = inspect.signature(CIFAR10DataModule).parameters[name].default  # the example the message gives
    with pytest.raises(UserError, match=f"--data.{name} must be at least 1 \\(got {value}\\); e.g. --data.{name} "
                                        f"{default}$"):
        CIFAR10DataModule(**{name: value}).prepare_data()  # checked before any download


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_a_corrupt_image_is_named_at_setup(tmp_path, damage):
    root = make_folders(tmp_path / "c", suffix=".jpg")
    bad = root / "test" / "dog" / "0001.jpg"
    bad.write_bytes(bad.read_bytes()[:len(bad.read_bytes()) // 2] if damage == "truncated" else b"")
    with pytest.raises(UserError, match=f"cannot read image {bad}.*delete or replace the file"):
        loaded(root, download=False)


def prepare_as_one_of_two(tmp_path, i: int, url: str, md5: str) -> None:
    """One of the two processes: says it is ready, waits for the go, prepares and loads the folder, writes its sizes."""
    torch.set_num_threads(1)  # a forked child, as DataLoader's workers are
    (tmp_path / f"ready{i}").touch()
    while not (tmp_path / "go").exists():
        time.sleep(0.01)
    data = loaded(tmp_path / "data" / "cifar10", url=url, md5=md5)
    (tmp_path / f"sizes{i}").write_text(f"{len(data.train_labels)} {len(data.test_labels)}")


def test_two_processes_preparing_one_folder_download_once_and_both_load_it_whole(tmp_path, server, archive,
                                                                                 hits):
    # two processes forked from this one (a fresh interpreter each cost ~7 s of imports): the lock is between
    # processes (FileLock, fcntl), and each child holds its own copy of everything
    import multiprocessing
    procs = [multiprocessing.get_context("fork").Process(
        target=prepare_as_one_of_two, args=(tmp_path, i, f"{server}/slow", hashlib.md5(archive).hexdigest()))
        for i in range(2)]
    for proc in procs:
        proc.start()
    try:
        deadline = time.monotonic() + 120
        while not all((tmp_path / f"ready{i}").exists() for i in range(2)) and time.monotonic() < deadline:
            time.sleep(0.05)
        (tmp_path / "go").touch()  # both start preparing at the same moment
        for proc in procs:
            proc.join(timeout=120)
        assert [proc.exitcode for proc in procs] == [0, 0]  # a child's traceback is in the captured stderr
    finally:
        for proc in procs:
            proc.kill()
    assert [(tmp_path / f"sizes{i}").read_text() for i in range(2)] == ["30 6"] * 2  # 5 batches of 6, a test of 6
    assert hits == ["/slow"]  # one download; the other process waited at the lock and found the data
    assert sorted(p.name for p in (tmp_path / "data" / "cifar10").iterdir()) == ["cifar-10-batches-py"]


@pytest.mark.slow
def test_real_cifar10_loads_whole_and_a_short_training_beats_chance(shared_cifar10, tmp_path):
    import lightning as L

    from lightning_modules import DarknetClassifier
    data = loaded(shared_cifar10, download=False, batch_size=64)
    assert data.classes == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                            "truck"]
    assert data.train_images.shape == (50_000, 3, 32, 32) and data.test_images.shape == (10_000, 3, 32, 32)
    assert torch.bincount(data.train_labels).tolist() == [5000] * 10
    torch.manual_seed(0)
    trainer = L.Trainer(accelerator="cpu", max_steps=150, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, limit_val_batches=0, enable_model_summary=False,
                        default_root_dir=tmp_path)  # the test's figures and CSVs land there
    model = DarknetClassifier(num_blocks=[1, 1, 1], nf=16, lr=0.2, one_cycle=(20, 20, 0.95, 0.85))
    trainer.fit(model, datamodule=data)
    accuracy = trainer.test(model, datamodule=data, verbose=False)[0]["test/acc"]
    # chance is 0.10; labels mixed up by the loader stay there. 150 steps reached 0.243 on one CPU and above 0.25
    # on another (the kernels' float order differs), so the bar is twice chance
    assert accuracy > 0.2


def test_a_killed_attempts_partial_download_is_removed_and_a_live_ones_kept(tmp_path, server, archive):
    import os
    import socket
    import subprocess
    import sys
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    root = tmp_path / "d"
    host = socket.gethostname()
    killed = root / f".cifar-10-batches-py.{host}-{dead.stdout.strip()}.abc123.part"
    live = root / f".cifar-10-batches-py.{host}-{os.getpid()}.def456.part"
    for folder in (killed, live):
        folder.mkdir(parents=True)
        (folder / "cifar-10-python.tar.gz").write_bytes(archive[:100])
    loaded(root, url=f"{server}/good", md5=hashlib.md5(archive).hexdigest())
    assert not killed.exists() and live.exists()


# -- decoded folders kept in <data_dir>/.decoded ----------------------------------------------------------------
def pil_pixels(path):
    """The image decoded by PIL directly: the value the cache must give back."""
    import numpy as np
    from PIL import Image
    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)


def no_decoding(monkeypatch):
    def refuse(path):
        raise AssertionError(f"{path} decoded again")
    monkeypatch.setattr("datamodules.cifar10.read_rgb", refuse)


def test_image_folders_are_decoded_once_then_read_from_the_cache(tmp_path, monkeypatch):
    root = make_folders(tmp_path / "c", per_class=(3, 2), suffix=".jpg")
    first = loaded(root, download=False)
    assert sorted(p.name for p in (root / ".decoded").iterdir()) == ["test.pt", "train.pt"]
    no_decoding(monkeypatch)
    second = loaded(root, download=False)
    assert torch.equal(second.train_images, first.train_images) and torch.equal(second.test_labels, first.test_labels)
    assert second.classes == CLASSES
    assert torch.equal(second.train_images[4], pil_pixels(root / "train" / "dog" / "0001.jpg"))


def test_prepare_and_setup_in_one_process_decode_each_image_once(tmp_path, monkeypatch):
    import datamodules.cifar10 as cifar10
    root = make_folders(tmp_path / "c", per_class=(3, 2))
    calls = []
    real = cifar10.read_rgb
    monkeypatch.setattr(cifar10, "read_rgb", lambda path: calls.append(path) or real(path))
    loaded(root, download=False)
    assert len(calls) == len(set(calls)) == 3 * (3 + 2)


@pytest.mark.parametrize("change", ["rewritten", "added", "removed", "new class"])
def test_a_changed_folder_is_decoded_again(tmp_path, change):
    import os
    import shutil
    root = make_folders(tmp_path / "c", per_class=(3, 2))
    loaded(root, download=False)
    cat, dog = root / "train" / "cat", root / "train" / "dog"
    if change == "rewritten":  # another image's pixels under the same name, with a later modification time
        shutil.copyfile(dog / "0000.png", cat / "0000.png")
        os.utime(cat / "0000.png", ns=(time.time_ns() + 10**9,) * 2)
    elif change == "added":
        shutil.copyfile(dog / "0000.png", cat / "0099.png")
    elif change == "removed":
        (cat / "0002.png").unlink()
    else:
        shutil.copytree(dog, root / "train" / "emu")
        shutil.copytree(root / "test" / "dog", root / "test" / "emu")
    data = loaded(root, download=False)
    files = sorted(root.glob("train/*/*.png"))
    assert len(data.train_labels) == len(files)
    assert all(torch.equal(image, pil_pixels(f)) for image, f in zip(data.train_images, files, strict=True))
    assert data.classes == sorted(p.name for p in (root / "train").iterdir())


@pytest.mark.parametrize("damage", ["truncated", "foreign"])
def test_a_damaged_cache_file_is_decoded_over(tmp_path, damage):
    root = make_folders(tmp_path / "c", per_class=(3, 2))
    loaded(root, download=False)
    cache = root / ".decoded" / "train.pt"
    if damage == "truncated":
        cache.write_bytes(cache.read_bytes()[:100])
    else:
        torch.save({"images": torch.zeros(1)}, cache)
    data = loaded(root, download=False)
    assert torch.equal(data.train_images[0], pil_pixels(root / "train" / "cat" / "0000.png"))
    assert torch.load(cache, weights_only=True)["images"].shape == (9, 3, 32, 32)  # written again, whole


def test_a_cache_file_that_would_run_code_is_not_unpickled_but_decoded_over(tmp_path):
    """The cache is read as tensors only (weights_only): a .pt put into a shared data folder cannot run code here."""
    root = make_folders(tmp_path / "c", per_class=(3, 2))
    marker = tmp_path / "code_ran"

    class RunsCode:
        def __reduce__(self):
            return Path.touch, (marker,)

    (root / ".decoded").mkdir()
    torch.save({"version": 1, "images": RunsCode()}, root / ".decoded" / "train.pt")
    data = loaded(root, download=False)
    assert not marker.exists()
    assert torch.equal(data.train_images[0], pil_pixels(root / "train" / "cat" / "0000.png"))


def test_a_file_beside_the_class_folders_is_left_out_of_the_cache_s_fingerprint(tmp_path, monkeypatch):
    root = make_folders(tmp_path / "c", per_class=(3, 2))
    (root / "train" / "README.txt").write_text("not a class")
    first = loaded(root, download=False)
    no_decoding(monkeypatch)
    assert torch.equal(loaded(root, download=False).train_images, first.train_images) and first.classes == CLASSES


def test_a_folder_that_cannot_hold_the_cache_still_loads_with_a_warning(tmp_path, monkeypatch):
    import datamodules.cifar10 as cifar10
    root = make_folders(tmp_path / "c", per_class=(3, 2))
    (root / ".decoded").write_text("a file where the cache folder goes")
    calls, real = [], cifar10.read_rgb
    monkeypatch.setattr(cifar10, "read_rgb", lambda path: calls.append(path) or real(path))
    with pytest.warns(UserWarning, match=r"could not keep the decoded train images in .*every run decodes"):
        data = loaded(root, download=False)
    assert len(calls) == 3 * (3 + 2)  # setup took prepare_data's pixels, not a second decoding
    assert torch.equal(data.train_images[8], pil_pixels(root / "train" / "frog" / "0002.png"))
    assert not list(root.glob(".decoded*/*")) and not list(root.glob(".*.tmp"))


def test_cache_decoded_false_writes_nothing(tmp_path):
    root = make_folders(tmp_path / "c", per_class=(3, 2))
    data = loaded(root, download=False, cache_decoded=False)
    assert len(data.train_labels) == 9 and not (root / ".decoded").exists()
