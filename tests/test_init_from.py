"""--init_from: a new run from a checkpoint's weights alone, what does not fit named in one line, the whitening stem
kept."""

import json

import numpy as np
import pytest
import torch
from conftest import run_in_process
from PIL import Image
from runs import assert_one_line_error, job

import train

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets: threads only add contention


def test_init_from_starts_a_new_run_from_the_weights_alone(tiny_cifar, tmp_path):
    """Fine-tuning (junyanz's --continue_train --epoch_count 1, fastai's learn.load then fit): the trained weights,
    a fresh optimizer, step 0, a new run folder."""
    runs = tmp_path / "runs"
    train.main(job(tiny_cifar, runs, "--run_name", "first", "--trainer.max_epochs", "2"))
    trained = torch.load(runs / "first" / "checkpoints" / "last.ckpt", weights_only=False)
    train.main(job(tiny_cifar, runs, "--run_name", "tuned", "--init_from", str(runs / "first" / "checkpoints" /
                   "last.ckpt"), "--trainer.callbacks+=runs.StartWeights"))
    start = torch.load(runs / "tuned" / "start.pt", weights_only=False)
    assert start["weights"].keys() == trained["state_dict"].keys()
    assert all(torch.equal(start["weights"][k], v) for k, v in trained["state_dict"].items())
    assert start["optimizer"] == {} and trained["optimizer_states"][0]["state"]  # no momentum carried over
    results = json.loads((runs / "tuned" / "results.json").read_text())
    assert results["global_step"] == 3 and results["epochs"] == 1.0  # one epoch from step 0, not resumed at 6
    # the run's folder stands for its last.ckpt, as in the inference commands
    train.main(job(tiny_cifar, runs, "--run_name", "tuned2", "--init_from", str(runs / "first"),
                   "--trainer.callbacks+=runs.StartWeights"))
    start = torch.load(runs / "tuned2" / "start.pt", weights_only=False)
    assert all(torch.equal(start["weights"][k], v) for k, v in trained["state_dict"].items())
    # its config.yaml names --init_from: the native test reads it, the native fit names the job form
    config = str(runs / "tuned" / "config.yaml")
    train.main(["test", "--config", config, "--ckpt_path", str(runs / "tuned" / "checkpoints" / "last.ckpt")])
    with pytest.raises(train.UserError, match="--init_from starts a run in the job form"):
        train.main(["fit", "--config", config])
    # a resume of it refused as its model is built: the run's config, whose --init_from a resume must drop
    from callbacks.errors import user_message
    last = runs / "tuned" / "checkpoints" / "last.ckpt"
    with pytest.raises(ValueError) as refused:
        train.main(job(tiny_cifar, runs, "--ckpt_path", str(last), "--model.top_losses", "-1"))
    assert user_message(refused.value).endswith(f"python train.py --config {config} --ckpt_path {last} --init_from "
                                                f"null")


def test_init_from_names_what_does_not_fit(tiny_cifar, tmp_path, capsys, monkeypatch):
    runs = tmp_path / "runs"
    train.main(job(tiny_cifar, runs, "--run_name", "first"))
    last = str(runs / "first" / "checkpoints" / "last.ckpt")
    for extra, message in (
            (["--ckpt_path", last], "--init_from starts a new run from a checkpoint's weights and --ckpt_path "
                                    "resumes a run; give one of them"),
            (["--model.nf", "8"], "was trained with other settings (net."),
            (["--model.nf", "8"], "--init_from needs the same network: give the --model options of its config")):
        result = run_in_process(job(tiny_cifar, runs, "--init_from", last, *extra), capsys, monkeypatch)
        assert_one_line_error(result, message)
    result = run_in_process(job(tiny_cifar, runs, "--init_from", last, "--model.num_blocks", "[1, 1]"), capsys,
                            monkeypatch)  # a deeper net: weights the checkpoint lacks, no shape to compare
    assert_one_line_error(result, "holds another network (", "weights missing, e.g. ['net.",
                          "--init_from needs the same network")
    state = torch.load(last, weights_only=False)
    key = sorted(state["state_dict"])[-1]
    state["state_dict"].pop(key)  # one weight short, nothing extra
    torch.save(state, runs / "first" / "checkpoints" / "short.ckpt")
    result = run_in_process(job(tiny_cifar, runs, "--init_from", str(runs / "first" / "checkpoints" / "short.ckpt")),
                            capsys, monkeypatch)
    assert_one_line_error(result, f"(1 weights missing, e.g. ['{key}']; 0 not ours, e.g. [])",
                          f"the --model options of its config {runs / 'first' / 'config.yaml'}")


def test_init_from_keeps_the_checkpoints_whitening_stem_on_other_data(tiny_cifar, tmp_path):
    """The stem is frozen and computed from the training images in setup; the later layers were trained on the
    checkpoint's: fine-tuning on other images keeps it."""
    other = tmp_path / "inverted"
    for image in tiny_cifar.rglob("*.png"):
        target = other / image.relative_to(tiny_cifar)
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(255 - np.asarray(Image.open(image))).save(target)
    runs, whiten = tmp_path / "runs", ["--model.whiten", "2", "--model.whiten_images", "8"]
    train.main(job(tiny_cifar, runs, "--run_name", "first", *whiten))
    trained = torch.load(runs / "first" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    train.main(job(other, runs, "--run_name", "tuned", *whiten, "--init_from", str(runs / "first" / "checkpoints" /
                   "last.ckpt"), "--trainer.callbacks+=runs.StartWeights"))
    start = torch.load(runs / "tuned" / "start.pt", weights_only=False)["weights"]
    assert all(torch.equal(start[k], v) for k, v in trained.items())
    fresh = tmp_path / "fresh"  # the control: on these images, setup's own stem differs
    train.main(job(other, fresh, "--run_name", "r", *whiten, "--trainer.callbacks+=runs.StartWeights"))
    stem = next(k for k in trained if k.startswith("net.layers.0"))
    assert not torch.equal(torch.load(fresh / "r" / "start.pt", weights_only=False)["weights"][stem], trained[stem])
