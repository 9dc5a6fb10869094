"""The seed's TrainingPhase API (DL2 2018 lesson 13, "TrainPhase"; fastai 0.7 `fit_opt_sched`) as a callback.

A training is a list of phases; each has a length in epochs (fractions allowed), an optimizer, and lr and
momentum that stay put or decay from a start to an end value. 1cycle and SGDR are lists of phases.
"""

import functools
import math
from dataclasses import dataclass, field
from enum import Enum

import torch
from lightning.pytorch.utilities import rank_zero_warn

from callbacks.errors import UserError

Pair = float | tuple[float, float]


class DecayType(str, Enum):
    NO = "no"
    LINEAR = "linear"
    COSINE = "cosine"
    EXPONENTIAL = "exponential"
    POLYNOMIAL = "polynomial"


def decay_type(value: DecayType | str | bool, name: str = "decay") -> DecayType:
    """DecayType.COSINE, "cosine" or "COSINE"; False is "no" as YAML 1.1 reads it unquoted (lr_decay: no).
    `name`: the field, for the error."""
    if isinstance(value, DecayType):
        return value
    if value is False:
        return DecayType.NO
    try:  # True too, an unquoted yes/on/true: no decay is called that ("true" is no DecayType)
        return DecayType(str(value).lower())
    except ValueError:
        raise UserError(f"{name} '{value}' is not a valid DecayType; use one of "
                        f"{', '.join(d.value for d in DecayType)}") from None


def decay_and_power(value, power: float, name: str) -> tuple:
    """A decay and its exponent: the seed's (DecayType.POLYNOMIAL, p) pair, or a decay alone with `power`."""
    if not isinstance(value, (tuple, list)):
        return value, power
    if len(value) != 2 or isinstance(value[1], bool) or not isinstance(value[1], (int, float)):
        raise UserError(f"{name} {list(value)}: a pair is [polynomial, p], p the exponent (the seed's "
                        f"(DecayType.POLYNOMIAL, p)); e.g. [polynomial, 3], or polynomial alone (exponent: the "
                        f"phase's power)")
    return value[0], float(value[1])


def annealed(start: float, end: float, pct: float, decay: DecayType, power: float = 2.0) -> float:
    """The seed's DecayScheduler at pct = i / n of a phase (i: iteration within the phase, n: its length)."""
    decay = decay_type(decay)
    if decay is DecayType.NO:
        return start
    if decay is DecayType.LINEAR:
        return start + (end - start) * pct
    if decay is DecayType.COSINE:
        return end + (start - end) / 2 * (1 + math.cos(math.pi * pct))
    if decay is DecayType.EXPONENTIAL:
        return start * (end / start) ** pct
    return end + (start - end) * (1 - pct) ** power


def optimizer_class(opt_fn: str | type) -> type[torch.optim.Optimizer]:
    """`SGD`, `torch.optim.RMSprop`, `my.module.MyOptimizer` or a class itself."""
    if isinstance(opt_fn, type):
        return opt_fn
    if not isinstance(opt_fn, str):  # a lambda or an optimizer built already: its class cannot be rebuilt per phase
        shown = getattr(opt_fn, "__name__", None) or f"a {type(opt_fn).__name__} built already"
        raise UserError(f"opt_fn {shown}: give an optimizer class, its name (SGD, Adam, a dotted path) or "
                        f"functools.partial(class, **options) (fastai's habit; or the class and opt_kwargs)")
    module, _, name = opt_fn.rpartition(".")
    try:
        found = getattr(__import__(module or "torch.optim", fromlist=[name]), name)
    except (ImportError, AttributeError):
        found = None
    # the base class too: it takes no lr, and a phase of it failed at its start with a TypeError
    if (not (isinstance(found, type) and issubclass(found, torch.optim.Optimizer))
            or found is torch.optim.Optimizer):
        known = sorted(n for n, c in vars(torch.optim).items() if isinstance(c, type)
                       and issubclass(c, torch.optim.Optimizer) and c is not torch.optim.Optimizer)
        raise UserError(f"unknown optimizer {opt_fn!r}; use one of {', '.join(known)} or a dotted class path")
    return found


@dataclass
class TrainingPhase:
    """One phase of training (the seed's TrainingPhase).

    Args:
        epochs: length in epochs of the first data; fractions allowed (0.5 = half an epoch of batches).
        opt_fn: optimizer class or its name (`SGD`, `RMSprop`, `Adam`, a dotted path), or functools.partial of a
            class, whose keywords go to opt_kwargs.
        lr: a value, or (start, end) for a decay; a decay given one value goes to 0, as in the seed.
        lr_decay: how lr goes from start to end; (POLYNOMIAL, p) also accepted, as in the seed (p for lr only).
        momentum: SGD or RMSprop momentum, Adam's beta1; a value or (start, end). 0.9 by default, as fastai's
            TrainingPhase: it is always set, so two phases written alike train alike whatever optimizer the
            previous phase left (a rebuilt optimizer would otherwise get torch's default, 0 for SGD and
            RMSprop). None leaves it to the optimizer (e.g. the GANs' RMSprop without momentum, or Adam's
            own betas); a phase that switches the optimizer class then gets the class's default.
        momentum_decay: as lr_decay, for momentum; (POLYNOMIAL, p) sets momentum's own exponent (the seed's
            extra_mom).
        beta: Adam-type optimizers' beta2, RMSprop's alpha (the seed's beta); None keeps what the optimizer has.
        weight_decay: the seed's wds: a value, set on every parameter group for this phase times the group's
            `weight_decay_scale` where the model gives one (the Darknet's no_decay_bn_bias groups: 0), or one value
            per group, set as given; None keeps what the optimizer has.
        power: exponent p of the POLYNOMIAL decays not given as (POLYNOMIAL, p).
        lr_multipliers: discriminative learning rates, one factor per parameter group (e.g. [1/9, 1/3, 1]).
        opt_kwargs: other keyword arguments of the optimizer (eps, nesterov, ...).
        data: attributes of the DataModule set when the phase starts (e.g. {image_size: 28}).
    """

    epochs: float
    opt_fn: str | type = "SGD"
    lr: Pair = 1e-2
    lr_decay: DecayType | str | bool | tuple = DecayType.NO
    momentum: Pair | None = 0.9
    momentum_decay: DecayType | str | bool | tuple = DecayType.NO
    beta: float | None = None  # beta and weight_decay (wds) 7th and 8th, as in the seed's TrainingPhase
    weight_decay: float | list[float] | None = None
    power: float = 2.0
    lr_multipliers: list[float] | None = None
    opt_kwargs: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)

    def __post_init__(self):
        if not self.epochs > 0:
            raise UserError(f"a TrainingPhase needs epochs > 0 (got {self.epochs})")
        if isinstance(self.opt_fn, functools.partial):  # fastai's partial(optim.Adam, betas=...)
            if self.opt_fn.args:
                raise UserError(f"opt_fn {self.opt_fn!r}: give the optimizer's options by name (the parameters come "
                                f"first)")
            self.opt_kwargs = {**self.opt_fn.keywords, **self.opt_kwargs}
            self.opt_fn = self.opt_fn.func
        if self.beta is not None and not 0 <= self.beta < 1:
            raise UserError(f"beta must be in [0, 1) (got {self.beta}): at 1 Adam's bias correction divides by 0, "
                            "above it RMSprop's average of squares turns negative")
        self.lr_decay, self.lr_power = decay_and_power(self.lr_decay, self.power, "lr_decay")
        self.momentum_decay, self.momentum_power = decay_and_power(self.momentum_decay, self.power, "momentum_decay")
        self.lr_decay = decay_type(self.lr_decay, "lr_decay")
        self.momentum_decay = decay_type(self.momentum_decay, "momentum_decay")
        own = {"lr": "lr", "momentum": "momentum" * (self.momentum is not None),
               "betas": "momentum (beta1) and beta (beta2)" * (self.momentum is not None or self.beta is not None),
               "alpha": "beta" * (self.beta is not None),
               "weight_decay": "weight_decay" * (self.weight_decay is not None)}
        if clash := next((key for key in self.opt_kwargs if own.get(key)), None):  # the phase would overwrite them
            fix = "" if clash == "lr" else " (or null there, to leave it to opt_kwargs)"
            raise UserError(f"opt_kwargs {clash} is set by the phase itself every step: give the phase's "
                            f"{own[clash]} instead{fix}")
        self.opt_class = optimizer_class(self.opt_fn)
        self.lr_range = self._range(self.lr, self.lr_decay, "lr")
        self.momentum_range = None if self.momentum is None else self._range(self.momentum, self.momentum_decay,
                                                                             "momentum")
        if min(self.lr_range) < 0:
            raise UserError(f"lr {self.lr}: a learning rate is >= 0 (a negative one climbs the loss)")
        if self.momentum_range is not None and not all(0 <= m <= 1 for m in self.momentum_range):
            raise UserError(f"momentum {self.momentum}: from 0 to 1 (SGD's and RMSprop's momentum, Adam's beta1)")

    @staticmethod
    def _range(value, decay, name) -> tuple[float, float]:
        if isinstance(value, (tuple, list)):
            start, end = map(float, value)
        else:
            start, end = float(value), (float(value) if decay is DecayType.NO else 0.0)
        if decay is DecayType.EXPONENTIAL and (start <= 0 or end <= 0):
            raise UserError(f"EXPONENTIAL {name} decay needs a (start, end) pair of positive values, got {value}: "
                             "an exponential never reaches 0; give an end value or use LINEAR, COSINE, POLYNOMIAL")
        return start, end

    def lr_at(self, pct: float) -> float:
        return annealed(*self.lr_range, pct, self.lr_decay, self.lr_power)

    def momentum_at(self, pct: float) -> float | None:
        return None if self.momentum_range is None else annealed(*self.momentum_range, pct, self.momentum_decay,
                                                                 self.momentum_power)


def check_share(recipe: str, name: str, value: float, whole: float = 1) -> None:
    """A recipe's share of the cycle, from 0 to `whole` (1, or 100 for a percentage; an empty part is left out),
    else a UserError naming the option."""
    if not 0 <= value <= whole:
        raise UserError(f"{recipe}'s {name} is a {'percentage' if whole == 100 else 'fraction'} of the cycle, from 0 "
                        f"to {whole:g} (got {value:g})")


def one_cycle(cycle_len: float, lr: float, div: float = 10, pct: float = 10, max_mom: float = 0.95,
              min_mom: float = 0.85, opt_fn: str | type = "SGD", **phase_kwargs) -> list[TrainingPhase]:
    """The seed's phases_1cycle, fastai 0.7's `use_clr_beta=(div, pct, max_mom, min_mom)`.

    lr/div up to lr and back over (100 - pct)% of the cycle with momentum mirrored, then down to lr/(100 div).
    """
    check_share("one_cycle", "pct", pct, 100)
    if 0 < pct < 1:  # read as a fraction, as fastai 2's pct_start: 20% meant, 0.2% given
        rank_zero_warn(f"one_cycle's pct is a percentage of the cycle, as the seed's use_clr_beta: {pct:g} is "
                       f"{pct:g}% (the last stretch, down to lr/(100 div)); for {pct * 100:g}%, give pct {pct * 100:g}")
    triangle = (1 - pct / 100) * cycle_len
    return [TrainingPhase(length, opt_fn, lrs, "linear", momentum, decay, **phase_kwargs)
            for length, lrs, momentum, decay in (
                (triangle / 2, (lr / div, lr), (max_mom, min_mom), "linear"),
                (triangle / 2, (lr, lr / div), (min_mom, max_mom), "linear"),
                (cycle_len - triangle, (lr / div, lr / (100 * div)), max_mom, "no")) if length > 0]


def triangle(cycle_len: float, lr: float, start: float = 0.2, peak: float = 0.23, end: float = 0.07,
             momentum: float = 0.85, opt_fn: str | type = "SGD", **phase_kwargs) -> list[TrainingPhase]:
    """airbench94's lr shape (Jordan 2024, arXiv:2404.00498; its defaults): linear from start * lr up to lr over
    the first `peak` fraction of the cycle, then linear down to end * lr; momentum constant."""
    check_share("triangle", "peak", peak)
    return [TrainingPhase(length, opt_fn, lrs, "linear", momentum, **phase_kwargs)
            for length, lrs in ((peak * cycle_len, (start * lr, lr)), ((1 - peak) * cycle_len, (lr, end * lr)))
            if length > 0]


def one_cycle_cos(cycle_len: float, lr: float, div: float = 25, div_final: float = 1e5, pct_start: float = 0.25,
                  moms: tuple[float, float, float] = (0.95, 0.85, 0.95), opt_fn: str | type = "SGD",
                  **phase_kwargs) -> list[TrainingPhase]:
    """fastai 2's fit_one_cycle (its defaults): lr cosine from lr/div up to lr over the first pct_start of the
    cycle, then cosine down to lr/div_final; momentum cosine from moms[0] to moms[1], then to moms[2]."""
    check_share("one_cycle_cos", "pct_start", pct_start)
    warm, anneal = pct_start * cycle_len, (1 - pct_start) * cycle_len
    return [TrainingPhase(length, opt_fn, lrs, "cosine", momentum, "cosine", **phase_kwargs)
            for length, lrs, momentum in ((warm, (lr / div, lr), moms[:2]), (anneal, (lr, lr / div_final), moms[1:]))
            if length > 0]


def flat_cos(cycle_len: float, lr: float, div_final: float = 1e5, pct_start: float = 0.75,
             momentum: float | None = None, opt_fn: str | type = "SGD", **phase_kwargs) -> list[TrainingPhase]:
    """fastai 2's fit_flat_cos (its defaults): lr constant for the first pct_start of the cycle, then cosine down
    to lr/div_final; momentum left to the optimizer, as fastai leaves it (or a constant `momentum`)."""
    check_share("flat_cos", "pct_start", pct_start)
    flat, anneal = pct_start * cycle_len, (1 - pct_start) * cycle_len
    return [TrainingPhase(length, opt_fn, lrs, decay, momentum, **phase_kwargs)
            for length, lrs, decay in ((flat, lr, "no"), (anneal, (lr, lr / div_final), "cosine")) if length > 0]


def sgdr(lr: float, opt_fn: str | type = "SGD", num_cycle: int = 3, cycle_len: float = 1, cycle_mult: float = 2,
         **phase_kwargs) -> list[TrainingPhase]:
    """The seed's phases_sgdr: a warm-up at lr/100 for 1/20 of the first cycle, then cosine restarts."""
    if num_cycle < 1:
        raise UserError(f"sgdr's num_cycle is the number of cosine cycles, at least 1 (got {num_cycle})")
    phases = [TrainingPhase(cycle_len / 20, opt_fn, lr / 100, **phase_kwargs),
              TrainingPhase(cycle_len * 19 / 20, opt_fn, lr, "cosine", **phase_kwargs)]
    phases += [TrainingPhase(cycle_len * cycle_mult**i, opt_fn, lr, "cosine", **phase_kwargs)
               for i in range(1, num_cycle)]
    return phases
