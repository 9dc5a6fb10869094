"""W&B images go on the x-axis of the scalars: the batch count Lightning logs the losses at, not global_step
(which counts optimizer steps: three per CycleGAN batch)."""

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import WandbLogger

pytestmark = pytest.mark.usefixtures("one_thread")


class RecordingWandb(WandbLogger):
    """A WandbLogger that records what it is given instead of starting a W&B run."""

    def __init__(self, save_dir):
        super().__init__(save_dir=str(save_dir), offline=True)
        self.records = []  # (kind, keys, step)

    def log_metrics(self, metrics, step=None):
        kind = "image" if any(type(v).__name__ == "list" for v in metrics.values()) else "scalar"
        self.records.append((kind, sorted(metrics), step))

    def log_hyperparams(self, params, *args, **kwargs):
        pass

    def save(self):
        pass

    def finalize(self, status):
        pass


def steps_of(logger, kind, prefix):
    return [step for k, keys, step in logger.records if k == kind and any(key.startswith(prefix) for key in keys)]


def fit(model, data, tmp_path, max_steps):
    logger = RecordingWandb(tmp_path)
    trainer = L.Trainer(accelerator="cpu", max_steps=max_steps, logger=logger, log_every_n_steps=1,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=str(tmp_path))
    try:
        trainer.fit(model, data)
    finally:
        logger.experiment.finish()  # Lightning starts the (offline) run at setup; the next test makes its own
    return logger


def test_cyclegan_images_share_their_batchs_step(tiny_unpaired, tmp_path):
    from datamodules import UnpairedImageDataModule
    from lightning_modules import CycleGAN

    torch.manual_seed(0)
    model = CycleGAN(n_blocks=1, ngf=4, ndf=4, log_images_every_n_batches=2)
    data = UnpairedImageDataModule(str(tiny_unpaired), batch_size=2, load_size=36, crop_size=32, num_workers=0)
    logger = fit(model, data, tmp_path, max_steps=9)  # 3 batches of 3 optimizer steps
    assert steps_of(logger, "scalar", "train/gen_total") == [0, 1, 2]
    assert steps_of(logger, "image", "train/visuals") == [0, 2]  # batches 1 and 3 (global_step 3 and 9 before)


def test_wgan_samples_share_their_batchs_step(tmp_path):
    from lightning_modules import WGAN

    torch.manual_seed(0)
    model = WGAN(isize=16, ngf=4, ndf=4, n_extra_layers=0, d_iters=2, d_iters_long=2, sample_every=2)
    batches = [torch.rand(4, 3, 16, 16) * 2 - 1 for _ in range(8)]
    logger = fit(model, torch.utils.data.DataLoader(batches, batch_size=None), tmp_path, max_steps=8)
    assert steps_of(logger, "scalar", "train/Loss_D") == list(range(8))
    # a generator iteration every 2 batches, a sample grid every 2 of them: after batches 4 and 8
    assert steps_of(logger, "image", "samples") == [3, 7]


def test_wgan_sample_every_0_samples_at_the_end_only(tmp_path):
    from lightning_modules import WGAN

    torch.manual_seed(0)
    model = WGAN(isize=16, ngf=4, ndf=4, n_extra_layers=0, d_iters=2, d_iters_long=2, sample_every=0)
    batches = [torch.rand(4, 3, 16, 16) * 2 - 1 for _ in range(8)]
    logger = fit(model, torch.utils.data.DataLoader(batches, batch_size=None), tmp_path, max_steps=8)
    assert steps_of(logger, "image", "samples") == [8]  # once, when training ends (it divided by zero)
