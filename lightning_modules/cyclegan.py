"""CycleGAN: unpaired image-to-image translation (Zhu, Park, Isola & Efros 2017; DL2 2018 lesson 12).

The translate command is in cyclegan_translate.py (`python -m lightning_modules.cyclegan translate --help`), the
readers of junyanz's weight files in cyclegan_reference.py.
"""

from functools import partial
from typing import Literal

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from torchmetrics import MeanMetric

from callbacks.errors import UserError
from callbacks.images import log_image_grid
from callbacks.progress import logging_step
from callbacks.strategy import require_unused_parameter_detection
from lightning_modules.export import restore_left_out
from lightning_modules.fid import FrechetValidation
from lightning_modules.nets.cyclegan import (
    JUNYANZ_DIRECTIONS,
    init_cyclegan_,
    patch_discriminator,
    resnet_generator,
    translated,
)


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
        if hp.linear_decay and epochs is not None and epochs > total:  # epochs that change nothing (-1: endless)
            raise UserError(f"--trainer.max_epochs {epochs} but the linear decay ends at n_epochs + n_epochs_decay = "
                            f"{total} epochs: epochs {total + 1} to {epochs} would train at lr 0; give "
                            f"--trainer.max_epochs {total} (junyanz's n_epochs and n_epochs_decay set the run's "
                            f"length), or raise --model.n_epochs_decay")
        if hp.linear_decay and epochs not in (None, -1) and epochs < total:
            rank_zero_warn(f"--trainer.max_epochs {epochs} but the linear decay spans n_epochs + n_epochs_decay = "
                           f"{total} epochs: the run stops before the lr has decayed; the reference trains their sum, "
                           f"--trainer.max_epochs {total}")

    def on_fit_end(self) -> None:
        self.frechet.release(self.trainer)

    def setup(self, stage: str) -> None:
        # here, not in on_validation_start: a refused validate's new run folder is removed only until its evaluation
        # has begun (callbacks.run_lifecycle.RunBegan, whose on_validation_start comes before the model's)
        self.frechet.refuse_validate_when_off(
            self.trainer, "the CycleGAN's validation is its Frechet distances (val/fid_a2b, val/fid_b2a)",
            ", or run test (the cycle L1 on testA and testB)")
        if self.hparams.channels_last:
            self.to(memory_format=torch.channels_last)

    def forward(self, images: Tensor, direction: Literal["a2b", "b2a", "AtoB", "BtoA"] = "a2b") -> Tensor:
        """Translate [-1, 1] images A -> B (gen_a2b) or B -> A (gen_b2a), junyanz's AtoB and BtoA too; any size: sides
        that are not multiples of 4 are padded for the generator's two stride-2 convs and the padding cut off again
        (a 66px image came out 68px), as dl2-cyclegan-translate does."""
        direction = JUNYANZ_DIRECTIONS.get(direction, direction)
        if direction not in ("a2b", "b2a"):
            raise UserError(f"direction must be 'a2b' or 'b2a' (AtoB, BtoA) (got {direction!r})")
        return translated(self.gen_a2b if direction == "a2b" else self.gen_b2a, images)

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
                       caption=" | ".join(names[k] for k in visuals), labels=[names[k] for k in visuals])

    def on_train_start(self) -> None:
        """The lr of the epoch training starts in, from its number and this run's n_epochs and n_epochs_decay. A run
        that max_steps or max_time stopped mid-epoch had its epoch end hook (the next epoch's lr) before its
        checkpoint, and Lightning resumes that epoch's other batches without an epoch start hook; and a resume with
        another decay span (which it warns of) kept the checkpoint's lr, the old schedule's, for its first epoch."""
        if self.hparams.linear_decay and self.trainer.ckpt_path:  # a new run's schedulers have just set it (a
            self.set_decay_epoch(self.current_epoch)  # step then made torch warn of a skipped lr)
        else:
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
        """train.py's --init_from of junyanz's checkpoints folder or files: cyclegan_reference.reference_checkpoint."""
        from lightning_modules.cyclegan_reference import reference_checkpoint  # it builds our nets: imports this file

        return reference_checkpoint(path)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        restore_left_out(self, checkpoint)  # dl2-export --generators_only: the discriminators keep their new weights
        if "image_pools" in checkpoint:
            self.pool_a.load_state_dict(checkpoint["image_pools"]["a"])
            self.pool_b.load_state_dict(checkpoint["image_pools"]["b"])
            self.batches_trained = checkpoint["batches_trained"]


if __name__ == "__main__":  # the package's functions (lightning_modules.commands), not this copy's
    from lightning_modules.commands import cyclegan

    cyclegan()
