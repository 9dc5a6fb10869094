import numpy as np
import pytest
import torch
from conftest import make_unpaired
from PIL import Image

from datamodules import UnpairedImageDataModule
from datamodules.unpaired import EpochSampler, load_image


def data_module(root, **kwargs):
    args = {"data_dir": str(root), "batch_size": 2, "load_size": 36, "crop_size": 32, "num_workers": 0, **kwargs}
    dm = UnpairedImageDataModule(**args)
    dm.setup("fit")
    return dm


def png(path):
    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)


def test_epoch_is_as_long_as_the_larger_domain(tiny_unpaired):
    dm = data_module(tiny_unpaired)  # 3 A images, 5 + 1 grayscale B images
    assert len(dm.train_set) == 6 and len(dm.train_dataloader()) == 3  # batches of 2


def test_a_images_are_taken_in_turn_and_b_images_drawn_at_random(tmp_path):
    root = make_unpaired(tmp_path / "d", counts=(3, 6, 1, 1), size=(32, 32), gray_in=None)
    dm = data_module(root, load_size=32, flip=False)  # 32px files, 32px crops, no flips: items are the files
    files_a, files_b = [png(f) for f in dm.train_set.files_a], [png(f) for f in dm.train_set.files_b]
    a_seen, b_drawn = [], []
    for epoch in range(4):
        for index in range(6):
            a, b = dm.train_set[index, epoch]
            a_seen.append(next(i for i, f in enumerate(files_a) if torch.equal(f, a)))
            b_drawn.append(next(i for i, f in enumerate(files_b) if torch.equal(f, b)))
    assert a_seen == [i % 3 for i in range(6)] * 4
    assert len(set(b_drawn)) >= 4 and b_drawn[:6] != b_drawn[6:12]  # fresh draws every epoch


def test_an_item_is_the_same_for_the_same_index_and_epoch(tiny_unpaired):
    dm = data_module(tiny_unpaired)
    first, again, next_epoch = dm.train_set[4, 1], dm.train_set[4, 1], dm.train_set[4, 2]
    assert all(torch.equal(x, y) for x, y in zip(first, again, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(first, next_epoch, strict=True))


def test_crops_are_windows_of_the_resized_image_or_its_mirror(tiny_unpaired):
    dm = data_module(tiny_unpaired, load_size=36, crop_size=32)
    full = load_image(dm.train_set.files_a[0], 36)  # the 40x36 file squashed to 36x36
    windows = [full[:, t:t + 32, s:s + 32] for t in range(5) for s in range(5)]
    flips = 0
    for epoch in range(12):
        a, _ = dm.train_set[0, epoch]
        plain, mirrored = (any(torch.equal(x, w) for w in windows) for x in (a, a.flip(-1)))
        assert a.shape == (3, 32, 32) and a.dtype == torch.uint8 and (plain or mirrored)
        flips += mirrored and not plain
    assert 2 <= flips <= 10  # about half of 12


def test_grayscale_files_become_rgb(tiny_unpaired):
    dm = data_module(tiny_unpaired, load_size=40, crop_size=40)
    gray = dm.train_set.files_b.index(tiny_unpaired / "trainB" / "gray.jpg")
    dm.train_set.files_a = dm.train_set.files_b = [dm.train_set.files_b[gray]]
    a, b = dm.train_set[0, 0]
    assert a.shape == (3, 40, 40) and torch.equal(a[0], a[1]) and torch.equal(a[1], a[2])


def test_test_items_are_resized_to_crop_size_and_paired_by_index(tiny_unpaired):
    dm = UnpairedImageDataModule(str(tiny_unpaired), batch_size=1, load_size=36, crop_size=32, num_workers=0)
    dm.setup("test")
    assert len(dm.test_set) == 3  # 2 A, 3 B
    a, b = dm.test_set[2]
    assert a.shape == b.shape == (3, 32, 32)
    assert torch.equal(dm.test_set[2][0], dm.test_set[0][0])  # A wraps round: 2 mod 2


def test_batches_are_scaled_to_minus_one_one(tiny_unpaired):
    dm = data_module(tiny_unpaired)
    a, b = dm.on_after_batch_transfer((torch.tensor([0, 255], dtype=torch.uint8),) * 2, 0)
    assert a.tolist() == [-1.0, 1.0] and a.dtype == torch.float32


def test_two_ranks_take_disjoint_halves_of_one_shuffle(tiny_unpaired):
    dm = data_module(tiny_unpaired)
    ranks = [list(EpochSampler(dm.train_set, 2, rank, seed=0)) for rank in (0, 1)]
    indices = [i for keys in ranks for i, _ in keys]
    assert sorted(indices) == list(range(6)) and all(epoch == 0 for keys in ranks for _, epoch in keys)


def test_missing_folder_names_the_layout(tmp_path):
    make_unpaired(tmp_path / "d")
    (tmp_path / "d" / "trainB").rename(tmp_path / "d" / "B")
    with pytest.raises(FileNotFoundError, match="trainB is missing; an unpaired dataset has trainA, trainB"):
        data_module(tmp_path / "d")


def test_bad_crop_size_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="multiple of 4.*--data.crop_size"):
        UnpairedImageDataModule(crop_size=30, load_size=36)
    with pytest.raises(ValueError, match="load_size 100 is smaller than crop_size 128"):
        UnpairedImageDataModule(crop_size=128, load_size=100)


@pytest.mark.slow
def test_real_horse2zebra_has_the_official_counts_and_its_grayscale_zebras_become_rgb(shared_horse2zebra):
    dm = data_module(shared_horse2zebra, batch_size=1, load_size=286, crop_size=256)
    assert (len(dm.train_set.files_a), len(dm.train_set.files_b)) == (1067, 1334) and len(dm.train_set) == 1334
    gray = [f for f in dm.train_set.files_b if Image.open(f).mode == "L"]
    assert len(gray) == 7
    dm.train_set.files_b = gray
    a, b = dm.train_set[0, 0]
    assert a.shape == b.shape == (3, 256, 256) and torch.equal(b[0], b[1]) and torch.equal(b[1], b[2])
