"""DataLoaders whose worker processes live through a stop signal sent to the whole process group, and that a resumed
run starts where it stopped (restart_position, ResumableSampler, LateLoader).

Ctrl-C in a terminal, `timeout` and SLURM's scancel signal every process of the job, the
DataLoader workers too. A worker killed that way makes torch raise "DataLoader worker ... is killed by signal"
in the main process at whatever line it is running, so train.py cannot finish the batch and save last.ckpt.
The workers here ignore SIGINT, SIGUSR1 (SLURM's time-limit signal) and their first SIGTERM; the main process stops
after its batch and torch shuts the workers down as usual (they stop when asked, between items). A worker stuck in one
item that torch then terminates dies of that SIGTERM if the group's came first; if not (a plain Ctrl-C, or a SIGTERM
to the main process alone), it ignores it and is ended by multiprocessing's exit handler, which terminates it again.
"""

import os
import signal

from torch.utils.data import DataLoader, Dataset, DistributedSampler


def max_workers(requested: int) -> int:
    """`requested` DataLoader workers, at most one per CPU this process may use: more only contend for cores."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(0, min(requested, cpus))


def outlive_stop_signals(worker_id: int) -> None:
    """DataLoader `worker_init_fn`: SIGINT ignored (forked workers would otherwise run the main process's Ctrl-C
    handler), the first SIGTERM ignored, the next one ends the worker. SLURM's time-limit signal (SIGUSR1, sent to
    every process of the job step, the workers too) ignored: a forked worker ran the main process's requeue handler
    on its own copy of the trainer, saving hpc_ckpt_N.ckpt over the main process's with the weights and step it was
    forked with, and calling `scontrol requeue` a second time."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _end_on_next_sigterm)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)


def _end_on_next_sigterm(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


class LateLoader(DataLoader):
    """A DataLoader whose iterator is made when its first batch is asked for. Lightning 2.6 makes a run's first
    iterator before on_train_start and before it gives the sampler its epoch, and a DataLoader with workers draws its
    sampler's first indices then; a resumed run's sampler must draw them once the epoch and position are known."""

    def __iter__(self):
        yield from super().__iter__()


def loader(dataset: Dataset, batch_size: int, num_workers: int, persistent: bool = False, **options) -> DataLoader:
    """A LateLoader with at most `max_workers(num_workers)` workers, each outliving the group's stop signals."""
    workers = max_workers(num_workers)
    return LateLoader(dataset, batch_size, num_workers=workers, persistent_workers=persistent and workers > 0,
                      worker_init_fn=outlive_stop_signals if workers else None, **options)


def overfitting(trainer) -> bool:
    """Trainer(overfit_batches=N): the same N training batches every epoch. Lightning turns a DataLoader's shuffle
    off for it (a SequentialSampler); a TensorBatches, which has no dataset to sample, keeps its first epoch's order
    instead (it drew new batches every epoch while Lightning said it had turned shuffling off)."""
    return trainer is not None and bool(getattr(trainer, "overfit_batches", 0))


def restart_position(trainer) -> tuple[int, int] | None:
    """(epoch, batches already trained in it) for the first batch of a run that resumes inside an epoch; None
    otherwise. Lightning 2.6 gives the sampler its epoch after it made the first iterator (our loaders draw their
    order at the first batch: TensorBatches, LateLoader) and starts it at its first batch while counting only those
    left: a stop inside epoch 2 went on in epoch 0's order, training its first batches again and never its last."""
    loop = getattr(trainer, "fit_loop", None)
    if loop is None or not loop.restarting or not trainer.training:
        return None  # a new epoch (MaxStepsResume ends a restart at an epoch's end before its first batch)
    return loop.epoch_progress.current.processed, loop.epoch_loop.batch_progress.current.completed


def restart_skip(loader) -> int:
    """The batches `loader` (with `trainer` and `epoch` attributes) skips in a resumed run's first iterator, its epoch
    set to the stopped one (restart_position); once: a loader Lightning cycles beside a longer one starts again from
    its first batch. 0 otherwise."""
    if (position := restart_position(loader.trainer)) is None:
        return 0
    loader.epoch, skip = position
    loader.trainer = None
    return skip


class ResumableSampler(DistributedSampler):
    """DistributedSampler (one shuffle per epoch, seeded, shared by the ranks, a slice each; with one process, a
    seeded shuffle) whose first iterator in a resumed run goes on in the stopped epoch's order (restart_skip)."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, batch_size: int = 1, trainer=None,
                 **options):
        super().__init__(dataset, num_replicas, rank, **options)
        self.batch_size, self.trainer = batch_size, trainer

    def __iter__(self):
        skip = restart_skip(self)
        return iter(list(super().__iter__())[skip * self.batch_size:])
