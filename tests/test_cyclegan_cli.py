import json

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import make_unpaired
from PIL import Image
from torchvision.transforms.v2.functional import InterpolationMode, resize

import train
from lightning_modules import CycleGAN, commands
from lightning_modules.cyclegan_translate import translate

# one worker for the session's DDP job with test_gan_fid's DDP test (setup.cfg's --dist loadgroup)
pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.xdist_group("cyclegan_ddp_run")]

TINY = ["--model.ngf", "4", "--model.ndf", "4", "--model.n_blocks", "1", "--model.n_epochs", "1",
        "--model.n_epochs_decay", "1", "--model.log_images_every_n_batches", "2", "--data.load_size", "36",
        "--data.crop_size", "32", "--data.batch_size", "2", "--data.num_workers", "0", "--trainer.max_epochs", "2",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def job(data_dir, runs, *extra):
    return ["--system", "cyclegan", "--data.data_dir", str(data_dir), "--trainer.default_root_dir", str(runs),
            "--trainer.logger", "false", *TINY, *extra]


def only_run(runs):
    (run_dir,) = list(runs.iterdir())
    return run_dir


class SaveWeights(L.Callback):
    """Each process writes its weights at the end, so a DDP test can compare the ranks."""

    def on_train_end(self, trainer, pl_module):
        torch.save(pl_module.state_dict(), f"{trainer.default_root_dir}/weights-rank{trainer.global_rank}.pt")


def test_job_trains_tests_and_writes_visuals_checkpoint_and_results(tiny_unpaired, tmp_path):
    runs = tmp_path / "runs"
    train.main(job(tiny_unpaired, runs))
    run_dir = only_run(runs)
    results = json.loads((run_dir / "results.json").read_text())
    assert results["epochs"] == 2 and results["global_step"] == 2 * 3 * 3  # 6 pairs / batch 2, 3 optimizers
    assert {"test/cycle_l1_a", "test/cycle_l1_b"} == set(results["test"])
    assert sorted(p.name for p in (run_dir / "images").glob("train_*")) == \
        ["train_visuals-000001.png", "train_visuals-000003.png", "train_visuals-000005.png"]
    assert (run_dir / "checkpoints" / "last.ckpt").resolve() == (run_dir / "checkpoints" / "epoch=001.ckpt")


def test_a_dataset_without_test_folders_trains_warns_at_once_and_skips_the_test(tiny_unpaired, tmp_path):
    import shutil
    for side in "AB":
        shutil.rmtree(tiny_unpaired / f"test{side}")
    runs = tmp_path / "runs"
    with pytest.warns(UserWarning, match=r"testA is missing.*Training goes on; the test after it is skipped"):
        train.main(job(tiny_unpaired, runs, "--trainer.max_epochs", "1"))
    results = json.loads((only_run(runs) / "results.json").read_text())
    assert results["test"] == {} and results["epochs"] == 1 and "train/gen_total" in results["final_metrics"]
    features = tmp_path / "features.ckpt"
    features.write_bytes(b"")  # its validation needs the test folders: refused before training, whatever the file
    with pytest.raises(train.UserError, match="--model.fid_features validates on testA and testB, which the data"):
        train.main(job(tiny_unpaired, tmp_path / "runs2", "--model.fid_features", str(features)))


def test_crashed_run_resumes_with_ckpt_path_last_in_its_folder(tiny_unpaired, tmp_path):
    runs = tmp_path / "runs"
    with pytest.raises(RuntimeError, match="simulated crash"):
        train.main(job(tiny_unpaired, runs, "--trainer.callbacks+=conftest.CrashAtEpoch"))
    train.main(job(tiny_unpaired, runs, "--ckpt_path", "last"))
    run_dir = only_run(runs)
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert state["epoch"] == 1 and state["global_step"] == 18 and state["batches_trained"] == 6
    assert [s["last_epoch"] for s in state["lr_schedulers"]] == [2, 2, 2]  # stepped after epochs 0 and 1
    assert len(state["image_pools"]["a"]["images"]) == 12  # both epochs' fakes: the pool came back


def test_ddp_with_two_cpu_processes_keeps_the_ranks_in_step(cyclegan_ddp_run):
    root, run_dir, _ = cyclegan_ddp_run  # the job, shared with test_gan_fid's DDP test (conftest)
    results = json.loads((run_dir / "results.json").read_text())
    assert results["world_size"] == 2 and results["global_step"] == 2 * 3  # 3 pairs per rank: 2 batches
    rank0, rank1 = (torch.load(run_dir / f"weights-rank{r}.pt") for r in (0, 1))
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)  # gradients were averaged across ranks
    # the test: 5 testA images (3 + 2 per rank) and 7 testB (4 + 3), each counted once, against a hand mean
    model = CycleGAN(n_blocks=1, ngf=4, ndf=4)
    model.load_state_dict(rank0)
    for side, there, back in (("a", model.gen_a2b, model.gen_b2a), ("b", model.gen_b2a, model.gen_a2b)):
        errors = []
        for file in sorted((root / f"test{side.upper()}").iterdir()):
            image = torch.from_numpy(np.array(Image.open(file).convert("RGB"))).permute(2, 0, 1)
            x = resize(image, [32, 32], InterpolationMode.BICUBIC, antialias=True)[None].float() / 127.5 - 1
            with torch.no_grad():
                errors.append((back(there(x)) - x).abs().mean().item())
        assert results["test"][f"test/cycle_l1_{side}"] == pytest.approx(sum(errors) / len(errors), rel=1e-5)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A checkpoint written by train.py, so it names its class as LightningCLI does."""
    root = tmp_path_factory.mktemp("ckpt")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module scope: set up before the one_thread fixture applies
    train.main(job(make_unpaired(root / "data"), root / "runs", "--trainer.max_epochs", "1"))
    torch.set_num_threads(threads)
    return only_run(root / "runs") / "checkpoints" / "last.ckpt"


def photos(folder):
    folder.mkdir()
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (33, 45, 3), dtype=np.uint8)).save(folder / "odd.png")
    Image.fromarray(rng.integers(0, 256, (32, 40), dtype=np.uint8)).save(folder / "gray.png")
    return folder


def test_translate_gives_the_generator_output_at_full_resolution(tiny_checkpoint, tmp_path):
    translate(str(tiny_checkpoint), str(photos(tmp_path / "in")), str(tmp_path / "out"), direction="a2b")
    model = CycleGAN.load_from_checkpoint(tiny_checkpoint).eval()
    x = torch.from_numpy(np.array(Image.open(tmp_path / "in" / "odd.png"))).permute(2, 0, 1)[None] / 127.5 - 1
    with torch.no_grad():  # 33x45 reflect-padded to 36x48 by hand, translated, cut back
        expected = model.gen_a2b(F.pad(x, (0, 3, 0, 3), mode="reflect"))[0, :, :33, :45]
    out = torch.from_numpy(np.array(Image.open(tmp_path / "out" / "odd.png"))).permute(2, 0, 1) / 255
    assert out.shape == (3, 33, 45) and (out - (expected + 1) / 2).abs().max() <= 1 / 255 + 1e-6
    assert Image.open(tmp_path / "out" / "gray.png").size == (40, 32)


@pytest.mark.parametrize(("given", "direction"), [("b2a", "b2a"), ("BtoA", "b2a"), ("AtoB", "a2b")])
def test_translate_command_writes_an_index_of_inputs_beside_outputs(given, direction, tiny_checkpoint, tmp_path):
    """junyanz's spelling of --direction (AtoB, BtoA) is taken as ours."""
    # `python -m lightning_modules.cyclegan translate ...` in this process: the function its __main__ calls (a fresh
    # interpreter cost ~5 s; test_console_scripts' python -m test runs that __main__ in a process of its own)
    assert commands.cyclegan(["translate", "--checkpoint", str(tiny_checkpoint), "--input_dir",
                              str(photos(tmp_path / "in")), "--output_dir", str(tmp_path / "out"), "--direction",
                              given]) is None  # exit status 0
    index = (tmp_path / "out" / "index.html").read_text()
    assert "<img src='inputs/odd.png'></td><td><img src='odd.png'>" in index and f": {direction}</h3>" in index
    assert Image.open(tmp_path / "out" / "inputs" / "gray.png").size == (40, 32)


def test_translate_without_images_says_what_to_pass(tiny_checkpoint, tmp_path):
    with pytest.raises(FileNotFoundError, match="no .* images under .*pass a folder of images, or one image, as "
                                                "--input_dir"):
        translate(str(tiny_checkpoint), str(tmp_path), str(tmp_path / "out"))
    with pytest.raises(FileNotFoundError, match=f"--input_dir {tmp_path / 'nope'} not found; pass a folder"):
        translate(str(tiny_checkpoint), str(tmp_path / "nope"), str(tmp_path / "out"))
