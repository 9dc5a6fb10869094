"""Which checkpoint a train.py run starts from: what `--ckpt_path last` means (the newest training run of the system,
--run_name's, a SLURM requeue's own), a requeue's own newest state, and the checks of a resume (the run's owner, an
earlier checkpoint of the run); the run.json of each run folder they read, and the rank and SLURM job of this process.
"""

import json
import os
from pathlib import Path

from callbacks.checkpoints import EVALUATIONS, checkpoint_step, refuse_reference_resume
from callbacks.configs import describe, import_class, model_class_of, systems
from callbacks.errors import UserError, refuse_unexpanded_home

RUN_FILE = "run.json"  # in each run folder: which system wrote it, when, its W&B run id


def read_run(run_dir: Path) -> dict | None:
    return read_json(run_dir / RUN_FILE)


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def check_run_owner(run_dir: Path, model_class: str) -> None:
    info = read_run(run_dir)
    if info and info.get("model") and info["model"] != model_class:
        theirs = describe(info["model"])
        # a class of the user's (--model my_module.MyWGAN) has no --system of its own: its run folder's system has
        use = (f"--system {theirs}" if theirs != info["model"] else
               f"--system {run_dir.parent.name} --model {theirs}" if run_dir.parent.name in systems() else
               f"--model {theirs}")
        raise UserError(f"run folder {run_dir} belongs to a {theirs} run, this is {describe(model_class)}; "
                        f"use {use} or another --run_name")


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
            refuse_in_training(run_dir)
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
        refuse_in_training(newest)
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


def refuse_in_training(run_dir: Path) -> None:
    """A run without a checkpoint yet that another process is training (its first epoch): not one that stopped
    before its first save, whose fix, a new run, would train the same thing twice."""
    from callbacks.run_lifecycle import lock_holder
    if not slurm_restart() and (holder := lock_holder(run_dir)) is not None:  # a requeue's: a dead node's, on NFS
        raise UserError(f"--ckpt_path last: run {run_dir} is being trained by another process ({holder}, which holds "
                        f"{run_dir / '.lock'}) and has saved no checkpoint yet; wait for it to end or stop it, then "
                        f"resume it")


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
