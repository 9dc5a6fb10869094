"""A checkpoint given to train.py, checked (callbacks/checkpoints.py): another system's or a truncated file named, its
step read, the options a resume changed named."""

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import run_in_process
from jsonargparse import Namespace
from lightning.pytorch import LightningModule
from runs import assert_one_line_error, job, options_warnings

import train
from callbacks import checkpoints
from lightning_modules.export import EXPORT_KEY

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets: threads only add contention


def test_a_resume_with_other_options_than_the_runs_says_which_and_how_to_resume_as_it_began(tiny_cifar, tmp_path):
    """A resume that forgot an option of the run's start (a style run's --data.style) went on with the default
    without a word; the options that keep the network's shapes pass check_checkpoint."""
    runs = tmp_path / "runs"
    began = ["--model.lr", "0.2", "--data.pad", "2"]
    train.main(job(tiny_cifar, runs, "--run_name", "r", *began))
    run_dir = runs / "r"
    last = run_dir / "checkpoints" / "last.ckpt"
    with options_warnings() as said:  # the run's own options (a list, [1], read back from the checkpoint): nothing
        train.main(job(tiny_cifar, runs, "--run_name", "r", *began, "--ckpt_path", "last", "--trainer.max_epochs", "2"))
    assert said == []
    with options_warnings() as said:
        train.main(job(tiny_cifar, runs, "--run_name", "r", "--model.lr", "0.1", "--data.pad", "0", "--data.flip",
                       "false", "--ckpt_path", "last", "--trainer.max_epochs", "3"))
    assert len(said) == 1, said
    for changed in ("--model.lr: the checkpoint's 0.2, this resume's 0.1",
                    "--data.pad: the checkpoint's 2, this resume's 0",
                    "--data.flip: the checkpoint's true, this resume's false",
                    f"python train.py --config {run_dir / 'config.yaml'} --ckpt_path {last}"):
        assert changed in said[0], said[0]
    assert "error" not in said[0].lower()  # a resume may change options: it goes on with them
    assert json.loads((run_dir / "results.json").read_text())["global_step"] == 9  # and it did
    with options_warnings() as said:  # as the run began, after a resume that changed them: not that command again
        train.main(["--config", str(run_dir / "config.yaml"), "--ckpt_path", str(last), "--trainer.max_epochs", "4"])
    assert len(said) == 1 and "--model.lr: the checkpoint's 0.1, this resume's 0.2" in said[0], said
    assert f"gives the run's config {run_dir / 'config.yaml'} already" in said[0] and "--config" not in said[0]
    with options_warnings() as said:  # a new run from the weights changes options on purpose
        train.main(job(tiny_cifar, runs, "--run_name", "tuned", "--init_from", str(run_dir), "--model.lr", "0.05",
                       "--data.flip", "false"))
    assert said == []


def test_a_copied_checkpoint_names_its_values_as_flags(tmp_path):
    """Without a run folder's config.yaml: the options to give, as on the command line; a list and a tuple of the
    same values, and 1 and 1.0, are the same option, and LightningCLI's own entries are no options."""
    state = {"hyper_parameters": {"_class_path": "a.Model", "_instantiator": "x", "num_blocks": (1, 2), "lr": 1,
                                  "tta": "flip", "widths": None},
             "datamodule_hyper_parameters": {"_class_path": "d.Data", "style": "my style.jpg", "size": 64}}
    model = SimpleNamespace(hparams={"_class_path": "a.Model", "_instantiator": "y", "num_blocks": [1, 2],
                                     "lr": 1.0, "tta": "none", "widths": [8, 16], "new_option": 3})
    data = SimpleNamespace(hparams={"_class_path": "d.Data", "style": None, "size": 64})
    said = checkpoints.changed_options_warning(str(tmp_path / "copied.ckpt"), state, model, data)
    assert ("--model.tta: the checkpoint's flip, this resume's none; --model.widths: the checkpoint's null, this "
            "resume's '[8, 16]'; --data.style: the checkpoint's 'my style.jpg', this resume's null.") in said
    assert said.endswith(f"give --model.tta flip --model.widths null --data.style 'my style.jpg' --ckpt_path "
                            f"{tmp_path / 'copied.ckpt'}")
    said = checkpoints.changed_options_warning(str(tmp_path / "copied.ckpt"), state, model, SimpleNamespace(hparams={
        "_class_path": "d.Data", "style": "my style.jpg", "size": 64}))  # the data as the run's
    assert "--data.style" not in said and "--model.widths" in said
    said = checkpoints.changed_options_warning(str(tmp_path / "copied.ckpt"), state, None, SimpleNamespace(hparams={
        "_class_path": "other.Folders", "style": "my style.jpg"}))  # another data module class
    assert "--data: the checkpoint's d.Data, this resume's other.Folders. " in said
    assert checkpoints.changed_options_warning(str(tmp_path / "copied.ckpt"), state, SimpleNamespace(hparams={
        **state["hyper_parameters"], "tta": "flip"}), None) is None


def test_a_checkpoints_step_is_read_from_either_of_torchs_formats(tmp_path):
    torch.save({"global_step": 7}, tmp_path / "zip.ckpt")
    torch.save({"global_step": 8}, tmp_path / "legacy.ckpt", _use_new_zipfile_serialization=False)
    (tmp_path / "torn.ckpt").write_bytes(b"PK")
    steps = [checkpoints.checkpoint_step(tmp_path / f"{name}.ckpt") for name in ("zip", "legacy", "torn")]
    assert steps == [7, 8, None]


def test_a_checkpoint_of_another_system_is_named(tmp_path, capsys, monkeypatch):
    ckpt = tmp_path / "wgan.ckpt"  # what Lightning writes for a model built by LightningCLI
    torch.save({"state_dict": {"generator.0.weight": torch.zeros(1)}, "epoch": 0, "global_step": 5,
                "hyper_parameters": {"_class_path": "lightning_modules.WGAN", "isize": 32}}, ckpt)
    result = run_in_process(["--system", "cyclegan", "--ckpt_path", str(ckpt), "--trainer.logger", "false",
                             "--data.data_dir", str(tmp_path / "absent"), "--model.n_blocks", "1"], capsys, monkeypatch)
    assert_one_line_error(result, f"{ckpt} is a WGAN checkpoint, this is cyclegan; use --system wgan")


@pytest.mark.parametrize("flag", ["--ckpt_path", "--init_from"])
def test_another_systems_or_a_missing_checkpoint_is_refused_before_a_run_folder(tmp_path, flag):
    # the refusal came after the run folder was made: a folder (run.json, .lock, wandb/) for each mistyped path
    ckpt = tmp_path / "wgan.ckpt"
    torch.save({"state_dict": {"generator.0.weight": torch.zeros(1)}, "epoch": 0, "global_step": 5,
                "hyper_parameters": {"_class_path": "lightning_modules.WGAN", "isize": 32}}, ckpt)
    runs = tmp_path / "runs"
    args = ["--system", "cyclegan", "--trainer.logger", "false", "--data.data_dir", str(tmp_path / "absent"),
            "--model.n_blocks", "1", "--trainer.default_root_dir", str(runs)]
    with pytest.raises(train.UserError, match=re.escape(f"{ckpt} is a WGAN checkpoint, this is cyclegan; use "
                                                        "--system wgan")):
        train.main([*args, flag, str(ckpt)])
    with pytest.raises(train.UserError, match="not found|no such file"):
        train.main([*args, flag, str(tmp_path / "absent.ckpt")])
    assert not runs.exists()


def test_a_truncated_checkpoint_is_named_with_the_fix(tiny_cifar, tmp_path, capsys, monkeypatch):
    runs = tmp_path / "runs"
    train.main(job(tiny_cifar, runs, "--run_name", "first"))
    last = runs / "first" / "checkpoints" / "last.ckpt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])
    result = run_in_process(job(tiny_cifar, runs, "--ckpt_path", "last"), capsys, monkeypatch)
    assert_one_line_error(result, f"{last} is not a readable checkpoint (truncated?",
                          f"use an earlier one in {last.parent}")


# refuse_exported_resume, called directly


def test_an_exported_file_is_refused_as_a_fits_checkpoint_naming_init_from(tmp_path):
    path = str(tmp_path / "g.ckpt")
    with pytest.raises(train.UserError) as refused:
        checkpoints.refuse_exported_resume({"state_dict": {}, EXPORT_KEY: {"left_out": []}}, path)
    assert "exported weights file" in str(refused.value) and f"--init_from {path}" in str(refused.value)
    checkpoints.refuse_exported_resume({"state_dict": {}, "global_step": 3}, path)  # a training checkpoint: resumed


# check_checkpoint (before a fit: --ckpt_path and --init_from) and check_checkpoint_class (a native subcommand's)


class Tiny(torch.nn.Module):
    """A net with two weights and a buffer built in setup (empty until then, as the style system's image)."""

    def __init__(self, features: int = 3):
        super().__init__()
        self.layer = torch.nn.Linear(2, features)
        self.register_buffer("built_in_setup", torch.empty(0))


def tiny_checkpoint(path: Path, model: torch.nn.Module, class_path: str | None = "tests.Tiny", **state) -> str:
    weights = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    hyper = {"_class_path": class_path} if class_path else {}
    torch.save({"state_dict": {**weights, **state.pop("weights", {})}, "global_step": 4, "hyper_parameters": hyper,
                **state}, path)
    return str(path)


def test_a_checkpoint_of_the_same_net_is_returned_for_a_resume_and_for_init_from(tmp_path):
    checkpoint = tiny_checkpoint(tmp_path / "last.ckpt", Tiny(), weights={"built_in_setup": torch.ones(5, 5)})
    for for_init in (False, True):  # the buffer built in setup has no shape to compare yet
        assert checkpoints.check_checkpoint(checkpoint, Tiny(), "tiny", for_init=for_init)["global_step"] == 4
    without_class = tiny_checkpoint(tmp_path / "plain.ckpt", Tiny(), class_path=None)  # a checkpoint of plain Lightning
    assert checkpoints.check_checkpoint(without_class, Tiny(), "tiny")["global_step"] == 4


def test_a_checkpoint_of_other_shapes_names_the_weight_and_both_shapes(tmp_path):
    runs = tmp_path / "runs" / "r" / "checkpoints"
    runs.mkdir(parents=True)
    (tmp_path / "runs" / "r" / "config.yaml").write_text("{}\n")  # the run's, as train.py writes it
    # a weight the net lacks first (passed over: its shape is nobody's), then the net's own at another size
    checkpoint = str(runs / "last.ckpt")
    torch.save({"state_dict": {"head.weight": torch.zeros(1), **Tiny(features=5).state_dict()}, "global_step": 4},
               checkpoint)
    with pytest.raises(train.UserError) as refused:
        checkpoints.check_checkpoint(checkpoint, Tiny(features=3), "tiny")
    assert "was trained with other settings (layer.weight: (5, 2) there, (3, 2) here)" in str(refused.value)
    assert f"resume with its config: --config {tmp_path / 'runs' / 'r' / 'config.yaml'} --ckpt_path" in str(
        refused.value)


class TinyWithHyperParameters(LightningModule):
    def __init__(self, features: int = 3, betas: tuple = (0.5, 0.999), name: str = "a b"):
        super().__init__()
        self.save_hyperparameters()
        self.layer = torch.nn.Linear(2, features)


def test_a_checkpoint_outside_a_run_folder_names_the_options_it_was_trained_with_not_a_missing_config(tmp_path):
    """An export (`dl2-export ... --output horse2zebra.ckpt`) or a copied checkpoint has no run folder above it:
    the error named <its folder's parent>/config.yaml, a file that is not there; the saved hyper-parameters that
    differ from this model's and shape its network are the fix (betas as a list there, a tuple here: the same option;
    name differs but shapes nothing, so a fine-tune need not copy it)."""
    exported = tmp_path / "exports" / "net.ckpt"
    exported.parent.mkdir()
    saved = {"_class_path": "tests.TinyWithHyperParameters", "features": 5, "betas": [0.5, 0.999], "name": "x y"}
    torch.save({"state_dict": TinyWithHyperParameters(features=5).state_dict(), "global_step": 4,
                "hyper_parameters": saved}, exported)
    for for_init, fix in ((True, "--init_from needs the same network: give the --model options it was trained "
                                 "with (--model.features 5, from its hyper-parameters)"),
                          (False, "resume with the --model options it was trained with (--model.features 5, "
                                  f"from its hyper-parameters) and --ckpt_path {exported}")):
        with pytest.raises(train.UserError) as refused:
            checkpoints.check_checkpoint(str(exported), TinyWithHyperParameters(), "tiny", for_init=for_init)
        assert "was trained with other settings (layer.weight: (5, 2) there, (3, 2) here); " + fix == \
            str(refused.value).split(f"{exported} ", 1)[1]
        assert "config.yaml" not in str(refused.value)
    # Lightning's hpc_ckpt_N.ckpt lies in the run folder itself, beside its config.yaml
    (tmp_path / "exports" / "config.yaml").write_text("{}\n")
    hpc = tmp_path / "exports" / "hpc_ckpt_1.ckpt"
    exported.rename(hpc)
    with pytest.raises(train.UserError) as refused:
        checkpoints.check_checkpoint(str(hpc), TinyWithHyperParameters(), "tiny")
    assert str(refused.value).endswith(f"resume with its config: --config {tmp_path / 'exports' / 'config.yaml'} "
                                       f"--ckpt_path {hpc}")


def test_the_fix_for_a_cyclegan_of_another_width_names_its_width_not_its_training_options(tmp_path):
    """A fine-tune of an export told to copy the run's n_epochs and n_epochs_decay too would carry its lr schedule
    over: only the options that shape the nets are named."""
    from lightning_modules import CycleGAN
    trained = CycleGAN(n_blocks=1, ngf=8, ndf=4, n_epochs=1, n_epochs_decay=2, log_images_every_n_batches=4)
    path = tmp_path / "h2z.ckpt"
    saved = {**trained.hparams, "an_option_dropped_since": 3}  # a model of today cannot be built with it
    torch.save({"state_dict": trained.state_dict(), "global_step": 4, "hyper_parameters": saved}, path)
    with pytest.raises(train.UserError) as refused:
        checkpoints.check_checkpoint(str(path), CycleGAN(n_blocks=1, ngf=4, ndf=4), "cyclegan", for_init=True)
    assert str(refused.value).endswith("--init_from needs the same network: give the --model options it was trained "
                                       "with (--model.ngf 8, from its hyper-parameters)")


class TinyWithMapping(LightningModule):
    def __init__(self, features: int = 3, mapping: dict | None = None):
        super().__init__()
        self.save_hyperparameters()
        self.layer = torch.nn.Linear(2, features)


def test_hyper_parameters_json_cannot_write_neither_stop_a_checkpoint_check_nor_its_refusal(tmp_path):
    """A user module's dict with tuple keys (JSON's keys are strings): the fix is worked out for every checkpoint
    checked, so a TypeError there stopped a good checkpoint's resume too."""
    path = tmp_path / "net.ckpt"
    saved = {"features": 5, "mapping": {(1, 2): 4}}
    torch.save({"state_dict": TinyWithMapping(features=5).state_dict(), "global_step": 4,
                "hyper_parameters": saved}, path)
    assert checkpoints.check_checkpoint(str(path), TinyWithMapping(features=5, mapping={(1, 2): 4}), "tiny")[
        "global_step"] == 4
    with pytest.raises(train.UserError) as refused:
        checkpoints.check_checkpoint(str(path), TinyWithMapping(mapping={(1, 2): 3}), "tiny")
    # mapping differs too, and is compared as Python shows it; it shapes no weight, so the fix leaves it out
    assert str(refused.value).endswith(f"(--model.features 5, from its hyper-parameters) and --ckpt_path {path}")


def test_numpy_and_torch_hyper_parameters_are_named_by_value_not_by_type(tmp_path):
    """A user module's hyper-parameters from numpy or torch (np.int64(5) from len(np.unique(...)), a mean tensor):
    the same values as the model's were named as differences (--model.features 5 where features is 5), and a
    tensor's option as the quoted string '"tensor([...])"', which no command line takes."""
    import numpy as np
    path = tmp_path / "net.ckpt"
    saved = {"features": np.int64(5), "mapping": {"mean": np.float32(0.5), "std": torch.tensor([0.25, 0.5])}}
    torch.save({"state_dict": TinyWithMapping(features=5).state_dict(), "global_step": 4,
                "hyper_parameters": saved}, path)
    with pytest.raises(train.UserError) as refused:
        checkpoints.check_checkpoint(str(path), TinyWithMapping(features=3, mapping={"mean": 0.5, "std": [0.25, 0.5]}),
                                     "tiny")
    assert str(refused.value).endswith(f"(--model.features 5, from its hyper-parameters) and --ckpt_path {path}")
    # an option the fix names (one that shapes a network) is written as the command line takes it
    assert checkpoints.option_value(saved["mapping"]) == '{"mean": 0.5, "std": [0.25, 0.5]}'


def test_init_from_and_a_resume_refuse_weights_missing_or_extra(tmp_path):
    class Deeper(Tiny):
        def __init__(self):
            super().__init__()
            self.more = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 3))

    checkpoint = tiny_checkpoint(tmp_path / "tiny.ckpt", Tiny(), class_path=None)  # no class to compare
    with pytest.raises(train.UserError) as refused:
        checkpoints.check_checkpoint(checkpoint, Deeper(), "tiny", for_init=True)
    # 4 weights missing (more.0/1 weight/bias), the first two in sorted order named
    assert "holds another network (4 weights missing, e.g. ['more.0.bias', 'more.0.weight']; 0 not ours" in str(
        refused.value)
    extra = tiny_checkpoint(tmp_path / "extra.ckpt", Tiny(), weights={"head.weight": torch.zeros(1)})
    with pytest.raises(train.UserError, match=re.escape("(0 weights missing, e.g. []; 1 not ours, e.g. "
                                                        "['head.weight'])")):
        checkpoints.check_checkpoint(extra, Tiny(), "tiny", for_init=True)
    heads = tiny_checkpoint(tmp_path / "heads.ckpt", Tiny(), weights={f"head{i}.weight": torch.zeros(1)
                                                                        for i in (3, 1, 2)})
    with pytest.raises(train.UserError, match=re.escape("3 not ours, e.g. ['head1.weight', 'head2.weight']); ")):
        checkpoints.check_checkpoint(heads, Tiny(), "tiny", for_init=True)
    for path, model in ((checkpoint, Deeper()), (extra, Tiny())):  # a resume: Lightning's strict load was a traceback
        with pytest.raises(train.UserError, match=re.escape(f"{path} holds another network (")):
            checkpoints.check_checkpoint(path, model, "tiny")
    lenient = Deeper()
    lenient.strict_loading = False  # the style's: its checkpoints leave the frozen VGG out
    assert checkpoints.check_checkpoint(checkpoint, lenient, "tiny")["global_step"] == 4


def test_a_checkpoint_of_another_class_names_it_and_the_system_to_use(tmp_path):
    wgan = tiny_checkpoint(tmp_path / "wgan.ckpt", Tiny(), class_path="lightning_modules.wgan.WGAN")
    with pytest.raises(train.UserError, match=re.escape(f"{wgan} is a WGAN checkpoint, this is tiny; use --system "
                                                        "wgan")):
        checkpoints.check_checkpoint(wgan, Tiny(), "tiny")
    other = tiny_checkpoint(tmp_path / "other.ckpt", Tiny(), class_path="elsewhere.Other")
    with pytest.raises(train.UserError, match=re.escape("is a Other checkpoint, this is tiny; train a elsewhere.Other "
                                                        "with the config that wrote it")):
        checkpoints.check_checkpoint(other, Tiny(), "tiny", for_init=True)


def test_a_fit_from_an_exported_file_is_refused_and_init_from_takes_it(tmp_path):
    exported = tiny_checkpoint(tmp_path / "g.ckpt", Tiny(), **{EXPORT_KEY: {"left_out": []}})
    with pytest.raises(train.UserError, match=re.escape(f"start a new run from its weights with --init_from "
                                                        f"{exported}")):
        checkpoints.check_checkpoint(exported, Tiny(), "tiny")
    assert checkpoints.check_checkpoint(exported, Tiny(), "tiny", for_init=True)["global_step"] == 4


def native(ckpt_path, model="lightning_modules.DarknetClassifier"):
    return Namespace(ckpt_path=ckpt_path, model=Namespace(class_path=model) if "." in model else model)


def test_a_native_subcommand_takes_a_checkpoint_of_its_configs_class(tmp_path):
    checkpoints.check_checkpoint_class(native(None), "fit")  # no checkpoint: nothing to read
    darknet = tiny_checkpoint(tmp_path / "d.ckpt", Tiny(), class_path="lightning_modules.darknet_classifier."
                                                                      "DarknetClassifier")
    for kind in ("fit", "validate", "test"):
        checkpoints.check_checkpoint_class(native(darknet), kind)
        checkpoints.check_checkpoint_class(native(darknet, model="DarknetClassifier"), kind)  # a short name
        checkpoints.check_checkpoint_class(native(tiny_checkpoint(tmp_path / "p.ckpt", Tiny(), class_path=None)), kind)
    exported = tiny_checkpoint(tmp_path / "g.ckpt", Tiny(), class_path="lightning_modules.DarknetClassifier",
                               **{EXPORT_KEY: {"left_out": []}})
    for kind in ("validate", "test"):  # its weights are all an evaluation needs
        checkpoints.check_checkpoint_class(native(exported), kind)
    with pytest.raises(train.UserError, match=re.escape(f"--ckpt_path {exported} is an exported weights file")):
        checkpoints.check_checkpoint_class(native(exported), "fit")


def test_a_native_subcommand_refuses_another_class_naming_the_config_to_give(tmp_path):
    folder = tmp_path / "runs" / "r" / "checkpoints"
    folder.mkdir(parents=True)
    cyclegan = tiny_checkpoint(folder / "last.ckpt", Tiny(), class_path="lightning_modules.CycleGAN")
    with pytest.raises(train.UserError, match=re.escape(
            f"--ckpt_path {cyclegan} is a CycleGAN checkpoint, but the config's model is a DarknetClassifier; give "
            "its system's config, --config configs/cyclegan.yaml")):
        checkpoints.check_checkpoint_class(native(cyclegan), "test")
    (tmp_path / "runs" / "r" / "config.yaml").write_text("model: {}\n")  # the run's own config, beside its folder
    with pytest.raises(train.UserError, match=re.escape(f"give its run's config, --config {tmp_path}/runs/r/config.yaml"
                                                        )):
        checkpoints.check_checkpoint_class(native(cyclegan), "validate")
    other = tiny_checkpoint(tmp_path / "o.ckpt", Tiny(), class_path="elsewhere.Other")
    with pytest.raises(train.UserError, match=re.escape("is a Other checkpoint, but the config's model is a "
                                                        "DarknetClassifier; give the config that trained it")):
        checkpoints.check_checkpoint_class(native(other), "fit")



def test_the_fix_for_a_wgan_of_another_image_size_names_the_data_size_too(tmp_path):
    """The WassersteinGAN reference's netG at 64px: the fix named --model.isize 64 alone, and the run then stopped
    at its second error (the data is 32px but the model 64px) after its folder and W&B run had begun."""
    from lightning_modules import WGAN
    path = tmp_path / "netG.ckpt"
    torch.save({"state_dict": WGAN(isize=64, ngf=8, ndf=8).state_dict(), "global_step": 0,
                "hyper_parameters": dict(WGAN(isize=64, ngf=8, ndf=8).hparams)}, path)
    with pytest.raises(train.UserError) as refused:
        checkpoints.check_checkpoint(str(path), WGAN(isize=32, ngf=8, ndf=8), "wgan", for_init=True)
    assert str(refused.value).endswith("--init_from needs the same network: give the --model options it was trained "
                                       "with (--model.isize 64 --data.isize 64, from its hyper-parameters)")


def test_a_resume_with_another_cyclegan_depth_is_refused_with_its_runs_config_not_a_load_traceback(tmp_path):
    """n_blocks adds or renames the generators' weights rather than reshaping them, so only --init_from counted them:
    a resume of a 6-block run under the shipped config's 9 went on to Lightning's strict load, a RuntimeError
    traceback."""
    from lightning_modules import CycleGAN
    run = tmp_path / "runs" / "sig1"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("model: {}\n")
    path = run / "checkpoints" / "last.ckpt"
    trained = CycleGAN(n_blocks=6, ngf=4, ndf=4)
    torch.save({"state_dict": trained.state_dict(), "global_step": 4, "hyper_parameters": dict(trained.hparams)},
               path)
    with pytest.raises(train.UserError) as refused:
        checkpoints.check_checkpoint(str(path), CycleGAN(n_blocks=9, ngf=4, ndf=4), "cyclegan")
    assert str(refused.value).startswith(f"{path} holds another network (")
    assert str(refused.value).endswith(f"resume with its config: --config {run / 'config.yaml'} --ckpt_path {path}")
    assert checkpoints.check_checkpoint(str(path), CycleGAN(n_blocks=6, ngf=4, ndf=4), "cyclegan")  # its own: taken
