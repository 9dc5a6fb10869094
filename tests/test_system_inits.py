"""What the four systems' constructors build and refuse, before any trainer: the nets the hyper-parameters ask for,
the counters and pools a fit starts from, the edges of each accepted range (test_value_checks.py has the refusals of
the schedules)."""

import pytest
import torch
from torch import nn

from callbacks import UserError
from lightning_modules import WGAN, CycleGAN, DarknetClassifier, StyleTransfer

TINY_WGAN = {"isize": 16, "nz": 8, "ngf": 4, "ndf": 4}
TINY_CYCLEGAN = {"n_blocks": 1, "ngf": 4, "ndf": 4}
STYLE = {"arch": "vgg16", "vgg_weights": "random"}


def has_batchnorm(net: nn.Module) -> bool:
    return any(isinstance(m, nn.BatchNorm2d) for m in net.modules())


@pytest.mark.parametrize("options, batchnorm", [
    ({}, True),  # weight clipping: the seed's DCGAN critic
    ({"gradient_penalty": 10.0}, False),  # WGAN-GP (Gulrajani et al. 2017, section 4): no batchnorm in the critic
    ({"gradient_penalty": 10.0, "critic_batchnorm": True}, True),  # as chosen
    ({"critic_batchnorm": False}, False)])
def test_the_wgan_critic_has_batchnorm_with_clipping_none_with_the_penalty_or_as_chosen(options, batchnorm):
    model = WGAN(**TINY_WGAN, **options)
    assert has_batchnorm(model.critic) == batchnorm
    assert has_batchnorm(model.generator)  # the generator's is its own option, on by default


def test_a_new_wgan_starts_its_counters_at_0_with_a_gallery_of_64_noise_vectors_and_steps_its_optimizers_itself():
    model = WGAN(**TINY_WGAN)
    # the seed's loop starts gen_iterations at 0 (so the first 25 generator iterations take 100 critic iterations)
    assert (model.gen_iterations, model.critic_iterations, model.group_iterations) == (0, 0, 0)
    assert model.last_loss_g is None and model.sampled_at is None  # nothing logged yet
    assert model.d_iters() == 100  # the paper's long phase at the start
    # the seed's fixed_noise: batchSize (64) vectors of nz x 1 x 1, the generator's input shape
    assert model.fixed_noise.shape == (64, 8, 1, 1)
    assert model.generator(model.fixed_noise).shape == (64, 3, 16, 16)
    assert not model.automatic_optimization  # critic and generator stepped in turn by training_step
    assert model.frechet.off and model.frechet.names == ("fid",)  # val/fid only with --model.fid_features
    assert WGAN(**TINY_WGAN, fid_features="f.pth").frechet.path == "f.pth"


def test_a_new_cyclegan_starts_at_batch_0_with_two_differently_seeded_pools_and_steps_its_optimizers_itself():
    model = CycleGAN(**TINY_CYCLEGAN)
    assert model.batches_trained == 0 and model.eval_visuals == {}
    assert not model.automatic_optimization  # three optimizers stepped in the paper's order by training_step
    assert model.frechet.off and model.frechet.names == ("fid_a2b", "fid_b2a")
    assert CycleGAN(**TINY_CYCLEGAN, fid_features="f.pth").frechet.path == "f.pth"
    assert model.pool_a.size == model.pool_b.size == 50  # the paper's pool
    # each pool its own random stream (the same stream would make both pools pick alike), drawn from the global seed:
    # the same seed gives the same pools, thirty seeds give sixty different ones
    seeds = []
    for global_seed in range(30):
        torch.manual_seed(global_seed)
        model = CycleGAN(**TINY_CYCLEGAN)
        seeds += [model.pool_a.generator.initial_seed(), model.pool_b.generator.initial_seed()]
    assert len(set(seeds)) == 60
    torch.manual_seed(29)
    again = CycleGAN(**TINY_CYCLEGAN)
    assert [again.pool_a.generator.initial_seed(), again.pool_b.generator.initial_seed()] == seeds[-2:]


@pytest.mark.parametrize("weights", [[0.0, 1.0], [0.25, 0.5]])  # a weight of 0, weights summing under 1
def test_style_blend_weights_of_0_or_summing_under_1_are_taken(weights):
    assert StyleTransfer(**STYLE, style_blend_weights=weights).hparams.style_blend_weights == weights


@pytest.mark.parametrize("pyramid, refused", [
    ([[32, 1]], False),  # the smallest level: 32px (VGG16 pools 5 times), one iteration
    ([[32, 1], [48, 2]], False),
    ([[16, 1]], True), ([[31, 5]], True), ([[64, 0]], True),
    ([[48, 1], [32, 1]], True),  # decreasing
    ([[32, 1], [32, 1]], True)])  # the same edge twice
def test_pyramid_levels_need_increasing_edges_of_32px_or_more_and_an_iteration_each(pyramid, refused):
    if refused:
        with pytest.raises(UserError, match="pyramid levels must have increasing edges of at least 32px"):
            StyleTransfer(**STYLE, pyramid=pyramid)
    else:
        assert StyleTransfer(**STYLE, pyramid=pyramid).levels == [tuple(level) for level in pyramid]


def test_style_layer_weights_default_to_1_per_layer():
    """The documented default (null: 1 each) gives the losses of explicit weights of 1."""
    layers = {**STYLE, "content_layer": "relu1_1", "style_layers": ["relu1_1", "relu1_2"], "show_iter": 0}
    torch.manual_seed(0)
    image, content, style = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
    losses = []
    for weights in (None, [1.0, 1.0]):
        torch.manual_seed(1)  # the same random VGG
        model = StyleTransfer(**layers, style_layer_weights=weights)
        model.image = nn.Parameter(image.clone())  # as setup() shapes it from the content
        losses.append(model.losses(image, content, style))
    assert torch.equal(losses[0][0], losses[1][0]) and torch.equal(losses[0][1], losses[1][1])
    assert losses[0][1].abs().min() > 0  # both layers compared


@pytest.mark.parametrize("top_losses, refused", [(-1, True), (0, False), (1, False)])
def test_top_losses_is_0_or_more(top_losses, refused):
    options = {"num_blocks": [1], "nf": 4, "top_losses": top_losses}
    if refused:
        with pytest.raises(UserError, match="top_losses must be 0 \\(none\\) or more \\(got -1\\)"):
            DarknetClassifier(**options)
    else:
        assert DarknetClassifier(**options).hparams.top_losses == top_losses


def test_validation_counts_the_share_of_images_whose_highest_logit_is_their_label():
    torch.manual_seed(0)
    model = DarknetClassifier(num_blocks=[1], nf=4, num_classes=3).eval()
    images, labels = torch.rand(6, 3, 16, 16), torch.tensor([0, 1, 2, 0, 1, 2])
    with torch.no_grad(), pytest.warns(UserWarning, match="self.log"):  # no trainer to log to
        model.validation_step((images, labels), 0)
        predicted = model(images).argmax(1)
    assert model.val_accuracy.compute() == pytest.approx((predicted == labels).float().mean().item())
