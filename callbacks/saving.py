"""Checkpoints a run writes as it goes and when it is stopped: last.ckpt every few minutes and at each epoch's end,
and on Ctrl-C, SIGTERM or SLURM's time-limit signal (then `scontrol requeue`), under DDP too.

train.py adds these to every fit. Lightning's ModelCheckpoint falls short in three places, each said below: no
timed save under manual optimization (the GANs), no last.ckpt in an epoch whose monitor did not improve, and signal
handlers that save from inside the handler (a DDP hang).
"""

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from callbacks.checkpoints import resume_as_begun
from callbacks.errors import UserError, main_thread


class TimedSave(Callback):
    """checkpoints/last.ckpt after the batch that ends each `minutes` of training, for every system: Lightning 2.6's
    ModelCheckpoint(train_time_interval) never saves under manual optimization (the GANs), whose branch of its
    on_train_batch_end reads only every_n_train_steps."""

    def __init__(self, path: Path, minutes: float):
        self.path, self.seconds, self.last = path, minutes * 60, None

    def on_train_start(self, trainer, pl_module):
        self.last = time.monotonic()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if save_if(trainer, self.path, time.monotonic() - self.last >= self.seconds):  # rank 0's clock
            self.last = time.monotonic()


class EpochEndSave(Checkpoint):
    """last.ckpt at each epoch's end (after its validation), if the config's checkpoint callbacks left an older one.
    Lightning 2.6's ModelCheckpoint(save_last=True) writes last.ckpt only with a top-k save at the same step: never
    in an epoch whose monitored val/acc did not improve, nor at the WGAN's epoch ends (every_n_train_steps), so a
    crash would resume from an older epoch. Also a run that ended mid-epoch without a validation (phases that end
    there) resumes, and is classified, from its last step. A Checkpoint, so Lightning runs it after the config's
    ModelCheckpoint and it sees that one's save."""

    def __init__(self, path: Path):
        self.path = path

    def on_train_epoch_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            save_if(trainer, self.path, saved_step(self.path) != trainer.global_step)  # rank 0's reading


def rank_zero_says(trainer, flag: bool) -> bool:
    """Rank 0's `flag` on every rank, as one 1-element broadcast under DDP (at every batch's end: not
    strategy.broadcast's pickled object, two collectives and two copies to the host); `flag` itself alone."""
    if trainer.world_size > 1 and torch.distributed.is_initialized():
        tensor = torch.tensor([int(flag)], device=trainer.strategy.root_device)
        torch.distributed.broadcast(tensor, src=0)
        flag = bool(tensor.item())
    return flag


def save_if(trainer, path: Path, due: bool) -> bool:
    """trainer.save_checkpoint(path) if rank 0 finds it `due` (saving is collective: every rank must agree); its
    CheckpointIO writes atomically. Never in a fast_dev_run, which keeps no checkpoints."""
    due = rank_zero_says(trainer, due)
    if due and not trainer.fast_dev_run:
        trainer.save_checkpoint(path, weights_only=False)
    return due


def saved_step(path: Path) -> int | None:
    """The global_step of the checkpoint at `path` (read memory-mapped), None when there is none to read."""
    from lightning_modules.inference import read_checkpoint
    try:
        return read_checkpoint(str(path)).get("global_step")
    except UserError:  # absent, torn, or not a Lightning checkpoint: not the final step
        return None


class SaveOnStop(Callback):
    """Ctrl-C or SIGTERM: finish the batch, save checkpoints/last.ckpt, stop (a second Ctrl-C stops at once).

    Lightning turns SIGTERM into a SIGTERMException after the running batch, on every rank (its signal
    connector); Ctrl-C is sent on as a SIGTERM so both take that path, and the checkpoint is consistent.
    Under DDP the ranks agree on rank 0's stop at each training batch's end (one collective), rank 0 saves at once
    when it comes in a validation, and SLURM's time-limit signal (auto-requeue) is taken there too: last.ckpt, then
    `scontrol requeue`.
    """

    def __init__(self, path: Path):
        self.path, self.signal, self._previous, self._outer = path, None, None, None
        self.trainer, self.stop, self.requeue, self.requeued = None, False, False, False
        self.saved_in_validation = False

    def on_fit_start(self, trainer, pl_module):
        self.signal, self.trainer, self.stop, self.requeue, self.requeued = None, trainer, False, False, False
        self.saved_in_validation = False
        if not main_thread():
            return
        if trainer.is_global_zero:
            previous = signal.signal(signal.SIGINT, self._on_sigint)
            # a fit before in this process ended by an exception, and Lightning put this handler back (_on_sigint)
            self._previous = self._outer if previous == self._on_sigint and self._outer is not None else previous
            self._outer = None
        elif trainer.world_size > 1:  # a terminal's Ctrl-C reaches every rank: rank 0's stops them all together
            self._previous = signal.signal(signal.SIGINT, signal.SIG_IGN)

    def on_train_start(self, trainer, pl_module):
        # DDP: Lightning's SIGTERM handler broadcasts from inside the signal handler, in the middle of whatever
        # collective the ranks are in (a hang, or gloo's collective mismatch); rank 0 notes the signal instead and
        # on_train_batch_end tells every rank after the same batch (Lightning's signal connector restores its own)
        if trainer.world_size > 1 and main_thread():
            signal.signal(signal.SIGTERM, self._on_sigterm)
            # the same for SLURM's signal before the time limit: Lightning's handler saves hpc_ckpt_N.ckpt from inside
            # it, whose barrier a rank signalled a moment earlier than another waits in while that one waits in the
            # batch's collective (a hang until the time limit, and no requeue)
            environment = trainer._accelerator_connector.cluster_environment
            if isinstance(environment, SLURMEnvironment) and environment.auto_requeue:
                signal.signal(environment.requeue_signal, self._on_requeue_signal)
                if requeue_signal is not None:  # signalled before the training: saved after its first batch
                    self.requeue = self.requeue or requeue_signal.noted

    def _on_sigterm(self, signum, frame):
        if self.trainer.is_global_zero and not self.stop:
            self.stop = True
            if self.signal != "Ctrl-C":
                print("\nSIGTERM: stopping every rank after this batch and saving last.ckpt", file=sys.stderr)

    def _on_requeue_signal(self, signum, frame):
        self.requeue = True  # on any rank: SLURM signals every task, not all at the same moment

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        # one collective a batch under DDP, as Lightning's own broadcast at each batch's start (which comes too late: a
        # rank that saw the signal raises at this batch's end, alone): rank 0's stop, any rank's requeue
        if trainer.world_size == 1 or not torch.distributed.is_initialized():
            return
        flags = torch.tensor([int(self.stop), int(self.requeue)], device=trainer.strategy.root_device)
        torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
        stop, requeue = flags.tolist()
        if requeue and not self.requeued and not saves_nothing(trainer):  # once: a rank signalled later says it again
            self.requeued = True
            trainer.save_checkpoint(self.path, weights_only=False)  # atomic; the requeued job resumes from it
            # rank 0's scontrol once: it may have requeued before the training (RequeueSignal)
            if trainer.is_global_zero and not (requeue_signal is not None and requeue_signal.requeued):
                requeue_slurm_job(f"saved {self.path} at step {trainer.global_step}")
        if stop:
            trainer._signal_connector.received_sigterm = True  # every rank raises at this batch's end, and saves

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        # DDP: the ranks agree on the stop at the next training batch's end, after this validation, which a job's
        # grace time may not last (one process stops in it); rank 0 saves now, alone: Trainer.save_checkpoint's
        # barrier would wait for ranks that do not save. The resume runs this validation again (RerunStoppedValidation)
        if (self.stop and not self.saved_in_validation and trainer.is_global_zero and trainer.world_size > 1
                and trainer.state.fn == TrainerFn.FITTING and not saves_nothing(trainer)
                and type(trainer.strategy) is DDPStrategy):  # sharded strategies gather their state collectively
            self.saved_in_validation = True
            trainer.strategy.save_checkpoint(trainer._checkpoint_connector.dump_checkpoint(weights_only=False),
                                             self.path)
            print(f"{self.signal or 'SIGTERM'} in the validation: saved {self.path} at step {trainer.global_step}; "
                  f"every rank stops after the next training batch, or at the fit's end", file=sys.stderr, flush=True)

    def on_train_end(self, trainer, pl_module):
        # DDP: a stop rank 0 noted after the last batch's agreement (in the last validation) ends the job here, before
        # the test, as one process's does; Lightning's SIGTERM path saves (on_exception) and exits 143
        if trainer.world_size > 1 and torch.distributed.is_initialized() and rank_zero_says(trainer, self.stop):
            raise SIGTERMException

    def _on_sigint(self, signum, frame):
        if self._previous is None and self._outer is not None:
            # restored, yet called: after an exception, Lightning's teardown puts back the handlers it found when the
            # fit began (this one), so a Ctrl-C after the stop (in W&B's upload, in the next fit of the same process)
            # would promise a save and end the process by SIGTERM; the handler before the fit's takes it
            signal.signal(signal.SIGINT, self._outer)
            if self._outer is signal.SIG_DFL:
                os.kill(os.getpid(), signal.SIGINT)
            elif callable(self._outer):
                self._outer(signum, frame)
            return
        self._restore()  # a second Ctrl-C raises KeyboardInterrupt at once
        self.signal = "Ctrl-C"
        saves = self.trainer is None or not saves_nothing(self.trainer)
        print(f"\nCtrl-C: stopping after this batch{' and saving last.ckpt' if saves else ''} (Ctrl-C again to stop "
              f"at once)", file=sys.stderr)
        SIGNAL_LOG.addFilter(not_a_forwarded_sigterm)  # Lightning's "Received SIGTERM: 15" would puzzle the user
        os.kill(os.getpid(), signal.SIGTERM)

    def _restore(self):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._outer, self._previous = self._previous, None

    def on_fit_end(self, trainer, pl_module):
        self._restore()
        SIGNAL_LOG.removeFilter(not_a_forwarded_sigterm)  # a Ctrl-C after Lightning's last SIGTERM check
        # DDP: SLURM's signal in the fit's last validation, after the last batch's agreement: the fit has saved its end
        if self.requeue and not self.requeued and requeue_signal is not None and requeue_signal.decided:
            requeue_signal.noted = True
            requeue_signal.requeue_now()

    def on_exception(self, trainer, pl_module, exception):
        self._restore()
        SIGNAL_LOG.removeFilter(not_a_forwarded_sigterm)
        if not isinstance(exception, SIGTERMException) or trainer.state.fn != TrainerFn.FITTING:
            return
        exception.code = 130 if self.signal == "Ctrl-C" else 143
        if saves_nothing(trainer):
            return
        trainer.save_checkpoint(self.path, weights_only=False)  # the trainer's CheckpointIO writes atomically
        if trainer.is_global_zero:
            # SLURM's SIGTERM after the job requeued itself (its time-limit signal): nothing for the user to do
            requeued = self.requeued or (requeue_signal is not None
                                         and (requeue_signal.requeued or requeue_signal.lightning_requeued))
            config = self.path.parent.parent / "config.yaml"  # the run's options: a resume with others may not load
            how = ("the requeued SLURM job resumes from it" if requeued
                   else resume_as_begun(config, str(self.path)) if config.is_file()
                   else f"resume with --ckpt_path last --run_name {self.path.parent.parent.name}")
            print(f"Stopped by {self.signal or 'SIGTERM'} at step {trainer.global_step}; saved {self.path}; {how}",
                  file=sys.stderr)


def requeue_slurm_job(saved: str) -> bool:
    """`scontrol requeue` this job (SLURM ends it and starts it again, same id: train.py resumes it in its folder);
    False when scontrol failed (a warning says so)."""
    array = os.environ.get("SLURM_ARRAY_JOB_ID")
    job = f"{array}_{os.environ.get('SLURM_ARRAY_TASK_ID')}" if array else os.environ.get("SLURM_JOB_ID", "")
    print(f"SLURM's time-limit signal: {saved}; requeueing job {job}", file=sys.stderr, flush=True)
    try:
        result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
        failure = result.returncode and (result.stderr.strip() or f"exit status {result.returncode}")
    except OSError as error:  # no scontrol on this node's PATH
        failure = str(error)
    if failure:
        print(f"warning: `scontrol requeue {job}` failed ({failure}); training goes on until the time limit, and "
              f"--ckpt_path last resumes it", file=sys.stderr)
    return not failure


class RequeueSignal:
    """SLURM's time-limit signal (auto-requeue) in a job's process from train.py's start to its end, where neither
    SaveOnStop's handler (DDP's training) nor Lightning's (one process's fit or test) takes it. Before the fit's signal
    handlers (building the model and data, the process group, prepare_data, setup) the signal's default action ended
    every task and the job was not requeued; under DDP Lightning's handler, in the sanity check or the test after the
    fit, saves from inside the handler, whose barrier a rank signalled alone waited in for ever (the hang SaveOnStop
    avoids in the training). Outside the training nothing is left unsaved (nothing trained yet in this launch, or the
    fit saved at its end), so the job's first task requeues at once; every task notes it, and a noted signal is saved
    and requeued after the first training batch (SaveOnStop) if the training begins."""

    def __init__(self):
        self.signum, self.previous, self.trainer, self.decided = None, None, None, False
        self.noted = self.requeued = self.lightning_requeued = False

    @classmethod
    def install(cls) -> "RequeueSignal | None":
        """In a SLURM job's main thread: SIGUSR1 (the sbatch scripts') taken from now on, until the Trainer says
        which signal, if any (follow)."""
        if not main_thread() or not SLURMEnvironment.detect():
            return None
        handler = cls()
        handler.signum, handler.previous = signal.SIGUSR1, signal.signal(signal.SIGUSR1, handler)
        return handler

    def follow(self, trainer) -> None:
        """The Trainer's SLURM environment decides: its requeue signal, or none without auto-requeue."""
        environment = trainer._accelerator_connector.cluster_environment
        if not isinstance(environment, SLURMEnvironment) or not environment.auto_requeue:
            self.uninstall()
        elif environment.requeue_signal != self.signum:
            self.uninstall()
            self.signum = environment.requeue_signal
            self.previous = signal.signal(self.signum, self)
        self.trainer, self.decided = trainer, True
        if self.noted and self.signum is not None:  # signalled while the command line was read
            self.requeue_now()

    def uninstall(self) -> None:
        if self.signum is not None and signal.getsignal(self.signum) is self:
            signal.signal(self.signum, self.previous)
        self.signum = None

    def __call__(self, signum, frame):
        trainer = self.trainer
        connector = getattr(trainer, "_signal_connector", None)
        if trainer is not None and trainer.world_size == 1 and getattr(connector, "_original_handlers", None):
            # one process inside a fit or a test: Lightning's own, which it sets only where no handler is (this one)
            trainer._signal_connector._slurm_sigusr_handler_fn(signum, frame)
            self.lightning_requeued = True  # its handler saved hpc_ckpt_N.ckpt and requeued the job
            return
        self.noted = True
        if self.decided:
            self.requeue_now()

    def requeue_now(self) -> None:
        if global_rank_zero() and not self.requeued:
            self.requeued = requeue_slurm_job("no training in progress, nothing left to save")


requeue_signal: RequeueSignal | None = None  # the one of the train.main running in this process


def saves_nothing(trainer) -> bool:
    """A stop now keeps no checkpoint: in the sanity check nothing is trained yet; a smoke test keeps none."""
    return trainer.sanity_checking or bool(trainer.fast_dev_run)


SIGNAL_LOG = logging.getLogger("lightning.pytorch.trainer.connectors.signal_connector")


def not_a_forwarded_sigterm(record: logging.LogRecord) -> bool:
    return "Received SIGTERM" not in record.getMessage()


def global_rank_zero() -> bool:
    """True in the process that starts a job (before Lightning knows the ranks): not a launched or SLURM rank."""
    return all(os.environ.get(var, "0") == "0" for var in ("LOCAL_RANK", "RANK", "NODE_RANK", "SLURM_PROCID"))
