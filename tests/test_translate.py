"""`translate` with unreadable files among the inputs: the others are translated, the page lists the bad ones."""

import numpy as np
import pytest
import torch
from PIL import Image

import lightning_modules.inference
from lightning_modules import CycleGAN
from lightning_modules.cyclegan import translate

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def tiny_model(monkeypatch):
    torch.manual_seed(0)
    model = CycleGAN(n_blocks=1, ngf=4, ndf=4)
    monkeypatch.setattr(lightning_modules.inference, "load_checkpoint", lambda cls, checkpoint, device: model.eval())
    return model


def test_unreadable_images_are_listed_and_the_others_translated(tiny_model, tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.jpg", "c.png"):
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(inputs / name)
    good = (inputs / "b.jpg").read_bytes()
    (inputs / "b.jpg").write_bytes(good[:len(good) // 2])  # truncated
    (inputs / "d.jpg").write_bytes(b"")  # empty
    index = translate("unused.ckpt", str(inputs), str(tmp_path / "out"))
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["a.png", "c.png"]
    page = index.read_text()
    assert "<img src='a.png'>" in page and "<img src='c.png'>" in page
    assert "Could not be read" in page and "b.jpg: cannot read image" in page and "d.jpg: cannot read image" in page
    out, err = capsys.readouterr()
    assert "2 of 4 images translated" in out and "could not read 2" in err and str(inputs / "b.jpg") in err
