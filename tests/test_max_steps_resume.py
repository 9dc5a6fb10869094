"""callbacks.MaxStepsResume with a plain lightning.Trainer (no train.py): a run that max_steps stopped inside an epoch,
resumed from the checkpoint saved when it ended, trains the batches an uninterrupted run would have, in the same
epochs."""

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from callbacks import MaxStepsResume

pytestmark = pytest.mark.usefixtures("one_thread")


class Seen(L.LightningModule):
    """Records (epoch, batch index) of each training step."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen = []

    def training_step(self, batch, batch_idx):
        self.seen.append((self.current_epoch, batch_idx))
        return (self.weight * batch[0]).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(max_steps, callbacks=(), ckpt_path=None, save=None):
    model = Seen()
    trainer = L.Trainer(accelerator="cpu", max_steps=max_steps, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=list(callbacks))
    trainer.fit(model, DataLoader(TensorDataset(torch.ones(5, 1)), batch_size=1), ckpt_path=ckpt_path)
    if save:
        trainer.save_checkpoint(save)
    return model.seen


@pytest.mark.parametrize("with_callback", [True, False])
def test_a_plain_trainers_resume_of_a_max_steps_stop_goes_on_in_the_same_epoch(with_callback, tmp_path):
    # 5 batches an epoch; 12 steps: epochs 0 and 1 whole, then batches 0-1 of epoch 2
    expected = [(epoch, batch) for epoch in range(3) for batch in range(5)][:12]
    fit(7, save=tmp_path / "stop.ckpt")  # stopped after batch 1 of epoch 1
    resumed = fit(12, [MaxStepsResume()] if with_callback else [], ckpt_path=tmp_path / "stop.ckpt")
    if with_callback:
        assert resumed == expected[7:]
    else:  # Lightning 2.6 alone: the rest of epoch 1 trained as epoch 2 (if it ever learns, drop this case)
        assert resumed != expected[7:]
