"""A TensorBoardLogger in place of W&B (`--trainer.logger TensorBoardLogger`): the images at their batch's step, one
folder per run, and a resume that makes TensorBoard drop what the stopped run logged after its checkpoint. The
event files are read by hand: the TFRecord framing and TensorBoard's rule for a SessionLog START with a step, with
the protocol buffers of the tensorboard package."""

import io
import json
import shutil
import struct

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image
from runs import job

import train

pytestmark = [pytest.mark.usefixtures("one_thread"),
              # the [tensorboard] and [dev] extras' (Lightning's TensorBoardLogger writes with torch's writer when it is
              # installed, tensorboardX's otherwise; the events are read here with its protocol buffers)
              pytest.mark.skipif(not __import__("importlib").util.find_spec("tensorboard"),
                                 reason="needs tensorboard (pip install -e .[dev])")]


def events_of(path):
    """The Events of one event file: each record a length (8 bytes), its CRC (4), the record, its CRC (4)."""
    from tensorboard.compat.proto.event_pb2 import Event
    events, data, at = [], path.read_bytes(), 0
    while at < len(data):
        (length,) = struct.unpack("<Q", data[at:at + 8])
        events.append(Event.FromString(data[at + 12:at + 12 + length]))
        at += 12 + length + 4
    return events


def event_files(folder):
    return sorted(folder.rglob("events.out.tfevents.*"), key=lambda path: (path.stat().st_mtime_ns, path.name))


def tensorboard_events(folder):
    return [event for path in event_files(folder) for event in events_of(path)]


def shown(folder, tag):
    """(step, value) of `tag` as TensorBoard shows it: the files in the order written, and a SessionLog START at
    step N (a writer's purge_step) drops the values at steps >= N written before it."""
    from tensorboard.compat.proto.event_pb2 import SessionLog
    points = []
    for event in tensorboard_events(folder):
        if event.HasField("session_log") and event.session_log.status == SessionLog.START:
            points = [(step, value) for step, value in points if step < event.step]
        points += [(event.step, value.simple_value) for value in event.summary.value if value.tag == tag]
    return points


def test_wgan_samples_go_to_a_tensorboard_logger_at_their_batchs_step(tmp_path):
    from lightning.pytorch.loggers import TensorBoardLogger

    from lightning_modules import WGAN
    torch.manual_seed(0)
    model = WGAN(isize=16, ngf=4, ndf=4, n_extra_layers=0, d_iters=2, d_iters_long=2, sample_every=2)
    batches = [torch.rand(4, 3, 16, 16) * 2 - 1 for _ in range(8)]
    logger = TensorBoardLogger(str(tmp_path / "tb"), name="", version="")
    trainer = L.Trainer(accelerator="cpu", max_steps=8, logger=logger, log_every_n_steps=1, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp_path))
    trainer.fit(model, torch.utils.data.DataLoader(batches, batch_size=None))
    logger.experiment.flush()
    values = [(event.step, value) for event in tensorboard_events(tmp_path / "tb") for value in event.summary.value]
    assert [step for step, value in values if value.tag == "train/Loss_D"] == list(range(8))
    images = [(step, value) for step, value in values if value.HasField("image")]
    # the real images' grid before training, then as for W&B: a sample grid after batches 4 and 8
    assert [(step, value.tag) for step, value in images] == [(0, "real_samples"), (3, "samples"), (7, "samples")]
    for (_, value), name in zip(images, ["real_samples-000000", "samples-000002", "samples-000004"], strict=True):
        image = value.image
        png = np.asarray(Image.open(tmp_path / "images" / f"{name}.png").convert("RGB"))
        shown = np.asarray(Image.open(io.BytesIO(image.encoded_image_string)).convert("RGB"))
        assert (image.height, image.width, image.colorspace) == (*png.shape[:2], 3)
        assert np.array_equal(shown, png)  # the run folder's file, pixel for pixel


def test_a_run_logs_into_its_system_and_run_folder_and_a_resume_hides_what_came_after_its_checkpoint(tiny_cifar,
                                                                                                    tmp_path):
    runs, tb = tmp_path / "runs", tmp_path / "tb"
    args = ["--run_name", "r", "--trainer.logger", "TensorBoardLogger", "--trainer.logger.save_dir", str(tb),
            "--trainer.log_every_n_steps", "1", "--trainer.max_epochs", "1"]
    train.main(job(tiny_cifar, runs, *args, "--trainer.max_steps", "1"))
    last = runs / "r" / "checkpoints" / "last.ckpt"
    shutil.copy(last, tmp_path / "after-batch-1.ckpt")
    train.main(job(tiny_cifar, runs, *args, "--ckpt_path", "last"))  # on to the epoch's end: 3 batches of 8
    assert [step for step, _ in shown(tb, "train/loss")] == [0, 1, 2]
    # a run that died after logging batches 2 and 3 but before saving them: its last.ckpt is after batch 1
    shutil.copy(tmp_path / "after-batch-1.ckpt", last)
    train.main(job(tiny_cifar, runs, *args, "--ckpt_path", "last"))
    assert {path.parent for path in event_files(tb)} == {tb / "darknet" / "r"}  # the run's, across resumes
    # batches 2 and 3 once, as the last resume trained them (Lightning logs batch k at step k - 1)
    assert [step for step, _ in shown(tb, "train/loss")] == [0, 1, 2]
    # the first run's test at step 1, of the weights after batch 1, is hidden with what followed: the resumes'
    assert [step for step, _ in shown(tb, "test/loss")] == [3]


class CrashAtBatch(L.Callback):
    """Raises as the fit's `batch`-th batch (0-based, over the whole fit) starts: a run killed mid-epoch."""

    def __init__(self, batch: int):
        self.batch = batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.fit_loop.total_batch_idx == self.batch:
            raise RuntimeError("simulated crash")


def test_a_resume_from_a_save_at_a_batchs_end_keeps_that_batchs_own_point(tiny_cifar, tmp_path):
    """The timed save (like SaveOnStop under DDP and a ModelCheckpoint of every_n_train_steps) saves in
    on_train_batch_end, before Lightning counts the batch: the purge at the count saved hid the last batch the
    checkpoint holds, which the resume does not train again (a gap in the curve)."""
    runs, tb = tmp_path / "runs", tmp_path / "tb"
    args = ["--run_name", "r", "--trainer.logger", "TensorBoardLogger", "--trainer.logger.save_dir", str(tb),
            "--trainer.log_every_n_steps", "1", "--save_every_minutes", "1e-9"]  # a timed save after each batch
    crash = json.dumps({"class_path": "test_tensorboard.CrashAtBatch", "init_args": {"batch": 2}})
    with pytest.raises(RuntimeError, match="simulated crash"):
        train.main(job(tiny_cifar, runs, *args, f"--trainer.callbacks+={crash}"))
    assert torch.load(runs / "r" / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 2
    assert [step for step, _ in shown(tb, "train/loss")] == [0, 1]  # batches 1 and 2
    train.main(job(tiny_cifar, runs, *args, "--ckpt_path", "last"))  # batch 3, the epoch's last
    # each batch once, batch k at step k - 1: batch 2's point is the stopped run's, batch 3's the resume's
    assert [step for step, _ in shown(tb, "train/loss")] == [0, 1, 2]
