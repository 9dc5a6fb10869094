"""The Darknet's test interpretation (fastai's ClassificationInterpretation): confusion matrix, per-class accuracy
and top losses, against counts and losses computed here image by image."""

import csv
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import CLASSES, make_batches
from PIL import Image

from datamodules import CIFAR10DataModule
from lightning_modules import DarknetClassifier

pytestmark = pytest.mark.usefixtures("one_thread")

MEAN, STD = np.array([0.4914, 0.48216, 0.44653]) * 255, np.array([0.24703, 0.24349, 0.26159]) * 255


def by_hand(model, root):
    """Each test image's label, prediction and loss, one image at a time from its PNG, normalised as the seed."""
    rows = []
    with torch.no_grad():
        for label, name in enumerate(CLASSES):  # class folders in sorted order, as the data module labels them
            for file in sorted((root / "test" / name).iterdir()):
                pixels = (np.asarray(Image.open(file), dtype=np.float64) - MEAN) / STD
                logits = model.net(torch.from_numpy(pixels.astype(np.float32)).permute(2, 0, 1)[None])
                loss = F.cross_entropy(logits, torch.tensor([label])).item()
                rows.append((label, int(logits.argmax()), loss, logits.softmax(1)[0, label].item(), len(rows), file))
    return rows


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_confusion_matrix_per_class_accuracy_and_top_losses(tiny_cifar, tmp_path):
    torch.manual_seed(0)
    model = DarknetClassifier(num_blocks=[1], nf=4, num_classes=3, top_losses=3).eval()  # fewer than a batch of 5
    expected = by_hand(model, tiny_cifar)  # 3 classes x 4 test images
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path)
    results = trainer.test(model, CIFAR10DataModule(str(tiny_cifar), eval_batch_size=5, download=False),
                           verbose=False)[0]
    counts = [[sum(1 for label, prediction, *_ in expected if (label, prediction) == (i, j)) for j in range(3)]
              for i in range(3)]
    matrix = read_csv(tmp_path / "test_confusion_matrix.csv")
    assert matrix[0][1:] == CLASSES and [row[0] for row in matrix[1:]] == CLASSES
    assert [[int(x) for x in row[1:]] for row in matrix[1:]] == counts
    for i, name in enumerate(CLASSES):
        assert results[f"test/class_acc/{name}"] == pytest.approx(counts[i][i] / 4)
    worst = sorted(expected, key=lambda row: -row[2])[:3]
    top = read_csv(tmp_path / "test_top_losses.csv")
    assert top[0] == ["loss", "actual", "prediction", "probability", "index", "file"] and len(top) == 4
    for row, (label, prediction, loss, probability, index, file) in zip(top[1:], worst, strict=True):
        assert float(row[0]) == pytest.approx(loss, rel=1e-4) and row[1:3] == [CLASSES[label], CLASSES[prediction]]
        assert float(row[3]) == pytest.approx(probability, rel=1e-4)
        assert int(row[4]) == index and Path(row[5]) == file  # the image itself, to look at
    assert (tmp_path / "images" / "test_confusion_matrix.png").exists()
    assert (tmp_path / "images" / "test_top_losses.png").exists()


def test_every_top_loss_is_named_by_its_place_and_file_and_a_plain_loaders_by_neither(tiny_cifar, tmp_path):
    """All 12 test images among the top losses (the first, at index 0, too); a loader that cannot say which images
    a batch holds (a plain DataLoader) leaves both columns empty."""
    torch.manual_seed(0)
    model = DarknetClassifier(num_blocks=[1], nf=4, num_classes=3, top_losses=12).eval()
    expected = by_hand(model, tiny_cifar)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path)
    trainer.test(model, CIFAR10DataModule(str(tiny_cifar), eval_batch_size=5, download=False), verbose=False)
    rows = read_csv(tmp_path / "test_top_losses.csv")[1:]
    assert sorted((int(row[4]), Path(row[5])) for row in rows) == [(index, file) for *_, index, file in expected]
    plain = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(4, 3, 32, 32),
                                                                       torch.tensor([0, 1, 2, 0])), batch_size=3)
    trainer.test(model, dataloaders=plain, verbose=False)
    rows = read_csv(tmp_path / "test_top_losses.csv")[1:]
    assert len(rows) == 4 and all(row[4:] == ["", ""] for row in rows)


def test_the_official_batches_name_each_top_loss_by_its_place_and_no_file(tmp_path):
    """The python batches hold no files (test_files is None): every place, 0 and the last among them, with an empty
    file column (a place read as a file's index there raised an IndexError)."""
    torch.manual_seed(0)
    model = DarknetClassifier(num_blocks=[1], nf=4, num_classes=3, top_losses=6).eval()
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path)
    data = CIFAR10DataModule(str(make_batches(tmp_path / "cifar-10-batches-py", classes=CLASSES[:3])),
                             eval_batch_size=4, download=False)
    trainer.test(model, data, verbose=False)
    rows = read_csv(tmp_path / "test_top_losses.csv")[1:]
    assert sorted(int(row[4]) for row in rows) == list(range(6)) and all(row[5] == "" for row in rows)


def test_other_ranks_draw_no_figure(tiny_cifar, tmp_path, monkeypatch):
    """Every rank drew both figures (about 1 s) for rank 0 alone to write them; the others only join the gather."""
    import lightning_modules.darknet_classifier as darknet
    drawn = []
    for name in ("confusion_figure", "top_losses_figure"):
        monkeypatch.setattr(darknet, name, lambda *args, _name=name: drawn.append(_name))
    gathered = []
    monkeypatch.setattr(DarknetClassifier, "gather_worst", lambda self: gathered.append(1) or None)
    monkeypatch.setattr(L.Trainer, "is_global_zero", property(lambda self: False))
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path)
    trainer.test(DarknetClassifier(num_blocks=[1], nf=4, num_classes=3),
                 CIFAR10DataModule(str(tiny_cifar), download=False), verbose=False)
    assert drawn == [] and gathered == [1] and not list(tmp_path.rglob("*.csv"))


def test_interpret_false_writes_nothing_and_logs_no_class_accuracy(tiny_cifar, tmp_path):
    model = DarknetClassifier(num_blocks=[1], nf=4, num_classes=3, interpret=False)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path)
    results = trainer.test(model, CIFAR10DataModule(str(tiny_cifar), download=False), verbose=False)[0]
    assert sorted(results) == ["test/acc", "test/loss"]
    assert not (tmp_path / "images").exists() and not list(tmp_path.glob("*.csv"))


def test_a_class_without_test_images_gets_no_accuracy(tmp_path):
    torch.manual_seed(0)
    model = DarknetClassifier(num_blocks=[1], nf=4, num_classes=4).eval()
    images = torch.randn(6, 3, 32, 32)
    with torch.no_grad():
        single = int(model.net(images[-1:]).argmax())  # the last image's class: predicted right, so accuracy 1
    absent, *others = [c for c in range(4) if c != single]
    labels = torch.tensor([others[i % 2] for i in range(5)] + [single])

    class OneClassMissing(L.LightningDataModule):  # a user's data whose test split lacks a class
        def test_dataloader(self):
            return torch.utils.data.DataLoader(list(zip(images, labels, strict=True)), batch_size=3)

    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path)
    results = trainer.test(model, OneClassMissing(), verbose=False)[0]
    assert f"test/class_acc/{absent}" not in results and {f"test/class_acc/{c}" for c in others} <= set(results)
    assert results[f"test/class_acc/{single}"] == 1.0  # one image, predicted right: 1 of 1
