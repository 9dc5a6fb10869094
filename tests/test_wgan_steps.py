"""The WGAN's critic and generator steps against hand-written reference steps (Arjovsky et al. 2017, Algorithm 1)."""

import copy

import lightning as L
import pytest
import torch
from test_wgan import TINY, write_images

from datamodules import ImageFolderDataModule
from lightning_modules import WGAN

pytestmark = pytest.mark.usefixtures("one_thread")


def rmsprop_first_step(param, grad, lr, alpha=0.99, eps=1e-8):
    """torch's RMSprop from an empty state: square average (1 - alpha) g^2, no momentum."""
    return param - lr * grad / (((1 - alpha) * grad**2).sqrt() + eps)


def adam_first_step(param, grad, lr, betas, eps=1e-8):
    """torch's Adam from an empty state, bias-corrected."""
    m, v = (1 - betas[0]) * grad, (1 - betas[1]) * grad**2
    return param - lr * (m / (1 - betas[0])) / ((v / (1 - betas[1])).sqrt() + eps)


class Reference:
    """Wraps the model's steps: before the first call of each, computes by hand what the weights must become."""

    def __init__(self, model: WGAN, seed: int = 5):
        self.model, self.seed, self.expected, self.got = model, seed, {}, {}
        hp = model.hparams  # Adam with the penalty unless told, RMSprop with clipping (the reference's --adam: Adam)
        self.adam = hp.optimizer == "adam" or (hp.optimizer != "rmsprop" and hp.gradient_penalty > 0)
        self.noise = torch.randn(64, model.hparams.nz, 1, 1, generator=torch.Generator().manual_seed(1))
        model.noise = lambda n: self.noise[:n]  # the same z for the step and for the reference
        original_critic, original_generator = model.critic_step, model.generator_step

        def critic_step(real):
            if "critic" not in self.expected:
                self.expected["critic"] = self.critic_reference(real)
                torch.manual_seed(self.seed)  # the penalty's interpolation weights, drawn again by the step
                losses = original_critic(real)
                self.got["critic"] = [p.detach().clone() for p in model.critic.parameters()]
                return losses
            return original_critic(real)

        def generator_step(n):
            if "generator" not in self.expected:
                self.expected["generator"] = self.generator_reference(n)
                original_generator(n)
                self.got["generator"] = [p.detach().clone() for p in model.generator.parameters()]
            else:
                original_generator(n)

        model.critic_step, model.generator_step = critic_step, generator_step

    def critic_reference(self, real):
        hp = self.model.hparams
        critic, generator = copy.deepcopy(self.model.critic), copy.deepcopy(self.model.generator)
        with torch.no_grad():
            fake = generator(self.noise[:len(real)])
        loss = critic(real).mean() - critic(fake).mean()  # the seed's sign: real scored low
        if hp.gradient_penalty > 0:
            torch.manual_seed(self.seed)
            alpha = torch.rand(len(real), 1, 1, 1)
            x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
            (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
            loss = loss + hp.gradient_penalty * ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
        grads = torch.autograd.grad(loss, list(critic.parameters()))
        with torch.no_grad():
            step = [(adam_first_step(p, g, hp.lr, hp.betas) if self.adam else rmsprop_first_step(p, g, hp.lr))
                    for p, g in zip(critic.parameters(), grads, strict=True)]
            if hp.gradient_penalty > 0:
                return step
            return [p.clamp(-hp.clip_value, hp.clip_value) for p in step]

    def generator_reference(self, n):
        hp = self.model.hparams
        critic, generator = copy.deepcopy(self.model.critic), copy.deepcopy(self.model.generator)
        loss = critic(generator(self.noise[:n])).mean()  # Loss_G: the generator lowers the critic's score
        grads = torch.autograd.grad(loss, list(generator.parameters()))
        lr = hp.lr if hp.lr_generator is None else hp.lr_generator  # the reference's lrG beside lrD
        with torch.no_grad():
            return [adam_first_step(p, g, lr, hp.betas) if self.adam else rmsprop_first_step(p, g, lr)
                    for p, g in zip(generator.parameters(), grads, strict=True)]


def fit(model, images, tmp_path, max_steps):
    L.seed_everything(0)
    data = ImageFolderDataModule(str(images), isize=16, batch_size=4, num_workers=0)
    L.Trainer(accelerator="cpu", max_steps=max_steps, logger=False, enable_checkpointing=False,
              enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path).fit(model, data)


@pytest.mark.parametrize("gradient_penalty, options", [
    (0.0, {}), (10.0, {}), (0.5, {}),
    (0.0, {"optimizer": "adam", "betas": (0.5, 0.999), "lr_generator": 3e-3}),  # the reference's --adam --lrG
    (10.0, {"optimizer": "rmsprop"}), (0.0, {"lr_generator": 2e-4})],
    ids=["clip", "penalty", "small-penalty", "clip-adam-lrG", "penalty-rmsprop", "clip-lrG"])
def test_first_critic_and_generator_steps_match_hand_written_steps(tmp_path, gradient_penalty, options):
    images = write_images(tmp_path / "images")
    model = WGAN(**{**TINY, "lr": 1e-3, "gradient_penalty": gradient_penalty, **options})
    reference = Reference(model)
    fit(model, images, tmp_path, max_steps=3)  # 3 critic iterations (d_iters_long), then the generator
    assert (model.critic_iterations, model.gen_iterations, model.group_iterations) == (3, 1, 0)
    for net in ("critic", "generator"):
        for got, expected in zip(reference.got[net], reference.expected[net], strict=True):
            assert torch.allclose(got, expected, atol=1e-6), net
    if gradient_penalty == 0:
        assert max(p.abs().max().item() for p in reference.got["critic"]) <= TINY.get("clip_value", 0.01)


def test_generator_step_lowers_the_critic_score_of_its_samples(tmp_path):
    # Loss_G = D(G(z)): a small generator step on z must lower the critic's mean score of G(z) (train mode, as
    # the step saw it); a generator trained on -D(G(z)) would raise it
    images = write_images(tmp_path / "images")
    model = WGAN(**{**TINY, "lr": 1e-5})
    z = torch.randn(4, model.hparams.nz, 1, 1, generator=torch.Generator().manual_seed(3))
    model.noise = lambda n: z[:n]
    scores = []
    original = model.generator_step

    def generator_step(n):
        with torch.no_grad():
            before = model.critic(model.generator(z)).mean().item()
        original(n)
        with torch.no_grad():
            scores.append((before, model.critic(model.generator(z)).mean().item()))

    model.generator_step = generator_step
    fit(model, images, tmp_path, max_steps=7)
    assert len(scores) == 3 and all(after < before for before, after in scores)


@pytest.mark.parametrize("d_iters, d_iters_long, long_until, long_every", [(5, 100, 25, 500), (2, 7, 3, 4)])
def test_d_iters_is_the_seeds_schedule(d_iters, d_iters_long, long_until, long_every):
    model = WGAN(**{**TINY, "d_iters": d_iters, "d_iters_long": d_iters_long, "long_until": long_until,
                    "long_every": long_every})
    got = []
    for g in range(1200):
        model.gen_iterations = g
        got.append(model.d_iters())
    # the seed: `d_iters = 100 if gen_iterations < 25 or gen_iterations % 500 == 0 else 5`
    long = [g for g in range(1200) if g < long_until or g % long_every == 0]
    assert [g for g, d in enumerate(got) if d == d_iters_long] == long
    assert all(d == d_iters for g, d in enumerate(got) if g not in long)


def test_a_single_step_training_still_ends_with_a_generator_step(tmp_path):
    # the seed's loop gives the generator its step when the data (here max_steps = 1) runs out mid-group
    images = write_images(tmp_path / "images")
    model = WGAN(**TINY)
    fit(model, images, tmp_path, max_steps=1)
    assert (model.critic_iterations, model.gen_iterations) == (1, 1)


class LoggedEachStep(L.Callback):
    def __init__(self):
        self.metrics = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.metrics.append({k: v.item() for k, v in trainer.callback_metrics.items() if k.startswith("train/")})


@pytest.mark.parametrize("gradient_penalty", [10.0, 0.0])
def test_the_gradient_penalty_is_logged_on_its_own_and_loss_d_less_it_is_d_real_minus_d_fake(tmp_path,
                                                                                            gradient_penalty):
    """train/gradient_penalty: lambda * mean((||grad D(x_hat)||_2 - 1)^2), by hand from a copy of the critic before
    each step, on the step's batch, fakes and interpolation weights; Loss_D is what the critic minimises, that plus
    D_real - D_fake (the Wasserstein estimate's negative), which Loss_D alone showed under WGAN-GP. No penalty: none
    logged."""
    images = write_images(tmp_path / "images")
    model = WGAN(**{**TINY, "gradient_penalty": gradient_penalty})
    noise = torch.randn(64, model.hparams.nz, 1, 1, generator=torch.Generator().manual_seed(1))
    model.noise = lambda n: noise[:n]  # the same z for the step and for the hand computation
    original, by_hand = model.critic_step, []

    def critic_step(real):
        critic, generator = copy.deepcopy(model.critic), copy.deepcopy(model.generator)
        with torch.no_grad():
            fake = generator(noise[:len(real)])
        torch.manual_seed(len(by_hand))
        alpha = torch.rand(len(real), 1, 1, 1)
        x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
        (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat)
        by_hand.append(gradient_penalty * ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean().item())
        torch.manual_seed(len(by_hand) - 1)  # the step draws the same interpolation weights
        return original(real)

    model.critic_step = critic_step
    logged = LoggedEachStep()
    L.seed_everything(0)
    data = ImageFolderDataModule(str(images), isize=16, batch_size=4, num_workers=0)
    L.Trainer(accelerator="cpu", max_steps=4, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, log_every_n_steps=1, callbacks=[logged],
              default_root_dir=tmp_path).fit(model, data)
    assert len(logged.metrics) == len(by_hand) == 4
    for step, metrics in enumerate(logged.metrics):
        estimate = metrics["train/D_real"] - metrics["train/D_fake"]
        if gradient_penalty == 0:
            assert "train/gradient_penalty" not in metrics
            assert metrics["train/Loss_D"] == pytest.approx(estimate, abs=1e-6)
            continue
        assert metrics["train/gradient_penalty"] == pytest.approx(by_hand[step], rel=1e-4), step
        assert metrics["train/Loss_D"] - metrics["train/gradient_penalty"] == pytest.approx(estimate, abs=1e-5)
    if gradient_penalty:
        assert min(by_hand) > 0.01  # a penalty large enough for the checks to tell
