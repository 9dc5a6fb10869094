import numpy as np
import pytest
import torch

from datamodules.augment import normalize, random_crop, random_flip


def test_padding_repeats_the_edge_as_opencv_border_reflect():
    # fastai 0.7 (the seed) padded with cv2.BORDER_REFLECT: fedcba|abcdefgh|hgfedcb
    a_to_h = "abcdefgh"
    source = [a_to_h.index(ch) for ch in "fedcba" + "abcdefgh" + "hgfedc"]  # pad 6 on both sides
    x = (10 * torch.arange(8.0)[:, None] + torch.arange(8.0)).view(1, 1, 8, 8)  # x[i, j] = 10 i + j
    out = random_crop(x, 8 + 2 * 6, pad=6)  # the whole padded image: one possible offset
    assert out[0, 0].tolist() == [[10.0 * i + j for j in source] for i in source]


def test_reflect_padding_is_torchs_the_edge_not_repeated():
    # airbench94 pads with F.pad(mode="reflect"): gfedcb|abcdefgh|gfedcb
    x = torch.randn(3, 2, 8, 8)
    out = random_crop(x, 8 + 2 * 6, pad=6, mode="reflect")  # the whole padded image: one possible offset
    assert torch.equal(out, torch.nn.functional.pad(x, (6,) * 4, mode="reflect"))
    assert torch.equal(random_crop(x, 8 + 2 * 7, pad=7, mode="reflect"),
                       torch.nn.functional.pad(x, (7,) * 4, mode="reflect"))  # the most it allows: side - 1
    with pytest.raises(ValueError, match="padding 8 is more than the image side 8 less 1"):
        random_crop(x, 8, pad=8, mode="reflect")
    with pytest.raises(ValueError, match="pad_mode must be symmetric or reflect"):
        random_crop(x, 8, pad=2, mode="zeros")


def test_zero_offset_crop_shows_the_mirrored_border_with_the_edge_repeated():
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float).view(2, 3, 6, 6)
    generator = torch.Generator().manual_seed(0)
    for _ in range(200):  # until some image gets offset (0, 0)
        out = random_crop(x, 6, pad=2, generator=generator)
        corner = out[:, :, :2, :2]
        expected = x[:, :, [1, 0]][:, :, :, [1, 0]]  # rows 1, 0 then cols 1, 0: the edge repeated
        hit = (corner == expected).flatten(1).all(1)
        if hit.any():
            assert torch.equal(out[hit][:, :, 2:, 2:], x[hit][:, :, :4, :4])
            return
    raise AssertionError("no crop at offset (0, 0) in 200 batches")


def test_every_crop_is_a_window_of_the_padded_image_and_all_offsets_occur():
    x = torch.randn(2048, 2, 8, 8)
    padded = torch.from_numpy(np.pad(x.numpy(), ((0, 0), (0, 0), (4, 4), (4, 4)), mode="symmetric"))
    out = random_crop(x, 8, pad=4, generator=torch.Generator().manual_seed(1))
    offsets = []
    for start in range(0, len(x), 512):
        windows = padded[start:start + 512].unfold(2, 8, 1).unfold(3, 8, 1)  # (512, C, 9, 9, 8, 8)
        match = (windows == out[start:start + 512, :, None, None]).flatten(4).all(-1).all(1)  # (512, 9, 9)
        assert (match.flatten(1).sum(1) >= 1).all(), "a crop is not a window of its padded image"
        offsets += [tuple(m.nonzero()[0].tolist()) for m in match]
    assert len(set(offsets)) == 81  # 9 x 9 offsets, all 81 seen in 2048 draws (a miss has p < 1e-9)


def test_uint8_images_crop_the_same_as_float():
    x = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
    crops = [random_crop(t, 8, 4, generator=torch.Generator().manual_seed(3)) for t in (x, x.float())]
    assert crops[0].dtype == torch.uint8 and torch.equal(crops[0].float(), crops[1])


def test_padding_wider_than_the_image_fails_clearly():
    with pytest.raises(ValueError, match="padding 5 is more than the image side 4"):
        random_crop(torch.zeros(1, 1, 4, 4), 4, pad=5)


def test_flip_turns_column_zero_into_the_last_and_happens_half_the_time():
    x = torch.arange(8.0).view(1, 1, 1, 8).repeat(10_000, 1, 1, 1)
    out = random_flip(x, generator=torch.Generator().manual_seed(2))
    flipped = out[:, 0, 0, 0] == 7
    assert torch.equal(out[flipped], x[flipped].flip(-1)) and torch.equal(out[~flipped], x[~flipped])
    assert abs(flipped.float().mean().item() - 0.5) < 0.02  # 4 sigma for n = 10,000


def test_normalize_uses_the_given_per_channel_stats():
    x = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    out = normalize(x, (0.5, 0.0, 1.0), (0.5, 2.0, 1.0))
    assert out.dtype == torch.float32
    assert torch.allclose(out[0, :, 0, 0], torch.tensor([1.0, 0.5, 0.0]))


def test_normalize_matches_the_formula_on_random_pixels():
    x = torch.randint(0, 256, (4, 3, 5, 5), dtype=torch.uint8)
    mean, std = (0.4914, 0.48216, 0.44653), (0.24703, 0.24349, 0.26159)
    expected = (x.double() / 255 - torch.tensor(mean, dtype=torch.double).view(1, 3, 1, 1)) \
        / torch.tensor(std, dtype=torch.double).view(1, 3, 1, 1)
    assert torch.allclose(normalize(x, mean, std).double(), expected, atol=1e-5)
    assert torch.equal(x, x.clone())  # the input is left as it was


def test_normalize_moves_its_stats_to_a_device_once(monkeypatch):
    """A tensor made from Python numbers on a GPU is a blocking copy that waits for every queued kernel; made at
    every batch (on_after_batch_transfer), it stalled each Darknet training step twice. Counted on the meta device:
    tensors made there, or moved there, over three calls."""
    made = []
    as_tensor, tensor, to = torch.as_tensor, torch.tensor, torch.Tensor.to

    def on_device(kwargs):
        device = kwargs.get("device")
        if device is not None and torch.device(device).type != "cpu":
            made.append(device)

    def counting_as_tensor(*args, **kwargs):
        on_device(kwargs)
        return as_tensor(*args, **kwargs)

    def counting_tensor(*args, **kwargs):
        on_device(kwargs)
        return tensor(*args, **kwargs)

    def counting_to(self, *args, **kwargs):
        out = to(self, *args, **kwargs)
        if out.device != self.device:
            made.append(out.device)
        return out

    monkeypatch.setattr(torch, "as_tensor", counting_as_tensor)
    monkeypatch.setattr(torch, "tensor", counting_tensor)
    monkeypatch.setattr(torch.Tensor, "to", counting_to)
    x = torch.zeros(2, 3, 4, 4, dtype=torch.uint8, device="meta")
    stats = (0.125, 0.25, 0.375), (0.3, 0.2, 0.1)  # no other test's: not made before
    for _ in range(3):
        assert normalize(x, *stats).shape == x.shape
    assert len(made) <= 2  # the mean and the scale, once


def test_normalize_first_called_in_inference_mode_still_has_a_gradient():
    """The stats kept from a call under inference mode (a test) must not be inference tensors: autograd refuses to
    save those, and x * scale saves the scale for the gradient of x."""
    mean, std = (0.1, 0.2, 0.3), (0.3, 0.2, 0.1)  # no other test's
    with torch.inference_mode():
        normalize(torch.zeros(1, 3, 2, 2, dtype=torch.uint8), mean, std)
    leaf = torch.ones(1, 3, 2, 2, requires_grad=True)
    normalize(leaf * 100, mean, std).sum().backward()
    expected = 100 / (255 * torch.tensor(std))  # d/dx of (x - 255 m) / (255 s), x = 100 leaf
    assert torch.allclose(leaf.grad[0, :, 0, 0], expected)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_normalize_on_a_gpu_does_not_synchronize():
    x = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8, device="cuda")
    normalize(x, (0.2, 0.3, 0.4), (0.25, 0.25, 0.25))  # the stats' one copy
    torch.cuda.set_sync_debug_mode("error")
    try:
        normalize(x, (0.2, 0.3, 0.4), (0.25, 0.25, 0.25))
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_padding_as_wide_as_the_image_is_allowed():
    x = torch.randn(1, 2, 4, 4)
    out = random_crop(x, 12, pad=4)  # one window: the whole padded image
    expected = np.pad(x.numpy(), ((0, 0), (0, 0), (4, 4), (4, 4)), mode="symmetric")
    assert torch.equal(out, torch.from_numpy(expected))


def test_flip_keeps_the_shape_and_flips_all_channels_of_an_image_together():
    x = torch.randn(400, 3, 2, 5)
    out = random_flip(x, generator=torch.Generator().manual_seed(4))
    assert out.shape == x.shape
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    assert torch.equal(out[flipped], x[flipped].flip(-1)) and torch.equal(out[~flipped], x[~flipped])
    assert 150 < flipped.sum() < 250
