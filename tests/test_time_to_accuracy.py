"""benchmarks/time_to_accuracy.py's smoke mode and configs/darknet_fast.yaml, end to end on the CPU."""

import json
import pickle

import pytest
import torch
from conftest import SHARED_DATA

import train
from benchmarks import darknet_sweep, time_to_accuracy

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_FAST = ["--model.num_blocks", "[1, 0, 0]", "--model.widths", "[8, 16, 16]", "--model.num_classes", "3",
             "--model.compile", "false", "--model.whiten_images", "16", "--trainer.precision", "32-true",
             "--trainer.max_epochs", "2", "--data.batch_size", "8", "--data.eval_batch_size", "12"]


def test_fast_config_runs_end_to_end_with_tiny_overrides(tiny_cifar, tmp_path):
    runs = tmp_path / "runs"
    ema = "--trainer.callbacks+=lightning.pytorch.callbacks.EMAWeightAveraging"  # the EMA, from the command line
    train.main(["--system", "darknet_fast", "--data.data_dir", str(tiny_cifar), "--trainer.default_root_dir",
                str(runs), *TINY_FAST, ema])
    (run_dir,) = list(runs.iterdir())
    results = json.loads((run_dir / "results.json").read_text())
    assert 0 <= results["test"]["test/acc"] <= 1 and results["global_step"] == 6  # 24 images / 8, two epochs
    assert "EMAWeightAveraging" in (run_dir / "config.yaml").read_text()


@pytest.fixture
def dynamo_config():
    """main sets dynamo's recompile limit and dynamic shapes (allow_recompiles): restored after the test by the same
    setattr (monkeypatch's setattr left the config module without recompile_limit for later compilations; dynamo's
    save_config fails under torch 2.5, a KeyError on its own constant_functions); the limit's name, as main's."""
    config = torch._dynamo.config
    name = time_to_accuracy.recompile_limit_name()
    saved = {key: getattr(config, key) for key in (name, "automatic_dynamic_shapes")}
    yield name
    for key, value in saved.items():
        setattr(config, key, value)


def test_smoke_prepares_both_formats_and_reports_our_runs(tmp_path, capsys, dynamo_config):
    if not (SHARED_DATA / "cifar10-jpeg.tar.gz").exists():
        pytest.skip("real CIFAR-10 archive not found")
    result = time_to_accuracy.main(["--smoke", "--seeds", "2", "--data-dir", str(tmp_path / "data"),
                                    "--out", str(tmp_path / "out"), "--variant", "ls0=--model.label_smoothing 0",
                                    "--variant-seeds", "1",
                                    "--variant", "bad=--model.downsample sideways"])
    printed = capsys.readouterr().out
    assert "airbench94 skipped (it needs CUDA)" in printed
    runs = result["runs"]["ours"]
    assert [r["seed"] for r in runs] == [0, 1] and all(0 <= r["accuracy"] <= 1 and r["seconds"] > 0 for r in runs)
    assert all(0 < r["fit_seconds"] < r["seconds"] and r["steps"] == 4 for r in runs)  # 200 images in batches of 50
    assert getattr(torch._dynamo.config, dynamo_config) >= 64  # room for every variant's compiled graphs
    assert not torch._dynamo.config.automatic_dynamic_shapes
    summary = result["summary"]["ours"]
    seconds = [r["seconds"] for r in runs]
    assert summary["seconds"]["mean"] == pytest.approx(sum(seconds) / 2)
    assert summary["seconds"]["std"] == pytest.approx(abs(seconds[0] - seconds[1]) / 2 ** 0.5)
    assert set(result["first_run_seconds"]) == set(result["runs"]) == {"ours", "ours:ls0"}
    assert list(result["failed"]) == ["ours:bad"] and "downsample" in result["failed"]["ours:bad"]  # dropped, the
    assert "ours:bad failed" in result["note"]  # sweep went on
    assert [r["seed"] for r in result["runs"]["ours:ls0"]] == [0]  # --variant-seeds 1: the variants the first seed
    assert json.loads((tmp_path / "out" / "time_to_accuracy.json").read_text())["summary"] == result["summary"]
    assert "| ours | 2 |" in (tmp_path / "out" / "time_to_accuracy.md").read_text()
    # airbench's files: uint8 NHWC images, labels and classes; ours: the python batches, same images
    airbench = torch.load(tmp_path / "data" / "smoke" / "airbench" / "cifar10" / "test.pt")
    assert airbench["images"].shape == (100, 32, 32, 3) and airbench["images"].dtype == torch.uint8
    assert airbench["classes"][0] == "airplane" and torch.bincount(airbench["labels"]).tolist() == [10] * 10
    with open(tmp_path / "data" / "smoke" / "cifar-10-batches-py" / "test_batch", "rb") as f:
        ours = pickle.load(f)
    rows = torch.from_numpy(ours[b"data"]).view(100, 3, 32, 32)
    assert torch.equal(rows.permute(0, 2, 3, 1), airbench["images"]) and ours[b"labels"] == airbench["labels"].tolist()


def test_ratio_and_table_from_hand_made_runs():
    runs = {"airbench94": [{"accuracy": 0.90, "seconds": 2.0}, {"accuracy": 0.92, "seconds": 2.4}],
            "ours": [{"accuracy": 0.91, "seconds": 3.0}, {"accuracy": 0.93, "seconds": 3.6}],
            "ours:short": [{"accuracy": 0.88, "seconds": 1.1}, {"accuracy": 0.88, "seconds": 1.1}]}
    summary = {name: time_to_accuracy.summarise(r) for name, r in runs.items()}
    assert summary["ours"]["seconds"]["std"] == pytest.approx(0.6 / 2 ** 0.5)
    result = time_to_accuracy.compare(summary)
    assert result["ratio"] == pytest.approx(3.3 / 2.2) and result["ratios"]["ours:short"] == pytest.approx(0.5)
    assert result["accuracy_difference"] == pytest.approx(0.01)
    table = time_to_accuracy.markdown({"device": "GPU", "date": "today", "command": "x", "summary": summary,
                                       "first_run_seconds": {"ours": 9.0}, **result})
    assert "| ours | 2 | 92.00% ± 1.41 | 3.30 ± 0.42 | 9.00 | 1.50 |" in table
    assert "| airbench94 | 2 | 91.00% ± 1.41 | 2.20 ± 0.28 | 0.00 | - |" in table
    assert "**1.50**" in table


def sweep_side(name: str, tiny_cifar):
    """LightningCLI objects of our config with the sweep variant's overrides, as time_to_accuracy builds them."""
    import shlex
    import warnings

    from lightning.pytorch.cli import LightningCLI
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    args = ["--config", str(time_to_accuracy.ROOT / "configs" / "darknet_fast.yaml"), "--data.init_args.data_dir",
            str(tiny_cifar), "--trainer.accelerator", "cpu", *TINY_FAST[:8],
            *shlex.split(darknet_sweep.VARIANTS[name][0])]
    return LightningCLI(args=args, run=False, subclass_mode_model=True, subclass_mode_data=True,
                        save_config_callback=None, auto_configure_optimizers=False)


def test_sweep_variants_change_what_they_say(tiny_cifar):
    from callbacks import Lookahead
    base = sweep_side("lr1", tiny_cifar)
    assert base.model.hparams.lr == 1.0 and base.datamodule.hparams.on_device
    assert base.model.hparams.downsample == "pool_first" and base.model.hparams.bn_weight
    assert not [c for c in base.trainer.callbacks if isinstance(c, Lookahead)]
    look = sweep_side("look", tiny_cifar)
    assert [c.decay for c in look.trainer.callbacks if isinstance(c, Lookahead)] == [pytest.approx(0.95 ** 5)]
    assert look.model.hparams.lr == base.model.hparams.lr * 1.5 and look.trainer.max_steps == 476
    assert sweep_side("ep8", tiny_cifar).trainer.max_steps == 384
    assert not sweep_side("host", tiny_cifar).datamodule.hparams.on_device
    assert sweep_side("maxpool", tiny_cifar).model.hparams.downsample == "maxpool"
    norms = [m for m in sweep_side("bn0.01", tiny_cifar).model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert {m.momentum for m in norms} == {0.01} and {m.momentum for m in base.model.modules()
                                                        if isinstance(m, torch.nn.BatchNorm2d)} == {0.4}
    assert set(darknet_sweep.VARIANTS) == {"host", "maxpool", "bn0.01", "look", "ep8", "ep12", "lr1", "lr2.2"}
    assert 5 * 60 < darknet_sweep.estimate(list(darknet_sweep.VARIANTS), 3) < 7 * 60  # fits the ~7 minutes
    # 5 seeds of the main pair, 2 of each variant: 1 warm-up + 2 runs a variant instead of 1 + 5
    saved = darknet_sweep.estimate(["look"], 5) - darknet_sweep.estimate(["look"], 5, variant_seeds=2)
    assert saved == pytest.approx(3 * darknet_sweep.OURS_RUN)


def test_the_race_runs_on_one_device_whatever_the_machine_has():
    # airbench94's 476 steps are one GPU's batches of 1024: the Trainer's default devices (auto) would take every GPU
    # of a machine, each with its own 1024, and train 8 x the epochs on 8 GPUs in the same steps
    import yaml
    trainer = yaml.safe_load((time_to_accuracy.ROOT / "configs" / "darknet_fast.yaml").read_text())["trainer"]
    assert trainer["devices"] == 1 and trainer["max_steps"] == 476


def test_sweep_smoke_takes_the_wheels_and_archive_the_device_call_carries(tmp_path, monkeypatch):
    # the smoke rehearses the device call on a machine like it (no jsonargparse, no ../shared/data): it installs the
    # carried wheels it needs (jsonargparse, not airbench: airbench94 is skipped without CUDA) and reads .carry/
    (tmp_path / ".carry").mkdir()
    (tmp_path / ".carry" / "cifar10-jpeg.tar.gz").write_bytes(b"")
    probed, ran = [], []
    monkeypatch.setattr(darknet_sweep, "ROOT", tmp_path)
    monkeypatch.setattr(darknet_sweep, "with_wheels", lambda wheels, site, argv, modules: probed.append(
        (wheels, modules)))
    monkeypatch.setattr(time_to_accuracy, "main", lambda args: ran.append((args, time_to_accuracy.SHARED_DATA)))
    monkeypatch.setattr(time_to_accuracy, "SHARED_DATA", time_to_accuracy.SHARED_DATA)  # restored after the test
    from benchmarks import common
    monkeypatch.setattr(common, "SHARED_DATA", common.SHARED_DATA)
    monkeypatch.setenv("DL2_SHARED_DATA", "")  # so the value main() sets is undone after the test
    monkeypatch.delenv("DL2_SHARED_DATA")
    darknet_sweep.main(["--smoke", "--only", "look", "--seeds", "1"])
    assert probed == [(tmp_path / ".whl", "jsonargparse, docstring_parser, typeshed_client")]
    (args, shared), = ran
    assert shared == tmp_path / ".carry" and "--smoke" in args
    darknet_sweep.main(["--only", "look", "--seeds", "1"])  # the device call: airbench too
    assert probed[1] == (tmp_path / ".whl", "jsonargparse, docstring_parser, typeshed_client, airbench")
    assert not darknet_sweep.main(["--list"]) and len(probed) == 2  # --list installs nothing


def test_wheels_that_do_not_install_stop_the_sweep_with_pip_s_reason(tmp_path, monkeypatch):
    """On the GPU machine a failed offline install said only "non-zero exit status 1", pip's reason captured away."""
    wheels = tmp_path / ".whl"
    wheels.mkdir()
    (wheels / "broken-1.0-py3-none-any.whl").write_bytes(b"not a zip")
    monkeypatch.delenv("DARKNET_SWEEP_SITE", raising=False)
    with pytest.raises(SystemExit, match=rf"the carried wheels in {wheels} did not install:\n(.|\n)*broken"):
        darknet_sweep.with_wheels(wheels, tmp_path / "site", [], "no_such_module_here")
    assert not (tmp_path / "site" / "broken").exists()


def test_airbench_s_clock_leaves_out_its_net_and_test_set_loading(tmp_path, monkeypatch):
    """airbench's train() makes its net and reads the test set from disk again (a loader it uses only when verbose);
    airbench's own timing leaves both out, and ours has its model and test images made before the clock. A stand-in
    airbench package, its train94 doing what 0.1.8's does (utils.CifarLoader for the test set, then make_net()),
    records what happens between the two synchronisations around the timed region."""
    import sys
    import types

    events = []
    utils = types.ModuleType("airbench.utils")

    class CifarLoader:
        def __init__(self, path, train=True, batch_size=500, **kwargs):
            events.append(f"loader train={train}")

    def make_net94():
        events.append("make_net")
        return "net"

    def train94(train_loader, make_net=make_net94, verbose=True):
        utils.CifarLoader("cifar10", train=False, batch_size=2000)  # airbench.utils.train's own test loader
        events.append("train")
        return make_net()

    def evaluate(model, loader, tta_level=0):
        events.append(f"evaluate {model} tta {tta_level}")
        return 0.5

    utils.CifarLoader = CifarLoader
    package = types.ModuleType("airbench")
    package.CifarLoader, package.make_net94, package.train94, package.evaluate = (CifarLoader, make_net94, train94,
                                                                                  evaluate)
    package.utils = utils
    lib = types.ModuleType("airbench.lib_airbench94")
    lib.hyp = {"opt": {"batch_size": 1024}, "aug": {"flip": True, "translate": 2}, "net": {"tta_level": 2}}
    monkeypatch.setitem(sys.modules, "airbench", package)
    monkeypatch.setitem(sys.modules, "airbench.utils", utils)
    monkeypatch.setitem(sys.modules, "airbench.lib_airbench94", lib)
    monkeypatch.setattr(time_to_accuracy, "synchronize", lambda: events.append("sync"))
    result = time_to_accuracy.run_airbench(tmp_path, seed=0)
    assert result["accuracy"] == 0.5
    timed = events[events.index("sync") + 1:len(events) - 1 - events[::-1].index("sync")]
    assert timed == ["train", "evaluate net tta 2"]  # training and the TTA test, nothing made or read
    assert events[:3] == ["loader train=True", "loader train=False", "make_net"]
    assert utils.CifarLoader is CifarLoader  # put back after the run


def test_the_race_takes_the_original_cifar10_batches_train_py_downloads(tmp_path):
    """It needed the shared JPEG archive, which users do not have; the official python batches (data/cifar10) give
    the race on the original CIFAR-10, in a cache of their own beside the archive's."""
    import numpy as np
    from conftest import make_batches
    make_batches(tmp_path / "cifar10" / "cifar-10-batches-py", per_batch=6)
    ours, airbench = time_to_accuracy.prepare(tmp_path / "cache", smoke=True, source=tmp_path / "cifar10")
    assert ours.parent == tmp_path / "cache" / "from-cifar10"
    with open(tmp_path / "cifar10" / "cifar-10-batches-py" / "test_batch", "rb") as f:
        original = pickle.load(f, encoding="bytes")
    test = torch.load(airbench / "cifar10" / "test.pt")
    labels = np.array(original[b"labels"])
    keep = np.sort(np.concatenate([np.flatnonzero(labels == k)[:10] for k in range(labels.max() + 1)]))
    assert test["labels"].tolist() == labels[keep].tolist()  # the first 10 of each class, in the file's order
    assert torch.equal(test["images"], torch.from_numpy(original[b"data"][keep].reshape(-1, 3, 32, 32)).permute(
        0, 2, 3, 1))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="no CIFAR-10 python batches"):
        time_to_accuracy.prepare(tmp_path / "cache", smoke=True, source=tmp_path / "empty")


def test_a_race_without_the_airbench_package_stops_first_saying_how_to_get_it(tmp_path, monkeypatch):
    import importlib.util
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "airbench" else find_spec(name))
    with pytest.raises(SystemExit, match=r"pip install airbench==0\.1\.8 \(or --no-airbench"):
        time_to_accuracy.main(["--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "out")])
    assert not (tmp_path / "data").exists()  # before the data's preparation
