"""DDP for the GANs through Lightning's documented strategy name, and train.py's mapping of plain `ddp` to it."""

import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from jsonargparse import Namespace
from torch.utils.data import DataLoader, TensorDataset

from callbacks import UserError
from callbacks.strategy import documented_ddp_strategy
from lightning_modules import WGAN, CycleGAN, DarknetClassifier

pytestmark = pytest.mark.usefixtures("one_thread")


def config(class_path: str, strategy):
    return Namespace(model=Namespace(class_path=class_path, init_args=Namespace()),
                     trainer=Namespace(strategy=strategy))


@pytest.mark.parametrize("class_path, given, expected", [
    ("lightning_modules.WGAN", "ddp", "ddp_find_unused_parameters_true"),
    ("lightning_modules.CycleGAN", "ddp", "ddp_find_unused_parameters_true"),
    ("lightning_modules.DarknetClassifier", "ddp", "ddp"),
    ("lightning_modules.StyleTransfer", "auto", "auto"),
    ("lightning_modules.WGAN", "ddp_spawn", "ddp_spawn")])
def test_plain_ddp_becomes_the_documented_name_where_a_system_needs_it(class_path, given, expected):
    job = config(class_path, given)
    documented_ddp_strategy(job)
    assert job.trainer.strategy == expected


@pytest.mark.parametrize("system, given, unused", [
    ("wgan", "auto", True), ("cyclegan", None, True),
    # DDP without the detection where a system does not need it (it costs a graph traversal each step)
    ("darknet", "auto", False),
    # a name given is Lightning's to build: plain `ddp` was mapped before the Trainer, and the GANs stop on it bare
    ("wgan", "ddp", False)])
def test_the_auto_strategy_on_several_devices_is_ddp_with_the_systems_unused_parameter_detection(system, given,
                                                                                                 unused):
    from lightning.pytorch.strategies import DDPStrategy

    from callbacks.strategy import auto_ddp_strategy
    model = tiny(system)[0] if system != "darknet" else DarknetClassifier(num_blocks=[1], nf=4, num_classes=3)
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy=given or "auto", logger=False)
    assert type(trainer.strategy) is DDPStrategy
    auto_ddp_strategy(trainer, model, given)
    # what the strategy hands DistributedDataParallel as the fit starts
    assert trainer.strategy._ddp_kwargs.get("find_unused_parameters", False) is unused
    one = L.Trainer(accelerator="cpu", devices=1, logger=False)  # one device: no DDP to give it to
    auto_ddp_strategy(one, model, given)
    assert not hasattr(one.strategy, "_ddp_kwargs")


def tiny(system: str):
    torch.manual_seed(0)
    if system == "wgan":
        return WGAN(isize=16, nz=8, ngf=4, ndf=4, sample_every=1000), DataLoader(torch.rand(2, 3, 16, 16), 2)
    data = TensorDataset(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32))
    return CycleGAN(n_blocks=1, ngf=4, ndf=4, log_images_every_n_batches=0), DataLoader(data, 1)


def fit(system: str, strategy: str, tmp_path):
    model, data = tiny(system)
    trainer = L.Trainer(accelerator="cpu", devices=1, strategy=strategy, max_steps=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path)
    trainer.fit(model, data)
    return trainer


@pytest.mark.parametrize("system", ["wgan", "cyclegan"])
def test_one_process_ddp_needs_the_documented_name(system, tmp_path):
    with pytest.raises(UserError, match=r"use Lightning's name for it: Trainer\(strategy=\"ddp_find_unused_parameters"
                                        r"_true\"\) from Python, --trainer.strategy ddp_find_unused_parameters_true"):
        fit(system, "ddp", tmp_path)  # a plain Trainer's: the notebook's form first
    trainer = fit(system, "ddp_find_unused_parameters_true", tmp_path)
    assert trainer.global_step >= 1


EXIT_PROBE = """
import atexit, sys
import torch.distributed as dist
atexit.register(lambda: print("alive at exit:", dist.is_initialized()))  # registered first, so it runs last
if sys.argv[2] == "import":
    import callbacks  # noqa: F401
dist.init_process_group("gloo", init_method="file://" + sys.argv[1], rank=0, world_size=1)
"""


@pytest.mark.parametrize("imports", ["import", "no import"])
def test_a_gloo_process_group_left_alive_is_destroyed_before_the_interpreter_exits(imports, tmp_path):
    """A gloo group alive at interpreter exit aborted ~1 in 5 two-process runs (callbacks.strategy); Lightning
    destroys nccl groups only. Without our package the probe sees the group alive, so it can tell."""
    probe = subprocess.run([sys.executable, "-c", EXIT_PROBE, str(tmp_path / "store"), imports], capture_output=True,
                           text=True, timeout=120, cwd=Path(__file__).parents[1])
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split() == ["alive", "at", "exit:", "False" if imports == "import" else "True"]



@pytest.mark.parametrize("alive", [False, True])
def test_the_exit_hook_destroys_a_live_group_and_touches_no_missing_one(alive, monkeypatch):
    """A process that never made a group (every one-device run) must not call destroy_process_group, which raises on
    no group (a traceback at exit). The one-process DDP fits above leave pytest's own group alive, so both states
    are set here."""
    import torch.distributed

    from callbacks.strategy import _destroy_process_group

    destroyed = []
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: alive)
    monkeypatch.setattr(torch.distributed, "destroy_process_group", lambda: destroyed.append(True))
    _destroy_process_group()
    assert destroyed == ([True] if alive else [])


@pytest.mark.parametrize("strategy, named, interactive", [
    ("ddp_spawn", "--trainer.strategy ddp_spawn starts the ranks from this process (spawn)", False),
    ("ddp_fork", "--trainer.strategy ddp_fork starts the ranks from this process (fork)", False),
    ("ddp_notebook", "--trainer.strategy ddp_notebook starts the ranks from this process (fork)", False),
    # Lightning's own choice for several devices in a notebook (its accelerator connector's _IS_INTERACTIVE)
    ("auto", "--trainer.strategy auto (DDPStrategy) starts the ranks from this process (fork)", True)])
def test_a_fit_in_processes_started_from_train_py_is_refused_before_its_folder(strategy, named, interactive, tiny_cifar,
                                                                              tmp_path, capsys, monkeypatch):
    """They hand back only the weights and metrics: a Ctrl-C there hung without saving, results.json said step 0 and
    the test after the fit ran as at step 0 (the CycleGAN's test_visuals-000000.png)."""
    from conftest import run_in_process
    from runs import assert_one_line_error, job
    monkeypatch.setattr("lightning.pytorch.trainer.connectors.accelerator_connector._IS_INTERACTIVE", interactive)
    runs = tmp_path / "runs"
    args = ["--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", strategy]
    error = assert_one_line_error(run_in_process(job(tiny_cifar, runs, *args), capsys, monkeypatch), named,
                                  "use --trainer.strategy ddp")
    assert "from a notebook, run python train.py in a terminal" in error
    assert not runs.exists()  # refused before the run's folder was made
