"""Lookahead with a growing decay, as airbench94 trains (Jordan 2024, arXiv:2404.00498; after Zhang et al. 2019)."""

import lightning as L
import torch

from callbacks.errors import UserError


class Lookahead(L.Callback):
    """Every `every` optimizer steps a slow copy of the weights moves toward them, `slow += (1 - d) (w - slow)`, and
    the weights are reset to it; `d = decay * (t / T) ** power` at step t of T (the training's optimizer steps) grows
    from 0, where the slow copy simply follows the weights, to `decay`. When training ends the weights are the slow
    copy. Floating-point buffers (BatchNorm running statistics) are averaged with the weights.

    airbench94: every 5 steps, decay 0.95 ** 5, power 3. Device-side only (no host sync); the slow copy is not
    saved in checkpoints, so resume a run that uses it from its start.
    """

    def __init__(self, decay: float = 0.95 ** 5, every: int = 5, power: float = 3.0):
        if not 0 <= decay <= 1 or every < 1:
            raise UserError(f"Lookahead needs 0 <= decay <= 1 and every >= 1 (got decay {decay}, every {every})")
        self.decay, self.every, self.power = decay, every, power
        self.total = self.last = 0
        self.live: list[torch.Tensor] = []
        self.slow: list[torch.Tensor] = []

    def on_train_start(self, trainer, pl_module):
        self.total = trainer.estimated_stepping_batches
        if self.total == float("inf"):
            raise UserError("Lookahead needs a known number of steps: set trainer.max_epochs or max_steps")
        self.live = [t for t in pl_module.state_dict(keep_vars=True).values() if t.is_floating_point()]
        self.slow = [t.detach().clone() for t in self.live]
        self.last = trainer.global_step

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

    def on_train_end(self, trainer, pl_module):
        if self.slow:
            self._update(1.0)  # the weights become the slow copy
