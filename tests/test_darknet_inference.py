"""dl2-classify on a tiny Darknet: probabilities against a forward pass by hand, flip TTA, image sizes, an ensemble."""

import warnings
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

from callbacks import UserError
from lightning_modules import commands
from lightning_modules.darknet_classify import classify

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.xdist_group("inference_commands")]


def by_hand(checkpoint, images: torch.Tensor, flip: bool = False) -> torch.Tensor:
    """Class probabilities written out: the seed's normalisation, the net, a softmax (of the mean logits with
    the mirror image when flip)."""
    from lightning_modules import DarknetClassifier
    model = DarknetClassifier.load_from_checkpoint(checkpoint, map_location="cpu").eval()
    mean = torch.tensor([0.4914, 0.48216, 0.44653]).view(1, 3, 1, 1)
    std = torch.tensor([0.24703, 0.24349, 0.26159]).view(1, 3, 1, 1)
    x = (images.float() / 255 - mean) / std
    with torch.no_grad():
        logits = model.net(x)
        if flip:
            logits = (logits + model.net(x.flip(-1))) / 2
    return logits.softmax(1)


def no_compilation(monkeypatch):
    import lightning_modules.darknet_classifier as darknet

    def refuse(options):
        raise AssertionError("classify compiled the net")
    monkeypatch.setattr(darknet, "compiled_call", refuse)


def test_a_run_folder_or_last_stands_for_the_runs_last_checkpoint(darknet_checkpoint, tmp_path, capsys, monkeypatch):
    """`last`: the newest darknet training run's checkpoints/last.ckpt in runs/darknet (as train.py's --ckpt_path
    last); a run folder: its own. Told apart by their weights: each run's checkpoint is another net."""
    import json
    checkpoint, data_dir = darknet_checkpoint
    runs = tmp_path / "runs" / "darknet"
    state = torch.load(checkpoint, weights_only=False)
    for k, (name, started, model) in enumerate([("old", 1.0, "lightning_modules.DarknetClassifier"),
                                                ("new", 0.5, "lightning_modules.DarknetClassifier"),
                                                ("newer-test", 3.0, "lightning_modules.DarknetClassifier"),
                                                ("../darknet_fast/fast", 0.7, "lightning_modules.DarknetClassifier"),
                                                ("untrained", 5.0, "lightning_modules.DarknetClassifier"),
                                                ("newest-wgan", 4.0, "lightning_modules.WGAN")]):
        (runs / name / "checkpoints").mkdir(parents=True)
        kind = "test" if name == "newer-test" else "fit"
        (runs / name / "run.json").write_text(json.dumps({"model": model, "started": started, "kind": kind,
                                                          "trained": name != "untrained"}))
        torch.manual_seed(k)
        weights = {key: value + 0.5 * torch.randn_like(value) if value.is_floating_point() else value
                   for key, value in state["state_dict"].items()}
        torch.save({**state, "state_dict": weights}, runs / name / "checkpoints" / "last.ckpt")
    (runs / "aaa-no-run-json" / "checkpoints").mkdir(parents=True)  # first in the order the folders are read
    (runs / "aaa-no-run-json" / "checkpoints" / "last.ckpt").write_bytes(b"")
    run_json = runs / "old" / "run.json"
    run_json.write_text(json.dumps({k: v for k, v in json.loads(run_json.read_text()).items() if k != "started"}))
    image = sorted((data_dir / "test").rglob("*.png"))[0]
    pixels = torch.from_numpy(np.array(Image.open(image))).permute(2, 0, 1)[None]
    monkeypatch.chdir(tmp_path)
    for argument, run in [("last", "../darknet_fast/fast"), (str(runs / "old"), "old")]:
        (result,) = classify(argument, [str(image)], top_k=3)
        expected = by_hand(runs / run / "checkpoints" / "last.ckpt", pixels)[0]
        assert torch.allclose(torch.tensor(list(result["probabilities"].values())), expected, atol=1e-5)
        used = Path("runs/darknet_fast/fast") if argument == "last" else runs / run
        assert f"checkpoint: {used / 'checkpoints' / 'last.ckpt'}\n" == capsys.readouterr().err  # which, on stderr
    assert not torch.allclose(by_hand(runs / "old" / "checkpoints" / "last.ckpt", pixels),
                              by_hand(runs / "new" / "checkpoints" / "last.ckpt", pixels), atol=1e-3)
    for argument, needle in [(str(tmp_path / "absent.ckpt"), f"checkpoint {tmp_path / 'absent.ckpt'} not found"),
                             (str(runs), f"checkpoint {runs} is a folder without checkpoints/last.ckpt")]:
        with pytest.raises(UserError, match=needle):
            classify(argument, [str(image)])
    monkeypatch.chdir(tmp_path / "runs")  # no runs/darknet here
    with pytest.raises(SystemExit) as stop:
        commands.classify(["last", str(image)])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1, err
    assert f"last: no darknet run with checkpoints/last.ckpt in {tmp_path / 'runs' / 'runs'}/*/" in err


def test_classify_gives_each_images_classes_and_probabilities_and_writes_them(darknet_checkpoint, tmp_path,
                                                                              capsys, monkeypatch):
    import csv
    checkpoint, data_dir = darknet_checkpoint
    no_compilation(monkeypatch)
    csv_path = tmp_path / "out" / "deeper" / "predictions.csv"
    for _ in range(2):  # into folders it makes, then over the file it wrote
        assert commands.classify([str(checkpoint), str(data_dir / "test"), "--top_k", "2", "--output",
                                  str(csv_path)]) is None  # sys.exit(None): status 0
    results = classify(str(checkpoint), [str(data_dir / "test")], top_k=2)
    files = sorted((data_dir / "test").rglob("*.png"))
    assert [r["path"] for r in results] == [str(f) for f in files]  # the class folders searched, in path order
    pixels = torch.stack([torch.from_numpy(__import__("numpy").array(Image.open(f))).permute(2, 0, 1) for f in files])
    expected = by_hand(checkpoint, pixels)
    names = ["cat", "dog", "frog"]  # the data's class folders, kept in the checkpoint
    for result, p in zip(results, expected, strict=True):
        assert list(result["probabilities"]) == names
        assert torch.allclose(torch.tensor(list(result["probabilities"].values())), p, atol=1e-5)
        assert result["prediction"] == names[int(p.argmax())] and result["probability"] == pytest.approx(float(p.max()))
        assert [name for name, _ in result["top"]] == [names[i] for i in p.argsort(descending=True)[:2]]
    printed = capsys.readouterr().out.splitlines()
    assert printed[:len(files)] == printed[2 * (len(files) + 1):]  # the command's lines (twice), the function's
    top = results[0]["top"]
    assert printed[0] == f"{files[0]}: {top[0][0]} {100 * top[0][1]:.1f}%, {top[1][0]} {100 * top[1][1]:.1f}%"
    with open(csv_path) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["path", "prediction", "probability", *names] and len(rows) == 1 + len(files)
    assert float(rows[1][3 + names.index(rows[1][1])]) == pytest.approx(float(expected[0].max()), abs=1e-6)


def test_classify_flip_tta_averages_the_mirror_logits(darknet_checkpoint):
    checkpoint, data_dir = darknet_checkpoint
    file = data_dir / "test" / "dog" / "0001.png"
    result, = classify(str(checkpoint), [str(file)], tta="flip", top_k=1)
    assert len(result["top"]) == 1
    pixels = torch.from_numpy(__import__("numpy").array(Image.open(file))).permute(2, 0, 1)[None]
    expected = by_hand(checkpoint, pixels, flip=True)[0]
    assert torch.allclose(torch.tensor(list(result["probabilities"].values())), expected, atol=1e-5)
    assert not torch.allclose(expected, by_hand(checkpoint, pixels)[0], atol=1e-5)  # the mirror mattered


def test_classify_resizes_other_sizes_to_the_training_size(darknet_checkpoint, tmp_path, monkeypatch):
    """What the net is given: a uniform 50x70 image becomes the 32x32 one of its colour; a 32x64 image is cut to
    its central 32x32 square (junk on both sides), normalised with the seed's statistics."""
    import numpy as np

    from lightning_modules import DarknetClassifier
    checkpoint, _ = darknet_checkpoint
    seen = []
    forward = DarknetClassifier.forward
    monkeypatch.setattr(DarknetClassifier, "forward", lambda self, x: seen.append(x.clone()) or forward(self, x))
    Image.new("RGB", (70, 50), (200, 30, 90)).save(tmp_path / "uniform.png")
    centre = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    junk = np.random.default_rng(1).integers(0, 256, (32, 16, 3), dtype=np.uint8)
    Image.fromarray(np.concatenate([junk, centre, junk[:, ::-1]], axis=1)).save(tmp_path / "wide.png")
    classify(str(checkpoint), [str(tmp_path / "uniform.png"), str(tmp_path / "wide.png")])
    mean = torch.tensor([0.4914, 0.48216, 0.44653]).view(3, 1, 1)
    std = torch.tensor([0.24703, 0.24349, 0.26159]).view(3, 1, 1)
    uniform = ((torch.tensor([200, 30, 90]).view(3, 1, 1) / 255 - mean) / std).expand(3, 32, 32)
    wide = (torch.from_numpy(centre).permute(2, 0, 1) / 255 - mean) / std
    assert seen[0].shape == (2, 3, 32, 32)
    assert torch.allclose(seen[0][0], uniform, atol=1e-4) and torch.allclose(seen[0][1], wide, atol=1e-4)


def trained_at(root: Path, image_size: int, phases=None) -> tuple[Path, Path]:
    """A tiny Darknet trained 2 steps on 32px folders resized to `image_size` (--data.image_size), its checkpoint."""
    from conftest import make_folders

    from callbacks import TrainingPhase, TrainingPhaseScheduler
    from datamodules import CIFAR10DataModule
    from lightning_modules import DarknetClassifier
    data_dir = make_folders(root / "cifar", per_class=(4, 2))
    torch.manual_seed(0)
    model = DarknetClassifier(num_blocks=[1], nf=4, num_classes=3, one_cycle=None)
    callbacks = [TrainingPhaseScheduler([TrainingPhase(**p) for p in phases], plot=False)] if phases else []
    trainer = L.Trainer(accelerator="cpu", max_steps=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        default_root_dir=root, callbacks=callbacks)
    data = CIFAR10DataModule(str(data_dir), batch_size=4, download=False, image_size=image_size)
    trainer.fit(model, datamodule=data)
    trainer.save_checkpoint(root / "darknet.ckpt")
    return root / "darknet.ckpt", data_dir


@pytest.mark.parametrize("case", ["data", "phase", "older checkpoint", "no size kept", "--size"])
def test_classify_gives_the_net_the_size_it_was_trained_at(case, tmp_path, monkeypatch):
    """A net trained at --data.image_size 40 (or a last phase's data image_size 40) is given 40px images, not 32px
    ones: a uniform 32x32 image becomes the uniform 40x40 one of its colour. A checkpoint written before the size was
    kept gives its data module's image_size; one without either (its data module's hyper-parameters dropped) CIFAR-10's
    32px; --size still chooses."""
    from lightning_modules import DarknetClassifier
    if case == "phase":
        checkpoint, _ = trained_at(tmp_path, 32, phases=[{"epochs": 0.5, "lr": 0.01, "data": {"image_size": 24}},
                                                         {"epochs": 1, "lr": 0.01, "data": {"image_size": 40}}])
    else:
        checkpoint, _ = trained_at(tmp_path, 40)
    if case in ("older checkpoint", "no size kept"):
        state = torch.load(checkpoint, weights_only=False)
        del state["image_size"]
        if case == "no size kept":
            del state["datamodule_hyper_parameters"]
        torch.save(state, checkpoint)
    seen = []
    forward = DarknetClassifier.forward
    monkeypatch.setattr(DarknetClassifier, "forward", lambda self, x: seen.append(x.clone()) or forward(self, x))
    Image.new("RGB", (32, 32), (200, 30, 90)).save(tmp_path / "uniform.png")
    classify(str(checkpoint), [str(tmp_path / "uniform.png")], **({"size": 24} if case == "--size" else {}))
    side = {"--size": 24, "no size kept": 32}.get(case, 40)
    mean = torch.tensor([0.4914, 0.48216, 0.44653]).view(3, 1, 1)
    std = torch.tensor([0.24703, 0.24349, 0.26159]).view(3, 1, 1)
    uniform = ((torch.tensor([200, 30, 90]).view(3, 1, 1) / 255 - mean) / std).expand(3, side, side)
    assert seen[0].shape == (1, 3, side, side)
    assert torch.allclose(seen[0][0], uniform, atol=1e-4)


def test_testing_a_checkpoint_at_another_image_size_warns(tmp_path):
    from datamodules import CIFAR10DataModule
    from lightning_modules import DarknetClassifier
    checkpoint, data_dir = trained_at(tmp_path, 40)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path)
    model = DarknetClassifier(num_blocks=[1], nf=4, num_classes=3, one_cycle=None, interpret=False)
    with pytest.warns(UserWarning, match="trained on 40px images, the data gives it 32px ones"):
        trainer.test(model, datamodule=CIFAR10DataModule(str(data_dir), download=False), ckpt_path=checkpoint)
    with warnings.catch_warnings(record=True) as caught:  # at the size it was trained at: nothing to say
        warnings.simplefilter("always")
        trainer.test(model, datamodule=CIFAR10DataModule(str(data_dir), download=False, image_size=40),
                     ckpt_path=checkpoint)
    assert not [w for w in caught if "the data gives it" in str(w.message)]


def test_a_checkpoint_without_class_names_numbers_the_classes(darknet_checkpoint, tmp_path):
    checkpoint, data_dir = darknet_checkpoint
    state = torch.load(checkpoint, weights_only=False)
    del state["class_names"]
    torch.save(state, tmp_path / "old.ckpt")
    result, = classify(str(tmp_path / "old.ckpt"), [str(data_dir / "test" / "cat" / "0000.png")])
    assert list(result["probabilities"]) == ["0", "1", "2"]


def test_classify_ensemble_averages_the_nets_probabilities(darknet_checkpoint, tmp_path):
    from lightning_modules import DarknetClassifier
    checkpoint, data_dir = darknet_checkpoint
    other = DarknetClassifier.load_from_checkpoint(checkpoint, map_location="cpu")
    with torch.no_grad():
        for parameter in other.parameters():
            parameter.mul_(1.5)  # another net of the same classes
    trainer = L.Trainer(accelerator="cpu", logger=False)
    trainer.strategy.connect(other)
    trainer.save_checkpoint(tmp_path / "snapshot.ckpt")
    files = sorted((data_dir / "test").rglob("*.png"))
    csv_path = tmp_path / "ensemble.csv"
    commands.classify([str(checkpoint), "--ensemble", str(tmp_path / "snapshot.ckpt"), str(data_dir / "test"),
                       "--output", str(csv_path)])  # the flag, as a user types it, before the images too
    rows = [line.split(",") for line in csv_path.read_text().splitlines()[1:]]
    pixels = torch.stack([torch.from_numpy(__import__("numpy").array(Image.open(f))).permute(2, 0, 1) for f in files])
    expected = (by_hand(checkpoint, pixels) + by_hand(tmp_path / "snapshot.ckpt", pixels)) / 2
    assert not torch.allclose(by_hand(checkpoint, pixels), expected, atol=1e-3)  # the second net mattered
    assert [row[0] for row in rows] == [str(f) for f in files]
    for row, p in zip(rows, expected, strict=True):
        assert torch.allclose(torch.tensor([float(x) for x in row[3:]]), p, atol=1e-5)
    other.class_names = ["a", "b", "c"]
    trainer.save_checkpoint(tmp_path / "other_classes.ckpt")
    with pytest.raises(UserError, match="an ensemble needs nets of the same classes"):
        classify(str(checkpoint), [str(files[0])], ensemble=[str(tmp_path / "other_classes.ckpt")])
    other.class_names, other.image_size = ["cat", "dog", "frog"], 48  # trained at 48px: given the first net's 32px
    trainer.save_checkpoint(tmp_path / "at48.ckpt")
    with pytest.warns(UserWarning, match=rf"^--ensemble {tmp_path / 'at48.ckpt'} was trained at 48px, {checkpoint} at "
                                         r"32px: every net is given 32px images \(--size sets it\)$"):
        classify(str(checkpoint), [str(files[0])], ensemble=[str(tmp_path / "at48.ckpt")])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        classify(str(checkpoint), [str(files[0])], ensemble=[str(tmp_path / "at48.ckpt")], size=40)  # chosen: no word


def test_classify_skips_an_unreadable_image_names_it_and_classifies_the_others(darknet_checkpoint, tmp_path, capsys):
    import csv
    import shutil
    checkpoint, data_dir = darknet_checkpoint
    folder = tmp_path / "mixed"
    shutil.copytree(data_dir / "test" / "cat", folder)
    (folder / "0000b.png").write_bytes((folder / "0000.png").read_bytes()[:40])  # torn, between two good ones
    good = sorted(p for p in folder.iterdir() if p.name != "0000b.png")
    with pytest.raises(SystemExit) as stop:  # the others classified, and exit status 1 so a script can tell
        commands.classify([str(checkpoint), str(folder), "--output", str(tmp_path / "p.csv")])
    assert stop.value.code == 1
    err = capsys.readouterr().err
    assert "could not read 1 of 3 images: cannot read image" in err and "0000b.png" in err
    with open(tmp_path / "p.csv") as f:
        rows = list(csv.reader(f))[1:]
    assert [row[0] for row in rows] == list(map(str, good))
    pixels = torch.stack([torch.from_numpy(np.array(Image.open(f))).permute(2, 0, 1) for f in good])
    for row, p in zip(rows, by_hand(checkpoint, pixels), strict=True):
        assert float(row[2]) == pytest.approx(float(p.max()), abs=1e-6)
    (folder / "0000.png").write_bytes(b"")
    (folder / "0001.png").write_bytes(b"")
    with pytest.raises(SystemExit) as stop:  # nothing could be read: an error, not an empty result
        commands.classify([str(checkpoint), str(folder)])
    assert stop.value.code == 2 and "none of the 3 images could be read" in capsys.readouterr().err


def test_classify_goes_on_past_a_batch_it_could_not_read_and_names_a_lone_unreadable_image(darknet_checkpoint,
                                                                                           tmp_path, capsys):
    """Batches of one image: the first (torn) gives an empty batch, and the next batch is still classified. Two
    unreadable images of two are "none of the 2"; a single image that cannot be read is refused with its own error."""
    import shutil
    checkpoint, data_dir = darknet_checkpoint
    folder = tmp_path / "torn_first"
    folder.mkdir()
    shutil.copy(data_dir / "test" / "cat" / "0000.png", folder / "b.png")
    (folder / "a.png").write_bytes((folder / "b.png").read_bytes()[:40])
    with pytest.raises(SystemExit) as stop:
        commands.classify([str(checkpoint), str(folder), "--batch_size", "1"])
    out, err = capsys.readouterr()
    assert stop.value.code == 1 and "could not read 1 of 2 images: cannot read image" in err and "a.png" in err
    assert f"{folder / 'b.png'}: " in out  # the second batch classified
    (folder / "b.png").write_bytes(b"")
    with pytest.raises(SystemExit) as stop:
        commands.classify([str(checkpoint), str(folder)])
    assert stop.value.code == 2 and "none of the 2 images could be read" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        commands.classify([str(checkpoint), str(folder / "a.png")])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "cannot read image" in err and "a.png" in err and "none of" not in err



def test_predict_from_python_takes_a_path_a_pil_image_or_a_uint8_tensor_as_classify_does(darknet_checkpoint):
    """fastai's learn.predict had no counterpart: a notebook decoded, squared and normalised by hand, and a float
    [0, 1] tensor (ToTensor's) went through the seed's normalisation as another image without a word."""
    from lightning_modules import DarknetClassifier
    checkpoint, data_dir = darknet_checkpoint
    model = DarknetClassifier.load_from_checkpoint(checkpoint, map_location="cpu")
    model.train()
    files = [data_dir / "test" / "dog" / "0001.png", data_dir / "test" / "cat" / "0000.png"]
    pixels = torch.stack([torch.from_numpy(np.array(Image.open(f))).permute(2, 0, 1) for f in files])
    for tta, flip in (("none", False), ("flip", True)):
        expected = by_hand(checkpoint, pixels, flip=flip)
        name, index, probabilities = model.predict(str(files[0]), tta=tta)
        assert torch.allclose(probabilities, expected[0], atol=1e-5)
        assert index == int(expected[0].argmax()) and name == ["cat", "dog", "frog"][index]
        for each in (model.predict(Image.open(files[1]), tta=tta), model.predict(pixels[1], tta=tta)):
            assert torch.allclose(each[2], expected[1], atol=1e-5)
        listed = model.predict([files[0], pixels[1]], tta=tta)
        assert [torch.allclose(p, e, atol=1e-5) for (_, _, p), e in zip(listed, expected, strict=True)] == [True] * 2
    assert model.training  # put back as it was
    (result,) = classify(str(checkpoint), [str(files[0])], tta="flip")
    assert torch.allclose(torch.tensor(list(result["probabilities"].values())), model.predict(files[0], "flip")[2],
                          atol=1e-6)  # the command and the method prepare an image alike
    with pytest.raises(UserError, match=r"not a float32 tensor of shape \(3, 32, 32\); from a float image in \[0, 1\]: "
                                        r"\(image \* 255\)\.round\(\)\.to\(torch\.uint8\)"):
        model.predict(pixels[0].float() / 255)


def test_predict_of_an_untrained_model_squares_to_32_and_names_what_it_cannot_read():
    """A model made in the notebook, before any fit, keeps no training size: CIFAR-10's 32, as dl2-classify's default;
    something not an image is named by its type, without the float tensor's hint."""
    from lightning_modules import DarknetClassifier
    torch.manual_seed(0)
    model = DarknetClassifier(num_blocks=[1], nf=4, num_classes=3).eval()
    assert model.image_size is None
    image = torch.randint(0, 256, (3, 40, 40), dtype=torch.uint8)
    centre = torch.nn.functional.interpolate(image[None].float() / 255, size=32, mode="bilinear", antialias=True,
                                             align_corners=False)  # resize_crop's own resize, square already
    x = ((centre * 255).round() / 255 - torch.tensor([0.4914, 0.48216, 0.44653]).view(1, 3, 1, 1)) / torch.tensor(
        [0.24703, 0.24349, 0.26159]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = model.net(x).softmax(1)[0]
    assert torch.allclose(model.predict(image, tta="none")[2], expected, atol=1e-4)
    with pytest.raises(UserError) as refused:
        model.predict(3)
    assert str(refused.value) == ("predict takes an image file's path, a PIL image or a uint8 (3, H, W) tensor in "
                                  "0..255, not a int")


SUBCLASS = '''
import torch
from lightning_modules import DarknetClassifier


class DoubledHead(DarknetClassifier):
    """A user's system built on ours, trained with train.py --model my_head.DoubledHead: logits times 2."""

    def __init__(self, scale: float = 2.0, **options):
        super().__init__(**options)
        self.scale = scale

    def forward(self, images):
        return super().forward(images) * self.scale
'''


def test_the_commands_take_a_checkpoint_of_a_users_class_built_on_the_darknet(tiny_cifar, tmp_path, capsys,
                                                                               monkeypatch):
    """train.py trains `--model my_head.DoubledHead`; dl2-classify and dl2-export refused its checkpoint ("a
    DoubledHead checkpoint; this command takes a DarknetClassifier one", "a network this project does not know")
    and `last` passed its run by for an older run of the base class. Now its own class runs: its forward, not ours."""
    from runs import job

    import train
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "my_head.py").write_text(SUBCLASS)
    monkeypatch.syspath_prepend(str(tmp_path / "code"))
    monkeypatch.chdir(tmp_path)
    runs = tmp_path / "runs" / "darknet"
    train.main([*job(tiny_cifar, runs, "--run_name", "plain")])  # an older run of the base class
    train.main(job(tiny_cifar, runs, "--model", "my_head.DoubledHead", "--model.scale", "3", "--run_name", "mine"))
    import my_head
    model = my_head.DoubledHead.load_from_checkpoint(runs / "mine" / "checkpoints" / "last.ckpt").eval()
    image = sorted((tiny_cifar / "test").rglob("*.png"))[0]
    pixels = torch.from_numpy(np.array(Image.open(image))).permute(2, 0, 1)[None]
    mean = torch.tensor([0.4914, 0.48216, 0.44653]).view(1, 3, 1, 1)
    std = torch.tensor([0.24703, 0.24349, 0.26159]).view(1, 3, 1, 1)
    with torch.no_grad():  # the user's forward: the net's logits times 3, then the softmax
        expected = (3 * model.net((pixels.float() / 255 - mean) / std)).softmax(1)[0]
    capsys.readouterr()
    (result,) = classify("last", [str(image)], top_k=3, tta="none")
    assert f"checkpoint: {Path('runs/darknet/mine/checkpoints/last.ckpt')}\n" == capsys.readouterr().err
    assert torch.allclose(torch.tensor(list(result["probabilities"].values())), expected, atol=1e-5)
    commands.export(["last", "--output", "mine.ckpt"])
    assert torch.load("mine.ckpt", weights_only=True)["hyper_parameters"]["scale"] == 3
    (again,) = classify("mine.ckpt", [str(image)], top_k=3, tta="none")
    assert again["probabilities"] == result["probabilities"]
    from lightning_modules.export import export
    export("mine.ckpt", "pt2", format="pt2")
    program = torch.export.load("pt2/darknet.pt2").module()
    assert torch.allclose(program(pixels)[0], expected, atol=1e-5)  # the user's forward inside the program too
