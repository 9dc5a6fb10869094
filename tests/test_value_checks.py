"""Hyper-parameters that would train nothing, or crash mid-run, are refused at construction with one line."""

from types import SimpleNamespace

import pytest

from callbacks import UserError
from lightning_modules import WGAN, CycleGAN, DarknetClassifier, StyleTransfer

TINY_WGAN = {"isize": 16, "nz": 8, "ngf": 4, "ndf": 4}


@pytest.mark.parametrize("values, message", [
    ({"lr": 0}, "lr must be above 0 \\(got 0\\)"),
    ({"lr": -1e-4}, "lr must be above 0"),
    ({"clip_value": 0}, "clip_value must be above 0 \\(got 0\\)"),
    ({"clip_value": -0.01}, "clip_value must be above 0"),
    ({"gradient_penalty": -10}, "gradient_penalty must be 0 \\(weight clipping\\) or above"),
    ({"d_iters": 0}, "d_iters must be at least 1 \\(got 0\\)"),
    ({"d_iters_long": 0}, "d_iters_long must be at least 1"),
    ({"long_every": 0}, "long_every must be at least 1"),
    ({"long_until": -1}, "long_until must be 0 or more"),
    ({"sample_every": -1}, "sample_every must be 0 \\(samples at the end only\\) or more"),
    ({"lr_generator": 0}, "lr_generator must be above 0, or null for lr \\(got 0\\)")])
def test_wgan_refuses_a_schedule_that_cannot_train(values, message):
    with pytest.raises(UserError, match=message):
        WGAN(**TINY_WGAN, **values)


@pytest.mark.parametrize("values, message", [
    ({"nz": 0}, "nz must be at least 1 \\(got 0\\)"),
    ({"ngf": 0}, "ngf must be at least 1 \\(got 0\\)"),
    ({"ndf": -2}, "ndf must be at least 1 \\(got -2\\)"),
    ({"ngf": 0, "mlp_generator": True}, "ngf must be at least 1"),
    ({"ndf": 0, "mlp_critic": True}, "ndf must be at least 1")])
def test_wgan_refuses_nets_without_noise_or_channels(values, message):
    """`--model.nz 0` or `--model.ngf 0` passed construction and stopped in the first step's convolution with
    torch's RuntimeError and its traceback (exit status 1), where README promises one line."""
    with pytest.raises(UserError, match=message):
        WGAN(**{**TINY_WGAN, **values})


def test_wgan_takes_the_edges_of_each_range():
    """The smallest values that still train: one critic iteration each time, no long phase, any clip under GP."""
    model = WGAN(**TINY_WGAN, d_iters=1, d_iters_long=1, long_every=1, long_until=0, lr=1e-9, clip_value=1e-9)
    assert model.d_iters() == 1
    WGAN(**TINY_WGAN, gradient_penalty=10, clip_value=0)  # the clip is unused with a gradient penalty
    WGAN(**TINY_WGAN, gradient_penalty=0)
    WGAN(**TINY_WGAN, lr_generator=1e-9)
    WGAN(**{**TINY_WGAN, "nz": 1, "ngf": 1, "ndf": 1})


@pytest.mark.parametrize("pool_size, refused", [(-1, True), (0, False), (1, False)])
def test_cyclegan_pool_size_is_zero_or_more(pool_size, refused):
    if refused:
        with pytest.raises(UserError, match="pool_size must be 0 \\(no pool\\) or more \\(got -1\\)"):
            CycleGAN(n_blocks=1, ngf=4, ndf=4, pool_size=pool_size)
    else:
        assert CycleGAN(n_blocks=1, ngf=4, ndf=4, pool_size=pool_size).pool_a.size == pool_size


@pytest.mark.parametrize("weights, refused", [((-1.0, 1.0), True), ((1.0, -1.0), True), ((0.0, 1.0), False),
                                              ((1.0, 0.0), False)])
def test_style_weights_are_zero_or_more(weights, refused):
    content_weight, style_weight = weights
    options = {"vgg_weights": "random", "arch": "vgg16", "content_weight": content_weight,
               "style_weight": style_weight}
    if refused:
        with pytest.raises(UserError, match="content_weight and style_weight must be 0 or more"):
            StyleTransfer(**options)
    else:
        assert StyleTransfer(**options).hparams.style_weight == style_weight


@pytest.mark.parametrize("values, message", [
    ({"num_classes": 1}, "num_classes must be at least 2 \\(got 1\\)"),
    ({"num_classes": 0}, "num_classes must be at least 2 \\(got 0\\)"),
    ({"label_smoothing": 1.5}, "label_smoothing must be between 0 and 1 \\(got 1.5\\)"),
    ({"label_smoothing": -0.1}, "label_smoothing must be between 0 and 1 \\(got -0.1\\)")])
def test_darknet_refuses_a_classifier_without_two_classes_or_a_smoothing_outside_0_1(values, message):
    """`--model.num_classes 1` gave torchmetrics' ValueError with an 80-line traceback (exit status 1), and a
    label_smoothing of 1.5 torch's RuntimeError at the first training step, where README promises one line."""
    with pytest.raises(UserError, match=message):
        DarknetClassifier(num_blocks=[1], nf=4, **values)


def test_darknet_takes_the_edges_of_its_ranges():
    DarknetClassifier(num_blocks=[1], nf=4, num_classes=2, label_smoothing=0.0)
    DarknetClassifier(num_blocks=[1], nf=4, num_classes=2, label_smoothing=1.0)


def test_one_class_data_is_refused_without_advising_num_classes_1():
    """A CIFAR-10-layout folder with one class folder: the advice was `set --model.num_classes 1`, refused in turn."""
    model = DarknetClassifier(num_blocks=[1], nf=4, num_classes=10)
    model._trainer = SimpleNamespace(datamodule=SimpleNamespace(classes=["cat"]))
    with pytest.raises(UserError) as refused:
        model.setup("fit")
    assert str(refused.value) == ("the data has 1 class (cat); a classifier needs at least 2: one folder per class "
                                  "in train/ and test/")
    assert "num_classes 1" not in str(refused.value)
    two = DarknetClassifier(num_blocks=[1], nf=4, num_classes=2)
    two._trainer = SimpleNamespace(datamodule=SimpleNamespace(classes=["cat", "dog"]))
    two.setup("test")  # two classes, the fewest a classifier takes
    assert two.class_names == ["cat", "dog"]


@pytest.mark.parametrize("values, message", [
    ({"lr": 0}, "lr must be above 0 \\(got 0\\)"),
    ({"lr": -1.0}, "lr must be above 0"),
    ({"show_iter": -1}, "show_iter must be 0 \\(never\\) or more \\(got -1\\)")])
def test_style_refuses_an_optimizer_that_cannot_move_the_image(values, message):
    with pytest.raises(UserError, match=message):
        StyleTransfer(vgg_weights="random", arch="vgg16", **values)
    StyleTransfer(vgg_weights="random", arch="vgg16", lr=0.5, show_iter=0)  # the smallest that run
