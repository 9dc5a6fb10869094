"""BatchLBFGS's step length, stopping and history per row, against values written out here."""

import pytest
import torch
from conftest import lbfgs_steps

from lightning_modules.lbfgs import BatchLBFGS

pytestmark = pytest.mark.usefixtures("one_thread")


def steps(x, loss_fn, n, **kwargs):
    return lbfgs_steps(BatchLBFGS, x, loss_fn, n, **kwargs)


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


def torch_lbfgs(loss_fn, row, n, **kwargs):
    """torch.optim.LBFGS (no line search) on one row alone: n iterations in one step."""
    return lbfgs_steps(torch.optim.LBFGS, row, loss_fn, 1, max_iter=n, max_eval=10 * n, **kwargs)[0]


A = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
B = torch.randn(8, generator=torch.Generator().manual_seed(1))


def least_squares(x):  # convex: every curvature pair has y.s > 0
    return ((x @ A.T - B) ** 2).sum(-1) + (x**4).sum(-1)


def double_well(x):  # (x^2 - 1)^2 is concave for |x| < 1/sqrt(3): steps from near 0 give pairs with y.s < 0
    return ((x**2 - 1) ** 2).sum(-1)


@pytest.mark.parametrize("n", [3, 10])
def test_a_row_that_rejects_curvature_pairs_the_other_row_accepts_follows_torch_lbfgs_alone(n):
    # the double-well row rejects its pairs at the 2nd and 5th steps while the least-squares row accepts all of
    # them; with history 2 the least-squares row drops pairs the other row still holds. Each row must make
    # torch's iterates for its problem alone, where a rejected pair does not exist.
    start = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.1, -0.2, 0.15, 0.3]])
    kwargs = dict(lr=1.0, history_size=2, tolerance_change=1e-12)
    x, state = steps(start, lambda x: torch.stack([least_squares(x[0]), double_well(x[1])]), n, **kwargs)
    for row, loss_fn in enumerate((least_squares, double_well)):
        assert torch.allclose(x[row], torch_lbfgs(loss_fn, start[row], n, **kwargs), atol=1e-5), row
    assert state["done"].tolist() == [0.0, 0.0]


def test_a_row_whose_slope_is_above_minus_tolerance_change_stops():
    # linear rows c.x: the first direction is -c, slope -|c|^2: -0.02 (above -0.05: stop) and -2 (go on,
    # by lr * min(1, 1 / |c|_1) = 0.5 along -c); torch.optim.LBFGS on each row alone does the same
    c = torch.tensor([[0.1, -0.1], [1.0, -1.0]])
    x, state = steps(torch.zeros(2, 2), lambda x: (x * c).sum(1), 1, lr=1.0, tolerance_change=0.05)
    assert torch.equal(x[0], torch.zeros(2)) and torch.allclose(x[1], -0.5 * c[1])
    assert state["done"].tolist() == [1.0, 0.0]
    for row in range(2):
        alone = torch_lbfgs(lambda x, c=c[row]: (x * c).sum(), torch.zeros(2), 1, lr=1.0, tolerance_change=0.05)
        assert torch.equal(x[row], alone)


def test_a_curvature_pair_is_kept_when_y_dot_s_is_above_1e_10():
    # f(x) = h x^2 / 2 + x from 0 (fp64): the first step is -1, so y.s = h. h = 1.5e-10 is kept (then the
    # second step is Newton's, to -1/h); h = 0.5e-10 is not (a second gradient step, to -2 + h). torch's test.
    h = torch.tensor([[1.5e-10], [0.5e-10]], dtype=torch.float64)
    x, _ = steps(torch.zeros(2, 1, dtype=torch.float64), lambda x: (h * x**2 / 2 + x).sum(1), 2, lr=1.0)
    assert x[:, 0].tolist() == pytest.approx([-1 / 1.5e-10, -2 + 0.5e-10], rel=1e-5)
    for row in range(2):
        alone = torch_lbfgs(lambda x, h=h[row]: (h * x**2 / 2 + x).sum(), torch.zeros(1, dtype=torch.float64), 2,
                            lr=1.0)
        assert torch.allclose(x[row], alone, rtol=1e-6), row
