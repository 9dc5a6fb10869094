"""The TrainingPhase arithmetic without a Trainer: decay formulas, ranges, phase ends, locating a batch, and
writing lr and momentum into optimizers, each against a formula or a count written out here."""

import math
from types import SimpleNamespace

import pytest
import torch

from callbacks import DecayType, TrainingPhase, TrainingPhaseScheduler, UserError
from callbacks.phase_scheduler import build_optimizer, set_momentum
from callbacks.training_phase import annealed, decay_type, optimizer_class


@pytest.mark.parametrize("pct", [0.0, 0.2, 0.5, 0.9, 1.0])
def test_each_decay_is_the_seeds_formula(pct):
    start, end, p = 0.8, 0.05, 3.0
    assert annealed(start, end, pct, "no") == start
    assert annealed(start, end, pct, "linear") == pytest.approx(start + pct * (end - start))
    assert annealed(start, end, pct, "cosine") == pytest.approx(end + (start - end) * (1 + math.cos(math.pi * pct)) / 2)
    assert annealed(start, end, pct, "exponential") == pytest.approx(start * (end / start) ** pct)
    assert annealed(start, end, pct, "polynomial", p) == pytest.approx(end + (start - end) * (1 - pct) ** p)
    assert annealed(start, end, pct, DecayType.POLYNOMIAL) == pytest.approx(end + (start - end) * (1 - pct) ** 2)


def test_decay_names_in_any_case_and_a_bad_one_named():
    assert decay_type("COSINE") is DecayType.COSINE and decay_type(DecayType.NO) is DecayType.NO
    with pytest.raises(ValueError, match="'cubic' is not a valid DecayType"):
        decay_type("cubic")


def test_ranges_a_single_value_stays_put_or_decays_to_zero():
    assert TrainingPhase(1, lr=0.3).lr_range == (0.3, 0.3)
    assert TrainingPhase(1, lr=0.3, lr_decay="linear").lr_range == (0.3, 0.0)
    assert TrainingPhase(1, lr=(0.3, 0.1), lr_decay="cosine").lr_range == (0.3, 0.1)
    phase = TrainingPhase(1, lr=(0.4, 0.1), lr_decay=(DecayType.POLYNOMIAL, 3), momentum=(0.95, 0.85),
                          momentum_decay="linear")
    assert phase.lr_at(0.5) == pytest.approx(0.1 + 0.3 * 0.5**3)
    assert phase.momentum_at(0.5) == pytest.approx(0.9) and phase.momentum_at(1.0) == pytest.approx(0.85)
    assert TrainingPhase(1, momentum=None).momentum_range is None and TrainingPhase(1).momentum_range == (0.9, 0.9)


def test_lr_and_momentum_each_keep_their_own_polynomial_exponent():
    """The seed's TrainingPhase takes (POLYNOMIAL, p) for each (extra_lr, extra_mom); `power` is the default."""
    both = TrainingPhase(1, lr=(0.4, 0.0), lr_decay=("polynomial", 3), momentum=(0.95, 0.85),
                         momentum_decay=["polynomial", 0.5])  # a list: as it comes from YAML
    assert both.lr_at(0.5) == pytest.approx(0.4 * 0.5**3)  # end + (start - end) (1 - pct)^p
    assert both.momentum_at(0.5) == pytest.approx(0.85 + 0.1 * 0.5**0.5)
    default = TrainingPhase(1, lr=(0.4, 0.0), lr_decay=("polynomial", 3), momentum=(0.95, 0.85),
                            momentum_decay="polynomial", power=1.5)
    assert default.momentum_at(0.5) == pytest.approx(0.85 + 0.1 * 0.5**1.5)  # power, not lr's 3


@pytest.mark.parametrize("kwargs", [{"epochs": 0}, {"epochs": 1, "lr": (0.1, 0.0), "lr_decay": "exponential"},
                                    {"epochs": 1, "momentum": (0.0, 0.9), "momentum_decay": "exponential"}])
def test_zero_epochs_and_exponential_decays_to_zero_are_refused(kwargs):
    with pytest.raises(ValueError):
        TrainingPhase(**kwargs)


def test_exponential_decay_between_positive_values_is_accepted():
    assert TrainingPhase(1, lr=(0.1, 0.001), lr_decay="exponential").lr_at(0.5) == pytest.approx(0.01)


def test_optimizer_by_name_dotted_path_or_class():
    assert optimizer_class("SGD") is torch.optim.SGD is optimizer_class("torch.optim.SGD")
    assert optimizer_class(torch.optim.Adam) is torch.optim.Adam
    with pytest.raises(ValueError, match="unknown optimizer 'math.pi'"):
        optimizer_class("math.pi")


def scheduler(*epochs):
    return TrainingPhaseScheduler([TrainingPhase(e) for e in epochs], plot=False)


def test_phase_ends_are_rounded_once_from_the_cumulative_epochs():
    # 0.3 + 0.3 + 0.4 epochs of 10 batches: 3, 6, 10 (cumulative 0.3, 0.6, 1.0); rounding each length alone
    # would still give 3 + 3 + 4; with 7 batches: 2.1, 4.2, 7 -> 2, 4, 7
    assert scheduler(0.3, 0.3, 0.4).phase_ends(10) == [3, 6, 10]
    assert scheduler(0.3, 0.3, 0.4).phase_ends(7) == [2, 4, 7]
    assert scheduler(1 / 3, 1 / 3, 1 / 3).phase_ends(10) == [3, 7, 10]  # not 3, 6, 9


def test_locate_gives_the_phase_and_the_fraction_done():
    s = scheduler(0.5, 1.0)
    s.ends = [3, 9]
    assert [s.locate(b) for b in range(10)] == [(0, 0.0), (0, 1 / 3), (0, 2 / 3), (1, 0.0), (1, 1 / 6), (1, 2 / 6),
                                                (1, 3 / 6), (1, 4 / 6), (1, 5 / 6), None]


@pytest.mark.parametrize("batches, accumulate, steps", [(6, 1, 6), (6, 3, 2), (6, 4, 2), (7, 2, 4), (1, 4, 1)])
def test_an_epoch_is_ceil_batches_over_accumulate_optimizer_steps(batches, accumulate, steps):
    trainer = SimpleNamespace(num_training_batches=batches, accumulate_grad_batches=accumulate)
    assert TrainingPhaseScheduler.steps_per_epoch(trainer) == steps


def test_set_momentum_writes_sgd_momentum_and_adam_beta1_only():
    sgd = {"momentum": 0.0}
    adam = {"betas": (0.9, 0.999)}
    other = {"lr": 0.1}
    set_momentum(sgd, 0.8), set_momentum(adam, 0.7), set_momentum(other, 0.6)
    assert sgd == {"momentum": 0.8} and adam == {"betas": (0.7, 0.999)} and other == {"lr": 0.1}


def test_momentum_zero_or_on_sgd_adds_no_rmsprop_buffer():
    param = torch.nn.Parameter(torch.ones(2))
    sgd = torch.optim.SGD([param], lr=0.1, momentum=0.0)
    param.grad = torch.ones(2)
    sgd.step()
    set_momentum(sgd.param_groups[0], 0.9, sgd)
    assert "momentum_buffer" not in sgd.state[param] or sgd.state[param]["momentum_buffer"] is None
    rms = torch.optim.RMSprop([param], lr=0.1)
    rms.step()
    set_momentum(rms.param_groups[0], 0.0, rms)
    assert "momentum_buffer" not in rms.state[param]
    set_momentum(rms.param_groups[0], 0.5, rms)
    assert torch.equal(rms.state[param]["momentum_buffer"], torch.zeros(2))


def test_build_optimizer_keeps_the_groups_and_takes_the_phase_class_momentum_and_kwargs():
    a, b = torch.nn.Parameter(torch.ones(1)), torch.nn.Parameter(torch.ones(1))
    old = torch.optim.Adam([{"params": [a], "lr": 0.1, "weight_decay": 0.01, "name": "weights"},
                            {"params": [b], "lr": 0.2, "name": "bn_biases"}])
    new = build_optimizer(TrainingPhase(1, "SGD", momentum=(0.95, 0.85), momentum_decay="linear",
                                        opt_kwargs={"nesterov": True}), old)
    assert isinstance(new, torch.optim.SGD)
    assert [g["params"] for g in new.param_groups] == [[a], [b]]
    assert [g["name"] for g in new.param_groups] == ["weights", "bn_biases"]  # LearningRateMonitor's chart names
    assert [g["lr"] for g in new.param_groups] == [0.1, 0.2] and new.param_groups[0]["weight_decay"] == 0.01
    assert new.param_groups[1]["momentum"] == 0.95 and new.param_groups[1]["nesterov"]
    rms = build_optimizer(TrainingPhase(1, "RMSprop", momentum=None), old)
    assert rms.param_groups[0]["momentum"] == 0  # left to the class


def test_apply_writes_lr_times_multiplier_momentum_and_weight_decay_into_every_group():
    a, b = torch.nn.Parameter(torch.ones(1)), torch.nn.Parameter(torch.ones(1))
    # the first group has the model's own lr_scale (DarknetClassifier's BatchNorm biases): it multiplies too
    optimizer = torch.optim.SGD([{"params": [a], "lr_scale": 4.0}, {"params": [b]}], lr=1.0, momentum=0.5)
    phases = [TrainingPhase(1, "SGD", (0.4, 0.0), "linear", momentum=(0.8, 0.9), momentum_decay="linear",
                            weight_decay=1e-3, lr_multipliers=[0.5, 2.0], data={"image_size": 28})]
    s = TrainingPhaseScheduler(phases, plot=False)
    s.ends, s.batches_seen, s._optimizer_key = [8], 2, (torch.optim.SGD, ())
    trainer = SimpleNamespace(strategy=SimpleNamespace(optimizers=[optimizer]), optimizers=[optimizer],
                              datamodule=SimpleNamespace(image_size=32))
    s._enter(trainer, 0)
    s._apply(trainer)
    lr, momentum = 0.4 * (1 - 2 / 8), 0.8 + 0.1 * 2 / 8
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.5 * 4.0 * lr, 2.0 * lr])
    assert [g["momentum"] for g in optimizer.param_groups] == pytest.approx([momentum] * 2)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [1e-3, 1e-3]
    assert trainer.datamodule.image_size == 28
    s.batches_seen = 8  # past the phases: left alone
    optimizer.param_groups[0]["lr"] = 7.0
    s._apply(trainer)
    assert optimizer.param_groups[0]["lr"] == 7.0


def test_sgdr_cycles_grow_by_powers_of_cycle_mult():
    from callbacks import sgdr
    phases = sgdr(lr=0.1, num_cycle=4, cycle_len=1, cycle_mult=3)
    assert [p.epochs for p in phases] == pytest.approx([0.05, 0.95, 3, 9, 27])


class FakeTrainer:
    """What _enter and _apply use of a Trainer: its optimizers are the strategy's, as in Lightning."""

    def __init__(self, optimizer, datamodule=None):
        self.strategy, self.datamodule = SimpleNamespace(optimizers=[optimizer]), datamodule

    @property
    def optimizers(self):
        return self.strategy.optimizers


def nesterov_sgd_reference(param, grads, lrs, momentum):
    """torch's SGD(nesterov=True) written out: one momentum buffer, from the first gradient on."""
    p, buffer = param.clone(), None
    for grad, lr in zip(grads, lrs, strict=True):
        buffer = grad.clone() if buffer is None else momentum * buffer + grad
        p = p - lr * (grad + momentum * buffer)
    return p


GRADS = [torch.tensor([1.0, -2.0]), torch.tensor([0.5, 1.0]), torch.tensor([-1.0, 0.5]), torch.tensor([2.0, 1.0])]


def run_phases(phases, optimizer, param):
    """Two 2-step phases driven as on_fit_start and every batch do: enter phase 0, then apply before each step."""
    s = TrainingPhaseScheduler(phases, plot=False)
    s.ends, trainer = [2, 4], FakeTrainer(optimizer)
    s._enter(trainer, 0)
    for batch, grad in enumerate(GRADS):
        s.batches_seen = batch
        s._apply(trainer)
        param.grad = grad
        trainer.optimizers[0].step()
    return trainer.optimizers[0]


def test_the_models_optimizer_is_kept_when_the_first_phase_asks_for_its_class():
    # the model's SGD is nesterov; a phase "SGD" without opt_kwargs keeps it (a rebuilt one would not be)
    param = torch.nn.Parameter(torch.tensor([1.0, -1.0]))
    expected = nesterov_sgd_reference(param.detach(), GRADS, [0.1, 0.1, 0.05, 0.05], 0.9)
    model_optimizer = torch.optim.SGD([param], lr=1.0, momentum=0.5, nesterov=True)
    phases = [TrainingPhase(1, "SGD", 0.1, momentum=0.9), TrainingPhase(1, "SGD", 0.05, momentum=0.9)]
    assert run_phases(phases, model_optimizer, param) is model_optimizer
    assert torch.allclose(param.detach(), expected)


def test_phases_asking_for_the_same_optimizer_keep_its_momentum_across_the_boundary():
    # Adam -> SGD(nesterov) is built at phase 0; phase 1 asks for the same: same optimizer, buffer carried on
    param = torch.nn.Parameter(torch.tensor([1.0, -1.0]))
    expected = nesterov_sgd_reference(param.detach(), GRADS, [0.1, 0.1, 0.05, 0.05], 0.9)
    phases = [TrainingPhase(1, "SGD", 0.1, momentum=0.9, opt_kwargs={"nesterov": True}),
              TrainingPhase(1, "SGD", 0.05, momentum=0.9, opt_kwargs={"nesterov": True})]
    assert isinstance(run_phases(phases, torch.optim.Adam([param], lr=1.0), param), torch.optim.SGD)
    assert torch.allclose(param.detach(), expected)


def test_opt_kwargs_go_over_the_carried_group_settings():
    # a review's run: AdamW(weight_decay=0.05) was built with the model SGD's 1e-4
    param = torch.nn.Parameter(torch.ones(1))
    old = torch.optim.SGD([param], lr=0.1, momentum=0.9, weight_decay=1e-4)
    new = build_optimizer(TrainingPhase(1, "AdamW", 1e-3, opt_kwargs={"weight_decay": 0.05}), old)
    assert new.param_groups[0]["weight_decay"] == 0.05
    assert build_optimizer(TrainingPhase(1, "AdamW", 1e-3), old).param_groups[0]["weight_decay"] == 1e-4


def test_a_later_phase_of_the_models_optimizer_class_is_built_with_the_models_settings():
    # SGD(nesterov) -> AdamW -> SGD: the third phase's SGD was plain, where the first (the model's own) was nesterov
    param = torch.nn.Parameter(torch.tensor([1.0, -1.0]))
    model_optimizer = torch.optim.SGD([param], lr=1.0, momentum=0.9, nesterov=True, weight_decay=5e-4, dampening=0)
    s = TrainingPhaseScheduler([TrainingPhase(1, "SGD", 0.1), TrainingPhase(1, "AdamW", 1e-3),
                                TrainingPhase(1, "SGD", 0.1)], plot=False)
    trainer = FakeTrainer(model_optimizer)
    built = []
    for index in range(3):
        s._enter(trainer, index)
        built.append(trainer.optimizers[0])
    assert built[0] is model_optimizer and isinstance(built[1], torch.optim.AdamW)
    third = built[2].param_groups[0]
    assert isinstance(built[2], torch.optim.SGD) and built[2] is not model_optimizer  # fresh state, as the seed's
    assert third["nesterov"] and third["weight_decay"] == 5e-4 and third["params"] == [param]


@pytest.mark.parametrize("kwargs, message", [
    ({"opt_kwargs": {"lr": 0.1}}, r"opt_kwargs lr is set by the phase itself every step: give the phase's lr instead$"),
    ({"opt_kwargs": {"momentum": 0.5}}, r"opt_kwargs momentum is set by the phase .* give the phase's momentum"),
    ({"opt_fn": "Adam", "opt_kwargs": {"betas": (0.8, 0.99)}}, r"give the phase's momentum \(beta1\) and beta"),
    ({"opt_fn": "Adam", "momentum": None, "beta": 0.99, "opt_kwargs": {"betas": (0.8, 0.9)}}, r"momentum \(beta1\)"),
    ({"opt_fn": "RMSprop", "beta": 0.9, "opt_kwargs": {"alpha": 0.99}}, r"opt_kwargs alpha .* the phase's beta"),
    ({"weight_decay": 0.1, "opt_kwargs": {"weight_decay": 0.2}}, r"opt_kwargs weight_decay .* phase's weight_decay"),
])
def test_opt_kwargs_the_phase_would_overwrite_every_step_are_refused(kwargs, message):
    with pytest.raises(UserError, match=message):
        TrainingPhase(1, **kwargs)


def test_opt_kwargs_betas_hold_when_the_phase_sets_neither_momentum_nor_beta():
    assert TrainingPhase(1, "Adam", momentum=None, opt_kwargs={"betas": (0.8, 0.9)}).opt_kwargs == {"betas": (0.8, 0.9)}


def test_opt_kwargs_momentum_holds_when_the_phase_leaves_momentum_alone():
    param = torch.nn.Parameter(torch.ones(1))
    phase = TrainingPhase(1, "SGD", 0.1, momentum=None, opt_kwargs={"momentum": 0.5})
    s, trainer = TrainingPhaseScheduler([phase], plot=False), FakeTrainer(torch.optim.Adam([param]))
    s.ends = [4]
    s._enter(trainer, 0)
    s._apply(trainer)
    assert trainer.optimizers[0].param_groups[0]["momentum"] == 0.5


@pytest.mark.parametrize("datamodule", [None, SimpleNamespace(image_size=32),
                                        SimpleNamespace(image_size=32, hparams={"batch_size": 512})],
                         ids=["no-datamodule", "no-attribute", "a-data-argument"])
def test_a_phase_setting_a_data_attribute_the_datamodule_lacks_is_refused(datamodule):
    s = TrainingPhaseScheduler([TrainingPhase(1, "SGD", data={"batch_size": 8})], plot=False)
    trainer = FakeTrainer(torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.1), datamodule)
    with pytest.raises(ValueError, match="phase 0 sets data attribute 'batch_size', which the DataModule does not"
                                         "(?s:.*)") as refused:
        s._enter(trainer, 0)
    # a --data argument (fastai 0.7's per-phase data changed the batch size): the message says why a phase cannot
    assert ("--data.batch_size is read once" in str(refused.value)) == hasattr(datamodule, "hparams")
    assert datamodule is None or not hasattr(datamodule, "batch_size")
