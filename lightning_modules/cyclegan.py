"""CycleGAN: unpaired image-to-image translation (Zhu, Park, Isola & Efros 2017; DL2 2018 lesson 12).

Also the `translate` command: `python -m lightning_modules.cyclegan translate --help`.
"""

import html
import re
import sys
import urllib.parse
from functools import partial
from pathlib import Path
from typing import Literal

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn
from torchmetrics import MeanMetric

from callbacks.errors import UserError, check_output_folder, report_partial_failure, require_at_least_one
from callbacks.images import log_image_grid, note_earlier_images, save_png
from callbacks.progress import logging_step
from callbacks.strategy import require_unused_parameter_detection
from lightning_modules.export import restore_left_out
from lightning_modules.fid import FrechetValidation
from lightning_modules.inference import load_by_position
from lightning_modules.nets.cyclegan import ResBlock, init_cyclegan_, patch_discriminator, resnet_generator


def gan_loss(logits: Tensor, real: bool, mode: str) -> Tensor:
    """LSGAN's (D(x) - 1)^2 / D(x)^2 (paper section 4), or the vanilla GAN's cross-entropy."""
    logits = logits.float()  # the squares and logs in fp32 under mixed precision
    target = torch.full_like(logits, float(real))
    if mode == "lsgan":
        return F.mse_loss(logits, target)
    return F.binary_cross_entropy_with_logits(logits, target)


def cycle_loss(reconstructed: Tensor, real: Tensor, per_image: bool = False) -> Tensor:
    """||F(G(x)) - x||_1 (equation 2), the mean over the batch's pixels; `per_image`: each image's, (N,)."""
    if per_image:
        return F.l1_loss(reconstructed.float(), real.float(), reduction="none").flatten(1).mean(1)
    return F.l1_loss(reconstructed.float(), real.float())


def identity_loss(same: Tensor, real: Tensor) -> Tensor:
    """||G(y) - y||_1 (section 5.2): keeps colours when the input is already in the target domain."""
    return F.l1_loss(same.float(), real.float())


def linear_decay(epoch: int, n_epochs: int, n_epochs_decay: int) -> float:
    """lr factor for 0-based `epoch`: 1 for n_epochs epochs, then down by 1/(n_epochs_decay + 1) an epoch.

    The reference code's 'linear' policy: the last epoch trains at 1/(n_epochs_decay + 1) of the lr and
    the line reaches 0 when training ends.
    """
    return max(0.0, min(1.0, (n_epochs + n_epochs_decay - epoch) / (n_epochs_decay + 1)))


class ImagePool:
    """The last `size` fakes (Shrivastava et al. 2017): once full, each query returns with probability 1/2
    a stored fake (replaced by the new one), else the new fake. Lives on the images' device; its random
    generator is its own and goes into checkpoints with the images, so a resumed run draws the same (one process;
    under DDP see `spread`).
    """

    def __init__(self, size: int, seed: int):
        self.size, self.images = size, []
        self.generator = torch.Generator().manual_seed(seed)

    def query(self, fakes: Tensor) -> Tensor:
        if self.size == 0:
            return fakes.detach()  # the discriminator's loss must not reach the generator's freed graph
        if self.images and self.images[0].device != fakes.device:
            self.images = [image.to(fakes.device) for image in self.images]
        out = []
        for fake in fakes.detach().float():  # fp32 in the pool, whatever the precision
            if len(self.images) < self.size:
                self.images.append(fake)
                out.append(fake)
            elif torch.rand((), generator=self.generator) < 0.5:  # on the CPU: no device sync
                i = int(torch.randint(self.size, (), generator=self.generator))
                out.append(self.images[i])
                self.images[i] = fake
            else:
                out.append(fake)
        return torch.stack(out).to(fakes.dtype)  # the discriminator's input dtype (bf16 weights under bf16-true)

    def spread(self, rank: int) -> None:
        """Under DDP each rank draws its own swaps: rank r > 0 reseeds from the pool's state and r, rank 0 keeps it (one
        process, and rank 0 of a resumed run, draw as before). A checkpoint holds rank 0's pool, which every rank of
        a resumed run starts from."""
        if rank:
            copy = torch.Generator()
            copy.set_state(self.generator.get_state())
            self.generator.manual_seed(int(torch.randint(2 ** 62, (), generator=copy)) + rank)

    def state_dict(self) -> dict:
        return {"images": [image.cpu() for image in self.images], "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.images = list(state["images"])
        self.generator.set_state(state["generator"])

    def __getstate__(self) -> dict:
        """Pickled (ddp_spawn sends the model to each process) with the generator's state as bytes: as a tensor
        made only for the pickle, torch would share it by a file descriptor closed before the processes start."""
        return {**self.__dict__, "generator": bytes(self.generator.get_state().numpy())}

    def __setstate__(self, state: dict) -> None:
        generator = torch.Generator()
        generator.set_state(torch.frombuffer(bytearray(state["generator"]), dtype=torch.uint8))
        self.__dict__.update({**state, "generator": generator})


class CycleGAN(L.LightningModule):
    """Two ResNet generators and two 70x70 PatchGANs, one Adam for both generators and one per discriminator.

    Names: `gen_a2b` is the paper's G (X->Y, junyanz's G_A), `gen_b2a` is F (Y->X, G_B); `disc_a` is D_X
    and judges domain A images (junyanz's D_B), `disc_b` is D_Y and judges domain B images (junyanz's D_A).
    Each batch: the generators take one step on
    `gan_a2b + gan_b2a + lambda_cycle * (cycle_a + cycle_b) + lambda_identity * lambda_cycle * (identity_a
    + identity_b)` (equation 3 plus section 5.2's identity term), then each discriminator one step on
    `0.5 * (gan(D(real), 1) + gan(D(pooled fake), 0))`. The logged terms carry their weights.

    Args:
        n_blocks: residual blocks per generator: 9 for 256px, 6 for 128px (the paper).
        ngf: filters of the generators' first layer.
        ndf: filters of the discriminators' first layer.
        upsample: "transposed" convs (the paper) or "resize" (nearest neighbour then conv: no checkerboard).
        gan_mode: "lsgan" (least squares, the paper) or "vanilla" (cross-entropy).
        lambda_cycle: weight of each cycle-consistency L1 term (the paper's lambda, 10).
        lambda_identity: identity loss weight as a fraction of lambda_cycle (0.5; 0 turns it off).
        pool_size: fakes kept in each discriminator's history pool (50; 0: no pool).
        lr: Adam learning rate of all three optimizers.
        betas: Adam betas.
        n_epochs: epochs at the full lr.
        n_epochs_decay: epochs of linear decay after them (max_epochs should be n_epochs + n_epochs_decay).
        linear_decay: apply that schedule; false leaves the lr to a callback (a TrainingPhase scheduler).
        log_images_every_n_batches: every N batches, the batch's visuals (six, eight with identity) as one grid.
        channels_last: keep weights and activations in NHWC (faster convs with bf16 on recent GPUs).
        fid_features: a DarknetClassifier .ckpt or torch-fidelity's pt_inception-2015-12-05-6726825d.pth: each
            validation (--trainer.check_val_every_n_epoch) translates testA and testB and logs `val/fid_a2b`
            (fake B vs real testB), `val/fid_b2a` (fake A vs real testA), their mean `val/fid`, and a grid;
            null: no validation (lightning_modules/fid.py).
    """

    # the training signal callbacks.ProgressBar shows, read once per logging interval (not prog_bar=True,
    # which Lightning converts to a Python number after every batch)
    progress_bar_metrics = ("train/gen_total", "train/disc_a", "train/disc_b")
    # each backward reaches only one optimizer's nets: train.py turns --trainer.strategy ddp into this
    ddp_strategy = "ddp_find_unused_parameters_true"

    def __init__(self, n_blocks: int = 9, ngf: int = 64, ndf: int = 64,
                 upsample: Literal["transposed", "resize"] = "transposed",
                 gan_mode: Literal["lsgan", "vanilla"] = "lsgan", lambda_cycle: float = 10.0,
                 lambda_identity: float = 0.5, pool_size: int = 50, lr: float = 2e-4,
                 betas: tuple[float, float] = (0.5, 0.999), n_epochs: int = 100, n_epochs_decay: int = 100,
                 linear_decay: bool = True, log_images_every_n_batches: int = 400, channels_last: bool = False,
                 fid_features: str | None = None):
        super().__init__()
        if gan_mode not in ("lsgan", "vanilla"):
            raise UserError(f"gan_mode must be 'lsgan' or 'vanilla' (got {gan_mode!r})")
        if pool_size < 0:
            raise UserError(f"pool_size must be 0 (no pool) or more (got {pool_size}); the paper's is 50")
        self.save_hyperparameters()
        self.automatic_optimization = False  # three optimizers stepped in the paper's order
        self.gen_a2b = init_cyclegan_(resnet_generator(n_blocks, ngf, upsample))
        self.gen_b2a = init_cyclegan_(resnet_generator(n_blocks, ngf, upsample))
        self.disc_a = init_cyclegan_(patch_discriminator(ndf))
        self.disc_b = init_cyclegan_(patch_discriminator(ndf))
        seeds = torch.randint(2**62, (2,)).tolist()  # from the global seed; checkpoints carry the state on
        self.pool_a, self.pool_b = ImagePool(pool_size, seeds[0]), ImagePool(pool_size, seeds[1])
        self.batches_trained = 0  # a Python int (no device sync to read it), saved in checkpoints
        self.frechet = FrechetValidation(fid_features, ["fid_a2b", "fid_b2a"])  # not a submodule: not saved
        # the test's mean cycle L1 per domain, over images: torchmetrics sums them and their count across ranks
        # (a batch mean logged with sync_dist=True would average the ranks' means, Lightning issue #21859);
        # a NaN image makes the mean NaN (torchmetrics' default would leave it out)
        self.test_cycle_l1_a, self.test_cycle_l1_b = (MeanMetric(nan_strategy=float("nan")) for _ in "ab")
        self.eval_visuals: dict[str, Tensor] = {}

    def on_fit_start(self) -> None:
        require_unused_parameter_detection(self)
        for pool in (self.pool_a, self.pool_b):  # after a resume's pools are restored
            pool.spread(self.global_rank)
        if self.trainer.fast_dev_run:  # Lightning's max_steps=N for its N batches: three optimizer steps a batch here
            self.trainer.fit_loop.epoch_loop.max_steps = 3 * int(self.trainer.fast_dev_run)
        if not self.frechet.off and not getattr(self.trainer.datamodule, "has_test_data", True):
            raise UserError("--model.fid_features validates on testA and testB, which the data lacks; add them or "
                            "set --model.fid_features null")
        self.frechet.check(self.trainer)
        hp, epochs = self.hparams, self.trainer.max_epochs
        total = hp.n_epochs + hp.n_epochs_decay
        if hp.linear_decay and epochs not in (None, -1) and epochs != total:
            effect = "then trains at lr 0" if epochs > total else "stops before the lr has decayed"
            rank_zero_warn(f"--trainer.max_epochs {epochs} but the linear decay spans n_epochs + n_epochs_decay = "
                           f"{total} epochs: the run {effect}; the reference trains their sum, "
                           f"--trainer.max_epochs {total}")

    def on_fit_end(self) -> None:
        self.frechet.release(self.trainer)

    def setup(self, stage: str) -> None:
        # here, not in on_validation_start: a refused validate's new run folder is removed only until its evaluation
        # has begun (callbacks.run_folder.RunBegan, whose on_validation_start comes before the model's)
        self.frechet.refuse_validate_when_off(
            self.trainer, "the CycleGAN's validation is its Frechet distances (val/fid_a2b, val/fid_b2a)",
            ", or run test (the cycle L1 on testA and testB)")
        if self.hparams.channels_last:
            self.to(memory_format=torch.channels_last)

    def forward(self, images: Tensor, direction: Literal["a2b", "b2a"] = "a2b") -> Tensor:
        """Translate [-1, 1] images A -> B (gen_a2b) or B -> A (gen_b2a); sides must be multiples of 4."""
        if direction not in ("a2b", "b2a"):
            raise UserError(f"direction must be 'a2b' or 'b2a' (got {direction!r})")
        return (self.gen_a2b if direction == "a2b" else self.gen_b2a)(images)

    def generator_losses(self, real_a: Tensor, real_b: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        hp = self.hparams
        fake_b, fake_a = self.gen_a2b(real_a), self.gen_b2a(real_b)
        rec_a, rec_b = self.gen_b2a(fake_b), self.gen_a2b(fake_a)
        losses = {"gan_a2b": gan_loss(self.disc_b(fake_b), True, hp.gan_mode),
                  "gan_b2a": gan_loss(self.disc_a(fake_a), True, hp.gan_mode),
                  "cycle_a": hp.lambda_cycle * cycle_loss(rec_a, real_a),
                  "cycle_b": hp.lambda_cycle * cycle_loss(rec_b, real_b)}
        row_a = {"real_a": real_a, "fake_b": fake_b, "rec_a": rec_a}  # each domain's row of the visuals
        row_b = {"real_b": real_b, "fake_a": fake_a, "rec_b": rec_b}
        if hp.lambda_identity > 0:  # the identity images end each row, as the reference's idt_B and idt_A
            weight = hp.lambda_identity * hp.lambda_cycle
            row_a["same_a"], row_b["same_b"] = self.gen_b2a(real_a), self.gen_a2b(real_b)
            losses["identity_a"] = weight * identity_loss(row_a["same_a"], real_a)
            losses["identity_b"] = weight * identity_loss(row_b["same_b"], real_b)
        return losses, row_a | row_b

    def discriminator_loss(self, disc, real: Tensor, fake: Tensor) -> Tensor:
        return 0.5 * (gan_loss(disc(real), True, self.hparams.gan_mode)
                      + gan_loss(disc(fake), False, self.hparams.gan_mode))  # halved to slow D (section 7.1)

    def training_step(self, batch, batch_idx):
        real_a, real_b = (x.contiguous(memory_format=torch.channels_last) if self.hparams.channels_last else x
                          for x in batch)
        opt_g, opt_dx, opt_dy = self.optimizers()
        with self.toggled_optimizer(opt_g):  # discriminators frozen, as the reference's set_requires_grad
            losses, visuals = self.generator_losses(real_a, real_b)
            losses["gen_total"] = sum(losses.values())
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(losses["gen_total"])
            opt_g.step()
        for name, opt, disc, real, fake, pool in (
                ("disc_a", opt_dx, self.disc_a, real_a, visuals["fake_a"], self.pool_a),  # D_X: A images
                ("disc_b", opt_dy, self.disc_b, real_b, visuals["fake_b"], self.pool_b)):  # D_Y: B images
            with self.toggled_optimizer(opt):
                losses[name] = self.discriminator_loss(disc, real, pool.query(fake))
                opt.zero_grad(set_to_none=True)
                self.manual_backward(losses[name])
                opt.step()
        if logging_step(self, pending_steps=0):  # not every batch: self.log costs host time (see there)
            self.log_dict({f"train/{k}": v.detach() for k, v in losses.items()})
        self.batches_trained += 1
        every = self.hparams.log_images_every_n_batches
        if every and (self.batches_trained - 1) % every == 0:  # the first batch, then every N
            self.log_visuals("train/visuals", visuals, self.batches_trained)

    def log_visuals(self, key: str, visuals: dict[str, Tensor], step: int, n: int = 4) -> None:
        """Rows of (real A, fake B, rec A, [F(A),] real B, fake A, rec B[, G(B)]) for the batch's first n images;
        the identity images F(A) and G(B) when the identity loss is on (training only)."""
        rows = torch.stack([v[:n].float() for v in visuals.values()], dim=1)  # (n, 6 or 8, C, H, W)
        names = {"real_a": "real A", "fake_b": "fake B", "rec_a": "rec A", "same_a": "F(A)", "real_b": "real B",
                 "fake_a": "fake A", "rec_b": "rec B", "same_b": "G(B)"}
        log_image_grid(self.trainer, key, rows.flatten(0, 1), step, nrow=len(visuals),
                       caption=" | ".join(names[k] for k in visuals))

    def on_train_start(self) -> None:
        """The lr of the epoch training starts in, from its number. A run that max_steps or max_time stopped mid-epoch
        had its epoch end hook (the next epoch's lr) before its checkpoint, and Lightning resumes that epoch's other
        batches without an epoch start hook."""
        self.match_lr_to_epoch()

    def on_train_epoch_start(self) -> None:
        self.match_lr_to_epoch()

    def match_lr_to_epoch(self) -> None:
        if self.hparams.linear_decay and self.lr_schedulers()[0].last_epoch != self.current_epoch:
            self.set_decay_epoch(self.current_epoch)

    def on_train_epoch_end(self) -> None:
        if self.hparams.linear_decay:  # the next epoch's lr, set after each epoch as the reference (and checkpointed)
            self.set_decay_epoch(self.current_epoch + 1)

    def set_decay_epoch(self, epoch: int) -> None:
        for schedule in self.lr_schedulers():  # manual optimization: Lightning steps no schedulers
            schedule.last_epoch = epoch - 1
            schedule.step()

    def on_validation_start(self) -> None:
        if not self.frechet.off:
            self.frechet.build(self.device)
        self.eval_visuals = {}

    def translate_domain(self, real: Tensor, dataloader_idx: int) -> tuple[str, str, Tensor]:
        """Loader 0 holds testA, loader 1 testB: the batch's domain, the other one and the translation."""
        side, other = ("a", "b") if dataloader_idx == 0 else ("b", "a")
        return side, other, self(real, f"{side}2{other}")

    def validation_step(self, real: Tensor, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Each real image into its domain's statistics (first validation only), its translation into the
        other domain's fakes; the first 4 of each with their reconstructions for the grid (keep_visuals)."""
        if self.frechet.off:
            return
        side, other, fake = self.translate_domain(real, dataloader_idx)
        self.frechet.add(f"fid_{other}2{side}", real, real=True)
        self.frechet.add(f"fid_{side}2{other}", fake, real=False)
        if take := self.visuals_wanted(side):
            self.keep_visuals(side, other, real[:take], fake[:take], self(fake[:take], f"{other}2{side}"))

    def visuals_wanted(self, side: str, n: int = 4) -> int:
        """How many more of this domain's images the evaluation grid takes: its first n, over as many batches as
        that needs (at the reference's batch size 1, the first batch holds one)."""
        return max(0, n - len(self.eval_visuals.get(f"real_{side}", ())))

    def keep_visuals(self, side: str, other: str, real: Tensor, fake: Tensor, rec: Tensor) -> None:
        for key, images in ((f"real_{side}", real), (f"fake_{other}", fake), (f"rec_{side}", rec)):
            kept = self.eval_visuals.get(key)
            self.eval_visuals[key] = images if kept is None else torch.cat([kept, images])

    def on_validation_epoch_end(self) -> None:
        values = self.frechet.compute(self.trainer.sanity_checking)
        if values:
            values["fid"] = (values["fid_a2b"] + values["fid_b2a"]) / 2
            self.log_dict({f"val/{k}": v for k, v in values.items()}, sync_dist=True)  # already equal on all ranks
            self.log_eval_visuals("val/visuals")
        self.eval_visuals = {}

    def log_eval_visuals(self, key: str) -> None:
        """The grid of the first images of testA and testB, from rank 0, which holds the first of each."""
        order = ("real_a", "fake_b", "rec_a", "real_b", "fake_a", "rec_b")
        if self.trainer.is_global_zero and set(self.eval_visuals) == set(order):  # rank 0 saw both domains
            n = min(len(v) for v in self.eval_visuals.values())
            self.log_visuals(key, {k: self.eval_visuals[k][:n] for k in order}, self.batches_trained, n)

    def on_test_start(self) -> None:
        self.eval_visuals = {}

    def test_step(self, real: Tensor, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Each image's cycle reconstruction error, |F(G(x)) - x| averaged over its pixels, into its domain's
        mean (each test image once: a loader per domain, no rank repeats one); the first images' visuals."""
        side, other, fake = self.translate_domain(real, dataloader_idx)
        rec = self(fake, f"{other}2{side}")
        getattr(self, f"test_cycle_l1_{side}").update(cycle_loss(rec, real, per_image=True))
        if take := self.visuals_wanted(side):
            self.keep_visuals(side, other, real[:take], fake[:take], rec[:take])

    def on_test_epoch_end(self) -> None:
        self.log("test/cycle_l1_a", self.test_cycle_l1_a)  # computed over all ranks, then reset by Lightning
        self.log("test/cycle_l1_b", self.test_cycle_l1_b)
        self.log_eval_visuals("test/visuals")
        self.eval_visuals = {}

    def configure_optimizers(self):
        hp = self.hparams
        adam = partial(torch.optim.Adam, lr=hp.lr, betas=tuple(hp.betas))
        optimizers = [adam([*self.gen_a2b.parameters(), *self.gen_b2a.parameters()]),
                      adam(self.disc_a.parameters()), adam(self.disc_b.parameters())]
        if not hp.linear_decay:
            return optimizers
        factor = partial(linear_decay, n_epochs=hp.n_epochs, n_epochs_decay=hp.n_epochs_decay)
        # named, so LearningRateMonitor charts lr-generators, lr-disc_a, lr-disc_b rather than lr-Adam, -1, -2
        return optimizers, [{"scheduler": torch.optim.lr_scheduler.LambdaLR(opt, factor), "name": f"lr-{name}"}
                            for opt, name in zip(optimizers, ("generators", "disc_a", "disc_b"), strict=True)]

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["image_pools"] = {"a": self.pool_a.state_dict(), "b": self.pool_b.state_dict()}
        checkpoint["batches_trained"] = self.batches_trained

    reference_files = "junyanz's checkpoints folder or its <epoch>_net_G_A.pth files, or a generator file of it"

    @staticmethod
    def reference_checkpoint(path: str) -> dict | None:
        """train.py's --init_from of junyanz's checkpoints folder or files: reference_checkpoint."""
        return reference_checkpoint(path)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        restore_left_out(self, checkpoint)  # dl2-export --generators_only: the discriminators keep their new weights
        if "image_pools" in checkpoint:
            self.pool_a.load_state_dict(checkpoint["image_pools"]["a"])
            self.pool_b.load_state_dict(checkpoint["image_pools"]["b"])
            self.batches_trained = checkpoint["batches_trained"]


# ---------------------------------------------------------------------------------------------- translate


def pad_to_multiple(image: Tensor, multiple: int = 4, least: int = 8) -> Tensor:
    """Reflect-pad the bottom and right of a (N, C, H, W) image up to multiples of `multiple`, and to at least
    `least` pixels: below 8 the generator's bottleneck (1/4 of the size) is too small for its 1-pixel reflection
    pads and instance norm."""
    height, width = image.shape[-2:]
    pad_h, pad_w = max(-height % multiple, least - height), max(-width % multiple, least - width)
    if not (pad_h or pad_w):
        return image
    mode = "reflect" if pad_h < height and pad_w < width else "replicate"  # reflect needs pad < size
    return F.pad(image, (0, pad_w, 0, pad_h), mode=mode)


def reference_generator(path: str) -> nn.Module | None:
    """A generator file of junyanz/pytorch-CycleGAN-and-pix2pix (`latest_net_G_A.pth`, or its pretrained
    `horse2zebra.pth`) as our resnet_generator, None for any other file. Its resnet_Nblocks generator has our layers
    in our order under other names (model.1.weight, model.10.conv_block.1.weight, ...), so its tensors load by
    position, each shape checked; instance-norm statistics that older PyTorch versions saved are dropped, as the
    reference drops them."""
    state = junyanz_state(path)
    if state is None:
        return None
    if not all(k.startswith("model.") for k in state) or next(iter(state.values())).dim() != 4:
        return None
    n_blocks = len({k.split(".")[1] for k in state if ".conv_block." in k})
    if n_blocks == 0:
        raise UserError(f"{path} is a junyanz-style file but not a ResNet generator (a discriminator, net_D_*, or a "
                        "U-Net?); give latest_net_G_A.pth or latest_net_G_B.pth")
    ngf = next(iter(state.values())).shape[0]
    generator = resnet_generator(n_blocks, ngf)
    if not load_by_position(generator, list(state.values())):
        raise UserError(f"{path} holds a junyanz-style generator, but not a resnet_{n_blocks}blocks one of ngf {ngf} "
                        f"({len(state)} tensors against {len(generator.state_dict())}); only the ResNet generators "
                        "load here")
    return generator.eval()


def junyanz_state(path: str) -> dict[str, Tensor] | None:
    """A junyanz weights file's tensors without DataParallel's `module.` and the instance-norm statistics older
    PyTorch versions saved (the reference drops them); None for a file that is not a state dict of tensors."""
    from lightning_modules.inference import tensor_file

    state = tensor_file(path)
    if state is None:
        return None
    return {k.removeprefix("module."): v for k, v in state.items()
            if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))}


# junyanz's nets as ours: its G_A translates A -> B; its D_A is applied to fake_B (judges domain B), its D_B to fake_A
JUNYANZ_NETS = {"G_A": "gen_a2b.", "G_B": "gen_b2a.", "D_A": "disc_b.", "D_B": "disc_a."}
JUNYANZ_FILE = re.compile(r"(latest|\d+|iter_\d+)_net_(G_A|G_B|D_A|D_B)\.pth")  # its --save_by_iter: iter_N


def reference_discriminator(path: str) -> nn.Module:
    """junyanz's NLayerDiscriminator file (`latest_net_D_A.pth`; --netD basic, n_layers 3, instance norm, so every
    conv has a bias) as our patch_discriminator: its `model` Sequential's convs at 0, 2, 5, 8 and 11 are ours in
    our order (the norms hold no tensors), loaded by position, each shape checked."""
    state = junyanz_state(path)
    if not state or not all(k.startswith("model.") for k in state) or next(iter(state.values())).dim() != 4:
        raise UserError(f"{path} is not a junyanz discriminator file (its NLayerDiscriminator's model.0.weight, "
                        "...); give the net_D_A.pth and net_D_B.pth of a --model cycle_gan run")
    ndf = next(iter(state.values())).shape[0]
    discriminator = patch_discriminator(ndf)
    if not load_by_position(discriminator, list(state.values())):
        raise UserError(f"{path} holds a discriminator that is not junyanz's basic PatchGAN (--netD basic, n_layers "
                        f"3, --norm instance, 3 channels) of ndf {ndf}; only that one loads here")
    return discriminator


def reference_checkpoint(path: str, option: str = "--init_from", generators_only: bool = False) -> dict | None:
    """train.py's --init_from (translate's --checkpoint: `option`, in messages) of junyanz/pytorch-CycleGAN-and-
    pix2pix's files (its --continue_train): its checkpoints folder (`checkpoints/<name>/`: the `latest_` files, else
    the highest epoch's) or one of its `<epoch>_net_G_A.pth`, `_G_B`, `_D_A`, `_D_B` files (the epoch's others beside
    it) as a checkpoint's four nets in our names, or its model zoo's one generator (`latest_net_G.pth`) as gen_a2b,
    the other nets left to their new weights; with the hyper-parameters that shape the nets. None for anything
    else. generators_only (translate, as junyanz's test.py): its D files are not read, whatever their kind."""
    from lightning_modules.export import EXPORT_KEY, REFERENCE_SIZES

    where = Path(path)
    if where.is_dir():
        found = {m.groups() for f in where.iterdir() if (m := JUNYANZ_FILE.fullmatch(f.name)) and f.is_file()}
        epochs = {epoch for epoch, _ in found}
        if not epochs:
            single = where / "latest_net_G.pth"  # the model zoo's download folder
            return reference_checkpoint(str(single), option, generators_only) if single.is_file() else None
        def order(label: str) -> tuple:  # the iterations' saves, then the epochs', then latest
            return (label == "latest", label.isdigit(), int(label.rpartition("_")[2]) if label != "latest" else 0)
        epoch, folder = max(epochs, key=order), where
        listed = ", ".join(sorted(epochs, key=order))
        chosen = f"epoch {epoch} of {listed} (for another give its <epoch>_net_G_A.pth)" if len(epochs) > 1 \
            else f"epoch {epoch}"
    elif where.is_file() and (match := JUNYANZ_FILE.fullmatch(where.name)):
        epoch, folder, chosen = match.group(1), where.parent, f"epoch {match.group(1)}"
    elif where.is_file():
        generator = reference_generator(path)  # a plain generator file: the model zoo's latest_net_G.pth
        if generator is None:
            return None
        state = {f"gen_a2b.{k}": v for k, v in generator.state_dict().items()}
        return {"state_dict": state, "hyper_parameters": generator_sizes(generator),
                EXPORT_KEY: {"from": f"junyanz's generator {where.name} as G_A (A->B, gen_a2b); gen_b2a, disc_a and "
                                     "disc_b start from new weights", "left_out": ["disc_a.", "disc_b.", "gen_b2a."],
                             "sizes": REFERENCE_SIZES}}
    else:
        return None
    files = {net: folder / f"{epoch}_net_{net}.pth" for net in JUNYANZ_NETS if not (generators_only and net[0] == "D")}
    for net in ("G_A", "G_B"):
        if not files[net].is_file():
            raise UserError(f"{option} {path}: junyanz's {epoch}_net_{net}.pth is not in {folder} (both generators "
                            "are needed; a model zoo generator alone loads as latest_net_G.pth)")
    nets, read = {}, []
    for net, file in files.items():
        if not file.is_file():
            continue
        nets[net] = reference_discriminator(str(file)) if net.startswith("D") else reference_generator(str(file))
        if nets[net] is None:
            raise UserError(f"{file} is not a junyanz generator file (its ResnetGenerator's model.1.weight, ...)")
        read.append(f"{file.name} as {JUNYANZ_NETS[net][:-1]}")
    a, b = nets["G_A"], nets["G_B"]
    shape = [tuple(v.shape) for v in a.state_dict().values()]
    if shape != [tuple(v.shape) for v in b.state_dict().values()]:
        raise UserError(f"{files['G_A']} and {files['G_B']} are generators of other sizes; give the files of one run")
    hp = generator_sizes(a)
    discriminators = [nets[net] for net in ("D_A", "D_B") if net in nets]
    if discriminators:
        widths = {d[0][0].out_channels for d in discriminators}
        if len(widths) > 1:
            raise UserError(f"{files['D_A']} and {files['D_B']} are discriminators of other sizes; give the files of "
                            "one run")
        hp["ndf"] = widths.pop()
    state = {f"{JUNYANZ_NETS[net]}{k}": v for net, model in nets.items() for k, v in model.state_dict().items()}
    missing = [net for net in files if net not in nets]
    said = "; ".join([f"junyanz's checkpoints in {folder}, {chosen}: {', '.join(read)}",
                      *[f"no {files[net].name}: {JUNYANZ_NETS[net][:-1]} starts from new weights" for net in missing]])
    left_out = sorted(JUNYANZ_NETS[net] for net in JUNYANZ_NETS if net not in nets)
    return {"state_dict": state, "hyper_parameters": hp,
            EXPORT_KEY: {"from": said, "left_out": left_out, "sizes": REFERENCE_SIZES}}


def reference_model(model_class: type, path: str) -> nn.Module | None:
    """translate's junyanz checkpoints folder (`checkpoints/<name>/`, as its test.py --model cycle_gan reads it): a
    CycleGAN in eval mode with both generators, so that --direction and --reconstruct work. None for anything else,
    and for the model zoo's download folder (one generator, latest_net_G.pth: translate uses it as a file)."""
    if not Path(path).is_dir():
        return None
    from lightning_modules.export import EXPORT_KEY
    checkpoint = reference_checkpoint(path, "--checkpoint", generators_only=True)  # test.py reads G_A and G_B alone
    if checkpoint is None or "gen_b2a." in checkpoint[EXPORT_KEY]["left_out"]:
        return None
    print(checkpoint[EXPORT_KEY]["from"], file=sys.stderr)
    model = model_class(**checkpoint["hyper_parameters"])
    model.load_state_dict(checkpoint["state_dict"], strict=False)  # a folder without the D files: new discriminators
    return model.eval()


def reference_partner(path: str) -> nn.Module | None:
    """The other generator of a junyanz `<epoch>_net_G_A.pth` (or G_B) file, from the same folder and epoch: the way
    back for --reconstruct. None when there is none."""
    match = JUNYANZ_FILE.fullmatch(Path(path).name)
    if match is None or match.group(2) not in ("G_A", "G_B"):
        return None
    other = Path(path).with_name(f"{match.group(1)}_net_{'G_B' if match.group(2) == 'G_A' else 'G_A'}.pth")
    return reference_generator(str(other)) if other.is_file() else None


def generator_sizes(generator: nn.Module) -> dict:
    """The hyper-parameters of a resnet_generator read back from it (junyanz's upsample by transposed convs)."""
    return {"n_blocks": len([m for m in generator if isinstance(m, ResBlock)]), "ngf": generator[0][1].out_channels,
            "upsample": "transposed"}


def translate_output(file: Path, source: Path, out: Path) -> bool:
    """Whether `file`, below the input folder `source`, is translate's own output rather than an input: under `out`
    when that lies inside `source`, in an earlier run's output folder (one with index.html and inputs/) below
    `source`, or in the inputs/ or reconstructions/ of `source` itself when that is one (its translations, at the
    top, are what a user chaining translations gives)."""
    def is_output(folder: Path) -> bool:
        return (folder / "index.html").is_file() and (folder / "inputs").is_dir()

    if out.resolve().is_relative_to(source.resolve()) and file.resolve().is_relative_to(out.resolve()):
        return True
    relative = file.relative_to(source)
    if len(relative.parts) > 1 and relative.parts[0] in ("inputs", "reconstructions") and is_output(source):
        return True
    return any(is_output(source / folder) for folder in relative.parents if folder != Path("."))


def translate(checkpoint: str, input_dir: str, output_dir: str, direction: Literal["a2b", "b2a"] = "a2b",
              reconstruct: bool = False, max_images: int | None = None, max_size: int | None = None,
              device: str = "auto") -> Path:
    """Translate every image of a folder with a trained CycleGAN, at full resolution or at most max_size.

    Args:
        checkpoint: a CycleGAN checkpoint (runs/cyclegan/<run>/checkpoints/last.ckpt; a run folder: its last.ckpt;
            `last`: the newest run's in runs/cyclegan), junyanz/pytorch-CycleGAN-and-pix2pix's checkpoints folder
            (`checkpoints/<name>/`: both generators, as its test.py --model cycle_gan), or a generator file of it
            (`latest_net_G_A.pth`, its pretrained `horse2zebra.pth`), which translates in its own direction
            whatever `direction` says (its G_B/G_A beside it is the way back for reconstruct).
        input_dir: folder of .png/.jpg/.jpeg/.bmp/.webp/.tif/.ppm images of any size (grayscale ones become RGB),
            at all depths (not translate's own outputs: output_dir, an earlier run's output folder below
            input_dir, or the inputs/ and reconstructions/ of input_dir when it is one), or one such image.
        output_dir: where <name>.png translations and index.html (inputs beside outputs) are written; not
            input_dir itself (the translations would replace the inputs).
        direction: a2b uses gen_a2b (horse2zebra: horse to zebra), b2a uses gen_b2a.
        reconstruct: also translate each output back with the other generator (F(G(x)), the reference test.py's
            rec_A/rec_B) into reconstructions/<name>.png, a third column of the page. Needs both generators: a
            CycleGAN checkpoint, junyanz's checkpoints folder, or a G_A/G_B file with its epoch's other one beside it.
        max_images: only the first N images in sorted order (the reference test.py's --num_test; null: all).
        max_size: scale an image whose longer side is above this down to it, the aspect kept (a phone photo at
            full resolution needs GBs; the reference test.py resizes to --load_size); null: full resolution.
        device: auto (a GPU when there is one, else the CPU), cpu, cuda, cuda:1, mps.
    """
    from datamodules.decode import IMAGE_SUFFIXES, UnreadableImageError, image_files, output_names, read_rgb
    from datamodules.download import MissingDataError
    from datamodules.style import resize
    from lightning_modules.inference import check_device, load_checkpoint, or_reference

    device = check_device(device)  # before either reader: a reference file is moved there too
    if max_images is not None:
        require_at_least_one(max_images=max_images)
    if max_size is not None:
        require_at_least_one(max_size=max_size)
    source, out = Path(input_dir), check_output_folder(output_dir, "--output_dir")
    one_image = source.is_file() and source.suffix.lower() in IMAGE_SUFFIXES
    source = source.parent if one_image else source
    # samefile, not only the paths: Photos is photos where the file system ignores case (macOS, Windows)
    if out.resolve() == source.resolve() or (out.is_dir() and source.is_dir() and out.samefile(source)):
        raise UserError(f"--output_dir {output_dir} is the input folder: the translations would replace the inputs "
                        f"of the same name; give another folder")
    for copies in ("inputs", "reconstructions")[:1 + reconstruct]:  # where the inputs are copied, or rebuilt
        if source.resolve().is_relative_to((out / copies).resolve()):
            raise UserError(f"--output_dir {output_dir}: translate writes the {copies} to {out / copies}, which holds "
                            f"the input images ({input_dir}) and would replace them; give another --output_dir")
    fix = "pass a folder of images, or one image, as --input_dir"
    if one_image:
        files = [Path(input_dir)]
    elif source.is_dir():  # at all depths, as the reference's make_dataset and our training folders
        files = [f for f in image_files([input_dir], fix, recursive=True) if not translate_output(f, source, out)]
    elif not source.exists():
        raise MissingDataError(f"--input_dir {input_dir} not found; {fix}")
    else:
        files = []
    if not files:
        raise MissingDataError(f"no {'/'.join(sorted(IMAGE_SUFFIXES))} images under {input_dir}; {fix}")
    files = files[:max_images]
    # the package's class, not this file's copy under `python -m` (__main__.CycleGAN), which Lightning would
    # refuse for a checkpoint that names lightning_modules.CycleGAN
    from lightning_modules import CycleGAN as Model

    if direction not in ("a2b", "b2a"):
        raise UserError(f"direction must be 'a2b' or 'b2a' (got {direction!r})")
    try:
        model = load_checkpoint(Model, checkpoint, device)
    except UserError as error:  # not a Lightning checkpoint: perhaps the reference's files
        model = reference_model(Model, checkpoint)
        if model is None:
            file = Path(checkpoint) / "latest_net_G.pth" if Path(checkpoint).is_dir() else Path(checkpoint)  # the zoo's
            generate = reference_generator(str(file)) if file.is_file() else None  # download folder, one generator
            back = reference_partner(str(file)) if reconstruct else None
            if generate is None:
                raise or_reference(error, "junyanz's checkpoints folder or a generator file of it (latest_net_G_A.pth)"
                                   ) from None
            if reconstruct and back is None:
                raise UserError(f"--reconstruct needs both generators, and {checkpoint} holds one (no G_A/G_B file of "
                                "its epoch beside it); give a CycleGAN .ckpt or leave --reconstruct out") from None
            generate, back = generate.to(device), back.to(device) if back is not None else None
            shown = "the reference generator's own direction"
        else:
            model, shown = model.to(device), f"{direction}, junyanz's {'G_A' if direction == 'a2b' else 'G_B'}"
    else:
        shown = direction
    if model is not None:
        generate, back = (model.gen_a2b, model.gen_b2a) if direction == "a2b" else (model.gen_b2a, model.gen_a2b)
    rows, not_translated, written = [], [], set()  # not_translated: (file, why: unreadable, too large)
    for file, name in zip(files, output_names(files), strict=True):  # a.jpg and a.png: a_jpg.png and a_png.png
        try:
            image = read_rgb(file).to(device)  # (3, H, W) uint8
        except UnreadableImageError as error:  # one bad file must not cost the others or the page
            not_translated.append((file, str(error)))
            continue
        if max_size and max(image.shape[1:]) > max_size:  # the longer side to max_size, the aspect kept
            height, width = (max(1, round(side * max_size / max(image.shape[1:]))) for side in image.shape[1:])
            image = (resize(image.float() / 255, height, width) * 255).round().to(torch.uint8)
        x = None
        try:
            x = image[None].float() / 127.5 - 1  # [-1, 1], as in training
            with torch.inference_mode():
                y = generate(pad_to_multiple(x))[..., :x.shape[-2], :x.shape[-1]]  # crop the padding
                # from the output as saved, [-1, 1] floats, as in training's cycle (not from the 8-bit file)
                rec = back(pad_to_multiple(y))[..., :x.shape[-2], :x.shape[-1]] if reconstruct else None
        except (torch.cuda.OutOfMemoryError, RuntimeError) as error:  # a phone photo at full size on a small GPU, or
            # in a CPU's memory (torch's allocator: "DefaultCPUAllocator: can't allocate memory"): the others may fit
            if not isinstance(error, torch.cuda.OutOfMemoryError) and "can't allocate memory" not in str(error):
                raise
            del x
            if device.type == "cuda":
                torch.cuda.empty_cache()
            not_translated.append((file, f"{file} at {image.shape[2]}x{image.shape[1]} does not fit in {device}'s "
                                         "memory; give --max_size (e.g. 1024: the longer side scaled down to it)"
                                         + (" or --device cpu" if device.type != "cpu" else "")))
            continue
        target = save_png((y[0].float().cpu() + 1) / 2, out / f"{name}.png")
        written.add(target)
        save_png(x[0].cpu() / 2 + 0.5, out / "inputs" / f"{name}.png")
        link = urllib.parse.quote(target.name)  # '#', '?' and '%' in a file name are not a URL's
        cells = [html.escape(str(file.relative_to(source))), f"<img src='inputs/{link}'>", f"<img src='{link}'>"]
        if rec is not None:
            save_png((rec[0].float().cpu() + 1) / 2, out / "reconstructions" / f"{name}.png")
            cells.append(f"<img src='reconstructions/{link}'>")
        rows.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    skipped = "".join(f"<li>{html.escape(str(file.relative_to(source)))}: {html.escape(reason)}</li>"
                      for file, reason in not_translated)
    out.mkdir(parents=True, exist_ok=True)
    (out / "index.html").write_text(
        f"<html><body><h3>{html.escape(str(checkpoint))}: {shown}</h3><table>"
        f"<tr><th>file</th><th>input</th><th>output</th>{'<th>reconstruction</th>' if reconstruct else ''}</tr>"
        f"{''.join(rows)}</table>"
        + (f"<p>Not translated:</p><ul>{skipped}</ul>" if not_translated else "") + "</body></html>\n")
    print(f"{len(rows)} of {len(files)} images translated ({shown}) into {out}; open {out / 'index.html'}")
    note_earlier_images(out, written)
    if not_translated:
        report_partial_failure(f"could not translate {len(not_translated)}: " + "; ".join(r for _, r in not_translated))
    return out / "index.html"


if __name__ == "__main__":  # the package's functions (lightning_modules.commands), not this copy's
    from lightning_modules.commands import cyclegan

    cyclegan()
