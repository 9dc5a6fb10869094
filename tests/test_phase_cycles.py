"""The schedules made of phases (one-cycle, SGDR, triangle, fastai's cos) and SWA after them, against formulas."""

import math

import lightning as L
import numpy as np
import pytest
import torch
from runs import BATCHES, BatchCounter, Recorder, expected, fit

from callbacks import DecayType, TrainingPhase, TrainingPhaseScheduler, UserError, one_cycle, sgdr, triangle
from datamodules import CIFAR10DataModule
from lightning_modules import DarknetClassifier

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets: threads only add contention


def test_one_cycle_is_the_seed_three_phases():
    phases = one_cycle(cycle_len=10, lr=1.0, div=20, pct=20, max_mom=0.95, min_mom=0.85)
    got = [(p.epochs, p.lr_range, p.lr_decay, p.momentum_range, p.momentum_decay) for p in phases]
    assert got == [
        (4.0, (0.05, 1.0), DecayType.LINEAR, (0.95, 0.85), DecayType.LINEAR),
        (4.0, (1.0, 0.05), DecayType.LINEAR, (0.85, 0.95), DecayType.LINEAR),
        (2.0, pytest.approx((0.05, 0.0005)), DecayType.LINEAR, (0.95, 0.95), DecayType.NO),
    ]


def test_one_cycle_matches_torch_one_cycle_lr_within_two_steps():
    n = 1000
    phases = one_cycle(cycle_len=1, lr=1.0, div=20, pct=20, max_mom=0.95, min_mom=0.85)
    scheduler = TrainingPhaseScheduler(phases)
    scheduler.ends = [400, 800, 1000]
    param = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([param], lr=1.0, momentum=0.9)
    torch_cycle = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=1.0, total_steps=n, pct_start=0.4, anneal_strategy="linear", three_phase=True,
        div_factor=20, final_div_factor=100, base_momentum=0.85, max_momentum=0.95)
    # torch ends its phases at steps pT-1 and 2pT-2, the seed at pT and 2pT: the curves are the same lines,
    # shifted by at most two steps
    slope = (1.0 - 0.05) / 399
    for i in range(n):
        index, pct = scheduler.locate(i)
        ours = phases[index].lr_at(pct), phases[index].momentum_at(pct)
        theirs = optimizer.param_groups[0]["lr"], optimizer.param_groups[0]["momentum"]
        assert ours[0] == pytest.approx(theirs[0], abs=2.01 * slope)
        assert ours[1] == pytest.approx(theirs[1], abs=2.01 * 0.1 / 399)
        optimizer.step()
        torch_cycle.step()
    assert phases[0].lr_at(0) == 0.05 == pytest.approx(1.0 / 20)  # both start at lr / div ...
    assert phases[1].lr_at(0) == 1.0  # ... peak at lr ...
    assert phases[2].lr_range[1] == pytest.approx(0.05 / 100)  # ... and end at lr / div / final_div


def test_sgdr_is_the_seed_warm_up_then_cosine_cycles():
    phases = sgdr(lr=0.1, opt_fn="Adam", num_cycle=3, cycle_len=2, cycle_mult=2)
    assert [p.epochs for p in phases] == pytest.approx([0.1, 1.9, 4, 8])
    assert phases[0].lr_range == pytest.approx((0.001, 0.001)) and phases[0].lr_decay is DecayType.NO
    assert all(p.lr_range == (0.1, 0.0) and p.lr_decay is DecayType.COSINE for p in phases[1:])
    assert all(p.opt_class is torch.optim.Adam for p in phases)


def test_swa_takes_over_the_lr_after_the_phases_and_gets_its_batchnorm_epoch(tiny_cifar):
    """Lightning's SWA sets the lr from the epoch its 1-based swa_epoch_start names, and after max_epochs runs one
    more epoch of forward passes that recomputes the BatchNorm statistics for the averaged weights. The phases'
    max_steps used to cut that epoch (the averaged weights kept the last weights' statistics)."""
    from lightning.pytorch.callbacks import StochasticWeightAveraging
    swa = StochasticWeightAveraging(swa_lrs=0.01, swa_epoch_start=2, annealing_epochs=1)
    counter = BatchCounter()
    steps, trainer, model = fit(tiny_cifar, [TrainingPhase(1, "SGD", 0.1, momentum=0.9)], max_epochs=3,
                                callbacks=[swa, counter])
    lrs = [lrs[0] for _, lrs, _ in steps]
    assert lrs[:BATCHES] == [0.1] * BATCHES  # the phase
    # SWALR's: its first epoch anneals from the lr it found, then swa_lrs after annealing_epochs=1
    assert lrs[BATCHES:3 * BATCHES] == pytest.approx([0.1] * BATCHES + [0.01] * BATCHES)
    assert counter.batches == 4 * BATCHES  # 3 epochs, then the BatchNorm epoch


@pytest.mark.parametrize("swa_first", [False, True])  # Lightning's SWA turns 0.75 into epochs in its on_fit_start
def test_a_recipe_without_cycle_len_ends_where_swa_takes_over_the_lr(tiny_cifar, swa_first):
    from lightning.pytorch.callbacks import StochasticWeightAveraging
    swa = StochasticWeightAveraging(swa_lrs=0.01, swa_epoch_start=0.75, annealing_epochs=1)  # int(4 * 0.75) = 3
    scheduler = TrainingPhaseScheduler(one_cycle={"lr": 0.4, "div": 10, "pct": 50}, plot=False)
    recorder, counter = Recorder(), BatchCounter()
    torch.manual_seed(0)
    trainer = L.Trainer(accelerator="cpu", max_epochs=4, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
                        enable_checkpointing=False,
                        callbacks=[swa, scheduler] if swa_first else [scheduler, swa])
    trainer.callbacks += [recorder, counter]
    trainer.fit(DarknetClassifier(num_blocks=[1], nf=4, num_classes=3, one_cycle=None),
                CIFAR10DataModule(str(tiny_cifar), batch_size=4, download=False))
    lrs = [lrs[0] for _, lrs, _ in recorder.steps]
    n = 2 * BATCHES  # the cycle's 2 epochs before SWA's third: a quarter up from lr/10 to lr, a quarter back,
    cycle = [expected(0.04, 0.4, i, n // 4, "linear") for i in range(n // 4)] + \
            [expected(0.4, 0.04, i, n // 4, "linear") for i in range(n // 4)] + \
            [expected(0.04, 0.4 / 1000, i, n // 2, "linear") for i in range(n // 2)]  # half down to lr/1000
    assert scheduler.ends[-1] == n and lrs[:n] == pytest.approx(cycle)
    # SWALR's: the lr it found for an epoch (annealing_epochs=1), then swa_lrs
    assert lrs[n:4 * BATCHES] == pytest.approx([cycle[-1]] * BATCHES + [0.01] * BATCHES)
    assert counter.batches == 5 * BATCHES  # and the BatchNorm epoch


def test_a_recipe_with_swa_from_the_first_epoch_is_refused(tiny_cifar):
    from lightning.pytorch.callbacks import StochasticWeightAveraging
    swa = StochasticWeightAveraging(swa_lrs=0.01, swa_epoch_start=1)  # Lightning's epochs count from 1
    scheduler = TrainingPhaseScheduler(one_cycle={"lr": 0.4}, plot=False)
    trainer = L.Trainer(accelerator="cpu", max_epochs=2, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, enable_checkpointing=False,
                        callbacks=[scheduler, swa])
    with pytest.raises(UserError, match="StochasticWeightAveraging sets the lr from the first epoch, which leaves "
                                        "one_cycle none"):
        trainer.fit(DarknetClassifier(num_blocks=[1], nf=4, num_classes=3, one_cycle=None),
                    CIFAR10DataModule(str(tiny_cifar), batch_size=4, download=False))


def test_phases_that_reach_into_swa_epochs_are_refused(tiny_cifar):
    from lightning.pytorch.callbacks import StochasticWeightAveraging
    swa = StochasticWeightAveraging(swa_lrs=0.01, swa_epoch_start=0.75)  # from epoch int(4 * 0.75) = 3 on
    with pytest.raises(UserError, match=r"the phases run 3 epochs, but StochasticWeightAveraging sets the lr from "
                                        r"epoch 3 on \(its swa_epoch_start\): end the phases after 2 epochs"):
        fit(tiny_cifar, [TrainingPhase(3, "SGD", 0.1)], max_epochs=4, callbacks=[swa])


@pytest.mark.parametrize("trainer_kwargs, expected_steps", [({"max_epochs": 2}, 12),
                                                            ({"max_steps": 9, "max_epochs": 10}, 9)])
def test_one_cycle_recipe_spans_the_training_and_takes_the_model_lr(tiny_cifar, trainer_kwargs, expected_steps):
    recorder = Recorder()
    scheduler = TrainingPhaseScheduler(one_cycle={"div": 10, "pct": 50, "max_mom": 0.95, "min_mom": 0.85},
                                       plot=False)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_checkpointing=False,
                        limit_val_batches=0, enable_model_summary=False, callbacks=[scheduler, recorder],
                        **trainer_kwargs)
    trainer.fit(DarknetClassifier(num_blocks=[1], nf=4, num_classes=3, lr=0.3, one_cycle=None),
                CIFAR10DataModule(str(tiny_cifar), batch_size=4, download=False))
    lrs = [lrs[0] for _, lrs, _ in recorder.steps]
    assert len(lrs) == expected_steps and scheduler.ends[-1] == expected_steps
    assert lrs[0] == pytest.approx(0.03) and max(lrs) == pytest.approx(0.3)  # lr/div up to the model's lr


def test_triangle_is_airbenchs_two_linear_pieces_with_constant_momentum():
    phases = triangle(cycle_len=10, lr=2.0, start=0.2, peak=0.25, end=0.05, momentum=0.8)
    got = [(p.epochs, p.lr_range, p.lr_decay, p.momentum_range, p.momentum_decay) for p in phases]
    assert got == [(2.5, pytest.approx((0.4, 2.0)), DecayType.LINEAR, (0.8, 0.8), DecayType.NO),
                   (7.5, pytest.approx((2.0, 0.1)), DecayType.LINEAR, (0.8, 0.8), DecayType.NO)]


def test_triangle_recipe_per_step_matches_airbenchs_interpolation_and_takes_the_model_lr(tiny_cifar):
    # airbench94's schedule written out: np.interp over [0, peak * T, T] of [start, 1, end], times the peak lr
    recorder = Recorder()
    scheduler = TrainingPhaseScheduler(triangle={"start": 0.2, "peak": 0.25, "end": 0.1, "momentum": 0.8},
                                       plot=False)
    trainer = L.Trainer(accelerator="cpu", max_epochs=4, logger=False, enable_progress_bar=False,
                        enable_checkpointing=False, limit_val_batches=0, enable_model_summary=False,
                        callbacks=[scheduler, recorder])
    trainer.fit(DarknetClassifier(num_blocks=[1], nf=4, num_classes=3, lr=0.5, momentum=0.9, one_cycle=None),
                CIFAR10DataModule(str(tiny_cifar), batch_size=4, download=False))
    total = 4 * BATCHES
    lrs = [lrs[0] for _, lrs, _ in recorder.steps]
    reference = 0.5 * np.interp(np.arange(total), [0, 0.25 * total, total], [0.2, 1.0, 0.1])
    assert len(lrs) == total and lrs == pytest.approx(reference.tolist())
    assert [momentum for _, _, momentum in recorder.steps] == pytest.approx([0.8] * total)


def fastai_sched_cos(start, end, pos):
    """fastai 2's SchedCos, as its docs define it."""
    return start + (1 + math.cos(math.pi * (1 - pos))) * (end - start) / 2


def fastai_combined_cos(pct, start, middle, end, pos):
    """fastai 2's combined_cos(pct, start, middle, end) at pos in [0, 1): one cosine, then another."""
    return fastai_sched_cos(start, middle, pos / pct) if pos < pct else \
        fastai_sched_cos(middle, end, (pos - pct) / (1 - pct))


def fit_recipe(tiny_cifar, lr, **recipe):
    recorder = Recorder()
    trainer = L.Trainer(accelerator="cpu", max_epochs=4, logger=False, enable_progress_bar=False,
                        enable_checkpointing=False, limit_val_batches=0, enable_model_summary=False,
                        callbacks=[TrainingPhaseScheduler(plot=False, **recipe), recorder])
    trainer.fit(DarknetClassifier(num_blocks=[1], nf=4, num_classes=3, lr=lr, one_cycle=None),
                CIFAR10DataModule(str(tiny_cifar), batch_size=4, download=False))
    return [lrs[0] for _, lrs, _ in recorder.steps], [momentum for _, _, momentum in recorder.steps]


def test_one_cycle_cos_follows_fastais_fit_one_cycle_per_step(tiny_cifar):
    lrs, moms = fit_recipe(tiny_cifar, 0.4, one_cycle_cos={"div": 20, "div_final": 1e3, "pct_start": 0.25,
                                                           "moms": [0.95, 0.8, 0.9]})
    total = 4 * BATCHES  # fastai's ParamScheduler: pos = train_iter / total_iter, before each batch
    assert len(lrs) == total
    assert lrs == pytest.approx([fastai_combined_cos(0.25, 0.4 / 20, 0.4, 0.4 / 1e3, i / total) for i in range(total)])
    assert moms == pytest.approx([fastai_combined_cos(0.25, 0.95, 0.8, 0.9, i / total) for i in range(total)])


@pytest.mark.parametrize("pct_start", [0.75, 0.5, 0.0])
def test_flat_cos_follows_fastais_fit_flat_cos_per_step(tiny_cifar, pct_start):
    lrs, moms = fit_recipe(tiny_cifar, 0.3, flat_cos={"pct_start": pct_start, "momentum": 0.85})
    total = 4 * BATCHES
    reference = [0.3 if i / total < pct_start else fastai_sched_cos(0.3, 0.3 / 1e5, (i / total - pct_start)
                                                                     / (1 - pct_start)) for i in range(total)]
    assert len(lrs) == total and lrs == pytest.approx(reference)
    assert moms == pytest.approx([0.85] * total)


class WeightsAt(L.Callback):
    """The model's weights after the given optimizer steps."""

    def __init__(self, steps):
        self.steps, self.weights = set(steps), {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step in self.steps:
            self.weights[trainer.global_step] = {k: v.clone() for k, v in pl_module.state_dict().items()}


@pytest.mark.parametrize("recipe, cycle_steps", [
    ({"phases": [TrainingPhase(1, lr=0.05), TrainingPhase(1, lr=0.02), TrainingPhase(1, lr=0.01)]},
     [BATCHES, 2 * BATCHES, 3 * BATCHES]),  # each phase a cycle
    ({"sgdr": {"lr": 0.05, "num_cycle": 2, "cycle_len": 2, "cycle_mult": 1}},
     [2 * BATCHES, 4 * BATCHES]),  # the warm-up (1 step: 2 epochs / 20) and the first cosine are cycle 1
    ({"one_cycle": {"pct": 20}}, [2 * BATCHES])])  # three phases, one cycle: saved at its end only
def test_save_cycles_keeps_the_weights_at_each_cycles_end(tiny_cifar, tmp_path, recipe, cycle_steps):
    phases = recipe.pop("phases", None)
    record = WeightsAt(cycle_steps)
    _, trainer, _ = fit(tiny_cifar, phases, max_epochs=cycle_steps[-1] // BATCHES, callbacks=[record],
                        root=str(tmp_path), save_cycles=True, **recipe)
    saved = sorted((tmp_path / "checkpoints").glob("cycle*.ckpt"))
    assert [p.name for p in saved] == [f"cycle{k}-step={step}.ckpt" for k, step in enumerate(cycle_steps, 1)]
    for path, step in zip(saved, cycle_steps, strict=True):
        state = torch.load(path, map_location="cpu", weights_only=False)
        assert state["global_step"] == step
        assert all(torch.equal(state["state_dict"][k], v) for k, v in record.weights[step].items())


def test_a_recipe_takes_the_phase_options_it_passes_on_and_the_models_optimizer(tiny_cifar):
    class AdamModel(DarknetClassifier):
        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=0.01, betas=(0.5, 0.999))

    class Betas(L.Callback):
        def __init__(self):
            self.seen = []

        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            group = optimizer.param_groups[0]
            self.seen.append((type(optimizer).__name__, group["betas"], group["weight_decay"]))

    record = Betas()
    scheduler = TrainingPhaseScheduler(flat_cos={"beta": 0.99, "weight_decay": 5e-4}, plot=False)
    trainer = L.Trainer(accelerator="cpu", max_epochs=2, logger=False, enable_progress_bar=False,
                        enable_checkpointing=False, limit_val_batches=0, enable_model_summary=False,
                        callbacks=[scheduler, record])
    trainer.fit(AdamModel(num_blocks=[1], nf=4, num_classes=3, one_cycle=None),
                CIFAR10DataModule(str(tiny_cifar), batch_size=4, download=False))
    # fastai's fit_flat_cos leaves momentum (Adam's beta1) alone; the model's Adam is kept, not rebuilt as SGD
    assert record.seen == [("Adam", (0.5, 0.99), 5e-4)] * (2 * BATCHES)
    with pytest.raises(UserError, match="flat_cos has no option 'betas'; its options: cycle_len, lr, .*beta,") as error:
        TrainingPhaseScheduler(flat_cos={"betas": 0.9})
    assert "phase_kwargs" not in str(error.value)


def test_a_recipe_with_pct_start_0_has_no_empty_phase():
    from callbacks import flat_cos, one_cycle_cos
    assert [p.epochs for p in one_cycle_cos(cycle_len=4, lr=1.0, pct_start=0.0)] == [4.0]  # the anneal only
    assert [p.epochs for p in flat_cos(cycle_len=4, lr=1.0, pct_start=0.0)] == [4.0]
    assert [p.lr_range for p in flat_cos(cycle_len=4, lr=1.0, pct_start=1.0)] == [(1.0, 1.0)]  # flat only


def test_one_cycle_and_triangle_at_the_ends_of_their_range_have_no_empty_phase():
    # pct 0: the triangle is the whole cycle (no final annealing); pct 100: the final annealing alone
    assert [(p.epochs, p.lr_range) for p in one_cycle(cycle_len=10, lr=1.0, div=10, pct=0)] == [
        (5.0, (0.1, 1.0)), (5.0, (1.0, 0.1))]
    assert [(p.epochs, p.lr_range) for p in one_cycle(cycle_len=10, lr=1.0, div=10, pct=100)] == [
        (10.0, pytest.approx((0.1, 0.001)))]
    assert [p.epochs for p in one_cycle(cycle_len=1, lr=1.0, pct=20)] == pytest.approx([0.4, 0.4, 0.2])  # short, kept
    assert [(p.epochs, p.lr_range) for p in triangle(cycle_len=10, lr=1.0, peak=0.0, end=0.1)] == [(10.0, (1.0, 0.1))]
    assert [(p.epochs, p.lr_range) for p in triangle(cycle_len=10, lr=1.0, peak=1.0, start=0.2)] == [(10.0, (0.2, 1.0))]


@pytest.mark.parametrize("make, message", [
    (lambda: one_cycle(cycle_len=10, lr=1.0, pct=120), "one_cycle's pct is a percentage of the cycle, from 0 to 100 "
                                                       r"\(got 120\)"),
    (lambda: triangle(cycle_len=10, lr=1.0, peak=-0.1), r"triangle's peak is a fraction of the cycle, from 0 to 1"),
])
def test_a_recipes_share_of_the_cycle_out_of_range_is_named(make, message):
    with pytest.raises(UserError, match=message):
        make()


def test_sgdr_passes_momentum_on_and_the_one_cycles_set_their_own():
    from callbacks.phase_scheduler import recipe_options
    assert {"momentum", "momentum_decay", "beta"} <= set(recipe_options("sgdr"))
    assert not {"momentum_decay", "lr_decay", "epochs"} & set(recipe_options("one_cycle"))
    TrainingPhaseScheduler(sgdr={"lr": 0.1, "momentum": None})  # the GANs' RMSprop keeps its own
    assert [p.momentum for p in sgdr(lr=0.1, momentum=None)] == [None] * 4
    with pytest.raises(UserError, match="one_cycle has no option 'momentum_decay'"):
        TrainingPhaseScheduler(one_cycle={"momentum_decay": "cosine"})


def test_sgdr_keeps_its_own_cycle_len_where_the_one_cycles_take_the_training(tiny_cifar):
    _, trainer, _ = fit(tiny_cifar, None, max_epochs=3, sgdr={"lr": 0.1, "num_cycle": 2})
    scheduler = next(c for c in trainer.callbacks if isinstance(c, TrainingPhaseScheduler))
    # sgdr's default cycle_len 1: warm-up 1/20 epoch (0.3 steps -> 0), then 1 epoch, then 2 epochs
    assert scheduler.ends == [0, BATCHES, 3 * BATCHES]

