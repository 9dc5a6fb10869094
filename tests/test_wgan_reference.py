"""The WassersteinGAN reference's generator files (netG_epoch_N.pth) read by `generate` and `fid`: a DCGAN_G in that
code's layer order and names is built here by hand, and its images are compared with ours from the same noise."""

import os
from collections import OrderedDict

import numpy as np
import pytest
import torch
from conftest import seeded_rows
from PIL import Image
from torch import nn

from callbacks import UserError
from lightning_modules.wgan_generate import generate
from lightning_modules.wgan_reference import reference_generator

pytestmark = pytest.mark.usefixtures("one_thread")


def reference_dcgan_g(nz=8, ngf=4, nc=3, extra=1, batchnorm=True, sep=":", isize=16):
    """The reference's DCGAN_G (cngf: ngf/2 doubled until 4 reaches isize; 8 for isize 16 and ngf 4), with its module
    names (`initial:8-8:convt`, ...; its oldest versions used '.' where later ones use ':', which torch now requires):
    ConvTranspose, BatchNorm, ReLU; the pyramid's blocks; extra layers as plain 3x3 convolutions; the last
    ConvTranspose and tanh. Random weights and batchnorm statistics, in eval mode."""
    def block(prefix, conv, width):
        layers = [(f"{prefix}{sep}{'convt' if isinstance(conv, nn.ConvTranspose2d) else 'conv'}", conv)]
        if batchnorm:
            layers.append((f"{prefix}{sep}batchnorm", nn.BatchNorm2d(width)))
        return layers + [(f"{prefix}{sep}relu", nn.ReLU())]
    cngf, size = ngf // 2, 4
    while size != isize:
        cngf, size = cngf * 2, size * 2
    layers = block(f"initial{sep}{nz}-{cngf}", nn.ConvTranspose2d(nz, cngf, 4, 1, 0, bias=False), cngf)
    size = 4
    while size < isize // 2:
        layers += block(f"pyramid{sep}{cngf}-{cngf // 2}", nn.ConvTranspose2d(cngf, cngf // 2, 4, 2, 1, bias=False),
                        cngf // 2)
        cngf, size = cngf // 2, size * 2
    for t in range(extra):
        layers += block(f"extra-layers-{t}{sep}{cngf}", nn.Conv2d(cngf, cngf, 3, 1, 1, bias=False), cngf)
    layers += [(f"final{sep}{cngf}-{nc}{sep}convt", nn.ConvTranspose2d(cngf, nc, 4, 2, 1, bias=False)),
               (f"final{sep}{nc}{sep}tanh", nn.Tanh())]
    torch.manual_seed(1)
    main = nn.Sequential(OrderedDict((name.replace(sep, "_"), layer) for name, layer in layers))
    for layer in main:
        if isinstance(layer, (nn.ConvTranspose2d, nn.Conv2d)):  # wide enough that the images depend on the noise
            layer.weight.data.normal_(0, 0.5)
        if isinstance(layer, nn.BatchNorm2d):
            for tensor in (layer.weight, layer.bias, layer.running_mean):
                tensor.data.normal_(0, 0.5)
            layer.running_var.data.uniform_(0.5, 2)
    state = OrderedDict()
    names = {name.replace(sep, "_"): name for name, _ in layers}
    for key, tensor in main.state_dict().items():
        module, _, attribute = key.partition(".")
        state[f"main.{names[module]}.{attribute}"] = tensor
    return main.eval(), state


@pytest.mark.parametrize("sep", [":", "."])
def test_a_reference_generator_file_makes_the_images_that_generator_makes(tmp_path, sep):
    main, state = reference_dcgan_g(sep=sep)
    torch.save(state, tmp_path / "netG_epoch_24.pth")
    generate(str(tmp_path / "netG_epoch_24.pth"), str(tmp_path / "out"), num_samples=5, batch_size=2, seed=3, nrow=2)
    noise = seeded_rows(5, 8, seed=3)  # as generate draws it: seed, N(0, 1), one row at a time
    with torch.no_grad():
        expected = ((main(noise) + 1) / 2).clamp(0, 1)
    for i in range(5):
        image = torch.from_numpy(np.array(Image.open(tmp_path / "out" / f"{i:06d}.png"))).permute(2, 0, 1) / 255
        assert image.shape == (3, 16, 16) and (image - expected[i]).abs().max() <= 1 / 255 + 1e-6
    # the grid beside the folder: the first nrow^2 = 4 samples, row by row, as (x + 1) / 2 (make_grid's 2px padding)
    grid = torch.from_numpy(np.array(Image.open(tmp_path / "out_grid.png"))).permute(2, 0, 1) / 255
    assert grid.shape == (3, 2 + 2 * 18, 2 + 2 * 18)
    assert expected.min() < 0.3 and expected.max() > 0.7  # outputs well below and above 0
    for i in range(4):
        top, left = 2 + i // 2 * 18, 2 + i % 2 * 18
        assert (grid[:, top:top + 16, left:left + 16] - expected[i]).abs().max() <= 1 / 255 + 1e-6, i


@pytest.mark.parametrize("sizes", [dict(nz=6, ngf=4, nc=1, extra=2, isize=16),
                                   dict(nz=10, ngf=2, nc=3, extra=0, isize=32)])
def test_sizes_are_read_from_the_tensors(tmp_path, sizes):
    main, state = reference_dcgan_g(**sizes)
    torch.save(state, tmp_path / "netG.pth")
    model = reference_generator(str(tmp_path / "netG.pth"))
    hp = model.hparams
    assert (hp.isize, hp.nz, hp.nc, hp.ngf, hp.n_extra_layers, hp.bn_last) == (
        sizes["isize"], sizes["nz"], sizes["nc"], sizes["ngf"], sizes["extra"], False)
    noise = torch.randn(2, sizes["nz"], 1, 1)
    with torch.no_grad():
        assert torch.allclose(model.generator(noise), main(noise), atol=1e-5)


def test_a_file_in_the_references_names_but_other_shapes_is_named(tmp_path):
    _, state = reference_dcgan_g()
    key = next(k for k in state if "pyramid" in k and k.endswith("convt.weight"))
    state[key] = torch.zeros(8, 5, 4, 4)  # 5 channels out where its batchnorm has 4
    torch.save(state, tmp_path / "odd.pth")
    with pytest.raises(UserError, match="does not match a DCGAN_G of isize 16"):
        generate(str(tmp_path / "odd.pth"), str(tmp_path / "out"))
    torch.save(torch.zeros(3), tmp_path / "tensor.pth")  # not even a dict
    with pytest.raises(UserError, match="not a Lightning checkpoint"):
        generate(str(tmp_path / "tensor.pth"), str(tmp_path / "out"))


def generated_images(folder, count):
    return [torch.from_numpy(np.array(Image.open(folder / f"{i:06d}.png"))).permute(2, 0, 1) / 255
            for i in range(count)]


@pytest.mark.parametrize("extra", [0, 2])
def test_the_references_generator_without_batchnorm_makes_its_images(tmp_path, extra):
    """Its DCGAN_G_nobn (--noBN, the paper's generator without batchnorm): ConvTranspose and ReLU blocks."""
    main, state = reference_dcgan_g(batchnorm=False, extra=extra)
    assert not any("batchnorm" in key for key in state)
    torch.save(state, tmp_path / "netG_epoch_5.pth")
    generate(str(tmp_path / "netG_epoch_5.pth"), str(tmp_path / "out"), num_samples=3, batch_size=2, seed=4, nrow=2)
    with torch.no_grad():
        expected = ((main(seeded_rows(3, 8, seed=4)) + 1) / 2).clamp(0, 1)
    for image, reference in zip(generated_images(tmp_path / "out", 3), expected, strict=True):
        assert image.shape == (3, 16, 16) and (image - reference).abs().max() <= 1 / 255 + 1e-6
    hp = reference_generator(str(tmp_path / "netG_epoch_5.pth")).hparams
    assert (hp.generator_batchnorm, hp.n_extra_layers, hp.mlp_generator) == (False, extra, False)


def reference_mlp_g(nz, ngf, nc, isize):
    """The reference's MLP_G: Linear nz -> ngf, ReLU, ngf -> ngf, ReLU, ngf -> ngf, ReLU, ngf -> nc * isize^2 (keys
    main.0, main.2, main.4, main.6), its output viewed as images, no tanh; random weights."""
    torch.manual_seed(2)
    main = nn.Sequential(nn.Linear(nz, ngf), nn.ReLU(), nn.Linear(ngf, ngf), nn.ReLU(), nn.Linear(ngf, ngf), nn.ReLU(),
                         nn.Linear(ngf, nc * isize * isize))
    state = OrderedDict((f"main.{key}", tensor) for key, tensor in main.state_dict().items())
    return (lambda noise: main(noise.view(len(noise), nz)).view(len(noise), nc, isize, isize)), state


@pytest.mark.parametrize("nc, isize, config", [(3, 16, False), (1, 32, False), (1, 28, False), (2, 16, True)])
def test_the_references_mlp_generator_makes_its_images(tmp_path, nc, isize, config):
    """Its MLP_G (--mlp_G): sizes from the tensors (nc 3 or 1: no square image is both), else from the
    generator_config.json its main.py writes beside the weights; any isize (MNIST's 28: the DCGAN critic takes
    powers of 2 only, so the model gets the MLP critic too)."""
    forward, state = reference_mlp_g(8, 32, nc, isize)
    folder = tmp_path / "experiment"
    folder.mkdir()
    torch.save(state, folder / "netG_epoch_3.pth")
    if config:
        (folder / "generator_config.json").write_text(
            '{"imageSize": 16, "nz": 8, "nc": 2, "ngf": 32, "ngpu": 1, "n_extra_layers": 0, "noBN": false, '
            '"mlp_G": true}')
    model = reference_generator(str(folder / "netG_epoch_3.pth"))
    hp = model.hparams
    assert (hp.mlp_generator, hp.nz, hp.ngf, hp.nc, hp.isize) == (True, 8, 32, nc, isize)
    noise = seeded_rows(3, 8, seed=1)
    with torch.no_grad():
        assert torch.allclose(model.generator(noise), forward(noise), atol=1e-6)
    if nc == 3:  # the saved samples: the linear output clamped to [-1, 1], then (x + 1) / 2
        generate(str(folder / "netG_epoch_3.pth"), str(tmp_path / "out"), num_samples=3, batch_size=2, seed=1)
        with torch.no_grad():
            expected = ((forward(noise) + 1) / 2).clamp(0, 1)
        for image, reference in zip(generated_images(tmp_path / "out", 3), expected, strict=True):
            assert (image - reference).abs().max() <= 1 / 255 + 1e-6
    if not config:  # five layers are no MLP_G
        state = {**state, "main.8.weight": torch.zeros(4, nc * isize * isize), "main.8.bias": torch.zeros(4)}
        torch.save(state, folder / "odd.pth")
        with pytest.raises(UserError, match="not the WassersteinGAN reference's MLP_G"):
            reference_generator(str(folder / "odd.pth"))


def test_a_critic_is_named(tmp_path):
    critic = {"main.initial:conv:3-4.weight": torch.zeros(4, 3, 4, 4),
              "main.final:8-1:conv.weight": torch.zeros(1, 8, 4, 4)}
    torch.save(critic, tmp_path / "netD_epoch_1.pth")
    with pytest.raises(UserError, match="a WassersteinGAN critic.*give a netG_epoch_N.pth"):
        generate(str(tmp_path / "netD_epoch_1.pth"), str(tmp_path / "out"))
    torch.save({"weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(UserError, match="not a Lightning checkpoint"):
        generate(str(tmp_path / "other.pth"), str(tmp_path / "out"))



class MakesAFolder:
    """Pickled code: unpickling it calls os.mkdir."""

    def __init__(self, folder):
        self.folder = folder

    def __reduce__(self):
        return os.mkdir, (str(self.folder),)


def test_a_reference_file_is_read_without_running_the_code_pickled_in_it(tmp_path):
    """Another project's weights file is tried as plain tensors first (torch's weights-only loader): a file that holds
    more than tensors is no generator, and its pickled code does not run."""
    state = {"main.initial:8-4:convt.weight": torch.zeros(8, 4, 4, 4), "main.code": MakesAFolder(tmp_path / "ran")}
    torch.save(state, tmp_path / "netG_epoch_1.pth")
    assert reference_generator(str(tmp_path / "netG_epoch_1.pth")) is None
    assert not (tmp_path / "ran").exists()

def test_fid_reads_a_reference_generator_file(tmp_path):
    from test_wgan_fid import frechet_by_hand, save

    from lightning_modules import DarknetClassifier
    from lightning_modules.wgan_fid import DarknetFeatures, fid

    torch.manual_seed(0)
    features_ckpt = save(DarknetClassifier(num_blocks=[1, 1], nf=4, num_classes=3), tmp_path / "darknet.ckpt")
    rng = np.random.default_rng(0)
    (tmp_path / "real").mkdir()
    real = rng.integers(0, 256, (20, 16, 16, 3), dtype=np.uint8)
    for i, pixels in enumerate(real):
        Image.fromarray(pixels).save(tmp_path / "real" / f"{i}.png")
    main, state = reference_dcgan_g()
    torch.save(state, tmp_path / "netG_epoch_24.pth")
    distance = fid(str(tmp_path / "netG_epoch_24.pth"), str(tmp_path / "real"), features_ckpt, num_samples=20,
                   batch_size=8, seed=2)
    features = DarknetFeatures(features_ckpt)
    with torch.no_grad():
        fakes = (main(seeded_rows(20, 8, seed=2)) + 1) / 2
        expected = frechet_by_hand(features(torch.from_numpy(real).permute(0, 3, 1, 2) / 255).double().numpy(),
                                   features(fakes).double().numpy())
    assert distance == pytest.approx(expected, rel=1e-3)


def shoemake_slerp(p0: np.ndarray, p1: np.ndarray, t: float) -> np.ndarray:
    """Shoemake (1985), as White (2016) applies it to latent vectors: sin((1-t) W)/sin W p0 + sin(t W)/sin W p1, W the
    angle between p0 and p1 (cos W = p0.p1 / |p0||p1|); one pair of vectors, in float64."""
    omega = np.arccos(p0 @ p1 / (np.linalg.norm(p0) * np.linalg.norm(p1)))
    return (np.sin((1 - t) * omega) * p0 + np.sin(t * omega) * p1) / np.sin(omega)


def test_slerp_follows_the_great_circle():
    from lightning_modules.wgan_generate import slerp
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]])  # 90 degrees apart, norms 1 and 2
    for t in (0.0, 0.25, 0.5, 1.0):
        # sin((1-t) pi/2) a + sin(t pi/2) b, as White (2016) writes it
        expected = np.sin((1 - t) * np.pi / 2) * a.numpy() + np.sin(t * np.pi / 2) * b.numpy()
        assert np.allclose(slerp(a, b, t).numpy(), expected, atol=1e-6)
    assert torch.allclose(slerp(a, 3 * a, 0.5), 2 * a)  # parallel: linear
    # generate's noise, (N, nz, 1, 1): each row its own angle (random rows: acute and obtuse), norms unequal
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 6, 1, 1, generator=g), 2 * torch.randn(5, 6, 1, 1, generator=g)
    for t in (0.0, 0.3, 0.5, 0.8, 1.0):
        walked = slerp(a, b, t)
        assert walked.shape == a.shape
        for row in range(5):
            expected = shoemake_slerp(a[row].flatten().double().numpy(), b[row].flatten().double().numpy(), t)
            assert np.allclose(walked[row].flatten().numpy(), expected, atol=1e-5), (t, row)


def test_slerp_of_parallel_or_opposite_rows_is_linear_without_nan():
    """sin W = 0 there: slerp takes the straight line (1 - t) a + t b; float32 cosines that round past +-1 must not
    reach acos (NaN)."""
    from lightning_modules.wgan_generate import slerp
    a = torch.randn(16, 8, generator=torch.Generator().manual_seed(0))
    for k in (3.0, -3.0):
        b = k * a
        cosine = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))  # in float32, as slerp reads the angle
        past = cosine.abs() > 1
        assert past.any()  # rows whose cosine rounds past +-1
        for t in (0.25, 0.5):
            walked = slerp(a, b, t)
            assert walked.isfinite().all()
            torch.testing.assert_close(walked[past], ((1 - t) * a + t * b)[past])


@pytest.mark.parametrize("nrow", [2, 1])
def test_interpolation_rows_walk_from_one_noise_to_another(tmp_path, nrow):
    main, state = reference_dcgan_g()
    torch.save(state, tmp_path / "netG.pth")
    generate(str(tmp_path / "netG.pth"), str(tmp_path / "out"), num_samples=1, nrow=nrow, seed=4, interpolate=3)
    # seed + 1, as generate draws: the two ends of every row in one (2, nrow, nz) draw (with nrow 1, 16 numbers:
    # torch's sampler, which redraws the last 16 of a longer tensor, gives other second ends in a longer draw)
    ends = torch.randn(2, nrow, 8, 1, 1, generator=torch.Generator().manual_seed(5))
    grid = torch.from_numpy(np.array(Image.open(tmp_path / "out_interpolation.png"))).permute(2, 0, 1) / 255
    assert grid.shape == (3, 2 + nrow * (16 + 2), 2 + 3 * (16 + 2))  # make_grid: nrow rows of 3, 2px padding
    with torch.no_grad():
        for row in range(nrow):
            a, b = ends[0, row].flatten(), ends[1, row].flatten()
            omega = torch.arccos(a.dot(b) / (a.norm() * b.norm()))
            for column, t in enumerate((0.0, 0.5, 1.0)):
                z = (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)
                image = main(z.view(1, 8, 1, 1))[0]
                top, left = 2 + row * 18, 2 + column * 18
                cell = grid[:, top:top + 16, left:left + 16]
                # make_grid(normalize=True, value_range=(-1, 1)) shows (x + 1) / 2
                assert (cell - (image.clamp(-1, 1) + 1) / 2).abs().max() <= 1 / 255 + 1e-5, (row, column)


def test_a_walk_takes_two_images_or_more_and_0_is_none(tmp_path):
    main, state = reference_dcgan_g()
    torch.save(state, tmp_path / "netG.pth")
    for interpolate in (1, -1):  # a walk of one image has no second end
        with pytest.raises(UserError, match=f"--interpolate takes 2 or more .* \\(got {interpolate}\\)"):
            generate(str(tmp_path / "netG.pth"), str(tmp_path / "out"), num_samples=1, nrow=1, interpolate=interpolate)
    assert not (tmp_path / "out").exists()  # refused before any work
    generate(str(tmp_path / "netG.pth"), str(tmp_path / "out"), num_samples=1, nrow=1, seed=4, interpolate=2)
    grid = torch.from_numpy(np.array(Image.open(tmp_path / "out_interpolation.png"))).permute(2, 0, 1) / 255
    ends = torch.randn(2, 1, 8, 1, 1, generator=torch.Generator().manual_seed(5))  # t = 0 and 1: the ends alone
    with torch.no_grad():
        for column in range(2):
            expected = (main(ends[column]).clamp(-1, 1) + 1) / 2
            cell = grid[:, 2:18, 2 + 18 * column:18 + 18 * column]
            assert (cell - expected[0]).abs().max() <= 1 / 255 + 1e-5, column
    generate(str(tmp_path / "netG.pth"), str(tmp_path / "none"), num_samples=1, nrow=1)  # interpolate 0: no walk
    assert not (tmp_path / "none_interpolation.png").exists()


def test_the_references_mlp_critic_is_named_as_a_critic(tmp_path):
    torch.save({"main.0.weight": torch.zeros(64, 768), "main.0.bias": torch.zeros(64),  # its MLP_D: 4 Linear layers
                "main.2.weight": torch.zeros(64, 64), "main.2.bias": torch.zeros(64),
                "main.4.weight": torch.zeros(64, 64), "main.4.bias": torch.zeros(64),
                "main.6.weight": torch.zeros(1, 64), "main.6.bias": torch.zeros(1)}, tmp_path / "netD_mlp.pth")
    with pytest.raises(UserError, match="MLP critic \\(--mlp_D, netD_\\*\\)"):
        generate(str(tmp_path / "netD_mlp.pth"), str(tmp_path / "out"))


def test_fid_of_a_reference_mlp_generator_of_a_size_no_dcgan_takes(tmp_path):
    """Its MLP_G at MNIST's 28px loads (above); fid squares the real images to those 28px and compares, rather than
    refusing the size with train.py's --data.isize and --model.isize, which the command does not have."""
    from test_wgan_fid import frechet_by_hand, save

    from lightning_modules import DarknetClassifier
    from lightning_modules.wgan_fid import DarknetFeatures, fid

    torch.manual_seed(0)
    features_ckpt = save(DarknetClassifier(num_blocks=[1, 1], nf=4, num_classes=3), tmp_path / "darknet.ckpt")
    rng = np.random.default_rng(0)
    (tmp_path / "real").mkdir()
    real = rng.integers(0, 256, (12, 28, 28, 3), dtype=np.uint8)  # already 28px squares: read as they are
    for i, pixels in enumerate(real):
        Image.fromarray(pixels).save(tmp_path / "real" / f"{i}.png")
    forward, state = reference_mlp_g(8, 32, 3, 28)
    torch.save(state, tmp_path / "netG_epoch_3.pth")
    distance = fid(str(tmp_path / "netG_epoch_3.pth"), str(tmp_path / "real"), features_ckpt, num_samples=12,
                   batch_size=5, seed=4)
    features = DarknetFeatures(features_ckpt)
    with torch.no_grad():
        fakes = ((forward(seeded_rows(12, 8, seed=4)) + 1) / 2).clamp(0, 1)
        expected = frechet_by_hand(features(torch.from_numpy(real).permute(0, 3, 1, 2) / 255).double().numpy(),
                                   features(fakes).double().numpy())
    assert distance == pytest.approx(expected, rel=1e-3)


def reference_dcgan_d(nc=3, ndf=4, extra=1, isize=16, sep=":"):
    """The reference's DCGAN_D with its module names: a 4x4 stride-2 conv and LeakyReLU(0.2) (no batchnorm); extra
    layers of 3x3 conv, BatchNorm, LeakyReLU; the pyramid's 4x4 stride-2 conv, BatchNorm, LeakyReLU doubling the
    channels down to 4x4; a last 4x4 conv to one score. No conv has a bias. Random weights and statistics, eval mode.
    sep ".": its oldest names (`initial.conv.3-4`, `extra-layers-0.4.conv`, ...), as for reference_dcgan_g."""
    s = sep
    first = ((f"initial.conv.{nc}-{ndf}", f"initial.relu.{ndf}") if s == "." else
             (f"initial:{nc}-{ndf}:conv", f"initial:{ndf}:relu"))
    layers = [(first[0], nn.Conv2d(nc, ndf, 4, 2, 1, bias=False)), (first[1], nn.LeakyReLU(0.2))]
    size, cndf = isize // 2, ndf
    for t in range(extra):
        layers += [(f"extra-layers-{t}{s}{cndf}{s}conv", nn.Conv2d(cndf, cndf, 3, 1, 1, bias=False)),
                   (f"extra-layers-{t}{s}{cndf}{s}batchnorm", nn.BatchNorm2d(cndf)),
                   (f"extra-layers-{t}{s}{cndf}{s}relu", nn.LeakyReLU(0.2))]
    while size > 4:
        layers += [(f"pyramid{s}{cndf}-{cndf * 2}{s}conv", nn.Conv2d(cndf, cndf * 2, 4, 2, 1, bias=False)),
                   (f"pyramid{s}{cndf * 2}{s}batchnorm", nn.BatchNorm2d(cndf * 2)),
                   (f"pyramid{s}{cndf * 2}{s}relu", nn.LeakyReLU(0.2))]
        size, cndf = size // 2, cndf * 2
    layers.append((f"final{s}{cndf}-1{s}conv", nn.Conv2d(cndf, 1, 4, 1, 0, bias=False)))
    torch.manual_seed(2)
    main = nn.Sequential(OrderedDict((name.replace(sep, "_"), layer) for name, layer in layers))
    for layer in main:
        if isinstance(layer, nn.BatchNorm2d):
            for tensor in (layer.weight, layer.bias, layer.running_mean):
                tensor.data.normal_(0, 0.5)
            layer.running_var.data.uniform_(0.5, 2)
    names = {name.replace(sep, "_"): name for name, _ in layers}
    state = OrderedDict((f"main.{names[key.partition('.')[0]]}.{key.partition('.')[2]}", tensor)
                        for key, tensor in main.state_dict().items())
    return main.eval(), state


def started_from(runs, run_name):
    """The WGAN a run's training started from (runs.StartWeights' file), in eval mode."""
    from lightning_modules import WGAN

    start = torch.load(runs / run_name / "start.pt", weights_only=False)["weights"]
    config = {"isize": 16, "nz": 8, "ngf": 4, "ndf": 4, "n_extra_layers": 1, "bn_last": False}
    model = WGAN(**config)
    model.load_state_dict(start)
    return model.eval(), start


def test_init_from_the_references_netg_and_netd_files_starts_with_both_nets(tiny_cifar, tmp_path, capsys):
    """Its --netG and --netD: training goes on from the reference's generator and critic (DCGAN's conv, batchnorm,
    activation order: --model.bn_last false), each computing what the reference's net computes."""
    from runs import wgan_job

    import train

    main_g, state_g = reference_dcgan_g(extra=1)
    main_d, state_d = reference_dcgan_d(extra=1)
    (tmp_path / "ref").mkdir()
    torch.save(state_g, tmp_path / "ref" / "netG_epoch_3.pth")
    torch.save(state_d, tmp_path / "ref" / "netD_epoch_3.pth")
    runs = tmp_path / "runs"
    options = ["--model.bn_last", "false", "--model.n_extra_layers", "1", "--trainer.max_steps", "1",
               "--trainer.callbacks+=runs.StartWeights"]
    train.main(wgan_job(tiny_cifar, runs, *options, "--run_name", "both", "--init_from",
                        str(tmp_path / "ref" / "netG_epoch_3.pth")))
    assert "the WassersteinGAN reference's generator (netG_epoch_3.pth) and critic (netD_epoch_3.pth)" in \
        capsys.readouterr().err
    model, _ = started_from(runs, "both")
    noise, images = torch.randn(3, 8, 1, 1), torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(model.generator(noise), main_g(noise), atol=1e-5)
        assert torch.allclose(model.critic(images), main_d(images).flatten(), atol=1e-4)
    # the generator alone: the critic starts from new weights, as our generator-only export's
    (tmp_path / "ref" / "netD_epoch_3.pth").unlink()
    train.main(wgan_job(tiny_cifar, runs, *options, "--run_name", "alone", "--init_from",
                        str(tmp_path / "ref" / "netG_epoch_3.pth")))
    assert "no netD_epoch_3.pth beside it: the critic starts from new weights" in capsys.readouterr().err
    model, start = started_from(runs, "alone")
    with torch.no_grad():
        assert torch.allclose(model.generator(noise), main_g(noise), atol=1e-5)
    first_conv = next(v for k, v in start.items() if k.startswith("critic.") and v.dim() == 4)
    assert not torch.allclose(first_conv, state_d["main.initial:3-4:conv.weight"])


def test_init_from_a_reference_file_names_the_options_its_nets_need(tiny_cifar, tmp_path):
    from runs import wgan_job

    import train

    torch.save(reference_dcgan_g(extra=1)[1], tmp_path / "netG_epoch_3.pth")
    torch.save(reference_dcgan_d(extra=1)[1], tmp_path / "netD_epoch_3.pth")
    runs = tmp_path / "runs"
    # our default block order (the seed's conv, activation, batchnorm) holds the same tensors under other names
    with pytest.raises(UserError, match="holds another network .*--model.bn_last false"):
        train.main(wgan_job(tiny_cifar, runs, "--model.n_extra_layers", "1", "--init_from",
                            str(tmp_path / "netG_epoch_3.pth")))
    with pytest.raises(UserError, match=r"other settings .*--model.ndf 4"):
        train.main(wgan_job(tiny_cifar, runs, "--model.n_extra_layers", "1", "--model.bn_last", "false",
                            "--model.ndf", "8", "--init_from", str(tmp_path / "netG_epoch_3.pth")))
    torch.save(torch.zeros(3), tmp_path / "weights.pth")  # neither ours nor the reference's: both named
    with pytest.raises(UserError, match=r"not a Lightning checkpoint .*, or a generator file of the WassersteinGAN "
                                        r"reference \(netG_epoch_N.pth\)$"):
        train.main(wgan_job(tiny_cifar, runs, "--init_from", str(tmp_path / "weights.pth")))
    with pytest.raises(UserError, match=r"not a Lightning checkpoint .*, or a generator file of the WassersteinGAN"):
        generate(str(tmp_path / "weights.pth"), str(tmp_path / "out"))
    # the reference's users resume with --netG: --ckpt_path (a resume of ours) names --init_from for such a file
    netg = tmp_path / "netG_epoch_3.pth"
    with pytest.raises(UserError, match=rf"--ckpt_path {netg} is a generator file of the WassersteinGAN reference .* "
                                        rf"give --init_from {netg}$"):
        train.main(wgan_job(tiny_cifar, runs, "--ckpt_path", str(netg)))
    torch.save(torch.zeros(3), tmp_path / "netD_epoch_3.pth")  # not a critic's file
    with pytest.raises(UserError, match="netD_epoch_3.pth, beside .*, is not a WassersteinGAN critic file"):
        train.main(wgan_job(tiny_cifar, runs, "--model.n_extra_layers", "1", "--model.bn_last", "false",
                            "--init_from", str(tmp_path / "netG_epoch_3.pth")))


@pytest.mark.parametrize("extra", [0, 2])
def test_a_reference_critic_of_any_depth_or_its_mlp_critic_computes_what_it_computes(tmp_path, extra):
    """reference_checkpoint alone (train.main above): DCGAN_D without or with two extra layers, and its MLP_D
    (--mlp_D: Linear nc*isize^2 -> ndf, ReLU, ndf -> ndf twice, then -> 1) beside an MLP_G."""
    from lightning_modules import WGAN
    from lightning_modules.wgan_reference import reference_checkpoint

    images = torch.randn(3, 3, 16, 16)
    for mlp in (False, True):
        folder = tmp_path / f"mlp{mlp}"
        folder.mkdir()
        if mlp:
            _, state_g = reference_mlp_g(8, 32, 3, 16)
            torch.manual_seed(5)
            main_d = nn.Sequential(nn.Linear(3 * 16 * 16, 24), nn.ReLU(), nn.Linear(24, 24), nn.ReLU(),
                                   nn.Linear(24, 24), nn.ReLU(), nn.Linear(24, 1))
            state_d = OrderedDict((f"main.{k}", v) for k, v in main_d.state_dict().items())
            expected = main_d(images.flatten(1)).flatten()
        else:
            _, state_g = reference_dcgan_g(extra=extra)
            main_d, state_d = reference_dcgan_d(extra=extra)
            expected = main_d(images).flatten()
        torch.save(state_g, folder / "netG_epoch_1.pth")
        torch.save(state_d, folder / "netD_epoch_1.pth")
        saved = reference_checkpoint(str(folder / "netG_epoch_1.pth"))
        hp = saved["hyper_parameters"]
        assert (hp["mlp_critic"], hp["ndf"]) == ((True, 24) if mlp else (False, 4))
        model = WGAN(**hp)
        model.load_state_dict(saved["state_dict"], strict=False)
        with torch.no_grad():
            assert torch.allclose(model.eval().critic(images), expected, atol=1e-4)
    _, state_d = reference_dcgan_d(extra=1 - min(extra, 1))  # the netD of a run with other extra layers
    torch.save(state_d, tmp_path / "mlpFalse" / "netD_epoch_1.pth")
    with pytest.raises(UserError, match="has other extra layers than"):
        reference_checkpoint(str(tmp_path / "mlpFalse" / "netG_epoch_1.pth"))


def test_a_reference_critic_file_in_its_oldest_names_with_extra_layers_loads(tmp_path):
    """Its first versions named modules with '.' (`extra-layers-0.4.conv`), later ones with ':': the netD beside a
    netG of one extra layer was refused as one of other extra layers, its extra convs not counted."""
    from lightning_modules import WGAN
    from lightning_modules.wgan_reference import reference_checkpoint

    _, state_g = reference_dcgan_g(extra=1, sep=".")
    main_d, state_d = reference_dcgan_d(extra=1, sep=".")
    assert "main.extra-layers-0.4.conv.weight" in state_d and "main.initial.conv.3-4.weight" in state_d
    torch.save(state_g, tmp_path / "netG_epoch_1.pth")
    torch.save(state_d, tmp_path / "netD_epoch_1.pth")
    saved = reference_checkpoint(str(tmp_path / "netG_epoch_1.pth"))
    assert (saved["hyper_parameters"]["n_extra_layers"], saved["hyper_parameters"]["ndf"]) == (1, 4)
    model = WGAN(**saved["hyper_parameters"])
    model.load_state_dict(saved["state_dict"], strict=False)
    images = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(model.eval().critic(images), main_d(images).flatten(), atol=1e-4)
    _, state_d = reference_dcgan_d(extra=0, sep=".")  # a run's netD of no extra layers, beside this netG
    torch.save(state_d, tmp_path / "netD_epoch_1.pth")
    with pytest.raises(UserError, match="has other extra layers than"):
        reference_checkpoint(str(tmp_path / "netG_epoch_1.pth"))
