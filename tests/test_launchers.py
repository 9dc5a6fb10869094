"""torchrun and SLURM: the processes a launcher started must be the Trainer's devices per node and nodes, one rank
each; a two-node torchrun job (two launchers on this machine) trains one run and resumes it; a run stopped inside an
epoch on two processes goes on with that epoch's other images on one."""

import json
import os
import signal
import socket
import subprocess
import sys

import pytest
from conftest import ROOT, run_in_process
from runs import CLI_TINY as TINY
from runs import cli_job as job
from runs import only_run
from runs import run_cli_script as run_script

from callbacks import UserError

pytestmark = pytest.mark.usefixtures("one_thread")

LAUNCHER_VARIABLES = ("TORCHELASTIC_RUN_ID", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "RANK", "LOCAL_RANK", "GROUP_RANK",
                      "NODE_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_NTASKS", "SLURM_NTASKS_PER_NODE",
                      "SLURM_NNODES", "SLURM_JOB_ID", "SLURM_JOB_NAME", "SLURM_PROCID", "SLURM_LOCALID",
                      "SLURM_NODEID", "SLURM_STEP_ID", "SLURM_RESTART_COUNT", "DL2_RUN_NAME", "DL2_CKPT_PATH")


def torchrun_rank_0(monkeypatch, processes: int, per_node: int) -> None:
    """The environment torchrun gives its first process (rank 0 of `processes`, `per_node` on each node)."""
    for name, value in {"TORCHELASTIC_RUN_ID": "run", "WORLD_SIZE": processes, "LOCAL_WORLD_SIZE": per_node,
                        "RANK": 0, "LOCAL_RANK": 0, "GROUP_RANK": 0, "MASTER_ADDR": "127.0.0.1",
                        "MASTER_PORT": 29500}.items():
        monkeypatch.setenv(name, str(value))


def srun_task_0(monkeypatch, tasks: int, nodes: int, job_name: str = "dl2-darknet") -> None:
    """The environment srun gives a job's first task (of `tasks` on `nodes` nodes)."""
    for name, value in {"SLURM_NTASKS": tasks, "SLURM_NTASKS_PER_NODE": tasks // nodes, "SLURM_NNODES": nodes,
                        "SLURM_JOB_ID": 77, "SLURM_JOB_NAME": job_name, "SLURM_PROCID": 0, "SLURM_LOCALID": 0,
                        "SLURM_NODEID": 0, "SLURM_NODELIST": "localhost"}.items():
        monkeypatch.setenv(name, str(value))


@pytest.fixture
def no_launcher(monkeypatch):
    for name in LAUNCHER_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def refusal(result) -> str:
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    return result.stderr.partition("error: ")[2].strip()


@pytest.mark.parametrize(("processes", "per_node", "given", "expected"), [
    # torchrun --nproc_per_node 2 on a CPU: the Trainer's auto devices are 1, and each process trained a run of its own
    (2, 2, [], "torchrun started 2 processes (2 per node on 1 node), but the Trainer has 1 device on 1 node: give "
               "--trainer.devices 2 --trainer.num_nodes 1, one rank per process, or start 1 process"),
    # two nodes of one process each, --trainer.num_nodes left at 1: Lightning's traceback at the fit's start
    (2, 1, ["--trainer.strategy", "ddp"],
     "torchrun started 2 processes (1 per node on 2 nodes), but the Trainer has 1 device on 1 node: give "
     "--trainer.devices 1 --trainer.num_nodes 2, one rank per process, or start 1 process"),
    (8, 2, ["--trainer.strategy", "ddp", "--trainer.devices", "4", "--trainer.num_nodes", "2"],
     "torchrun started 8 processes (2 per node on 4 nodes), but the Trainer has 4 devices on 2 nodes: give "
     "--trainer.devices 2 --trainer.num_nodes 4, one rank per process, or start 8 processes"),
    # one process started, two devices asked for
    (1, 1, ["--trainer.strategy", "ddp", "--trainer.devices", "2"],
     "torchrun started 1 process (1 per node on 1 node), but the Trainer has 2 devices on 1 node: give "
     "--trainer.devices 1 --trainer.num_nodes 1, one rank per process, or start 2 processes"),
])
def test_torchruns_processes_other_than_the_trainers_devices_and_nodes_are_refused_before_a_run_folder(
        processes, per_node, given, expected, no_launcher, tiny_cifar, tmp_path, capsys, monkeypatch):
    torchrun_rank_0(monkeypatch, processes, per_node)
    runs = tmp_path / "runs"
    result = run_in_process(job(tiny_cifar, runs, "--trainer.accelerator", "cpu", *given), capsys, monkeypatch)
    assert refusal(result) == expected
    assert not runs.exists()  # no folder, no W&B run


def test_sruns_tasks_other_than_the_trainers_devices_and_nodes_are_refused(no_launcher, tiny_cifar, tmp_path, capsys,
                                                                           monkeypatch):
    srun_task_0(monkeypatch, tasks=4, nodes=2)
    runs = tmp_path / "runs"
    result = run_in_process(job(tiny_cifar, runs, "--trainer.accelerator", "cpu", "--trainer.strategy", "ddp",
                                "--trainer.devices", "2"), capsys, monkeypatch)
    assert refusal(result) == ("the SLURM job runs 4 tasks (2 per node on 2 nodes), but the Trainer has 2 devices on 1 "
                               "node: give --trainer.devices 2 --trainer.num_nodes 2, one rank per process, or start "
                               "2 processes")
    assert not runs.exists()


def cpu_trainer(devices: int):
    import lightning as L
    return L.Trainer(accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto", logger=False)


def test_a_slurm_task_without_a_node_count_is_on_one_node(no_launcher, monkeypatch):
    from callbacks.strategy import check_launched_processes
    srun_task_0(monkeypatch, tasks=2, nodes=1)
    monkeypatch.delenv("SLURM_NNODES")  # (srun sets it; an environment made by hand may not)
    check_launched_processes(cpu_trainer(2))  # no refusal
    with pytest.raises(UserError, match=r"the SLURM job runs 2 tasks \(2 per node on 1 node\)"):
        check_launched_processes(cpu_trainer(1))


def test_torchrun_in_a_slurm_jobs_task_is_checked_as_torchrun(no_launcher, monkeypatch):
    # Lightning's choice too: one SLURM task per node, whose torchrun starts a process per GPU
    from callbacks.strategy import check_launched_processes
    srun_task_0(monkeypatch, tasks=1, nodes=1, job_name="train.sbatch")
    torchrun_rank_0(monkeypatch, processes=2, per_node=2)
    check_launched_processes(cpu_trainer(2))  # no refusal
    with pytest.raises(UserError, match=r"^torchrun started 2 processes \(2 per node on 1 node\)"):
        check_launched_processes(cpu_trainer(1))


def test_slurm_tasks_unevenly_spread_over_its_nodes_are_named(no_launcher, monkeypatch):
    from callbacks.strategy import check_launched_processes
    srun_task_0(monkeypatch, tasks=4, nodes=2)
    monkeypatch.setenv("SLURM_NTASKS", "3")
    with pytest.raises(UserError) as refused:
        check_launched_processes(cpu_trainer(2))
    assert str(refused.value) == ("the SLURM job runs 3 tasks on 2 nodes, not as many on each, but the Trainer has 2 "
                                  "devices on 1 node: give each node the same number (--ntasks-per-node)")


def test_a_slurm_job_named_interactive_is_no_launcher_and_one_process_trains(no_launcher, tiny_cifar, tmp_path, capsys,
                                                                           monkeypatch):
    # Lightning's rule: `srun --job-name interactive` (or bash) hands the processes to another launcher, or none
    srun_task_0(monkeypatch, tasks=2, nodes=1, job_name="interactive")
    runs = tmp_path / "runs"
    result = run_in_process(job(tiny_cifar, runs, "--trainer.accelerator", "cpu", "--trainer.logger", "false"), capsys,
                            monkeypatch)
    assert result.returncode == 0, result.stderr
    (run_dir,) = (runs / "darknet").iterdir() if (runs / "darknet").is_dir() else runs.iterdir()
    assert json.loads((run_dir / "results.json").read_text())["world_size"] == 1


def free_port() -> int:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        return free.getsockname()[1]


def two_nodes(tiny_cifar, runs, tmp_path, *extra) -> list[subprocess.CompletedProcess]:
    """train.py under two torchrun launchers on this machine, as on two nodes of one process each (gloo on CPUs)."""
    env = {**os.environ, "HOME": str(tmp_path), "WANDB_API_KEY": "", "OMP_NUM_THREADS": "1"}
    for name in LAUNCHER_VARIABLES:
        env.pop(name, None)
    env.pop("WANDB_MODE", None)
    port = free_port()
    args = job(tiny_cifar, runs, "--trainer.accelerator", "cpu", "--trainer.strategy", "ddp", "--trainer.num_nodes",
               "2", *extra)
    nodes = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank", str(node),
                               "--nproc_per_node", "1", "--master_addr", "127.0.0.1", "--master_port", str(port),
                               str(ROOT / "train.py"), *args], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for node in (0, 1)]
    results = []
    for node in nodes:
        out, err = node.communicate(timeout=300)
        results.append(subprocess.CompletedProcess(node.args, node.returncode, out, err))
    return results


@pytest.mark.slow  # 2 x 2 launchers, about 40 s
def test_a_two_node_torchrun_job_trains_one_run_and_resumes_it_on_both_nodes(tiny_cifar, tmp_path):
    runs = tmp_path / "runs"
    assert TINY[TINY.index("--trainer.max_epochs") + 1] == "2"
    for result in two_nodes(tiny_cifar, runs, tmp_path):
        assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = runs.iterdir()  # node 1's rank writes nothing of its own
    first = json.loads((run_dir / "results.json").read_text())
    # 24 training images, 12 a rank, in batches of 8 with the rest dropped: a step an epoch
    assert (first["world_size"], first["global_step"]) == (2, 2)
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 1
    for result in two_nodes(tiny_cifar, runs, tmp_path, "--ckpt_path", "last", "--trainer.max_epochs", "3"):
        assert result.returncode == 0, result.stderr[-3000:]
    assert list(runs.iterdir()) == [run_dir]
    resumed = json.loads((run_dir / "results.json").read_text())
    assert resumed["global_step"] == 3 and resumed["resumed_from"] == str(run_dir / "checkpoints" / "last.ckpt")


@pytest.mark.slow  # 3 runs in fresh processes, one of them two DDP processes: about 30 s
def test_a_run_stopped_inside_an_epoch_on_two_processes_goes_on_with_its_images_on_one(tiny_cifar, tmp_path):
    """Each of the 2 ranks trained 1 of its 3 batches of 4 in the 2nd epoch (8 images); on one process the epoch is 6
    batches, and the resume trains the 16 images not yet trained, at the lr of the same point in the schedule."""
    from runs import run_cli_script as run_script
    runs = tmp_path / "runs"
    make = job(tiny_cifar, runs, "--data.pad", "0", "--data.flip", "false", "--data.batch_size", "4",
               "--trainer.logger", "false", "--trainer.accelerator", "cpu")
    record = ["--trainer.callbacks+=test_launchers.RankImagePrints", f"--trainer.callbacks.folder={tmp_path}"]
    env = {"PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)])}
    # stopped by a signal, not --trainer.max_steps, which the one_cycle would be planned over
    stop = '--trainer.callbacks+={"class_path": "test_launchers.StopAfterStep", "init_args": {"step": 4}}'
    stopped = run_script([*make, stop, *record, "--run_name", "moved", "--trainer.strategy", "ddp",
                          "--trainer.devices", "2"], tmp_path, env)
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-3000:]
    (tmp_path / "before").mkdir()
    for path in tmp_path.glob("rank*.txt"):
        path.rename(tmp_path / "before" / path.name)
    resumed = run_script([*make, *record, "--run_name", "moved", "--ckpt_path", "last"], tmp_path, env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "the run trained 3 batches an epoch, this training 6: it goes on after 2 of them" in resumed.stderr
    before = [line.split() for path in (tmp_path / "before").glob("rank*.txt")
              for line in path.read_text().splitlines()]
    after = [line.split() for line in (tmp_path / "rank0.txt").read_text().splitlines()]
    whole = run_script([*make, *record[:1], f"--trainer.callbacks.folder={tmp_path / 'whole'}", "--run_name", "whole"],
                       tmp_path, env)
    assert whole.returncode == 0, whole.stderr[-3000:]
    reference = [line.split() for line in (tmp_path / "whole" / "rank0.txt").read_text().splitlines()]
    second = sorted(image for epoch, image, _ in reference if epoch == "1")
    assert len(second) == 24 and sorted(image for epoch, image, _ in before + after if epoch == "1") == second
    # the lr of each resumed batch: the one-process run's at the same point of the one_cycle (planned over 2 epochs)
    lrs = {(epoch, image): lr for epoch, image, lr in reference}
    assert [lr for epoch, image, lr in after] == [lrs[epoch, image] for epoch, image, _ in after]


class RankImagePrints(__import__("lightning").Callback):
    """Writes the epoch, a print of each image of each training batch and the lr it trains at to
    <folder>/rank<global rank>.txt, a line an image."""

    def __init__(self, folder: str):
        self.folder = folder

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        os.makedirs(self.folder, exist_ok=True)
        lr = trainer.optimizers[0].param_groups[0]["lr"]
        with open(os.path.join(self.folder, f"rank{trainer.global_rank}.txt"), "a") as record:
            record.writelines(f"{trainer.current_epoch} {image.double().sum().item():.4f} {lr:.6g}\n"
                              for image in batch[0])


class StopAfterStep(__import__("lightning").Callback):
    """Rank 0 sends itself SIGTERM after training step `step` (as a job's scheduler would)."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == self.step and trainer.is_global_zero:
            os.kill(os.getpid(), signal.SIGTERM)


@pytest.mark.slow  # 16-20 s; test_prepare_run_on_a_rank_other_than_0_creates_no_folder checks the cause in CI
def test_torchrun_writes_one_run_folder(tiny_cifar, tmp_path):
    # each process starts train.py on its own and picks a time stamp; rank 1 made its folder (an empty wandb/), so
    # rank 0 took the next name. Only rank 0 writes: its folder is the run
    runs = tmp_path / "runs"
    # one node, two CPU processes, as a user without SLURM starts it; the config's W&B logger, offline
    result = run_script(job(tiny_cifar, runs, "--trainer.accelerator", "cpu", "--trainer.strategy", "ddp",
                            "--trainer.devices", "2"), tmp_path,
                        launcher=("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"))
    assert result.returncode == 0, result.stderr[-3000:]
    (trained,) = list(runs.iterdir())
    assert json.loads((trained / "results.json").read_text())["world_size"] == 2
    assert list((trained / "wandb").glob("offline-run-*"))


# with the slow tests (CI's 10 minutes): test_stop_signals' DDP stop test runs the same job and checks its steps too
@pytest.mark.slow
def test_ddp_with_two_cpu_processes_splits_the_data(tiny_cifar, tmp_path):
    runs = tmp_path / "runs"
    args = job(tiny_cifar, runs, "--trainer.logger", "false", "--trainer.accelerator", "cpu",
               "--trainer.strategy", "ddp", "--trainer.devices", "2")
    result = run_script(args, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((only_run(runs) / "results.json").read_text())  # one folder for both ranks
    # 24 images, batch 8 per process: 3 steps an epoch alone, 1 each when two ranks share the data
    assert results["world_size"] == 2 and results["global_step"] == 2



def test_a_user_error_on_rank_0_under_ddp_is_not_followed_by_the_other_ranks_traceback(tmp_path):
    """The data missing on a node under DDP: rank 0's one line, then rank 1's 30-line gloo traceback ('Connection
    reset by peer', as rank 0 left the barrier of prepare_data), which read as the crash."""
    result = run_script(job(tmp_path / "nodata", tmp_path / "runs", "--data.download", "false", "--trainer.logger",
                            "false", "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy",
                            "ddp"), tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    said = [line for line in result.stderr.splitlines() if line.startswith("train.py: ")]
    nodata = tmp_path / "nodata"
    assert said == [f"train.py: error: no CIFAR-10 found in {nodata}: put CIFAR-10 in {nodata} "
                    f"as train/<class>/*.png and test/<class>/*.png or as the official python batches "
                    f"({nodata / 'cifar-10-batches-py'}), or pass --data.data_dir (or drop "
                    f"--data.download false)",
                    "train.py: rank 1: stopped, as another process of the run ended first (it says why; --traceback "
                    "shows this one's)"]
