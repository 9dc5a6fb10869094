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


# EXIF orientation (TIFF/EXIF 2.3): how the stored pixels are turned to be shown upright
UPRIGHT = {1: lambda a: a, 2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 6: lambda a: np.rot90(a, k=-1),
           8: lambda a: np.rot90(a, k=1)}


@pytest.mark.parametrize("orientation", sorted(UPRIGHT))
@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_a_photo_is_read_upright_as_its_exif_orientation_says(tmp_path, orientation, suffix):
    stored = np.zeros((16, 32, 3), np.uint8)  # a phone's portrait photo is stored landscape, tagged 6
    stored[:8, :8] = 255  # a white corner: where it lands tells the turn apart from a flip
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = orientation
    image.save(tmp_path / f"photo{suffix}", exif=exif.tobytes(), **({"quality": 100} if suffix == ".jpg" else {}))
    pixels = read_rgb(tmp_path / f"photo{suffix}").permute(1, 2, 0).numpy()
    expected = UPRIGHT[orientation](stored)
    assert pixels.shape == expected.shape
    assert np.abs(pixels.astype(int) - expected).max() <= (40 if suffix == ".jpg" else 0)  # JPEG's loss at the edge


@pytest.mark.parametrize("values, expected", [
    ([[0, 128, 256]], [[0, 0, 1]]),  # 256 is more than 8 bits hold: 16-bit, 256 / 257 rounds to 1
    ([[0, 65535, 70000]], [[0, 255, 255]]),  # above 16-bit white: white, not wrapped past 255
])
def test_a_32_bit_integer_image_above_255_is_read_as_16_bit(tmp_path, values, expected):
    Image.fromarray(np.array(values, dtype=np.int32)).save(tmp_path / "int32.tif")
    assert Image.open(tmp_path / "int32.tif").mode == "I"
    np.testing.assert_array_equal(read_rgb(tmp_path / "int32.tif").numpy()[0], np.array(expected, dtype=np.uint8))


@pytest.mark.parametrize("values, expected", [
    ([[0.0, 0.5, 1.0]], [[0, 128, 255]]),  # 0..1, as scientific tools write floats: scaled to 0..255
    ([[0.0, 0.6, 1.0]], [[0, 153, 255]]),  # 0.6 x 255 = 153, not 0.6 x 256 = 153.6
    ([[0.0, 127.6, 300.0]], [[0, 128, 255]]),  # 0..255 already: kept, above white clipped
    ([[0.0, 1.4, 2.0]], [[0, 1, 2]]),  # a dark 0..255 image (brightest 2): kept, not scaled as 0..1
])
def test_a_float_tiff_is_read_on_its_own_scale(tmp_path, values, expected):
    Image.fromarray(np.array(values, dtype=np.float32), mode="F").save(tmp_path / "f.tif")
    pixels = read_rgb(tmp_path / "f.tif")
    assert pixels.tolist() == [expected] * 3


def test_image_files_takes_the_image_files_of_a_folder_in_name_order_and_a_file_as_given(tmp_path):
    from datamodules.decode import image_files
    from datamodules.download import MissingDataError
    for name in ("b.png", "a.JPG", "sub/d.webp", "dir.png/c.png"):  # dir.png: a folder, however named
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4)).save(tmp_path / name, format="PNG")
    (tmp_path / "notes.txt").write_text("not an image")
    assert image_files([str(tmp_path)], "fix") == [tmp_path / "a.JPG", tmp_path / "b.png"]
    assert image_files([str(tmp_path)], "fix", recursive=True) == [
        tmp_path / "a.JPG", tmp_path / "b.png", tmp_path / "dir.png" / "c.png", tmp_path / "sub" / "d.webp"]
    assert image_files([str(tmp_path / "sub"), str(tmp_path / "notes.txt")], "fix") == [
        tmp_path / "sub" / "d.webp", tmp_path / "notes.txt"]  # in the order given; a file named is taken
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "notes.txt").write_text("not an image")
    with pytest.raises(MissingDataError, match=r"no .* images in .*text; fix"):
        image_files([str(tmp_path / "text")], "fix")
    with pytest.raises(MissingDataError, match=r"image .*absent.png not found; fix"):
        image_files([str(tmp_path / "absent.png")], "fix")


def test_image_files_and_vgg_weights_expand_a_home_folder_no_shell_expanded(tmp_path, monkeypatch):
    """A YAML config's `~/photos` (or --data.content=~/x.png, which bash leaves as it is) was 'no such file'."""
    import torch

    from datamodules.decode import image_files
    from lightning_modules.nets.vgg import load_vgg, vgg_features

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "photos").mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "photos" / "a.png")
    assert image_files(["~/photos", "~/photos/a.png"], "fix") == [tmp_path / "photos" / "a.png"] * 2
    torch.save(vgg_features("vgg16").state_dict(), tmp_path / "vgg16.pth")
    assert torch.equal(load_vgg("vgg16", "~/vgg16.pth")[0].weight, torch.load(tmp_path / "vgg16.pth")["0.weight"])


def test_a_dark_16_bit_pgm_is_scaled_as_16_bit_though_its_values_are_under_256(tmp_path):
    """A P5 file of maxval 65535 (PIL mode I) is 16-bit whatever its values: one whose pixels all lie under 256 (a
    dark photo) was read as 8-bit, up to 257 times too bright."""
    values = np.array([[0, 128, 200, 255]], dtype=np.uint16)
    (tmp_path / "dark16.ppm").write_bytes(b"P5\n4 1\n65535\n" + values.astype(">u2").tobytes())
    assert Image.open(tmp_path / "dark16.ppm").mode == "I"
    expected = np.floor(values / 257 + 0.5).astype(np.uint8)  # [0, 0, 1, 1]
    np.testing.assert_array_equal(read_rgb(tmp_path / "dark16.ppm").numpy()[0], expected)


def test_an_image_this_user_may_not_read_is_named_as_such_not_as_a_bad_file(tmp_path, monkeypatch):
    """It said 'delete or replace the file (empty, truncated or not an image)' of a good photo of mode 000."""
    import builtins

    from PIL import Image
    Image.new("RGB", (4, 4)).save(tmp_path / "locked.png")
    real_open = builtins.open

    def refused(file, *args, **kwargs):  # the tests run as root, whom no mode bit stops
        if str(file) == str(tmp_path / "locked.png"):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)
    monkeypatch.setattr(builtins, "open", refused)
    with pytest.raises(UnreadableImageError) as error:
        read_rgb(tmp_path / "locked.png")
    assert str(error.value) == (f"cannot read image {tmp_path / 'locked.png'}: permission denied; give this user "
                                "read access (chmod), or leave it out")
