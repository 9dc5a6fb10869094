"""The benchmark scripts' methodology (benchmarks/*_speed.py, style_lbfgs.py): what their figures include."""

import json
import sys

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import style_lbfgs  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def test_style_lbfgs_times_neither_loop_s_first_run_in_the_process(tmp_path, monkeypatch):
    """On a GPU a process's first run loads cuDNN, cuBLAS and their kernels; A (Lightning) always ran first, so its
    figure alone carried that. Fake loops whose first run in the process is the slow one (100 s, then 1 s)."""
    calls = []

    def fake(name):
        def run(args, data):
            calls.append((name, args.iters))
            return (100.0 if [c[0] for c in calls].count(name) == 1 else 1.0), 0.5
        return run

    monkeypatch.setattr(style_lbfgs, "lightning_run", fake("A"))
    monkeypatch.setattr(style_lbfgs, "plain_run", fake("B"))
    out = tmp_path / "style.json"
    style_lbfgs.main(["--size", "32", "--iters", "10", "--order", "AB", "--json", str(out)])
    row = json.loads(out.read_text())["rows"][0]
    assert row["trials_ours"] == [1.0] and row["trials_plain"] == [1.0]
    assert row["ours"] == row["plain"] == 10.0  # 10 iterations in 1 s each
    assert calls == [("A", 2), ("B", 2), ("A", 10), ("B", 10)]  # the warm-ups: --warmup 2 iterations each
