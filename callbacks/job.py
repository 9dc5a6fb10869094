"""train.py's job: fit, then test the final weights, then results.json in the run folder; Ctrl-C during that test."""

import contextlib
import re
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from lightning.pytorch.utilities.exceptions import MisconfigurationException, SIGTERMException
from lightning.pytorch.utilities.model_helpers import is_overridden

from callbacks import run_checkpoint, run_lifecycle
from callbacks.checkpoint_io import write_json
from callbacks.errors import UserError, lightning_ctrl_c, on_ctrl_c
from callbacks.progress import format_number
from callbacks.resume import LastStepLr
from callbacks.run_config import LogConfig

if TYPE_CHECKING:  # for the annotation alone: importing the CLI patches jsonargparse and the Trainer's annotations
    from callbacks.cli import CLI


@contextlib.contextmanager
def ctrl_c_stops_the_test(run_dir: Path, trainer=None):
    """Ctrl-C during the test after the fit: exit 130 saying how to test the saved run (Lightning's exit 1 read as a
    failure). A SIGTERM there is Lightning's SIGTERMException, exit 143.

    Under DDP rank 0 alone says so, and sends the Ctrl-C on to the ranks it launched, as Lightning sends on a SIGTERM:
    a Ctrl-C to rank 0 alone (`kill -INT`) had left them testing, orphaned, until their next collective failed with
    gloo's traceback. The other ranks stop once: the Ctrl-C sent on after the terminal's own is not raised again while
    they unwind, nor after the block (ignored from then on): a rank's unwinding can take a few milliseconds, and the
    one sent on came in its exit's atexit callbacks, a KeyboardInterrupt's traceback."""
    stopped = []
    rank_0 = trainer is None or trainer.is_global_zero

    def stop(signum, frame):
        if stopped and not rank_0:
            return
        if not stopped and rank_0:
            print(f"\nCtrl-C: the test stopped; {saved_training(run_dir)}", file=sys.stderr)
        launcher = trainer.strategy.launcher if trainer is not None else None
        if not stopped and getattr(launcher, "procs", None):  # Lightning's launcher on rank 0; none under torchrun
            launcher.kill(signal.SIGINT)
        stopped.append(signum)
        raise SIGTERMException(130)
    try:
        with on_ctrl_c(stop):
            yield
    finally:
        if stopped and not rank_0:
            signal.signal(signal.SIGINT, signal.SIG_IGN)


def saved_training(run_dir: Path) -> str:
    """How to test the run stopped in its test: with its last.ckpt, else its newest checkpoint, else none was written
    (`enable_checkpointing: false`, configs/darknet_fast.yaml's)."""
    last = run_dir / "checkpoints" / "last.ckpt"
    if not last.exists():
        saved = sorted(run_dir.glob("checkpoints/*.ckpt"), key=lambda path: path.stat().st_mtime)
        if not saved:
            return ("the run wrote no checkpoint (--trainer.enable_checkpointing false), so there is none to test; "
                    "train it again with checkpointing on to test it later")
        last = saved[-1]
    return (f"the training is saved. Test it with: python train.py test --config {run_dir / 'config.yaml'} "
            f"--ckpt_path {last}")


@contextlib.contextmanager
def weights_in_memory(trainer):
    """trainer.test(model) tests the model's weights, except in a SLURM job whose run folder holds an hpc_ckpt_N.ckpt:
    Lightning then loads that (its save on the time-limit signal, older than the weights just trained). Hidden from
    it for the call."""
    connector = type(trainer._checkpoint_connector)
    hpc = connector.__dict__.get("_hpc_resume_path")
    if not isinstance(hpc, property):  # a Lightning that no longer has it
        yield
        return
    connector._hpc_resume_path = property(lambda self: None)
    try:
        yield
    finally:
        connector._hpc_resume_path = hpc


def fit_progress(trainer) -> dict:
    """Epochs as batches trained / batches per epoch: a run stopped at 13% of its first epoch says 0.13. A loader
    without epochs (the style system's endless one) has none: null, not Lightning's count of how often it began."""
    batches = trainer.fit_loop.epoch_loop.batch_progress.total.completed
    per_epoch = trainer.num_training_batches
    finite = isinstance(per_epoch, int) and per_epoch > 0
    return {"epochs": round(batches / per_epoch, 4) if finite else None,
            "epochs_completed": batches // per_epoch if finite else None, "batches": batches}


def discard_resume_config(trainer, run_dir: Path) -> None:
    """The config-resume-step<N>.yaml this launch wrote, for a resume that trained nothing."""
    for callback in trainer.callbacks:
        if isinstance(callback, LogConfig) and callback.resumed_at is not None and callback.already_saved:
            (run_dir / callback.config_filename).unlink(missing_ok=True)


def refuse_nothing_trained(trainer, ckpt_path: str, run_dir: Path) -> None:
    """The UserError of a resume that trained nothing of a run its own config.yaml's limits would have trained on (it
    ended with exit status 0 and a results.json of no metrics and no test, which then read as the run's results):
    the limit that ended it and the run's own. The config-resume yaml of this resume goes."""
    import yaml
    try:
        own = (yaml.safe_load((run_dir / "config.yaml").read_text()) or {}).get("trainer") or {}
    except (OSError, yaml.YAMLError, AttributeError):
        return  # the run's own limits unknown: its results are written as before
    at = {"max_steps": trainer.global_step, "max_epochs": trainer.current_epoch}
    if any(own.get(name) not in (None, -1) and at[name] >= own[name] for name in at):
        return  # the run's own training had ended: its test and results.json are what is left to do
    discard_resume_config(trainer, run_dir)
    limits = [(name, limit) for name in at if (limit := getattr(trainer, name)) not in (None, -1)
              and at[name] >= limit]  # those reached
    began = [f"--trainer.{name} {own[name]}" for name, _ in limits if own.get(name) not in (None, -1)]
    ends = " or ".join(f"--trainer.{name} {value}" for name, value in limits) or "--trainer.max_time"
    raise UserError(f"--ckpt_path {ckpt_path}: the run is at step {trainer.global_step} (epoch "
                    f"{trainer.current_epoch}), where {ends} ends it: this resume trains nothing; raise it to train on"
                    + (f" (the run began with {' and '.join(began)})" if began else ""))


def run_job(cli: "CLI") -> dict:
    """Fit, then test the final weights (systems with a test_step), then write <run folder>/results.json."""
    config, trainer, model = cli.job_config(), cli.trainer, cli.model
    start_step = cli.start_step  # the checkpoint's, checked by check_job
    if config.ckpt_path:
        # a resumed run finds its own checkpoints there; Lightning's warning is for new runs
        warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
        # a mid-epoch resume (timed or on-stop last.ckpt) trains the epoch's remaining batches (restart_position)
        warnings.filterwarnings("ignore", message=r"You're resuming from a checkpoint that ended before the epoch")
        # checkpoints of train.py before 2026-11-28 hold the state of its timed ModelCheckpoint, now TimedSave
        warnings.filterwarnings("ignore", message=r"(?s)Be aware that when using `ckpt_path`.*"
                                                  r"'train_time_interval': datetime")
    start = time.perf_counter()
    try:
        with lightning_ctrl_c(trainer):  # a Ctrl-C before SaveOnStop takes it at on_fit_start, or a second one
            trainer.fit(model, datamodule=cli.datamodule, ckpt_path=config.ckpt_path)
    except MisconfigurationException as error:  # Lightning's checks as the fit starts, with a traceback
        if past := re.search(r"restored a checkpoint with current_epoch=(\d+)", str(error)):
            raise UserError(f"--ckpt_path {config.ckpt_path}: the run is at epoch {past[1]}, past --trainer.max_epochs "
                            f"{config.trainer.max_epochs}; raise it to train on") from None  # as given: SWA adds one
        if "manual optimization" in str(error) and (manual := re.search(r"Trainer\((\w+)=(.*?)\)", str(error))):
            raise UserError(f"--trainer.{manual[1]} {manual[2]}: {type(model).__name__} steps its optimizers itself "
                            f"(a GAN's alternating updates), which Lightning cannot clip or accumulate for; drop "
                            f"it") from None
        raise  # Lightning raises it for a bug in a step or a log call too: its traceback
    except ValueError as error:
        interval = re.search(r"val_check_interval` \((\d+)\) must be .* training batches \((\d+)\)", str(error))
        if isinstance(error, UserError) or not interval:
            raise
        raise UserError(f"--trainer.val_check_interval {interval[1]} is more than the {interval[2]} batches of an "
                        f"epoch: give a fraction of the epoch (0.5), at most {interval[2]} batches, or "
                        f"--trainer.check_val_every_n_epoch null to count batches across epochs") from None
    fit_seconds = time.perf_counter() - start
    # what fit resumed from, ours or Lightning's own on a SLURM requeue (hpc_ckpt_N.ckpt); test() resets it
    resumed_from = str(Path(trainer.ckpt_path).absolute()) if trainer.ckpt_path else None
    run_dir = Path(trainer.default_root_dir)
    earlier = run_checkpoint.read_json(run_dir / "results.json") if trainer.global_step == start_step else None
    if earlier and earlier.get("global_step") == trainer.global_step:  # nothing trained, and these results say so
        if trainer.is_global_zero:
            print(f"Nothing left to train: the run is at step {trainer.global_step}, where its --trainer.max_steps or "
                  f"--trainer.max_epochs end it; raise them to train on. {run_dir / 'results.json'} (written when it "
                  f"got there) is kept")
            discard_resume_config(trainer, run_dir)
        # and its W&B folder, with nothing in it (offline: one more to `wandb sync`)
        run_lifecycle.discard_refused_resume()
        return earlier
    if start_step is not None and trainer.global_step == start_step and not trainer.callback_metrics:
        # a resume that neither trained nor ran the validation a stop cut short (RerunStoppedValidation), of a run
        # its own limits would have trained on (stopped by SIGTERM at step 126 of 3000, resumed with max_steps 10);
        # not one whose training had ended (a requeue of a job preempted in its test): that one tests and writes
        refuse_nothing_trained(trainer, config.ckpt_path, run_dir)
    # not LearningRateMonitor's lr-*: logged every log_every_n_steps, they held a step's before the last (a 1cycle's
    # 0.178 for its final 0.0035); the lr the last batch trained at instead
    final = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1 and not k.startswith("lr-")}
    final_lr = next((c.lr for c in trainer.callbacks if isinstance(c, LastStepLr) and c.lr is not None),
                    [[group["lr"] for group in optimizer.param_groups] for optimizer in trainer.optimizers])
    final_lr = [[float(lr) for lr in groups] for groups in final_lr]
    progress = fit_progress(trainer)
    testable = is_overridden("test_step", model) and getattr(cli.datamodule, "has_test_data", True)
    with ctrl_c_stops_the_test(run_dir, trainer), weights_in_memory(trainer):
        # no result at all under --trainer.limit_test_batches 0 (README: "0 means none"): an empty test, not a crash
        test = (trainer.test(model, datamodule=cli.datamodule, verbose=False) or [{}])[0] if testable else {}
    results = {"test": test, "final_metrics": final, "final_lr": final_lr, "fit_seconds": round(fit_seconds, 2),
               **progress,
               "global_step": trainer.global_step,
               "resumed_from": resumed_from,
               "world_size": trainer.world_size, "precision": str(trainer.precision), "run_dir": str(run_dir),
               "checkpoint": {"last": str(run_dir / "checkpoints" / "last.ckpt")
                              if trainer.checkpoint_callbacks and not trainer.fast_dev_run else None,
                              "best": getattr(trainer.checkpoint_callback, "best_model_path", None) or None}}
    if trainer.is_global_zero:
        path = run_dir / "results.json"
        write_json(path, results)
        shown = test or final
        # 4 significant digits, as the progress line: a WGAN's early Loss_D printed -0.0000 with 4 decimals
        print(("Test metrics: " if test else "Final metrics: ") + ", ".join(f"{k} {format_number(v)}"
                                                                             for k, v in shown.items()))
        # the figure airbench prints beside its accuracy (results.json's fit_seconds; the test comes after)
        print(f"Fit time: {results['fit_seconds']} s" + (" (this launch, after its resume)" if resumed_from else ""))
        print(f"Results written to {path}")
    return results
