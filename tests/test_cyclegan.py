import lightning as L
import pytest
import torch
import torch.nn.functional as F
from conftest import CrashAtEpoch

from datamodules import UnpairedImageDataModule
from lightning_modules import CycleGAN
from lightning_modules.cyclegan import ImagePool, linear_decay

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {"n_blocks": 1, "ngf": 4, "ndf": 4, "log_images_every_n_batches": 0}


def tiny_model(**kwargs):
    torch.manual_seed(0)
    return CycleGAN(**{**TINY, **kwargs})


def tiny_data(root):
    return UnpairedImageDataModule(str(root), batch_size=2, load_size=36, crop_size=32, num_workers=0)


def trainer(tmp_path, **kwargs):
    return L.Trainer(**{"accelerator": "cpu", "logger": False, "enable_checkpointing": False,
                        "enable_progress_bar": False, "enable_model_summary": False,
                        "default_root_dir": str(tmp_path), **kwargs})


@pytest.mark.parametrize("gan_mode", ["lsgan", "vanilla"])
def test_generator_loss_is_the_papers_formula(gan_mode):
    model = tiny_model(gan_mode=gan_mode)
    torch.manual_seed(1)
    a, b = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    G, Fb, D_X, D_Y = model.gen_a2b, model.gen_b2a, model.disc_a, model.disc_b  # the paper's names
    if gan_mode == "lsgan":  # E[(D(G(x)) - 1)^2]
        adversarial = ((D_Y(G(a)) - 1) ** 2).mean() + ((D_X(Fb(b)) - 1) ** 2).mean()
    else:  # -E[log sigmoid(D(G(x)))]
        adversarial = -torch.log(torch.sigmoid(D_Y(G(a)))).mean() - torch.log(torch.sigmoid(D_X(Fb(b)))).mean()
    cycle = (Fb(G(a)) - a).abs().mean() + (G(Fb(b)) - b).abs().mean()
    identity = (G(b) - b).abs().mean() + (Fb(a) - a).abs().mean()
    by_hand = adversarial + 10 * cycle + 0.5 * 10 * identity
    losses, _ = model.generator_losses(a, b)
    assert sum(losses.values()).item() == pytest.approx(by_hand.item(), rel=1e-5)


def test_discriminator_loss_is_halved():
    model = tiny_model()
    real, fake = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    by_hand = 0.5 * (((model.disc_a(real) - 1) ** 2).mean() + (model.disc_a(fake) ** 2).mean())
    assert model.discriminator_loss(model.disc_a, real, fake).item() == pytest.approx(by_hand.item(), rel=1e-6)


def test_pool_returns_the_new_fakes_until_full():
    pool = ImagePool(3, seed=0)
    fakes = torch.arange(3.0).view(3, 1, 1, 1)
    assert torch.equal(pool.query(fakes), fakes) and len(pool.images) == 3


def test_full_pool_returns_a_stored_image_half_the_time():
    pool = ImagePool(50, seed=0)
    pool.query(torch.arange(50.0).view(50, 1, 1, 1))  # stored: 0..49
    new = 1000 + torch.arange(2000.0)
    returned = pool.query(new.view(-1, 1, 1, 1)).flatten()
    stored = returned != new
    assert stored.float().mean().item() == pytest.approx(0.5, abs=0.05)
    assert (returned[stored] < new[stored]).all()  # an earlier image: one of 0..49 or an earlier fake
    assert len(set(returned[stored].tolist())) == stored.sum()  # handed out once, then replaced


def test_each_optimizer_changes_only_its_networks(tiny_unpaired, tmp_path):
    model = tiny_model()
    nets = {"gen_a2b": model.gen_a2b, "gen_b2a": model.gen_b2a, "disc_a": model.disc_a, "disc_b": model.disc_b}
    changed = []

    def snapshot():
        return {name: [p.detach().clone() for p in net.parameters()] for name, net in nets.items()}

    original = CycleGAN.configure_optimizers

    def configure_optimizers(self):
        optimizers, schedules = original(self)
        for opt in optimizers:
            step = opt.step

            def recorded(*args, _step=step, **kwargs):
                before = snapshot()
                out = _step(*args, **kwargs)
                after = snapshot()
                changed.append(sorted(n for n in nets if any(not torch.equal(x, y)
                                                             for x, y in zip(before[n], after[n], strict=True))))
                return out
            opt.step = recorded
        return optimizers, schedules

    model.configure_optimizers = configure_optimizers.__get__(model)
    trainer(tmp_path, max_steps=3).fit(model, datamodule=tiny_data(tiny_unpaired))
    assert changed == [["gen_a2b", "gen_b2a"], ["disc_a"], ["disc_b"]]


def test_learning_rates_follow_the_linear_policy(tiny_unpaired, tmp_path):
    import warnings

    lrs = []

    class Record(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            lrs.append([opt.param_groups[0]["lr"] for opt in trainer.optimizers])

    model = tiny_model(lr=1e-3, n_epochs=2, n_epochs_decay=3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer(tmp_path, max_epochs=5, limit_train_batches=1, callbacks=[Record()]).fit(
            model, datamodule=tiny_data(tiny_unpaired))
    # the schedule is not stepped before the optimizers: torch warns it would skip the first lr
    assert not [w for w in caught if "lr_scheduler.step()` before `optimizer.step()" in str(w.message)]
    # the reference's rule: 1 - max(0, epoch + 1 - n_epochs) / (n_epochs_decay + 1)
    expected = [1e-3 * (1 - max(0, epoch + 1 - 2) / 4) for epoch in range(5)]
    assert expected == pytest.approx([1e-3, 1e-3, 0.75e-3, 0.5e-3, 0.25e-3])
    assert lrs == [pytest.approx([e] * 3) for e in expected]


def test_a_run_stopped_mid_epoch_resumes_at_that_epochs_learning_rate(tiny_unpaired, tmp_path):
    """max_steps ends a run inside an epoch, Lightning still calls the epoch end hook (the next epoch's lr), the
    config's epoch-end checkpoint keeps that, and a resume with a larger max_steps trains the epoch's other batches."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    lrs = []

    class Record(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            lrs.append((trainer.current_epoch, trainer.optimizers[0].param_groups[0]["lr"]))

    def run(max_steps, ckpt_path=None):
        checkpoints = ModelCheckpoint(dirpath=tmp_path / "checkpoints", every_n_epochs=1, save_on_train_epoch_end=True,
                                      save_last=True)  # as configs/cyclegan.yaml
        trainer(tmp_path, max_steps=max_steps, enable_checkpointing=True, callbacks=[checkpoints, Record()]).fit(
            tiny_model(lr=1e-3, n_epochs=0, n_epochs_decay=3), datamodule=tiny_data(tiny_unpaired),
            ckpt_path=ckpt_path)

    run(12)  # 3 batches an epoch, 3 optimizer steps a batch: stops after epoch 1's first batch
    run(27, ckpt_path=tmp_path / "checkpoints" / "last.ckpt")
    by_hand = {epoch: 1e-3 * (3 - epoch) / 4 for epoch in range(3)}  # (n_epochs + n_epochs_decay - e) / (decay + 1)
    assert [epoch for epoch, _ in lrs] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert [lr for _, lr in lrs] == pytest.approx([by_hand[epoch] for epoch, _ in lrs])


def test_a_resume_with_another_decay_span_trains_its_first_epoch_on_the_new_schedule(tiny_unpaired, tmp_path):
    """A run of n_epochs_decay 0 extended with n_epochs_decay 2 (the fix the max_epochs refusal names): the warning
    said the resume goes on with its own values, but its first epoch kept the checkpoint's lr (0: the old schedule's
    end), the epochs after it the new one's."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    lrs = []

    class Record(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            lrs.append((trainer.current_epoch, [o.param_groups[0]["lr"] for o in trainer.optimizers]))

    def run(max_epochs, n_epochs_decay, ckpt_path=None):
        checkpoints = ModelCheckpoint(dirpath=tmp_path / "checkpoints", every_n_epochs=1, save_on_train_epoch_end=True,
                                      save_last=True)
        trainer(tmp_path, max_epochs=max_epochs, limit_train_batches=1, enable_checkpointing=True,
                callbacks=[checkpoints, Record()]).fit(
            tiny_model(lr=1e-3, n_epochs=1, n_epochs_decay=n_epochs_decay), datamodule=tiny_data(tiny_unpaired),
            ckpt_path=ckpt_path)

    run(1, 0)  # n_epochs_decay 0: the lr falls to 0 after the first epoch, which the checkpoint keeps
    run(3, 2, ckpt_path=tmp_path / "checkpoints" / "last.ckpt")
    # the reference's rule with the new span: 1 - max(0, epoch + 1 - n_epochs) / (n_epochs_decay + 1)
    expected = {epoch: 1e-3 * (1 - max(0, epoch + 1 - 1) / 3) for epoch in range(3)}
    assert [epoch for epoch, _ in lrs] == [0, 1, 2]
    assert [lr for _, lr in lrs] == [pytest.approx([expected[epoch]] * 3) for epoch, _ in lrs]


@pytest.mark.parametrize("max_epochs, effect", [(1, "stops before the lr has decayed"), (2, None)])
def test_max_epochs_short_of_the_decays_span_warns(tiny_unpaired, tmp_path, max_epochs, effect):
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer(tmp_path, max_epochs=max_epochs, limit_train_batches=1).fit(
            tiny_model(n_epochs=1, n_epochs_decay=1), datamodule=tiny_data(tiny_unpaired))
    shown = [str(w.message) for w in caught if "linear decay spans" in str(w.message)]
    assert shown == ([] if effect is None else [f"--trainer.max_epochs {max_epochs} but the linear decay spans "
                                                f"n_epochs + n_epochs_decay = 2 epochs: the run {effect}; the "
                                                "reference trains their sum, --trainer.max_epochs 2"])


def test_max_epochs_past_the_decays_end_is_refused_before_a_batch(tiny_unpaired, tmp_path):
    """junyanz's --n_epochs 1 --n_epochs_decay 1 set its run's length; here the config's max_epochs 200 stayed, and
    after a warning 198 epochs trained at lr 0, changing nothing."""
    from callbacks import UserError
    model = tiny_model(n_epochs=1, n_epochs_decay=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(UserError, match=r"^--trainer.max_epochs 200 but the linear decay ends at n_epochs \+ "
                                        r"n_epochs_decay = 2 epochs: epochs 3 to 200 would train at lr 0; give "
                                        r"--trainer.max_epochs 2 "):
        trainer(tmp_path, max_epochs=200, limit_train_batches=1).fit(model, datamodule=tiny_data(tiny_unpaired))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_training_phase_scheduler_can_replace_the_built_in_schedule(tiny_unpaired, tmp_path):
    from callbacks import TrainingPhase, TrainingPhaseScheduler

    lrs = []

    class Record(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            lrs.append([opt.param_groups[0]["lr"] for opt in trainer.optimizers])

    phases = [TrainingPhase(epochs=2, opt_fn="Adam", lr=1e-3),
              TrainingPhase(epochs=3, opt_fn="Adam", lr=(1e-3, 0.0), lr_decay="linear")]
    model = tiny_model(lr=1e-3, linear_decay=False)
    trainer(tmp_path, max_epochs=5, limit_train_batches=1,
            callbacks=[TrainingPhaseScheduler(phases=phases, plot=False), Record()]).fit(
        model, datamodule=tiny_data(tiny_unpaired))
    # one batch an epoch: the second phase is at 0, 1/3 and 2/3 of its way from 1e-3 to 0
    assert lrs == [pytest.approx([lr] * 3) for lr in (1e-3, 1e-3, 1e-3, 2e-3 / 3, 1e-3 / 3)]


def test_default_schedule_reaches_one_101th_in_the_last_epoch():
    assert [linear_decay(e, 100, 100) for e in (0, 99, 100, 199)] == pytest.approx([1, 1, 100 / 101, 1 / 101])


def test_resume_continues_exactly(tiny_unpaired, tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    def run(folder, callbacks, ckpt_path=None):
        L.seed_everything(0)
        model = tiny_model(pool_size=4, n_epochs=1, n_epochs_decay=1)  # the lr halves after epoch 0
        checkpoints = ModelCheckpoint(dirpath=folder, save_last=True)
        fit = trainer(tmp_path, max_epochs=2, enable_checkpointing=True, callbacks=[checkpoints, *callbacks])
        fit.fit(model, datamodule=tiny_data(tiny_unpaired), ckpt_path=ckpt_path)
        return model, fit

    straight, straight_trainer = run(tmp_path / "straight", [])
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(tmp_path / "resumed", [CrashAtEpoch(1)])
    class Count(L.Callback):
        batches = 0

        def on_train_batch_end(self, *args):
            self.batches += 1

    counted = Count()
    resumed, resumed_trainer = run(tmp_path / "resumed", [counted], ckpt_path=tmp_path / "resumed" / "last.ckpt")
    assert counted.batches == 3  # only epoch 1 ran again
    for name, tensor in straight.state_dict().items():
        assert torch.equal(tensor, resumed.state_dict()[name]), name
    for pool in ("pool_a", "pool_b"):  # full (12 fakes met a pool of 4), so comparing them can fail
        ours, theirs = getattr(straight, pool).images, getattr(resumed, pool).images
        assert len(ours) == len(theirs) == 4 and all(torch.equal(x, y) for x, y in zip(ours, theirs, strict=True))
    assert resumed.batches_trained == straight.batches_trained == 6  # 2 epochs of 3 batches
    assert resumed_trainer.global_step == straight_trainer.global_step == 18  # 3 optimizer steps a batch
    assert [o.param_groups[0]["lr"] for o in resumed_trainer.optimizers] == \
        [o.param_groups[0]["lr"] for o in straight_trainer.optimizers]


def test_bf16_mixed_runs_the_nets_in_bf16(tiny_unpaired, tmp_path):
    dtypes = []

    class Record(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            with trainer.precision_plugin.forward_context():
                dtypes.append(pl_module.gen_a2b(batch[0]).dtype)

    model = tiny_model(channels_last=True)
    trainer(tmp_path, max_steps=3, precision="bf16-mixed", callbacks=[Record()]).fit(
        model, datamodule=tiny_data(tiny_unpaired))
    assert dtypes == [torch.bfloat16]
    assert model.gen_a2b[0][1].weight.is_contiguous(memory_format=torch.channels_last)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_16_mixed_grad_scaler_steps_all_three_optimizers(tiny_unpaired, tmp_path):
    from lightning.pytorch.plugins.precision import MixedPrecision

    # Lightning turns "16-mixed" into bf16 on a CPU; this plugin forces the float16 + GradScaler path
    scaler = torch.amp.GradScaler("cpu", init_scale=256.0)  # low enough that no first step overflows
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer(tmp_path, max_steps=3, plugins=[MixedPrecision("16-mixed", "cpu", scaler)]).fit(
        model, datamodule=tiny_data(tiny_unpaired))
    changed = {k.split(".")[0] for k, v in model.state_dict().items() if not torch.equal(before[k], v)}
    assert changed == {"gen_a2b", "gen_b2a", "disc_a", "disc_b"} and scaler.get_scale() == 256.0


@pytest.mark.parametrize("lambda_identity, columns", [(0.5, 8), (0.0, 6)])
def test_visual_grid_has_six_images_per_row_or_eight_with_the_identity_images(tiny_unpaired, tmp_path,
                                                                              lambda_identity, columns):
    from PIL import Image

    from callbacks.images import LABEL_HEIGHT

    model = tiny_model(log_images_every_n_batches=2, lambda_identity=lambda_identity)
    shown = []
    model.log_visuals = (lambda log: lambda key, visuals, *a: shown.append(visuals) or log(key, visuals, *a))(
        model.log_visuals)
    trainer(tmp_path, max_steps=9).fit(model, datamodule=tiny_data(tiny_unpaired))  # 3 batches
    pngs = sorted(p.name for p in (tmp_path / "images").iterdir())
    assert pngs == ["train_visuals-000001.png", "train_visuals-000003.png"]
    grid = Image.open(tmp_path / "images" / pngs[0])
    # make_grid: a column per image, 2 rows (batch 2), 2px padding, under the columns' names
    assert grid.size == (2 + columns * 34, LABEL_HEIGHT + 2 + 2 * 34)
    visuals = shown[0]
    if lambda_identity:  # F(A) and G(B): each generator on its own output domain (the weights moved since; the
        with torch.no_grad():  # generator swapped would be further off)
            for same, real, right, wrong in (("same_a", "real_a", model.gen_b2a, model.gen_a2b),
                                             ("same_b", "real_b", model.gen_a2b, model.gen_b2a)):
                image, x = visuals[same], visuals[real]
                assert (image - right(x)).abs().mean() < (image - wrong(x)).abs().mean() / 3, same
        assert list(visuals) == ["real_a", "fake_b", "rec_a", "same_a", "real_b", "fake_a", "rec_b", "same_b"]


def test_loss_terms_are_logged(tiny_unpaired, tmp_path):
    model = tiny_model()
    fit = trainer(tmp_path, max_steps=3)
    fit.fit(model, datamodule=tiny_data(tiny_unpaired))
    assert set(fit.callback_metrics) == {f"train/{k}" for k in ("gan_a2b", "gan_b2a", "cycle_a", "cycle_b",
                                                                "identity_a", "identity_b", "gen_total",
                                                                "disc_a", "disc_b")}
    assert F.l1_loss(fit.callback_metrics["train/gen_total"],
                     sum(fit.callback_metrics[f"train/{k}"] for k in ("gan_a2b", "gan_b2a", "cycle_a", "cycle_b",
                                                                      "identity_a", "identity_b"))) < 1e-5


def test_test_metrics_are_means_over_each_domains_images_and_the_grid_pairs_first_images(tmp_path):
    """5 testA and 3 testB images in batches of 2: the old paired loader counted B images 0 and 1 twice in
    test/cycle_l1_b, and a mean of batch means would weigh the last, single-image batch of A as two."""
    import numpy as np
    from conftest import cycle_l1_by_hand, make_unpaired
    from PIL import Image

    from callbacks.images import LABEL_HEIGHT

    root = make_unpaired(tmp_path / "d", counts=(1, 1, 5, 3), size=(32, 32), gray_in=None)
    model = tiny_model()
    expected = cycle_l1_by_hand(model, root)
    firsts = {side: [np.array(Image.open(f)) for f in sorted((root / f"test{side.upper()}").iterdir())[:3]]
              for side in "ab"}
    results = trainer(tmp_path).test(model, datamodule=tiny_data(root), verbose=False)
    assert len(results) == 2  # a result per loader (testA, testB), each with both domain means
    for result in results:
        assert result == {"test/cycle_l1_a": pytest.approx(expected["a"], rel=1e-5),
                          "test/cycle_l1_b": pytest.approx(expected["b"], rel=1e-5)}
    grid = np.array(Image.open(tmp_path / "images" / "test_visuals-000000.png"))
    # rows of (real A, fake B, rec A, real B, fake A, rec B) under their names: the first 3 of each domain (testB
    # has 3), from two batches of 2 each
    assert grid.shape == (LABEL_HEIGHT + 2 + 3 * 34, 2 + 6 * 34, 3)
    assert (grid[:LABEL_HEIGHT, 2:34] > 128).any() and (grid[:LABEL_HEIGHT, 2 + 3 * 34:34 + 3 * 34] > 128).any()
    grid = grid[LABEL_HEIGHT:]
    for side, column in (("a", 0), ("b", 3)):
        for row in range(3):
            tile = grid[2 + 34 * row:34 + 34 * row, 2 + 34 * column:34 + 34 * column].astype(int)
            assert np.abs(tile - firsts[side][row]).max() <= 1


def test_forward_takes_junyanzs_directions_and_any_size_cut_back_to_it():
    """model(x, "AtoB") was refused from Python though the commands take it, and a 66px image came out 68px."""
    model = tiny_model().eval()
    x = torch.rand(1, 3, 66, 70) * 2 - 1
    with torch.no_grad():
        padded = F.pad(x, (0, 2, 0, 2), mode="reflect")  # to 68 x 72, multiples of 4, by hand
        assert torch.equal(model(x, "AtoB"), model.gen_a2b(padded)[..., :66, :70])
        assert torch.equal(model(x, "BtoA"), model.gen_b2a(padded)[..., :66, :70])
        square = torch.rand(1, 3, 32, 32) * 2 - 1
        assert torch.equal(model(square, "a2b"), model.gen_a2b(square))  # no padding where none is needed
