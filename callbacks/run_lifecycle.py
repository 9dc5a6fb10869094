"""The life of this process's runs: a run folder made once its config is accepted (its lock, its W&B folder,
run.json), kept once its training or evaluation begins, removed with the W&B run begun for it when the run is refused
before that; the locks released at the run's end and in forked children.
"""

import contextlib
import os
import shutil
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from lightning.pytorch import Callback
from lightning.pytorch.trainer.states import TrainerFn

from callbacks import wandb_run
from callbacks.checkpoint_io import remove_stale_temporaries, write_json
from callbacks.checkpoints import EVALUATIONS
from callbacks.errors import UserError
from callbacks.run_checkpoint import RUN_FILE, read_run, slurm_restart
from callbacks.saving import global_rank_zero

LOCK_PATIENCE_SECONDS = 120  # a requeued job's wait for a dead node's lock (NFS keeps it until its lease ends)

# This process's runs, for the clean-up of a refused run (train.main clears them when it ends):
_new_stamps: set[Path] = set()  # the folder new_time_stamped chose for the run prepare_run is choosing one for
# run folder -> the folders made for it by make_run_folder or claim_time_stamped (the run folder, then those above it
# that it made), while a refusal of the run would discard them: until its training or evaluation begins (RunBegan)
_fresh_runs: dict[Path, list[Path]] = {}
# run folder -> its W&B run id, for the fresh ones: wandb.run may be an earlier run's (train.main twice in a notebook)
_fresh_wandb: dict[Path, str] = {}
# run folder -> its W&B run id and wandb's links in its W&B folder (latest-run, debug.log) as they were, for a run
# folder there before (a resume) until its training begins (RunBegan)
_resumed_wandb: dict[Path, tuple[str, dict[Path, str]]] = {}
_held_locks: dict[Path, object] = {}  # run folder -> its open lock file, held while this process trains there


class MarkTraining(Callback):
    """Records in run.json that training began: --ckpt_path last passes over a folder left by a run that stopped
    before (killed in its set-up; a refused run's new folder is removed), which has nothing to resume."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir

    def on_train_start(self, trainer, pl_module):
        info = read_run(self.run_dir) if trainer.is_global_zero else None  # rank 0 writes run.json
        if info is not None and not info.get("trained", True) and not trainer.fast_dev_run:  # a smoke test keeps none
            write_json(self.run_dir / RUN_FILE, {**info, "trained": True})


def run_began(run_dir: Path) -> None:
    """The run's training (an LR finder's sweep) or evaluation began: its folder is kept whatever happens next (no
    longer fresh: discard_fresh_runs leaves it), and its W&B run holds this part's logs (discard_refused_resume leaves
    it: an LR finder retried in its folder, refused after its sweep, kept the sweep's W&B folder)."""
    _fresh_runs.pop(run_dir, None)
    _resumed_wandb.pop(run_dir, None)


class RunBegan(Callback):
    """The run's training (an LR finder's sweep) or evaluation began: its folder is kept whatever happens next."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir

    def on_train_start(self, trainer, pl_module):
        run_began(self.run_dir)

    def on_validation_start(self, trainer, pl_module):
        if trainer.state.fn == TrainerFn.VALIDATING:  # the validate subcommand's (a fit's come after on_train_start)
            run_began(self.run_dir)

    def on_test_start(self, trainer, pl_module):
        run_began(self.run_dir)


def new_time_stamped(root: Path) -> Path:
    """root/<time stamp>, with a suffix when a job started in the same second already has that folder."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir, n = root / stamp, 1
    while run_dir.exists():
        n += 1
        run_dir = root / f"{stamp}-{n}"
    _new_stamps.add(run_dir)
    return run_dir


def forget_time_stamps() -> None:
    """Before a run's folder is chosen: the time stamps chosen for an earlier run of this process are not this one's."""
    _new_stamps.clear()


def chose_time_stamp(run_dir: Path) -> bool:
    """new_time_stamped chose `run_dir` for the run being prepared: a new folder, claimed at once by its first
    process."""
    return run_dir in _new_stamps


def missing_folders(folder: Path) -> list[Path]:
    """`folder` and the folders above it that do not exist yet: what making it makes, and a refusal removes."""
    return [f for f in (folder, *folder.parents) if not f.exists()]


def claim_time_stamped(root: Path, run_dir: Path) -> Path:
    """The new time-stamped folder `run_dir` made at once, empty, by the job's first process, so that no job started in
    the same second takes it while this one builds its model, data and Trainer (the next free name when one took it
    since its choice); a refused run removes it (discard_fresh_runs). Made only once the config was accepted, a name
    that ten jobs started together chose went to one of them, the others building everything again for the next name,
    and some gave up."""
    while True:
        made = missing_folders(run_dir)
        root.mkdir(parents=True, exist_ok=True)
        try:
            run_dir.mkdir()
        except FileExistsError:
            run_dir = new_time_stamped(root)
            continue
        _fresh_runs[run_dir] = made
        return run_dir


@dataclass
class RunPlan:
    """A run folder chosen by prepare_run, and what make_run_folder writes there once the config is accepted."""
    run_dir: Path
    kind: str
    info: dict
    wandb_dir: Path | None = None
    wandb_id: str | None = None
    notes: list[str] = field(default_factory=list)  # printed when the folder is made, not for a refused run


def make_run_folder(plan: RunPlan) -> None:
    """The run folder of a run whose config was accepted: its lock (a fit's), its W&B folder and run.json, made by the
    job's first process (the others follow it and write nothing). A folder made here (or a new time-stamped one,
    claimed when its name was chosen) is discarded if the run is refused before its training or evaluation begins
    (discard_fresh_runs)."""
    if not global_rank_zero():  # the rank that logs; torchrun's others choose their own time stamps and write nothing
        return
    run_dir = plan.run_dir
    made = missing_folders(run_dir)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        run_dir.mkdir()
    except FileExistsError:  # a folder of its own before (a resume, a retry, a SLURM job's tasks' meeting place), or
        made = []  # a new time stamp claimed by prepare_run, already in _fresh_runs
    if plan.kind not in EVALUATIONS:  # before anything is written or printed for this run
        try:
            hold_run_lock(run_dir)
        except UserError:  # another process trains there: a folder this one made or claimed is that one's now
            _fresh_runs.pop(run_dir, None)
            raise
    if made:
        _fresh_runs[run_dir] = made
    for note in plan.notes:
        print(note)
    if plan.wandb_dir is not None:
        wandb_made = missing_folders(plan.wandb_dir)
        plan.wandb_dir.mkdir(parents=True, exist_ok=True)
        if run_dir in _fresh_runs:  # a save_dir of the user's outside the run folder: emptied ones go too
            _fresh_runs[run_dir] += [folder for folder in wandb_made if run_dir not in folder.parents]
            if plan.wandb_id:
                _fresh_wandb[run_dir] = plan.wandb_id
        elif plan.wandb_id and plan.kind not in EVALUATIONS:
            links = {link: os.readlink(link) for link in plan.wandb_dir.iterdir() if link.is_symlink()}
            _resumed_wandb[run_dir] = (plan.wandb_id, links)
    write_json(run_dir / RUN_FILE, plan.info)


def discard_fresh_runs() -> list[Path]:
    """A refused run, or one stopped before it began, leaves nothing behind: the folders its make_run_folder made,
    when its training or evaluation never began and they hold no checkpoint or results (its W&B run is ended first:
    it writes there). A folder that was there before (a resume, a retry under --run_name) is never touched, nor a
    folder made above it that another process has written into since. Returns the run folders removed."""
    if not _fresh_runs:
        return []
    run = wandb_run.current_wandb_run()
    # the W&B run of a fresh run (in a notebook wandb.run may be an earlier run's, which is left alone)
    owner = next((d for d in _fresh_runs if run is not None and _fresh_wandb.get(d) == getattr(run, "id", None)), None)
    wandb_folder = wandb_run.end_wandb_run(run, exit_code=2) if owner is not None else None
    removed = []
    for run_dir, made in _fresh_runs.items():
        if any(run_dir.rglob("*.ckpt")) or (run_dir / "results.json").exists():
            continue
        # under its lock: a retry under its name meanwhile is refused, not left training in a folder being removed
        shutil.rmtree(run_dir, ignore_errors=True)
        removed.append(run_dir)
        # a W&B save_dir of the user's, outside the run folder: the W&B run's folder goes too
        if run_dir == owner and wandb_folder is not None and run_dir not in wandb_folder.parents:
            wandb_run.remove_wandb_run(wandb_folder)
        for folder in sorted(made[1:], key=lambda f: len(f.parts), reverse=True):  # one that is not empty stays
            with contextlib.suppress(OSError):
                folder.rmdir()
    release_run_locks()
    _fresh_runs.clear()
    _fresh_wandb.clear()
    return removed


def discard_refused_resume() -> None:
    """A resume refused before its training began (the style's image of another size, found as the checkpoint is
    restored), or one with nothing left to train, leaves its run's W&B run as it was: Lightning had reopened it, and
    it ended as failed, with a new local folder (offline, one more to `wandb sync`). It is ended as the run's earlier
    part ended it, and this process's folder of it goes (wandb's links beside it point where they pointed before)."""
    run = wandb_run.current_wandb_run()
    links = next((links for wandb_id, links in _resumed_wandb.values() if wandb_id == getattr(run, "id", None)), None)
    if run is not None and links is not None:
        folder = wandb_run.end_wandb_run(run, exit_code=0)
        # wandb names a folder by the second the run began: a part begun in the earlier part's second shares its folder
        if folder is not None and folder.name not in {Path(target).parts[0] for target in links.values() if target}:
            wandb_run.remove_wandb_run(folder)
            for link, target in links.items():
                with contextlib.suppress(OSError):
                    link.unlink(missing_ok=True)
                    link.symlink_to(target)
    _resumed_wandb.clear()


def hold_run_lock(run_dir: Path) -> None:
    """An exclusive lock on <run>/.lock while this process trains there (released by the OS when it exits, however
    it ends): a second process resuming the same run (`--ckpt_path last` in another terminal, a second job) is
    refused instead of writing the same checkpoints. Where the filesystem has no locks, nothing is checked."""
    try:
        import fcntl
    except ImportError:  # Windows
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = open(run_dir / ".lock", "a+")
    # a requeued SLURM job's earlier allocation has ended: a lock still held is a dead node's on NFS, which the
    # server keeps until its lease runs out (about 90 s on NFSv4); wait that out, then go on
    deadline = time.monotonic() + (LOCK_PATIENCE_SECONDS if slurm_restart() else 0)
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() < deadline:
                time.sleep(5)
                continue
            lock.seek(0)
            holder = lock.read().strip() or "unknown"
            lock.close()
            if slurm_restart():
                print(f"warning: {run_dir / '.lock'} is still held ({holder}) after {LOCK_PATIENCE_SECONDS} s; this "
                      f"requeued job goes on without it", file=sys.stderr)
                return
            raise UserError(f"run {run_dir} is being trained by another process ({holder}, which holds "
                            f"{run_dir / '.lock'}); wait for it to end or stop it, or train another run (--run_name "
                            f"NEW)") from None
        except OSError as error:  # no locks on this filesystem (Lustre mounted noflock, some NFS)
            lock.close()
            print(f"warning: {run_dir / '.lock'}: this filesystem takes no locks ({error.strerror}): a second "
                  f"process training this run (another job's --ckpt_path last) would not be refused, so start "
                  f"one at a time", file=sys.stderr)
            return
    lock.seek(0)
    lock.truncate()
    job = f", SLURM job {os.environ['SLURM_JOB_ID']}" if "SLURM_JOB_ID" in os.environ else ""
    lock.write(f"pid {os.getpid()} on {socket.gethostname()}{job}\n")
    lock.flush()
    _held_locks[run_dir] = lock
    for folder in (run_dir, run_dir / "checkpoints"):  # what the earlier processes killed mid-save left
        remove_stale_temporaries(folder)


def lock_holder(run_dir: Path) -> str | None:
    """Who trains `run_dir` now, as its .lock names them ("pid N on HOST"), when another process holds the lock;
    None when none does, or the filesystem takes no locks."""
    path = run_dir / ".lock"
    if run_dir in _held_locks or not path.is_file():
        return None
    try:
        import fcntl
    except ImportError:  # Windows
        return None
    with open(path) as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return lock.read().strip() or "unknown"
        except OSError:
            return None
        fcntl.flock(lock, fcntl.LOCK_UN)
    return None


def release_run_locks() -> None:
    """At the end of a run in this process (a second run of the same process may resume it), and in a forked child (a
    DataLoader worker): a flock lock belongs to the open file, which the child shares, so workers left running by a
    kill -9 held the run for seconds after its end."""
    for lock in _held_locks.values():
        lock.close()
    _held_locks.clear()


def forget_runs() -> None:
    """At train.main's end: this process's runs are no longer fresh or resumed, their locks released."""
    _fresh_runs.clear()
    _fresh_wandb.clear()
    _resumed_wandb.clear()
    release_run_locks()


if hasattr(os, "register_at_fork"):  # POSIX; here with the locks, whoever takes them (train.py or not)
    os.register_at_fork(after_in_child=release_run_locks)
