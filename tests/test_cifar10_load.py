"""CIFAR10DataModule's pixels and labels as loaded, against what the test wrote: the official python batches (R, G
and B planes of row-major pixels per row), the validation split the seed draws, the evaluation loaders' order, the
copies on the training device."""

import pickle
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from callbacks import UserError
from datamodules import CIFAR10DataModule

NAMES = ["airplane", "bird", "ship"]


def write_batches(folder, sizes=(1, 2, 3, 4, 5), test_size=3, seed=0):
    """The python batches of images drawn here: each row the R plane then G then B, each plane row by row (the
    dataset's page), labels as a list of ints. Returns the (N, 3, 32, 32) train and test images and labels."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    written = {}
    for name, size in [*((f"data_batch_{i + 1}", n) for i, n in enumerate(sizes)), ("test_batch", test_size)]:
        images = rng.integers(0, 256, size=(size, 3, 32, 32), dtype=np.uint8)
        labels = [int(x) for x in rng.integers(0, len(NAMES), size)]
        rows = np.stack([np.concatenate([image[c].ravel() for c in range(3)]) for image in images])
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": rows,
                         b"filenames": [f"{name}_{i}.png".encode() for i in range(size)]}, f)
        written[name] = (images, labels)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"num_cases_per_batch": 10000, b"label_names": [n.encode() for n in NAMES],
                     b"num_vis": 3072}, f)
    train = [written[f"data_batch_{i}"] for i in range(1, 6)]
    return (torch.from_numpy(np.concatenate([images for images, _ in train])),
            torch.tensor([label for _, labels in train for label in labels]),
            torch.from_numpy(written["test_batch"][0]), torch.tensor(written["test_batch"][1]))


def loaded(data_dir, **kwargs):
    data = CIFAR10DataModule(str(data_dir), download=False, **kwargs)
    data.prepare_data()
    data.setup("fit")
    return data


def test_the_python_batches_give_every_image_and_label_of_the_five_batches_in_order(tmp_path):
    train_images, train_labels, test_images, test_labels = write_batches(tmp_path / "c" / "cifar-10-batches-py")
    data = loaded(tmp_path / "c")
    assert data.classes == NAMES and data.num_classes == 3
    assert data.train_images.dtype == torch.uint8 and torch.equal(data.train_images, train_images)  # 15 = 1 + ... + 5
    assert torch.equal(data.train_labels, train_labels)
    assert torch.equal(data.test_images, test_images) and torch.equal(data.test_labels, test_labels)
    assert data.val_images is data.test_images and data.val_labels is data.test_labels


@pytest.mark.parametrize("missing", ["test_batch", "data_batch_1"])
def test_python_batches_without_the_first_or_the_test_batch_are_no_data_set(tmp_path, missing):
    folder = tmp_path / "c" / "cifar-10-batches-py"
    write_batches(folder)
    (folder / missing).unlink()
    with pytest.raises(UserError, match="no CIFAR-10 found in"):
        CIFAR10DataModule(str(tmp_path / "c"), download=False).prepare_data()


@pytest.mark.parametrize("present", ["train", "test"])
def test_one_image_split_folder_alone_is_no_data_set(tmp_path, present):
    from conftest import make_folders
    make_folders(tmp_path / "c", per_class=(1, 1))
    absent = {"train": "test", "test": "train"}[present]
    for file in (tmp_path / "c" / absent).rglob("*.png"):
        file.unlink()
    for folder in sorted((tmp_path / "c" / absent).rglob("*"), reverse=True) + [tmp_path / "c" / absent]:
        folder.rmdir()
    with pytest.raises(UserError, match="no CIFAR-10 found in"):
        CIFAR10DataModule(str(tmp_path / "c"), download=False).prepare_data()


@pytest.mark.parametrize("seed", [0, 5])
def test_the_validation_split_is_the_seeds_permutations_first_val_size_training_images(tmp_path, seed):
    train_images, train_labels, test_images, _ = write_batches(tmp_path / "c")
    data = loaded(tmp_path / "c", val_size=4, seed=seed)
    order = torch.randperm(15, generator=torch.Generator().manual_seed(seed))  # the documented seed of the split
    assert torch.equal(data.val_images, train_images[order[:4]])
    assert torch.equal(data.val_labels, train_labels[order[:4]])
    assert torch.equal(data.train_images, train_images[order[4:]])
    assert torch.equal(data.train_labels, train_labels[order[4:]])
    assert torch.equal(data.test_images, test_images)  # the test split is left whole
    # from one image held out to one image left for training
    assert [len(loaded(tmp_path / "c", val_size=n, seed=seed).train_labels) for n in (1, 14)] == [14, 1]


def test_the_evaluation_loaders_give_every_image_once_in_order(tmp_path):
    train_images, train_labels, test_images, test_labels = write_batches(tmp_path / "c", test_size=7)
    data = loaded(tmp_path / "c", val_size=5, eval_batch_size=3, batch_size=2)
    for loader, images, labels in ((data.val_dataloader(), data.val_images, data.val_labels),
                                   (data.test_dataloader(), test_images, test_labels)):
        batches = list(loader)
        assert [len(y) for _, y in batches] == [3] * (len(labels) // 3) + [len(labels) % 3] * bool(len(labels) % 3)
        assert torch.equal(torch.cat([x for x, _ in batches]), images)  # not shuffled, nothing dropped
        assert torch.equal(torch.cat([y for _, y in batches]), labels)
    # without a trainer the training loader is one process's: every batch full, each image at most once
    train = list(data.train_dataloader())
    seen = torch.cat([y for _, y in train])
    assert [len(y) for _, y in train] == [2] * 5 and len(seen) == 10
    assert sorted(torch.cat([x.flatten(1)[:, :8] for x, _ in train]).tolist()) == sorted(
        data.train_images.flatten(1)[:, :8].tolist())


def test_a_fit_reshuffles_the_training_batches_every_epoch_through_the_sampler(tmp_path):
    """Lightning calls set_epoch on a loader's `sampler` (fabric's _set_sampler_epoch, at every epoch's start)."""
    from lightning.fabric.utilities.data import _set_sampler_epoch
    write_batches(tmp_path / "c")
    data = loaded(tmp_path / "c", batch_size=5, seed=3)
    loader = data.train_dataloader()
    orders = []
    for epoch in (0, 1):
        _set_sampler_epoch(loader, epoch)
        orders.append(torch.cat([y for _, y in loader]))
        expected = torch.randperm(15, generator=torch.Generator().manual_seed(3 + epoch))
        assert torch.equal(orders[-1], data.train_labels[expected])
    assert not torch.equal(*orders)


def test_a_batch_size_of_one_is_accepted(tmp_path):
    write_batches(tmp_path / "c")
    data = loaded(tmp_path / "c", batch_size=1, eval_batch_size=1)
    assert len(data.train_dataloader()) == 15 and len(data.test_dataloader()) == 3


def test_on_device_copies_hold_the_same_pixels_and_labels(tmp_path):
    """cpu:0 is another device than cpu to the module (torch.device("cpu") != torch.device("cpu", 0)), so copies
    are made, and their values can be read."""
    write_batches(tmp_path / "c", test_size=4)
    data = loaded(tmp_path / "c", val_size=3, batch_size=4, eval_batch_size=4, on_device=True)
    data.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device("cpu", 0)), global_rank=0,
                                   world_size=1)
    for loader, images, labels in ((data.val_dataloader(), data.val_images, data.val_labels),
                                   (data.test_dataloader(), data.test_images, data.test_labels)):
        assert torch.equal(loader.images, images) and torch.equal(loader.labels, labels)
        assert loader.images is not images  # a copy
    first, second = data.train_dataloader(), data.train_dataloader()
    assert first.images is second.images and first.labels is second.labels  # copied once
    assert torch.equal(first.images, data.train_images) and torch.equal(first.labels, data.train_labels)
    # a tensor already on the device is taken as it is
    on_cpu = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device("cpu")), global_rank=0, world_size=1)
    data.trainer = on_cpu
    assert data.train_dataloader().images is data.train_images


def test_the_second_image_of_another_size_is_named_too(tmp_path):
    """The size is compared with the first image read: here the only one before it."""
    from PIL import Image
    for split in ("train", "test"):
        for name, count in (("cat", 2), ("dog", 1)):
            (tmp_path / "c" / split / name).mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (32, 32), (10 * i, 0, 0)).save(tmp_path / "c" / split / name / f"{i}.png")
    odd = tmp_path / "c" / "train" / "cat" / "1.png"
    Image.new("RGB", (30, 30)).save(odd)
    with pytest.raises(UserError, match=f"{odd} is \\(30, 30\\) pixels, the others \\(32, 32\\)"):
        loaded(tmp_path / "c", cache_decoded=False)


def test_tensor_batches_given_flip_bits_mirror_those_images_in_even_epochs_and_the_others_in_odd_ones():
    from datamodules.cifar10 import TensorBatches
    images = torch.arange(4 * 2 * 3, dtype=torch.uint8).view(4, 1, 2, 3)  # no image is its own mirror
    bits = torch.tensor([True, False, False, True])
    batches = TensorBatches(images, torch.arange(4), 3, shuffle=False, drop_last=False, flipped_first=bits)
    for epoch in (0, 1, 2):
        batches.set_epoch(epoch)
        mirrored = bits if epoch % 2 == 0 else ~bits
        expected = torch.stack([image.flip(-1) if m else image for image, m in zip(images, mirrored, strict=True)])
        assert torch.equal(torch.cat([x for x, _ in batches]), expected)


def test_a_racing_process_that_unpacked_the_batches_first_spares_the_download(tmp_path, monkeypatch):
    """The layout is checked again under prepare's lock: a second process that waited there finds the first one's
    batches in place and downloads nothing (its address here leads nowhere)."""
    import datamodules.cifar10 as cifar10
    real_prepare = cifar10.prepare

    def other_process_first(target, *args, **kwargs):
        write_batches(tmp_path / "c" / "cifar-10-batches-py")  # renamed into place while this one waited
        return real_prepare(target, *args, **kwargs)

    monkeypatch.setattr(cifar10, "prepare", other_process_first)
    data = CIFAR10DataModule(str(tmp_path / "c"), url="http://127.0.0.1:9/none")
    data.prepare_data()
    data.setup("fit")
    assert len(data.train_labels) == 15


def test_a_batch_at_the_image_size_is_passed_on_as_it_is_and_others_resized(tmp_path):
    write_batches(tmp_path / "c")
    data = loaded(tmp_path / "c")
    batch = torch.rand(2, 3, 32, 32)
    assert data._sized(batch) is batch  # no resizing pass at every step
    data.image_size = 28
    assert data._sized(batch).shape == (2, 3, 28, 28)


def test_images_of_another_size_than_image_size_are_named_with_the_option_that_keeps_them(tmp_path, recwarn):
    """A fastai user's folder of 48px images trained at the default 32px, resized in each batch, without a word; the
    checkpoint then told dl2-classify 32 as well."""
    from PIL import Image
    for split in ("train", "test"):
        for name in ("cat", "dog"):
            (tmp_path / "pets" / split / name).mkdir(parents=True)
            for k in range(2):
                Image.new("RGB", (48, 48), (k * 90, 20, 200)).save(tmp_path / "pets" / split / name / f"{k}.png")
    data = CIFAR10DataModule(str(tmp_path / "pets"), batch_size=2, cache_decoded=False)
    data.setup("fit")
    (message,) = [str(w.message) for w in recwarn if "pixels" in str(w.message)]
    assert message == (f"the images in {tmp_path / 'pets'} are 48x48 pixels: each batch is resized to "
                       f"--data.image_size 32, the size the net trains at; give --data.image_size 48 to train at "
                       f"theirs")
    recwarn.clear()
    CIFAR10DataModule(str(tmp_path / "pets"), batch_size=2, cache_decoded=False,
                      image_size=48).setup("fit")
    write_batches(tmp_path / "c")
    loaded(tmp_path / "c")  # CIFAR-10's own 32px at the default
    assert not [w for w in recwarn if "pixels" in str(w.message)]
