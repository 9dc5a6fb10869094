"""TrainingPhase maths and the scheduler against formulas written out here, independently of the code."""

import math
import warnings
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch

from callbacks import DecayType, TrainingPhase, TrainingPhaseScheduler, UserError, one_cycle, sgdr, triangle
from datamodules import CIFAR10DataModule
from lightning_modules import DarknetClassifier

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets: threads only add contention

BATCHES = 6  # 24 tiny images at batch 4


class Recorder(L.Callback):
    """What the optimizer holds at each step: class, lr of every group, momentum (or beta1)."""

    def __init__(self):
        self.steps = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        group = optimizer.param_groups[0]
        momentum = group["betas"][0] if "betas" in group else group.get("momentum")
        self.steps.append((type(optimizer).__name__, [g["lr"] for g in optimizer.param_groups], momentum))


class ShapeRecorder(L.Callback):
    def __init__(self):
        self.sizes = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.sizes.append(batch[0].shape[-1])


def fit(data_dir, phases, max_epochs=10, callbacks=(), ckpt_path=None, root=None, trainer_kwargs=None, batch_size=4,
        **scheduler_kwargs):
    torch.manual_seed(0)
    recorder = Recorder()
    trainer = L.Trainer(accelerator="cpu", max_epochs=max_epochs, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
                        enable_checkpointing=root is not None, default_root_dir=root,
                        callbacks=[TrainingPhaseScheduler(phases, plot=False, **scheduler_kwargs), recorder,
                                   *callbacks], **(trainer_kwargs or {}))
    model = DarknetClassifier(num_blocks=[1], nf=4, num_classes=3, one_cycle=None)
    trainer.fit(model, CIFAR10DataModule(str(data_dir), batch_size=batch_size, download=False), ckpt_path=ckpt_path)
    return recorder.steps, trainer, model


# -- the seed's formulas, written out here --------------------------------------------------------
def expected(start, end, i, n, decay, p=2.0):
    if decay == "no":
        return start
    if decay == "linear":
        return start + (end - start) * i / n
    if decay == "cosine":
        return end + (start - end) / 2 * (1 + math.cos(math.pi * i / n))
    if decay == "exponential":
        return start * (end / start) ** (i / n)
    return end + (start - end) * (1 - i / n) ** p


@pytest.mark.parametrize("decay", ["no", "linear", "cosine", "exponential", "polynomial"])
def test_lr_and_momentum_seen_by_the_optimizer_follow_the_seed_formula(tiny_cifar, decay):
    lr, momentum = (0.5, 0.02), (0.95, 0.8)
    phase = TrainingPhase(epochs=2, opt_fn="SGD", lr=lr, lr_decay=decay, momentum=momentum,
                          momentum_decay=decay, power=3.0)
    steps, _, _ = fit(tiny_cifar, [phase])
    n = 2 * BATCHES
    assert len(steps) == n  # the phases end the training
    for i, (_, lrs, mom) in enumerate(steps):
        assert lrs[0] == pytest.approx(expected(*lr, i, n, decay, 3.0))
        assert mom == pytest.approx(expected(*momentum, i, n, decay, 3.0))


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


def test_fractional_epochs_set_the_boundaries_and_the_end(tiny_cifar):
    phases = [TrainingPhase(0.5, "SGD", 0.1), TrainingPhase(1.5, "SGD", 0.2), TrainingPhase(0.5, "SGD", 0.3)]
    steps, trainer, _ = fit(tiny_cifar, phases)
    assert [lrs[0] for _, lrs, _ in steps] == pytest.approx([0.1] * 3 + [0.2] * 9 + [0.3] * 3)
    assert trainer.global_step == 15  # 2.5 epochs of 6 batches


def test_phase_boundary_switches_the_optimizer_class_and_keeps_the_parameters(tiny_cifar):
    phases = [TrainingPhase(1, "RMSprop", 1e-3, momentum=0.9), TrainingPhase(1, "torch.optim.SGD", 0.05,
                                                                               momentum=0.8)]
    snapshots = {}

    class Snapshot(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_step in (BATCHES - 1, BATCHES):
                snapshots[trainer.global_step] = [p.detach().clone() for p in pl_module.parameters()]
                params = trainer.optimizers[0].param_groups[0]["params"]
                snapshots[f"ids{trainer.global_step}"] = [id(p) for p in params]

    steps, _, model = fit(tiny_cifar, phases, callbacks=[Snapshot()])
    assert [name for name, _, _ in steps] == ["RMSprop"] * BATCHES + ["SGD"] * BATCHES
    assert [m for _, _, m in steps] == [0.9] * BATCHES + [0.8] * BATCHES
    assert snapshots[f"ids{BATCHES}"] == [id(p) for p in model.parameters()] == snapshots[f"ids{BATCHES - 1}"]
    before, after = snapshots[BATCHES - 1], snapshots[BATCHES]
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))  # one RMSprop step between


def test_adam_momentum_is_beta1_and_lr_multipliers_scale_each_group(tiny_cifar):
    class TwoGroups(DarknetClassifier):
        def configure_optimizers(self):
            body, head = list(self.net.layers[:-1].parameters()), list(self.net.layers[-1].parameters())
            return torch.optim.Adam([{"params": body}, {"params": head}], lr=1e-3)

    recorder = Recorder()
    phase = TrainingPhase(1, "Adam", 0.01, momentum=(0.9, 0.7), momentum_decay="linear", lr_multipliers=[0.1, 1])
    trainer = L.Trainer(accelerator="cpu", max_epochs=5, logger=False, enable_progress_bar=False,
                        enable_checkpointing=False, limit_val_batches=0, enable_model_summary=False,
                        callbacks=[TrainingPhaseScheduler([phase], plot=False), recorder])
    trainer.fit(TwoGroups(num_blocks=[1], nf=4, num_classes=3, one_cycle=None),
                CIFAR10DataModule(str(tiny_cifar), batch_size=4, download=False))
    assert [lrs for _, lrs, _ in recorder.steps] == [pytest.approx([0.001, 0.01])] * BATCHES
    assert [m for _, _, m in recorder.steps] == pytest.approx([0.9 - 0.2 * i / BATCHES for i in range(BATCHES)])


class HyperRecorder(L.Callback):
    """Each group's beta2 (or RMSprop's alpha) and weight decay before every step."""

    def __init__(self):
        self.steps = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.steps.append([(g["betas"][1] if "betas" in g else g.get("alpha"), g["weight_decay"])
                           for g in optimizer.param_groups])


def test_beta_is_adams_beta2_or_rmsprops_alpha_and_weight_decay_is_set_per_group(tiny_cifar):
    recorder = HyperRecorder()
    phases = [TrainingPhase(1, "Adam", 0.01, beta=0.95, weight_decay=[1e-3, 0.0, 0.0]),
              TrainingPhase(1, "RMSprop", 0.01, beta=0.8, weight_decay=5e-4),
              TrainingPhase(1, "RMSprop", 0.01)]  # neither given: what the phase before left
    trainer = L.Trainer(accelerator="cpu", max_epochs=3, logger=False, enable_progress_bar=False,
                        enable_checkpointing=False, limit_val_batches=0, enable_model_summary=False,
                        callbacks=[TrainingPhaseScheduler(phases, plot=False), recorder])
    model = DarknetClassifier(num_blocks=[1], nf=4, num_classes=3, one_cycle=None, no_decay_bn_bias=True)
    trainer.fit(model, CIFAR10DataModule(str(tiny_cifar), batch_size=4, download=False))
    assert recorder.steps == ([[(0.95, 1e-3), (0.95, 0.0), (0.95, 0.0)]] * BATCHES
                              + [[(0.8, 5e-4)] * 3] * BATCHES + [[(0.8, 5e-4)] * 3] * BATCHES)


def test_beta_for_sgd_and_a_weight_decay_list_of_the_wrong_length_are_named(tiny_cifar):
    for phase, message in ((TrainingPhase(1, "SGD", 0.01, beta=0.9), "beta 0.9.*SGD has neither"),
                           (TrainingPhase(1, "SGD", 0.01, weight_decay=[0.1, 0.2]),
                            "weight_decay has 2 values for 1 parameter groups")):
        trainer = L.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_progress_bar=False,
                            enable_checkpointing=False, limit_val_batches=0, enable_model_summary=False,
                            callbacks=[TrainingPhaseScheduler([phase], plot=False)])
        with pytest.raises(UserError, match=message):
            trainer.fit(DarknetClassifier(num_blocks=[1], nf=4, num_classes=3, one_cycle=None),
                        CIFAR10DataModule(str(tiny_cifar), batch_size=4, download=False))


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


def test_per_phase_data_changes_the_batch_image_size(tiny_cifar):
    shapes = ShapeRecorder()

    class Resized(L.Callback):  # the size the model sees, after on_after_batch_transfer
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            shapes.sizes.append(batch[0].shape[-1])

    phases = [TrainingPhase(1, "SGD", 0.1, data={"image_size": 28}), TrainingPhase(1, "SGD", 0.1,
                                                                                    data={"image_size": 32})]
    fit(tiny_cifar, phases, callbacks=[Resized()])
    assert shapes.sizes == [28] * BATCHES + [32] * BATCHES


def test_a_resume_keeps_the_data_an_earlier_phase_set(tiny_cifar, tmp_path):
    """Progressive resizing: a phase without data keeps the size the phase before it set; resumed in that phase, the
    run trained at the DataModule's default size instead."""
    from conftest import CrashAtEpoch
    shapes = ShapeRecorder()

    class Resized(L.Callback):  # the size the model sees, after on_after_batch_transfer
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            shapes.sizes.append(batch[0].shape[-1])

    def phases():
        return [TrainingPhase(1, "SGD", 0.1, data={"image_size": 24}),
                TrainingPhase(1, "SGD", 0.1, data={"image_size": 28}), TrainingPhase(2, "SGD", 0.1)]
    fit(tiny_cifar, phases(), callbacks=[Resized()])
    assert shapes.sizes == [24] * BATCHES + [28] * 3 * BATCHES
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(tiny_cifar, phases(), callbacks=[CrashAtEpoch(2)], root=tmp_path)
    shapes.sizes = []
    fit(tiny_cifar, phases(), callbacks=[Resized()], ckpt_path=str(next(tmp_path.rglob("*.ckpt"))),
        root=tmp_path / "again")
    assert shapes.sizes == [28] * 2 * BATCHES  # the third phase, at the second's size


def test_resume_mid_phase_follows_the_uninterrupted_trajectory(tiny_cifar, tmp_path):
    from conftest import CrashAtEpoch
    phases = [TrainingPhase(1.5, "RMSprop", (0.01, 0.001), "cosine", momentum=(0.9, 0.5), momentum_decay="linear"),
              TrainingPhase(1.5, "SGD", (0.1, 0.01), "exponential", momentum=0.9)]
    full, _, _ = fit(tiny_cifar, phases)
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(tiny_cifar, phases, callbacks=[CrashAtEpoch(1)], root=tmp_path)
    last = next(tmp_path.rglob("*.ckpt"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resumed, trainer, _ = fit(tiny_cifar, phases, ckpt_path=str(last), root=tmp_path / "again")
    assert not [w for w in caught if "steps an epoch" in str(w.message)]  # the same steps an epoch: no rescaling
    assert len(resumed) == len(full) - BATCHES and trainer.global_step == len(full)
    assert resumed == [(name, pytest.approx(lrs), pytest.approx(m)) for name, lrs, m in full[BATCHES:]]


def test_a_resume_with_other_steps_an_epoch_goes_on_at_the_same_epoch(tiny_cifar, tmp_path):
    """Another number of processes (here: another batch size) makes an epoch another number of steps. The position
    counted in the stopped run's steps set the schedule back (from 2 processes to 1 at epoch 2 of 4: back to epoch 1,
    and the cycle's last quarter never trained); it goes on at the same epoch, in the new steps."""
    from conftest import CrashAtEpoch
    phases = [TrainingPhase(1.5, "SGD", (0.1, 0.01), "cosine", momentum=0.9),
              TrainingPhase(1.5, "SGD", (0.01, 0.001), "linear", momentum=0.9)]
    full, _, _ = fit(tiny_cifar, phases, batch_size=2)  # 12 steps an epoch
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(tiny_cifar, phases, callbacks=[CrashAtEpoch(1)], root=tmp_path)  # 6 steps an epoch: saved at step 6
    last = next(tmp_path.rglob("*.ckpt"))
    with pytest.warns(UserWarning, match=r"the run trained 6 steps an epoch, this training 12: the schedule goes on "
                                         r"at the same epoch \(1\)"):
        resumed, trainer, _ = fit(tiny_cifar, phases, ckpt_path=str(last), root=tmp_path / "again", batch_size=2)
    assert len(resumed) == len(full) - 12 and trainer.global_step == 6 + len(resumed)  # its own steps go on from 6
    (scheduler,) = [c for c in trainer.callbacks if isinstance(c, TrainingPhaseScheduler)]
    assert type(scheduler.batches_seen) is int  # a count of steps, saved in the checkpoints
    assert resumed == [(name, pytest.approx(lrs), pytest.approx(m)) for name, lrs, m in full[12:]]


def test_a_resume_over_more_epochs_keeps_the_cycle_it_began_with(tiny_cifar, tmp_path):
    """Re-planned over the new max_epochs, the resumed position landed mid-way in a stretched cycle: the lr jumped from
    its final value back up (0.02 to 0.32 in a review's run). The plan is kept; the further epoch trains at its end."""
    recipe = {"lr": 0.4, "div": 20, "pct": 20}
    first, _, _ = fit(tiny_cifar, None, max_epochs=1, root=tmp_path, one_cycle=recipe)
    n = BATCHES  # the cycle: 0.4 of it up from lr/20 to lr, 0.4 back, 0.2 down to lr/2000 (ends rounded to steps)
    up, down = round(0.4 * n), round(0.8 * n)
    cycle = [expected(0.02, 0.4, i, up, "linear") for i in range(up)] + \
            [expected(0.4, 0.02, i, down - up, "linear") for i in range(down - up)] + \
            [expected(0.02, 0.0002, i, n - down, "linear") for i in range(n - down)]
    assert [lrs[0] for _, lrs, _ in first] == pytest.approx(cycle)
    last = next(tmp_path.rglob("*.ckpt"))
    with pytest.warns(UserWarning, match="the run's one_cycle was planned over 1 epochs, the training it began with, "
                                         "and is kept: the epochs after it train at its final lr"):
        resumed, trainer, _ = fit(tiny_cifar, None, max_epochs=2, ckpt_path=str(last), root=tmp_path / "again",
                                  one_cycle=recipe)
    assert trainer.global_step == 2 * BATCHES  # the further epoch trained (not stopped where the cycle ends)
    assert [lrs[0] for _, lrs, _ in resumed] == pytest.approx([cycle[-1]] * BATCHES)


def test_a_resume_from_a_checkpoint_without_its_plan_says_the_cycle_is_planned_again(tiny_cifar, tmp_path):
    """A checkpoint of before 2026-11-29 holds the scheduler's position alone ({'batches_seen', 'phase_index'}, as
    train.py at df5ed72 wrote it), not the length its cycle was planned over: resumed over more epochs, the cycle is
    planned over the new length and the lr jumped from the cycle's end back up (0.0002 to near its 0.4 peak
    here), silently."""
    import torch
    recipe = {"lr": 0.4, "div": 20, "pct": 20}
    fit(tiny_cifar, None, max_epochs=1, root=tmp_path, one_cycle=recipe)
    last = next(tmp_path.rglob("*.ckpt"))
    checkpoint = torch.load(last, weights_only=False)
    (key,) = [key for key in checkpoint["callbacks"] if "TrainingPhaseScheduler" in key]
    checkpoint["callbacks"][key] = {"batches_seen": BATCHES, "phase_index": 2}  # the old version's state
    torch.save(checkpoint, last)
    with pytest.warns(UserWarning, match="the checkpoint is from before 2026-11-29 and does not say how many epochs "
                                         "the run's one_cycle was planned over: it is planned over this training's 2"):
        resumed, _, _ = fit(tiny_cifar, None, max_epochs=2, ckpt_path=str(last), root=tmp_path / "again",
                            one_cycle=recipe)
    # what it warns of: the second half of a 2-epoch cycle, which starts at its peak
    assert [lrs[0] for _, lrs, _ in resumed] == pytest.approx(one_cycle_lrs(2 * BATCHES)[BATCHES:])


def one_cycle_lrs(n, lr=0.4, div=20):
    """fastai 0.7's 1cycle (pct 20) over n steps, the phase ends rounded to steps as the scheduler rounds them."""
    up, down = round(0.4 * n), round(0.8 * n)
    return [expected(lr / div, lr, i, up, "linear") for i in range(up)] + \
           [expected(lr, lr / div, i, down - up, "linear") for i in range(down - up)] + \
           [expected(lr / div, lr / div / 100, i, n - down, "linear") for i in range(n - down)]


def test_one_scheduler_fitted_twice_runs_its_schedule_again_over_the_new_training(tiny_cifar):
    """A notebook that fits again with the same callback: the second fit stopped at the first one's length, at the
    model's constant lr (the position and the plan were the first fit's)."""
    scheduler = TrainingPhaseScheduler(one_cycle={"lr": 0.4, "div": 20, "pct": 20}, plot=False)
    for epochs in (1, 2):
        recorder = Recorder()
        trainer = L.Trainer(accelerator="cpu", max_epochs=epochs, logger=False, enable_progress_bar=False,
                            enable_model_summary=False, limit_val_batches=0, enable_checkpointing=False,
                            callbacks=[scheduler, recorder])
        trainer.fit(DarknetClassifier(num_blocks=[1], nf=4, num_classes=3, one_cycle=None),
                    CIFAR10DataModule(str(tiny_cifar), batch_size=4, download=False))
        assert trainer.global_step == epochs * BATCHES
        assert [lrs[0] for _, lrs, _ in recorder.steps] == pytest.approx(one_cycle_lrs(epochs * BATCHES))


@pytest.mark.parametrize("kwargs, message", [
    ({"epochs": -1}, "epochs > 0"),
    ({"epochs": 1, "lr": 0.1, "lr_decay": "exponential"}, "EXPONENTIAL lr decay needs a .start, end. pair"),
    ({"epochs": 1, "opt_fn": "Adamm"}, "unknown optimizer 'Adamm'; use one of .*Adam"),
    ({"epochs": 1, "lr_decay": "cubic"}, "'cubic' is not a valid DecayType"),
])
def test_bad_phase_definitions_fail_clearly(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainingPhase(**kwargs)


def test_scheduler_refuses_a_model_that_has_its_own_lr_scheduler(tiny_cifar):
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_progress_bar=False,
                        callbacks=[TrainingPhaseScheduler([TrainingPhase(1)], plot=False)])
    with pytest.raises(ValueError, match=r"the model \(DarknetClassifier\).*--model.one_cycle null"):
        trainer.fit(DarknetClassifier(num_blocks=[1], nf=4, num_classes=3),
                    CIFAR10DataModule(str(tiny_cifar), batch_size=4, download=False))

    class Own(DarknetClassifier):  # a user's module: no --model flag of ours to name
        pass

    with pytest.raises(ValueError, match=r"the model \(Own\).*drop the model's \(its configure_optimizers' "
                                         r"lr_scheduler\) or the scheduler callback"):
        trainer.fit(Own(num_blocks=[1], nf=4, num_classes=3),
                    CIFAR10DataModule(str(tiny_cifar), batch_size=4, download=False))


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


def test_schedule_plot_has_a_line_per_boundary_and_the_optimizer_names(tmp_path):
    import matplotlib.pyplot as plt

    from callbacks import plot_schedule
    phases = [TrainingPhase(1, "RMSprop", 0.01, momentum=0.9), TrainingPhase(2, "SGD", (0.1, 0.0), "cosine",
                                                                               momentum=0.9)]
    captured = {}
    original = plt.Figure.savefig

    def spy(figure, *args, **kwargs):
        captured["figure"] = figure
        return original(figure, *args, **kwargs)

    plt.Figure.savefig = spy
    try:
        path = plot_schedule(phases, [10, 30], tmp_path / "lr.png")
    finally:
        plt.Figure.savefig = original
    assert path.stat().st_size > 0
    lr_axis, momentum_axis = captured["figure"].axes
    assert [line.get_xdata()[0] for line in lr_axis.lines if line.get_linestyle() == "--"] == [10]
    assert [t.get_text() for t in lr_axis.texts] == ["RMSprop", "SGD"]
    assert lr_axis.lines[1].get_ydata()[0] == pytest.approx(0.1) and len(momentum_axis.lines) == 3


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


class BatchCounter(L.Callback):
    def __init__(self):
        self.batches = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.batches += 1


@pytest.mark.parametrize("accumulate, batches", [(3, 9), (4, 10)])
def test_gradient_accumulation_counts_optimizer_steps(tiny_cifar, accumulate, batches):
    # 6 batches per epoch are ceil(6 / accumulate) = 2 optimizer steps (Lightning also steps at an epoch's last
    # batch): 0.5 + 1.0 epochs are 1 + 2 steps, with the lr of the step's position in its phase
    counter = BatchCounter()
    phases = [TrainingPhase(0.5, "SGD", 0.1), TrainingPhase(1.0, "SGD", (0.2, 0.0), "linear")]
    steps, trainer, _ = fit(tiny_cifar, phases, callbacks=[counter],
                            trainer_kwargs={"accumulate_grad_batches": accumulate})
    assert [lrs[0] for _, lrs, _ in steps] == pytest.approx([0.1, 0.2, 0.1])
    assert trainer.global_step == 3 and counter.batches == batches


def rmsprop_reference(param, grads, lr, alpha, eps, momenta):
    """torch's RMSprop written out: square average from 0; a momentum buffer from 0, kept only while momentum > 0."""
    square, buffer, p = torch.zeros_like(param), torch.zeros_like(param), param.clone()
    for grad, momentum in zip(grads, momenta, strict=True):
        square = alpha * square + (1 - alpha) * grad**2
        buffer = momentum * buffer + grad / (square.sqrt() + eps) if momentum > 0 else torch.zeros_like(param)
        p = p - lr * (buffer if momentum > 0 else grad / (square.sqrt() + eps))
    return p


def test_momentum_turned_on_for_an_rmsprop_built_without_it_starts_from_a_zero_buffer():
    from callbacks.phase_scheduler import set_momentum
    param = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
    optimizer = torch.optim.RMSprop([param], lr=0.01, alpha=0.9, eps=1e-8, momentum=0.0)
    grads = [torch.tensor([0.5, -1.0, 2.0]), torch.tensor([1.0, 1.0, -0.5]), torch.tensor([0.2, -0.3, 0.4])]
    momenta = [0.0, 0.9, 0.5]
    expected_param = rmsprop_reference(param.detach(), grads, 0.01, 0.9, 1e-8, momenta)
    for grad, momentum in zip(grads, momenta, strict=True):
        set_momentum(optimizer.param_groups[0], momentum, optimizer)
        param.grad = grad
        optimizer.step()
    assert torch.allclose(param.detach(), expected_param, atol=1e-6)


@pytest.mark.parametrize("phases", [
    [TrainingPhase(1, "RMSprop", 1e-3, momentum=0), TrainingPhase(1, "RMSprop", 1e-3, momentum=0.9)],
    [TrainingPhase(1, "RMSprop", 1e-3, momentum=(0, 0.9), momentum_decay="linear")],
], ids=["phase-boundary", "range-from-0"])
def test_rmsprop_momentum_set_after_its_first_steps_trains_on(tiny_cifar, phases):
    steps, _, _ = fit(tiny_cifar, phases)
    assert len(steps) == 6 * sum(p.epochs for p in phases) and all(name == "RMSprop" for name, _, _ in steps)
    assert steps[-1][2] == pytest.approx(0.9 if len(phases) == 2 else 0.9 * 5 / 6)


def test_phases_written_alike_train_alike_with_the_default_momentum(tiny_cifar):
    # fastai's TrainingPhase: momentum 0.9 unless given, set whatever optimizer the phase builds
    phases = [TrainingPhase(1, "SGD", 0.1), TrainingPhase(1, "RMSprop", 1e-3), TrainingPhase(1, "SGD", 0.1)]
    steps, _, _ = fit(tiny_cifar, phases)
    assert [name for name, _, _ in steps] == ["SGD"] * BATCHES + ["RMSprop"] * BATCHES + ["SGD"] * BATCHES
    assert [m for _, _, m in steps] == [0.9] * 3 * BATCHES
    assert TrainingPhase(1).momentum_at(0.5) == 0.9
    assert TrainingPhase(1, momentum=None).momentum_at(0.5) is None  # left to the optimizer


@pytest.mark.parametrize("epochs, max_epochs, warns", [(1.5, 1, True), (1.5, 2, False), (2, 2, False)],
                         ids=["shorter", "longer", "exactly"])
def test_fractional_phases_longer_than_max_epochs_warn(tiny_cifar, epochs, max_epochs, warns):
    # max_epochs x 6 steps against the phases' epochs x 6: only fewer steps than the phases warn
    import warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        steps, _, _ = fit(tiny_cifar, [TrainingPhase(epochs, "SGD", 0.1)], max_epochs=max_epochs)
    said = [str(w.message) for w in caught if "ends training before the phases" in str(w.message)]
    assert said == ([f"max_epochs={max_epochs} ends training before the phases ({epochs:g} epochs)"] if warns else [])
    assert len(steps) == min(max_epochs, epochs) * BATCHES


class TwoOptimizers(L.LightningModule):
    """A GAN's shape: manual optimization, two optimizers of different classes, each stepped every batch."""

    def __init__(self):
        super().__init__()
        self.automatic_optimization = False
        self.a, self.b = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        for net, optimizer in zip((self.a, self.b), self.optimizers(), strict=True):
            optimizer.zero_grad()
            self.manual_backward(net(batch[0]).pow(2).mean())
            optimizer.step()

    def configure_optimizers(self):
        return torch.optim.SGD(self.a.parameters(), lr=1.0, momentum=0.5), torch.optim.Adam(self.b.parameters())


@pytest.mark.parametrize("plot", [False, True])
def test_manual_optimization_counts_batches_and_keeps_each_optimizer(tmp_path, plot):
    # 6 batches an epoch; phases of 1 and 0.5 epochs end at batches 6 and 9, then lr and momentum stay put
    seen = []

    class Seen(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append([(type(o).__name__, o.param_groups[0]["lr"],
                          o.param_groups[0]["betas"][0] if "betas" in o.param_groups[0] else
                          o.param_groups[0]["momentum"]) for o in trainer.optimizers])

    phases = [TrainingPhase(1, "RMSprop", (0.1, 0.0), "linear", momentum=(0.9, 0.8), momentum_decay="linear"),
              TrainingPhase(0.5, "RMSprop", 0.01, momentum=0.7)]
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(12, 2)), batch_size=2)
    L.Trainer(accelerator="cpu", max_epochs=3, logger=False, enable_progress_bar=False, enable_model_summary=False,
              enable_checkpointing=False, default_root_dir=tmp_path,
              callbacks=[TrainingPhaseScheduler(phases, plot=plot), Seen()]).fit(TwoOptimizers(), data)
    expected = [(0.1 * (1 - i / 6), 0.9 - 0.1 * i / 6) for i in range(6)] + [(0.01, 0.7)] * 12
    assert len(seen) == 18  # max_steps is not set from the phases: a GAN's steps are not batches
    for batch, (optimizers, (lr, momentum)) in enumerate(zip(seen, expected, strict=True)):
        assert [name for name, _, _ in optimizers] == ["SGD", "Adam"], batch
        assert [(o_lr, o_mom) for _, o_lr, o_mom in optimizers] == [pytest.approx((lr, momentum))] * 2, batch
    assert (tmp_path / "lr_schedule.png").exists() == plot


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


@pytest.mark.parametrize("beta", [1.0, -0.1, 1.5])
def test_beta_outside_zero_one_is_refused(beta):
    with pytest.raises(UserError, match=r"beta must be in \[0, 1\)"):
        TrainingPhase(1, "Adam", beta=beta)
    assert [TrainingPhase(1, "Adam", beta=b).beta for b in (0.0, 0.999)] == [0.0, 0.999]  # the ends it takes


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


def test_lr_decay_no_unquoted_in_yaml_is_no_decay():
    from jsonargparse import ArgumentParser
    parser = ArgumentParser()
    parser.add_argument("--phases", type=list[TrainingPhase])
    # YAML 1.1 reads an unquoted no as false: the README's spelling must still mean DecayType.NO
    phases = parser.instantiate(parser.parse_args(["--phases", "[{epochs: 1, lr: 0.1, lr_decay: no, momentum: "
                                                   "[0.9, 0.8], momentum_decay: no}]"])).phases
    assert phases[0].lr_decay is DecayType.NO and phases[0].momentum_decay is DecayType.NO
    assert phases[0].lr_at(0.5) == 0.1 and phases[0].momentum_at(0.5) == 0.9
    with pytest.raises(UserError, match="'True' is not a valid DecayType"):
        TrainingPhase(1, lr_decay=True)


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


def test_the_schedule_goes_to_wandb_once_not_again_at_step_0_when_resumed(tmp_path):
    from lightning.pytorch.loggers import WandbLogger

    class Images(WandbLogger):
        def __init__(self):  # no W&B run: only what would be logged
            self.logged = []

        def log_image(self, key, images, **options):
            self.logged.append(key)

    scheduler = TrainingPhaseScheduler([TrainingPhase(1, "SGD", 0.1)])
    scheduler.ends = [10]
    logger = Images()
    for step in (0, 40):  # a new run, then its resume
        scheduler._plot(SimpleNamespace(default_root_dir=tmp_path, loggers=[logger], global_step=step))
        assert (tmp_path / "lr_schedule.png").is_file()
    assert logger.logged == ["lr_schedule"]
