"""Where a train.py run writes: its folder (`runs/<system>/<time stamp>`, or its `--run_name`), chosen and checked
with the folders the run writes into, and its checkpoints, loggers and W&B run pointed there (prepare_run). Which
checkpoint `--ckpt_path last` means: callbacks/run_checkpoint.py; the folder made, its lock, and what a refused run
leaves behind (nothing): callbacks/run_lifecycle.py.
"""

import os
import time
import warnings
from pathlib import Path

from callbacks import run_lifecycle, wandb_run
from callbacks.checkpoints import EVALUATIONS
from callbacks.configs import describe, model_class_of
from callbacks.errors import UserError, check_output_folder, refuse_a_file_on_the_way, refuse_unexpanded_home
from callbacks.progress import add_progress_bar
from callbacks.run_checkpoint import (
    RUN_FILE,
    check_not_earlier,
    check_run_owner,
    launched_by_lightning,
    named_run,
    read_run,
    resume_own_newest,
    run_root,
    slurm_folder,
    slurm_restart,
)
from callbacks.run_lifecycle import RunPlan, claim_time_stamped, make_run_folder, new_time_stamped
from callbacks.saving import global_rank_zero
from callbacks.strategy import documented_ddp_strategy


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


def prepare_run(config, kind: str = "fit", make: bool = True) -> RunPlan:
    """Point checkpoints, logs and results at one run folder and W&B run; offline when wandb is not logged in.
    With make (the default) the folder is made at once; else make_run_folder makes it, once the config is accepted.

    kind: fit, lr_find, or the LightningCLI subcommand validate/test, which gets a folder of its own (not
    the checkpoint's run, whose config.yaml and test outputs it would replace)."""
    trainer, root, model_class = config.trainer, run_root(config), model_class_of(config)
    check_output_folder(root, "--trainer.default_root_dir")  # a dangling link or a read-only folder: one line
    # DDP's re-launched ranks (LOCAL_RANK set by Lightning's launcher) and SLURM tasks must all agree on the
    # folder, hence no per-process clock for them
    run_lifecycle.forget_time_stamps()
    if kind in EVALUATIONS:
        run_dir = evaluation_folder(config, root, kind)
    else:
        run_dir = fit_folder(config, root, model_class)
    # torchrun's other ranks choose their own, and write nothing
    if run_lifecycle.chose_time_stamp(run_dir) and global_rank_zero():
        run_dir = claim_time_stamped(root, run_dir)
    os.environ["DL2_RUN_NAME"] = run_dir.name  # inherited by the ranks Lightning launches
    trainer.default_root_dir = str(run_dir)
    for callback in trainer.callbacks or []:
        if callback.class_path.endswith("ModelCheckpoint") and not callback.init_args.get("dirpath"):
            callback.init_args.dirpath = str(run_dir / "checkpoints")
        elif callback.class_path.endswith("ModelCheckpoint"):
            refuse_unexpanded_home(callback.init_args.dirpath, "--trainer.callbacks.dirpath")
    saved = read_run(run_dir)
    info = saved or {"system": describe(model_class), "model": model_class, "started": time.time(), "kind": kind,
                     "trained": False}
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
    # a resume that logs otherwise than its run began: W&B's dashboard would miss a part of the run without a word
    if kind == "fit" and config.get("ckpt_path") and saved is not None and global_rank_zero():
        if "wandb_id" in info and not wandb_loggers:
            plan.notes.append(f"W&B: this resume logs to no W&B run; the run's, {info['wandb_id']}, ends where the "
                              f"run stopped (resume with the run's logger, without --trainer.logger false, to go on in "
                              f"it)")
        elif "wandb_id" not in info and wandb_loggers:
            plan.notes.append("W&B: the run began without W&B (--trainer.logger false): this resume's W&B run begins "
                              "at its checkpoint's step, without the run's start")
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
        elif args.get("offline") and global_rank_zero():  # WANDB_MODE=offline, a compute node's: where it all is
            why = "WANDB_MODE=offline" if os.environ.get("WANDB_MODE") else "--trainer.logger.offline true"
            plan.notes.append(f"W&B: offline ({why}), logging to {plan.wandb_dir}; upload later with `wandb sync "
                              f"{plan.wandb_dir}/offline-run-*`")
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
