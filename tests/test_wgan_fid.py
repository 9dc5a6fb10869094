import warnings

import lightning as L
import numpy as np
import pytest
import torch
from conftest import seeded_rows
from PIL import Image

from callbacks.errors import UserError
from datamodules.augment import normalize
from datamodules.cifar10 import SEED_STATS
from lightning_modules import WGAN, DarknetClassifier
from lightning_modules.wgan_fid import DarknetFeatures, add_images, fid, frechet_metric

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets on a shared 2-core CPU


def save(model, path):
    trainer = L.Trainer(accelerator="cpu", logger=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(path)
    return str(path)


@pytest.fixture
def darknet_ckpt(tmp_path):
    torch.manual_seed(0)
    return save(DarknetClassifier(num_blocks=[1, 1], nf=4, num_classes=3), tmp_path / "darknet.ckpt")


def frechet_by_hand(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2), the trace root from the eigenvalues of S_a S_b."""
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root_trace = np.sqrt(np.clip(np.linalg.eigvals(sa @ sb).real, 0, None)).sum()
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(sa) + np.trace(sb) - 2 * root_trace)


def test_darknet_features_are_the_pooled_channels_before_the_classifier(darknet_ckpt):
    features = DarknetFeatures(darknet_ckpt)
    assert features.num_features == 16  # nf 4 doubled by two groups
    out = features(torch.rand(5, 3, 64, 64))  # any size: resized to the 32px it was trained at
    assert out.shape == (5, 16)


def pil_resized(images: torch.Tensor, size: int) -> torch.Tensor:
    """Each channel squashed to size x size by PIL's bilinear resize of a float image (area-aware when shrinking)."""
    return torch.from_numpy(np.stack([np.stack([np.asarray(Image.fromarray(channel.numpy()).resize((size, size),
                                                                                               Image.BILINEAR))
                                                for channel in image]) for image in images]))


def test_darknet_features_are_what_the_classifier_layer_sees_of_cifar_normalised_32px_images(tmp_path):
    """The input of the trained net's last Linear layer, given the images as CIFAR10DataModule feeds them in training
    (uint8 scale, normalize with SEED_STATS); other sizes, tall or wide, squashed to 32px first (PIL's reference)."""
    torch.manual_seed(0)
    classifier = DarknetClassifier(num_blocks=[1, 1], nf=4, num_classes=3)
    features = DarknetFeatures(save(classifier, tmp_path / "darknet.ckpt"))
    seen = []
    classifier.net.layers[-1].register_forward_hook(lambda layer, inputs, output: seen.append(inputs[0]))
    classifier.eval()
    g = torch.Generator().manual_seed(0)
    for height, width in ((32, 32), (64, 64), (32, 64), (64, 32), (16, 16)):
        images = torch.rand(3, 3, height, width, generator=g)
        squashed = images if (height, width) == (32, 32) else pil_resized(images, 32)
        with torch.no_grad():
            classifier.net(normalize(squashed * 255, *SEED_STATS))
            expected = seen.pop()
        out = features(images)  # gradients on: the feature net is frozen, no graph is made
        assert torch.allclose(out, expected, rtol=1e-4, atol=1e-5), (height, width)
        assert not out.requires_grad and not any(p.requires_grad for p in features.parameters())


def test_frechet_distance_matches_the_formula_and_is_zero_for_the_same_images(darknet_ckpt):
    features = DarknetFeatures(darknet_ckpt)
    g = torch.Generator().manual_seed(0)
    real, fake = torch.rand(64, 3, 32, 32, generator=g) * 2 - 1, torch.rand(64, 3, 32, 32, generator=g) - 0.5
    metric = frechet_metric(features)
    add_images(metric, real.split(16), real=True)
    add_images(metric, fake.split(16), real=False)
    with torch.no_grad():
        expected = frechet_by_hand(features((real + 1) / 2).double().numpy(), features((fake + 1) / 2).double().numpy())
    assert metric.compute().item() == pytest.approx(expected, rel=1e-3) and expected > 0
    same = frechet_metric(features)
    add_images(same, real.split(16), real=True)
    add_images(same, real.split(16), real=False)
    assert abs(same.compute().item()) < 1e-3 * expected


class OnePlusMeans(torch.nn.Module):
    """Features known by hand, made by a Linear layer (which autocast would run in bf16): 1 + each channel's mean."""

    num_features = 3

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(3, 3)
        with torch.no_grad():
            self.linear.weight.copy_(torch.eye(3))
            self.linear.bias.fill_(1)

    def forward(self, images):
        return self.linear(images.mean((2, 3)))


def test_add_images_maps_minus_one_one_to_zero_one_clamps_and_computes_features_in_fp32_under_autocast():
    """Images in [-1, 1] as the GANs make them, a few beyond (clamped); within bf16 autocast (bf16-mixed precision's
    validation) as without: features 1 + mean, whose differences bf16 (8 bits: steps of 1/128 above 1) would round."""
    g = torch.Generator().manual_seed(0)
    real, fake = torch.rand(12, 3, 4, 4, generator=g) * 2 - 1, torch.rand(12, 3, 4, 4, generator=g) * 1.2 - 0.5
    fake[:3] = 1.5  # beyond 1: white, as 1
    real[:2] = -1.7  # below -1: black
    expected = frechet_by_hand(1 + ((real.double().clamp(-1, 1) + 1) / 2).mean((2, 3)).numpy(),
                               1 + ((fake.double().clamp(-1, 1) + 1) / 2).mean((2, 3)).numpy())
    for autocast in (False, True):
        metric = frechet_metric(OnePlusMeans())
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            add_images(metric, real.split(5), real=True)
            add_images(metric, fake.split(5), real=False)
        assert metric.compute().item() == pytest.approx(expected, rel=1e-5), autocast
    assert expected > 0.01


def test_fid_command_compares_a_checkpoint_with_an_image_folder(darknet_ckpt, tmp_path, capsys, recwarn):
    rng = np.random.default_rng(0)
    (tmp_path / "real").mkdir()
    for i in range(20):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "real" / f"{i}.png")
    wgan = save(WGAN(isize=16, nz=8, ngf=4, ndf=4), tmp_path / "wgan.ckpt")
    distance = fid(wgan, str(tmp_path / "real"), darknet_ckpt, num_samples=20, batch_size=8)
    assert distance > 0 and np.isfinite(distance)
    assert capsys.readouterr().out.endswith(f"{distance:.4f}, 20 generated and 20 real images\n")
    assert not [w for w in recwarn if "fewer than --num_samples" in str(w.message)]  # as many as asked: no warning
    with pytest.warns(UserWarning, match=r"holds 20 readable images, fewer than --num_samples 30: the") as w:
        fid(wgan, str(tmp_path / "real"), darknet_ckpt, num_samples=30, batch_size=8)
    assert capsys.readouterr().out.endswith(", 30 generated and 20 real images\n")
    assert [x.filename for x in w if "fewer than" in str(x.message)] == [__file__]  # the caller's line, as a warning


def test_fid_command_takes_two_images_and_refuses_a_folder_of_one(darknet_ckpt, tmp_path):
    """Two of each make a covariance: the distance by hand from the generator on the sample's seeded noise; one real
    image was torchmetrics' RuntimeError and a traceback."""
    (tmp_path / "real").mkdir()
    real = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    for i, pixels in enumerate(real):
        Image.fromarray(pixels).save(tmp_path / "real" / f"{i}.png")
    torch.manual_seed(0)
    model = WGAN(isize=16, nz=8, ngf=4, ndf=4)
    wgan = save(model, tmp_path / "wgan.ckpt")
    distance = fid(wgan, str(tmp_path / "real"), darknet_ckpt, num_samples=2, batch_size=8, seed=3)
    features = DarknetFeatures(darknet_ckpt)
    with torch.no_grad():
        fakes = (model.generator.eval()(seeded_rows(2, 8, seed=3)) + 1) / 2
        expected = frechet_by_hand(features(torch.from_numpy(real).permute(0, 3, 1, 2) / 255).double().numpy(),
                                   features(fakes).double().numpy())
    assert distance == pytest.approx(expected, rel=1e-3) and expected > 0
    (tmp_path / "real" / "1.png").unlink()
    with pytest.raises(UserError, match=r"real holds 1 image: a Frechet distance needs two real images or more \(a "
                                        r"covariance\); give data_dir more images"):
        fid(wgan, str(tmp_path / "real"), darknet_ckpt, num_samples=2, batch_size=8)


def test_inception_features_load_a_local_weights_file_offline(tmp_path, monkeypatch):
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    from lightning_modules.fid import InceptionFeatures, feature_extractor

    with monkeypatch.context() as patch:  # a randomly initialised file of the right layout, made without a download
        patch.setattr(FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None)
        patch.setattr("torch_fidelity.feature_extractor_inceptionv3.load_state_dict_from_url", lambda *a, **k: {})
        torch.save(FeatureExtractorInceptionV3("inception-v3-compat", ["2048"]).state_dict(), tmp_path / "w.pth")
    features = feature_extractor(str(tmp_path / "w.pth"))  # strict load of that file
    assert isinstance(features, InceptionFeatures)
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    reference = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                            feature_extractor_weights_path=str(tmp_path / "w.pth")).eval()
    given = torch.cat([images.float() / 255, images[:1].float() / 255])
    given[2, :, :8] = torch.tensor([1.003, 1.2, -0.3]).view(3, 1, 1)  # a third image beyond [0, 1]: 255.8 rounds to 256
    pixels = torch.cat([images, images[:1]])
    pixels[2, :, :8] = torch.tensor([255, 255, 0], dtype=torch.uint8).view(3, 1, 1)  # clamped
    with torch.no_grad():  # torch-fidelity's own forward on uint8: its TF 1.x resize, the published protocol
        expected = reference(pixels)[0]
        error = (features(given) - expected).abs().amax(1) / expected.abs().amax(1)
    assert (error < 1e-4).all()  # relative: random weights give features near 1e-8; PyTorch resizing is 1% off


class ThreeChannelFeatures(torch.nn.Module):
    """A feature net that takes RGB only, as Inception-v3 does: a 3x3 conv, then the mean of each channel."""

    num_features = 4

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 3)

    def forward(self, images):
        return self.conv(images.float()).mean((2, 3))


def test_one_channel_images_are_compared_as_rgb_and_other_channel_counts_are_named():
    """A generator of the reference's --nc 1 (its netG loads with nc read from the tensors): its gray images are
    compared with the RGB real ones as gray RGB, each channel the gray one, as FID tools take grayscale images."""
    rng = np.random.default_rng(0)
    real = torch.from_numpy(rng.uniform(-1, 1, (6, 3, 8, 8)).astype(np.float32))
    gray = torch.from_numpy(rng.uniform(-1, 1, (6, 1, 8, 8)).astype(np.float32))
    features = ThreeChannelFeatures()
    metric = frechet_metric(features)
    add_images(metric, [real[:4], real[4:]], real=True)
    add_images(metric, [gray], real=False)
    with torch.no_grad():
        expected = frechet_by_hand(features((real.double() + 1) / 2).numpy(),
                                   features(((gray + 1) / 2).repeat(1, 3, 1, 1)).double().numpy())
    assert float(metric.compute()) == pytest.approx(expected, rel=1e-3) and expected > 0
    with pytest.raises(UserError, match="2 channels"):
        add_images(frechet_metric(features), [torch.zeros(2, 2, 8, 8)], real=False)


def test_fid_command_leaves_an_unreadable_real_image_out_rather_than_counting_a_stand_in_twice(darknet_ckpt, tmp_path,
                                                                                              capsys):
    """10 files, 3.png empty: the real statistics are the 9 readable images, counted once each (the training loader's
    stand-in, the next file, counted 4.png twice and printed 10 real images); with --num_samples 5 the seeded order's
    next image takes the unreadable one's place. Distances by hand from the same feature net."""
    (tmp_path / "real").mkdir()
    pixels = np.random.default_rng(0).integers(0, 256, (10, 16, 16, 3), dtype=np.uint8)
    for i, image in enumerate(pixels):
        Image.fromarray(image).save(tmp_path / "real" / f"{i}.png")
    (tmp_path / "real" / "3.png").write_bytes(b"")
    torch.manual_seed(0)
    model = WGAN(isize=16, nz=8, ngf=4, ndf=4)
    wgan = save(model, tmp_path / "wgan.ckpt")
    features = DarknetFeatures(darknet_ckpt)

    def by_hand(real_indices, n):
        with torch.no_grad():
            real = torch.from_numpy(pixels[real_indices]).permute(0, 3, 1, 2) / 255
            fakes = (model.generator.eval()(seeded_rows(n, 8, seed=0)) + 1) / 2
            return frechet_by_hand(features(real).double().numpy(), features(fakes).double().numpy())

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        distance = fid(wgan, str(tmp_path / "real"), darknet_ckpt, num_samples=50, batch_size=4)
    assert capsys.readouterr().out.endswith(f"{distance:.4f}, 50 generated and 9 real images\n")
    assert distance == pytest.approx(by_hand([0, 1, 2, 4, 5, 6, 7, 8, 9], 50), rel=1e-3)
    assert [str(w.message).split(": the")[0] for w in caught if "fewer than" in str(w.message)] == [
        f"{tmp_path / 'real'} holds 9 readable images, fewer than --num_samples 50"]
    # seed 0's order of the 10 files: 4, 1, 7, 5, 3, 9, ...: 3.png's place goes to 9.png, not to 4.png again
    distance = fid(wgan, str(tmp_path / "real"), darknet_ckpt, num_samples=5, batch_size=4)
    assert capsys.readouterr().out.endswith(f"{distance:.4f}, 5 generated and 5 real images\n")
    assert distance == pytest.approx(by_hand([4, 1, 7, 5, 9], 5), rel=1e-3)
    assert distance != pytest.approx(by_hand([4, 1, 7, 5, 4], 5), rel=1e-3)


def test_the_fid_command_line_prints_a_warning_as_one_line_not_at_jsonargparses_line(darknet_ckpt, tmp_path, capsys):
    """`fid`'s warnings name their caller's line (stacklevel=2), which from the command line was jsonargparse's
    `return component(**cfg)`; the command prints them as NAME: warning: MESSAGE."""
    from lightning_modules.commands import wgan_fid

    (tmp_path / "real").mkdir()
    for i, image in enumerate(np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)):
        Image.fromarray(image).save(tmp_path / "real" / f"{i}.png")
    wgan = save(WGAN(isize=16, nz=8, ngf=4, ndf=4), tmp_path / "wgan.ckpt")
    wgan_fid([wgan, str(tmp_path / "real"), darknet_ckpt, "--num_samples", "4", "--batch_size", "4"])
    err = capsys.readouterr().err
    assert f": warning: {tmp_path / 'real'} holds 3 readable images, fewer than --num_samples 4: the" in err
    assert "jsonargparse" not in err and "component(**cfg)" not in err
