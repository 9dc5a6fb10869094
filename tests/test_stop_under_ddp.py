"""SaveOnStop under DDP, called directly with fakes: the ranks' agreement on a stop, a requeue's saves."""

import signal
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.trainer.states import TrainerFn
from runs import ddp_rank, fake_trainer, last_ckpt

from callbacks import saving


@pytest.mark.parametrize("world_size, auto_requeue", [(2, True), (2, False), (1, True)])
def test_under_ddp_sigterm_and_slurms_signal_are_noted_for_the_ranks_agreement(world_size, auto_requeue, tmp_path,
                                                                               handlers):
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGUSR1)}
    environment = SLURMEnvironment(auto_requeue=auto_requeue, requeue_signal=signal.SIGUSR1)
    trainer = fake_trainer(world_size=world_size,
                           _accelerator_connector=SimpleNamespace(cluster_environment=environment))
    stop = saving.SaveOnStop(last_ckpt(tmp_path))
    stop.on_fit_start(trainer, None)
    stop.on_train_start(trainer, None)
    ddp = world_size > 1
    assert (signal.getsignal(signal.SIGTERM) == stop._on_sigterm) == ddp
    assert (signal.getsignal(signal.SIGUSR1) == stop._on_requeue_signal) == (ddp and auto_requeue)
    if not ddp:
        assert signal.getsignal(signal.SIGTERM) is before[signal.SIGTERM]
    if not (ddp and auto_requeue):
        assert signal.getsignal(signal.SIGUSR1) is before[signal.SIGUSR1]


@pytest.mark.parametrize("rank", [0, 1])
def test_a_requeue_signal_on_any_rank_saves_once_on_every_rank_and_rank_0_requeues(rank, monkeypatch, tmp_path):
    path = last_ckpt(tmp_path)
    trainer, requeued = ddp_rank(monkeypatch, rank, (0, 1))  # the other rank got SLURM's signal
    stop = saving.SaveOnStop(path)
    stop.on_train_batch_end(trainer, None, None, None, 0)
    assert trainer.saved == [(path, {"weights_only": False})]
    assert requeued == ([f"saved {path} at step 5"] if rank == 0 else [])
    assert trainer._signal_connector.received_sigterm is False  # a requeue is no stop: training goes on
    stop.requeue = True  # this rank's signal, a moment later: nothing more
    stop.on_train_batch_end(trainer, None, None, None, 1)
    assert len(trainer.saved) == 1 and len(requeued) == (rank == 0)


def test_a_requeue_signal_in_the_sanity_check_saves_nothing(monkeypatch, tmp_path):
    trainer, requeued = ddp_rank(monkeypatch, 0, (0, 1), sanity_checking=True)
    saving.SaveOnStop(last_ckpt(tmp_path)).on_train_batch_end(trainer, None, None, None, 0)
    assert trainer.saved == [] and requeued == []


@pytest.mark.parametrize("mine, others, stops", [(1, 0, True), (0, 1, True), (0, 0, False)])
def test_the_ranks_stop_together_after_a_batch_when_either_noted_a_stop(mine, others, stops, monkeypatch, tmp_path):
    trainer, requeued = ddp_rank(monkeypatch, 1, (others, 0))
    stop = saving.SaveOnStop(last_ckpt(tmp_path))
    stop.stop = bool(mine)
    stop.on_train_batch_end(trainer, None, None, None, 0)
    assert trainer._signal_connector.received_sigterm is stops  # Lightning raises at this batch's end, and saves
    assert trainer.saved == [] and requeued == []


def test_one_process_leaves_the_stop_to_lightnings_signal_connector(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.distributed, "all_reduce", lambda *args, **kwargs: pytest.fail("a collective"))
    for initialized in (True, False):
        monkeypatch.setattr(torch.distributed, "is_initialized", lambda initialized=initialized: initialized)
        for world_size in (1, 2):
            if world_size == 2 and initialized:
                continue
            trainer = fake_trainer(world_size=world_size)
            stop = saving.SaveOnStop(last_ckpt(tmp_path))
            stop.stop = stop.requeue = True
            stop.on_train_batch_end(trainer, None, None, None, 0)
            assert trainer.saved == [] and trainer._signal_connector.received_sigterm is False


def validation_rank(**settings):
    saves = []
    strategy = DDPStrategy()
    strategy.save_checkpoint = lambda checkpoint, path: saves.append((checkpoint, path))
    dump = SimpleNamespace(dump_checkpoint=lambda weights_only: {"global_step": 5, "weights_only": weights_only})
    return fake_trainer(**{"world_size": 2, "strategy": strategy, "_checkpoint_connector": dump, **settings}), saves


def test_a_stop_in_a_ddp_validation_saves_the_whole_state_at_once_on_rank_0_alone(tmp_path, capsys):
    path = last_ckpt(tmp_path)
    trainer, saves = validation_rank()
    stop = saving.SaveOnStop(path)
    stop.on_validation_batch_end(trainer, None, None, None, 0)
    assert saves == []  # no stop yet
    stop.stop = True
    stop.on_validation_batch_end(trainer, None, None, None, 1)
    assert saves == [({"global_step": 5, "weights_only": False}, path)]
    assert f"SIGTERM in the validation: saved {path} at step 5" in capsys.readouterr().err
    stop.on_validation_batch_end(trainer, None, None, None, 2)
    assert len(saves) == 1  # once


@pytest.mark.parametrize("case", ["rank 1", "one process", "validate subcommand", "sanity check", "fast_dev_run",
                                  "sharded strategy"])
def test_a_stop_in_a_validation_is_saved_there_only_by_rank_0_of_a_ddp_fit(case, tmp_path):
    settings = {"rank 1": {"is_global_zero": False, "global_rank": 1}, "one process": {"world_size": 1},
                "validate subcommand": {"state": SimpleNamespace(fn=TrainerFn.VALIDATING)},
                "sanity check": {"sanity_checking": True}, "fast_dev_run": {"fast_dev_run": 1}, "sharded strategy": {}}
    trainer, saves = validation_rank(**settings[case])
    if case == "sharded strategy":  # DeepSpeed's subclasses DDP's and gathers its state collectively: not alone
        sharded = type("ShardedStrategy", (DDPStrategy,), {})()
        sharded.save_checkpoint = trainer.strategy.save_checkpoint
        trainer.strategy = sharded
    stop = saving.SaveOnStop(last_ckpt(tmp_path))
    stop.stop = True
    stop.on_validation_batch_end(trainer, None, None, None, 0)
    assert saves == [] and not stop.saved_in_validation

