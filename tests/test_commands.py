"""The inference commands: console scripts declared in setup.cfg, `python -m` without runpy warnings."""

import configparser
import importlib
import os
import subprocess
import sys

import lightning as L
import pytest
import torch
from conftest import ROOT, make_style_images
from PIL import Image
from torch.utils.data import DataLoader

from lightning_modules import WGAN, commands

pytestmark = pytest.mark.usefixtures("one_thread")

SCRIPTS = {"dl2-wgan-generate": "wgan_generate", "dl2-wgan-fid": "wgan_fid",
           "dl2-cyclegan-translate": "cyclegan_translate", "dl2-stylize": "stylize"}


def console_scripts() -> dict[str, str]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    lines = [line for line in config["options.entry_points"]["console_scripts"].splitlines() if line.strip()]
    return dict(tuple(part.strip() for part in line.split("=")) for line in lines)


def test_setup_cfg_declares_a_prefixed_console_script_per_command():
    declared = console_scripts()
    assert declared == {name: f"lightning_modules.commands:{fn}" for name, fn in SCRIPTS.items()}
    for target in declared.values():
        module, _, function = target.partition(":")
        assert callable(getattr(importlib.import_module(module), function))


@pytest.mark.parametrize("module, subcommand",
                         [("wgan", "fid"), ("cyclegan", "translate"), ("style_transfer", "stylize")])
def test_python_m_runs_without_runpy_warning(module, subcommand):
    result = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-m", f"lightning_modules.{module}",
                             subcommand, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0 and "Warning" not in result.stderr, result.stderr[-2000:]
    assert "usage:" in result.stdout


def test_console_script_generate_writes_the_samples(tmp_path):
    torch.manual_seed(0)
    model = WGAN(isize=16, nz=8, ngf=4, ndf=4, sample_every=1000)
    trainer = L.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(model, DataLoader(torch.rand(2, 3, 16, 16) * 2 - 1, batch_size=2))
    trainer.save_checkpoint(tmp_path / "wgan.ckpt")
    commands.wgan_generate([str(tmp_path / "wgan.ckpt"), "--out_dir", str(tmp_path / "out"), "--num_samples", "3",
                            "--nrow", "1"])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["000000.png", "000001.png", "000002.png",
                                                                     "grid.png"]


def test_console_script_stylize_writes_the_image(tmp_path):
    content, style = make_style_images(tmp_path / "in")
    commands.stylize(["--content", str(content[0]), "--style", str(style), "--output", str(tmp_path / "out"),
                      "--size", "32", "--max_iter", "1", "--vgg_weights", "random", "--arch", "vgg16",
                      "--accelerator", "cpu"])
    assert Image.open(tmp_path / "out" / "stylized" / "content0.png").size == (32, 32)
