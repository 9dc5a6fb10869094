"""DataLoader workers outlive the stop signals sent to the whole process group (datamodules/workers.py)."""

import multiprocessing
import os
import signal
import time

import pytest
import torch

from datamodules.workers import loader, max_workers, outlive_stop_signals


def _worker(ready, policy: bool) -> None:
    if policy:
        outlive_stop_signals(0)
    ready.set()
    time.sleep(60)


def start(policy: bool):
    context = multiprocessing.get_context("fork")  # as torch's DataLoader workers on Linux
    ready = context.Event()
    process = context.Process(target=_worker, args=(ready, policy), daemon=True)
    process.start()
    assert ready.wait(30)
    return process


def still_alive(process, seconds: float = 0.5) -> bool:
    process.join(seconds)
    return process.is_alive()


def test_a_worker_lives_through_ctrl_c_and_one_sigterm_and_ends_on_the_next():
    process = start(policy=True)
    os.kill(process.pid, signal.SIGINT)
    assert still_alive(process)
    os.kill(process.pid, signal.SIGTERM)  # the group's: the main process stops after its batch
    assert still_alive(process)
    os.kill(process.pid, signal.SIGTERM)  # torch's own terminate of a worker that did not stop
    process.join(10)
    assert process.exitcode == -signal.SIGTERM


def test_without_the_policy_the_first_sigterm_ends_a_worker():
    """The control: the process above would have died at once."""
    process = start(policy=False)
    os.kill(process.pid, signal.SIGTERM)
    process.join(10)
    assert process.exitcode == -signal.SIGTERM


@pytest.mark.parametrize("num_workers, persistent", [(2, True), (1, True), (2, False), (0, True)])
def test_loader_gives_workers_the_policy_and_keeps_the_data(num_workers, persistent, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    data = loader(torch.arange(10), 4, num_workers, persistent=persistent, drop_last=True)
    assert data.num_workers == num_workers and data.persistent_workers == (persistent and num_workers > 0)
    assert data.worker_init_fn is (outlive_stop_signals if num_workers else None)
    assert torch.cat(list(data)).tolist() == list(range(8))  # in order, the last partial batch dropped


def test_workers_are_at_most_the_cpus_this_process_may_use(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2} if pid == 0 else set(), raising=False)
    assert [max_workers(n) for n in (5, 3, 1, 0)] == [3, 3, 1, 0]
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)  # macOS and Windows: the machine's count
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    assert [max_workers(n) for n in (5, 2)] == [4, 2]
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # undeterminable: one worker
    assert [max_workers(n) for n in (5, 0)] == [1, 0]
