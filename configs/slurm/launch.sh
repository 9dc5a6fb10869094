#!/bin/bash
# Run by the per-system sbatch scripts: one train.py task per GPU on every node, via srun. Lightning reads the
# SLURM environment (SLURM_NTASKS, SLURM_PROCID, SLURM_NODELIST...), sets up DDP itself, and on SIGUSR1 (sent
# 90 s before the time limit: #SBATCH --signal=SIGUSR1@90) saves <run folder>/hpc_ckpt_N.ckpt and calls
# `scontrol requeue` (with several tasks train.py does, after the running batch, into checkpoints/last.ckpt);
# the requeued job keeps its SLURM_JOB_ID, so train.py picks the same run folder runs/<system>/slurm-<job id>
# and resumes from the job's newest save there (the later step of Lightning's
# hpc_ckpt_N.ckpt and checkpoints/last.ckpt). A --ckpt_path given here is read by the job's first launch only.
# Usage (from an sbatch script): bash configs/slurm/launch.sh SYSTEM [train.py options]
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-.}"  # the project root, where the job was submitted
system="$1"
shift
if [ -f "${DL2_VENV:-.venv}/bin/activate" ]; then
    # shellcheck disable=SC1091
    source "${DL2_VENV:-.venv}/bin/activate"
fi
tasks_per_node="${SLURM_NTASKS_PER_NODE:-1}"
tasks_per_node="${tasks_per_node%%(*}"  # "4(x2)" on some clusters
nodes="${SLURM_NNODES:-1}"
# one task per GPU: a job given more GPUs than tasks (--gpus-per-node=4 without --ntasks-per-node=4, whose default
# here is 1) leaves the others idle; say so (--trainer.devices below follows the tasks, not the GPUs)
gpus="${SLURM_GPUS_ON_NODE:-${SLURM_GPUS_PER_NODE:-}}"
gpus="${gpus##*:}"  # "a100:4" from --gpus-per-node=a100:4
if [[ "$gpus" =~ ^[0-9]+$ ]] && [ "$gpus" -gt "$tasks_per_node" ]; then
    tasks="$tasks_per_node task$([ "$tasks_per_node" -eq 1 ] || echo s)"
    echo "warning: the job has $gpus GPUs a node but runs $tasks a node, one GPU each: $((gpus - tasks_per_node)) of" \
         "them stay idle; submit with --ntasks-per-node=$gpus to train on them all" >&2
fi
args=(--system "$system" --trainer.accelerator gpu --trainer.devices "$tasks_per_node" --trainer.num_nodes "$nodes")
if [ "$tasks_per_node" -gt 1 ] || [ "$nodes" -gt 1 ]; then
    # the GANs need DDP's unused-parameter detection; Lightning's name for it
    case "$system" in
        wgan|cyclegan) args+=(--trainer.strategy ddp_find_unused_parameters_true) ;;
        *) args+=(--trainer.strategy ddp) ;;
    esac
fi
# srun gives each task the sbatch script's --cpus-per-task (its DataLoader workers' CPUs) only when told: since Slurm
# 22.05 it no longer reads SLURM_CPUS_PER_TASK, and each task got one CPU (and train.py one DataLoader worker)
if [ -n "${SLURM_CPUS_PER_TASK:-}" ]; then
    export SRUN_CPUS_PER_TASK="$SLURM_CPUS_PER_TASK"
fi
# --kill-on-bad-exit: a task that stops on an error (a run folder that exists, bad data) ends the others, which
# would otherwise wait for it at DDP's rendezvous until its timeout (30 minutes of idle GPUs)
exec srun --kill-on-bad-exit=1 python train.py "${args[@]}" "$@"
