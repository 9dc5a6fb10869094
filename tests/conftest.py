import contextlib
import http.server
import os
import pickle
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("DL2_SHARED_DATA", ROOT.parent / "shared" / "data"))
CLASSES = ["cat", "dog", "frog"]
sys.path.insert(0, str(ROOT))  # train.py is a script at the root, not a package


def random_images(n: int, seed: int) -> np.ndarray:
    """(n, 32, 32, 3) uint8 images whose mean colour depends on their class, so they can be learned."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)


def make_folders(root: Path, per_class=(8, 4), suffix=".png", classes=CLASSES) -> Path:
    """The fast.ai layout, train/<class>/*.png and test/<class>/*.png, with small random images."""
    for split, count in zip(("train", "test"), per_class, strict=True):
        for label, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i, image in enumerate(random_images(count, seed=hash((split, label)) % 1000)):
                Image.fromarray(image).save(folder / f"{i:04d}{suffix}")
    return root


def make_batches(folder: Path, per_batch: int = 6, classes=CLASSES) -> Path:
    """The official python layout: data_batch_1..5, test_batch, batches.meta."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = [int(x) for x in rng.integers(0, len(classes), per_batch)]
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": labels}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [c.encode() for c in classes]}, f)
    return folder


def reply(handler: http.server.BaseHTTPRequestHandler, body: bytes, status: int = 200,
          length: int | None = None) -> None:
    """Answer a GET with body; `length` announces another Content-Length (a cut transfer)."""
    handler.send_response(status)
    handler.send_header("Content-Length", str(len(body) if length is None else length))
    handler.end_headers()
    handler.wfile.write(body)


@contextlib.contextmanager
def http_server(do_get):
    """A quiet threaded HTTP server on 127.0.0.1 whose GETs go to do_get(handler); yields its base URL.
    The download tests serve archives they made, as the machines have no internet."""
    handler = type("Handler", (http.server.BaseHTTPRequestHandler,),
                   {"do_GET": do_get, "log_message": lambda self, *args: None})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def wandb_records(path, wait: float = 60.0) -> list:
    """The records of a finished run's `.wandb` file (wandb's transaction log: a 7-byte header, then 32 KiB blocks of
    chunks, each with a 7-byte header of CRC, length and type: full, first, middle, last), as wandb.proto Records.
    wandb-core may still be writing the file's tail when wandb.finish returns (a summary missing once, under load):
    read again until its last record, the run's exit, is there."""
    import time
    deadline = time.monotonic() + wait
    while not (records := list(_wandb_file_records(path))) or records[-1].WhichOneof("record_type") != "exit":
        assert time.monotonic() < deadline, f"{path} has no exit record after {wait} s: {len(records)} records"
        time.sleep(0.2)
    return records


def _wandb_file_records(path):
    import struct

    from wandb.proto import wandb_internal_pb2
    data, pos, pieces, block = path.read_bytes(), 7, b"", 32768
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if pos + 7 + length > len(data):  # a chunk still being written
            return
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 0:  # zero padding to the block's end
            pos += -pos % block
            continue
        pieces = chunk if kind in (1, 2) else pieces + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pieces)
            yield record


@pytest.fixture
def tiny_cifar(tmp_path) -> Path:
    return make_folders(tmp_path / "cifar10")


def unpack_shared(tmp_path_factory, archive_name: str, folder: str) -> Path:
    """A real data set from ../shared/data, unpacked into a temporary folder; skips the test when absent."""
    archive = SHARED_DATA / archive_name
    if not archive.exists():
        pytest.skip(f"real data not found at {archive}")
    import tarfile
    target = tmp_path_factory.mktemp("real")
    from datamodules.download import extract_tar  # the 'data' filter, or its checks on older Pythons
    with tarfile.open(archive) as tar:
        extract_tar(tar, target)
    return target / folder


@pytest.fixture(scope="session")
def shared_cifar10(tmp_path_factory) -> Path:
    return unpack_shared(tmp_path_factory, "cifar10-jpeg.tar.gz", "cifar10")


class CrashAtEpoch(__import__("lightning").Callback):
    """Raises at the start of `epoch`, as a killed job would stop, after the previous epoch's checkpoint."""

    def __init__(self, epoch: int = 1):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise RuntimeError("simulated crash")


def make_unpaired(root: Path, counts=(3, 5, 2, 3), size=(40, 36), gray_in="trainB") -> Path:
    """CycleGAN's layout, trainA/trainB/testA/testB of random RGB PNGs, plus one grayscale JPEG in `gray_in`."""
    rng = np.random.default_rng(0)
    for folder, count in zip(("trainA", "trainB", "testA", "testB"), counts, strict=True):
        (root / folder).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(root / folder / f"{i:03d}.png")
    if gray_in:
        Image.fromarray(rng.integers(0, 256, size, dtype=np.uint8)).save(root / gray_in / "gray.jpg")
    return root


@pytest.fixture
def tiny_unpaired(tmp_path) -> Path:
    return make_unpaired(tmp_path / "unpaired")


@pytest.fixture
def shared_horse2zebra(tmp_path_factory) -> Path:
    return unpack_shared(tmp_path_factory, "horse2zebra.tar", "horse2zebra")


def make_style_images(folder: Path) -> tuple[list[Path], Path]:
    """Two 32x32 content PNGs (random colour blocks) and a 40x48 striped style PNG, for the style-transfer tests."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    content = []
    for i in range(2):
        blocks = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
        content.append(folder / f"content{i}.png")
        Image.fromarray(blocks).save(content[-1])
    stripes = np.zeros((40, 48, 3), dtype=np.uint8)
    stripes[:, ::4] = (255, 200, 0)
    stripes[::6, :] = (0, 60, 255)
    Image.fromarray(stripes).save(folder / "style.png")
    return content, folder / "style.png"


@pytest.fixture
def style_images(tmp_path) -> tuple[list[Path], Path]:
    return make_style_images(tmp_path / "style_images")


@pytest.fixture(autouse=True)
def same_environment():
    """Each test starts from the same os.environ: train.py (DL2_RUN_NAME) and Lightning's DDP launcher
    (MASTER_PORT, LOCAL_RANK, ...) write to it in-process, and a leaked MASTER_PORT made later DDP tests
    fail with EADDRINUSE, a leaked run name made later jobs share a folder."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def one_thread():
    """One torch thread for the test, restored after it. Tiny nets gain nothing from intra-op threads, and
    on a shared 2-core CPU OpenMP's spinning made them 20x slower (a tiny CycleGAN generator step: 0.06 s
    CPU with 1 thread, 1-5 s with 2, measured 2026-11-27 with the machine's load average at 11)."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def no_ranks(monkeypatch):
    """The environment of a job started by hand: no rank, no SLURM job, no earlier run's hand-over. prepare_run called
    by hand notes its new folders and W&B ids for the clean-up of a refused train.main (which clears them when it
    ends): kept to the test, or a later train.main stopped before its training removed this test's folders too and
    named them in its "Stopped before the training began: removed ..." line."""
    from callbacks import run_lifecycle
    for name in ("LOCAL_RANK", "RANK", "NODE_RANK", "SLURM_PROCID", "SLURM_JOB_ID", "SLURM_STEP_ID",
                 "SLURM_RESTART_COUNT", "DL2_RUN_NAME", "DL2_CKPT_PATH"):
        monkeypatch.delenv(name, raising=False)
    for name in ("_fresh_runs", "_fresh_wandb", "_resumed_wandb"):
        monkeypatch.setattr(run_lifecycle, name, {})
    yield
    run_lifecycle.release_run_locks()  # prepare_run called by hand holds its run's lock, as a training process would


@pytest.fixture
def handlers():
    """SIGINT, SIGTERM and SIGUSR1's handlers put back after the test, whatever it installed."""
    from callbacks import saving
    kept = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}
    yield
    for signum, handler in kept.items():
        signal.signal(signum, handler)
    saving.SIGNAL_LOG.removeFilter(saving.not_a_forwarded_sigterm)


def cycle_l1_by_hand(model, root: Path) -> dict[str, float]:
    """The CycleGAN's test metric written out: mean |F(G(x)) - x| of each test image alone, then the mean over
    each domain's images ({"a": ..., "b": ...}), images read as the data module reads them (scaled to [-1, 1])."""
    import torch

    expected = {}
    with torch.no_grad():
        for side, there, back in (("a", model.gen_a2b, model.gen_b2a), ("b", model.gen_b2a, model.gen_a2b)):
            errors = []
            for file in sorted((root / f"test{side.upper()}").iterdir()):
                x = torch.from_numpy(np.array(Image.open(file))).permute(2, 0, 1)[None].float() / 127.5 - 1
                errors.append((back(there(x)) - x).abs().mean().item())
            expected[side] = sum(errors) / len(errors)
    return expected


def lbfgs_steps(optimizer_class, x, loss_fn, n: int, **kwargs):
    """`n` steps of `optimizer_class` (BatchLBFGS or torch.optim.LBFGS) on a copy of `x`, the closure summing
    `loss_fn`'s per-row losses: (the result, the optimizer's state)."""
    x = x.clone().requires_grad_()
    optimizer = optimizer_class([x], **kwargs)

    def closure():
        optimizer.zero_grad()
        loss = loss_fn(x).sum()
        loss.backward()
        return loss

    for _ in range(n):
        optimizer.step(closure)
    return x.detach(), optimizer.state[x]


BASETEMP: list[Path] = []  # pytest's own temporary folder of this session, which pytest prunes (not /tmp)


@pytest.fixture(scope="session", autouse=True)
def session_basetemp(tmp_path_factory):
    BASETEMP.append(tmp_path_factory.getbasetemp())
    yield
    BASETEMP.clear()


def run_in_process(args, capsys, monkeypatch) -> subprocess.CompletedProcess:
    """train.py's command line in this process, with sys.argv as a user's, its exit status and printed output as a
    subprocess would report them: for the one-line-error tests, without a fresh interpreter's ~8 s of imports
    (the tests that need a real process, its exit or signals, still start one)."""
    import tempfile

    import train
    monkeypatch.setattr(sys, "argv", ["train.py", *args])
    monkeypatch.delenv("DL2_TRACEBACK", raising=False)
    # the W&B isolation the subprocess had: no credentials, an empty home, the mode train.py picks itself
    home = tempfile.mkdtemp(prefix="dl2-home-", dir=BASETEMP[0])
    monkeypatch.setenv("HOME", home)
    monkeypatch.chdir(home)  # the subprocess's working folder: a run without --trainer.default_root_dir lands there
    monkeypatch.setenv("WANDB_API_KEY", "")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    capsys.readouterr()
    try:
        train.command_line()
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(["train.py", *args], code, out, err)


def tiny_darknet_checkpoint(root: Path, **options) -> tuple[Path, Path]:
    """root/darknet.ckpt, a tiny Darknet trained 2 steps on generated CIFAR-style folders (classes cat, dog, frog,
    kept in its checkpoint), and those folders."""
    import lightning as L
    import torch

    from datamodules import CIFAR10DataModule
    from lightning_modules import DarknetClassifier
    data_dir = make_folders(root / "cifar", per_class=(4, 2))
    torch.manual_seed(0)
    model = DarknetClassifier(num_blocks=[1], nf=4, num_classes=3, one_cycle=None, **options)
    trainer = L.Trainer(accelerator="cpu", max_steps=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        default_root_dir=root)
    trainer.fit(model, datamodule=CIFAR10DataModule(str(data_dir), batch_size=4, download=False))
    trainer.save_checkpoint(root / "darknet.ckpt")
    return root / "darknet.ckpt", data_dir


@pytest.fixture(scope="module")
def darknet_checkpoint(tmp_path_factory):
    """A tiny Darknet trained 2 steps on generated CIFAR-style folders (classes cat, dog, frog), its checkpoint."""
    return tiny_darknet_checkpoint(tmp_path_factory.mktemp("classify"), compile=True,
                                   compile_options={"backend": "eager"})  # classify must not compile


def tiny_wgan_checkpoint(folder: Path, **options) -> Path:
    """folder/wgan.ckpt: a 16px WGAN after one step on random images, its generator's weights widened so that its
    images depend on the noise (DCGAN's N(0, 0.02) init hardly does)."""
    import lightning as L
    import torch
    from torch.utils.data import DataLoader

    from lightning_modules import WGAN
    torch.manual_seed(0)
    model = WGAN(**{"isize": 16, "nz": 8, "ngf": 4, "ndf": 4, "sample_every": 1000, **options})
    trainer = L.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=folder)
    trainer.fit(model, DataLoader(torch.rand(2, 3, 16, 16) * 2 - 1, batch_size=2))
    with torch.no_grad():
        for layer in model.generator.modules():
            if isinstance(layer, torch.nn.ConvTranspose2d):
                layer.weight.normal_(0, 0.5)
    trainer.save_checkpoint(folder / "wgan.ckpt")
    return folder / "wgan.ckpt"


def seeded_rows(n: int, nz: int, seed: int):
    """(n, nz, 1, 1) N(0, 1) noise as the WGAN's sample draws it: a generator seeded with `seed`, one row at a time."""
    import torch
    generator = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randn(nz, 1, 1, generator=generator) for _ in range(n)])


@pytest.fixture(scope="session")
def cyclegan_ddp_run(tmp_path_factory):
    """One CycleGAN job of train.py under DDP, two CPU processes (~14 s: every process imports torch and Lightning),
    shared by the tests that check it: test_cyclegan_cli's (the ranks in step, the test's means) and test_gan_fid's
    (val/fid over both ranks' images). 3 + 5 training images, odd test sets (5 testA, 7 testB): uneven shares per
    rank; a FID feature net (a Darknet checkpoint) so it validates. Returns the data folder, the run folder and the
    Darknet checkpoint."""
    import json

    import lightning as L
    import torch

    from lightning_modules import DarknetClassifier
    base = tmp_path_factory.mktemp("cyclegan_ddp")
    root = make_unpaired(base / "unpaired", counts=(3, 5, 5, 7))
    torch.manual_seed(0)
    darknet = DarknetClassifier(num_blocks=[1, 1], nf=4, num_classes=3)
    trainer = L.Trainer(accelerator="cpu", logger=False)
    trainer.strategy.connect(darknet)
    trainer.save_checkpoint(base / "darknet.ckpt")
    runs = base / "runs"
    env = {**os.environ, "HOME": str(base), "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)]),
           "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    env.pop("DL2_TRACEBACK", None)
    args = ["--system", "cyclegan", "--data.data_dir", str(root), "--trainer.default_root_dir", str(runs),
            "--trainer.logger", "false", "--model.ngf", "4", "--model.ndf", "4", "--model.n_blocks", "1",
            "--model.n_epochs", "1", "--model.n_epochs_decay", "1", "--model.log_images_every_n_batches", "2",
            "--model.fid_features", str(base / "darknet.ckpt"), "--data.load_size", "36", "--data.crop_size", "32",
            "--data.batch_size", "2", "--data.num_workers", "0", "--trainer.max_epochs", "1",
            "--trainer.check_val_every_n_epoch", "1", "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false", "--trainer.accelerator", "cpu", "--trainer.devices", "2",
            "--trainer.strategy", "ddp_find_unused_parameters_true",
            "--trainer.callbacks+=test_cyclegan_cli.SaveWeights", "--trainer.callbacks+=test_gan_fid.SaveAtValidation"]
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=base, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = runs.iterdir()
    assert json.loads((run_dir / "results.json").read_text())["world_size"] == 2
    return root, run_dir, str(base / "darknet.ckpt")
