"""BatchLBFGS: torch.optim.LBFGS's iterates for one row, independent rows for a batch."""

import pytest
import torch
from conftest import lbfgs_steps

from lightning_modules.lbfgs import BatchLBFGS

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets: threads only add contention

A = torch.randn(40, 12, generator=torch.Generator().manual_seed(0))
B = torch.randn(3, 40, generator=torch.Generator().manual_seed(1))  # one least-squares target per row


def losses(x):
    """Row i: |A x_i - b_i|^2 + sum x_i^4, a smooth non-quadratic problem of its own."""
    return ((x @ A.T - B[:len(x)]) ** 2).sum(1) + (x**4).sum(1)


def run(optimizer_class, x, steps, **kwargs):
    return lbfgs_steps(optimizer_class, x, losses, steps, lr=1.0, history_size=4, **kwargs)[0]


def test_one_row_follows_torch_lbfgs():
    # 8 iterations with history 4: pairs are evicted, the first step is lr / |g|_1
    start = torch.zeros(1, 12)
    expected = run(torch.optim.LBFGS, start, 1, max_iter=8, max_eval=20)  # one torch step = 8 iterations
    assert torch.allclose(run(BatchLBFGS, start, 8), expected, atol=1e-5)


def test_rows_are_independent_problems():
    start = torch.randn(3, 12, generator=torch.Generator().manual_seed(2)) * 0.1
    batch = run(BatchLBFGS, start, 4)
    for i in range(3):
        alone = start[i:i + 1].clone().requires_grad_()
        optimizer = BatchLBFGS([alone], lr=1.0, history_size=4)

        def closure(x=alone, optimizer=optimizer, target=B[i:i + 1]):
            optimizer.zero_grad()
            loss = ((x @ A.T - target) ** 2).sum() + (x**4).sum()
            loss.backward()
            return loss

        for _ in range(4):
            optimizer.step(closure)
        assert torch.allclose(batch[i], alone.detach()[0], atol=1e-5)


def test_torch_lbfgs_would_couple_the_rows():
    start = torch.randn(3, 12, generator=torch.Generator().manual_seed(2)) * 0.1
    coupled = run(torch.optim.LBFGS, start, 1, max_iter=4, max_eval=20)
    assert (run(BatchLBFGS, start, 4) - coupled).abs().max() > 0.01  # shared step sizes and curvature


def test_state_survives_a_state_dict_round_trip():
    start = torch.zeros(2, 12)
    straight = run(BatchLBFGS, start, 8)
    x = start.clone().requires_grad_()
    first = BatchLBFGS([x], lr=1.0, history_size=4)

    def closure_for(optimizer, x):
        def closure():
            optimizer.zero_grad()
            loss = losses(x).sum()
            loss.backward()
            return loss
        return closure

    for _ in range(4):
        first.step(closure_for(first, x))
    state = first.state_dict()
    y = x.detach().clone().requires_grad_()
    second = BatchLBFGS([y], lr=1.0, history_size=4)
    second.load_state_dict(state)
    for _ in range(4):
        second.step(closure_for(second, y))
    assert torch.allclose(y.detach(), straight, atol=1e-6)


def test_more_than_one_tensor_is_refused():
    with pytest.raises(ValueError, match="exactly one"):
        BatchLBFGS([torch.zeros(2, requires_grad=True), torch.zeros(2, requires_grad=True)])
