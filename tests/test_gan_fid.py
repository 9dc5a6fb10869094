"""val/fid while training: the WGAN's and the CycleGAN's validation against a Frechet distance computed by hand."""

import json
import logging
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from conftest import make_unpaired
from PIL import Image
from torch import nn

import train
from callbacks.errors import UserError
from callbacks.images import LABEL_HEIGHT
from datamodules import ImageFolderDataModule, UnpairedImageDataModule
from lightning_modules import WGAN, CycleGAN, DarknetClassifier, fid

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets on a shared 2-core CPU

TINY_WGAN = {"isize": 16, "nz": 8, "ngf": 4, "ndf": 4, "sample_every": 1000, "d_iters": 2, "d_iters_long": 2,
             "long_until": 0, "long_every": 1000}


def frechet_by_hand(real: np.ndarray, fake: np.ndarray) -> float:
    """||mu_r - mu_f||^2 + Tr(S_r + S_f - 2 (S_r S_f)^1/2), the trace root from the eigenvalues of S_r S_f."""
    sr, sf = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    root_trace = np.sqrt(np.clip(np.linalg.eigvals(sr @ sf).real, 0, None)).sum()
    return float(((real.mean(0) - fake.mean(0)) ** 2).sum() + np.trace(sr) + np.trace(sf) - 2 * root_trace)


class ChannelMeans(nn.Module):
    """A feature net whose features are known by hand: each image's mean R, G and B (images in [0, 1])."""

    num_features = 3

    def forward(self, images):
        return images.float().mean((2, 3))


@pytest.fixture
def channel_means(tmp_path, monkeypatch):
    """--model.fid_features pointing at a file, and the feature net it gives replaced by ChannelMeans."""
    monkeypatch.setattr(fid, "feature_extractor", lambda path: ChannelMeans())
    path = tmp_path / "means.pth"
    path.write_bytes(b"")
    return str(path)


@pytest.fixture
def darknet_ckpt(tmp_path):
    torch.manual_seed(0)
    model = DarknetClassifier(num_blocks=[1, 1], nf=4, num_classes=3)
    trainer = L.Trainer(accelerator="cpu", logger=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(tmp_path / "darknet.ckpt")
    return str(tmp_path / "darknet.ckpt")


def validator(tmp_path) -> L.Trainer:
    return L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                     default_root_dir=str(tmp_path / "run"))


def solid_colours(folder, n: int, size: int = 16, seed: int = 0) -> np.ndarray:
    """n one-colour PNGs; returns their colours in [0, 1], which are their ChannelMeans features."""
    folder.mkdir(parents=True)
    colours = np.random.default_rng(seed).integers(0, 256, (n, 3), dtype=np.uint8)
    for i, colour in enumerate(colours):
        Image.fromarray(np.broadcast_to(colour, (size, size, 3)).copy()).save(folder / f"{i:03d}.png")
    return colours / 255


class NoiseToColour(nn.Module):
    """Stands in for the generator: noise z -> one-colour images 0.1 z[:3] (features 0.5 + 0.05 z[:3]); keeps z."""

    def __init__(self, size: int):
        super().__init__()
        self.size, self.calls = size, []

    def forward(self, noise):
        self.calls.append(noise.detach().clone())
        return 0.1 * noise[:, :3].expand(-1, -1, self.size, self.size)


def test_wgan_validation_logs_the_formulas_distance_between_fixed_noise_and_the_real_sample(tmp_path, channel_means):
    real = solid_colours(tmp_path / "images", 30)
    data = ImageFolderDataModule(str(tmp_path / "images"), isize=16, batch_size=8, num_workers=0, val_size=20)
    model = WGAN(**TINY_WGAN, fid_features=channel_means)
    model.generator = NoiseToColour(16)
    trainer = validator(tmp_path)
    distances = []
    for _ in range(2):
        model.generator.calls.clear()
        trainer.validate(model, datamodule=data, verbose=False)
        distances.append(trainer.callback_metrics["val/fid"].item())
        noise = [z for z in model.generator.calls if len(z) != len(model.fixed_noise)]  # not the gallery's
        assert [len(z) for z in noise] == [8, 8, 4]  # as many fakes as real images
    order = torch.randperm(30, generator=torch.Generator().manual_seed(0))[:20]  # the datamodule's seed
    fake = 0.5 + 0.05 * torch.cat(noise)[:, :3, 0, 0].double().numpy()
    expected = frechet_by_hand(real[sorted(order.tolist())], fake)
    assert distances[0] == pytest.approx(expected, rel=1e-5) and expected > 0.01
    assert distances[1] == pytest.approx(distances[0], rel=1e-9)  # the same noise, the real statistics kept
    assert model.frechet.metrics["fid"].real_features_num_samples.item() == 20  # read once, not per validation
    assert sorted(p.name for p in (tmp_path / "run" / "images").iterdir()) == ["samples-000000.png"]


@pytest.mark.parametrize("in_memory", [False, True])
def test_wgan_validation_leaves_an_unreadable_real_image_out_rather_than_counting_a_stand_in_twice(
        tmp_path, channel_means, in_memory):
    """The first file of the seeded sample unreadable: read from the files, the sample is the other 19 (the training
    loader's stand-in, the next file, made a 20th counted twice); in memory, the decoded copy holds the 29 readable
    images once each and the sample is 20 of those. The distance by hand over exactly those images."""
    real = solid_colours(tmp_path / "images", 30)
    order = torch.randperm(30, generator=torch.Generator().manual_seed(0))[:20].tolist()  # the datamodule's seed
    bad = order[0]
    (tmp_path / "images" / f"{bad:03d}.png").write_bytes(b"")
    if in_memory:
        readable = np.delete(real, bad, axis=0)
        expected_real = readable[torch.randperm(29, generator=torch.Generator().manual_seed(0))[:20].numpy()]
    else:
        expected_real = real[[i for i in order if i != bad]]
    data = ImageFolderDataModule(str(tmp_path / "images"), isize=16, batch_size=8, num_workers=0, val_size=20,
                                 in_memory=in_memory)
    model = WGAN(**TINY_WGAN, fid_features=channel_means)
    model.generator = NoiseToColour(16)
    with pytest.warns(UserWarning, match=f"skipped: cannot read image .*{bad:03d}.png"):
        validator(tmp_path).validate(model, datamodule=data, verbose=False)
    noise = [z for z in model.generator.calls if len(z) != len(model.fixed_noise)]
    fake = 0.5 + 0.05 * torch.cat(noise)[:, :3, 0, 0].double().numpy()
    assert model.frechet.metrics["fid"].real_features_num_samples.item() == len(expected_real) == len(fake)
    assert model.trainer.callback_metrics["val/fid"].item() == pytest.approx(frechet_by_hand(expected_real, fake),
                                                                               rel=1e-5)


class Halve(nn.Module):
    def forward(self, images):
        return images / 2


def test_cyclegan_validation_compares_translated_test_images_with_the_other_domain(tmp_path, channel_means):
    root = make_unpaired(tmp_path / "unpaired", counts=(4, 4, 5, 7), size=(32, 32), gray_in=None)
    features = {side: np.stack([np.asarray(Image.open(f).convert("RGB")).reshape(-1, 3).mean(0) / 255
                                for f in sorted((root / f"test{side}").iterdir())]) for side in "AB"}
    data = UnpairedImageDataModule(str(root), batch_size=2, load_size=32, crop_size=32, num_workers=0)
    model = CycleGAN(n_blocks=1, ngf=4, ndf=4, fid_features=channel_means)
    model.gen_a2b, model.gen_b2a = Halve(), nn.Identity()  # fake B = A / 2 in [-1, 1]: features 0.25 + A / 2
    trainer = validator(tmp_path)
    trainer.validate(model, datamodule=data, verbose=False)
    logged = {k: v.item() for k, v in trainer.callback_metrics.items()}
    a2b = frechet_by_hand(features["B"], 0.25 + features["A"] / 2)
    b2a = frechet_by_hand(features["A"], features["B"])  # gen_b2a is the identity: testB itself
    assert logged["val/fid_a2b"] == pytest.approx(a2b, rel=1e-5)
    assert logged["val/fid_b2a"] == pytest.approx(b2a, rel=1e-5)
    assert logged["val/fid"] == pytest.approx((a2b + b2a) / 2, rel=1e-5) and a2b != pytest.approx(b2a, rel=0.01)
    counts = {k: m.real_features_num_samples.item() for k, m in model.frechet.metrics.items()}
    assert counts == {"fid_a2b": 7, "fid_b2a": 5}  # each test image once: the real B and the real A
    with Image.open(tmp_path / "run" / "images" / "val_visuals-000000.png") as grid:
        # 6 columns under their names, 4 rows (the first 4 of each domain), 2px padding
        assert grid.size == (6 * 34 + 2, LABEL_HEIGHT + 4 * 34 + 2)


@pytest.mark.parametrize("system", ["wgan", "cyclegan"])
def test_a_validation_with_one_real_image_is_refused_in_one_line(tmp_path, channel_means, system):
    """A covariance needs two images: torchmetrics' RuntimeError (a traceback, after training up to the first
    validation) becomes a UserError naming the distance and the fix."""
    if system == "wgan":
        solid_colours(tmp_path / "images", 16)
        data = ImageFolderDataModule(str(tmp_path / "images"), isize=16, batch_size=4, num_workers=0, val_size=1)
        model, name = WGAN(**TINY_WGAN, fid_features=channel_means), "fid"
    else:  # one testA image: one fake B for fid_a2b (beside 3 real B), one real A for fid_b2a; the first named
        root = make_unpaired(tmp_path / "unpaired", counts=(2, 2, 1, 3), size=(32, 32), gray_in=None)
        data = UnpairedImageDataModule(str(root), batch_size=2, load_size=32, crop_size=32, num_workers=0)
        model, name = CycleGAN(n_blocks=1, ngf=4, ndf=4, fid_features=channel_means), "fid_a2b"
    with pytest.raises(UserError, match=rf"^val/{name} needs two real and two generated images or more \(a "
                                        r"covariance each\); give the validation more images \(the WGAN's "
                                        r"--data.val_size, the CycleGAN's testA and testB\) or set "
                                        r"--model.fid_features null$"):
        validator(tmp_path).validate(model, datamodule=data, verbose=False)


def test_without_features_the_fit_runs_no_validation_and_says_so(tmp_path, caplog, monkeypatch):
    solid_colours(tmp_path / "images", 16)
    data = ImageFolderDataModule(str(tmp_path / "images"), isize=16, batch_size=4, num_workers=0)
    monkeypatch.setattr(ImageFolderDataModule, "val_dataloader", lambda self: pytest.fail("validation data loaded"))
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                        max_steps=4, val_check_interval=2, default_root_dir=str(tmp_path))
    lightning_log = logging.getLogger("lightning.pytorch")  # Lightning's own, which does not propagate to the root's
    lightning_log.addHandler(caplog.handler)                # handlers (caplog's: pytest >= 9.1 adds it there itself)
    try:
        with caplog.at_level("INFO"):
            trainer.fit(WGAN(**TINY_WGAN), datamodule=data)
    finally:
        lightning_log.removeHandler(caplog.handler)
    assert "val/fid is off: set --model.fid_features" in caplog.text
    assert "val/fid" not in trainer.callback_metrics and trainer.global_step == 4


@pytest.mark.parametrize("system", ["wgan", "cyclegan"])
def test_the_trainer_a_fit_without_features_used_validates_the_next_model(tmp_path, system):
    """The fit without features set the user's Trainer's limit_val_batches to 0: a notebook validating another model
    with that Trainer validated nothing, without a word."""
    class Counted(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.batches = 0

        def validation_step(self, batch, batch_idx):
            self.batches += 1

    if system == "wgan":
        solid_colours(tmp_path / "images", 16)
        gan = WGAN(**TINY_WGAN)
        data = ImageFolderDataModule(str(tmp_path / "images"), isize=16, batch_size=4, num_workers=0)
    else:
        gan = CycleGAN(n_blocks=1, ngf=4, ndf=4)
        data = UnpairedImageDataModule(str(make_unpaired(tmp_path / "unpaired")), batch_size=2, load_size=32,
                                       crop_size=32, num_workers=0)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                        max_steps=3, limit_val_batches=2, num_sanity_val_steps=0, default_root_dir=str(tmp_path))
    trainer.fit(gan, datamodule=data)
    assert trainer.limit_val_batches == 2
    model = Counted()
    trainer.validate(model, torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(8, 1))))
    assert model.batches == 2


def test_a_fit_with_features_leaves_the_trainers_limit_val_batches_as_given(tmp_path, channel_means):
    """Only a fit without features lends the Trainer's limit_val_batches out and gives it back at the end."""
    solid_colours(tmp_path / "images", 16)
    data = ImageFolderDataModule(str(tmp_path / "images"), isize=16, batch_size=4, num_workers=0, val_size=8)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                        max_steps=3, limit_val_batches=2, num_sanity_val_steps=0, default_root_dir=str(tmp_path))
    trainer.fit(WGAN(**TINY_WGAN, fid_features=channel_means), datamodule=data)
    assert trainer.global_step == 3 and trainer.limit_val_batches == 2


def test_validate_without_features_says_there_is_nothing_to_validate(tmp_path):
    """It validated nothing, printed nothing and ended with status 0."""
    solid_colours(tmp_path / "images", 16)
    data = ImageFolderDataModule(str(tmp_path / "images"), isize=16, batch_size=4, num_workers=0)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=str(tmp_path))
    with pytest.raises(UserError, match="validate: the WGAN's validation is its Frechet distance .* off without "
                                        "--model.fid_features"):
        trainer.validate(WGAN(**TINY_WGAN), datamodule=data)


def test_cyclegan_validate_without_features_says_there_is_nothing_to_validate(tmp_path):
    root = make_unpaired(tmp_path / "unpaired", counts=(2, 2, 2, 2), size=(32, 32), gray_in=None)
    data = UnpairedImageDataModule(str(root), batch_size=2, load_size=32, crop_size=32, num_workers=0)
    with pytest.raises(UserError, match=r"validate: the CycleGAN's validation is its Frechet distances .* off "
                                        r"without --model.fid_features; .* or run test"):
        validator(tmp_path).validate(CycleGAN(n_blocks=1, ngf=4, ndf=4), datamodule=data, verbose=False)


def test_the_validate_subcommand_refused_without_features_leaves_no_run_folder(tmp_path):
    """README: a refused run leaves nothing behind. The refusal came in on_validation_start, after the folder had
    been marked as an evaluation that began: its config.yaml, run.json and W&B run stayed."""
    images, runs = tmp_path / "images", tmp_path / "runs"
    solid_colours(images, 8)
    common = ["--data.data_dir", str(images), "--data.isize", "16", "--data.batch_size", "4", "--data.num_workers", "0",
              "--trainer.logger", "false", "--trainer.default_root_dir", str(runs),
              "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
    train.main(["--system", "wgan", *common, *[f"--model.{k}={v}" for k, v in TINY_WGAN.items()],
                "--trainer.max_steps", "2", "--run_name", "trained"])
    before = sorted(p.relative_to(runs) for p in runs.rglob("*"))
    with pytest.raises(UserError, match="validate: the WGAN's validation is its Frechet distance"):
        train.main(["validate", "--config", str(Path(train.__file__).parent / "configs" / "wgan.yaml"), *common,
                    "--ckpt_path", str(runs / "trained" / "checkpoints" / "last.ckpt")])
    assert sorted(p.relative_to(runs) for p in runs.rglob("*")) == before


def test_features_are_a_darknet_checkpoint_by_content_a_run_folder_or_last(tmp_path, darknet_ckpt, monkeypatch):
    """A Darknet checkpoint not named .ckpt was taken for Inception weights (a 20 KB traceback); a run folder and
    `last` were refused, where every other command takes them."""
    import shutil
    images = torch.rand(2, 3, 32, 32)
    expected = fid.feature_extractor(darknet_ckpt)(images)
    run = tmp_path / "runs" / "darknet" / "r"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(darknet_ckpt, run / "checkpoints" / "last.ckpt")
    (run / "run.json").write_text(json.dumps({"model": "lightning_modules.DarknetClassifier", "kind": "fit"}))
    shutil.copy(darknet_ckpt, tmp_path / "darknet.pt")
    monkeypatch.chdir(tmp_path)
    for given in (str(tmp_path / "darknet.pt"), str(run), "last"):
        extractor = fid.feature_extractor(given)
        assert isinstance(extractor, fid.DarknetFeatures) and torch.equal(extractor(images), expected)
    torch.save({"weights": torch.ones(3)}, tmp_path / "other.pth")
    with pytest.raises(UserError, match=r"other.pth is neither a Lightning checkpoint nor Inception-v3 weights "
                                        r"\(RuntimeError: Error\(s\) in loading state_dict for \w+:\); pass a "):
        fid.feature_extractor(str(tmp_path / "other.pth"))  # the first line of torch's error (missing keys follow)


class LongError:
    """Unpickled as int(a long text): its error's first line is longer than the 120 characters the message keeps."""

    text = "not a number " * 20

    def __reduce__(self):
        return int, (self.text,)


def test_a_file_neither_checkpoint_nor_weights_is_named_with_the_first_120_characters_of_the_error(tmp_path):
    torch.save(LongError(), tmp_path / "long.pth")
    try:
        int(LongError.text)
    except ValueError as error:
        first = str(error)[:120]
    with pytest.raises(UserError) as refused:
        fid.feature_extractor(str(tmp_path / "long.pth"))
    assert f"long.pth is neither a Lightning checkpoint nor Inception-v3 weights (ValueError: {first}); pass a " \
        in str(refused.value) and len(first) == 120


def test_a_missing_feature_file_stops_the_fit_before_training(tmp_path):
    solid_colours(tmp_path / "images", 16)
    data = ImageFolderDataModule(str(tmp_path / "images"), isize=16, batch_size=4, num_workers=0)
    trainer = L.Trainer(accelerator="cpu", logger=False, max_steps=4, default_root_dir=str(tmp_path))
    model = WGAN(**TINY_WGAN, fid_features=str(tmp_path / "nothing.ckpt"))
    with pytest.raises(UserError, match="no feature network file at .*nothing.ckpt"):
        trainer.fit(model, datamodule=data)
    assert trainer.global_step == 0


class FidLog(L.Callback):
    """Each validation's step and logged distances (not the sanity check's)."""

    rows: list = []

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            logged = {k: v.item() for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
            FidLog.rows.append({"step": trainer.global_step, **logged})


def test_wgan_job_logs_val_fid_every_n_batches_and_resumes_with_lean_checkpoints(tmp_path, darknet_ckpt):
    images, runs = tmp_path / "images", tmp_path / "runs"
    solid_colours(images, 24)
    job = ["--system", "wgan", "--data.data_dir", str(images), "--data.isize", "16", "--data.batch_size", "4",
           "--data.num_workers", "0", "--data.val_size", "12", *[f"--model.{k}={v}" for k, v in TINY_WGAN.items()],
           "--model.fid_features", darknet_ckpt, "--trainer.val_check_interval", "4",
           "--trainer.check_val_every_n_epoch", "null", "--trainer.logger", "false",
           "--trainer.default_root_dir", str(runs), "--trainer.enable_progress_bar", "false",
           "--trainer.callbacks+=test_gan_fid.FidLog"]
    FidLog.rows = []
    train.main([*job, "--trainer.max_steps", "10"])
    assert [row["step"] for row in FidLog.rows] == [4, 8]  # batches, across the 6-batch epochs
    assert all(np.isfinite(row["val/fid"]) and row["val/fid"] > 0 for row in FidLog.rows)
    (run_dir,) = runs.iterdir()
    # a gallery with each distance: gen_iterations 2 and 4 (one per 2 batches), and the final one at 5
    assert sorted(p.name for p in (run_dir / "images").iterdir()) == \
        ["real_samples-000000.png", "samples-000002.png", "samples-000004.png", "samples-000005.png"]
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert state["global_step"] == 10
    assert state["state_dict"].keys() == WGAN(**TINY_WGAN).state_dict().keys()  # no feature net, no statistics
    assert state["hyper_parameters"]["fid_features"] == darknet_ckpt

    FidLog.rows = []
    train.main([*job, "--trainer.max_steps", "14", "--ckpt_path", "last"])
    assert [row["step"] for row in FidLog.rows] == [12]  # the real statistics computed again after the resume
    assert np.isfinite(FidLog.rows[0]["val/fid"])
    results = json.loads((run_dir / "results.json").read_text())
    assert results["global_step"] == 14 and results["final_metrics"]["val/fid"] == FidLog.rows[0]["val/fid"]


def test_cyclegan_job_logs_val_fid_and_a_grid_every_n_epochs(tmp_path, darknet_ckpt, tiny_unpaired):
    runs = tmp_path / "runs"
    FidLog.rows = []
    train.main(["--system", "cyclegan", "--data.data_dir", str(tiny_unpaired), "--trainer.default_root_dir", str(runs),
                "--trainer.logger", "false", "--model.ngf", "4", "--model.ndf", "4", "--model.n_blocks", "1",
                "--model.n_epochs", "2", "--model.n_epochs_decay", "1", "--model.log_images_every_n_batches", "0",
                "--model.fid_features", darknet_ckpt, "--data.load_size", "36", "--data.crop_size", "32",
                "--data.batch_size", "2", "--data.num_workers", "0", "--trainer.max_epochs", "3",
                "--trainer.check_val_every_n_epoch", "2", "--trainer.enable_progress_bar", "false",
                "--trainer.callbacks+=test_gan_fid.FidLog"])
    (run_dir,) = runs.iterdir()
    assert [row["step"] for row in FidLog.rows] == [2 * 3 * 3]  # after epoch 2 of 3: 3 batches, 3 optimizers
    row = FidLog.rows[0]
    assert row["val/fid"] == pytest.approx((row["val/fid_a2b"] + row["val/fid_b2a"]) / 2) and row["val/fid"] > 0
    assert sorted(p.name for p in (run_dir / "images").glob("val_*")) == ["val_visuals-000006.png"]
    # checkpoints every epoch still (ModelCheckpoint would wait for a validation: save_on_train_epoch_end)
    assert (run_dir / "checkpoints" / "last.ckpt").resolve().name == "epoch=002.ckpt"
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert state["state_dict"].keys() == CycleGAN(n_blocks=1, ngf=4, ndf=4).state_dict().keys()


class SaveAtValidation(L.Callback):
    """Rank 0 writes the logged distances and the weights they were measured with (for the DDP test)."""

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking and trainer.is_global_zero:
            metrics = {k: v.item() for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
            Path(trainer.default_root_dir, "val.json").write_text(json.dumps(metrics))
            torch.save(pl_module.state_dict(), Path(trainer.default_root_dir, "weights.pt"))


@pytest.mark.xdist_group("cyclegan_ddp_run")  # the job is test_cyclegan_cli's too
def test_ddp_ranks_share_the_images_once_and_log_the_single_process_distance(tmp_path, cyclegan_ddp_run):
    root, run_dir, darknet_ckpt = cyclegan_ddp_run  # the job, shared with test_cyclegan_cli's DDP test (conftest)
    logged = json.loads((run_dir / "val.json").read_text())
    model = CycleGAN(n_blocks=1, ngf=4, ndf=4, fid_features=darknet_ckpt)
    model.load_state_dict(torch.load(run_dir / "weights.pt"))
    data = UnpairedImageDataModule(str(root), batch_size=2, load_size=36, crop_size=32, num_workers=0)
    trainer = validator(tmp_path)
    trainer.validate(model, datamodule=data, verbose=False)
    assert model.frechet.metrics["fid_a2b"].real_features_num_samples.item() == 7
    for key in ("val/fid_a2b", "val/fid_b2a", "val/fid"):
        assert logged[key] == pytest.approx(trainer.callback_metrics[key].item(), rel=1e-4), key


def test_a_fit_after_a_validate_reads_the_real_sample_again_after_its_sanity_check(tmp_path, channel_means):
    solid_colours(tmp_path / "images", 16)
    data = ImageFolderDataModule(str(tmp_path / "images"), isize=16, batch_size=4, num_workers=0, val_size=12)
    model = WGAN(**TINY_WGAN, fid_features=channel_means)
    L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
              default_root_dir=str(tmp_path)).validate(model, datamodule=data)  # its gallery lands there
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                        max_steps=2, val_check_interval=2, check_val_every_n_epoch=None, num_sanity_val_steps=1,
                        default_root_dir=str(tmp_path))
    trainer.fit(model, datamodule=data)  # its sanity check (1 batch) forgets the real statistics
    assert model.frechet.metrics["fid"].real_features_num_samples.item() == 12
    assert np.isfinite(trainer.callback_metrics["val/fid"].item())


def test_under_mps_the_metrics_sums_stay_on_the_cpu(darknet_ckpt):
    # torchmetrics keeps the Frechet sums in float64, which Apple's MPS has not: the metric stays on the CPU there
    # (a machine without MPS: moving it to "mps" would fail at once)
    frechet = fid.FrechetValidation(darknet_ckpt, ["fid"])
    frechet.build(torch.device("mps"))
    assert {state.device.type for state in frechet.metrics["fid"].metric_state.values()} == {"cpu"}
    assert frechet.metrics["fid"].real_features_sum.dtype == torch.float64
