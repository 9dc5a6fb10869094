"""BatchLBFGS's step length, stopping and history per row, against values written out here."""

import pytest
import torch

from lightning_modules.lbfgs import BatchLBFGS

pytestmark = pytest.mark.usefixtures("one_thread")


def steps(x, loss_fn, n, **kwargs):
    x = x.clone().requires_grad_()
    optimizer = BatchLBFGS([x], **kwargs)

    def closure():
        optimizer.zero_grad()
        loss = loss_fn(x).sum()
        loss.backward()
        return loss

    for _ in range(n):
        optimizer.step(closure)
    return x.detach(), optimizer.state[x]


def test_first_step_is_lr_times_min_of_one_and_one_over_the_l1_gradient():
    c = torch.tensor([[0.25, -0.25], [2.0, -2.0]])  # |g|_1 = 0.5 and 4 for a linear loss c.x
    x, _ = steps(torch.zeros(2, 2), lambda x: (x * c).sum(1), 1, lr=0.5)
    assert torch.allclose(x, torch.stack([-0.5 * c[0], -0.5 * c[1] / 4]))


def test_a_row_at_tolerance_stops_while_the_others_go_on():
    target = torch.tensor([[1e-3, 0.0], [3.0, -1.0]])

    def loss(x):  # row 0 starts with max |gradient| 2e-3, below tolerance_grad; row 1 far from its minimum
        return ((x - target) ** 2).sum(1)

    start = torch.zeros(2, 2)
    x, state = steps(start, loss, 3, lr=1.0, tolerance_grad=1e-2)
    assert torch.equal(x[0], start[0])  # frozen from the first step, never moved
    assert torch.allclose(x[1], target[1], atol=1e-4) and state["done"].tolist() == [1.0, 1.0]


def test_each_row_keeps_at_most_history_size_pairs():
    torch.manual_seed(0)
    a = torch.randn(6, 6)

    def loss(x):
        return ((x @ a) ** 2).sum(1) + (x**4).sum(1)

    _, state = steps(torch.randn(3, 6), loss, 12, lr=0.5, history_size=3)
    assert len(state["y"]) <= 3 and all(len(rows) <= 3 for rows in state["rows"])
