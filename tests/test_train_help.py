"""train.py's help: --help per system with the config's values, without a system, --help-trainer; classes given by their
short names."""


import pytest

import train
from callbacks import configs

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets: threads only add contention


@pytest.mark.parametrize("option, short, full", [
    ("--data", "ImageFolderDataModule", "datamodules.ImageFolderDataModule"),
    ("--model", "DarknetClassifier", "lightning_modules.DarknetClassifier")])
def test_classes_are_found_by_their_short_names(option, short, full, capsys):
    with pytest.raises(SystemExit):
        train.main(["--system", "darknet", option, short, "--print_config"])
    assert f"class_path: {full}" in capsys.readouterr().out


def test_system_help_lists_system_then_its_options_with_the_config_values(capsys):
    train.main(["--system", "wgan", "--help"])
    text = capsys.readouterr().out
    options = [line.split()[0] for line in text.splitlines() if line.startswith("  --")]
    assert options[0] == "--system"
    assert options.index("--model.sample_every") < options.index("--data.data_dir")
    # the config's values, not the class defaults (the WGAN class says isize 64, the config 32)
    assert "image size, a power of 2 from 16" in text and "default: 32)" in text.split("--model.isize")[1][:200]
    flat = " ".join(text.split())
    assert "default: data/cifar10/train)" in flat and "--help-trainer" in flat
    assert "--trainer.max_epochs MAX_EPOCHS the config's value (--print_config: all of it) (default: 25)" in flat
    assert "(default: WandbLogger)" in flat


@pytest.mark.parametrize("system, logger", [("cyclegan", "WandbLogger"), ("darknet", "WandbLogger"),
                                            ("darknet_fast", "False"), ("style", "WandbLogger"),
                                            ("wgan", "WandbLogger")])
def test_every_shipped_system_has_help(system, logger, capsys):
    assert len(configs.systems()) == 5  # a new config joins the list above
    train.main(["--system", system, "--help"])  # darknet_fast's `logger: false` once raised a TypeError here
    flat = " ".join(capsys.readouterr().out.split())
    assert f"--trainer.logger LOGGER the config's value (--print_config: all of it) (default: {logger})" in flat


def test_help_without_system_lists_the_systems(capsys):
    train.main(["--help"])
    text = capsys.readouterr().out
    assert all(f"  {name} " in text for name in ("cyclegan", "darknet", "style", "wgan"))


def test_help_trainer_shows_lightnings_trainer_options(capsys):
    with pytest.raises(SystemExit) as stop:
        train.main(["--system", "wgan", "--help-trainer"])
    assert stop.value.code == 0 and "--trainer.accumulate_grad_batches" in capsys.readouterr().out
