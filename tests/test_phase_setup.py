"""The phase scheduler's set-up and the phase types' names (the phase_setup and phase_types mutation targets)."""

import re

import pytest
import torch

from callbacks import TrainingPhase, TrainingPhaseScheduler, UserError
from callbacks.training_phase import DecayType, check_share, decay_type, optimizer_class

# --- phase_types: decay names, optimizer names, a recipe's share of the cycle ------------------------

def test_a_share_is_taken_from_0_to_the_whole_ends_included_and_refused_outside():
    for value in (0, 0.5, 1):  # a fraction of the cycle: whole 1
        check_share("triangle", "peak", value)
    for value in (0, 100, 99.5):  # a percentage: whole 100
        check_share("one_cycle", "pct", value, 100)
    for value in (-0.01, 1.01, 1.5):
        with pytest.raises(UserError, match=rf"triangle's peak is a fraction of the cycle, from 0 to 1 "
                                            rf"\(got {value:g}\)"):
            check_share("triangle", "peak", value)
    for value in (-1, 100.5):
        with pytest.raises(UserError, match=rf"one_cycle's pct is a percentage of the cycle, from 0 to 100 "
                                            rf"\(got {value:g}\)"):
            check_share("one_cycle", "pct", value, 100)


def test_decay_names_in_any_case_false_as_no_and_true_refused():
    assert [decay_type(name) for name in ("Linear", "polynomial", "EXPONENTIAL", "no")] == [
        DecayType.LINEAR, DecayType.POLYNOMIAL, DecayType.EXPONENTIAL, DecayType.NO]
    assert decay_type(DecayType.COSINE) is DecayType.COSINE and decay_type(False) is DecayType.NO
    with pytest.raises(UserError, match="'True' is not a valid DecayType; use one of no, linear, cosine"):
        decay_type(True)


def test_an_optimizer_is_a_torch_optim_name_or_a_dotted_optimizer_class_and_anything_else_is_refused():
    from lightning_modules.lbfgs import BatchLBFGS
    assert optimizer_class("RMSprop") is torch.optim.RMSprop
    assert optimizer_class("lightning_modules.lbfgs.BatchLBFGS") is BatchLBFGS
    for name in ("torch.nn.Linear", "torch.optim.Nope", "no_such_module.Optimizer", "Optimizer"):
        with pytest.raises(UserError, match=f"unknown optimizer '{name}'; use one of ") as error:
            optimizer_class(name)
        offered = re.search("use one of (.*) or a dotted class path", str(error.value))[1].split(", ")
        assert {"Adam", "AdamW", "SGD", "RMSprop", "LBFGS"} <= set(offered) and "Optimizer" not in offered
        assert offered == sorted(offered)


# --- phase_setup: one of phases or a recipe ------------------------------------------------------

def test_the_scheduler_takes_exactly_one_of_phases_or_a_recipe():
    phases = [TrainingPhase(1)]
    for kwargs, given in (({"phases": phases, "one_cycle": {}}, "phases and one_cycle"),
                          ({"sgdr": {"lr": 0.1}, "flat_cos": {}}, "sgdr and flat_cos"),
                          ({"phases": phases, "triangle": {}, "one_cycle_cos": {}},
                           "phases and triangle and one_cycle_cos")):
        with pytest.raises(UserError, match=f"TrainingPhaseScheduler got {given}: give exactly one"):
            TrainingPhaseScheduler(**kwargs)
    with pytest.raises(UserError, match="needs exactly one of phases, one_cycle, sgdr, triangle, one_cycle_cos, "
                                        "flat_cos$"):
        TrainingPhaseScheduler()
    with pytest.raises(UserError, match="got an empty list of phases"):
        TrainingPhaseScheduler([])
    assert TrainingPhaseScheduler(phases).phases == phases
    scheduler = TrainingPhaseScheduler(one_cycle={})  # an empty recipe: its defaults, its length from the training
    assert scheduler.recipe == ("one_cycle", {}) and scheduler.phases is None
    assert TrainingPhaseScheduler(flat_cos={"pct_start": 0.5}).recipe == ("flat_cos", {"pct_start": 0.5})
