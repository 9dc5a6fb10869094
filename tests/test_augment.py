import torch

from datamodules.augment import normalize, random_crop, random_flip


def test_zero_offset_crop_shows_the_reflected_border():
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float).view(2, 3, 6, 6)
    generator = torch.Generator().manual_seed(0)
    for _ in range(200):  # until some image gets offset (0, 0)
        out = random_crop(x, 6, pad=2, generator=generator)
        corner = out[:, :, :2, :2]
        expected = x[:, :, [2, 1]][:, :, :, [2, 1]]  # reflect: rows 2,1 then cols 2,1, no edge repeat
        hit = (corner == expected).flatten(1).all(1)
        if hit.any():
            assert torch.equal(out[hit][:, :, 2:, 2:], x[hit][:, :, :4, :4])
            return
    raise AssertionError("no crop at offset (0, 0) in 200 batches")


def test_every_crop_is_a_window_of_the_padded_image_and_all_offsets_occur():
    x = torch.randn(2048, 3, 8, 8)
    padded = torch.nn.functional.pad(x, (4,) * 4, mode="reflect")
    out = random_crop(x, 8, pad=4, generator=torch.Generator().manual_seed(1))
    offsets = set()
    for i in range(len(x)):
        windows = padded[i].unfold(1, 8, 1).unfold(2, 8, 1)  # (C, 9, 9, 8, 8)
        match = (windows == out[i][:, None, None]).flatten(3).all(-1).all(0)
        assert match.any(), f"crop {i} is not a window of its padded image"
        offsets.add(tuple(match.nonzero()[0].tolist()))
    assert len(offsets) == 81  # 9 x 9 offsets, all 81 seen in 2048 draws (a miss has p < 1e-9)


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
