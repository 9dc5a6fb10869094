"""What the Darknet sees: CIFAR-10 batches normalised with the seed's statistics and, in training only, padded
with the edge mirrored, cropped at random and flipped half the time (values checked, not only shapes)."""

import numpy as np
import pytest
import torch

from datamodules import CIFAR10DataModule

MEAN, STD = (0.4914, 0.48216, 0.44653), (0.24703, 0.24349, 0.26159)  # the seed's CIFAR-10 stats


class FakeTrainer:
    global_rank, world_size = 0, 1

    def __init__(self, training: bool):
        self.training = training


def transferred(images, training, **kwargs):
    data = CIFAR10DataModule("unused", download=False, **kwargs)
    data.trainer = FakeTrainer(training)
    labels = torch.arange(len(images))
    out, out_labels = data.on_after_batch_transfer((images, labels), 0)
    assert torch.equal(out_labels, labels)
    return out


def by_hand(images):
    """(x / 255 - mean) / std per channel, in float64."""
    mean, std = torch.tensor(MEAN, dtype=torch.double), torch.tensor(STD, dtype=torch.double)
    return (images.double() / 255 - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)


def test_evaluation_batches_are_normalised_and_nothing_else():
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    out = transferred(images, training=False)
    assert out.dtype == torch.float32 and torch.allclose(out.double(), by_hand(images), atol=1e-5)


def test_mid_grey_and_the_seed_mean_map_to_the_expected_values():
    mean_pixel = torch.tensor([round(m * 255) for m in MEAN], dtype=torch.uint8).view(1, 3, 1, 1).expand(2, 3, 4, 4)
    out = transferred(mean_pixel.contiguous(), training=False, image_size=4)
    assert out.abs().max() < 0.5 / 255 / min(STD)  # the mean colour is (about) 0 after normalising


@pytest.mark.parametrize("mode", ["symmetric", "reflect"])  # numpy's names: the seed's and airbench94's
def test_training_batches_are_mirror_padded_random_crops_flipped_half_the_time(mode):
    torch.manual_seed(0)
    images = torch.randint(0, 256, (512, 3, 32, 32), dtype=torch.uint8)
    out = transferred(images, training=True, **({} if mode == "symmetric" else {"pad_mode": mode})).double()
    padded = torch.from_numpy(np.pad(by_hand(images).numpy(), ((0, 0), (0, 0), (4, 4), (4, 4)), mode=mode))
    offsets, flips = set(), 0
    for i in range(len(images)):
        found = None
        for flip in (False, True):
            view = out[i].flip(-1) if flip else out[i]
            # locate the window by its top-left pixel, then check all of it
            for dy, dx in (padded[i, 0] - view[0, 0, 0]).abs().lt(1e-5).nonzero().tolist():
                if dy <= 8 and dx <= 8 and torch.allclose(padded[i, :, dy:dy + 32, dx:dx + 32], view, atol=1e-5):
                    found = (dy, dx, flip)
                    break
            if found:
                break
        assert found, f"training image {i} is not a flipped or plain window of its mirror-padded image"
        offsets.add(found[:2])
        flips += found[2]
    assert flips / len(images) == pytest.approx(0.5, abs=0.1)  # 4.5 sigma for n = 512
    assert len(offsets) > 60  # of the 81 offsets; 512 uniform draws miss fewer than 10 with p > 0.999
    statistics = out.mean(dim=(0, 2, 3))
    assert torch.allclose(statistics, by_hand(images).mean(dim=(0, 2, 3)), atol=0.05)


def test_no_padding_and_no_flip_leave_training_batches_normalised_only():
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    out = transferred(images, training=True, pad=0, flip=False)
    assert torch.allclose(out.double(), by_hand(images), atol=1e-5)


@pytest.mark.parametrize("training", [False, True])
def test_another_image_size_is_an_antialiased_bilinear_resize_of_the_normalised_batch(training):
    from torchvision.transforms.v2.functional import resize
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    out = transferred(images, training=training, image_size=16, pad=0, flip=False)
    expected = resize(by_hand(images).float(), [16, 16], antialias=True)  # torchvision's, as the reference
    assert out.shape == (4, 3, 16, 16) and torch.allclose(out, expected, atol=1e-4)
