"""TrainingPhaseScheduler: runs a list of TrainingPhase batch by batch (DL2 2018 lesson 13)."""

import bisect
import dataclasses
import inspect
import json
import math
from itertools import accumulate
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import StochasticWeightAveraging
from lightning.pytorch.utilities import rank_zero_warn

from callbacks import training_phase
from callbacks.checkpoint_io import replaced
from callbacks.errors import UserError
from callbacks.images import log_to_loggers, subplots
from callbacks.training_phase import TrainingPhase

# the recipes (functions of callbacks.training_phase) and the TrainingPhase fields each sets itself; the others it
# passes on from its keyword arguments
SCHEDULED = {"epochs", "opt_fn", "lr", "lr_decay"}
RECIPE_SETS = {"one_cycle": SCHEDULED | {"momentum", "momentum_decay"}, "sgdr": SCHEDULED,
               "triangle": SCHEDULED | {"momentum"}, "one_cycle_cos": SCHEDULED | {"momentum", "momentum_decay"},
               "flat_cos": SCHEDULED | {"momentum"}}
RECIPES = tuple(RECIPE_SETS)
DEFAULT_PHASE = TrainingPhase(epochs=1)


class TrainingPhaseScheduler(L.Callback):
    """Sets lr and momentum before every batch, switches the optimizer and the data at phase boundaries.

    Give exactly one of `phases` or a recipe: `one_cycle` (keyword arguments of `one_cycle()`), `sgdr` (of
    `sgdr()`), `triangle`, `one_cycle_cos` or `flat_cos` (of the functions of those names).
    Phase lengths are in epochs of the first data. The position is counted in optimizer steps (batches,
    unless `accumulate_grad_batches` > 1: then an epoch is ceil(batches / accumulate) steps, as Lightning
    also steps at an epoch's last batch) and saved in checkpoints, so a resumed run follows the same
    trajectory. With several optimizers (the GANs) each gets the same lr and momentum, keeps its class,
    and the position counts batches. After the last phase lr and momentum are left
    alone (e.g. for StochasticWeightAveraging's own schedule).

    Args:
        phases: the phases in order.
        one_cycle: e.g. {cycle_len: 30, lr: 1.3, div: 20, pct: 20, max_mom: 0.95, min_mom: 0.85}; without lr,
            the lr the model's optimizer was built with (so --model.lr and the LR finder apply); without
            cycle_len, the whole training (the trainer's max_epochs, or max_steps when set), or with a
            StochasticWeightAveraging callback the epochs before SWA sets the lr.
        sgdr: e.g. {lr: 0.1, opt_fn: SGD, num_cycle: 3, cycle_len: 1, cycle_mult: 2}; lr as for one_cycle.
        triangle: airbench94's shape, e.g. {start: 0.2, peak: 0.23, end: 0.07, momentum: 0.85}; lr and
            cycle_len as for one_cycle.
        one_cycle_cos: fastai 2's fit_one_cycle, e.g. {div: 25, div_final: 1e5, pct_start: 0.25, moms: [0.95,
            0.85, 0.95]}; lr and cycle_len as for one_cycle.
        flat_cos: fastai 2's fit_flat_cos, e.g. {pct_start: 0.75, div_final: 1e5}; lr and cycle_len as for
            one_cycle.
        set_max_steps: with automatic optimization and no trainer max_steps, stop when the phases end
            (fractional epochs are honoured); false to train on after them. Never with StochasticWeightAveraging,
            whose epochs and BatchNorm pass follow the phases (phases that reach into SWA's epochs are refused).
        plot: save the planned lr and momentum as lr_schedule.png in the run folder and log it to W&B.
        save_cycles: save a checkpoint at the end of each cycle, `cycle<k>-step=<N>.ckpt` beside the run's other
            checkpoints, for snapshot ensembles (Huang et al. 2017; fastai 0.7's cycle_save_name). sgdr's cycles
            are its restarts (its warm-up belongs to the first); the one-cycle recipes are one cycle, saved at their
            end; with `phases`, each phase is a cycle.
    """

    def __init__(self, phases: list[TrainingPhase] | None = None, one_cycle: dict | None = None,
                 sgdr: dict | None = None, set_max_steps: bool = True, plot: bool = True,
                 triangle: dict | None = None, one_cycle_cos: dict | None = None, flat_cos: dict | None = None,
                 save_cycles: bool = False):
        recipes = dict(zip(RECIPES, (one_cycle, sgdr, triangle, one_cycle_cos, flat_cos), strict=True))
        given = ["phases"] * (phases is not None) + [name for name, kw in recipes.items() if kw is not None]
        if len(given) > 1:  # most often a second --config whose scheduler LightningCLI merged into the shipped one
            raise UserError(f"TrainingPhaseScheduler got {' and '.join(given)}: give exactly one and set the others "
                            "to null (a second --config's scheduler is merged with the shipped config's, whose "
                            "recipe stays unless set to null)")
        if not given:
            raise UserError(f"TrainingPhaseScheduler needs exactly one of phases, {', '.join(RECIPES)}")
        if isinstance(phases, TrainingPhase):  # one phase, not in a list
            phases = [phases]
        if phases is not None and not phases:
            raise UserError("TrainingPhaseScheduler got an empty list of phases")
        if phases is not None:
            phases = as_phases(phases)
        self.recipe = next(((name, kw) for name, kw in recipes.items() if kw is not None), ("sgdr", None))
        if self.recipe[1] is not None:  # a misspelt key named now, not as a TypeError when training starts
            options = recipe_options(self.recipe[0])
            unknown = sorted(set(self.recipe[1]) - set(options))
            if unknown:
                raise UserError(f"{self.recipe[0]} has no option {', '.join(map(repr, unknown))}; its options: "
                                f"{', '.join(options)}")
        self.given_phases = phases or None
        self.set_max_steps, self.plot, self.save_cycles = set_max_steps, plot, save_cycles
        self._start()

    def _start(self) -> None:
        """The state of a training that has not begun (a checkpoint's restore comes after it)."""
        self.phases = self.given_phases  # recipes are built in on_fit_start, where their defaults are known
        self.cycle_ends: dict[int, int] = {}  # optimizer step -> cycle number, when save_cycles
        self.batches_seen = 0  # position in the schedule (optimizer steps), saved in checkpoints
        self.phase_index = 0
        self.ends: list[int] = []  # cumulative phase ends, in optimizer steps
        self._optimizer_key = None
        self._model_settings = None  # the model's optimizer class and its groups' settings
        self._global_step = 0  # the trainer's, to tell a batch that stepped from one that accumulated
        self.epoch_length: int | None = None  # the positions in an epoch the ends were counted with, saved too
        self.epoch_batches: int | None = None  # and the batches of that epoch
        self.planned_epochs: float | None = None  # a recipe's length taken from the training, kept on resume
        self.kept_plan = False  # a resume whose training differs from that length
        self.plan_unknown = False  # a resumed checkpoint from before planned_epochs (2026-11-29)
        self.resumed_schedule: str | None = None  # the schedule its checkpoint's run was given (since 2026-12-02)

    def schedule(self) -> str:
        """The recipe or phases as given, each phase by the fields it sets: told apart from a resumed run's."""
        if self.given_phases is None:
            name, kwargs = self.recipe
            return f"{name} {json.dumps(kwargs, sort_keys=True, default=str)}"
        phases = [{f.name: getattr(phase, f.name) for f in dataclasses.fields(phase)
                   if getattr(phase, f.name) != getattr(DEFAULT_PHASE, f.name)} for phase in self.given_phases]
        return f"phases {json.dumps(phases, default=str)}"

    # -- where we are ------------------------------------------------------------------------------
    def phase_ends(self, steps_per_epoch: int) -> list[int]:
        return phase_ends(self.phases, steps_per_epoch)

    @staticmethod
    def steps_per_epoch(trainer) -> int:
        """Optimizer steps in an epoch: Lightning steps every `accumulate_grad_batches` and at the last batch."""
        return math.ceil(trainer.num_training_batches / trainer.accumulate_grad_batches)

    def locate(self, batch: int) -> tuple[int, float] | None:
        """(phase index, fraction i/n of it) of a batch number, or None past the last phase."""
        index = bisect.bisect_right(self.ends, batch)
        if index == len(self.phases):
            return None
        start = self.ends[index - 1] if index else 0
        return index, (batch - start) / (self.ends[index] - start)

    # -- hooks ---------------------------------------------------------------------------------------
    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit":  # a second fit with this callback (a notebook's) starts the schedule again, or resumes
            self._start()   # the checkpoint's position, restored after setup

    def on_fit_start(self, trainer, pl_module):
        if trainer.lr_scheduler_configs:
            own = type(pl_module).__name__
            model = ("--model.one_cycle null; in Python one_cycle=None" if own == "DarknetClassifier"
                     else "its configure_optimizers' lr_scheduler")
            raise UserError(f"the model ({own}) configures an lr scheduler, but TrainingPhaseScheduler sets lr and "
                            f"momentum itself: drop the model's ({model}) or the scheduler callback (train.py: the "
                            f"config's callbacks, --trainer.callbacks \"[]\": Lightning's default checkpoint callback "
                            f"stays, the LR monitor goes)")
        if trainer.limit_train_batches == 0:  # Lightning trains no batch (a validation-only fit): nothing to schedule
            return
        if trainer.train_dataloader is None:  # loaded now, as Lightning's estimated_stepping_batches does, to count
            trainer.fit_loop.setup_data()
        if trainer.num_training_batches == float("inf"):
            raise UserError("TrainingPhaseScheduler counts its phases in epochs of the training dataloader, and this "
                            "one has no length (the style system's repeats its images, and its L-BFGS takes no lr "
                            "schedule): drop the scheduler callback, or give the data a length")
        if not same_schedule(self.resumed_schedule, self.schedule()):  # a resume that forgot the run's --config
            rank_zero_warn(self.changed_schedule(trainer.ckpt_path))
        if self.phases is None:
            self.phases = self.build_recipe(trainer)
        self.check_phases(trainer)
        # before Lightning restores optimizer state on resume, so it lands in the resumed phase's optimizer class
        self._enter(trainer, self.phase_index)

    def check_phases(self, trainer) -> None:
        """Every phase's settings against the optimizers and the data, before the first batch: a later phase's
        mistake stopped the training as that phase began, hours in, and the epoch in progress was lost."""
        for index, phase in enumerate(self.phases):
            for name in phase.data:
                check_data_attribute(trainer.datamodule, index, name)
            for optimizer in trainer.optimizers:
                groups = optimizer.param_groups
                for option in ("lr_multipliers", "weight_decay"):
                    values = getattr(phase, option)
                    if isinstance(values, list) and len(values) != len(groups):
                        names = ", ".join(str(g.get("name", f"group {i}")) for i, g in enumerate(groups))
                        raise UserError(f"phase {index}: {option} has {len(values)} values for the {len(groups)} "
                                        f"parameter groups of the model's {type(optimizer).__name__} ({names}); give "
                                        f"one a group{', or one value for all' * (option == 'weight_decay')}")
                # one optimizer takes each phase's class; several (the GANs') keep theirs
                cls = phase.opt_class if len(trainer.optimizers) == 1 else type(optimizer)
                accepts = inspect.signature(cls).parameters
                if phase.beta is not None and "betas" not in accepts and "alpha" not in accepts:
                    raise UserError(f"phase {index} sets beta {phase.beta}, which is Adam's beta2 or RMSprop's "
                                    f"alpha; {cls.__name__} has neither: drop beta from that phase")

    def changed_schedule(self, path) -> str:
        """The warning of a resume given another schedule than its run's (`path`: its checkpoint)."""
        from callbacks.checkpoints import resume_as_begun
        from lightning_modules.inference import run_config_file
        config = run_config_file(str(path)) if path else None
        how = resume_as_begun(config, path) if config is not None else "give the run's scheduler options again"
        return (f"the run's lr schedule was {self.resumed_schedule}, this resume's {self.schedule()}: the lr and "
                f"momentum go on from the run's position ({self.batches_seen} steps) on this resume's schedule; {how}")

    def build_recipe(self, trainer) -> list[TrainingPhase]:
        """A recipe's phases; lr and opt_fn default to the model optimizer's lr and class, cycle_len (all but
        sgdr's) to the training."""
        name, kwargs = self.recipe
        optimizer = trainer.optimizers[0]
        kwargs = {"lr": optimizer.param_groups[0]["lr"], "opt_fn": type(optimizer), **kwargs}
        if name != "sgdr" and "cycle_len" not in kwargs and (swa := swa_first_epoch(trainer)) is not None:
            if swa == 0:
                raise UserError(f"StochasticWeightAveraging sets the lr from the first epoch, which leaves {name} "
                                f"none: start SWA later (swa_epoch_start) or drop it")
            kwargs["cycle_len"] = self.plan(name, swa)  # the training before SWA's own lr schedule takes over
        elif name != "sgdr" and "cycle_len" not in kwargs:  # the whole training: max_epochs, or max_steps when
            total = trainer.estimated_stepping_batches  # that ends it first
            if total == float("inf"):
                raise UserError(f"{name} needs cycle_len, or trainer.max_epochs or max_steps to take it from")
            kwargs["cycle_len"] = self.plan(name, total / self.steps_per_epoch(trainer))
        return getattr(training_phase, name)(**kwargs)

    def plan(self, name: str, epochs: float) -> float:
        """A recipe's length taken from the training. A resumed run keeps the length it began with: re-planned over
        a longer --trainer.max_epochs its position would land mid-way in a stretched cycle (the lr back up)."""
        planned = self.planned_epochs
        if self.plan_unknown:
            rank_zero_warn(f"the checkpoint is from before 2026-11-29 and does not say how many epochs the run's "
                           f"{name} was planned over: it is planned over this training's {epochs:g}, and goes on "
                           f"where such a cycle is at this point. If the run began with another --trainer.max_epochs "
                           f"(or max_steps), stop and resume with that one, or the lr jumps; for a new cycle from "
                           f"these weights, start a new run with --init_from <this run's checkpoint>")
        if planned is not None and not math.isclose(epochs, planned, rel_tol=1e-6):
            then = "the epochs after it train at its final lr" if epochs > planned else "training ends before it does"
            rank_zero_warn(f"the run's {name} was planned over {planned:g} epochs, the training it began with, and "
                           f"is kept: {then}. For a new cycle from these weights, start a new run with --init_from "
                           f"<this run's checkpoint>")
            self.kept_plan, epochs = True, planned
        self.planned_epochs = epochs
        return epochs

    def on_train_start(self, trainer, pl_module):
        batches = trainer.num_training_batches
        # manual optimization (the GANs) steps several optimizers per batch, and cannot accumulate: count batches
        length = self.steps_per_epoch(trainer) if pl_module.automatic_optimization else batches
        if self.epoch_length not in (None, length) and self.batches_seen:
            # a resume on another number of processes (or another batch size): the same share of an epoch, in this
            # training's steps; counted in the old ones, a move from 2 GPUs to 1 set the schedule back by half
            rank_zero_warn(f"the run trained {self.epoch_length} steps an epoch, this training {length}: the schedule "
                           f"goes on at the same epoch ({self.batches_seen / self.epoch_length:g})")
            epochs, within = divmod(self.batches_seen, self.epoch_length)
            resumed = resumed_batches(trainer, self.epoch_batches)
            if resumed is not None and 0 < resumed[0] < self.epoch_batches:
                # inside an epoch: the steps of the batches the data goes on after (callbacks.EpochLengthResume), so the
                # two end together, with gradient accumulation too (manual optimization, which counts batches, has
                # none: Lightning refuses it)
                within = resumed[1] // trainer.accumulate_grad_batches
            else:  # at an epoch's end, or a checkpoint without its batches an epoch (from before 2026-11-30)
                within = within * length // self.epoch_length
            self.batches_seen = epochs * length + within
        self.epoch_length, self.epoch_batches = length, batches
        self.ends = self.phase_ends(length)
        if skipped := [i for i, (start, end) in enumerate(zip([0, *self.ends[:-1]], self.ends, strict=True))
                       if start == end]:
            one = len(skipped) == 1
            rank_zero_warn(f"phase{'' if one else 's'} {', '.join(map(str, skipped))} "
                           f"({', '.join(f'{self.phases[i].epochs:g}' for i in skipped)} epochs) "
                           f"{'rounds' if one else 'round'} to no step at {length} steps an epoch, and "
                           f"{'is' if one else 'are'} skipped: lengthen {'it' if one else 'them'}, or train more "
                           f"steps an epoch")
        recipe = self.recipe[0] if self.recipe[1] is not None else None
        cycles = {None: self.ends, "sgdr": self.ends[1:]}.get(recipe, self.ends[-1:])  # sgdr: its restarts
        ends = sorted(set(cycles) - {0})
        self.cycle_ends = {end: k for k, end in enumerate(ends, 1)} if self.save_cycles else {}
        self._global_step = trainer.global_step
        swa = swa_first_epoch(trainer) if pl_module.automatic_optimization else None
        if swa is not None and self.ends[-1] > swa * self.steps_per_epoch(trainer):
            raise UserError(f"the phases run {self.ends[-1] / self.steps_per_epoch(trainer):g} epochs, but "
                            f"StochasticWeightAveraging sets the lr from epoch {swa + 1} on (its swa_epoch_start): end "
                            f"the phases after {swa} epochs (a recipe without cycle_len ends there), or start SWA "
                            f"later")
        # not with SWA: Lightning adds an epoch after max_epochs that recomputes the BatchNorm statistics for the
        # averaged weights, which a max_steps at the phases' end would cut (leaving the last weights' statistics)
        # nor when a resume kept the plan: --trainer.max_epochs ends the training, after the cycle or before
        if (self.set_max_steps and pl_module.automatic_optimization and trainer.max_steps == -1 and swa is None
                and not self.kept_plan):
            # Lightning's max_steps counts optimizer steps, the run's own (the position's, unless resumed on another
            # number of processes)
            trainer.fit_loop.epoch_loop.max_steps = self.ends[-1] + trainer.global_step - self.batches_seen
            steps = self.steps_per_epoch(trainer)
            if trainer.max_epochs is not None and trainer.max_epochs * steps < self.ends[-1]:
                needed = math.ceil(self.ends[-1] / steps)
                rank_zero_warn(f"max_epochs {trainer.max_epochs} ends the training before the phases do "
                               f"({sum(p.epochs for p in self.phases):g} epochs): the rest of them is not trained; to "
                               f"train them all, give --trainer.max_epochs {needed} (Trainer(max_epochs={needed}))")
        self._apply(trainer)
        if self.plot and trainer.is_global_zero:
            self._plot(trainer)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if pl_module.automatic_optimization:  # a batch that only accumulated gradients keeps the position
            if trainer.global_step == self._global_step:
                return
            self._global_step = trainer.global_step
        self.batches_seen += 1
        if self.batches_seen in self.cycle_ends:
            self.save_cycle(trainer, self.cycle_ends[self.batches_seen])
        self._apply(trainer)  # for the next batch, so LearningRateMonitor logs the lr the step will use

    def save_cycle(self, trainer, cycle: int) -> None:
        """The weights at a cycle's end, beside the run's other checkpoints (every rank takes part: the save may be
        collective); written through the trainer's checkpoint IO, so atomically with AtomicCheckpointIO."""
        folder = getattr(trainer.checkpoint_callback, "dirpath", None) or Path(trainer.default_root_dir) / "checkpoints"
        trainer.save_checkpoint(Path(folder) / f"cycle{cycle}-step={trainer.global_step}.ckpt", weights_only=False)

    def state_dict(self):
        return {"batches_seen": self.batches_seen, "phase_index": self.phase_index,
                "planned_epochs": self.planned_epochs, "epoch_length": self.epoch_length,
                "epoch_batches": self.epoch_batches, "schedule": self.schedule()}

    def load_state_dict(self, state_dict):
        self.batches_seen, self.phase_index = state_dict["batches_seen"], state_dict["phase_index"]
        self.planned_epochs = state_dict.get("planned_epochs")  # None in checkpoints before 2026-11-29
        self.plan_unknown = "planned_epochs" not in state_dict and self.batches_seen > 0
        self.epoch_length = state_dict.get("epoch_length")  # and before 2026-11-30
        self.epoch_batches = state_dict.get("epoch_batches")
        self.resumed_schedule = state_dict.get("schedule")  # and before 2026-12-02

    # -- doing it ------------------------------------------------------------------------------------
    def _apply(self, trainer):
        where = self.locate(self.batches_seen)
        if where is None:
            return
        index, pct = where
        if index != self.phase_index:
            self._enter(trainer, index)
        phase = self.phases[index]
        lr, momentum = phase.lr_at(pct), phase.momentum_at(pct)
        for optimizer in trainer.optimizers:
            groups = optimizer.param_groups
            multipliers = phase.lr_multipliers or [1.0] * len(groups)
            decays = phase.weight_decay if isinstance(phase.weight_decay, list) else [phase.weight_decay] * len(groups)
            # one value for all groups keeps the model's exemptions (no_decay_bn_bias's 0); one a group is as given
            scales = [1.0 if isinstance(phase.weight_decay, list) else g.get("weight_decay_scale", 1.0) for g in groups]
            for group, multiplier, decay, scale in zip(groups, multipliers, decays, scales, strict=True):
                group["lr"] = lr * multiplier * group.get("lr_scale", 1.0)  # a model's own group scale
                if momentum is not None:
                    set_momentum(group, momentum, optimizer)
                if phase.beta is not None:
                    set_beta(group, phase.beta, optimizer)
                if decay is not None:
                    group["weight_decay"] = decay * scale

    def _enter(self, trainer, index: int):
        """Start phase `index`: its optimizer (one optimizer only) and its data attributes."""
        self.phase_index = index
        phase = self.phases[index]
        key = (phase.opt_class, tuple(sorted(phase.opt_kwargs.items())))
        if len(trainer.optimizers) == 1 and key != self._optimizer_key:
            old = trainer.optimizers[0]
            if self._optimizer_key is None:  # the model's own optimizer: a later phase of its class is built alike
                self._model_settings = (type(old), [{k: v for k, v in g.items() if k != "params"}
                                                    for g in old.param_groups])
            # the model's own optimizer is kept only when it already is what the first phase asks for
            if type(old) is not phase.opt_class or phase.opt_kwargs or self._optimizer_key is not None:
                trainer.strategy.optimizers = [build_optimizer(phase, old, self._model_settings)]
            self._optimizer_key = key
        # the earlier phases' data too: a phase that sets none keeps theirs, also when a resume starts in it
        for earlier, phase in enumerate(self.phases[:index + 1]):
            for name, value in phase.data.items():
                check_data_attribute(trainer.datamodule, earlier, name)
                setattr(trainer.datamodule, name, value)

    def _plot(self, trainer):
        path = Path(trainer.default_root_dir) / "lr_schedule.png"
        plot_schedule(self.phases, self.ends, path)
        if trainer.global_step == 0:  # a resume's run has it at its start
            log_to_loggers(trainer, "lr_schedule", path, at_batch=False)


def as_phases(phases: list) -> list[TrainingPhase]:
    """Phases given from Python, TrainingPhase objects or dicts of their fields (as the YAML writes them)."""
    phases = [TrainingPhase(**phase) if isinstance(phase, dict) else phase for phase in phases]
    if wrong := next((phase for phase in phases if not isinstance(phase, TrainingPhase)), None):
        raise UserError(f"phases: {wrong!r} is no TrainingPhase; give TrainingPhase(epochs, ...) or a dict of its "
                        f"fields")
    return phases


def same_schedule(saved: str | None, given: str) -> bool:
    """Whether a checkpoint's schedule (None: not saved, before 2026-12-02) is the one given, whatever the order of
    a phase's fields (TrainingPhase's beta and weight_decay moved before power on 2026-12-02)."""
    if saved is None or saved == given:
        return True
    (saved_name, _, saved_json), (name, _, given_json) = saved.partition(" "), given.partition(" ")
    try:
        return saved_name == name and json.loads(saved_json) == json.loads(given_json)
    except ValueError:
        return False


def check_data_attribute(datamodule, index: int, name: str) -> None:
    """Phase `index`'s data setting `name`, refused unless the DataModule has an attribute the batches read."""
    if datamodule is None or not hasattr(datamodule, name):
        why = ""
        if name in (getattr(datamodule, "hparams", None) or {}):
            why = (f": --data.{name} is read once, as the loaders are built, and the phases' lengths are counted in "
                   f"its batches; set it for the whole run. A phase sets attributes the batches read as they go, such "
                   f"as the CIFAR-10 data's image_size")
        raise UserError(f"phase {index} sets data attribute {name!r}, which the DataModule does not have{why}")


def resumed_batches(trainer, saved_batches: int | None) -> tuple[int, int] | None:
    """For a resume of a run whose epochs were `saved_batches` batches (as many as this training's, or another number
    of processes or batch size): (the batches of the stopped epoch the checkpoint counts done, counting a save from a
    batch's end hook as Lightning does; the same share of this training's epoch, rounded down to a whole batch).
    None without `saved_batches`, or for an endless loader."""
    length = trainer.num_training_batches
    if saved_batches is None or length == float("inf"):
        return None
    loop = trainer.fit_loop.epoch_loop
    done = loop.batch_progress.current.completed + loop.restarted_on_train_batch_end
    return done, min(done * length // saved_batches, length)


def swa_first_epoch(trainer) -> int | None:
    """The 0-based epoch from which a StochasticWeightAveraging callback sets the lr (its SWALR), or None without one.

    Lightning turns a fractional swa_epoch_start into epochs (int(start * max_epochs), 1-based) in its own
    on_fit_start, which may come before or after ours; both orders give the same epoch here."""
    swa = next((c for c in trainer.callbacks if isinstance(c, StochasticWeightAveraging)), None)
    if swa is None:
        return None
    start = swa._swa_epoch_start  # no public accessor before Lightning's on_fit_start
    if isinstance(start, float):
        start = int(trainer.max_epochs * start)
    return max(start - 1, 0)


def recipe_options(name: str) -> list[str]:
    """The keys a recipe takes: its function's arguments, and the TrainingPhase fields it passes on to every phase
    (beta, weight_decay, ...; not those it sets itself)."""
    own = [k for k in inspect.signature(getattr(training_phase, name)).parameters if k != "phase_kwargs"]
    return own + [f.name for f in dataclasses.fields(TrainingPhase) if f.name not in RECIPE_SETS[name] | set(own)]


def set_momentum(group: dict, value: float, optimizer=None) -> None:
    """Momentum is SGD's and RMSprop's `momentum` and Adam-type optimizers' beta1.

    torch's RMSprop creates its momentum buffer at a parameter's first step only if momentum > 0 then, and
    later reads it unconditionally: momentum turned on after that gets the zero buffer RMSprop starts from.
    """
    if "betas" in group:
        group["betas"] = (value, *group["betas"][1:])
    elif "momentum" in group:
        group["momentum"] = value
        if value > 0 and isinstance(optimizer, torch.optim.RMSprop):
            for param in group["params"]:
                state = optimizer.state.get(param)
                if state and "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(param, memory_format=torch.preserve_format)


def set_beta(group: dict, value: float, optimizer) -> None:
    """The seed's beta: Adam-type optimizers' beta2, RMSprop's alpha (its squared-gradient average)."""
    if "betas" in group:
        group["betas"] = (group["betas"][0], value)
    elif "alpha" in group:
        group["alpha"] = value
    else:
        raise UserError(f"a phase sets beta {value}, which is Adam's beta2 or RMSprop's alpha; "
                        f"{type(optimizer).__name__} has neither: drop beta from that phase")


def build_optimizer(phase: TrainingPhase, old, model_settings: tuple | None = None):
    """The phase's optimizer over the same parameter groups (same tensors, so the weights carry over).

    Of the model's optimizer class (`model_settings`: that class and its groups' settings) it starts from the model's
    settings (nesterov, eps, weight_decay...), so phases written alike build alike; of another class from the groups'
    lr, weight_decay, lr_scale, weight_decay_scale and name (LearningRateMonitor's chart names). The phase's
    opt_kwargs go over either."""
    kwargs = dict(phase.opt_kwargs)
    if model_settings is not None and model_settings[0] is phase.opt_class:
        settings = model_settings[1]
    else:
        carried = ("lr", "weight_decay", "lr_scale", "weight_decay_scale", "name")
        settings = [{k: v for k, v in g.items() if k in carried} for g in old.param_groups]
    groups = [{**{k: v for k, v in setting.items() if k not in kwargs}, "params": group["params"]}
              for setting, group in zip(settings, old.param_groups, strict=True)]
    accepts = inspect.signature(phase.opt_class).parameters
    if phase.momentum is not None and "momentum" in accepts and "momentum" not in kwargs:
        kwargs["momentum"] = phase.momentum_at(0.0)  # SGD(nesterov=True) refuses momentum 0 at construction
    return phase.opt_class(groups, **kwargs)


def phase_ends(phases: list[TrainingPhase], steps_per_epoch: int) -> list[int]:
    """Cumulative phase ends in optimizer steps, rounded once so fractional phases lose no step in total."""
    return [round(end * steps_per_epoch) for end in accumulate(p.epochs for p in phases)]


def plot_phases(phases: list[TrainingPhase], steps_per_epoch: int, path: str | Path | None = None, **options):
    """The seed's plot_lr before any training: the schedule `phases` (a list, or a recipe's, `one_cycle(30, 0.4)`)
    follows at `steps_per_epoch` optimizer steps an epoch (the training loader's length, divided by
    accumulate_grad_batches and rounded up), as the run's lr_schedule.png will show it. Returns the matplotlib Figure,
    which a notebook shows; also saved as a PNG at `path` when given. `options`: plot_schedule's."""
    phases = as_phases(phases)
    figure = schedule_figure(phases, phase_ends(phases, steps_per_epoch), **options)
    if path is not None:
        with replaced(Path(path)) as tmp:
            figure.savefig(tmp, format="png", dpi=100)
    return figure


def plot_schedule(phases: list[TrainingPhase], ends: list[int], path: Path, show_text: bool = True,
                  show_moms: bool = True) -> Path:
    """The seed's plot_lr, as a PNG: lr (and momentum) per iteration, a line per phase boundary, optimizer names;
    `ends`: the phases' cumulative ends in steps."""
    figure = schedule_figure(phases, ends, show_text, show_moms)
    with replaced(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    return path


def schedule_figure(phases: list[TrainingPhase], ends: list[int], show_text: bool = True, show_moms: bool = True):
    """plot_schedule's figure."""
    has_momentum = show_moms and any(p.momentum is not None for p in phases)
    figure, axes = subplots(1, 2 if has_momentum else 1, figsize=(12 if has_momentum else 6, 4), squeeze=False)
    starts = [0, *ends[:-1]]
    for phase, start, end in zip(phases, starts, ends, strict=True):
        steps = range(start, end)
        axes[0, 0].plot(steps, [phase.lr_at((i - start) / (end - start)) for i in steps], color="C0")
        if has_momentum and phase.momentum is not None:
            axes[0, 1].plot(steps, [phase.momentum_at((i - start) / (end - start)) for i in steps], color="C1")
    for ax, label in zip(axes[0], ["learning rate", "momentum"], strict=False):
        ax.set_xlabel("iteration")
        ax.set_ylabel(label)
        for boundary in ends[:-1]:
            ax.axvline(boundary, color="grey", linestyle="--", linewidth=0.8)
        if show_text:
            for phase, start, end in zip(phases, starts, ends, strict=True):
                ax.text((start + end) / 2, 1.01, phase.opt_class.__name__, ha="center", va="bottom",
                        transform=ax.get_xaxis_transform(), fontsize=8)
    figure.tight_layout()
    return figure
