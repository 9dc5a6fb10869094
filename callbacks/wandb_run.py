"""The W&B run of a train.py run: its id, its tags, whether this machine is logged in, and a refused run's removal."""

import contextlib
import os
import secrets
import shutil
import string
import sys
from pathlib import Path


def new_wandb_id() -> str:
    """Eight lower-case letters and digits, the form of wandb's own run ids."""
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))


def env_tags() -> list[str]:
    """WANDB_TAGS's tags, comma-separated as wandb reads them."""
    return [tag.strip() for tag in os.environ.get("WANDB_TAGS", "").split(",") if tag.strip()]


def end_wandb_run(run, exit_code: int) -> Path | None:
    """End the W&B run `run` (wandb.finish) and return its folder, offline-run-<time>-<id>/ in the W&B save_dir;
    None when it cannot be read. The run is ended first: it writes there."""
    folder = None
    with contextlib.suppress(Exception):
        folder = Path(run.dir).parent
    with contextlib.suppress(Exception):
        sys.modules["wandb"].finish(exit_code=exit_code)
    return folder


def remove_wandb_run(folder: Path) -> None:
    """A W&B run's folder and wandb's links beside it that point into it (latest-run, debug.log, debug-internal.log),
    which would dangle."""
    real = Path(os.path.realpath(folder))
    shutil.rmtree(folder, ignore_errors=True)
    for link in folder.parent.iterdir() if folder.parent.is_dir() else []:
        target = Path(os.path.realpath(link))
        if link.is_symlink() and (target == real or real in target.parents):
            with contextlib.suppress(OSError):
                link.unlink()


def wandb_logged_in() -> bool:
    """wandb's own check (API key, netrc, settings file, identity token) without a prompt or verifying the key (wandb
    0.31 still looks up the user name of a WANDB_API_KEY unless WANDB_SILENT is set: up to 5 s without a network).

    WANDB_MODE set means the user has decided (offline, disabled or online): the logger is left as configured.
    """
    if os.environ.get("WANDB_MODE"):
        return True
    import wandb
    if wandb.run is not None:  # a run the caller began (wandb.init in a notebook), which the logger logs into: the
        return True             # check's teardown below would end it
    wandb.teardown()  # set up by an earlier run of the process (offline: wandb warned it could not verify a login)
    try:
        logged_in = bool(wandb.login(prompt=False, verify=False))
    except TypeError:  # wandb before login(prompt=...) (0.19 at the floor): its API's stored key, no prompt
        logged_in = bool(wandb.api.api_key)
    wandb.teardown()  # the check fixed wandb's settings (mode) for the process; the logger's wandb.init re-reads them
    return logged_in


def forget_wandb_settings(offline: bool) -> None:
    """Before the logger's wandb.init: wandb reads its environment (WANDB_MODE, through which WandbLogger makes a run
    offline; WANDB_RUN_ID, WANDB_SWEEP_ID, ...) once per process, as it is first set up. Set up earlier (a notebook's
    wandb.init, a run before `%env WANDB_MODE=...`, a sweep run's), it kept those: online, it asked for a login; a
    sweep's run id stood in for the next run's. Its set-up is dropped when the environment changed since or its mode is
    not the run's (kept otherwise: a notebook's wandb.setup with its server's base_url), unless a run of the caller's
    is open. An older wandb, whose set-up cannot be read here, is always set up afresh."""
    wandb = sys.modules.get("wandb")
    if wandb is None or getattr(wandb, "run", None) is not None or not hasattr(wandb, "teardown"):
        return
    setup = sys.modules.get("wandb.sdk.wandb_setup")
    if setup is not None and hasattr(setup, "_singleton"):
        singleton = setup._singleton
        if singleton is None or getattr(singleton, "_pid", None) != os.getpid():
            return  # not set up in this process: wandb.init reads the environment
        def mode(value) -> str:
            return {"dryrun": "offline"}.get(str(value).lower(), str(value).lower())
        wanted = os.environ.get("WANDB_MODE") or ("offline" if offline else "online")
        changed = getattr(singleton, "did_environment_change", None)
        if mode(getattr(singleton.settings, "mode", None)) == mode(wanted) and callable(changed) and not changed():
            return
    wandb.teardown()


def current_wandb_run():
    wandb = sys.modules.get("wandb")
    return getattr(wandb, "run", None) if wandb is not None else None


def finish_wandb_run(earlier, exit_code: int) -> None:
    """End the W&B run this train.main began, as the process's end would: Lightning's WandbLogger leaves it open, and
    a second train.main in the same process (a notebook, a sweep script) logged into the first one's run."""
    run = current_wandb_run()
    if run is not None and run is not earlier:
        with contextlib.suppress(Exception):
            sys.modules["wandb"].finish(exit_code=exit_code)
