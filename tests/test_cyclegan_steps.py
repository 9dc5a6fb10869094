"""One CycleGAN training step against hand-written Adam steps: each discriminator judges its own domain's real
images and the pooled fakes of its own domain; the generators step on equation 3 plus the identity term."""

import copy

import lightning as L
import pytest
import torch
from test_cyclegan import tiny_data, tiny_model, trainer

pytestmark = pytest.mark.usefixtures("one_thread")


def adam_first_step(param, grad, lr, betas, eps=1e-8):
    """torch's Adam from an empty state, bias-corrected."""
    m, v = (1 - betas[0]) * grad, (1 - betas[1]) * grad**2
    return param - lr * (m / (1 - betas[0])) / ((v / (1 - betas[1])).sqrt() + eps)


def lsgan(prediction, real: bool):
    return ((prediction - float(real)) ** 2).mean()


class FirstBatch(L.Callback):
    """Before the first batch: the weights every net must have after it, computed by hand; after it: theirs."""

    def __init__(self):
        self.expected, self.got, self.pooled = {}, {}, {}

    def on_train_batch_start(self, trainer, model, batch, batch_idx):
        hp = model.hparams
        real_a, real_b = batch
        G, Fn = copy.deepcopy(model.gen_a2b), copy.deepcopy(model.gen_b2a)  # the paper's G: A->B, F: B->A
        D_X, D_Y = copy.deepcopy(model.disc_a), copy.deepcopy(model.disc_b)  # D_X judges A, D_Y judges B
        pool_a, pool_b = copy.deepcopy(model.pool_a), copy.deepcopy(model.pool_b)
        fake_b, fake_a = G(real_a), Fn(real_b)
        generator_loss = (lsgan(D_Y(fake_b), True) + lsgan(D_X(fake_a), True)
                          + hp.lambda_cycle * ((Fn(fake_b) - real_a).abs().mean() + (G(fake_a) - real_b).abs().mean())
                          + hp.lambda_identity * hp.lambda_cycle * ((G(real_b) - real_b).abs().mean()
                                                                    + (Fn(real_a) - real_a).abs().mean()))
        params = [*G.parameters(), *Fn.parameters()]
        grads = torch.autograd.grad(generator_loss, params)
        self.expected["generators"] = [adam_first_step(p, g, hp.lr, hp.betas).detach()
                                       for p, g in zip(params, grads, strict=True)]
        # the fakes of the generators before their step, through each domain's own history pool
        self.pooled["a"], self.pooled["b"] = pool_a.query(fake_a), pool_b.query(fake_b)
        self.pooled["fake_a"], self.pooled["fake_b"] = fake_a.detach(), fake_b.detach()
        for name, D, real, fake in (("disc_a", D_X, real_a, self.pooled["a"]),
                                    ("disc_b", D_Y, real_b, self.pooled["b"]),
                                    ("disc_a_bare", D_X, real_a, fake_a.detach())):  # what a bypassed pool gives
            loss = 0.5 * (lsgan(D(real), True) + lsgan(D(fake), False))
            grads = torch.autograd.grad(loss, list(D.parameters()))
            self.expected[name] = [adam_first_step(p, g, hp.lr, hp.betas).detach()
                                   for p, g in zip(D.parameters(), grads, strict=True)]

    def on_train_batch_end(self, trainer, model, outputs, batch, batch_idx):
        self.got["generators"] = [p.detach().clone() for p in [*model.gen_a2b.parameters(),
                                                                *model.gen_b2a.parameters()]]
        self.got["disc_a"] = [p.detach().clone() for p in model.disc_a.parameters()]
        self.got["disc_b"] = [p.detach().clone() for p in model.disc_b.parameters()]


def close(got, expected, lr):
    """Within a tenth of a step: Adam's first step moves every weight by about lr."""
    return all(torch.allclose(g, e, atol=0.1 * lr, rtol=0) for g, e in zip(got, expected, strict=True))


@pytest.mark.parametrize("prefill, pool_size", [(False, 2), (True, 2), (False, 0)],
                         ids=["pool-filling", "pool-full", "no-pool"])
def test_first_batch_matches_hand_written_adam_steps_on_the_right_domains(tiny_unpaired, tmp_path, prefill,
                                                                          pool_size):
    model = tiny_model(pool_size=pool_size, lr=1e-3)
    if prefill:  # full pools of images unlike any fake: what the pool hands back is then plain to see
        model.pool_a.images = [torch.full((3, 32, 32), -0.9), torch.full((3, 32, 32), 0.9)]
        model.pool_b.images = [torch.full((3, 32, 32), 0.5), torch.full((3, 32, 32), -0.5)]
    first = FirstBatch()
    trainer(tmp_path, max_steps=3, callbacks=[first]).fit(model, datamodule=tiny_data(tiny_unpaired))
    for net in ("generators", "disc_a", "disc_b"):
        assert close(first.got[net], first.expected[net], 1e-3), net
    if prefill:  # the pool handed back stored images: a discriminator fed the bare fakes ends elsewhere
        assert not torch.equal(first.pooled["a"], first.pooled["fake_a"])
        assert not torch.equal(first.pooled["b"], first.pooled["fake_b"])
        assert not close(first.got["disc_a"], first.expected["disc_a_bare"], 1e-3)


def test_pool_of_size_zero_passes_the_fakes_through_detached_and_keeps_none():
    """Detached: the discriminators' loss must not reach back into the generators' graph (freed by their step)."""
    from lightning_modules.cyclegan import ImagePool
    pool, fakes = ImagePool(0, seed=0), torch.randn(3, 1, 2, 2, requires_grad=True) * 2
    out = pool.query(fakes)
    assert torch.equal(out, fakes) and not out.requires_grad and pool.images == []


def test_pool_never_holds_more_than_its_size_and_hands_back_what_it_held():
    from lightning_modules.cyclegan import ImagePool
    pool = ImagePool(2, seed=0)
    seen = []
    for i in range(40):
        fake = torch.full((1, 1, 1, 1), float(i))
        held = [x.item() for x in pool.images]
        out = pool.query(fake).item()
        assert len(pool.images) == min(i + 1, 2)
        assert out == i or (i >= 2 and out in held and i in [x.item() for x in pool.images])  # swapped in
        seen.append(out != i)
    assert 10 < sum(seen) < 30  # a stored image about half the time once full (38 draws)


def test_linear_decay_is_the_reference_lambda_rule_stepped_at_each_epochs_end():
    from lightning_modules.cyclegan import linear_decay
    for n, nd in ((100, 100), (3, 5), (1, 1)):
        # the reference: lambda_rule(e) = 1 - max(0, e + epoch_count - n_epochs) / (n_epochs_decay + 1), epoch_count 1
        expected = [1 - max(0, e + 1 - n) / (nd + 1) for e in range(n + nd)]
        assert [linear_decay(e, n, nd) for e in range(n + nd)] == pytest.approx(expected)
        assert linear_decay(n + nd + 5, n, nd) == 0.0  # past the end: 0, never negative


def test_batches_are_counted_and_visuals_logged_at_the_first_then_every_nth(tiny_unpaired, tmp_path):
    model = tiny_model(log_images_every_n_batches=3)
    logged = []
    model.log_visuals = lambda key, visuals, step, n=4: logged.append(step)
    trainer(tmp_path, max_steps=5 * 3).fit(model, datamodule=tiny_data(tiny_unpaired))  # 3 optimizer steps a batch
    assert model.batches_trained == 5 and logged == [1, 4]


def test_image_pool_pickles_with_its_random_state():
    """ddp_spawn pickles the model: the copy must hold the same fakes and draw the same choices as the original."""
    import pickle

    from lightning_modules.cyclegan import ImagePool

    pool = ImagePool(2, seed=3)
    for i in range(4):
        pool.query(torch.full((1, 3, 2, 2), float(i)))
    clone = pickle.loads(pickle.dumps(pool))
    assert [float(x[0, 0, 0]) for x in clone.images] == [float(x[0, 0, 0]) for x in pool.images]
    fakes = torch.arange(8.0).view(8, 1, 1, 1).expand(8, 3, 2, 2)
    assert torch.equal(clone.query(fakes), pool.query(fakes))


def test_each_ddp_rank_draws_its_own_pool_swaps_and_rank_zero_keeps_the_pools_state():
    """Every rank's pool was seeded alike: the ranks swapped the same stored fakes at the same batches."""
    from lightning_modules.cyclegan import ImagePool
    pools = [ImagePool(2, seed=7) for _ in range(3)]
    for rank, pool in enumerate(pools):
        pool.spread(rank)
    assert torch.equal(pools[0].generator.get_state(), ImagePool(2, seed=7).generator.get_state())
    draws = [torch.rand(20, generator=pool.generator) for pool in pools]
    assert not torch.equal(draws[0], draws[1]) and not torch.equal(draws[1], draws[2])
    again = ImagePool(2, seed=7)
    again.spread(1)
    assert torch.equal(torch.rand(20, generator=again.generator), draws[1])  # the same for the same rank
