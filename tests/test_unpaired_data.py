import numpy as np
import pytest
import torch
from conftest import http_server, make_unpaired, reply
from PIL import Image
from torchvision.transforms.v2.functional import InterpolationMode, resize

from callbacks import UserError
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


def test_images_in_subfolders_and_tiff_and_ppm_files_are_read_as_the_reference_reads_them(tiny_unpaired):
    rng = np.random.default_rng(0)
    (tiny_unpaired / "trainA" / "more" / "deeper").mkdir(parents=True)
    written = {}
    for name in ("more/x.tif", "more/deeper/y.ppm", "z.TIFF"):
        pixels = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tiny_unpaired / "trainA" / name)
        written[tiny_unpaired / "trainA" / name] = torch.from_numpy(pixels).permute(2, 0, 1)
    files = data_module(tiny_unpaired).train_set.files_a
    assert set(written) <= set(files) and files == sorted(files)
    for path, pixels in written.items():
        assert torch.equal(load_image(path, 40), pixels)  # decoded losslessly, at its size


def test_a_symlinked_sub_folder_of_a_domain_is_read(tmp_path):
    """Path.rglob (Python < 3.13) passed symlinked folders over without a word: trainA/more -> elsewhere was left
    out of training."""
    root = make_unpaired(tmp_path / "d", counts=(2, 2, 1, 1), size=(32, 32), gray_in=None)
    (tmp_path / "more").mkdir()
    for i in range(3):
        Image.new("RGB", (32, 32), (0, 0, 255)).save(tmp_path / "more" / f"m{i}.png")
    (root / "trainA" / "more").symlink_to(tmp_path / "more", target_is_directory=True)
    dm = data_module(root)
    assert len(dm.train_set.files_a) == 5 and len(dm.train_set) == 5
    assert sum(f.parent.name == "more" for f in dm.train_set.files_a) == 3


def test_test_loaders_hold_each_domain_image_once_at_crop_size(tmp_path):
    root = make_unpaired(tmp_path / "d", counts=(1, 1, 5, 3), size=(36, 40), gray_in="testB")  # 5 A, 3 + 1 B
    dm = UnpairedImageDataModule(str(root), batch_size=2, load_size=36, crop_size=32, num_workers=0)
    dm.setup("test")
    loaders = dm.test_dataloader()
    assert len(loaders) == 2  # loader 0 is testA, loader 1 testB: no pairing, so no image stands in twice
    for loader, side, count in zip(loaders, "AB", (5, 4), strict=True):
        files = sorted((root / f"test{side}").iterdir())
        expected = [resize(png(f), [32, 32], InterpolationMode.BICUBIC, antialias=True) for f in files]
        images = torch.cat(list(loader))
        assert len(files) == count and images.shape == (count, 3, 32, 32)
        assert all(torch.equal(x, y) for x, y in zip(images, expected, strict=True))


def test_test_images_are_shared_between_ranks_without_repeats(tiny_unpaired):
    class Trainer:  # what the loaders read of a DDP trainer
        world_size = 2

    dm = UnpairedImageDataModule(str(tiny_unpaired), batch_size=1, load_size=36, crop_size=32, num_workers=0)
    shares = []
    for rank in (0, 1):
        dm.trainer = type("Rank", (Trainer,), {"global_rank": rank})()
        shares.append([list(loader.sampler) for loader in dm.test_dataloader()])
    assert [shares[0][0], shares[1][0]] == [[0], [1]]  # 2 A images: one each
    assert [shares[0][1], shares[1][1]] == [[0, 2], [1]]  # 3 B images: 2 + 1, not padded to 2 + 2


def test_batches_are_scaled_to_minus_one_one(tiny_unpaired):
    dm = data_module(tiny_unpaired)
    a, b = dm.on_after_batch_transfer((torch.tensor([0, 255], dtype=torch.uint8),) * 2, 0)
    assert a.tolist() == [-1.0, 1.0] and a.dtype == torch.float32


def test_two_ranks_take_disjoint_halves_of_one_shuffle(tiny_unpaired):
    dm = data_module(tiny_unpaired)
    ranks = [list(EpochSampler(dm.train_set, 2, rank, seed=0)) for rank in (0, 1)]
    indices = [i for keys in ranks for i, _ in keys]
    assert sorted(indices) == list(range(6)) and all(epoch == 0 for keys in ranks for _, epoch in keys)


def windows(image, size):
    """Every size x size window of a (C, H, W) image and of its mirror."""
    height, width = image.shape[-2:]
    return [x[:, t:t + size, s:s + size] for x in (image, image.flip(-1))
            for t in range(height - size + 1) for s in range(width - size + 1)]


@pytest.mark.parametrize("size, scaled", [((40, 80), (48, 32)),  # wide 80x40: width 48, height 24 -> crop_size 32
                                          ((80, 40), (48, 96))])  # tall 40x80: width 48, height 96
def test_scale_width_and_crop_keeps_the_aspect_and_crops_from_the_scaled_image(tmp_path, size, scaled):
    root = make_unpaired(tmp_path / "d", counts=(1, 1, 1, 1), size=size, gray_in=None)
    dm = data_module(root, load_size=48, crop_size=32, preprocess="scale_width_and_crop")
    width, height = scaled  # by the reference's rule: width load_size, height max(load_size * h / w, crop_size)
    expected = resize(png(dm.train_set.files_a[0]), [height, width], InterpolationMode.BICUBIC, antialias=True)
    assert expected.shape[-2:] == (height, width)
    crops = {}
    for epoch in range(16):
        a, _ = dm.train_set[0, epoch]
        assert a.shape == (3, 32, 32) and any(torch.equal(a, w) for w in windows(expected, 32))
        crops[a.numpy().tobytes()] = True
    assert len(crops) > 4  # random positions, not one fixed window


def test_crop_cuts_from_the_file_as_it_is_and_names_a_file_too_small(tmp_path):
    root = make_unpaired(tmp_path / "d", counts=(1, 1, 1, 1), size=(36, 40), gray_in=None)  # 40 wide, 36 high
    dm = data_module(root, load_size=16, crop_size=32, preprocess="crop")  # load_size plays no part
    original = png(dm.train_set.files_a[0])
    for epoch in range(8):
        a, _ = dm.train_set[0, epoch]
        assert a.shape == (3, 32, 32) and any(torch.equal(a, w) for w in windows(original, 32))
    with pytest.raises(UserError, match=r"2 training images are smaller than crop_size 40.*000.png \(40x36\)"
                                        r".*resize_and_crop"):
        data_module(root, load_size=16, crop_size=40, preprocess="crop")  # said at setup, before any training
    dm = data_module(root, load_size=16, crop_size=32, preprocess="crop")
    Image.fromarray(np.zeros((24, 30, 3), dtype=np.uint8)).save(dm.train_set.files_a[0])  # shrunk after setup
    with pytest.raises(UserError, match=r"1 training image is smaller than crop_size 32.*000.png \(30x24\)"):
        dm.train_set[0, 0]


def test_crop_takes_a_file_of_exactly_crop_size_and_files_that_are_not_images_are_ignored(tmp_path):
    root = make_unpaired(tmp_path / "d", counts=(1, 1, 1, 1), size=(36, 40), gray_in=None)  # 40 wide, 36 high
    (root / "trainA" / "notes.txt").write_text("not an image")
    (root / "trainA" / "thumbs").mkdir()  # a folder with an image-like name is no file
    (root / "trainA" / "folder.png").mkdir()
    dm = data_module(root, load_size=16, crop_size=36, preprocess="crop")  # the shorter side is exactly 36
    assert [f.name for f in dm.train_set.files_a] == ["000.png"]
    assert dm.train_set[0, 0][0].shape == (3, 36, 36)


def test_max_dataset_size_takes_the_first_training_images_of_each_domain(tiny_unpaired):
    dm = data_module(tiny_unpaired, max_dataset_size=2)  # 3 A, 6 B, 2 testA, 3 testB
    first_two = [sorted((tiny_unpaired / folder).iterdir())[:2] for folder in ("trainA", "trainB")]
    assert [dm.train_set.files_a, dm.train_set.files_b] == first_two and len(dm.train_set) == 2
    assert [len(images) for images in dm.domain_sets()] == [2, 3]  # the test folders stay whole
    with pytest.raises(UserError, match="max_dataset_size must be at least 1"):
        data_module(tiny_unpaired, max_dataset_size=0)


def test_serial_batches_pair_image_i_with_image_i_in_order(tmp_path):
    root = make_unpaired(tmp_path / "d", counts=(2, 5, 1, 1), size=(32, 32), gray_in=None)
    dm = data_module(root, load_size=32, flip=False, serial_batches=True, batch_size=1)
    files_a, files_b = [png(f) for f in dm.train_set.files_a], [png(f) for f in dm.train_set.files_b]
    pairs = [(next(i for i, f in enumerate(files_a) if torch.equal(f, a[0])),
              next(i for i, f in enumerate(files_b) if torch.equal(f, b[0]))) for a, b in dm.train_dataloader()]
    assert pairs == [(0, 0), (1, 1), (0, 2), (1, 3), (0, 4)]


def test_an_unknown_preprocess_names_the_three_offered(tiny_unpaired):
    with pytest.raises(UserError, match="resize_and_crop, scale_width_and_crop or crop.*got 'none'"):
        data_module(tiny_unpaired, preprocess="none")


def test_missing_folder_names_the_layout(tmp_path):
    make_unpaired(tmp_path / "d")
    (tmp_path / "d" / "trainB").rename(tmp_path / "d" / "B")
    with pytest.raises(FileNotFoundError) as missing:
        data_module(tmp_path / "d")
    # test folders optional; no path of this project's development machines (../shared/data)
    assert str(missing.value) == (f"{tmp_path / 'd' / 'trainB'} is missing; an unpaired dataset has trainA and trainB "
                                  "folders of images under --data.data_dir, and testA and testB for its validation and "
                                  "test if it has them (horse2zebra: downloaded into data/horse2zebra when that folder "
                                  "does not exist)")


@pytest.mark.parametrize("crop_size, nearest", [(30, 32), (28, 32), (257, 256), (258, 260), (6, 32)])
def test_bad_crop_size_is_refused_with_the_nearest_size_that_works(crop_size, nearest):
    with pytest.raises(ValueError, match=f"multiple of 4 and at least 32 \\(got {crop_size}\\).*try --data.crop_size "
                                         f"{nearest}$"):
        UnpairedImageDataModule(crop_size=crop_size, load_size=300).prepare_data()
    with pytest.raises(ValueError, match="load_size 100 is smaller than crop_size 128"):
        UnpairedImageDataModule(crop_size=128, load_size=100).setup("fit")


@pytest.mark.slow
def test_real_horse2zebra_has_the_official_counts_and_its_grayscale_zebras_become_rgb(shared_horse2zebra):
    from datamodules.unpaired import PUBLISHED, count_images
    assert count_images(shared_horse2zebra) == PUBLISHED["horse2zebra"][1] == (1067, 1334, 120, 140)  # as checked
    dm = data_module(shared_horse2zebra, batch_size=1, load_size=286, crop_size=256)
    assert (len(dm.train_set.files_a), len(dm.train_set.files_b)) == (1067, 1334) and len(dm.train_set) == 1334
    gray = [f for f in dm.train_set.files_b if Image.open(f).mode == "L"]
    assert len(gray) == 7
    dm.train_set.files_b = gray
    a, b = dm.train_set[0, 0]
    assert a.shape == b.shape == (3, 256, 256) and torch.equal(b[0], b[1]) and torch.equal(b[1], b[2])


# --- download from the reference's address, against a server on 127.0.0.1 ------------------------

def zip_of(folder, top: str) -> bytes:
    import io
    import zipfile
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:  # stored: a flipped byte stays a flipped byte
        for file in sorted(folder.rglob("*")):
            zf.write(file, f"{top}/{file.relative_to(folder)}" if top else str(file.relative_to(folder)))
    return buffer.getvalue()


@pytest.fixture
def zips(tmp_path_factory):
    """horse2zebra.zip as the reference packs it (a horse2zebra/ folder), small; a copy with one image damaged."""
    good = zip_of(make_unpaired(tmp_path_factory.mktemp("src") / "h", counts=(3, 5, 2, 3), gray_in=None),
                  "horse2zebra")
    member = good.find(b"IEND")  # inside the last PNG's data: the CRC-32 of that member no longer matches
    damaged = good[:member] + bytes([good[member] ^ 0xFF]) + good[member + 1:]
    flat = zip_of(make_unpaired(tmp_path_factory.mktemp("src") / "h", counts=(3, 5, 2, 3), gray_in=None), "")
    return {"/horse2zebra.zip": good, "/damaged.zip": damaged, "/flat.zip": flat}


@pytest.fixture
def zip_server(zips):
    def do_get(handler):
        body = zips.get(handler.path)
        reply(handler, body or b"", 200 if body else 404)

    with http_server(do_get) as url:
        yield url


@pytest.fixture
def published(monkeypatch, zips):
    import hashlib

    import datamodules.unpaired as unpaired
    sha256 = hashlib.sha256(zips["/horse2zebra.zip"]).hexdigest()
    monkeypatch.setitem(unpaired.PUBLISHED, "horse2zebra", (sha256, (3, 5, 2, 3)))  # the test zip's figures
    return unpaired.PUBLISHED


def test_missing_horse2zebra_is_downloaded_verified_and_read(tmp_path, zip_server, published):
    root = tmp_path / "data" / "horse2zebra"
    dm = UnpairedImageDataModule(str(root), url=f"{zip_server}/horse2zebra.zip", num_workers=0, load_size=36,
                                 crop_size=32)
    dm.prepare_data()
    assert sorted(p.name for p in root.iterdir()) == ["testA", "testB", "trainA", "trainB"]
    assert sorted(p.name for p in root.parent.iterdir()) == ["horse2zebra"]  # no zip, lock or temporary folder
    dm.setup("fit")
    assert (len(dm.train_set.files_a), len(dm.train_set.files_b)) == (3, 5)
    dm.prepare_data()  # a second call finds it ready


def test_a_zip_of_the_four_folders_themselves_unpacks_too(tmp_path, zip_server):
    # zip -r mine.zip trainA trainB testA testB: it stopped with an OSError (the folder moved into itself)
    root = tmp_path / "data" / "mine"
    UnpairedImageDataModule(str(root), url=f"{zip_server}/flat.zip", num_workers=0).prepare_data()
    assert sorted(p.name for p in root.iterdir()) == ["testA", "testB", "trainA", "trainB"]
    assert len(list((root / "trainB").iterdir())) == 5 and sorted(p.name for p in root.parent.iterdir()) == ["mine"]


@pytest.mark.parametrize("path, kwargs, message", [
    ("/damaged.zip", {"verify_sha256": False}, "damaged: horse2zebra/.* fails its CRC check"),
    ("/damaged.zip", {}, "checksum mismatch .* sha256"),
    ("/absent.zip", {}, "could not download .*/absent.zip: HTTP 404 Not Found. Offline"),
])
def test_a_bad_download_is_one_line_and_leaves_nothing(tmp_path, zip_server, published, path, kwargs, message):
    root = tmp_path / "data" / "horse2zebra"
    dm = UnpairedImageDataModule(str(root), url=zip_server + path, num_workers=0, **kwargs)
    with pytest.raises(UserError, match=message) as error:
        dm.prepare_data()
    assert "\n" not in str(error.value) and error.value.__cause__ is None
    assert list(tmp_path.iterdir()) == []


def test_wrong_image_counts_are_refused(tmp_path, zip_server, published, monkeypatch):
    monkeypatch.setitem(published, "horse2zebra", (published["horse2zebra"][0], (1067, 1334, 120, 140)))
    with pytest.raises(UserError, match=r"unpacked to \(3, 5, 2, 3\) images .* not the official "
                                        r"\(1067, 1334, 120, 140\)"):
        UnpairedImageDataModule(str(tmp_path / "horse2zebra"), url=f"{zip_server}/horse2zebra.zip").prepare_data()
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_missing_folder_downloads_nothing(tmp_path):
    with pytest.raises(UserError, match="no unpaired dataset at .*hourse2zebra.*horse2zebra, apple2orange"):
        UnpairedImageDataModule(str(tmp_path / "data" / "hourse2zebra")).prepare_data()
    assert list(tmp_path.iterdir()) == []


def test_an_existing_folder_is_never_replaced(tmp_path):
    (tmp_path / "horse2zebra" / "trainA").mkdir(parents=True)
    UnpairedImageDataModule(str(tmp_path / "horse2zebra"), url="http://127.0.0.1:9/x.zip").prepare_data()  # no fetch
    with pytest.raises(UserError, match="trainA has no .*images; add them"):
        data_module(tmp_path / "horse2zebra")


def test_the_default_address_is_the_references():
    import datamodules.unpaired as unpaired
    assert unpaired.CYCLEGAN_URL.format(name="horse2zebra") == \
        "https://efrosgans.eecs.berkeley.edu/cyclegan/datasets/horse2zebra.zip"
    assert unpaired.PUBLISHED["horse2zebra"][1] == (1067, 1334, 120, 140)


# --- errors and workers ---------------------------------------------------------------------------

@pytest.mark.parametrize("batch_size", [0, -4])
def test_batch_size_below_one_is_refused(batch_size):
    with pytest.raises(UserError, match=f"--data.batch_size must be at least 1 \\(got {batch_size}\\)"):
        UnpairedImageDataModule(batch_size=batch_size).prepare_data()


def test_a_file_as_data_dir_is_refused(tmp_path):
    (tmp_path / "horse2zebra").write_text("")
    for call in ("prepare_data", "setup"):
        with pytest.raises(UserError, match="horse2zebra is a file, not a folder"):
            getattr(UnpairedImageDataModule(str(tmp_path / "horse2zebra")), call)(*(["fit"] if call == "setup" else []))


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_a_corrupt_image_is_skipped_with_a_warning_naming_it(tmp_path, damage):
    root = make_unpaired(tmp_path / "d", counts=(3, 3, 2, 2), size=(32, 32), gray_in=None)
    bad = root / "trainA" / "001.png"
    bad.write_bytes(bad.read_bytes()[:len(bad.read_bytes()) // 2] if damage == "truncated" else b"")
    dm = data_module(root, load_size=32, flip=False)
    with pytest.warns(UserWarning, match=f"skipped: cannot read image {bad}"):
        a, _ = dm.train_set[1, 0]
    assert torch.equal(a, png(root / "trainA" / "002.png"))  # the next readable file


def test_workers_are_capped_at_the_cpus(tiny_unpaired, monkeypatch):
    import os
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    dm = data_module(tiny_unpaired, num_workers=4)
    assert dm.train_dataloader().num_workers == 1


@pytest.mark.parametrize("count", [1, 2])
def test_a_domain_with_no_readable_image_is_named(tmp_path, count):
    root = make_unpaired(tmp_path / "d", counts=(count, 2, 1, 1), size=(32, 32), gray_in=None)
    for file in (root / "trainA").iterdir():
        file.write_bytes(b"")
    dm = data_module(root, load_size=32)
    with pytest.warns(UserWarning, match="skipped"), pytest.raises(
            FileNotFoundError, match=f"none of the {count} images in {root / 'trainA'} can be read"):
        dm.train_set[0, 0]


# --- the crop check, prepare_data's lock and Lightning's per-node preparation ------------------------

def test_crop_sizes_are_checked_past_an_unreadable_file_which_is_left_to_the_loader(tmp_path):
    root = make_unpaired(tmp_path / "d", counts=(3, 1, 1, 1), size=(36, 40), gray_in=None)
    (root / "trainA" / "000.png").write_bytes(b"")  # unreadable: the loader skips it with a warning
    Image.fromarray(np.zeros((24, 30, 3), dtype=np.uint8)).save(root / "trainA" / "001.png")  # 30 wide, 24 high
    with pytest.raises(UserError, match=r"^1 training image is smaller than crop_size 32, .*: \S*001.png \(30x24\); "):
        data_module(root, load_size=16, crop_size=32, preprocess="crop")


def test_a_dataset_another_process_unpacked_while_this_one_waited_for_the_lock_is_kept(tmp_path, monkeypatch):
    import datamodules.unpaired as unpaired
    root = tmp_path / "data" / "horse2zebra"
    real_prepare = unpaired.prepare

    def after_the_other_process(target, *args, **kwargs):  # it held the lock first and unpacked its copy
        make_unpaired(root, counts=(1, 2, 1, 1), gray_in=None)
        return real_prepare(target, *args, **kwargs)

    monkeypatch.setattr(unpaired, "prepare", after_the_other_process)
    # nothing is fetched (no server: a download would fail) and the other process's folders stay
    UnpairedImageDataModule(str(root), url="http://127.0.0.1:9/horse2zebra.zip", num_workers=0).prepare_data()
    assert [len(list((root / folder).iterdir())) for folder in ("trainA", "trainB", "testA", "testB")] == [1, 2, 1, 1]
    assert sorted(p.name for p in root.parent.iterdir()) == ["horse2zebra"]  # no temporary folder or lock left
