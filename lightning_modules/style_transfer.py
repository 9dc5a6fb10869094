"""Gatys style transfer: the image itself optimized by L-BFGS (Gatys, Ecker & Bethge 2016; DL2 2018 lesson 13).

`python -m lightning_modules.style_transfer --help` lists the stylize command's options (the command: stylize.py).
"""

import sys
import warnings
from pathlib import Path
from typing import Literal

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn

from callbacks.errors import (
    UserError,
)
from callbacks.images import log_image_grid, save_png
from callbacks.progress import logging_step
from lightning_modules.lbfgs import BatchLBFGS
from lightning_modules.nets.vgg import (
    average_pooling,
    block_ends,
    load_vgg,
    normalize_imagenet,
    relu_layers,
    saved_features,
)

# Features of one image divided by its numel are ~1e-3, Gram entries ~1e-6 and their squared errors ~1e-12:
# below L-BFGS's tolerance_grad in single precision. The seed scaled them; so does this, out of the user's sight.
CONTENT_SCALE = 1e6  # the seed's comb_loss: F.mse_loss(outs[3], targ_vs[3]) * 1000000
STYLE_SCALE = 1e12  # the seed's gram(...) * 1e6, squared inside the MSE
NOT_ART = ("The VGG has RANDOM weights (vgg_weights random): the losses and the image are real, "
           "the result is not art")


def gram(x: Tensor) -> Tensor:
    """(N, C, H, W) -> (N, C, C): x x^T / numel per image (the seed's gram, without its x1e6)."""
    n, c, h, w = x.shape
    flat = x.reshape(n, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


def content_loss(features: Tensor, target: Tensor) -> Tensor:
    """Per-image MSE between activations, (N,)."""
    return F.mse_loss(features, target.expand_as(features), reduction="none").flatten(1).mean(1)


def style_loss(features: list[Tensor], target_grams: list[Tensor], weights: list[float],
               diagonal: bool = False) -> Tensor:
    """Per-image weighted sum over layers of the Gram-matrix MSE, (N,); `diagonal`: the Gram diagonals only."""
    return style_layer_losses(features, target_grams, weights, diagonal).sum(1)


def style_layer_losses(features: list[Tensor], target_grams: list[Tensor], weights: list[float],
                       diagonal: bool = False) -> Tensor:
    """(N, layers): each layer's weighted Gram-matrix MSE per image, the terms `style_loss` adds."""
    losses = []
    for x, target, weight in zip(features, target_grams, weights, strict=True):
        g = gram(x)
        if diagonal:  # the seed's homework: per-channel energy only, no channel correlations
            g, target = g.diagonal(dim1=1, dim2=2), target.diagonal(dim1=1, dim2=2)
        losses.append(weight * F.mse_loss(g, target.expand_as(g), reduction="none").flatten(1).mean(1))
    return torch.stack(losses, 1)


def total_variation(images: Tensor) -> Tensor:
    """Per-image (N,) mean squared difference between vertical neighbours plus that between horizontal ones: the
    total-variation regulariser with exponent 2 (Mahendran & Vedaldi 2015), which smooths high-frequency noise."""
    vertical = images[:, :, 1:, :] - images[:, :, :-1, :]
    horizontal = images[:, :, :, 1:] - images[:, :, :, :-1]
    return vertical.pow(2).flatten(1).mean(1) + horizontal.pow(2).flatten(1).mean(1)


# RGB -> YUV (ITU-R BT.601, analogue), as jcjohnson/neural-style's image.rgb2yuv
RGB_TO_YUV = ((0.299, 0.587, 0.114), (-0.14713, -0.28886, 0.436), (0.615, -0.51499, -0.10001))


def original_colors(result: Tensor, content: Tensor) -> Tensor:
    """The result's luminance with the content's colours: Y of `result`, U and V of `content`, back to RGB and
    clamped to [0, 1]; (N, 3, H, W) each. jcjohnson/neural-style's -original_colors, a simple form of Gatys et al.'s
    luminance-only transfer (Preserving Color in Neural Artistic Style Transfer, 2016)."""
    to_yuv = result.new_tensor(RGB_TO_YUV)
    yuv = torch.cat([torch.einsum("ij,njhw->nihw", to_yuv, result)[:, :1],
                     torch.einsum("ij,njhw->nihw", to_yuv, content.expand_as(result))[:, 1:]], dim=1)
    return torch.einsum("ij,njhw->nihw", torch.linalg.inv(to_yuv), yuv).clamp(0, 1)


def resized(images: Tensor, size) -> Tensor:
    """(N, C, H, W) to `size` (bilinear, antialiased when shrinking), kept in [0, 1]."""
    return F.interpolate(images, size=tuple(size), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


def median_filtered_noise(shape: tuple[int, ...], size: int = 8) -> Tensor:
    """The seed's start: uniform noise median-filtered over size x size windows per channel, halved."""
    images = []
    for noise in torch.rand(shape):  # one image at a time: the (3, H, W, 8, 8) windows of a batch are large
        padded = F.pad(noise[None], (size // 2, (size - 1) // 2) * 2, mode="reflect")[0]
        windows = padded.unfold(1, size, 1).unfold(2, size, 1).flatten(-2)  # (3, H, W, size * size)
        images.append(windows.kthvalue(size * size // 2 + 1, dim=-1).values)  # scipy's median rank
    return torch.stack(images) / 2  # the seed's val_tfms(opt_img / 2)


def comma_list(name: str, value, cast=str):
    """neural-style's comma-separated list (`-style_layers relu1_1,relu2_1`, `-style_blend_weights 3,1`), or one item,
    as a list; a list (`[relu1_1, relu2_1]`) or null as it is."""
    if not isinstance(value, str):
        return None if value is None else list(value)
    try:
        return [cast(item.strip()) for item in value.split(",") if item.strip()]
    except ValueError:
        raise UserError(f"{name} {value!r}: give numbers, as [3, 1] or 3,1") from None


class StyleTransfer(L.LightningModule):
    """Optimizes `self.image` (its only parameter) against VGG16 content and Gram style losses with L-BFGS.

    One trainer step is one L-BFGS iteration, so `--trainer.max_steps` is the seed's `max_iter`. The
    batch is (content, style) from StyleTransferDataModule; every content image is its own L-BFGS
    problem (BatchLBFGS), so a batch gives what each image would alone. Loss per image:
    content_weight * 1e6 * MSE(content layer) + style_weight * 1e12 * sum_l w_l MSE(gram_l), as the seed's comb_loss.

    Args:
        arch: "vgg16_bn" (fastai 0.7's vgg16, which the seed used), "vgg16", or "vgg19"/"vgg19_bn" (Gatys et al.'s
            network, pystiche's default).
        vgg_weights: "imagenet" (torchvision's, from the torch cache), a path to torchvision's weights file,
            or "random" (tests and demos only: the result is not art).
        content_layer: the ReLU whose activations the result must match (the seed: block_ends[3], relu4_3; Gatys et
            al.: relu4_2).
        style_layers: ReLUs whose Gram matrices the result must match (the seed: the five block ends; Gatys et
            al.: relu1_1, relu2_1, relu3_1, relu4_1, relu5_1); a list, or comma-separated as neural-style's.
        style_layer_weights: weight per style layer (a list or comma-separated); null for 1 each.
        content_weight: 0 gives style only (texture synthesis).
        style_weight: 0 gives content only (reconstruction from one layer).
        gram_diagonal: match only the Gram diagonals (per-channel energy), the seed's homework variant.
        init: "noise" (median-filtered uniform noise, the seed) or "content" (start from the content image).
        lr: L-BFGS step length (the seed: 1, torch's default; its first experiment 0.5).
        history_size: L-BFGS curvature pairs kept per image.
        show_iter: log the image every this many iterations (0: never); the loss goes every log_every_n_steps.
        pooling: "max" (the VGG as trained, the seed) or "avg" (Gatys et al. replaced its max-pools by averages).
        tv_weight: weight of the total-variation term, tv_weight * mean squared neighbour difference per image
            (`total_variation`), added to the loss to smooth noise (the role of jcjohnson/neural-style's -tv_weight,
            in other units; 0: off, the seed and Gatys et al.). Its useful range depends on the other weights and
            was not measured here (no ImageNet VGG weights on the machines this was built on): try powers of ten.
        original_colors: save the result with the content's colours and its own luminance (`original_colors`;
            the optimized image and the checkpoints keep the full-colour result).
        pyramid: coarse-to-fine optimization (Gatys et al. 2017, Controlling Perceptual Factors; pystiche's
            ImagePyramid): [[edge, iterations], ...] levels before the full size, each with the shorter side at
            `edge` (increasing, below the data's size) for that many L-BFGS iterations; the image is then
            upsampled (bilinear) to the next level, L-BFGS starts afresh, and the full size takes the iterations
            left of --trainer.max_steps. Content and style are resized by the level's factor. null: full size only.
        style_blend_weights: with several style images (--data.style [a.jpg, b.jpg]), a weight per image: the
            target Gram matrices are their weighted mean (jcjohnson/neural-style's -style_blend_weights, also
            comma-separated); null: equal.
    """

    # the training signal callbacks.ProgressBar shows, read once per logging interval (not prog_bar=True,
    # which Lightning converts to a Python number after every batch)
    progress_bar_metrics = ("train/loss", "train/content_loss", "train/style_loss", "train/tv_loss")  # neural-style's

    def __init__(self, arch: Literal["vgg16", "vgg16_bn", "vgg19", "vgg19_bn"] = "vgg16_bn",
                 vgg_weights: str = "imagenet", content_layer: str = "relu4_3",
                 style_layers: list[str] | str = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3"),
                 style_layer_weights: list[float] | str | None = None, content_weight: float = 1.0,
                 style_weight: float = 1.0, gram_diagonal: bool = False,
                 init: Literal["noise", "content"] = "noise", lr: float = 1.0, history_size: int = 100,
                 show_iter: int = 100, pooling: Literal["max", "avg"] = "max", tv_weight: float = 0.0,
                 original_colors: bool = False, pyramid: list[tuple[int, int]] | None = None,
                 style_blend_weights: list[float] | str | None = None):
        super().__init__()
        style_layers = comma_list("style_layers", style_layers)  # saved below as lists
        style_layer_weights = comma_list("style_layer_weights", style_layer_weights, float)
        style_blend_weights = comma_list("style_blend_weights", style_blend_weights, float)
        self.save_hyperparameters()
        if pooling not in ("max", "avg"):
            raise UserError(f"pooling must be 'max' or 'avg' (got {pooling!r})")
        features = load_vgg(arch, vgg_weights)
        if pooling == "avg":
            features = average_pooling(features).eval()
        relus = relu_layers(features)
        self.style_layers, self.content_layer = list(style_layers) * (style_weight != 0), content_layer
        self.style_layer_weights = list(style_layer_weights or [1.0] * len(style_layers))
        if len(self.style_layer_weights) != len(style_layers):
            raise UserError(f"{len(style_layers)} style_layers but {len(self.style_layer_weights)} "
                             "style_layer_weights; give one weight per layer")
        if any(w < 0 for w in self.style_layer_weights):  # as content_weight and style_weight
            raise UserError(f"style_layer_weights must be 0 or more (got {list(style_layer_weights)}): a negative "
                            "weight pushes the image's Gram matrices away from the style's")
        if style_blend_weights is not None and (any(w < 0 for w in style_blend_weights)
                                                or sum(style_blend_weights) <= 0):
            raise UserError(f"style_blend_weights must be 0 or more, not all 0 (got {style_blend_weights})")
        if content_weight < 0 or style_weight < 0:
            raise UserError(f"content_weight and style_weight must be 0 or more (got {content_weight} and "
                            f"{style_weight}): a negative weight pushes the image away from its target")
        if content_weight == 0 and style_weight == 0:
            raise UserError("content_weight and style_weight are both 0: nothing to optimize")
        if not style_layers and style_weight != 0:  # else the style weight is ignored, or there is nothing to optimize
            raise UserError("style_layers is empty: give at least one layer (e.g. [relu1_2, relu2_2]), or "
                            "style_weight 0 for the content alone")
        if tv_weight < 0:
            raise UserError(f"tv_weight must be 0 (off) or more (got {tv_weight})")
        if lr <= 0:  # 0 leaves the starting image as it is; below 0 climbs the loss
            raise UserError(f"lr must be above 0 (got {lr}); the seed's is 1")
        if show_iter < 0:
            raise UserError(f"show_iter must be 0 (never) or more (got {show_iter})")
        self.levels = [(int(edge), int(steps)) for edge, steps in (pyramid or [])]  # checked against the data in setup
        edges = [edge for edge, _ in self.levels]
        if edges != sorted(set(edges)) or any(edge < 32 or steps < 1 for edge, steps in self.levels):
            raise UserError(f"pyramid levels must have increasing edges of at least 32px and at least 1 iteration "
                            f"each (got {pyramid}); e.g. --model.pyramid \"[[144, 200], [216, 200]]\"")
        self.layers = self.style_layers + [content_layer] * (content_weight != 0)
        unknown = sorted(set(self.layers) - set(relus))
        if unknown:
            raise UserError(f"unknown layers {unknown}; the {arch}'s are {list(relus)} (block ends: "
                            f"{list(block_ends(features))})")
        self.layer_index = {name: relus[name] for name in dict.fromkeys(self.layers)}
        self.vgg = features[:max(self.layer_index.values()) + 1]  # nothing past the deepest layer used
        self.image = nn.Parameter(torch.empty(0))  # shaped from the content batch in setup()
        self._targets = None
        self.strict_loading = False  # checkpoints leave out the frozen VGG (on_save_checkpoint)

    # ---- set-up -------------------------------------------------------------------------------------------
    def check_trainer(self, trainer: L.Trainer) -> None:
        """The Trainer settings L-BFGS cannot run under. train.py calls this before Lightning starts the processes
        of a multi-device run, so the refusal prints once instead of once per process; setup calls it again."""
        if trainer.precision not in ("32-true", "64-true", "bf16-mixed"):
            why = ("its GradScaler cannot step a closure optimizer" if trainer.precision.endswith("mixed") else
                   "L-BFGS's curvature pairs and line search need more than 16-bit weights")
            raise UserError(f"precision {trainer.precision} does not suit L-BFGS ({why}); use --trainer.precision "
                            "32-true or bf16-mixed")
        if trainer.accumulate_grad_batches != 1:  # L-BFGS evaluates its own closure: each batch would be a repeat
            raise UserError(f"--trainer.accumulate_grad_batches {trainer.accumulate_grad_batches}: L-BFGS evaluates "
                            "the loss itself, so accumulating only repeats each step; drop it (1)")
        if trainer.world_size > 1:
            raise UserError("style transfer optimizes one image tensor on one device; give a batch of content "
                             "images instead of --trainer.devices > 1")
        start_method = getattr(trainer.strategy, "_start_method", "popen")  # ddp_spawn, ddp_fork, ddp_notebook
        if start_method != "popen":  # Lightning loaded the worker's weights into the lazy image: a size mismatch
            raise UserError(f"--trainer.strategy {type(trainer.strategy).__name__} with start method {start_method}: "
                            "style transfer runs in one process, whose image a started process cannot hand back; "
                            "drop --trainer.strategy (auto)")
        if trainer.max_steps is None or trainer.max_steps < 0:
            raise UserError("set --trainer.max_steps: the number of L-BFGS iterations (the seed: 1000)")

    def setup(self, stage: str) -> None:
        trainer = self.trainer
        self.check_trainer(trainer)
        content = getattr(trainer.datamodule, "content", None)
        if content is None:
            raise UserError("StyleTransfer needs datamodules.StyleTransferDataModule (content and style images)")
        styles, blend = len(getattr(trainer.datamodule, "style", [])), self.hparams.style_blend_weights
        if blend is not None and len(blend) != styles:
            raise UserError(f"--model.style_blend_weights has {len(blend)} weights for {styles} style image"
                            f"{'s' * (styles != 1)}; give one per --data.style image, or null for equal weights")
        if self.levels:
            shorter = min(content.shape[-2:])
            if self.levels[-1][0] >= shorter:
                raise UserError(f"pyramid edges must be below the content's shorter side, {shorter}px (got "
                                f"{[edge for edge, _ in self.levels]}); lower them or raise --data.size")
            style = getattr(trainer.datamodule, "style", None)
            smallest = self.levels[0][0] / shorter * min(style.shape[-2:]) if style is not None else 32
            if smallest < 32:  # the data module checks the full size only
                raise UserError(f"at the pyramid's first level ({self.levels[0][0]}px) the style image comes to "
                                f"{smallest:.0f}px, under the 32px VGG16 needs; raise --data.style_scale or the "
                                f"first level's edge")
            if sum(steps for _, steps in self.levels) >= trainer.max_steps:  # fine for a run resumed later
                rank_zero_warn(f"the pyramid's levels take {sum(steps for _, steps in self.levels)} iterations, "
                               f"leaving none of --trainer.max_steps {trainer.max_steps} for the full size: the "
                               f"result stays at a smaller level's size unless the run is resumed with more")
        start_shape = (*content.shape[:2], *self.level_size(content.shape[-2:], 0))
        if self.image.shape != start_shape:
            start = content.clone() if self.hparams.init == "content" else None
            start = median_filtered_noise(start_shape) if start is None else resized(start, start_shape[-2:])
            self.image = nn.Parameter(start)
        if self.hparams.vgg_weights == "random":
            rank_zero_warn(NOT_ART)

    def on_fit_start(self) -> None:
        # Lightning warns of modules in eval mode at the start of training; the frozen VGG's are on purpose (train()
        # below). Only that exact count is silenced: another module left in eval mode still shows.
        count = sum(1 for module in self.vgg.modules() if not module.training)
        warnings.filterwarnings("ignore", message=rf"Found {count} module\(s\) in eval mode at the start of training")

    def on_load_checkpoint(self, checkpoint) -> None:
        # the frozen VGG the checkpoint leaves out (on_save_checkpoint) is this module's own: load_from_checkpoint
        # listed its ~90 keys as missing in a warning
        state = checkpoint["state_dict"]
        state.update({f"vgg.{key}": value for key, value in self.vgg.state_dict().items() if f"vgg.{key}" not in state})
        shape = state["image"].shape  # StyleTransfer.load_from_checkpoint has no data
        content = getattr(getattr(self._trainer, "datamodule", None), "content", None)
        if content is not None and len(content) != shape[0]:  # else every image would chase one content, or crash
            raise UserError(f"the checkpoint holds {shape[0]} image{'s' * (shape[0] != 1)}, this run has "
                            f"{len(content)} content image{'s' * (len(content) != 1)}; resume with the run's own "
                            f"--data.content (its config.yaml), or start a new run without --ckpt_path")
        if content is not None:  # else on_train_batch_start would resize the image to this run's size, unasked
            step, full = checkpoint.get("global_step", 0), tuple(content.shape[-2:])
            # written after iteration `step` (at step - 1's level), or before the first
            expected = [self.level_size(full, max(step - 1, 0)), self.level_size(full, step)]
            if tuple(shape[-2:]) not in expected:
                from lightning_modules.inference import run_config_file
                ckpt = getattr(self._trainer, "ckpt_path", None)
                config = run_config_file(ckpt) if ckpt else None
                fix = (f"--config {config} --ckpt_path {ckpt}" if config is not None
                       else "its --data and --model.pyramid options")
                raise UserError(f"the checkpoint's image is {shape[-2]}x{shape[-1]} px after iteration {step}, this "
                                f"run's would be {expected[0][0]}x{expected[0][1]} px: the run began with other "
                                f"--data.content, --data.size, --data.crop or --model.pyramid options; resume with "
                                f"the run's own config: {fix}")
        if self.image.shape != shape:
            self.image = nn.Parameter(torch.empty(shape))

    def on_save_checkpoint(self, checkpoint) -> None:
        for key in [k for k in checkpoint["state_dict"] if k.startswith("vgg.")]:
            del checkpoint["state_dict"][key]  # 59 MB of frozen weights that vgg_weights brings back

    def train(self, mode: bool = True):
        super().train(mode)
        self.vgg.eval()  # frozen: BatchNorm keeps ImageNet statistics while Lightning trains the image
        return self

    def configure_optimizers(self):
        return BatchLBFGS([self.image], lr=self.hparams.lr, history_size=self.hparams.history_size)

    # ---- the pyramid ----------------------------------------------------------------------------------------
    def level_size(self, full: tuple[int, int], step: int) -> tuple[int, int]:
        """(H, W) of the image at iteration `step`: the pyramid level's, or `full` after the levels."""
        done = 0
        for edge, steps in self.levels:
            done += steps
            if step < done:
                scale = edge / min(full)
                return round(full[0] * scale), round(full[1] * scale)
        return tuple(full)

    def on_train_batch_start(self, batch, batch_idx) -> None:
        """At a level's first iteration: the image upsampled to it, and a fresh L-BFGS (its curvature pairs are of
        the smaller image). Compared by shape, so a checkpoint written at a level's last iteration moves on too."""
        size = self.level_size(batch[0].shape[-2:], self.trainer.global_step)
        if tuple(self.image.shape[-2:]) == size:
            return
        self.image = nn.Parameter(resized(self.image.detach(), size))
        self.trainer.strategy.optimizers = [self.configure_optimizers()]
        self._targets = None  # content and style targets at the new size

    # ---- losses -------------------------------------------------------------------------------------------
    def features(self, images: Tensor) -> dict[str, Tensor]:
        """Activations at the chosen block ends, captured by the seed's SaveFeatures hooks."""
        with saved_features([self.vgg[i] for i in self.layer_index.values()]) as hooks:
            self.vgg(normalize_imagenet(images))
        # losses in at least fp32 (bf16 features are promoted; 64-true keeps fp64)
        return {name: hook.features.to(torch.promote_types(hook.features.dtype, torch.float32))
                for name, hook in zip(self.layer_index, hooks, strict=True)}

    def targets(self, content: Tensor, style: Tensor) -> tuple[Tensor | None, list[Tensor]]:
        """Content activations and style Gram matrices, computed once per pyramid level (they never change)."""
        if self._targets is None:
            if content.shape[-2:] != self.image.shape[-2:]:  # a pyramid level: both scaled by its factor
                scale = self.image.shape[-1] / content.shape[-1]
                content = resized(content, self.image.shape[-2:])
                style = resized(style, [max(1, round(side * scale)) for side in style.shape[-2:]])
            with torch.no_grad():
                target_content = self.features(content)[self.content_layer] if self.hparams.content_weight else None
                style_features = self.features(style) if self.style_layers else {}
                self._targets = (target_content, [self.blend(gram(style_features[n])) for n in self.style_layers])
            self._batch = (content, style)
        return self._targets

    def blend(self, grams: Tensor) -> Tensor:
        """(S, C, C) Gram matrices of S style images -> (1, C, C), their mean weighted by style_blend_weights."""
        weights = self.hparams.style_blend_weights or [1.0] * len(grams)
        weights = grams.new_tensor(weights)[:, None, None]
        return (weights * grams).sum(0, keepdim=True) / weights.sum()

    def losses(self, images: Tensor, content: Tensor, style: Tensor) -> tuple[Tensor, Tensor]:
        """Per-image content loss (N,) and style loss per layer (N, layers), scaled as the seed scaled them."""
        target_content, target_grams = self.targets(content, style)
        features = self.features(images)
        zero = images.new_zeros(len(images))
        c_loss = zero if target_content is None else content_loss(features[self.content_layer], target_content)
        per_layer = (self.hparams.style_weight * STYLE_SCALE * style_layer_losses(
            [features[n] for n in self.style_layers], target_grams, self.style_layer_weights,
            self.hparams.gram_diagonal)) if self.style_layers else zero[:, None]
        return self.hparams.content_weight * CONTENT_SCALE * c_loss, per_layer

    def training_step(self, batch, batch_idx):
        c_loss, s_layers = self.losses(self.image, *batch)
        s_loss = s_layers.sum(1)
        per_image = c_loss + s_loss
        tv_weight = self.hparams.tv_weight
        if tv_weight:
            tv_loss = tv_weight * total_variation(self.image.float())
            per_image = per_image + tv_loss
        if logging_step(self):  # not every iteration: self.log costs host time (see there)
            self.log_dict({"train/loss": per_image.detach().mean(), "train/content_loss": c_loss.detach().mean(),
                           "train/style_loss": s_loss.detach().mean()})
            if tv_weight:
                self.log("train/tv_loss", tv_loss.detach().mean())
            if len(self.style_layers) > 1:  # each layer's share (neural-style prints each), in the same units
                shares = {}  # a layer listed twice: both its terms
                for name, loss in zip(self.style_layers, s_layers.detach().mean(0), strict=True):
                    shares[f"train/style_loss/{name}"] = shares.get(f"train/style_loss/{name}", 0) + loss
                self.log_dict(shares)
        return per_image.sum()  # a sum: image i's gradient comes from image i's loss alone

    # ---- output -------------------------------------------------------------------------------------------
    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        every = self.hparams.show_iter
        if every and self.global_step % every == 0:
            log_image_grid(self.trainer, "style/image", self.image.detach().clamp(0, 1), self.global_step,
                           value_range=(0, 1), caption=f"iteration {self.global_step}")

    results_folder: Path | None = None  # where on_train_end saves the results; None: <run folder>/stylized
    side_by_side_key = "style/side_by_side"  # dl2-stylize's batch of each photo shape has its own

    def results_dir(self) -> Path:
        return self.results_folder or Path(self.trainer.default_root_dir) / "stylized"

    def configure_callbacks(self):
        return [WriteOnStop()]

    def lr_sweep(self) -> bool:
        """This fit is `--lr_find`'s sweep (Lightning's Tuner adds its callback), whose last image is no result."""
        from lightning.pytorch.tuner.lr_finder import _LRCallback
        return any(isinstance(callback, _LRCallback) for callback in self.trainer.callbacks)

    def on_train_end(self) -> None:
        written = self.write_results()
        if written and self.results_folder is None:  # train.py's run: its results.json did not say where they went
            print("Wrote " + ", ".join(map(str, written)))

    def write_results(self) -> list[Path]:
        """<run folder>/stylized/<content name>.png, and a content | style | result side-by-side in images/."""
        if not self.trainer.is_global_zero or not hasattr(self, "_batch") or self.lr_sweep():
            return []
        content, style = (x.float().cpu() for x in self._batch)
        style = style[:1]  # the first of several style images
        result = self.image.detach().float().cpu().clamp(0, 1)
        if self.hparams.original_colors:
            result = original_colors(result, content)
        if style.shape[-2:] != content.shape[-2:]:  # --data.style_scale: shown at the content's size
            style = resized(style, content.shape[-2:])
        names = getattr(self.trainer.datamodule, "content_names", None) or [f"image{i}" for i in range(len(result))]
        written = [self.results_dir() / f"{name}.png" for name in names]
        for path, image in zip(written, result, strict=True):
            save_png(image, path)
        rows = torch.stack([content, style.expand_as(content), result], 1).flatten(0, 1)
        caption = NOT_ART if self.hparams.vgg_weights == "random" else "content | style | result"
        log_image_grid(self.trainer, self.side_by_side_key, rows, self.global_step, nrow=3, value_range=(0, 1),
                       caption=caption, labels=["content", "style", "result"])
        if self.hparams.vgg_weights == "random":
            print(NOT_ART)
        return written


class WriteOnStop(L.Callback):
    """Ctrl-C or SIGTERM stopping train.py's style run (which saves last.ckpt, callbacks.saving.SaveOnStop): the image
    as it is is written as at the end, as dl2-stylize does; a stop is often the user's judgement that the result looks
    done."""

    def on_exception(self, trainer, pl_module, exception):
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        if (isinstance(exception, SIGTERMException) and trainer.state.fn == "fit" and hasattr(pl_module, "_batch")
                and not pl_module.lr_sweep()):
            pl_module.write_results()
            if trainer.is_global_zero:
                print(f"Wrote the images as they are after iteration {trainer.global_step} to "
                      f"{pl_module.results_dir()}", file=sys.stderr)


if __name__ == "__main__":  # the package's functions (lightning_modules.commands), not this copy's
    from lightning_modules.commands import style_transfer

    style_transfer()
