"""README's "From Python (a notebook)" block, run as it stands there with tiny nets, data and step counts put in by
the replacements below (each must match the block exactly once, so a changed README fails here, not later)."""

import re
from pathlib import Path

import pytest
import torch
from conftest import CLASSES, ROOT
from PIL import Image

pytestmark = pytest.mark.usefixtures("one_thread")


def readme_block(marker: str) -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(rf"<!-- {marker} -->\n```python\n(.*?)```", text, re.S)
    assert match, f"README.md has no python block after <!-- {marker} -->"
    return match[1]


def shrunk(code: str, cifar: Path, unpaired: Path) -> str:
    replacements = [
        ('"data/cifar10"', repr(str(cifar))),
        ('"data/cifar10/train"', repr(str(cifar / "train"))),
        ('"data/horse2zebra"', f"{str(unpaired)!r}, load_size=36, crop_size=32, num_workers=0"),
        ("DarknetClassifier(lr=0.4, one_cycle=None)",
         f"DarknetClassifier(lr=0.4, one_cycle=None, num_classes={len(CLASSES)}, num_blocks=[1], nf=4, top_losses=1)"),
        ("batch_size=512", "batch_size=8, eval_batch_size=6"),
        ("max_epochs=30", "max_epochs=2"),
        ("WGAN(isize=32)", "WGAN(isize=32, ngf=8, ndf=8, d_iters_long=2)"),
        ("isize=32))", "isize=32, batch_size=8, num_workers=0))"),
        ("max_epochs=25", "max_epochs=2"),
        ("CycleGAN()", "CycleGAN(n_blocks=1, ngf=4, ndf=4, n_epochs=1, n_epochs_decay=1)"),
        ("max_epochs=200", "max_epochs=2"),
        ('vgg_weights="imagenet"', 'vgg_weights="random"'),  # no ImageNet weights on the test machines
        ("max_steps=1000", "max_steps=3"),
        ("StyleTransferDataModule()", "StyleTransferDataModule(size=32)"),
    ]
    for old, new in replacements:
        assert code.count(old) == 1, f"README's block no longer holds {old!r} once; update this test's replacements"
        code = code.replace(old, new)
    return code


def test_the_readmes_python_block_trains_tests_reloads_and_infers_with_each_system(tiny_cifar, tiny_unpaired,
                                                                                   tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # its runs/notebook/... folders
    namespace = {}
    exec(compile(shrunk(readme_block("from-python"), tiny_cifar, tiny_unpaired), "README.md", "exec"), namespace)
    out = capsys.readouterr().out
    # the Darknet: tested, reloaded from its checkpoint with the data's class names, classifying 4 images
    assert "test/acc" in out
    assert set(namespace["classifier"].label_names()) == set(CLASSES)
    probabilities = namespace["probabilities"]
    assert probabilities.shape == (4, len(CLASSES)) and torch.allclose(probabilities.sum(1), torch.ones(4))
    assert (tmp_path / "runs/notebook/darknet/images/test_confusion_matrix.png").is_file()
    # the WGAN's samples, the CycleGAN's translation, the style's image
    samples = namespace["samples"]
    assert samples.shape == (64, 3, 32, 32) and samples.abs().max() <= 1
    assert namespace["wgan"].gen_iterations > 0
    assert namespace["zebras"].shape == (1, 3, 256, 256) and namespace["zebras"].abs().max() <= 1
    result = namespace["result"]
    assert result.shape == (1, 3, 32, 32) and 0 <= result.min() and result.max() <= 1
    with Image.open(tmp_path / "runs/notebook/style/stylized/kodim23_macaws.png") as saved:
        assert saved.size == (32, 32)
