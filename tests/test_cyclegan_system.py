"""The CycleGAN system around its losses: the paper's optimizers and the reference's linear lr policy, the checks at
fit start, against settings and formulas written here (Zhu et al. 2017, section 4 and appendix 7.1; junyanz's
networks.get_scheduler)."""

import warnings

import pytest
import torch
from test_cyclegan import tiny_data, tiny_model, trainer
from test_gan_fid import channel_means  # noqa: F401 (a fixture)

from callbacks.errors import UserError
from datamodules import UnpairedImageDataModule

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_optimizers_are_the_papers_adams_one_for_both_generators_and_one_per_discriminator():
    model = tiny_model(n_epochs=3, n_epochs_decay=2)  # the paper's lr and betas are the defaults
    optimizers, schedules = model.configure_optimizers()
    owned = [{id(p) for net in nets for p in net.parameters()}
             for nets in ((model.gen_a2b, model.gen_b2a), (model.disc_a,), (model.disc_b,))]
    assert len(optimizers) == 3
    for optimizer, params in zip(optimizers, owned, strict=True):
        assert type(optimizer) is torch.optim.Adam and len(optimizer.param_groups) == 1
        group = optimizer.param_groups[0]
        assert {id(p) for p in group["params"]} == params and len(group["params"]) == len(params)
        assert group["lr"] == 2e-4 and tuple(group["betas"]) == (0.5, 0.999)  # Adam(lr 0.0002, beta1 0.5)
        assert group["weight_decay"] == 0 and group["eps"] == 1e-8 and not group["amsgrad"]
    assert [s["name"] for s in schedules] == ["lr-generators", "lr-disc_a", "lr-disc_b"]
    for schedule, optimizer in zip(schedules, optimizers, strict=True):
        assert schedule["scheduler"].optimizer is optimizer
        # the reference's 'linear' policy, lambda_rule: 1 - max(0, epoch + epoch_count - n_epochs) / (n_epochs_decay
        # + 1), epoch_count 1
        rule = schedule["scheduler"].lr_lambdas[0]
        assert [rule(epoch) for epoch in range(5)] == pytest.approx([1 - max(0, e + 1 - 3) / 3 for e in range(5)])


def test_without_linear_decay_the_optimizers_come_alone_with_the_betas_given():
    model = tiny_model(linear_decay=False, lr=1e-3, betas=[0.9, 0.99])  # a list from a YAML config
    optimizers = model.configure_optimizers()
    assert isinstance(optimizers, list) and len(optimizers) == 3
    assert all(o.param_groups[0]["lr"] == 1e-3 and o.param_groups[0]["betas"] == (0.9, 0.99) for o in optimizers)


def fit_warnings(model, data, tmp_path, **kwargs) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer(tmp_path, limit_train_batches=1, **kwargs).fit(model, datamodule=data)
    return [str(w.message) for w in caught]


@pytest.mark.parametrize("linear_decay, limits", [(True, {"max_epochs": -1, "max_steps": 3}),
                                                  (False, {"max_epochs": 1})])
def test_no_decay_span_warning_for_an_unlimited_run_or_without_the_decay(tiny_unpaired, tmp_path, linear_decay,
                                                                         limits):
    model = tiny_model(n_epochs=1, n_epochs_decay=1, linear_decay=linear_decay)
    shown = fit_warnings(model, tiny_data(tiny_unpaired), tmp_path, **limits)
    assert not [m for m in shown if "linear decay spans" in m]


def test_a_fast_dev_run_trains_its_batches_with_three_optimizer_steps_each(tiny_unpaired, tmp_path):
    model = tiny_model()
    fit = trainer(tmp_path, fast_dev_run=2)
    fit.fit(model, datamodule=tiny_data(tiny_unpaired))
    assert (model.batches_trained, fit.global_step) == (2, 6)


def without_test_folders(root):
    for side in "AB":
        for file in (root / f"test{side}").iterdir():
            file.unlink()
        (root / f"test{side}").rmdir()
    return root


def test_val_fid_on_data_without_test_folders_is_refused_before_training(tiny_unpaired, tmp_path, channel_means):  # noqa: F811
    model = tiny_model(fid_features=channel_means)
    with pytest.raises(UserError, match="^--model.fid_features validates on testA and testB, which the data lacks"):
        trainer(tmp_path, max_steps=3).fit(model, datamodule=tiny_data(without_test_folders(tiny_unpaired)))
    assert model.batches_trained == 0


def test_without_val_fid_data_without_test_folders_trains(tiny_unpaired, tmp_path):
    model = tiny_model()
    shown = fit_warnings(model, tiny_data(without_test_folders(tiny_unpaired)), tmp_path, max_steps=3)
    assert model.batches_trained == 1 and any("testA is missing" in m for m in shown)


class NoTestFlag(UnpairedImageDataModule):
    """A data module of the user's, which says nothing of test data."""

    def setup(self, stage):
        super().setup(stage)
        del self.has_test_data


def test_val_fid_takes_a_data_module_that_says_nothing_of_test_data(tiny_unpaired, tmp_path, channel_means):  # noqa: F811
    model = tiny_model(fid_features=channel_means)
    data = NoTestFlag(str(tiny_unpaired), batch_size=2, load_size=36, crop_size=32, num_workers=0)
    trainer(tmp_path, max_steps=3, limit_val_batches=0).fit(model, datamodule=data)
    assert model.batches_trained == 1 and not hasattr(data, "has_test_data")


def test_pools_of_different_seeds_never_share_a_ddp_ranks_draws():
    """Rank 1 reseeds each pool from its state: 300 pools (two a run, over 150 runs' seeds) get 300 different
    streams; a seed space narrower than the pools would put two of them on the same draws."""
    from lightning_modules.cyclegan import ImagePool

    pools = [ImagePool(2, seed=seed) for seed in range(300)]
    for pool in pools:
        pool.spread(1)
    assert len({pool.generator.initial_seed() for pool in pools}) == 300
    assert len({torch.rand(4, generator=pool.generator).sum().item() for pool in pools}) == 300


class OnlyTestA(UnpairedImageDataModule):
    def test_dataloader(self):
        return super().test_dataloader()[:1]


def test_a_test_of_one_domain_gives_its_cycle_l1_and_no_grid_of_the_pair(tmp_path):
    """A test of testA alone (loader 0): its mean cycle L1, none for B, and no grid, whose rows pair A with B."""
    from conftest import cycle_l1_by_hand, make_unpaired

    root = make_unpaired(tmp_path / "d", counts=(1, 1, 3, 2), size=(32, 32), gray_in=None)
    model = tiny_model()
    expected = cycle_l1_by_hand(model, root)
    data = OnlyTestA(str(root), batch_size=2, load_size=32, crop_size=32, num_workers=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchmetrics: B's mean computed before any update
        (result,) = trainer(tmp_path).test(model, datamodule=data, verbose=False)
    assert result["test/cycle_l1_a"] == pytest.approx(expected["a"], rel=1e-5)
    assert torch.isnan(torch.tensor(result["test/cycle_l1_b"]))
    assert not (tmp_path / "images").exists()
