"""ProgressBar: the training signal refreshed once per logging interval, plain lines in a log file."""

import re
import time

import lightning as L
import pytest
import torch
from conftest import make_style_images
from lightning.pytorch.loggers import Logger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from callbacks import ProgressBar, logging_step

pytestmark = pytest.mark.usefixtures("one_thread")


class Counter(L.LightningModule):
    """Logs train/x = the batch index and train/y = 10 x it, as device tensors."""

    def __init__(self, prog_bar: bool = False):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.prog_bar = prog_bar

    def training_step(self, batch, batch_idx):
        x = torch.tensor(float(batch_idx))
        self.log("train/x", x, prog_bar=self.prog_bar)
        self.log("train/y", 10 * x, prog_bar=self.prog_bar)
        return (self.weight * batch[0]).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def fit(model, batches: int, every: int, bar=None, **trainer):
    loader = DataLoader(TensorDataset(torch.zeros(batches, 1)), batch_size=1)
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                        enable_model_summary=False, log_every_n_steps=every,
                        callbacks=[bar] if bar else None, enable_progress_bar=bar is not None, **trainer)
    trainer.fit(model, loader)
    return trainer


def test_metrics_refresh_at_the_logging_interval_only():
    bar = ProgressBar(text=False)
    shown = []
    original = bar.on_train_batch_end

    def spy(trainer, module, outputs, batch, batch_idx):
        original(trainer, module, outputs, batch, batch_idx)
        shown.append(bar.get_metrics(trainer, module).get("x"))

    bar.on_train_batch_end = spy
    fit(Counter(), batches=7, every=3, bar=bar)
    # refreshed after batch 1 (index 0), then after batches 3 and 6 (indices 2 and 5)
    assert shown == [0.0, 0.0, 2.0, 2.0, 2.0, 5.0, 5.0]
    assert bar.shown == {"x": 5.0, "y": 50.0}


def test_named_metrics_only_and_without_the_prefix():
    bar = ProgressBar(metrics=["train/y"], text=False)
    fit(Counter(), batches=4, every=2, bar=bar)
    assert bar.shown == {"y": 30.0}


def test_plain_lines_every_n_steps_when_not_a_terminal(capsys):
    fit(Counter(), batches=7, every=3, bar=ProgressBar())  # pytest's captured stdout is not a terminal
    lines = capsys.readouterr().out.splitlines()
    number = r"\d+(\.\d+)?"
    assert [re.sub(number + " it/s", "S it/s", line) for line in lines] == [
        "epoch 0/1 batch 3/7 step 3 | x 2 y 20 | S it/s",
        "epoch 0/1 batch 6/7 step 6 | x 5 y 50 | S it/s"]


def test_plain_lines_follow_the_logging_steps_under_accumulation_and_never_show_stale_values(capsys):
    """Lines came every n batches while the metrics refreshed every n optimizer steps: every other line repeated
    the one before; with log_every_n_steps 0 each line showed the first batch's values."""
    fit(Counter(), batches=9, every=2, bar=ProgressBar(), accumulate_grad_batches=2)
    # Lightning logs on both batches of the accumulation window of every 2nd optimizer step: batches 3-4 and 7-8
    lines = [re.sub(r"\| \S+ it/s", "", line) for line in capsys.readouterr().out.splitlines()]
    assert lines == ["epoch 0/1 batch 3/9 step 1 | x 2 y 20 ", "epoch 0/1 batch 4/9 step 2 | x 3 y 30 ",
                     "epoch 0/1 batch 7/9 step 3 | x 6 y 60 ", "epoch 0/1 batch 8/9 step 4 | x 7 y 70 "]
    fit(Counter(), batches=4, every=0, bar=ProgressBar())
    assert capsys.readouterr().out == ""  # nothing logged, nothing to show


class SlowFirstBatch(Counter):
    """The first batch takes 1 s (workers starting, a resume's restore), the others 5 ms."""

    def training_step(self, batch, batch_idx):
        time.sleep(1.0 if batch_idx == 0 else 0.005)
        return super().training_step(batch, batch_idx)


def test_the_speed_leaves_out_the_first_batch(capsys):
    """A resumed CycleGAN's first line said 0.09 it/s for a run doing 0.3: its clock held the start-up. Batches 2-3
    sleep 10 ms (about 200 it/s at most, less Lightning's time); with the first batch counted the line could say
    3 it/s at most (3 batches over more than 1 s)."""
    fit(SlowFirstBatch(), batches=4, every=3, bar=ProgressBar())
    (line,) = capsys.readouterr().out.splitlines()
    assert float(re.search(r"\| (\S+) it/s", line).group(1)) > 4  # 2 batches in under 0.5 s, even under load
    fit(SlowFirstBatch(), batches=2, every=1, bar=ProgressBar())  # the first batch's line: nothing timed yet
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "epoch 0/1 batch 1/2 step 1 | x 0 y 0" and re.fullmatch(r".*step 2 \| x 1 y 10 \| \S+ it/s",
                                                                              lines[1])


def test_plain_lines_have_no_bar_redraws(capsys):
    fit(Counter(), batches=5, every=5, bar=ProgressBar(text=True))
    printed = capsys.readouterr()
    assert "\r" not in printed.out + printed.err and "it/s" in printed.out


def count_host_reads(monkeypatch, model, bar, batches, every):
    reads = []
    for name in ("item", "tolist"):
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda self, _f=original, _n=name: reads.append(_n) or _f(self))
    fit(model, batches=batches, every=every, bar=bar)
    monkeypatch.undo()
    return len(reads)


def test_one_host_read_per_logging_interval(monkeypatch):
    # the bar reads all metrics in one transfer: after batch 1, then every 10 of 40 batches; plus one read of
    # the DataLoader's base seed per epoch
    assert count_host_reads(monkeypatch, Counter(), ProgressBar(text=False), batches=40, every=10) == 5 + 1
    # what prog_bar=True would cost: Lightning converts each progress-bar metric after every batch
    assert count_host_reads(monkeypatch, Counter(prog_bar=True), ProgressBar(text=False), batches=40, every=10) >= 80


def tiny_system(system: str, tmp_path):
    """A small model of each system and data for two batches."""
    torch.manual_seed(0)
    if system == "darknet":
        from lightning_modules import DarknetClassifier
        data = TensorDataset(torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 0]))
        return DarknetClassifier(num_blocks=[1], nf=4, num_classes=3), {"train_dataloaders": DataLoader(data, 2)}
    if system == "wgan":
        from lightning_modules import WGAN
        data = torch.rand(4, 3, 16, 16) * 2 - 1
        return WGAN(isize=16, nz=8, ngf=4, ndf=4, sample_every=1000), {"train_dataloaders": DataLoader(data, 2)}
    if system == "cyclegan":
        from lightning_modules import CycleGAN
        data = TensorDataset(torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1)
        return (CycleGAN(n_blocks=1, ngf=4, ndf=4, log_images_every_n_batches=0),
                {"train_dataloaders": DataLoader(data, 1)})
    from datamodules import StyleTransferDataModule
    from lightning_modules import StyleTransfer
    content, style = make_style_images(tmp_path)
    return (StyleTransfer(arch="vgg16", vgg_weights="random", show_iter=0, tv_weight=0.1),
            {"datamodule": StyleTransferDataModule([str(content[0])], str(style), size=32)})


EXPECTED = {"darknet": ["train/loss"], "wgan": ["train/Loss_D", "train/Loss_G", "train/gen_iterations"],
            "cyclegan": ["train/gen_total", "train/disc_a", "train/disc_b"],
            # as neural-style prints them: the total and its terms
            "style": ["train/loss", "train/content_loss", "train/style_loss", "train/tv_loss"]}


@pytest.mark.parametrize("system", ["darknet", "wgan", "cyclegan", "style"])
def test_each_system_shows_its_training_signal(system, tmp_path):
    model, data = tiny_system(system, tmp_path)
    names = EXPECTED[system]
    assert list(model.progress_bar_metrics) == names
    bar = ProgressBar(text=False)
    trainer = L.Trainer(accelerator="cpu", max_steps=2, max_epochs=1, logger=False, enable_checkpointing=False,
                        enable_model_summary=False, log_every_n_steps=1, limit_val_batches=0, callbacks=[bar],
                        default_root_dir=tmp_path)
    trainer.fit(model, **data)
    shown = bar.get_metrics(trainer, model)
    logged = trainer.callback_metrics
    for name in names:  # the value of the last batch, as the system logged it
        assert shown[name.removeprefix("train/")] == pytest.approx(float(logged[name])), name


def darknet_job(data_dir, runs, *extra):
    return ["--system", "darknet", "--data.data_dir", str(data_dir), "--trainer.default_root_dir", str(runs),
            "--model.nf", "4", "--model.num_blocks", "[1]", "--model.num_classes", "3", "--data.batch_size", "4",
            "--data.eval_batch_size", "6", "--trainer.max_epochs", "1", "--trainer.logger", "false",
            "--trainer.log_every_n_steps", "2", *extra]


@pytest.fixture
def wired():
    """train.py, whose run folder set-up (callbacks.run_folder.prepare_run) adds the ProgressBar (the bar is not in
    the shipped configs)."""
    import train
    return train


def test_train_py_job_prints_plain_lines_in_a_log(wired, tiny_cifar, tmp_path, capsys):
    wired.main(darknet_job(tiny_cifar, tmp_path / "runs"))  # 24 images / 4 = 6 batches, a line every 2
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    # step N/6: the scheduler's max_steps, where its phases end (the epochs' count alone hid an earlier end)
    assert [re.sub(r"loss \S+ \| \S+ it/s", "loss L | S it/s", line) for line in lines] == [
        "epoch 0/1 batch 2/6 step 2/6 | loss L | S it/s", "epoch 0/1 batch 4/6 step 4/6 | loss L | S it/s",
        "epoch 0/1 batch 6/6 step 6/6 | loss L | S it/s"] + [lines[-1]]
    assert re.fullmatch(r"epoch 0/1 validation \| acc \S+ loss \S+", lines[-1])


def test_train_py_without_a_bar_adds_none(wired, tiny_cifar, tmp_path, capsys):
    wired.main(darknet_job(tiny_cifar, tmp_path / "runs", "--trainer.enable_progress_bar", "false"))
    assert "it/s" not in capsys.readouterr().out


class Recorder(L.LightningModule):
    """Logs when callbacks.logging_step says so, and records its answer for every batch."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.answers = []

    def training_step(self, batch, batch_idx):
        self.answers.append(logging_step(self))
        if self.answers[-1]:
            self.log("train/x", torch.tensor(float(batch_idx)))
        return (self.weight * batch[0]).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


@pytest.mark.parametrize("max_steps", [-1, 6])
def test_logging_step_is_the_first_batch_every_nth_and_the_last(max_steps):
    model = Recorder()
    trainer = fit(model, batches=10, every=4, max_steps=max_steps)
    last = 10 if max_steps < 0 else max_steps  # the epoch's last batch, or the step that ends the fit
    # Lightning writes batches 4 and 8 (indices 3 and 7); the first batch because nothing was logged yet
    expected = [i == 0 or (i + 1) % 4 == 0 or i == last - 1 for i in range(last)]
    assert model.answers == expected
    assert float(trainer.callback_metrics["train/x"]) == last - 1  # results end on the final batch's value
    assert logging_step(Recorder())  # outside a Trainer (a test calling a step): always


class Written(Logger):
    """A logger that keeps what it is given: (step, metrics) per write."""

    def __init__(self):
        super().__init__()
        self.rows = []

    name, version = "written", 0

    def log_hyperparams(self, params, *args, **kwargs):
        pass

    def log_metrics(self, metrics, step=None):
        self.rows.append((step, dict(metrics)))


@pytest.mark.parametrize("max_steps, expected", [
    # 7 batches an epoch, 2 epochs; Lightning writes steps 3, 7, 11 ((step + 1) % 4 == 0); WriteLoggingSteps adds
    # the first (0), each epoch's last (6, 13) and the last step; train/x is the batch's index in its epoch
    (-1, {0: 0, 3: 3, 6: 6, 7: 0, 11: 4, 13: 6}),
    (10, {0: 0, 3: 3, 6: 6, 7: 0, 9: 2})])  # the fit ends at step 10, inside the second epoch
def test_the_loggers_get_the_first_each_epochs_last_and_the_last_step(max_steps, expected):
    from callbacks import WriteLoggingSteps

    written = Written()
    loader = DataLoader(TensorDataset(torch.zeros(7, 1)), batch_size=1)
    trainer = L.Trainer(accelerator="cpu", max_epochs=2, max_steps=max_steps, logger=written,
                        enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=False,
                        log_every_n_steps=4, callbacks=[WriteLoggingSteps()])
    trainer.fit(Recorder(), loader)
    rows = [(step, metrics["train/x"]) for step, metrics in written.rows if "train/x" in metrics]
    assert rows == sorted(expected.items())  # once each, in order: a W&B step never goes back
    assert rows[-1][1] == float(trainer.callback_metrics["train/x"])  # the dashboard ends where results.json does


def test_no_step_metrics_reach_the_loggers_with_log_every_n_steps_0():
    from callbacks import WriteLoggingSteps

    written = Written()
    loader = DataLoader(TensorDataset(torch.zeros(7, 1)), batch_size=1)
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, logger=written, enable_checkpointing=False,
                        enable_model_summary=False, enable_progress_bar=False, log_every_n_steps=0,
                        callbacks=[WriteLoggingSteps()])
    trainer.fit(Recorder(), loader)
    assert not [row for row in written.rows if "train/x" in row[1]]  # Lightning's meaning of 0: no step metrics


def test_train_py_writes_the_last_steps_metrics_to_the_logger(wired, tiny_cifar, tmp_path):
    import csv

    runs = tmp_path / "runs"  # 6 batches, a write every 4: Lightning's at step 3, ours at 0 and at 5, the last
    args = darknet_job(tiny_cifar, runs, "--trainer.log_every_n_steps", "4")
    args[args.index("--trainer.logger") + 1] = "lightning.pytorch.loggers.CSVLogger"
    wired.main([*args, "--trainer.logger.save_dir", str(tmp_path / "csv")])
    with next((tmp_path / "csv").rglob("metrics.csv")).open() as file:
        steps = [int(row["step"]) for row in csv.DictReader(file) if row.get("train/loss")]
    results = __import__("json").loads(next(runs.rglob("results.json")).read_text())
    assert steps == [0, 3, 5] and results["global_step"] == 6


def test_cyclegan_lr_charts_are_named_by_what_each_optimizer_trains(tmp_path):
    """LearningRateMonitor named the three Adams lr-Adam, lr-Adam-1, lr-Adam-2; the reference's linear policy:
    1 for n_epochs, then 1 - (epoch + 1 - n_epochs) / (n_epochs_decay + 1)."""
    from lightning.pytorch.callbacks import LearningRateMonitor

    model, data = tiny_system("cyclegan", tmp_path)
    model.hparams.update(n_epochs=1, n_epochs_decay=2)
    written = Written()
    trainer = L.Trainer(accelerator="cpu", max_epochs=3, logger=written, enable_checkpointing=False,
                        enable_model_summary=False, enable_progress_bar=False, log_every_n_steps=1,
                        callbacks=[LearningRateMonitor()], default_root_dir=tmp_path)
    trainer.fit(model, **data)
    lrs = {}
    for _, metrics in written.rows:
        for key, value in metrics.items():
            if key.startswith("lr-"):
                lrs.setdefault(key, []).append(value)
    factors = [1 - max(0, epoch + 1 - 1) / (2 + 1) for epoch in range(3)]
    assert lrs == {name: pytest.approx([2e-4 * f for f in factors]) for name in ("lr-generators", "lr-disc_a",
                                                                               "lr-disc_b")}


@pytest.mark.parametrize("system, options, charts", [
    ("wgan", {}, {"lr-RMSprop/critic": 1e-4, "lr-RMSprop-1/generator": 1e-4}),
    ("wgan", {"gradient_penalty": 10.0}, {"lr-Adam/critic": 1e-4, "lr-Adam-1/generator": 1e-4}),
    ("darknet", {"one_cycle": None, "lr": 0.1, "no_decay_bn_bias": True, "bn_bias_lr_scale": 4.0},
     {"lr-SGD/weights": 0.1, "lr-SGD/bn_weights_and_biases": 0.1, "lr-SGD/bn_biases": 0.4})])
def test_lr_charts_name_the_parameters_each_group_trains(system, options, charts, tmp_path):
    """LearningRateMonitor named the WGAN's charts lr-RMSprop and lr-RMSprop-1 and the Darknet's groups /pg1 to /pg3;
    each group now carries the name of what it trains, and holds exactly those parameters."""
    from lightning.pytorch.callbacks import LearningRateMonitor

    model, data = tiny_system(system, tmp_path)
    model.hparams.update(options)
    written = Written()
    trainer = L.Trainer(accelerator="cpu", max_steps=2, logger=written, enable_checkpointing=False,
                        enable_model_summary=False, enable_progress_bar=False, log_every_n_steps=1,
                        callbacks=[LearningRateMonitor()], default_root_dir=tmp_path)
    trainer.fit(model, **data)
    logged = {key: value for _, metrics in written.rows for key, value in metrics.items() if key.startswith("lr-")}
    assert logged == pytest.approx(charts)
    expected = {"critic": model.critic.parameters(), "generator": model.generator.parameters()} if system == "wgan" \
        else {"weights": [module.weight for module in model.modules() if isinstance(module, (nn.Conv2d, nn.Linear))]}
    groups = {group["name"]: group["params"] for optimizer in trainer.optimizers for group in optimizer.param_groups}
    for name, parameters in expected.items():
        assert {id(p) for p in groups[name]} == {id(p) for p in parameters}


def test_style_logs_each_layers_share_of_the_style_loss(tmp_path):
    """neural-style prints each style layer's loss; here each is a W&B scalar, the layer's weighted Gram MSE."""
    from lightning_modules.style_transfer import STYLE_SCALE

    class Before(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            self.image = module.image.detach().clone()

    model, data = tiny_system("style", tmp_path)
    model.style_layer_weights = [1.0, 2.0, 3.0, 4.0, 5.0]  # unequal, so a layer logged under another's name shows
    written, before = Written(), Before()
    trainer = L.Trainer(accelerator="cpu", max_steps=1, logger=written, enable_checkpointing=False,
                        enable_model_summary=False, enable_progress_bar=False, log_every_n_steps=1,
                        callbacks=[before], default_root_dir=tmp_path)
    trainer.fit(model, **data)
    (row,) = [metrics for _, metrics in written.rows if "train/style_loss" in metrics]
    with torch.no_grad():
        features = model.features(before.image)
    targets = model._targets[1]
    for k, name in enumerate(model.style_layers):
        x, c = features[name], features[name].shape[1]
        mse = ((gram_by_hand(x) - targets[k][0].double()) ** 2).sum(dim=(1, 2)) / c**2  # per image
        expected = model.hparams.style_weight * STYLE_SCALE * (k + 1) * mse.mean()
        assert row[f"train/style_loss/{name}"] == pytest.approx(float(expected), rel=1e-4), name
    assert sum(row[f"train/style_loss/{n}"] for n in model.style_layers) == pytest.approx(row["train/style_loss"])


def gram_by_hand(x):
    n, c, h, w = x.shape
    flat = x.double().reshape(n, c, h * w)
    return torch.stack([flat[k] @ flat[k].T for k in range(n)]) / (c * h * w)


def first_style_row(layers, weights, tmp_path) -> dict:
    """The metrics a tiny style system logs at its first step with these style layers and weights."""
    model, data = tiny_system("style", tmp_path)
    model.style_layers, model.style_layer_weights = layers, weights
    written = Written()
    trainer = L.Trainer(accelerator="cpu", max_steps=1, logger=written, enable_checkpointing=False,
                        enable_model_summary=False, enable_progress_bar=False, log_every_n_steps=1,
                        default_root_dir=tmp_path)
    trainer.fit(model, **data)
    (row,) = [metrics for _, metrics in written.rows if "train/style_loss" in metrics]
    return row


@pytest.mark.parametrize("layers", [["relu1_2"], ["relu1_2", "relu2_2"]])
def test_a_single_style_layer_logs_the_style_loss_alone_two_their_shares(layers, tmp_path):
    """One layer's share is the whole style loss: no second chart of the same values."""
    row = first_style_row(layers, [1.0] * len(layers), tmp_path)
    shares = sorted(key for key in row if key.startswith("train/style_loss/"))
    assert shares == ([] if len(layers) == 1 else [f"train/style_loss/{name}" for name in layers])


def test_a_style_layer_listed_twice_logs_both_its_terms(tmp_path):
    row = first_style_row(["relu1_2", "relu2_2", "relu1_2"], [1.0, 1.0, 5.0], tmp_path)
    shares = {k: v for k, v in row.items() if k.startswith("train/style_loss/")}
    assert sorted(shares) == ["train/style_loss/relu1_2", "train/style_loss/relu2_2"]
    assert sum(shares.values()) == pytest.approx(row["train/style_loss"], rel=1e-5)
