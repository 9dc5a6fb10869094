"""Gatys et al.'s losses per image of a batch, against sums written out here (no VGG, no training)."""

import pytest
import torch

from lightning_modules.style_transfer import content_loss, gram, style_loss


def gram_by_hand(x):
    n, c, h, w = x.shape
    return torch.stack([torch.tensor([[float((x[k, i] * x[k, j]).sum()) / (c * h * w) for j in range(c)]
                                      for i in range(c)]) for k in range(n)])


def test_gram_is_the_channel_products_summed_over_pixels_over_numel():
    x = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(gram(x), gram_by_hand(x), atol=1e-6)


def test_content_loss_is_each_images_own_mean_squared_error():
    features = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(1))
    target = torch.randn(1, 2, 4, 4, generator=torch.Generator().manual_seed(2))
    expected = torch.tensor([((features[i] - target[0]) ** 2).sum().item() / 32 for i in range(3)])
    assert torch.allclose(content_loss(features, target), expected, atol=1e-6)


def test_style_loss_is_a_weighted_sum_over_layers_of_each_images_gram_mse():
    g = torch.Generator().manual_seed(3)
    features = [torch.randn(2, 3, 4, 4, generator=g), torch.randn(2, 2, 2, 2, generator=g)]
    targets = [torch.randn(1, 3, 3, generator=g), torch.randn(1, 2, 2, generator=g)]
    weights = [0.25, 3.0]
    expected = torch.zeros(2)
    for x, t, w in zip(features, targets, weights, strict=True):
        c = x.shape[1]
        expected += w * torch.tensor([((gram_by_hand(x[i:i + 1])[0] - t[0]) ** 2).sum().item() / c**2
                                      for i in range(2)])
    assert torch.allclose(style_loss(features, targets, weights), expected, atol=1e-6)
    diagonal = torch.zeros(2)
    for x, t, w in zip(features, targets, weights, strict=True):
        c = x.shape[1]
        diagonal += w * torch.tensor([((gram_by_hand(x[i:i + 1])[0].diagonal() - t[0].diagonal()) ** 2).sum().item()
                                      / c for i in range(2)])
    assert torch.allclose(style_loss(features, targets, weights, diagonal=True), diagonal, atol=1e-6)


def test_losses_are_zero_at_the_target_and_grow_with_the_distance():
    x = torch.randn(1, 2, 3, 3)
    assert content_loss(x, x).item() == 0 and style_loss([x], [gram(x)], [1.0]).item() == 0
    assert content_loss(x + 1, x).item() == pytest.approx(1.0) and content_loss(x + 2, x).item() == pytest.approx(4.0)
