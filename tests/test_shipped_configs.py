"""Each system's command with its SHIPPED config and W&B logger (offline), past its first image log.

Only what speed and the data location need is overridden, so a crash in the shipped logging path (the style
config's caption=None TypeError in WandbLogger.log_image) cannot pass again. One process per system, as a user
runs it.
"""

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT

pytestmark = pytest.mark.usefixtures("one_thread")


def run_system(system, args, tmp_path, extra_env=None):
    env = {**os.environ, "HOME": str(tmp_path), "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline",
           "PYTHONPATH": str(ROOT), **(extra_env or {})}
    for name in ("DL2_TRACEBACK", "WANDB_SILENT"):
        env.pop(name, None)
    runs = tmp_path / "runs"
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), "--system", system, "--trainer.default_root_dir",
                             str(runs), "--trainer.enable_progress_bar", "false", *args], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    (run_dir,) = [p for p in runs.iterdir() if p.is_dir()]
    return run_dir, result


def wandb_images(run_dir):
    """The images in the offline W&B run, as `key_step_hash.png` relative to its media folder (`a/b` keys nest)."""
    media = list(run_dir.glob("wandb/offline-run-*/files/media/images"))
    return sorted(str(p.relative_to(m)) for m in media for p in m.rglob("*.png"))


def test_darknet_shipped_config(tiny_cifar, tmp_path):
    run_dir, result = run_system("darknet", [
        "--data.data_dir", str(tiny_cifar), "--model.nf", "4", "--model.num_blocks", "[1]", "--model.num_classes", "3",
        "--data.batch_size", "8", "--trainer.max_steps", "2", "--trainer.log_every_n_steps", "1"], tmp_path)
    assert (run_dir / "lr_schedule.png").is_file() and any(n.startswith("lr_schedule") for n in wandb_images(run_dir))
    # quiet: nothing the user did not cause
    printed = result.stdout + result.stderr
    for noise in ("LightningCLI's args", "sys.argv", "wandb:", "💡", "LeafSpec", "anonymous setting",
                  "git root", "Loading `train_dataloader`"):
        assert noise not in printed, noise
    assert json.loads((run_dir / "results.json").read_text())["epochs"] == round(2 / 3, 4)


def test_wgan_shipped_config(tiny_cifar, tmp_path):
    run_dir, _ = run_system("wgan", [
        "--data.data_dir", str(tiny_cifar / "train"), "--data.batch_size", "4", "--data.num_workers", "0",
        "--model.ngf", "8", "--model.ndf", "8", "--model.d_iters", "1", "--model.d_iters_long", "1",
        "--model.sample_every", "1", "--trainer.max_steps", "4"], tmp_path)
    assert list((run_dir / "images").glob("samples-*.png"))
    assert any(n.startswith("samples") for n in wandb_images(run_dir))


def test_cyclegan_shipped_config(tiny_unpaired, tmp_path):
    run_dir, _ = run_system("cyclegan", [
        "--data.data_dir", str(tiny_unpaired), "--data.load_size", "36", "--data.crop_size", "32",
        "--data.num_workers", "0", "--model.n_blocks", "1", "--model.ngf", "4", "--model.ndf", "4",
        "--model.log_images_every_n_batches", "1", "--trainer.max_steps", "2"], tmp_path)
    assert list((run_dir / "images").glob("train_visuals-*.png"))
    assert any(n.startswith("train/visuals") for n in wandb_images(run_dir))  # with its caption


def test_style_shipped_config(style_images, tmp_path):
    content, style = style_images
    run_dir, _ = run_system("style", [
        "--model.vgg_weights", "random", "--model.arch", "vgg16", "--data.content", json.dumps([str(content[0])]),
        "--data.style", str(style), "--data.size", "32", "--model.show_iter", "1", "--trainer.max_steps", "2"],
        tmp_path)
    assert list((run_dir / "images").glob("style_image-*.png"))
    assert any(n.startswith("style") for n in wandb_images(run_dir))  # the caption=None crash happened here


def test_one_wandb_run_across_a_resume_with_the_whole_config(tiny_cifar, tmp_path):
    args = ["--data.data_dir", str(tiny_cifar), "--model.nf", "4", "--model.num_blocks", "[1]", "--model.num_classes",
            "3", "--data.batch_size", "8", "--trainer.max_epochs", "1", "--trainer.accumulate_grad_batches", "1"]
    run_dir, _ = run_system("darknet", args, tmp_path)
    run_system("darknet", [*args, "--ckpt_path", "last", "--trainer.max_epochs", "2"], tmp_path)
    run_id = json.loads((run_dir / "run.json").read_text())["wandb_id"]
    offline = sorted(p.name for p in (run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 2 and all(name.endswith(f"-{run_id}") for name in offline)  # two pieces, one run
    log = next((run_dir / "wandb").glob(f"{offline[-1]}/run-{run_id}.wandb")).read_bytes()
    for key in (b"git_commit", b"precision", b"accumulate_grad_batches", b"seed_everything", b"TrainingPhaseScheduler",
                b"one_cycle", b"strategy", b"devices"):
        assert key in log, key


@pytest.mark.slow  # 18 s; image logging to W&B is checked in CI by each shipped-config test
def test_lr_find_plot_goes_to_wandb_too(tiny_cifar, tmp_path):
    run_dir, _ = run_system("darknet", [
        "--data.data_dir", str(tiny_cifar), "--model.nf", "4", "--model.num_blocks", "[1]", "--model.num_classes", "3",
        "--data.batch_size", "8", "--trainer.max_epochs", "10", "--lr_find", "--lr_find.num_training", "10"], tmp_path)
    assert (run_dir / "lr_find.png").is_file() and any(n.startswith("lr_find") for n in wandb_images(run_dir))
    assert json.loads((run_dir / "run.json").read_text())["kind"] == "lr_find"  # never picked by --ckpt_path last
