"""A TrainingPhase as written: decays, betas and YAML as the README writes them, and the ones refused in one line."""

import functools

import pytest
import torch

from callbacks import DecayType, TrainingPhase, UserError
from callbacks.training_phase import one_cycle, sgdr

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets: threads only add contention


def test_a_decay_given_one_lr_goes_to_zero_and_polynomial_takes_the_seed_tuple():
    phase = TrainingPhase(epochs=1, lr=0.4, lr_decay=(DecayType.POLYNOMIAL, 3))
    assert phase.lr_at(0.0) == 0.4 and phase.lr_at(0.5) == pytest.approx(0.4 * 0.5**3)
    assert TrainingPhase(epochs=1, lr=0.4, lr_decay="cosine").lr_at(1.0) == pytest.approx(0.0)


@pytest.mark.parametrize("decay", [("polynomial",), ["polynomial", 2, 3], ("polynomial", "abc"),
                                   ("polynomial", None), ("polynomial", True), []])
@pytest.mark.parametrize("field", ["lr_decay", "momentum_decay"])
def test_a_decay_pair_that_is_not_polynomial_and_a_number_is_one_line(decay, field):
    """[polynomial] without its exponent (a YAML slip) stopped with a 129-line unpacking traceback; a string exponent
    trained until the first step's pow raised."""
    with pytest.raises(UserError, match=rf"{field} .*a pair is \[polynomial, p\]"):
        TrainingPhase(epochs=1, lr=(0.4, 0.1), momentum=(0.9, 0.8), **{field: decay})
    phase = TrainingPhase(epochs=1, lr=0.4, momentum=(0.9, 0.5), momentum_decay=["polynomial", 1])  # a list, an int
    assert phase.momentum_at(0.5) == pytest.approx(0.5 + 0.4 * 0.5)


@pytest.mark.parametrize("kwargs, message", [
    ({"epochs": -1}, "epochs > 0"),
    ({"epochs": 1, "lr": 0.1, "lr_decay": "exponential"}, "EXPONENTIAL lr decay needs a .start, end. pair"),
    ({"epochs": 1, "opt_fn": "Adamm"}, "unknown optimizer 'Adamm'; use one of .*Adam"),
    ({"epochs": 1, "lr_decay": "cubic"}, "lr_decay 'cubic' is not a valid DecayType"),
    ({"epochs": 1, "momentum_decay": "cos"}, "momentum_decay 'cos' is not a valid DecayType; use one of no, linear, "
                                             "cosine"),
    ({"epochs": 1, "lr": -0.1}, r"lr -0.1: a learning rate is >= 0"),
    ({"epochs": 1, "lr": (0.1, -0.01), "lr_decay": "linear"}, r"lr \(0.1, -0.01\): a learning rate is >= 0"),
    ({"epochs": 1, "momentum": 1.5}, "momentum 1.5: from 0 to 1"),
    ({"epochs": 1, "momentum": (0.9, -0.1), "momentum_decay": "linear"}, "momentum .*: from 0 to 1"),
])
def test_bad_phase_definitions_fail_clearly(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainingPhase(**kwargs)


def test_phases_written_in_yaml_as_in_the_readme_parse_to_the_same_phases():
    from jsonargparse import ArgumentParser
    parser = ArgumentParser()
    parser.add_argument("--phases", type=list[TrainingPhase])
    yaml = ("[{epochs: 1, opt_fn: RMSprop, lr: 1.0e-3, momentum: 0.9, data: {image_size: 28}},"
            " {epochs: 2.5, opt_fn: SGD, lr: [0.4, 0.004], lr_decay: cosine, momentum: 0.9,"
            " opt_kwargs: {nesterov: true}, data: {image_size: 32}}]")
    phases = parser.instantiate(parser.parse_args(["--phases", yaml])).phases
    assert phases == [TrainingPhase(1, "RMSprop", 1e-3, momentum=0.9, data={"image_size": 28}),
                      TrainingPhase(2.5, "SGD", (0.4, 0.004), DecayType.COSINE, momentum=0.9,
                                    opt_kwargs={"nesterov": True}, data={"image_size": 32})]


@pytest.mark.parametrize("beta", [1.0, -0.1, 1.5])
def test_beta_outside_zero_one_is_refused(beta):
    with pytest.raises(UserError, match=r"beta must be in \[0, 1\)"):
        TrainingPhase(1, "Adam", beta=beta)
    assert [TrainingPhase(1, "Adam", beta=b).beta for b in (0.0, 0.999)] == [0.0, 0.999]  # the ends it takes


def test_lr_decay_no_unquoted_in_yaml_is_no_decay():
    from jsonargparse import ArgumentParser
    parser = ArgumentParser()
    parser.add_argument("--phases", type=list[TrainingPhase])
    # YAML 1.1 reads an unquoted no as false: the README's spelling must still mean DecayType.NO
    phases = parser.instantiate(parser.parse_args(["--phases", "[{epochs: 1, lr: 0.1, lr_decay: no, momentum: "
                                                   "[0.9, 0.8], momentum_decay: no}]"])).phases
    assert phases[0].lr_decay is DecayType.NO and phases[0].momentum_decay is DecayType.NO
    assert phases[0].lr_at(0.5) == 0.1 and phases[0].momentum_at(0.5) == 0.9
    with pytest.raises(UserError, match="lr_decay 'True' is not a valid DecayType"):
        TrainingPhase(1, lr_decay=True)



def test_the_seeds_positional_order_puts_beta_and_weight_decay_seventh_and_eighth():
    """fastai 0.7's TrainingPhase(epochs, opt_fn, lr, lr_decay, momentum, momentum_decay, beta, wds): its 7th
    argument was read as the polynomial exponent."""
    phase = TrainingPhase(1, "Adam", 1e-3, DecayType.NO, 0.9, DecayType.NO, 0.99, 1e-4)
    assert (phase.beta, phase.weight_decay, phase.power) == (0.99, 1e-4, 2.0)
    assert TrainingPhase(0.5, lr=0, momentum=(0, 1), momentum_decay="linear").lr_at(0.5) == 0  # the ends taken


def test_an_optimizer_given_as_a_partial_is_its_class_and_options():
    """fastai's habit, partial(optim.Adam, betas=...), failed with an AttributeError; a lambda or an optimizer built
    already cannot give each phase a new one of its class."""
    phase = TrainingPhase(1, functools.partial(torch.optim.Adam, eps=1e-6, amsgrad=True), momentum=None,
                          opt_kwargs={"eps": 1e-7})
    assert phase.opt_class is torch.optim.Adam and phase.opt_kwargs == {"eps": 1e-7, "amsgrad": True}
    with pytest.raises(UserError, match="opt_kwargs betas is set by the phase itself every step: give the phase's "
                                        "momentum"):  # the phase's momentum would overwrite them at every step
        TrainingPhase(1, functools.partial(torch.optim.Adam, betas=(0.9, 0.99)))
    with pytest.raises(UserError, match="give the optimizer's options by name"):
        TrainingPhase(1, functools.partial(torch.optim.Adam, [torch.zeros(1)]))
    for wrong, shown in ((lambda params: torch.optim.SGD(params, lr=0.1), "<lambda>"),
                         (torch.optim.SGD([torch.zeros(1)], lr=0.1), "a SGD built already")):
        with pytest.raises(UserError, match=rf"opt_fn {shown}: give an optimizer class, its name .* or "
                                            rf"functools.partial"):
            TrainingPhase(1, wrong)


def test_sgdr_needs_a_cycle_and_a_one_cycle_pct_below_one_is_read_as_a_percentage(recwarn):
    with pytest.raises(UserError, match="sgdr's num_cycle is the number of cosine cycles, at least 1 .got 0."):
        sgdr(0.1, num_cycle=0)
    phases = one_cycle(10, 1.0, pct=0.2)  # 0.2% of the cycle in the last phase, as the seed reads it
    assert phases[-1].epochs == pytest.approx(0.02)
    said = [str(w.message) for w in recwarn if "one_cycle's pct" in str(w.message)]
    assert said == ["one_cycle's pct is a percentage of the cycle, as the seed's use_clr_beta: 0.2 is 0.2% (the last "
                    "stretch, down to lr/(100 div)); for 20%, give pct 20"]
    recwarn.clear()
    for pct in (20, 1, 0):  # 1%, and no last stretch, are no fractions
        one_cycle(10, 1.0, pct=pct)
    assert not [w for w in recwarn if "one_cycle's pct" in str(w.message)]
    assert len(sgdr(0.1, num_cycle=1)) == 2  # one cycle: its warm-up and its cosine
