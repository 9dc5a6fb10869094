"""StyleTransfer: gram, VGG16 block ends and hooks, frozen VGG, the loss, the variants, batches, the seed's loop."""

from types import SimpleNamespace

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from conftest import make_style_images

from datamodules import StyleTransferDataModule
from lightning_modules import StyleTransfer, gram
from lightning_modules.nets.vgg import block_ends, relu_layers, vgg_features
from lightning_modules.style_transfer import style_loss

# tiny nets: threads only add contention
pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.xdist_group("test_style")]

MEAN, STD = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def fit(model, data, steps, root):
    trainer = L.Trainer(accelerator="cpu", max_steps=steps, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=root)
    trainer.fit(model, datamodule=data)
    return trainer


def model_and_data(style_images, n_content=1, seed=0, **kwargs):
    content, style = style_images
    torch.manual_seed(seed)
    model = StyleTransfer(**{"arch": "vgg16", "vgg_weights": "random", "show_iter": 0, **kwargs})
    return model, StyleTransferDataModule([str(c) for c in content[:n_content]], str(style), size=32)


def test_gram_matches_a_hand_computation():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 2, 1, 2)  # channels (1, 2) and (3, 4)
    # x x^T = [[1+4, 3+8], [3+8, 9+16]], divided by numel 4
    assert torch.equal(gram(x), torch.tensor([[[1.25, 2.75], [2.75, 6.25]]]))


def test_gram_of_a_batch_is_each_images_own_gram():
    x = torch.randn(3, 4, 5, 6)
    assert torch.allclose(gram(x), torch.cat([gram(x[i:i + 1]) for i in range(3)]))


def test_gram_diagonal_variant_compares_only_channel_energies():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 2, 1, 2)
    target = torch.zeros(1, 2, 2)
    # diagonal (1.25, 6.25) against 0, mean of the squares; the full Gram would add 2.75^2 twice
    assert style_loss([x], [target], [1.0], diagonal=True).item() == pytest.approx((1.25**2 + 6.25**2) / 2)
    assert style_loss([x], [target], [2.0]).item() == pytest.approx(2 * (1.25**2 + 2 * 2.75**2 + 6.25**2) / 4)


def test_block_ends_of_vgg16_are_the_layers_before_each_max_pool():
    # configuration D: 2, 2, 3, 3, 3 convs (conv, relu each) then a pool: pools at 4, 9, 16, 23, 30
    assert block_ends(vgg_features("vgg16")) == {
        "relu1_2": 3, "relu2_2": 8, "relu3_3": 15, "relu4_3": 22, "relu5_3": 29}


def test_block_ends_of_vgg16_bn_are_the_seeds_list():
    # conv, bn, relu per conv; the seed's notebook printed block_ends = [5, 12, 22, 32, 42]
    assert list(block_ends(vgg_features("vgg16_bn")).values()) == [5, 12, 22, 32, 42]


def vgg_hooks(model):
    return sum(len(m._forward_hooks) for m in model.vgg.modules())


class Record(L.Callback):
    """The start image and the loss of every iteration."""

    def on_train_start(self, trainer, pl_module):
        self.start, self.losses = pl_module.image.detach().clone(), []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(outputs["loss"].item() / len(pl_module.image))  # the step's sum over images


@pytest.fixture(scope="module")
def bn_run(tmp_path_factory):
    """One 8-iteration run on vgg16_bn, shared by the tests that only look at its outcome."""
    content, style = make_style_images(tmp_path_factory.mktemp("style"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module scope: set up before the one_thread fixture applies
    torch.manual_seed(0)
    model = StyleTransfer(arch="vgg16_bn", vgg_weights="random", show_iter=0)
    before = {k: v.clone() for k, v in model.vgg.state_dict().items()}  # weights and BatchNorm running stats
    record = Record()
    trainer = L.Trainer(accelerator="cpu", max_steps=8, logger=False, enable_checkpointing=False, callbacks=[record],
                        enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path_factory.mktemp("runs"))
    trainer.fit(model, datamodule=StyleTransferDataModule([str(content[0])], str(style), size=32))
    torch.set_num_threads(threads)
    return SimpleNamespace(model=model, trainer=trainer, before=before, record=record)


def test_hooks_are_gone_after_a_run(bn_run):
    assert bn_run.trainer.global_step == 8 and vgg_hooks(bn_run.model) == 0


def test_hooks_are_gone_after_a_failing_run(style_images, tmp_path):
    model, data = model_and_data(style_images)

    def fail(module, args):
        raise RuntimeError("layer failed")

    model.vgg[10].register_forward_pre_hook(fail)  # inside block 3: the relu1_2 and relu2_2 hooks are set
    with pytest.raises(RuntimeError, match="layer failed"):
        fit(model, data, 2, tmp_path)
    assert vgg_hooks(model) == 0


def test_only_the_image_is_optimized(bn_run):
    optimized = [p for group in bn_run.trainer.optimizers[0].param_groups for p in group["params"]]
    assert optimized == [bn_run.model.image]
    assert [name for name, p in bn_run.model.named_parameters() if p.requires_grad] == ["image"]


def test_vgg16_bn_weights_and_running_stats_are_unchanged(bn_run):
    assert all(torch.equal(bn_run.before[k], v) for k, v in bn_run.model.vgg.state_dict().items())
    assert not any(m.training for m in bn_run.model.vgg if isinstance(m, torch.nn.BatchNorm2d))


def test_loss_falls(bn_run):
    losses = bn_run.record.losses  # L-BFGS without line search (the seed's) overshoots now and then, then recovers
    assert len(losses) == 8 and min(losses) == losses[-1] < 0.85 * losses[0]


def test_content_only_reconstruction_moves_the_activations_to_the_target(style_images, tmp_path):
    model, data = model_and_data(style_images, style_weight=0.0)
    relu4_3 = model.vgg[:23]  # configuration D: relu4_3 is layer 22
    record = Record()
    trainer = L.Trainer(accelerator="cpu", max_steps=6, logger=False, enable_checkpointing=False, callbacks=[record],
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(model, datamodule=data)

    def distance(image):
        with torch.no_grad():
            return F.mse_loss(relu4_3((image - MEAN) / STD), relu4_3((data.content - MEAN) / STD)).item()

    assert distance(model.image.detach()) < 0.5 * distance(record.start)


def test_a_batch_gives_the_same_images_as_each_image_alone(style_images, tmp_path, monkeypatch):
    torch.manual_seed(1)
    noise = torch.rand(2, 3, 32, 32) / 2  # each image's start, the same in the batch and alone
    content, style = style_images
    batch, data = model_and_data(style_images, n_content=2)
    monkeypatch.setattr("lightning_modules.style_transfer.median_filtered_noise", lambda shape: noise.clone())
    fit(batch, data, 3, tmp_path)
    for i in range(2):
        torch.manual_seed(0)
        alone = StyleTransfer(arch="vgg16", vgg_weights="random", show_iter=0)
        monkeypatch.setattr("lightning_modules.style_transfer.median_filtered_noise", lambda s, i=i: noise[i:i + 1])
        fit(alone, StyleTransferDataModule([str(content[i])], str(style), size=32), 3, tmp_path)
        assert torch.allclose(batch.image[i], alone.image[0], atol=1e-4)


def test_one_image_follows_the_seeds_plain_lbfgs_loop(style_images, tmp_path):
    model, data = model_and_data(style_images, init="content")
    vgg = vgg_features("vgg16")
    vgg.load_state_dict(model.vgg.state_dict(), strict=False)  # model.vgg stops at relu5_3
    record = Record()
    # in float64 both runs agree to rounding: in float32 the summation order of the dot products grew through
    # the curvature pairs to 0.014 in the image after three iterations (when the rows' dots were a bmm)
    L.Trainer(accelerator="cpu", max_steps=3, logger=False, enable_checkpointing=False, callbacks=[record],
              enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
              precision="64-true").fit(model, data)
    vgg.double()
    # the seed's comb_loss: hooks on the block ends, gram x1e6, content MSE x1e6 at block_ends[3]
    feats = {}
    for k, i in enumerate([3, 8, 15, 22, 29]):
        vgg[i].register_forward_hook(lambda m, inp, out, k=k: feats.__setitem__(k, out))

    def seed_gram(x):
        b, c, h, w = x.size()
        flat = x.view(b * c, -1)
        return torch.mm(flat, flat.t()) / x.numel() * 1e6

    mean, std = (torch.tensor(v, dtype=torch.float64).view(1, 3, 1, 1) for v in ([0.485, 0.456, 0.406],
                                                                                 [0.229, 0.224, 0.225]))

    def outs(x):
        vgg((x - mean) / std)
        return [feats[k] for k in range(5)]

    with torch.no_grad():
        target_content = outs(data.content.double())[3].clone()
        target_styles = [o.clone() for o in outs(data.style.double())]
    image = data.content.double().clone().requires_grad_()
    optimizer = torch.optim.LBFGS([image], lr=1, max_iter=3, max_eval=10)  # its default max_eval stops at 2

    losses = []

    def comb_loss():
        optimizer.zero_grad()
        o = outs(image)
        loss = F.mse_loss(o[3], target_content) * 1e6 + sum(
            F.mse_loss(seed_gram(a), seed_gram(s)) for a, s in zip(o, target_styles, strict=True))
        loss.backward()
        losses.append(loss.item())
        return loss

    optimizer.step(comb_loss)
    assert record.losses == pytest.approx(losses, rel=1e-9)  # the same loss, scales included, at each iterate
    assert (image.detach() - data.content).abs().max() > 0.5  # the image moves by up to ~1 in three steps
    assert torch.allclose(model.image.detach(), image.detach(), atol=1e-8)


def test_unknown_layer_lists_the_layers():
    with pytest.raises(ValueError, match=r"unknown layers \['relu6_1'\].*relu1_1.*relu5_3.*block ends.*relu1_2"):
        StyleTransfer(arch="vgg16", vgg_weights="random", content_layer="relu6_1")


def test_every_relu_is_named_by_block_and_conv():
    # configuration D: conv, relu per conv; pools at 4, 9, 16, 23, 30
    assert relu_layers(vgg_features("vgg16")) == {
        "relu1_1": 1, "relu1_2": 3, "relu2_1": 6, "relu2_2": 8, "relu3_1": 11, "relu3_2": 13, "relu3_3": 15,
        "relu4_1": 18, "relu4_2": 20, "relu4_3": 22, "relu5_1": 25, "relu5_2": 27, "relu5_3": 29}
    # with batch norm: conv, bn, relu; the block ends are the seed's [5, 12, 22, 32, 42]
    bn = relu_layers(vgg_features("vgg16_bn"))
    assert [bn[k] for k in ("relu1_1", "relu1_2", "relu2_1", "relu4_2", "relu5_3")] == [2, 5, 9, 29, 42]


def test_vgg19_relus_follow_its_four_conv_blocks():
    # configuration E: 2, 2, 4, 4, 4 convs (conv, relu each); pools at 4, 9, 18, 27, 36
    relus = relu_layers(vgg_features("vgg19"))
    assert len(relus) == 16 and relus["relu3_4"] == 17 and relus["relu4_2"] == 22 and relus["relu5_1"] == 29
    assert list(block_ends(vgg_features("vgg19")).values()) == [3, 8, 17, 26, 35]


def test_gatys_layers_hook_the_layers_they_name(style_images):
    model, _ = model_and_data(style_images, content_layer="relu4_2",
                              style_layers=["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"])
    assert len(model.vgg) == 26  # cut after relu5_1, the deepest used (index 25)
    x = torch.rand(1, 3, 32, 32)
    features = model.features(x)
    reference = vgg_features("vgg16")
    reference.load_state_dict(model.vgg.state_dict(), strict=False)  # the same weights, run by hand to each layer
    normalized = (x - MEAN) / STD
    for name, index in (("relu4_2", 20), ("relu1_1", 1), ("relu3_1", 11), ("relu5_1", 25)):
        assert torch.allclose(features[name], reference[:index + 1](normalized), atol=1e-6), name


@pytest.mark.parametrize("other_in_eval_mode", [False, True])
def test_only_the_frozen_vggs_eval_mode_is_kept_quiet(style_images, tmp_path, other_in_eval_mode):
    import warnings

    model, data = model_and_data(style_images)
    if other_in_eval_mode:  # a module of the user's, left in eval mode by mistake: Lightning's warning must show
        model.extra = torch.nn.Dropout().eval()
    with warnings.catch_warnings(record=True) as caught:  # the filter the model adds ends with the block
        warnings.simplefilter("always")
        fit(model, data, 1, tmp_path)
    shown = [str(w.message) for w in caught if "in eval mode at the start of training" in str(w.message)]
    assert len(shown) == other_in_eval_mode
