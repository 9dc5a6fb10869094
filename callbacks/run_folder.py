"""Where a train.py run writes: its folder (`runs/<system>/<time stamp>`, or its `--run_name`), `run.json`, its lock,
which checkpoint `--ckpt_path last` means, and what a refused run leaves behind (nothing).
"""

import contextlib
import json
import os
import shutil
import socket
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from lightning.pytorch import Callback
from lightning.pytorch.trainer.states import TrainerFn

from callbacks import wandb_run
from callbacks.checkpoint_io import remove_stale_temporaries, write_json
from callbacks.checkpoints import EVALUATIONS, checkpoint_step, refuse_reference_resume
from callbacks.configs import describe, import_class, model_class_of
from callbacks.errors import UserError, check_output_folder, refuse_a_file_on_the_way, refuse_unexpanded_home
from callbacks.progress import add_progress_bar
from callbacks.saving import global_rank_zero
from callbacks.strategy import documented_ddp_strategy

RUN_FILE = "run.json"  # in each run folder: which system wrote it, when, its W&B run id
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


class RunBegan(Callback):
    """The run's training (an LR finder's sweep) or evaluation began: its folder is kept whatever happens next."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir

    def on_train_start(self, trainer, pl_module):
        _fresh_runs.pop(self.run_dir, None)
        _resumed_wandb.pop(self.run_dir, None)

    def on_validation_start(self, trainer, pl_module):
        if trainer.state.fn == TrainerFn.VALIDATING:  # the validate subcommand's (a fit's come after on_train_start)
            _fresh_runs.pop(self.run_dir, None)

    def on_test_start(self, trainer, pl_module):
        _fresh_runs.pop(self.run_dir, None)


def read_run(run_dir: Path) -> dict | None:
    return read_json(run_dir / RUN_FILE)


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def newest_last_checkpoint(root: Path, model_class: str, run_name: str | None, evaluation: bool = False) -> Path:
    """--ckpt_path last: checkpoints/last.ckpt of the newest training run of this system (or of --run_name)."""
    from lightning_modules.inference import trained_run
    system = describe(model_class)
    start = f"train one first (python train.py --system {system})" if evaluation else "start one without --ckpt_path"
    if run_name:
        run_dir = root / run_name
        if not run_dir.is_dir():
            raise UserError(f"--run_name {run_name}: no run folder {run_dir}; runs there: "
                            f"{', '.join(sorted(p.name for p in root.glob('*/') if p.is_dir())) or 'none'}")
        check_run_owner(run_dir, model_class)
        if (kind := (read_run(run_dir) or {}).get("kind", "fit")) != "fit":
            raise UserError(f"--run_name {run_name}: {run_dir} holds a {kind}, not a training run with checkpoints")
        last = run_dir / "checkpoints" / "last.ckpt"
        if not last.is_file():
            refuse_without_last(run_dir)
            fix = "give another run" if evaluation else "start a new run without --ckpt_path"
            raise UserError(f"--ckpt_path last: run {run_dir} has no checkpoints/last.ckpt (it stopped before its "
                            f"first save); {fix}")
        return last
    runs = [(info.get("started", 0.0), d) for d in (root.iterdir() if root.is_dir() else [])
            if (info := read_run(d)) and info.get("model") == model_class and trained_run(info)]
    if not runs:
        unknown = sorted(p.parent.parent for p in root.glob("*/checkpoints/last.ckpt") if read_run(p.parent.parent)
                         is None)
        hint = (f"; folders without {RUN_FILE} (older train.py): give --ckpt_path {unknown[-1]}/checkpoints/last.ckpt"
                if unknown else "")
        raise UserError(f"--ckpt_path last: no {system} run in {root} yet; {start}{hint}")
    runs.sort(key=lambda r: r[0])
    newest = runs[-1][1]
    last = newest / "checkpoints" / "last.ckpt"
    if not last.is_file():
        refuse_without_last(newest)
        older = [d.name for _, d in runs[:-1] if (d / "checkpoints" / "last.ckpt").is_file()]
        also = (f"; or resume an older run: --run_name {older[-1]} --ckpt_path last" if older else "")
        why = ("it finished without one: its config keeps no checkpoints" if (newest / "results.json").is_file()
               else "it stopped before its first save")
        raise UserError(f"--ckpt_path last: the newest {system} run, {newest}, has no checkpoint ({why}); start a "
                        f"new run without --ckpt_path{also}")
    return last


def saved_checkpoints(run_dir: Path) -> dict[Path, int]:
    """The readable checkpoints in a run's checkpoints/ folder (last.ckpt, epoch or step saves, best-*, cycle
    snapshots) and their steps."""
    steps = {path: checkpoint_step(path) for path in sorted((run_dir / "checkpoints").glob("*.ckpt"))
             if path.is_file()}
    return {path: step for path, step in steps.items() if step is not None}


def refuse_without_last(run_dir: Path) -> None:
    """A run without last.ckpt that saved nonetheless: Lightning's save_last "link" (the CycleGAN's) removes the link
    and the previous epoch's file before linking the new one, and a crash there left the run's newest save alone."""
    if saved := saved_checkpoints(run_dir):
        path = max(saved, key=saved.get)
        raise UserError(f"--ckpt_path last: run {run_dir} has no checkpoints/last.ckpt, but it saved {path.name} "
                        f"(step {saved[path]}; a crash as last.ckpt was relinked?); give --ckpt_path "
                        f"{path}")


def check_run_owner(run_dir: Path, model_class: str) -> None:
    info = read_run(run_dir)
    if info and info.get("model") and info["model"] != model_class:
        theirs = describe(info["model"])
        raise UserError(f"run folder {run_dir} belongs to a {theirs} run, this is {describe(model_class)}; "
                        f"use --system {theirs} or another --run_name")


def new_time_stamped(root: Path) -> Path:
    """root/<time stamp>, with a suffix when a job started in the same second already has that folder."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir, n = root / stamp, 1
    while run_dir.exists():
        n += 1
        run_dir = root / f"{stamp}-{n}"
    _new_stamps.add(run_dir)
    return run_dir


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


def launched_by_lightning(variable: str) -> bool:
    """A rank that Lightning's DDP launcher started from rank 0 (LOCAL_RANK >= 1), which inherits rank 0's choices in
    `variable`; not torchrun's rank 0, nor a process that ran an in-process DDP before (both have LOCAL_RANK 0)."""
    return int(os.environ.get("LOCAL_RANK") or 0) >= 1 and variable in os.environ


def named_run(config) -> str | None:
    """--run_name, or on a rank Lightning launched, rank 0's run folder."""
    return config.run_name or (os.environ["DL2_RUN_NAME"] if launched_by_lightning("DL2_RUN_NAME") else None)


def slurm_folder() -> str | None:
    """A SLURM job's run folder, slurm-<job id>: its requeues carry on there."""
    return f"slurm-{os.environ['SLURM_JOB_ID']}" if "SLURM_JOB_ID" in os.environ else None


def run_root(config) -> Path:
    refuse_unexpanded_home(config.trainer.default_root_dir or "runs", "--trainer.default_root_dir")
    return Path(config.trainer.default_root_dir or "runs").absolute()


def resolve_checkpoint(config, kind: str) -> None:
    """--ckpt_path last -> the checkpoints/last.ckpt it means, the same file in every process of a job; for an
    evaluation (validate/test) also the checks of its flags."""
    root, model_class, ckpt_path = run_root(config), model_class_of(config), config.get("ckpt_path")
    if kind in EVALUATIONS:
        if not ckpt_path:  # Lightning would evaluate the untrained weights of a new model
            raise UserError(f"{kind} needs --ckpt_path: a .ckpt file, or last (the newest "
                            f"{describe(model_class)} run's; --run_name NAME --ckpt_path last: that run's)")
        if ckpt_path != "last":
            if config.run_name:
                raise UserError(f"--run_name with {kind} picks the run whose checkpoint it reads (--run_name NAME "
                                f"--ckpt_path last); the outputs go to a folder of their own, so drop --run_name here")
        elif launched_by_lightning("DL2_CKPT_PATH"):
            config.ckpt_path = os.environ["DL2_CKPT_PATH"]
        else:
            config.ckpt_path = str(newest_last_checkpoint(root, model_class, config.run_name, evaluation=True))
    elif kind == "lr_find" and ckpt_path:  # it would write into that run's folder, and the sweep never loads it
        raise UserError("--lr_find starts from new weights and writes a folder of its own; drop --ckpt_path")
    elif ckpt_path == "last":  # a SLURM requeue narrows to its own folder, a new SLURM job does not
        slurm_name = slurm_folder()
        requeue = slurm_name if slurm_name and (root / slurm_name).is_dir() else None
        config.ckpt_path = str(newest_last_checkpoint(root, model_class, named_run(config) or requeue))
    if config.get("ckpt_path"):  # a run folder stands for its last.ckpt, as for --init_from and the commands
        from lightning_modules.inference import run_folder_checkpoint
        config.ckpt_path = run_folder_checkpoint(config.ckpt_path)
        if Path(config.ckpt_path).is_dir():
            try:
                system_class = import_class(model_class)
            except (ImportError, AttributeError, ValueError):  # a user's class path: Lightning's error names it
                system_class = None
            if system_class is not None:
                refuse_reference_resume(config.ckpt_path, system_class)
            raise UserError(f"--ckpt_path {config.ckpt_path}: a folder without checkpoints/last.ckpt; give a .ckpt "
                            "file, a run folder or 'last' for the newest run")
        if not Path(config.ckpt_path).is_file():
            raise UserError(f"--ckpt_path {config.ckpt_path}: no such file; give a .ckpt file or 'last' for the "
                            "newest run")


def fit_folder(config, root: Path, model_class: str) -> Path:
    """fit and lr_find: the run folder, a resumed run's own, --run_name's, a SLURM job's or a new time stamp."""
    run_name, slurm_name, ckpt_path = named_run(config), slurm_folder(), config.get("ckpt_path")
    own_folder = Path(ckpt_path).absolute().parent.parent if ckpt_path else None
    if own_folder is not None and Path(ckpt_path).parent.name == "checkpoints" and (
            run_name is None or own_folder.name == run_name):
        run_dir = own_folder  # a resumed run carries on in its own folder
        check_run_owner(run_dir, model_class)
        if not (slurm_restart() and resume_own_newest(config, run_dir)):
            check_not_earlier(Path(ckpt_path), run_dir)
    elif run_name or slurm_name:
        run_dir = root / (run_name or slurm_name)
        if read_run(run_dir) is not None:
            check_run_owner(run_dir, model_class)
            # a SLURM requeue: the same job carries on in its folder (SLURM counts the restarts); a job's earlier
            # training (a second train.py in one sbatch script or salloc shell) is no requeue
            requeued = slurm_restart()
            # a run that stopped before training (a typo'd path) may be retried in its folder: nothing to lose
            retry = not read_run(run_dir).get("trained", True) and not ckpt_path
            # the other ranks follow rank 0 (a rank Lightning launched has LOCAL_RANK >= 1: never global rank zero)
            if global_rank_zero() and not (requeued or retry):
                if not run_name:
                    raise UserError(f"run folder {run_dir} holds an earlier training of SLURM job "
                                    f"{os.environ['SLURM_JOB_ID']}, and this is no requeue of the job "
                                    f"(SLURM_RESTART_COUNT unset); give each training of a job its own --run_name, "
                                    f"or resume that run with --run_name {run_dir.name} --ckpt_path last")
                raise UserError(f"run folder {run_dir} exists already; resume it with --run_name {run_dir.name} "
                                f"--ckpt_path last, or choose another --run_name")
            if requeued:
                resume_own_newest(config, run_dir)
    else:
        run_dir = new_time_stamped(root)
    return run_dir


def slurm_restart() -> bool:
    """A SLURM requeue of this job (SLURM counts the restarts)."""
    return slurm_folder() is not None and int(os.environ.get("SLURM_RESTART_COUNT", 0)) > 0


def resume_own_newest(config, run_dir: Path) -> bool:
    """A requeued job carries on from its run's own newest state, whatever --ckpt_path its command line gave (the
    checkpoint it began from: read again, it would undo the job's training): of Lightning's hpc_ckpt files (its saves
    on SLURM's time-limit signal), checkpoints/last.ckpt and the other saves there (a crash as Lightning's save_last
    "link" relinked last.ckpt left none: refuse_without_last), the one of the latest step (Lightning would take its
    newest hpc_ckpt, however old: a requeue after a later preemption went back to it). False when the job saved nothing
    yet."""
    last = run_dir / "checkpoints" / "last.ckpt"
    saved = [path for path in (*run_dir.glob("hpc_ckpt_*.ckpt"), *(run_dir / "checkpoints").glob("*.ckpt"))
             if path.is_file()]  # last.ckpt among them
    if not saved:
        return False
    steps = {path: checkpoint_step(path) for path in saved}  # None: torn (a crash mid-save), taken only if alone
    config.ckpt_path = str(max(saved, key=lambda path: (-1 if steps[path] is None else steps[path], path == last)))
    if config.get("init_from"):  # the job began from those weights, and its checkpoint carries them on: loading
        config.init_from = None  # them again would undo its training
    return True


def check_not_earlier(checkpoint: Path, run_dir: Path) -> None:
    """A fit from a run's own earlier checkpoint (best-*.ckpt, a cycle snapshot) would carry on in that folder and
    replace its later last.ckpt, test outputs and results.json: refused, with the form that keeps them."""
    last = run_dir / "checkpoints" / "last.ckpt"
    if checkpoint.absolute() == last.absolute() or not last.is_file():
        return
    step, newest = checkpoint_step(checkpoint), checkpoint_step(last)
    if step is not None and newest is not None and step < newest:
        raise UserError(f"--ckpt_path {checkpoint}: an earlier checkpoint of run {run_dir.name} (step {step}; the run "
                        f"is at step {newest}); carried on in that folder it would replace the run's later checkpoints "
                        f"and results. Add --run_name NEW to carry it on in a new run folder")


def evaluation_folder(config, root: Path, kind: str) -> Path:
    """validate/test: a folder of its own for the outputs, never the checkpoint's run, whose config.yaml and
    test outputs they would replace. DDP's launched ranks take rank 0's; a SLURM job step's tasks (and a requeue)
    meet in slurm-<job id>[-<step>]-<kind>, which refuses another checkpoint's evaluation."""
    os.environ["DL2_CKPT_PATH"] = config.ckpt_path  # inherited by the ranks Lightning launches
    # the checkpoint's ModelCheckpoint state names its own run's folder, which Lightning warns about
    warnings.filterwarnings("ignore", message=r"The dirpath has changed from")
    if launched_by_lightning("DL2_RUN_NAME"):
        return root / os.environ["DL2_RUN_NAME"]
    if (slurm_name := slurm_folder()) is None:
        return new_time_stamped(root)
    step = os.environ.get("SLURM_STEP_ID", "")
    run_dir = root / f"{slurm_name}{'-' + step if step.isdigit() else ''}-{kind}"
    earlier = (read_run(run_dir) or {}).get("checkpoint")
    if earlier and earlier != str(Path(config.ckpt_path).absolute()):  # every task reads the same run.json
        raise UserError(f"{run_dir} holds this job's {kind} of {earlier}; run each {kind} in a step of its own "
                        f"(srun), or give this one another --trainer.default_root_dir")
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


def prepare_run(config, kind: str = "fit", make: bool = True) -> RunPlan:
    """Point checkpoints, logs and results at one run folder and W&B run; offline when wandb is not logged in.
    With make (the default) the folder is made at once; else make_run_folder makes it, once the config is accepted.

    kind: fit, lr_find, or the LightningCLI subcommand validate/test, which gets a folder of its own (not
    the checkpoint's run, whose config.yaml and test outputs it would replace)."""
    trainer, root, model_class = config.trainer, run_root(config), model_class_of(config)
    check_output_folder(root, "--trainer.default_root_dir")  # a dangling link or a read-only folder: one line
    # DDP's re-launched ranks (LOCAL_RANK set by Lightning's launcher) and SLURM tasks must all agree on the
    # folder, hence no per-process clock for them
    _new_stamps.clear()
    if kind in EVALUATIONS:
        run_dir = evaluation_folder(config, root, kind)
    else:
        run_dir = fit_folder(config, root, model_class)
    if run_dir in _new_stamps and global_rank_zero():  # torchrun's other ranks choose their own, and write nothing
        run_dir = claim_time_stamped(root, run_dir)
    os.environ["DL2_RUN_NAME"] = run_dir.name  # inherited by the ranks Lightning launches
    trainer.default_root_dir = str(run_dir)
    for callback in trainer.callbacks or []:
        if callback.class_path.endswith("ModelCheckpoint") and not callback.init_args.get("dirpath"):
            callback.init_args.dirpath = str(run_dir / "checkpoints")
        elif callback.class_path.endswith("ModelCheckpoint"):
            refuse_unexpanded_home(callback.init_args.dirpath, "--trainer.callbacks.dirpath")
    info = read_run(run_dir) or {"system": describe(model_class), "model": model_class, "started": time.time(),
                                 "kind": kind, "trained": False}
    if kind in EVALUATIONS:
        info["checkpoint"] = str(Path(config.ckpt_path).absolute())
    plan = RunPlan(run_dir, kind, info)
    if trainer.get("enable_checkpointing") is False:  # Lightning refuses the flag beside the config's ModelCheckpoint
        trainer.callbacks = [c for c in trainer.callbacks or [] if not c.class_path.endswith("ModelCheckpoint")]
    loggers = trainer.logger if isinstance(trainer.logger, list) else [trainer.logger]  # a config's list of loggers
    loggers = [logger for logger in loggers if logger not in (False, None)]
    if not loggers:  # LearningRateMonitor refuses to run without a logger
        trainer.callbacks = [c for c in trainer.callbacks or [] if not c.class_path.endswith("LearningRateMonitor")]
    wandb_loggers = [logger for logger in loggers if getattr(logger, "class_path", "").endswith("WandbLogger")]
    if wandb_loggers:  # the first: two would share the run's W&B id
        args = wandb_loggers[0].init_args
        if args.get("save_dir") in (None, "."):
            args.save_dir = str(run_dir)
        refuse_unexpanded_home(args.save_dir, "--trainer.logger.save_dir")
        plan.wandb_dir = Path(args.save_dir, "wandb")  # older wandb falls back to /tmp without it
        # a resume keeps the name the run began with (wandb renames the run to the name it is given); wandb's own
        # variables (WANDB_NAME, WANDB_TAGS, WANDB_RUN_GROUP, WANDB_JOB_TYPE) stand for the options not given, as
        # wandb.init reads them: the values set here in their place had them ignored
        args.name = args.get("name") or os.environ.get("WANDB_NAME") or info.get("wandb_name") or run_dir.name
        # a W&B run open in this process (a notebook's wandb.init, or an earlier plain Trainer's WandbLogger, which
        # leaves its run open): Lightning's WandbLogger logs into it whatever it is given, so run.json names that run,
        # where a resume goes on; a resume of a run of another W&B id would log into it and is refused
        callers_run = open_run = wandb_run.current_wandb_run() if global_rank_zero() else None
        if open_run is not None and getattr(open_run, "disabled", False):  # wandb.init(mode="disabled"): no W&B run
            plan.notes.append("W&B: a disabled W&B run is open in this process (wandb.init(mode=\"disabled\")), which "
                              "Lightning's WandbLogger logs into: nothing of this run goes to W&B; call wandb.finish() "
                              "before train.main to log it")
            open_run = None  # its id, project and entity ("dummy") are no W&B run's to resume in
        if open_run is not None and info.get("wandb_id") not in (None, open_run.id):
            raise UserError(f"a W&B run is open in this process ({open_run.id}, project {open_run.project}): "
                            f"Lightning's WandbLogger would log this run, W&B run {info['wandb_id']}, into it; call "
                            f"wandb.finish() first (or --trainer.logger false)")
        if open_run is not None:
            info.update(wandb_id=open_run.id, wandb_project=open_run.project or None,
                        wandb_entity=open_run.entity or None)
            args.id, args.name = open_run.id, open_run.name or args.name
            plan.notes.append(f"W&B: logging into the W&B run open in this process, {open_run.id} (project "
                              f"{open_run.project}), as Lightning's WandbLogger does; call wandb.finish() before "
                              f"train.main for a W&B run of its own")
        info["wandb_name"] = args.name
        # a resume goes on in the W&B run the run began, as run.json keeps it: a run id names a run of one project, so
        # a resume without the first part's --trainer.logger.project/entity logged into a new run of the config's
        # project; and wandb replaces a resumed run's tags with those given (the system's alone)
        for key in ("project", "entity"):
            if info.get(f"wandb_{key}") is not None:
                setattr(args, key, info[f"wandb_{key}"])
            elif os.environ.get("WANDB_SWEEP_ID") and os.environ.get(f"WANDB_{key.upper()}"):
                # a sweep agent's run, which wandb logs in the sweep's project and entity (the agent sets them),
                # whatever it is given: a later resume of its folder outside the agent went to the config's
                setattr(args, key, os.environ[f"WANDB_{key.upper()}"])
            elif key == "entity" and not args.get("entity") and os.environ.get("WANDB_ENTITY"):
                args.entity = os.environ["WANDB_ENTITY"]  # wandb.init's for an entity not given: where the run is
            info[f"wandb_{key}"] = args.get(key)
        # the dashboard can filter by system (beside the tags given) and tell a fit from a test or an LR finder's run
        tags = ([tag for tag in args.get("tags") or wandb_run.env_tags() if tag != info["system"]]
                or info.get("wandb_tags") or [])
        args.tags = [info["system"], *tags]
        info["wandb_tags"] = tags
        args.group = args.get("group") or os.environ.get("WANDB_RUN_GROUP") or info.get("wandb_group")
        info["wandb_group"] = args.group
        args.job_type = args.get("job_type") or os.environ.get("WANDB_JOB_TYPE") or kind
        if args.get("id") or args.get("version"):  # the user's id, kept for a resume that does not give it again
            info.setdefault("wandb_id", args.get("id") or args.get("version"))
        else:  # one W&B run per run folder, across resumes
            # a W&B sweep's agent gives each run its id (WANDB_RUN_ID), and wandb.init ignores any other there
            info.setdefault("wandb_id", os.environ.get("WANDB_RUN_ID") or wandb_run.new_wandb_id())
            args.id = info["wandb_id"]
        # the W&B run this train.main begins, ended (and removed) if the run is refused before it begins; never the
        # caller's open run, which it only logs into
        plan.wandb_id = None if callers_run is not None else args.get("id") or args.get("version")
        if os.environ.get("WANDB_MODE", "").lower() in ("offline", "dryrun"):
            args.offline = True  # as wandb will run: the logged config said offline: false under WANDB_MODE=offline
        if not args.get("offline") and global_rank_zero() and not wandb_run.wandb_logged_in():  # only rank 0 logs
            args.offline = True
            plan.notes.append(f"W&B: not logged in (`wandb login`), logging offline to {plan.wandb_dir}; "
                              f"upload later with `wandb sync {plan.wandb_dir}/offline-run-*`")
        wandb_run.forget_wandb_settings(bool(args.get("offline")))
        if args.get("offline") and args.get("log_model"):  # WandbLogger refuses the pair; checkpoints stay local
            args.log_model = False
            plan.notes.append("W&B: offline, so --trainer.logger.log_model is off (the checkpoints stay in the run "
                              "folder)")
    for logger in loggers:  # <save_dir>/<system>/<run name>/: a resume goes on in the run's TensorBoard folder
        if getattr(logger, "class_path", "").endswith("TensorBoardLogger"):  # (Lightning's: lightning_logs/version_N)
            if logger.init_args.get("name") in (None, "lightning_logs"):
                logger.init_args.name = info["system"]
            if logger.init_args.get("version") is None:
                logger.init_args.version = run_dir.name
    check_run_folders(run_dir, [Path(c.init_args.dirpath) for c in trainer.callbacks or []
                                if c.class_path.endswith("ModelCheckpoint")], plan.wandb_dir)
    documented_ddp_strategy(config)  # --trainer.strategy ddp -> ddp_find_unused_parameters_true for the GANs
    add_progress_bar(trainer)  # the training signal, read once per logging interval; plain lines off a terminal
    if make:
        make_run_folder(plan)
    return plan


def check_run_folders(run_dir: Path, checkpoint_dirs: list[Path], wandb_dir: Path | None) -> None:
    """The run folder and the folders the run writes into (checkpoints, images, the style's results, W&B's): a file
    standing where one goes, or above one (a --trainer.callbacks.dirpath or --trainer.logger.save_dir below a file),
    stopped the run with a traceback when first written to, the checkpoints' after the first epoch's training, the
    images' in the test after the fit. Refused before the run's folder is made."""
    inside = [run_dir / "images", run_dir / "stylized"]
    outside = [*((d, "--trainer.callbacks.dirpath", d) for d in checkpoint_dirs),
               *([(wandb_dir, "--trainer.logger.save_dir", wandb_dir.parent)] if wandb_dir is not None else [])]
    refuse_a_file_on_the_way(run_dir, "--run_name", "")
    for folder, option, given in outside:  # the option that moves it, and its value, unless in the run folder
        if not folder.is_relative_to(run_dir):
            refuse_a_file_on_the_way(folder, option, f"{option} {given}: ")
            # in another run's folder: its last.ckpt and best-*.ckpt replaced by this run's, Lightning said no more
            # than "exists and is not empty"
            other = next((part for part in (folder, *folder.parents) if (part / RUN_FILE).is_file()), None)
            if other is not None:
                raise UserError(f"{option} {given}: {other} is the folder of another run ({RUN_FILE} there), whose "
                                f"files this run's would replace or mix with; give a folder outside it")
        else:
            inside.append(folder)
    for folder in inside:
        refuse_a_file_on_the_way(folder, "--run_name", f"run folder {run_dir}: ")


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
        except OSError:  # no locks on this filesystem
            lock.close()
            return
    lock.seek(0)
    lock.truncate()
    job = f", SLURM job {os.environ['SLURM_JOB_ID']}" if "SLURM_JOB_ID" in os.environ else ""
    lock.write(f"pid {os.getpid()} on {socket.gethostname()}{job}\n")
    lock.flush()
    _held_locks[run_dir] = lock
    for folder in (run_dir, run_dir / "checkpoints"):  # what the earlier processes killed mid-save left
        remove_stale_temporaries(folder)


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
