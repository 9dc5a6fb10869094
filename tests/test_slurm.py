"""SLURM: the sbatch examples parse and hand train.py arguments it accepts; a requeue resumes in the same run."""

import contextlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from conftest import ROOT

import train

pytestmark = pytest.mark.usefixtures("one_thread")

SLURM = ROOT / "configs" / "slurm"
SYSTEMS = ["darknet", "wgan", "cyclegan", "style"]
# the sbatch options the examples may use, and the ones a requeue needs
KNOWN = {"job-name", "nodes", "ntasks-per-node", "gpus-per-node", "cpus-per-task", "time", "output", "open-mode",
         "signal", "requeue"}
LAYOUTS = {"one GPU": (1, 1), "one node of 4 GPUs": (1, 4), "2 nodes of 4 GPUs": (2, 4)}


def sbatch_options(text: str) -> dict[str, str | None]:
    """#SBATCH lines as sbatch reads them: only before the first command; one `--name[=value]` each."""
    options, header = {}, True
    for line in text.splitlines()[1:]:
        if line.startswith("#SBATCH"):
            assert header, f"#SBATCH after the first command is ignored by sbatch: {line}"
            match = re.fullmatch(r"#SBATCH --([a-z-]+)(?:=(\S+))?", line)
            assert match, f"not one well-formed option (no trailing comment): {line!r}"
            assert match[1] in KNOWN, match[1]
            options[match[1]] = match[2]
        elif line.strip() and not line.startswith("#"):
            header = False
    return options


@pytest.mark.parametrize("system", SYSTEMS)
def test_sbatch_script_is_well_formed_and_requeues(system):
    path = SLURM / f"{system}.sbatch"
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0
    options = sbatch_options(path.read_text())
    assert options["signal"] == "SIGUSR1@90" and "requeue" in options and options["open-mode"] == "append"
    assert re.fullmatch(r"\d+:\d\d:\d\d", options["time"]) and options["ntasks-per-node"] == "1"
    assert subprocess.run(["bash", "-n", str(SLURM / "launch.sh")]).returncode == 0


def srun_command(system: str, nodes: int, per_node: int, tmp_path) -> list[str]:
    """Run the sbatch script as SLURM would, with a fake srun that records what it was asked to start."""
    record = tmp_path / "srun.args"
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    (fake / "srun").write_text(f'#!/bin/bash\nprintf "%s\\0" "$@" > "{record}"\n')
    (fake / "srun").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}{os.pathsep}{os.environ['PATH']}", "SLURM_SUBMIT_DIR": str(ROOT),
           "SLURM_NNODES": str(nodes), "SLURM_NTASKS_PER_NODE": str(per_node), "DL2_VENV": str(tmp_path / "none")}
    result = subprocess.run(["bash", str(SLURM / f"{system}.sbatch"), "--trainer.max_epochs", "3"], env=env,
                            cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return record.read_text().split("\0")[:-1]


@pytest.mark.parametrize("system", SYSTEMS)
def test_each_layout_starts_train_py_with_arguments_it_accepts(system, tmp_path):
    documented = (SLURM / f"{system}.sbatch").read_text()
    for layout, (nodes, per_node) in LAYOUTS.items():
        if f"# {layout}:" not in documented:
            assert system == "style" and per_node > 1  # L-BFGS: one process
            continue
        command = srun_command(system, nodes, per_node, tmp_path)
        # a task that stops on an error ends the others (not left at DDP's rendezvous until its timeout)
        assert command[0] == "--kill-on-bad-exit=1"
        command = command[1:]
        assert command[:2] == ["python", "train.py"]
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_:
            train.main(command[2:] + ["--print_config"])
        assert exit_.value.code in (0, None), out.getvalue()
        trainer = yaml.safe_load(out.getvalue())["trainer"]
        assert (int(trainer["devices"]), trainer["num_nodes"], trainer["max_epochs"]) == (per_node, nodes, 3), layout
        expected = {"wgan": "ddp_find_unused_parameters_true", "cyclegan": "ddp_find_unused_parameters_true"}
        assert trainer["strategy"] == ("auto" if nodes * per_node == 1 else expected.get(system, "ddp")), layout


def test_each_task_gets_the_cpus_per_task_of_the_sbatch_script(tmp_path):
    # Slurm 22.05 and later: srun no longer reads SLURM_CPUS_PER_TASK (sbatch's --cpus-per-task=8), only its own option
    # or SRUN_CPUS_PER_TASK; without either each task had one CPU, and train.py one DataLoader worker
    record = tmp_path / "srun.cpus"
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "srun").write_text(f'#!/bin/bash\necho "${{SRUN_CPUS_PER_TASK:-unset}}" > "{record}"\n')
    (fake / "srun").chmod(0o755)
    options = sbatch_options((SLURM / "cyclegan.sbatch").read_text())
    env = {**os.environ, "PATH": f"{fake}{os.pathsep}{os.environ['PATH']}", "SLURM_SUBMIT_DIR": str(ROOT),
           "SLURM_NNODES": "1", "SLURM_NTASKS_PER_NODE": "1", "DL2_VENV": str(tmp_path / "none"),
           "SLURM_CPUS_PER_TASK": options["cpus-per-task"]}
    env.pop("SRUN_CPUS_PER_TASK", None)
    result = subprocess.run(["bash", str(SLURM / "cyclegan.sbatch")], env=env, cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert record.read_text().strip() == "8"


@pytest.mark.parametrize("gpus, variable, per_node, warned", [("4", "SLURM_GPUS_ON_NODE", 1, True),
                                                                ("a100:4", "SLURM_GPUS_PER_NODE", 2, True),
                                                                ("4", "SLURM_GPUS_ON_NODE", 4, False),
                                                                ("1", "SLURM_GPUS_ON_NODE", 1, False)])
def test_a_job_with_more_gpus_than_tasks_is_told_that_some_stay_idle(gpus, variable, per_node, warned, tmp_path):
    # `sbatch --gpus-per-node=4 darknet.sbatch` (--ntasks-per-node=4 forgotten): the script's one task trained on one
    # GPU, and nothing said that three were idle
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "srun").write_text("#!/bin/bash\n")
    (fake / "srun").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}{os.pathsep}{os.environ['PATH']}", "SLURM_SUBMIT_DIR": str(ROOT),
           "SLURM_NNODES": "1", "SLURM_NTASKS_PER_NODE": str(per_node), "DL2_VENV": str(tmp_path / "none"),
           variable: gpus}
    result = subprocess.run(["bash", str(SLURM / "darknet.sbatch")], env=env, cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    idle = 4 - per_node
    tasks = "1 task" if per_node == 1 else f"{per_node} tasks"
    expected = (f"warning: the job has 4 GPUs a node but runs {tasks} a node, one GPU each: {idle} of them "
                f"stay idle; submit with --ntasks-per-node=4 to train on them all\n")
    assert result.stderr == (expected if warned else "")


class FirstStep(L.Callback):
    """Writes the global step a fit starts at to <default_root_dir>/first_step."""

    def on_train_start(self, trainer, pl_module) -> None:
        Path(trainer.default_root_dir, "first_step").write_text(str(trainer.global_step))


class WeightsAtTest(L.Callback):
    """Saves the weights the test after the fit scores to <default_root_dir>/tested.pt."""

    def on_test_start(self, trainer, pl_module) -> None:
        torch.save(pl_module.state_dict(), Path(trainer.default_root_dir, "tested.pt"))


def one_task_job(tmp_path: Path, job_id: str, name: str, then: str = "") -> dict[str, str]:
    """The environment of a one-task SLURM job, with an `scontrol` on the PATH that appends its arguments to
    <tmp_path>/scontrol.log, then runs `then`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f'#!/bin/bash\necho "$@" >> "{tmp_path}/scontrol.log"\n{then}')
    (bin_dir / "scontrol").chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "HOME": str(tmp_path),
            "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)]),
            "SLURM_JOB_ID": job_id, "SLURM_JOB_NAME": name, "SLURM_NTASKS": "1", "SLURM_NTASKS_PER_NODE": "1",
            "SLURM_NNODES": "1", "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0",
            "SLURM_NODELIST": "localhost"}


def test_requeue_saves_in_the_run_folder_and_the_next_launch_resumes_there(tiny_cifar, tmp_path, monkeypatch):
    # scontrol as SLURM runs it: it records the requeue and the job is killed (here: the training process)
    env = one_task_job(tmp_path, "4242", "dl2-darknet", "kill -9 $PPID\n")
    args = [sys.executable, str(ROOT / "train.py"), "--system", "darknet", "--data.data_dir", str(tiny_cifar),
            "--model.nf", "4", "--model.num_blocks", "[1]", "--model.num_classes", "3", "--data.batch_size", "8",
            "--data.eval_batch_size", "6", "--trainer.max_epochs", "2", "--trainer.accelerator", "cpu",
            "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
            "--trainer.callbacks+=test_slurm.FirstStep", "--trainer.callbacks+=test_slurm.WeightsAtTest"]
    first = subprocess.run([*args, '--trainer.callbacks+={"class_path": "runs.StopAtStep", '
                                   '"init_args": {"step": 4, "signal_name": "SIGUSR1"}}'],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == -signal.SIGKILL, first.stderr[-3000:]
    assert (tmp_path / "scontrol.log").read_text() == "requeue 4242\n"
    run_dir = tmp_path / "runs" / "darknet" / "slurm-4242"
    (hpc,) = run_dir.glob("hpc_ckpt_*.ckpt")  # in the run folder the requeued job will pick
    saved = torch.load(hpc, weights_only=False)
    assert hpc.name == "hpc_ckpt_1.ckpt" and saved["global_step"] == 4
    assert not (run_dir / "results.json").exists()

    # the requeued launch, in this process (a fresh interpreter cost ~5 s; the first launch had to be a process of
    # its own, for scontrol to kill), with the job's environment and working folder
    for name, value in env.items():
        if name.startswith("SLURM_") or name in ("PATH", "HOME"):
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")  # SLURM counts the requeue
    monkeypatch.chdir(tmp_path)
    train.main(args[2:])
    assert [p.name for p in (tmp_path / "runs" / "darknet").iterdir()] == ["slurm-4242"]
    assert (run_dir / "first_step").read_text() == "4"  # resumed at the saved step, not from 0
    results = json.loads((run_dir / "results.json").read_text())
    assert results["global_step"] == 6 and results["epochs"] == 2  # 3 batches an epoch, none repeated
    assert results["resumed_from"] == str(hpc)  # Lightning's own checkpoint, found without --ckpt_path
    resumed = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert resumed["callbacks"]["TrainingPhaseScheduler"]["batches_seen"] == 6
    # the test scored the weights trained to step 6, not the hpc checkpoint of step 4 Lightning would load
    tested = torch.load(run_dir / "tested.pt")
    assert tested.keys() == resumed["state_dict"].keys()
    for name, value in resumed["state_dict"].items():
        torch.testing.assert_close(tested[name], value)


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (its DataLoader workers): the processes of a job step, which SLURM signals."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return [pid] + [descendant for child in children for descendant in process_tree(int(child))]


class SignalStepAtStep(L.Callback):
    """Sends the requeue signal to this process and its children once `step` training steps are done, as slurmstepd
    sends --signal to every process of the job step (its proctrack container), the DataLoader workers too."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.step:
            pids = process_tree(os.getpid())
            Path(trainer.default_root_dir, "signalled").write_text(str(len(pids)))
            for pid in pids:
                os.kill(pid, signal.SIGUSR1)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the workers in /proc")
def test_the_requeue_signal_reaching_the_dataloader_workers_saves_and_requeues_once(tiny_unpaired, tmp_path):
    # a forked worker ran the main process's requeue handler on its copy of the trainer: it wrote hpc_ckpt_1.ckpt over
    # the main process's with the step it was forked at (0: the requeued job started again) and requeued the job twice
    env = one_task_job(tmp_path, "4245", "dl2-cyclegan")
    args = [sys.executable, str(ROOT / "train.py"), "--system", "cyclegan", "--data.data_dir", str(tiny_unpaired),
            "--model.ngf", "4", "--model.ndf", "4", "--model.n_blocks", "1", "--model.n_epochs", "1",
            "--model.n_epochs_decay", "1", "--data.load_size", "36", "--data.crop_size", "32",
            "--data.batch_size", "2", "--data.num_workers", "1", "--trainer.max_epochs", "1",
            "--trainer.accelerator", "cpu", "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
            '--trainer.callbacks+={"class_path": "test_slurm.SignalStepAtStep", "init_args": {"step": 3}}']
    result = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "runs" / "cyclegan" / "slurm-4245"
    assert (run_dir / "signalled").read_text() == "2"  # the task and its DataLoader worker
    assert (tmp_path / "scontrol.log").read_text() == "requeue 4245\n"
    (hpc,) = run_dir.glob("hpc_ckpt_*.ckpt")
    assert torch.load(hpc, weights_only=False)["global_step"] == 3  # after the first batch (3 optimizer steps)


class SignalAtStepOfRank(L.Callback):
    """Sends this process the requeue signal once its rank (SLURM_PROCID) has done `steps[rank]` training steps:
    SLURM signals every task, not all at the same moment."""

    def __init__(self, steps: list[int]):
        self.steps = steps

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.steps[int(os.environ["SLURM_PROCID"])]:
            os.kill(os.getpid(), signal.SIGUSR1)


def slurm_tasks(tmp_path, job: str, tasks: int, run_dir) -> dict:
    """The environment of a one-node SLURM job's tasks (each adds its SLURM_PROCID and SLURM_LOCALID), with a fake
    scontrol on PATH that logs its arguments to scontrol.log and copies the run's last.ckpt as it was at the requeue
    into at_requeue.ckpt."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f'#!/bin/bash\necho "$@" >> "{tmp_path}/scontrol.log"\n'
                                      f'cp "{run_dir}/checkpoints/last.ckpt" "{tmp_path}/at_requeue.ckpt" || true\n')
    (bin_dir / "scontrol").chmod(0o755)
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "HOME": str(tmp_path),
            "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)]),
            "SLURM_JOB_ID": job, "SLURM_JOB_NAME": "dl2-darknet", "SLURM_NTASKS": str(tasks),
            "SLURM_NTASKS_PER_NODE": str(tasks), "SLURM_NNODES": "1", "SLURM_NODEID": "0",
            "SLURM_NODELIST": "localhost", "MASTER_PORT": str(port)}


def test_a_requeue_signal_reaching_two_ranks_at_different_steps_saves_once_at_the_first(tiny_cifar, tmp_path):
    # Lightning's own handler saved from inside the signal handler: rank 1, signalled first, waited in the save's
    # barrier while rank 0 waited in the batch's collective, until the time limit
    run_dir = tmp_path / "runs" / "darknet" / "slurm-4243"
    env = slurm_tasks(tmp_path, "4243", 2, run_dir)
    args = [sys.executable, str(ROOT / "train.py"), "--system", "darknet", "--data.data_dir", str(tiny_cifar),
            "--model.nf", "4", "--model.num_blocks", "[1]", "--model.num_classes", "3", "--data.batch_size", "4",
            "--data.eval_batch_size", "6", "--trainer.max_steps", "7", "--trainer.accelerator", "cpu",
            "--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.logger", "false",
            "--trainer.enable_progress_bar", "false", "--trainer.limit_val_batches", "0",
            '--trainer.callbacks+={"class_path": "test_slurm.SignalAtStepOfRank", "init_args": {"steps": [5, 3]}}']
    tasks = [subprocess.Popen(args, cwd=tmp_path, env={**env, "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for rank in (0, 1)]
    try:
        outputs = [task.communicate(timeout=180)[0] for task in tasks]
    finally:
        for task in tasks:
            task.kill()
    assert [task.returncode for task in tasks] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    # every rank saved after the step rank 1 was signalled at, rank 0's later signal changed nothing
    assert (tmp_path / "scontrol.log").read_text() == "requeue 4243\n"
    assert torch.load(tmp_path / "at_requeue.ckpt", weights_only=False)["global_step"] == 3
    assert "saved" in outputs[0] and "at step 3; requeueing job 4243" in outputs[0]
    assert json.loads((run_dir / "results.json").read_text())["global_step"] == 7  # training went on
    assert not list(run_dir.glob("hpc_ckpt_*.ckpt"))


class SignalIn(L.Callback):
    """Sends this process the requeue signal at `where` (the fit's setup, a batch of the sanity check, the test after
    the fit) if its task (SLURM_PROCID) is one of `ranks`: before on_train_start, or after the training."""

    def __init__(self, where: str, ranks: list[int]):
        self.where, self.ranks = where, ranks

    def send(self, where: str) -> None:
        if where == self.where and int(os.environ.get("SLURM_PROCID", "0")) in self.ranks:
            self.where = None  # once
            os.kill(os.getpid(), signal.SIGUSR1)

    def setup(self, trainer, pl_module, stage) -> None:
        if stage == "fit":
            self.send("setup")

    def on_validation_batch_end(self, trainer, *args) -> None:
        if trainer.sanity_checking:
            self.send("sanity check")

    def on_test_start(self, trainer, pl_module) -> None:
        self.send("test")


@pytest.mark.parametrize("where, ranks, tasks", [("setup", [0, 1], 2), ("setup", [0], 1), ("sanity check", [1], 2),
                                                 ("test", [1], 2)])
def test_a_requeue_signal_outside_the_training_requeues_without_a_hang(where, ranks, tasks, tiny_cifar, tmp_path):
    # before the fit's own handlers (setup) the signal's default action ended every task, and the job was not requeued;
    # under DDP Lightning's handler in the sanity check or the test saved from inside the handler, whose barrier the
    # rank signalled alone waited in while the other went on: a hang until the time limit
    job = "4244"
    run_dir = tmp_path / "runs" / "darknet" / f"slurm-{job}"
    env = slurm_tasks(tmp_path, job, tasks, run_dir)
    args = [sys.executable, str(ROOT / "train.py"), "--system", "darknet", "--data.data_dir", str(tiny_cifar),
            "--model.nf", "4", "--model.num_blocks", "[1]", "--model.num_classes", "3", "--data.batch_size", "4",
            "--data.eval_batch_size", "6", "--trainer.max_steps", "3", "--trainer.accelerator", "cpu",
            "--trainer.devices", str(tasks), "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
            "--trainer.limit_val_batches", "1",
            "--trainer.callbacks+=" + json.dumps({"class_path": "test_slurm.SignalIn",
                                                  "init_args": {"where": where, "ranks": ranks}})]
    if tasks > 1:
        args += ["--trainer.strategy", "ddp"]
    processes = [subprocess.Popen(args, cwd=tmp_path, env={**env, "SLURM_PROCID": str(rank),
                                                           "SLURM_LOCALID": str(rank)},
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for rank in range(tasks)]
    try:
        outputs = [process.communicate(timeout=150)[0] for process in processes]  # a hang fails here
    finally:
        for process in processes:
            process.kill()
    assert [process.returncode for process in processes] == [0] * tasks, "\n".join(o[-3000:] for o in outputs)
    # the fake scontrol ends nothing: the job trains on, as after a failed requeue
    assert json.loads((run_dir / "results.json").read_text())["global_step"] == 3
    requeues = (tmp_path / "scontrol.log").read_text() if (tmp_path / "scontrol.log").exists() else ""
    if where == "setup":  # the first task requeues at once, before anything was trained (and saved)
        assert requeues == f"requeue {job}\n"
        assert "no training in progress, nothing left to save; requeueing job 4244" in outputs[0]
        assert not (tmp_path / "at_requeue.ckpt").exists()
    elif where == "sanity check":  # rank 1 alone: every rank saves after the first training batch, rank 0 requeues
        assert requeues == f"requeue {job}\n"
        assert torch.load(tmp_path / "at_requeue.ckpt", weights_only=False)["global_step"] == 1
    else:  # rank 1 alone in the test: noted; the first task requeues on its own signal (not sent here)
        assert requeues == ""
