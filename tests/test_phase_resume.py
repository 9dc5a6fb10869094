"""A resumed fit's phases: an earlier phase's data, the uninterrupted run's trajectory and cycle, the W&B plot."""

import warnings
from types import SimpleNamespace

import lightning as L
import pytest
from runs import BATCHES, ShapeRecorder, expected, fit, one_cycle_lrs

from callbacks import TrainingPhase, TrainingPhaseScheduler
from callbacks.phase_scheduler import same_schedule

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets: threads only add contention


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
    assert not [w for w in caught if "lr schedule was" in str(w.message)]  # the same phases
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


def test_a_resume_given_another_recipe_than_its_runs_says_both(tiny_cifar, tmp_path):
    """A resume that forgot the run's --config (a triangle's) went on with the shipped config's one_cycle from the
    triangle's position without a word: the lr jumped."""
    triangle = {"lr": 0.4}
    fit(tiny_cifar, None, max_epochs=1, root=tmp_path, triangle=triangle)
    last = next(tmp_path.rglob("*.ckpt"))
    for recipe, warned in (({"triangle": triangle}, False), ({"one_cycle": {"lr": 0.4, "div": 20}}, True)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit(tiny_cifar, None, max_epochs=2, ckpt_path=str(last), root=tmp_path / str(warned), **recipe)
        said = [str(w.message) for w in caught if "lr schedule was" in str(w.message)]
        if warned:
            assert said == [f"the run's lr schedule was triangle {{\"lr\": 0.4}}, this resume's one_cycle "
                            f"{{\"div\": 20, \"lr\": 0.4}}: the lr and momentum go on from the run's position "
                            f"({BATCHES} steps) on this resume's schedule; give the run's scheduler options again"]
        else:
            assert said == []


def test_the_changed_schedule_warning_gives_the_command_with_the_runs_config(tmp_path):
    """In a run folder the warning gives the command that resumes as the run began, its config.yaml named; for a
    copied checkpoint, what to give again."""
    scheduler = TrainingPhaseScheduler(one_cycle={"lr": 0.4})
    scheduler.resumed_schedule = 'triangle {"lr": 0.4}'
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "config.yaml").write_text("model: {}\n")
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert scheduler.changed_schedule(last).endswith(
        f"on this resume's schedule; to resume as the run began, give its config: python train.py --config "
        f"{tmp_path / 'config.yaml'} --ckpt_path {last}")
    assert scheduler.changed_schedule(tmp_path / "elsewhere" / "copies" / "copied.ckpt").endswith(
        "give the run's scheduler options again")


def test_phases_that_differ_in_one_field_are_another_schedule():
    def state(*phases):
        return TrainingPhaseScheduler(list(phases)).state_dict()

    one = TrainingPhase(1, "SGD", (0.1, 0.01), "cosine")
    scheduler = TrainingPhaseScheduler([TrainingPhase(1, "SGD", (0.1, 0.01), "linear")])
    scheduler.load_state_dict(state(one))
    assert not same_schedule(scheduler.resumed_schedule, scheduler.schedule())
    scheduler.load_state_dict(state(TrainingPhase(1, "SGD", (0.1, 0.01), "linear")))
    assert same_schedule(scheduler.resumed_schedule, scheduler.schedule())
    scheduler.load_state_dict(state(TrainingPhase(1, "SGD", (0.1, 0.01), "linear"), one))
    assert not same_schedule(scheduler.resumed_schedule, scheduler.schedule())
    # a checkpoint of before beta and weight_decay moved ahead of power: the same phase, its fields in another order
    scheduler = TrainingPhaseScheduler([TrainingPhase(1, "Adam", lr_decay="polynomial", power=3, beta=0.9)])
    saved = 'phases [{"opt_fn": "Adam", "lr_decay": "polynomial", "power": 3, "beta": 0.9}]'
    assert saved != scheduler.schedule() and same_schedule(saved, scheduler.schedule())
    assert not same_schedule(saved.replace("0.9", "0.8"), scheduler.schedule())
    assert not same_schedule(saved.replace("phases", "sgdr"), scheduler.schedule())
    assert same_schedule(None, scheduler.schedule())  # a checkpoint without one: nothing to tell
    assert not same_schedule(saved[:-3], scheduler.schedule())  # cut short: no JSON, so no match


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


@pytest.mark.parametrize("state, warned", [
    ({"batches_seen": 1, "phase_index": 0}, True),  # before 2026-11-29, one batch in
    ({"batches_seen": 0, "phase_index": 0}, False),  # before 2026-11-29, saved before any batch: nothing to go on from
    ({"batches_seen": 5, "phase_index": 0, "planned_epochs": 2.0}, False),  # today's: its plan kept, said otherwise
    ({"batches_seen": 5, "phase_index": 0, "planned_epochs": None}, False)])  # today's, saved before it planned
def test_only_a_checkpoint_from_before_the_plan_was_kept_warns_that_it_does_not_say_the_plan(state, warned):
    scheduler = TrainingPhaseScheduler(one_cycle={"lr": 0.4})
    scheduler.load_state_dict(state)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scheduler.plan("one_cycle", 2.0)
    assert any("is from before 2026-11-29" in str(w.message) for w in caught) == warned


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

