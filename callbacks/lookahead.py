"""Lookahead with a growing decay, as airbench94 trains (Jordan 2024, arXiv:2404.00498; after Zhang et al. 2019)."""

import lightning as L
import torch

from callbacks.errors import UserError


class Lookahead(L.Callback):
    """Every `every` optimizer steps a slow copy of the weights moves toward them, `slow += (1 - d) (w - slow)`, and
    the weights are reset to it; `d = decay * (t / T) ** power` at step t of T (the training's optimizer steps) grows
    from 0, where the slow copy simply follows the weights, to `decay`. When training ends the weights are the slow
    copy. Floating-point buffers (BatchNorm running statistics) are averaged with the weights.

    airbench94: every 5 steps, decay 0.95 ** 5, power 3. Device-side only (no host sync). The slow copy is part of
    the checkpoint (the callback's state), so a resumed run goes on as if never stopped; the weights become the slow
    copy at the last step, before the epoch's end saves them, so last.ckpt holds the final weights.
    """

    def __init__(self, decay: float = 0.95 ** 5, every: int = 5, power: float = 3.0):
        if not 0 <= decay <= 1 or every < 1:
            raise UserError(f"Lookahead needs 0 <= decay <= 1 and every >= 1 (got decay {decay}, every {every})")
        self.decay, self.every, self.power = decay, every, power
        self.total = self.last = 0
        self.finished = False
        self.live: list[torch.Tensor] = []
        self.slow: list[torch.Tensor] = []
        self.restored: list[torch.Tensor] | None = None  # the slow copy of the checkpoint a run resumes from

    def on_train_start(self, trainer, pl_module):
        self.total = trainer.estimated_stepping_batches
        if self.total == float("inf"):
            raise UserError("Lookahead needs a known number of steps: set trainer.max_epochs or max_steps")
        self.live = [t for t in pl_module.state_dict(keep_vars=True).values() if t.is_floating_point()]
        restored, self.restored = self.restored, None
        if restored is not None and [t.shape for t in restored] == [t.shape for t in self.live]:
            self.slow = [s.to(t.device, t.dtype) for s, t in zip(restored, self.live, strict=True)]
        else:  # a new run, or a checkpoint saved without Lookahead: the slow copy starts at the weights
            self.slow = [t.detach().clone() for t in self.live]
        self.last = trainer.global_step
        self.finished = False

    def state_dict(self) -> dict:
        return {"slow": [t.detach().cpu() for t in self.slow]} if self.slow else {}

    def load_state_dict(self, state_dict: dict) -> None:
        self.restored = state_dict.get("slow")

    @torch.no_grad()
    def _update(self, decay: float) -> None:
        live = [t.detach() for t in self.live]
        torch._foreach_lerp_(self.slow, live, 1 - decay)
        torch._foreach_copy_(live, self.slow)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step = trainer.global_step  # optimizer steps taken (a batch that only accumulated keeps it)
        if step % self.every == 0 and step > self.last:
            self.last = step
            self._update(self.decay * (step / self.total) ** self.power)
        if step >= self.total:
            self._finish()

    def on_train_end(self, trainer, pl_module):
        self._finish()  # a run stopped early (max_time, Ctrl-C) ends on the slow copy too

    def _finish(self) -> None:
        if self.slow and not self.finished:
            self.finished = True
            self._update(1.0)  # the weights become the slow copy
