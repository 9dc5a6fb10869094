"""Image files to uint8 RGB pixels (datamodules.decode.read_rgb): 16-bit grayscale scaled, formats we do not read
named."""

import numpy as np
import pytest
from PIL import Image

from datamodules.decode import UnreadableImageError, read_rgb


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_a_16_bit_grayscale_image_is_scaled_to_8_bits_not_clipped(tmp_path, suffix):
    values = np.array([[0, 257, 32896], [65535, 1000, 40000]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / f"gray16{suffix}")
    pixels = read_rgb(tmp_path / f"gray16{suffix}")
    expected = np.floor(values / 257 + 0.5).astype(np.uint8)  # 65535 -> 255, as 8-bit images hold it
    assert pixels.shape == (3, 2, 3)
    for channel in pixels.numpy():
        np.testing.assert_array_equal(channel, expected)


def test_a_32_bit_integer_image_of_8_bit_values_keeps_them(tmp_path):
    values = np.array([[0, 10, 128, 255]], dtype=np.int32)  # PIL mode I, as some TIFF writers store 8-bit data
    Image.fromarray(values).save(tmp_path / "int32.tif")
    assert Image.open(tmp_path / "int32.tif").mode == "I"
    np.testing.assert_array_equal(read_rgb(tmp_path / "int32.tif").numpy()[0], values.astype(np.uint8))


def test_an_image_of_a_format_we_do_not_read_is_named_as_such(tmp_path):
    Image.new("P", (4, 4)).save(tmp_path / "pal.gif")
    with pytest.raises(UnreadableImageError, match=r"pal\.gif: GIF is not a format read here \(JPEG, PNG"):
        read_rgb(tmp_path / "pal.gif")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(UnreadableImageError, match=r"text\.png .*\(empty, truncated or not an image\)"):
        read_rgb(tmp_path / "text.png")
