import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from conftest import ROOT, seeded_rows
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins import MixedPrecision
from PIL import Image

import train
from callbacks import UserError
from datamodules import ImageFolderDataModule
from lightning_modules import WGAN, commands

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets on a shared 2-core CPU

SCHEDULE = {"d_iters": 2, "d_iters_long": 3, "long_until": 2, "long_every": 4}  # every branch within 14 batches
TINY = {"isize": 16, "nz": 8, "ngf": 4, "ndf": 4, "sample_every": 1000, **SCHEDULE}


def write_images(root: Path, n: int = 28) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n):
        (root / f"d{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (16 + i % 5, 16, 3), dtype=np.uint8)).save(root / f"d{i % 2}/{i}.png")
    return root


@pytest.fixture
def images(tmp_path):
    return write_images(tmp_path / "images")  # 28 images: 7 batches of 4 per epoch


def seed_loop(batches_per_epoch, epochs, d_iters=2, d_iters_long=3, long_until=2, long_every=4):
    """The seed's train() written out: the critic iteration after which each generator iteration ran."""
    gen_iterations, critic_iterations, gen_after = 0, 0, []
    for _ in range(epochs):
        i, n = 0, batches_per_epoch
        while i < n:
            d = d_iters_long if gen_iterations < long_until or gen_iterations % long_every == 0 else d_iters
            j = 0
            while j < d and i < n:
                j, i, critic_iterations = j + 1, i + 1, critic_iterations + 1
            gen_iterations += 1
            gen_after.append(critic_iterations)
    return gen_after


class Recorder(L.Callback):
    """Counters after every batch, and the critic's largest |weight| whenever an optimizer is about to step."""

    def __init__(self, crash_at_step: int | None = None, out_dir: str | None = None):
        self.rows, self.critic_max = [], []
        self.crash_at_step, self.out_dir = crash_at_step, out_dir

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        who = "generator" if optimizer is trainer.optimizers[1] else "critic"
        self.critic_max.append((who, max(p.abs().max().item() for p in pl_module.critic.parameters())))

    def on_train_start(self, trainer, m):
        self.noise = []  # the sum of each noise batch the model draws
        draw = m.noise

        def recorded(n):
            noise = draw(n)
            self.noise.append(round(noise.double().sum().item(), 6))
            return noise
        m.noise = recorded

    def on_train_batch_end(self, trainer, m, outputs, batch, batch_idx):
        self.rows.append((m.critic_iterations, m.gen_iterations, m.group_iterations, trainer.global_step))
        if trainer.global_step == self.crash_at_step:
            raise RuntimeError("simulated crash")

    @property
    def gen_after(self):
        return [c for i, (c, g, _, _) in enumerate(self.rows) if g > (self.rows[i - 1][1] if i else 0)]

    def on_train_end(self, trainer, m):  # for the DDP test: one file per rank
        if self.out_dir:
            weights = list(m.critic.parameters())
            state = {"gen_after": self.gen_after, "critic_sum": sum(p.double().sum().item() for p in weights),
                     "critic_max": max(p.abs().max().item() for p in weights), "noise": self.noise}
            Path(self.out_dir, f"rank{trainer.global_rank}.json").write_text(json.dumps(state))


def fit(images, tmp_path, callbacks=(), ckpt_path=None, model=None, **trainer_args):
    L.seed_everything(0)
    model = model or WGAN(**TINY)
    data = ImageFolderDataModule(str(images), isize=16, batch_size=4, num_workers=0)
    trainer = L.Trainer(**{"accelerator": "cpu", "max_epochs": 2, "logger": False, "enable_checkpointing": False,
                           "default_root_dir": tmp_path, "enable_progress_bar": False, "enable_model_summary": False,
                           "callbacks": list(callbacks), **trainer_args})
    trainer.fit(model, data, ckpt_path=ckpt_path)
    return model, trainer


class SamplesAtEpochEnd(L.Callback):
    """The grid the WGAN's validation logs with val/fid, at each epoch's end."""

    def on_train_epoch_end(self, trainer, pl_module):
        pl_module.log_samples()


def test_the_final_grid_is_not_logged_again_at_a_count_already_logged(images, tmp_path, monkeypatch):
    """With val/fid, the last validation's grid was logged a second time at the end: two images of one count."""
    import lightning_modules.wgan as wgan
    logged = []
    monkeypatch.setattr(wgan, "log_image_grid", lambda trainer, name, images, step, **options: logged.append(
        (name, step)))
    fit(images, tmp_path, [SamplesAtEpochEnd()], model=WGAN(**TINY), max_epochs=1)  # 3 generator iterations
    assert [step for name, step in logged if name == "samples"] == [3]


def test_loss_g_is_kept_in_checkpoints_for_the_first_logged_step_after_a_resume():
    model = WGAN(**TINY)
    model.last_loss_g = torch.tensor(-0.25)
    checkpoint = {}
    model.on_save_checkpoint(checkpoint)
    resumed = WGAN(**TINY)
    resumed.on_load_checkpoint(checkpoint)
    assert resumed.last_loss_g == -0.25
    WGAN(**TINY).on_save_checkpoint(checkpoint)  # before the first generator step: none
    assert checkpoint["wgan_counters"]["last_loss_g"] is None


def test_the_counters_come_back_from_a_checkpoint_and_start_at_0_without_them():
    model = WGAN(**TINY)
    model.gen_iterations, model.critic_iterations, model.group_iterations = 3, 17, 2
    checkpoint = {}
    model.on_save_checkpoint(checkpoint)
    resumed = WGAN(**TINY)
    resumed.on_load_checkpoint(checkpoint)
    assert (resumed.gen_iterations, resumed.critic_iterations, resumed.group_iterations) == (3, 17, 2)
    # dl2-export's weights-only file keeps no counters: a model read from it counts from the start
    resumed.on_load_checkpoint({"state_dict": dict(model.state_dict())})
    assert (resumed.gen_iterations, resumed.critic_iterations, resumed.group_iterations,
            resumed.last_loss_g) == (0, 0, 0, None)


@pytest.mark.parametrize("options, adam", [
    ({}, False),  # weight clipping: RMSprop, the WGAN paper's Algorithm 1
    ({"gradient_penalty": 10.0}, True),  # WGAN-GP's Algorithm 1: Adam
    ({"gradient_penalty": 0.5}, True),  # any penalty
    ({"gradient_penalty": 10.0, "optimizer": "rmsprop"}, False),
    ({"optimizer": "adam", "betas": (0.5, 0.999), "lr_generator": 3e-4}, True),  # the reference's --adam, --lrG
    ({"optimizer": "rmsprop", "lr": 5e-5, "lr_generator": 2e-5}, False)])  # the paper's lr, the reference's --lrG
def test_optimizers_are_rmsprop_with_clipping_adam_with_the_penalty_or_as_chosen(options, adam):
    model = WGAN(**TINY, **options)
    critic, generator = model.configure_optimizers()
    lr = options.get("lr", 1e-4)  # the seed's
    for optimizer, net, rate in ((critic, model.critic, lr), (generator, model.generator,
                                                               options.get("lr_generator", lr))):
        assert type(optimizer) is (torch.optim.Adam if adam else torch.optim.RMSprop)
        (group,) = optimizer.param_groups
        assert [id(p) for p in group["params"]] == [id(p) for p in net.parameters()]  # each net its own optimizer
        assert group["lr"] == rate
        if adam:  # WGAN-GP's betas (0, 0.9) unless given
            assert group["betas"] == options.get("betas", (0.0, 0.9))
        else:  # no momentum (the paper: momentum made the critic unstable); torch's alpha 0.99, as the reference's
            assert (group["momentum"], group["alpha"], group["centered"]) == (0, 0.99, False)


@pytest.mark.parametrize("options", [{}, {"mlp_critic": True, "mlp_generator": True}, {"generator_batchnorm": False}])
def test_critic_weights_are_clamped_after_every_critic_step_and_before_each_generator_step(images, tmp_path, options):
    # also the paper's robustness experiments: the MLP nets (every Linear weight and bias clamped) and the
    # generator without batchnorm
    recorder = Recorder()
    model, _ = fit(images, tmp_path, [recorder], max_epochs=1, model=WGAN(**TINY, **options))
    after_batch = [max(p.abs().max().item() for p in model.critic.parameters())]
    before_generator = [m for who, m in recorder.critic_max if who == "generator"]
    assert len(before_generator) == model.gen_iterations > 0
    assert max(before_generator + after_batch) <= 0.01 + 1e-9  # the seed's clamp-before-update fails this
    assert max(m for who, m in recorder.critic_max if who == "critic") > 0.01  # N(0, 0.02) init: clamp engaged


def test_iteration_counts_follow_the_seeds_loop(images, tmp_path):
    recorder = Recorder()
    model, trainer = fit(images, tmp_path, [recorder])
    expected = seed_loop(batches_per_epoch=7, epochs=2)
    assert recorder.gen_after == expected == [3, 6, 7, 9, 12, 14]  # epoch end cuts a group; g=4 takes 3
    assert (model.critic_iterations, model.gen_iterations) == (14, 6)
    assert trainer.global_step == 14  # one step per batch, not per optimizer step


def test_max_steps_counts_batches_and_the_generator_steps_at_the_end(images, tmp_path):
    recorder = Recorder()
    model, trainer = fit(images, tmp_path, [recorder], max_steps=5)
    assert trainer.global_step == model.critic_iterations == 5
    assert recorder.gen_after == seed_loop(batches_per_epoch=5, epochs=1) == [3, 5]


def test_sample_grid_every_n_generator_iterations_and_at_the_end(images, tmp_path):
    fit(images, tmp_path / "run", model=WGAN(**{**TINY, "sample_every": 2}), max_epochs=1)  # generator at 3, 6, 7
    grids = sorted(p.name for p in (tmp_path / "run" / "images").iterdir())
    assert grids == ["real_samples-000000.png", "samples-000002.png", "samples-000003.png"]  # gen_iterations 2,
    # then the final 3
    assert Image.open(tmp_path / "run" / "images" / grids[1]).size == (8 * 18 + 2, 8 * 18 + 2)  # 8x8 tiles of 16px


def test_each_step_changes_only_its_own_network(images, tmp_path):
    changed = []
    model = WGAN(**TINY)

    def watch(step):
        def wrapped(*args):
            before = {n: p.clone() for n, p in model.named_parameters()}
            result = step(*args)
            changed.append({n.split(".")[0] for n, p in model.named_parameters() if not torch.equal(p, before[n])})
            return result
        return wrapped

    model.critic_step, model.generator_step = watch(model.critic_step), watch(model.generator_step)
    fit(images, tmp_path, model=model, max_steps=3)  # critic, critic, critic + generator
    assert changed == [{"critic"}, {"critic"}, {"critic"}, {"generator"}]


def test_resumed_run_continues_counters_and_schedule_mid_group(images, tmp_path):
    whole = Recorder()
    fit(images, tmp_path / "whole", [whole])
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=4, save_last=True)
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(images, tmp_path / "crashed", [Recorder(crash_at_step=11), checkpoints], enable_checkpointing=True)
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)
    assert saved["global_step"] == 8 and saved["wgan_counters"]["group_iterations"] == whole.rows[7][2] == 1
    resumed = Recorder()
    fit(images, tmp_path / "crashed", [resumed], ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    assert resumed.rows == whole.rows[8:]  # steps 9..14 with the same counters as the uninterrupted run


def test_a_resume_after_a_max_steps_stop_at_an_epochs_end_adds_no_generator_step(images, tmp_path):
    """Lightning resumes such a checkpoint with one batch past the epoch's end (batch_idx 7 of 7): a critic
    iteration that opens the next group, not the end of one (it used to add a generator step after it)."""
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    stopped, _ = fit(images, tmp_path, [checkpoints], enable_checkpointing=True, max_steps=7)  # epoch 0's 7 batches
    assert stopped.gen_iterations == len(seed_loop(7, 1)) and stopped.group_iterations == 0
    resumed = Recorder()
    fit(images, tmp_path, [resumed], max_steps=14, max_epochs=3, ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    # by hand from SCHEDULE, the extra batch a critic iteration like any other: 3 generator iterations after epoch 0,
    # then groups of 2 (8, 9), 3 (gen_iterations 4 is a multiple of long_every: 10-12) and 2 (13, 14; max_steps)
    assert [(critic, gen) for critic, gen, _, _ in resumed.rows] == [(8, 3), (9, 4), (10, 4), (11, 4), (12, 5),
                                                                     (13, 5), (14, 6)]


def test_16_mixed_scaler_steps_both_optimizers_and_clamp_holds(images, tmp_path):
    # Lightning turns 16-mixed into bf16-mixed on a CPU; this plugin is what it builds on a GPU, with a CPU scaler
    scaler = torch.amp.GradScaler("cpu")
    stepped = []
    scaler_step = scaler.step
    scaler.step = lambda optimizer, *args: stepped.append(optimizer) or scaler_step(optimizer, *args)
    model, trainer = fit(images, tmp_path, max_steps=7, plugins=[MixedPrecision("16-mixed", "cpu", scaler)])
    critic_opt, generator_opt = trainer.optimizers
    assert trainer.precision == "16-mixed"
    assert stepped.count(critic_opt) == 7 and stepped.count(generator_opt) == model.gen_iterations == 3
    assert all(p.dtype == torch.float32 for p in model.critic.parameters())  # the clamp acts on fp32 weights
    assert max(p.abs().max().item() for p in model.critic.parameters()) <= 0.01


def test_bf16_mixed_trains_with_the_clamp_and_schedule(images, tmp_path):
    recorder = Recorder()
    model, trainer = fit(images, tmp_path, [recorder], max_steps=6, precision="bf16-mixed")
    assert trainer.precision == "bf16-mixed" and recorder.gen_after == seed_loop(6, 1)
    assert max(p.abs().max().item() for p in model.critic.parameters()) <= 0.01
    # the losses are means in fp32 (in bf16, Loss_D = D(real) - D(fake) kept 3 significant digits of two means)
    assert model.last_loss_g.dtype == trainer.callback_metrics["train/Loss_D"].dtype == torch.float32


def test_gradient_penalty_matches_its_formula_for_a_linear_critic():
    model = WGAN(**TINY, gradient_penalty=10.0)
    linear = torch.nn.Linear(3 * 16 * 16, 1, bias=False)
    model.critic = torch.nn.Sequential(torch.nn.Flatten(), linear, torch.nn.Flatten(0))
    real, fake = torch.randn(5, 3, 16, 16), torch.randn(5, 3, 16, 16)
    # D(x) = w.x has gradient w at every interpolate: the penalty is (||w|| - 1)^2
    assert model.penalty(real, fake).item() == pytest.approx((linear.weight.norm().item() - 1) ** 2, rel=1e-5)


class FirstBatch(L.Callback):
    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.batches = getattr(self, "batches", []) + [batch.clone()]


def test_the_first_real_batch_is_shown_once_as_the_references_real_samples(images, tmp_path):
    first = FirstBatch()
    fit(images, tmp_path / "run", [first], max_steps=3, enable_checkpointing=True)
    grid = np.asarray(Image.open(tmp_path / "run" / "images" / "real_samples-000000.png")).astype(float)
    assert grid.shape == (2 + 18, 4 * 18 + 2, 3)  # the 4 images of a batch in one row of 16px tiles, 2px apart
    for k, image in enumerate(first.batches[0]):  # [-1, 1] shown as [0, 255], tile k at column k
        expected = ((image + 1) / 2 * 255).permute(1, 2, 0).numpy()
        assert np.abs(grid[2:18, 2 + 18 * k:18 + 18 * k] - expected).max() <= 1
    checkpoint = next((tmp_path / "run").rglob("*.ckpt"))
    (tmp_path / "run" / "images" / "real_samples-000000.png").unlink()
    fit(images, tmp_path / "run", ckpt_path=str(checkpoint), max_steps=5)  # a resume shows no other real batch
    assert not list((tmp_path / "run" / "images").glob("real_samples*"))


def test_gradient_penalty_option_uses_adam_without_clamp_or_critic_batchnorm(images, tmp_path):
    model, trainer = fit(images, tmp_path, model=WGAN(**TINY, gradient_penalty=10.0), max_steps=6)
    assert all(isinstance(o, torch.optim.Adam) and o.defaults["betas"] == (0.0, 0.9) for o in trainer.optimizers)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.critic.modules())
    assert max(p.abs().max().item() for p in model.critic.parameters()) > 0.01


def test_mismatched_data_and_model_isize_fail_clearly(images, tmp_path):
    with pytest.raises(ValueError, match="data is 16px but the model 32px"):
        fit(images, tmp_path, model=WGAN(**{**TINY, "isize": 32}))


def test_a_model_of_other_than_three_channels_is_refused_on_our_rgb_data(images, tmp_path):
    # it crashed at the first batch: a 1-channel critic's conv on the RGB batch
    with pytest.raises(UserError, match="--model.nc 1: the data modules give RGB images, 3 channels .* --model.nc 3"):
        fit(images, tmp_path, model=WGAN(**{**TINY, "nc": 1}))


def test_train_job_writes_checkpoint_and_sample_grid_and_generate_reads_it(images, tmp_path, capsys):
    runs = tmp_path / "runs"
    train.main(["--system", "wgan", "--data.data_dir", str(images), "--data.isize", "16", "--data.batch_size", "4",
                "--data.num_workers", "0", *[f"--model.{k}={v}" for k, v in TINY.items()],
                "--trainer.max_steps", "6", "--trainer.logger", "false", "--trainer.default_root_dir", str(runs),
                "--trainer.enable_progress_bar", "false"])
    (run_dir,) = runs.iterdir()
    results = json.loads((run_dir / "results.json").read_text())
    assert results["global_step"] == 6 and results["final_metrics"]["train/gen_iterations"] == len(seed_loop(6, 1))
    # printed in 4 significant digits, as the progress line: a clamped critic's Loss_D read -0.0000 in 4 decimals
    printed = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("Final metrics: "))
    assert f"train/Loss_D {results['final_metrics']['train/Loss_D']:.4g}," in printed
    assert sorted(p.name for p in (run_dir / "images").iterdir()) == ["real_samples-000000.png", "samples-000002.png"]
    # `python -m lightning_modules.wgan generate ...` in this process: the function its __main__ calls (a fresh
    # interpreter cost ~5 s; test_console_scripts' python -m test runs that __main__ in a process of its own)
    assert commands.wgan(["generate", str(run_dir / "checkpoints" / "last.ckpt"), "--out_dir", str(tmp_path / "out"),
                          "--num_samples", "10", "--nrow", "3"]) is None  # exit status 0
    grid = tmp_path / "out_grid.png"  # beside the folder of samples, which holds them alone
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"{i:06d}.png" for i in range(10)]
    assert Image.open(tmp_path / "out" / "000009.png").size == (16, 16)
    assert Image.open(grid).size == (3 * 18 + 2, 3 * 18 + 2)  # make_grid: 2px padding around each image


def test_a_samples_noise_depends_on_the_seed_and_its_index_not_on_how_many_are_drawn():
    """One randn of n rows gave the last rows other numbers for another n (torch draws elements in groups of 16):
    the 5th of 5 samples differed from the 5th of 70."""
    from lightning_modules.wgan import sample
    torch.manual_seed(0)
    model = WGAN(**TINY).eval()
    few, many = sample(model, 5, seed=3), sample(model, 70, batch_size=16, seed=3)
    torch.testing.assert_close(few, many[:5])
    # row i: the i-th draw of nz numbers from the seed's generator
    torch.testing.assert_close(few, model.generator(seeded_rows(5, TINY["nz"], seed=3)))
    assert not torch.allclose(few, sample(model, 5, seed=4))


def test_ddp_two_cpu_processes_keep_schedule_and_clamp_identical(images, tmp_path):
    env = {**os.environ, "HOME": str(tmp_path), "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)])}
    callback = json.dumps({"class_path": "test_wgan.Recorder", "init_args": {"out_dir": str(tmp_path)}})
    args = ["--system", "wgan", "--data.data_dir", str(images), "--data.isize", "16", "--data.batch_size", "4",
            "--data.num_workers", "0", *[f"--model.{k}={v}" for k, v in TINY.items()], "--trainer.max_epochs", "2",
            "--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path / "runs"),
            # the config's strategy auto: Lightning's plain DDP, given the unused-parameter detection by train.py
            "--trainer.accelerator", "cpu", "--trainer.devices", "2",
            "--trainer.enable_progress_bar", "false", f"--trainer.callbacks+={callback}"]
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert rank0["gen_after"] == rank1["gen_after"] == seed_loop(batches_per_epoch=3, epochs=2)  # 14 images a rank
    assert rank0["critic_sum"] == rank1["critic_sum"] and rank0["critic_max"] <= 0.01
    # each rank its own noise (seed_everything seeded them alike): the fake batch grows with the processes
    assert len(rank0["noise"]) == len(rank1["noise"]) > 0 and not set(rank0["noise"]) & set(rank1["noise"])
