"""The phase scheduler on a tiny fit: the lr, momentum, betas and optimizer each step sees, against formulas."""

import lightning as L
import pytest
import torch
from runs import BATCHES, BatchCounter, Recorder, ShapeRecorder, expected, fit, one_cycle_lrs

from callbacks import TrainingPhase, TrainingPhaseScheduler, UserError
from datamodules import CIFAR10DataModule
from lightning_modules import DarknetClassifier

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets: threads only add contention


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
    # one value for all groups leaves no_decay_bn_bias's two groups at 0, as the model's own weight decay does
    assert recorder.steps == ([[(0.95, 1e-3), (0.95, 0.0), (0.95, 0.0)]] * BATCHES
                              + [[(0.8, 5e-4), (0.8, 0.0), (0.8, 0.0)]] * BATCHES * 2)


def test_beta_for_sgd_and_a_weight_decay_list_of_the_wrong_length_are_named(tiny_cifar):
    for phase, message in ((TrainingPhase(1, "SGD", 0.01, beta=0.9), "phase 0 sets beta 0.9.*SGD has neither"),
                           (TrainingPhase(1, "SGD", 0.01, weight_decay=[0.1, 0.2]),
                            r"phase 0: weight_decay has 2 values for the 1 parameter groups of the model's SGD \(group "
                            r"0\); give one a group, or one value for all")):
        trainer = L.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_progress_bar=False,
                            enable_checkpointing=False, limit_val_batches=0, enable_model_summary=False,
                            callbacks=[TrainingPhaseScheduler([phase], plot=False)])
        with pytest.raises(UserError, match=message):
            trainer.fit(DarknetClassifier(num_blocks=[1], nf=4, num_classes=3, one_cycle=None),
                        CIFAR10DataModule(str(tiny_cifar), batch_size=4, download=False))


@pytest.mark.parametrize("later, message", [
    (TrainingPhase(1, "SGD", 0.1, data={"imagesize": 28}), "phase 1 sets data attribute 'imagesize', which the "
                                                             "DataModule does not have$"),
    (TrainingPhase(1, "SGD", 0.1, lr_multipliers=[0.1, 1]), "phase 1: lr_multipliers has 2 values for the 1 "
                                                             "parameter groups"),
    (TrainingPhase(1, "SGD", 0.1, beta=0.99), "phase 1 sets beta 0.99, .*SGD has neither"),
    (TrainingPhase(1, "Adam", 0.1, beta=0.99), None),  # beta suits Adam: trained
], ids=["data", "multipliers", "beta", "fine"])
def test_a_later_phases_mistake_is_refused_before_the_first_batch(tiny_cifar, later, message):
    """A mistake in phase 1 stopped the training as phase 1 began, its epoch in progress lost (hours, in a real
    run). The phases are checked as the fit starts."""
    counter = BatchCounter()
    phases = [TrainingPhase(1, "SGD", 0.1), later]
    if message is None:
        fit(tiny_cifar, phases, callbacks=[counter])
        assert counter.batches == 2 * BATCHES
        return
    with pytest.raises(UserError, match=message):
        fit(tiny_cifar, phases, callbacks=[counter])
    assert counter.batches == 0


def test_a_fresh_fit_of_a_recipe_says_nothing_of_a_resume(tiny_cifar, recwarn):
    """A fit that resumes nothing: no word of a checkpoint's schedule or of one from before its plan was saved."""
    steps, _, _ = fit(tiny_cifar, None, max_epochs=2, one_cycle={"lr": 0.4})
    assert len(steps) == 2 * BATCHES
    said = [str(w.message) for w in recwarn]
    assert not [m for m in said if "lr schedule was" in m or "before 2026-11-29" in m or "was planned over" in m], said


def test_phases_from_python_as_dicts_or_one_phase_are_taken(tiny_cifar):
    """Written as the YAML's dicts, or one phase not in a list, they failed at the fit with a TypeError."""
    assert TrainingPhaseScheduler([{"epochs": 1, "lr": 0.1}, TrainingPhase(2)]).given_phases == \
        [TrainingPhase(1, lr=0.1), TrainingPhase(2)]
    assert TrainingPhaseScheduler(TrainingPhase(1, lr=0.3)).given_phases == [TrainingPhase(1, lr=0.3)]
    with pytest.raises(UserError, match="phases: 3 is no TrainingPhase; give TrainingPhase"):
        TrainingPhaseScheduler([TrainingPhase(1), 3])
    steps, _, _ = fit(tiny_cifar, [{"epochs": 1, "lr": 0.2}])
    assert [lrs[0] for _, lrs, _ in steps] == [0.2] * BATCHES


def test_one_weight_decay_keeps_the_models_exempt_groups_and_scaled_ones(tiny_cifar):
    """A phase's one weight_decay was set on every group, undoing no_decay_bn_bias's 0 and bn_bias_lr_scale's
    division; one value a group is set as given."""
    recorder = HyperRecorder()
    phases = [TrainingPhase(1, "SGD", 0.01), TrainingPhase(1, "SGD", 0.01, weight_decay=8e-4),
              TrainingPhase(1, "Adam", 0.01, weight_decay=[1e-3, 2e-3, 3e-3])]
    trainer = L.Trainer(accelerator="cpu", max_epochs=3, logger=False, enable_progress_bar=False,
                        enable_checkpointing=False, limit_val_batches=0, enable_model_summary=False,
                        callbacks=[TrainingPhaseScheduler(phases, plot=False), recorder])
    model = DarknetClassifier(num_blocks=[1], nf=4, num_classes=3, one_cycle=None, weight_decay=4e-4,
                              bn_bias_lr_scale=4)
    trainer.fit(model, CIFAR10DataModule(str(tiny_cifar), batch_size=4, download=False))
    decays = [[decay for _, decay in step] for step in recorder.steps]
    # groups: weights, BatchNorm weights and other biases, BatchNorm biases (their decay divided by their lr scale)
    assert decays == [[4e-4, 4e-4, 1e-4]] * BATCHES + [[8e-4, 8e-4, 2e-4]] * BATCHES + [[1e-3, 2e-3, 3e-3]] * BATCHES


def test_a_phase_that_rounds_to_no_step_is_named(tiny_cifar, recwarn):
    steps, _, _ = fit(tiny_cifar, [TrainingPhase(0.05, "SGD", 0.5), TrainingPhase(1, "SGD", 0.1)])
    assert [lrs[0] for _, lrs, _ in steps] == [0.1] * BATCHES  # 0.05 x 6 batches: 0.3, no step
    said = [str(w.message) for w in recwarn if "to no step" in str(w.message)]
    assert said == ["phase 0 (0.05 epochs) rounds to no step at 6 steps an epoch, and is skipped: lengthen it, or "
                    "train more steps an epoch"]


def test_per_phase_data_changes_the_batch_image_size(tiny_cifar):
    shapes = ShapeRecorder()

    class Resized(L.Callback):  # the size the model sees, after on_after_batch_transfer
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            shapes.sizes.append(batch[0].shape[-1])

    phases = [TrainingPhase(1, "SGD", 0.1, data={"image_size": 28}), TrainingPhase(1, "SGD", 0.1,
                                                                                    data={"image_size": 32})]
    fit(tiny_cifar, phases, callbacks=[Resized()])
    assert shapes.sizes == [28] * BATCHES + [32] * BATCHES


def test_a_recipe_over_max_steps_alone_plans_over_those_steps(tiny_cifar):
    """max_epochs -1 and max_steps 9 (an epoch and a half): Lightning's estimate did not load the data, whose batches
    an epoch the plan's length in epochs divides by, and one_cycle stopped with an OverflowError (inf batches)."""
    steps, trainer, _ = fit(tiny_cifar, None, max_epochs=-1, trainer_kwargs={"max_steps": 9},
                            one_cycle={"lr": 0.4, "div": 20, "pct": 20})
    assert trainer.global_step == 9
    assert [lrs[0] for _, lrs, _ in steps] == pytest.approx(one_cycle_lrs(9))


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


@pytest.mark.parametrize("recipe", [{"one_cycle": {}}, {"sgdr": {}}, {"phases": [TrainingPhase(1)]}])
def test_a_recipe_or_phases_refuse_the_style_systems_dataloader_which_has_no_length(style_images, tmp_path, recipe):
    """Phases are counted in epochs: one_cycle's length came out as inf / 1 batches an epoch (an OverflowError), and
    sgdr and phases failed only once training started."""
    from datamodules import StyleTransferDataModule
    from lightning_modules import StyleTransfer
    content, style = style_images
    model = StyleTransfer(arch="vgg16", vgg_weights="random", show_iter=0)
    trainer = L.Trainer(accelerator="cpu", max_steps=3, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                        callbacks=[TrainingPhaseScheduler(**recipe, plot=False)])
    with pytest.raises(UserError, match=r"counts its phases in epochs of the training dataloader, and this one has no "
                                        r"length \(the style system's"):
        trainer.fit(model, datamodule=StyleTransferDataModule([str(content[0])], str(style), size=32))
    assert trainer.global_step == 0


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
    said = [str(w.message) for w in caught if "ends the training before the phases" in str(w.message)]
    assert said == ([f"max_epochs {max_epochs} ends the training before the phases do ({epochs:g} epochs): the rest "
                     f"of them is not trained; to train them all, give --trainer.max_epochs 2 "
                     f"(Trainer(max_epochs=2))"] if warns else [])
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

