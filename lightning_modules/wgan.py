"""Wasserstein GAN (Arjovsky et al. 2017) as in the seed (DL2 2018 lesson 12, wgan), and WGAN-GP.

Steps and counters. One training step is one batch is one critic iteration. After `d_iters` of them
(or when the epoch's batches or `max_steps` run out mid-group) the same step also does one generator
iteration on fresh noise. The generator's optimizer step goes through the strategy (precision plugin,
GradScaler) but not through Lightning's step counter, so `trainer.global_step`, `max_steps`,
`ModelCheckpoint(every_n_train_steps)` and `log_every_n_steps` all count batches, not the 6 optimizer
steps per generator iteration that manual optimization would otherwise count (pytorch-lightning #17958).
`gen_iterations` (the paper's unit) is logged; it and `critic_iterations` are kept in checkpoints.

Usage: python -m lightning_modules.wgan generate runs/wgan/<run>/checkpoints/last.ckpt --out_dir samples
       python -m lightning_modules.wgan fid last.ckpt data/cifar10/test darknet.ckpt --num_samples 10000
(the commands in wgan_generate.py and wgan_fid.py; the WassersteinGAN reference's files read in wgan_reference.py)
"""

import warnings
from functools import partial
from pathlib import Path
from typing import Literal

import lightning as L
import torch
from torch import Tensor

from callbacks.errors import UserError
from callbacks.images import log_image_grid
from callbacks.progress import logging_step
from callbacks.strategy import require_unused_parameter_detection
from lightning_modules.export import restore_left_out
from lightning_modules.fid import FrechetValidation
from lightning_modules.nets import dcgan

# Lightning 2.6 warns on every step checkpoint under manual optimization that it holds the post-step weights;
# that is what resume needs here (the counters are post-step too).
warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization and every_n_train_steps")


def do_nothing() -> None:
    return None


def check_schedule(lr: float, clip_value: float, gradient_penalty: float, d_iters: int, d_iters_long: int,
                   long_until: int, long_every: int, sample_every: int = 500) -> None:
    """Values that would train nothing, or crash mid-run, named before the run starts."""
    if lr <= 0:
        raise UserError(f"lr must be above 0 (got {lr}); the seed's is 1e-4, the paper's 5e-5")
    if gradient_penalty < 0:
        raise UserError(f"gradient_penalty must be 0 (weight clipping) or above (got {gradient_penalty}); WGAN-GP's "
                        "is 10")
    if gradient_penalty == 0 and clip_value <= 0:
        raise UserError(f"clip_value must be above 0 (got {clip_value}): the critic's weights are clamped to "
                        "[-clip_value, clip_value]; the paper's is 0.01")
    for name, value in (("d_iters", d_iters), ("d_iters_long", d_iters_long), ("long_every", long_every)):
        if value < 1:
            raise UserError(f"{name} must be at least 1 (got {value}); the paper's schedule: d_iters 5, "
                            "d_iters_long 100, long_until 25, long_every 500")
    if long_until < 0:
        raise UserError(f"long_until must be 0 or more (got {long_until}); the paper's is 25")
    if sample_every < 0:
        raise UserError(f"sample_every must be 0 (samples at the end only) or more (got {sample_every}); the seed "
                        "saves them every 500 generator iterations")


class WGAN(L.LightningModule):
    """WGAN with weight clipping (Algorithm 1) or with a gradient penalty (Gulrajani et al. 2017).

    Losses, in the seed's signs (the critic scores real images low): critic `D(x) - D(G(z))` (Loss_D,
    minus the Wasserstein estimate; with the gradient penalty, plus lambda times it, logged as
    `train/gradient_penalty`), generator `D(G(z))` (Loss_G). Nets: `self.critic`, `self.generator`.

    Args:
        isize: image size, a power of 2 from 16 (the seed: 64 on LSUN bedrooms).
        nz: noise dimensions.
        nc: image channels.
        ngf: generator width at its last block; earlier blocks double it.
        ndf: critic width at its first block; later blocks double it.
        n_extra_layers: stride-1 blocks at full width in each net (the seed: 1, the reference code: 0).
        lr: learning rate of both optimizers (the seed: 1e-4 with RMSprop; the paper: 5e-5).
        clip_value: critic weights are clamped to [-c, c] right after every critic update (paper: 0.01).
        d_iters: critic iterations per generator iteration (paper: n_critic = 5).
        d_iters_long: critic iterations per generator iteration in warm-up and every `long_every` (100).
        long_until: generator iterations run with `d_iters_long` at the start (25).
        long_every: every generator iteration whose count is a multiple of this uses `d_iters_long` (500).
        gradient_penalty: lambda of WGAN-GP (paper: 10); > 0 replaces clipping by the penalty and, unless
            `optimizer` says otherwise, RMSprop by Adam(lr, betas). Use d_iters_long 5 for the paper's constant
            n_critic.
        betas: Adam betas (WGAN-GP's paper: 0, 0.9; the WassersteinGAN reference's --adam: 0.5, 0.999).
        optimizer: "rmsprop" or "adam" for both nets; null: RMSprop with clipping (the paper: momentum-based
            optimizers made the critic unstable), Adam with the gradient penalty. "adam" with clipping is the
            reference's --adam.
        lr_generator: the generator's learning rate (the reference's --lrG; --lrD is lr); null: lr.
        critic_batchnorm: batchnorm in the critic; null means yes with clipping (the seed) and no with the
            gradient penalty, which is defined per sample (Gulrajani et al. section 4).
        bn_last: the seed's block order conv, activation, batchnorm; false for DCGAN's conv, batchnorm, act.
        generator_batchnorm: false for the generator without batchnorm of the paper's robustness experiments (the
            reference's --noBN), which WGAN still trains.
        mlp_generator: the paper's MLP generator (the reference's --mlp_G: three ReLU layers of ngf units, linear
            output; the paper used ngf 512) in place of the DCGAN one.
        mlp_critic: the reference's MLP critic (--mlp_D: three ReLU layers of ndf units).
        sample_every: save an 8x8 grid from fixed noise every this many generator iterations (the seed's gallery);
            0: at the end of training only.
        fid_features: a DarknetClassifier .ckpt or torch-fidelity's pt_inception-2015-12-05-6726825d.pth: each
            validation logs `val/fid` between the data's fixed real sample (--data.val_size images) and as
            many images from fixed noise, plus the gallery; null: no validation (lightning_modules/fid.py).
    """

    # the training signal callbacks.ProgressBar shows, read once per logging interval (not prog_bar=True,
    # which Lightning converts to a Python number after every batch)
    progress_bar_metrics = ("train/Loss_D", "train/Loss_G", "train/gen_iterations")
    # each backward reaches only one optimizer's nets: train.py turns --trainer.strategy ddp into this
    ddp_strategy = "ddp_find_unused_parameters_true"

    def __init__(self, isize: int = 64, nz: int = 100, nc: int = 3, ngf: int = 64, ndf: int = 64,
                 n_extra_layers: int = 1, lr: float = 1e-4, clip_value: float = 0.01, d_iters: int = 5,
                 d_iters_long: int = 100, long_until: int = 25, long_every: int = 500,
                 gradient_penalty: float = 0.0, betas: tuple[float, float] = (0.0, 0.9),
                 optimizer: Literal["rmsprop", "adam"] | None = None, lr_generator: float | None = None,
                 critic_batchnorm: bool | None = None, bn_last: bool = True, generator_batchnorm: bool = True,
                 mlp_generator: bool = False, mlp_critic: bool = False, sample_every: int = 500,
                 fid_features: str | None = None):
        super().__init__()
        if lr_generator is not None and lr_generator <= 0:
            raise UserError(f"lr_generator must be above 0, or null for lr (got {lr_generator})")
        check_schedule(lr=lr, clip_value=clip_value, gradient_penalty=gradient_penalty, d_iters=d_iters,
                       d_iters_long=d_iters_long, long_until=long_until, long_every=long_every,
                       sample_every=sample_every)
        for name, value in (("nz", nz), ("ngf", ngf), ("ndf", ndf)):  # 0 crashed in the first step's convolution
            if value < 1:
                raise UserError(f"{name} must be at least 1 (got {value}); the seed's: nz 100, ngf 64, ndf 64")
        self.save_hyperparameters()
        self.automatic_optimization = False  # alternating critic and generator updates
        bn = gradient_penalty == 0 if critic_batchnorm is None else critic_batchnorm
        self.critic = (dcgan.mlp_critic(isize, nc, ndf) if mlp_critic
                       else dcgan.critic(isize, nc, ndf, n_extra_layers, bn=bn, bn_last=bn_last))
        self.generator = (dcgan.mlp_generator(isize, nz, nc, ngf) if mlp_generator
                          else dcgan.generator(isize, nz, nc, ngf, n_extra_layers, bn_last, generator_batchnorm))
        self.critic.apply(dcgan.init_dcgan_)
        self.generator.apply(dcgan.init_dcgan_)
        self.register_buffer("fixed_noise", torch.randn(64, nz, 1, 1))  # saved: the same gallery after resume
        # plain ints, kept on the host so the schedule never waits for the device; saved in checkpoints
        self.gen_iterations = 0
        self.critic_iterations = 0
        self.group_iterations = 0  # critic iterations since the last generator iteration
        self.last_loss_g: Tensor | float | None = None
        self.sampled_at: int | None = None  # gen_iterations of the last grid logged, so the final one is not twice
        self.frechet = FrechetValidation(fid_features, ["fid"])  # not a submodule: out of checkpoints

    def forward(self, noise: Tensor) -> Tensor:
        return self.generator(noise)

    def noise(self, n: int) -> Tensor:
        return torch.randn(n, self.hparams.nz, 1, 1, device=self.device)

    def d_iters(self) -> int:
        """The seed's schedule: 100 while gen_iterations < 25 or a multiple of 500, else 5."""
        hp, g = self.hparams, self.gen_iterations
        return hp.d_iters_long if g < hp.long_until or g % hp.long_every == 0 else hp.d_iters

    def training_step(self, real: Tensor, batch_idx: int) -> None:
        if self.critic_iterations == 0:  # the reference's real_samples.png: what the samples are to look like
            log_image_grid(self.trainer, "real_samples", real[:64], step=0, caption="real images (the data)")
        critic_losses = self.critic_step(real)  # one real batch = one critic iteration, as in the seed's loop
        self.critic_iterations += 1
        self.group_iterations += 1
        if self.group_iterations >= self.d_iters() or self.out_of_batches(batch_idx):
            self.generator_step(len(real))
            self.gen_iterations += 1
            self.group_iterations = 0
            if self.hparams.sample_every and self.gen_iterations % self.hparams.sample_every == 0:
                self.log_samples()
        if logging_step(self, pending_steps=0):  # not every step: self.log costs host time (see there)
            self.log_dict(critic_losses)
            self.log("train/gen_iterations", float(self.gen_iterations))
            if self.last_loss_g is not None:
                self.log("train/Loss_G", self.last_loss_g)  # the latest, so every logged step has one

    def out_of_batches(self, batch_idx: int) -> bool:
        """The seed's inner loop stops with the epoch's data and the generator still steps; so does max_steps.

        `==`, not `>=`: a run resumed from the checkpoint of a max_steps stop at an epoch's last batch first trains one
        batch past that epoch's end (batch_idx == num_training_batches, Lightning 2.6 outside train.py, whose
        MaxStepsResume starts the next epoch instead), which must not end a group.
        """
        trainer = self.trainer
        return (batch_idx + 1 == trainer.num_training_batches
                or 0 < trainer.max_steps <= trainer.global_step)

    def critic_step(self, real: Tensor) -> dict[str, Tensor]:
        opt_d = self.optimizers()[0]
        self.toggle_optimizer(opt_d)
        with torch.no_grad():
            fake = self.generator(self.noise(len(real)))
        # means in fp32: under bf16 Loss_D, a small difference of two large means, kept 3 significant digits
        d_real, d_fake = self.critic(real).float().mean(), self.critic(fake).float().mean()
        loss_d = d_real - d_fake
        losses = {"train/D_real": d_real.detach(), "train/D_fake": d_fake.detach()}
        if self.hparams.gradient_penalty > 0:  # logged on its own: D_real - D_fake is Loss_D less it
            penalty = self.hparams.gradient_penalty * self.penalty(real, fake)
            loss_d = loss_d + penalty
            losses["train/gradient_penalty"] = penalty.detach()
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(loss_d)
        opt_d.step()
        if self.hparams.gradient_penalty == 0:
            self.clip_critic_weights()
        self.untoggle_optimizer(opt_d)
        return {"train/Loss_D": loss_d.detach(), **losses}

    def clip_critic_weights(self) -> None:
        """Clamp right after the critic's update (Algorithm 1, line 8): the generator then trains against a
        clamped critic. The seed and the reference code clamp before the update instead. Under 16-mixed the
        parameters are the fp32 master weights; a step the GradScaler skipped leaves them clamped anyway."""
        params = list(self.critic.parameters())
        with torch.no_grad():  # two kernel launches for all parameters, not two per parameter
            torch._foreach_clamp_min_(params, -self.hparams.clip_value)
            torch._foreach_clamp_max_(params, self.hparams.clip_value)

    def penalty(self, real: Tensor, fake: Tensor) -> Tensor:
        """WGAN-GP (Gulrajani et al. 2017, eq. 3): E[(||grad D(x_hat)||_2 - 1)^2] on random interpolates.

        Computed in fp32 with autocast off: an input gradient in float16 underflows without the scaler.
        """
        alpha = torch.rand(len(real), 1, 1, 1, device=real.device)
        x_hat = (alpha * real.float() + (1 - alpha) * fake.float()).requires_grad_(True)
        with torch.autocast(self.device.type, enabled=False):
            (grad,) = torch.autograd.grad(self.critic(x_hat).sum(), x_hat, create_graph=True)
        return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()

    def generator_step(self, n: int) -> None:
        opt_g = self.optimizers()[1]
        self.toggle_optimizer(opt_g)
        loss_g = self.critic(self.generator(self.noise(n))).float().mean()
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(loss_g)
        self.trainer.strategy.optimizer_step(opt_g.optimizer, do_nothing)  # not counted as a step: see top
        self.untoggle_optimizer(opt_g)
        self.last_loss_g = loss_g.detach()

    def configure_optimizers(self):
        hp = self.hparams
        # named groups: LearningRateMonitor charts lr-RMSprop/critic and lr-RMSprop-1/generator, not an unexplained -1
        critic, generator = ([{"params": net.parameters(), "name": name}]
                             for net, name in ((self.critic, "critic"), (self.generator, "generator")))
        adam = hp.optimizer == "adam" or (hp.optimizer is None and hp.gradient_penalty > 0)
        build = partial(torch.optim.Adam, betas=hp.betas) if adam else torch.optim.RMSprop
        return [build(critic, hp.lr), build(generator, hp.lr_generator or hp.lr)]

    def on_fit_start(self) -> None:
        require_unused_parameter_detection(self)
        self.frechet.check(self.trainer)

    def setup(self, stage: str) -> None:
        # here, not in on_validation_start: a refused validate's new run folder is removed only until its evaluation
        # has begun (callbacks.run_lifecycle.RunBegan, whose on_validation_start comes before the model's)
        self.frechet.refuse_validate_when_off(self.trainer, "the WGAN's validation is its Frechet distance (val/fid)")
        size = getattr(self.trainer.datamodule, "hparams", {}).get("isize") if self.trainer.datamodule else None
        if size is not None and size != self.hparams.isize:
            raise UserError(f"the data is {size}px but the model {self.hparams.isize}px; "
                             f"set --data.isize and --model.isize to the same value")
        data = self.trainer.datamodule
        if self.hparams.nc != 3 and data is not None and type(data).__module__.startswith("datamodules"):
            raise UserError(f"--model.nc {self.hparams.nc}: the data modules give RGB images, 3 channels (grayscale "
                            f"files too); train with --model.nc 3")

    @torch.no_grad()
    def log_samples(self) -> Path | None:
        """The seed's gallery: the generator (in eval mode, as the seed) on fixed noise, as an 8x8 grid."""
        self.sampled_at = self.gen_iterations
        if not self.trainer.is_global_zero:
            return None
        self.generator.eval()
        images = self.generator(self.fixed_noise)
        self.generator.train()
        return log_image_grid(self.trainer, "samples", images, step=self.gen_iterations,
                              caption=f"gen_iterations {self.gen_iterations}")

    def on_validation_start(self) -> None:
        if not self.frechet.off:
            self.frechet.build(self.device)

    def validation_step(self, real: Tensor, batch_idx: int) -> None:
        """Real images into the Frechet statistics (first validation only), and as many generated ones from
        noise fixed by (rank, batch): every validation compares the same noise. A batch whose files were all
        unreadable (the data module leaves them out) has no image, and no fake is made for it."""
        if self.frechet.off or not len(real):
            return
        self.frechet.add("fid", real, real=True)
        seed = torch.Generator().manual_seed(hash((self.global_rank, batch_idx)))
        noise = torch.randn(len(real), self.hparams.nz, 1, 1, generator=seed).to(self.device)
        self.frechet.add("fid", self.generator(noise), real=False)

    def on_validation_epoch_end(self) -> None:
        values = self.frechet.compute(self.trainer.sanity_checking)
        if values:
            self.log("val/fid", values["fid"], sync_dist=True)  # equal on every rank already (torchmetrics)
            self.log_samples()

    def on_fit_end(self) -> None:
        self.frechet.release(self.trainer)

    def on_train_end(self) -> None:
        if self.sampled_at != self.gen_iterations:  # not logged at this count already (sample_every, validation)
            self.log_samples()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["wgan_counters"] = {"gen_iterations": self.gen_iterations,
                                       "critic_iterations": self.critic_iterations,
                                       "group_iterations": self.group_iterations,
                                       # the first logged step after a resume has a Loss_G too
                                       "last_loss_g": None if self.last_loss_g is None else float(self.last_loss_g)}

    reference_files = "a generator file of the WassersteinGAN reference (netG_epoch_N.pth)"

    @staticmethod
    def reference_checkpoint(path: str) -> dict | None:
        """train.py's --init_from of the WassersteinGAN reference's netG (and netD) files:
        wgan_reference.reference_checkpoint."""
        from lightning_modules.wgan_reference import reference_checkpoint  # it builds WGANs: imports this file

        return reference_checkpoint(path)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        restore_left_out(self, checkpoint)  # dl2-export's generator-only file: the critic keeps its new weights
        counters = checkpoint.get("wgan_counters", {})
        self.gen_iterations = counters.get("gen_iterations", 0)
        self.critic_iterations = counters.get("critic_iterations", 0)
        self.group_iterations = counters.get("group_iterations", 0)
        self.last_loss_g = counters.get("last_loss_g")


@torch.no_grad()
def sample(model: WGAN, n: int, batch_size: int = 256, seed: int = 0) -> Tensor:
    """n images on the CPU from the generator in eval mode: in [-1, 1] (an MLP generator's linear output may leave
    it; the consumers clamp)."""
    # one row at a time: torch's CPU normal sampler draws a tensor's elements in groups of 16, so one tensor of n rows
    # gave its last rows other numbers for another n; a row of its own depends on the seed and its index alone
    generator = torch.Generator().manual_seed(seed)
    noise = torch.stack([torch.randn(model.hparams.nz, 1, 1, generator=generator) for _ in range(n)])
    return generated(model, noise, batch_size)


@torch.no_grad()
def generated(model: WGAN, noise: Tensor, batch_size: int) -> Tensor:
    """The generator on (N, nz, 1, 1) noise, batch_size at a time; images in [-1, 1] on the CPU."""
    return torch.cat([model.generator(chunk.to(model.device)).float().cpu() for chunk in noise.split(batch_size)])


if __name__ == "__main__":  # the package's functions (lightning_modules.commands), not this copy's
    from lightning_modules.commands import wgan

    wgan()
