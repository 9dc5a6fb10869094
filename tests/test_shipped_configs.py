"""Each system's command with its SHIPPED config and W&B logger (offline), past its first image log.

Only what speed and the data location need is overridden, so a crash in the shipped logging path (the style
config's caption=None TypeError in WandbLogger.log_image) cannot pass again. One process per system, as a user
runs it.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT, wandb_records

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.xdist_group("test_shipped_configs")]


def start_system(system, args, tmp_path, extra_env=None, wandb_mode="offline") -> subprocess.Popen:
    env = {**os.environ, "HOME": str(tmp_path), "OMP_NUM_THREADS": "1", "WANDB_MODE": wandb_mode,
           "PYTHONPATH": str(ROOT), **(extra_env or {})}
    for name in ("DL2_TRACEBACK", "WANDB_SILENT", *([] if wandb_mode else ["WANDB_MODE"])):
        env.pop(name, None)
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), "--system", system, "--trainer.default_root_dir",
                             str(tmp_path / "runs"), "--trainer.enable_progress_bar", "false", *args], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finished(process: subprocess.Popen, tmp_path, *_):
    """The run folder and the output of a started system, which must have succeeded (waited for once)."""
    if not hasattr(process, "output"):
        process.output = process.communicate(timeout=300)
    out, err = process.output
    assert process.returncode == 0, err[-4000:]
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    return run_dir, subprocess.CompletedProcess(process.args, process.returncode, out, err)


def run_system(system, args, tmp_path, extra_env=None):
    return finished(start_system(system, args, tmp_path, extra_env), tmp_path)


@pytest.fixture(scope="module")
def shipped_runs(tmp_path_factory):
    """The four systems' shipped configs started at once (each process imports torch and Lightning, ~10 s of one
    core): each test below waits for its own and checks it."""
    from conftest import make_folders, make_style_images, make_unpaired
    base = tmp_path_factory.mktemp("shipped")
    cifar, unpaired = make_folders(base / "cifar10"), make_unpaired(base / "unpaired")
    content, style = make_style_images(base / "style_images")
    args = {
        "darknet": ["--data.data_dir", str(cifar), "--model.nf", "4", "--model.num_blocks", "[1]",
                    "--model.num_classes", "3", "--data.batch_size", "8", "--trainer.max_steps", "2",
                    "--trainer.log_every_n_steps", "1", "--trainer.accumulate_grad_batches", "1"],
        "wgan": ["--data.data_dir", str(cifar / "train"), "--data.batch_size", "4", "--data.num_workers", "0",
                 "--model.ngf", "8", "--model.ndf", "8", "--model.d_iters", "1", "--model.d_iters_long", "1",
                 "--model.sample_every", "1", "--trainer.max_steps", "4"],
        "cyclegan": ["--data.data_dir", str(unpaired), "--data.load_size", "36", "--data.crop_size", "32",
                     "--data.num_workers", "0", "--model.n_blocks", "1", "--model.ngf", "4", "--model.ndf", "4",
                     "--model.log_images_every_n_batches", "1", "--trainer.max_steps", "2"],
        "style": ["--model.vgg_weights", "random", "--model.arch", "vgg16", "--data.content",
                  json.dumps([str(content[0])]), "--data.style", str(style), "--data.size", "32",
                  "--model.show_iter", "1", "--trainer.max_steps", "2"],
    }
    folders = {system: base / system for system in args}
    started = {}
    for system, folder in folders.items():
        folder.mkdir()
        started[system] = start_system(system, args[system], folder)
    yield {system: (process, folders[system], args[system]) for system, process in started.items()}
    for process in started.values():
        if process.poll() is None:
            process.kill()


def wandb_images(run_dir):
    """The images in the offline W&B run, as `key_step_hash.png` relative to its media folder (`a/b` keys nest)."""
    media = list(run_dir.glob("wandb/offline-run-*/files/media/images"))
    return sorted(str(p.relative_to(m)) for m in media for p in m.rglob("*.png"))


def test_darknet_shipped_config(shipped_runs):
    run_dir, result = finished(*shipped_runs["darknet"])
    assert (run_dir / "lr_schedule.png").is_file() and any(n.startswith("lr_schedule") for n in wandb_images(run_dir))
    # quiet: nothing the user did not cause
    printed = result.stdout + result.stderr
    for noise in ("LightningCLI's args", "sys.argv", "wandb:", "💡", "LeafSpec", "anonymous setting",
                  "git root", "Loading `train_dataloader`"):
        assert noise not in printed, noise
    assert json.loads((run_dir / "results.json").read_text())["epochs"] == round(2 / 3, 4)


def test_the_checkpoint_monitors_chart_has_the_x_axis_of_the_others(shipped_runs):
    """val/acc, defined by name for its best on the summary, kept the x-axis of Lightning's "*" glob: a metric defined
    by name does not take a glob's, so the dashboard drew it against wandb's _step, val/loss against the batches."""
    run_dir, _ = finished(*shipped_runs["darknet"])
    (log,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    metrics = [r.metric for r in wandb_records(log) if r.WhichOneof("record_type") == "metric"]
    (glob,) = [m for m in metrics if m.glob_name == "*"]
    assert glob.step_metric == "trainer/global_step"  # Lightning's x-axis for every logged key
    (monitor,) = [m for m in metrics if m.name == "val/acc"]
    assert monitor.step_metric == "trainer/global_step" and monitor.summary.max and monitor.summary.last


def test_wgan_shipped_config(shipped_runs):
    run_dir, _ = finished(*shipped_runs["wgan"])
    assert list((run_dir / "images").glob("samples-*.png"))
    assert any(n.startswith("samples") for n in wandb_images(run_dir))


def test_cyclegan_shipped_config(shipped_runs):
    run_dir, _ = finished(*shipped_runs["cyclegan"])
    assert list((run_dir / "images").glob("train_visuals-*.png"))
    assert any(n.startswith("train/visuals") for n in wandb_images(run_dir))  # with its caption


def test_style_shipped_config(shipped_runs):
    run_dir, _ = finished(*shipped_runs["style"])
    assert list((run_dir / "images").glob("style_image-*.png"))
    assert any(n.startswith("style") for n in wandb_images(run_dir))  # the caption=None crash happened here


def test_one_wandb_run_across_a_resume_without_credentials_with_the_whole_config(shipped_runs, tmp_path):
    """The shipped Darknet run (its own module's copy, so its test reads it as it ended) resumed as a user without W&B
    credentials runs it: train.py logs offline to the same run, and says how to upload."""
    process, folder, args = shipped_runs["darknet"]
    finished(process, folder)
    shutil.copytree(folder / "runs", tmp_path / "runs", symlinks=True)
    resume = start_system("darknet", [*args, "--ckpt_path", "last", "--trainer.max_steps", "4"], tmp_path,
                          {"WANDB_API_KEY": ""}, wandb_mode=None)
    run_dir, result = finished(resume, tmp_path)
    assert f"wandb sync {run_dir}/wandb/offline-run-*" in result.stdout  # not logged in: offline, said once
    run_id = json.loads((run_dir / "run.json").read_text())["wandb_id"]
    offline = sorted(p.name for p in (run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 2 and all(name.endswith(f"-{run_id}") for name in offline)  # two pieces, one run
    log = next((run_dir / "wandb").glob(f"{offline[-1]}/run-{run_id}.wandb")).read_bytes()
    for key in (b"git_commit", b"precision", b"accumulate_grad_batches", b"seed_everything", b"TrainingPhaseScheduler",
                b"one_cycle", b"strategy", b"devices"):
        assert key in log, key
    assert b"_instantiator" not in log  # LightningCLI's bookkeeping, not a hyper-parameter
    assert json.loads((run_dir / "results.json").read_text())["global_step"] == 4


@pytest.mark.slow  # 18 s; image logging to W&B is checked in CI by each shipped-config test
def test_lr_find_plot_goes_to_wandb_too(tiny_cifar, tmp_path):
    run_dir, _ = run_system("darknet", [
        "--data.data_dir", str(tiny_cifar), "--model.nf", "4", "--model.num_blocks", "[1]", "--model.num_classes", "3",
        "--data.batch_size", "8", "--trainer.max_epochs", "10", "--lr_find", "--lr_find.num_training", "10"], tmp_path)
    assert (run_dir / "lr_find.png").is_file() and any(n.startswith("lr_find") for n in wandb_images(run_dir))
    suggestion = json.loads((run_dir / "lr_find.json").read_text())["suggestion"]
    log = b"".join(p.read_bytes() for p in run_dir.glob("wandb/offline-run-*/run-*.wandb"))
    caption = "no suggestion" if suggestion is None else f"suggested lr {suggestion:.3g}"
    assert b"lr_find/suggestion" in log and caption.encode() in log  # on the summary, and the plot's caption
    assert json.loads((run_dir / "run.json").read_text())["kind"] == "lr_find"  # never picked by --ckpt_path last
