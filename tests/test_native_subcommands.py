"""train.py's native subcommands (fit, test, validate, predict): their folders, checkpoints and refusals."""

import json
import re

import pytest
import torch
import yaml
from conftest import ROOT
from runs import CLI_TINY as TINY
from runs import cli_job as job
from runs import only_run
from runs import run_cli_script as run_script

import train
from callbacks import run_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets: threads only add contention


def test_native_fit_subcommand_with_config(tiny_cifar, tmp_path):
    runs = tmp_path / "runs"
    train.main(["fit", "--config", str(ROOT / "configs" / "darknet.yaml"), "--data.data_dir", str(tiny_cifar),
                "--trainer.default_root_dir", str(runs), "--trainer.logger", "false", *TINY])
    run = only_run(runs)
    assert (run / "checkpoints" / "last.ckpt").is_file()
    # its config.yaml is the job form's too (it held fit's `weights_only: null`, which the job form refused)
    train.main(["--config", str(run / "config.yaml"), "--trainer.max_epochs", "1"])
    assert len(list(runs.iterdir())) == 2


def native(subcommand, data_dir, runs, *extra):
    """The LightningCLI form of job(): `test --config configs/darknet.yaml ...`."""
    return [subcommand, "--config", str(ROOT / "configs" / "darknet.yaml"), *job(data_dir, runs, *extra)[2:]]


def test_a_native_fits_refused_resume_names_the_runs_config_and_a_test_no_resume(tiny_cifar, tmp_path):
    """The resume hint of a refusal as the classes are built is a fit's (`fit --config ...`, the native form); a test
    of a checkpoint resumes nothing."""
    from callbacks.errors import user_message
    runs = tmp_path / "runs"
    train.main(job(tiny_cifar, runs, "--trainer.logger", "false", "--run_name", "r", "--trainer.max_epochs", "1"))
    checkpoint, config = runs / "r" / "checkpoints" / "last.ckpt", runs / "r" / "config.yaml"
    for subcommand, hint in (("fit", f"; this resumes {checkpoint}: to resume as the run began, give its config: "
                                     f"python train.py fit --config {config} --ckpt_path {checkpoint}"),
                             ("test", None)):
        with pytest.raises(ValueError) as refused:
            train.main(native(subcommand, tiny_cifar, runs, "--trainer.logger", "false", "--ckpt_path",
                              str(checkpoint), "--model.top_losses", "-1"))
        message = user_message(refused.value)
        assert message.startswith("top_losses must be 0 (none) or more (got -1)")
        assert message.endswith(hint) if hint else "this resumes" not in message



def test_a_native_fit_resume_given_the_runs_own_config_says_so_of_its_changed_options(tiny_cifar, tmp_path):
    """`fit --config <run>/config.yaml --ckpt_path ...` with another option: the warning says this resume gives the
    run's config already (the job form's says it too), not to give it."""
    runs = tmp_path / "runs"
    train.main(job(tiny_cifar, runs, "--trainer.logger", "false", "--run_name", "r", "--trainer.max_epochs", "1"))
    checkpoint, config = runs / "r" / "checkpoints" / "last.ckpt", runs / "r" / "config.yaml"
    with pytest.warns(UserWarning, match="this resume's options differ") as said:
        train.main(["fit", "--config", str(config), "--ckpt_path", str(checkpoint), "--trainer.max_epochs", "2",
                    "--data.batch_size", "4"])
    (message,) = [str(w.message) for w in said if "options differ" in str(w.message)]
    assert f"this resume gives the run's config {config} already" in message

def files(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_native_test_subcommand_writes_its_own_folder_not_the_checkpoints_run(tiny_cifar, tmp_path):
    runs = tmp_path / "runs"
    train.main(job(tiny_cifar, runs, "--trainer.logger", "false", "--run_name", "trained"))
    trained = runs / "trained"
    before = files(trained)
    checkpoint = trained / "checkpoints" / "last.ckpt"
    train.main(native("test", tiny_cifar, runs, "--trainer.logger", "false", "--ckpt_path", str(checkpoint)))
    assert files(trained) == before  # config.yaml, the confusion matrix and top losses of the training run are kept
    (tested,) = [d for d in runs.iterdir() if d.name != "trained"]
    info = json.loads((tested / "run.json").read_text())
    assert info["kind"] == "test" and info["checkpoint"] == str(checkpoint)
    assert "test_confusion_matrix.csv" in {p.name for p in tested.rglob("*")}
    results = json.loads((tested / "results.json").read_text())  # the metrics in a file, as the job's results.json
    assert 0 <= results["test"]["test/acc"] <= 1 and results["checkpoint"] == str(checkpoint)
    # not the test's
    assert run_checkpoint.newest_last_checkpoint(runs, "lightning_modules.DarknetClassifier", None) == checkpoint
    # --run_name picks the run to read with --ckpt_path last; with a checkpoint path it has nothing to pick
    train.main(native("validate", tiny_cifar, runs, "--trainer.logger", "false", "--run_name", "trained",
                      "--ckpt_path", "last"))
    (validated,) = [d for d in runs.iterdir() if d.name not in ("trained", tested.name)]
    assert json.loads((validated / "run.json").read_text())["checkpoint"] == str(checkpoint)
    assert 0 <= json.loads((validated / "results.json").read_text())["validate"]["val/acc"] <= 1
    with pytest.raises(train.UserError, match="--run_name with test picks the run whose checkpoint it reads"):
        train.main(native("test", tiny_cifar, runs, "--run_name", "other", "--ckpt_path", str(checkpoint)))
    assert files(trained) == before


def test_a_native_subcommand_takes_system_as_the_job_does(tiny_cifar, tmp_path, recwarn):
    """`test --system darknet --ckpt_path last` was 'unrecognized arguments: --system darknet': the subcommands needed
    --config configs/darknet.yaml, which the job form spares. A test without a callback the training had is not told
    to provide it (Lightning's 'Be aware that when using ckpt_path, callbacks ... need to be provided')."""
    runs = tmp_path / "runs"
    train.main(job(tiny_cifar, runs, "--trainer.logger", "false", "--run_name", "trained",
                   "--trainer.callbacks+=ModelCheckpoint", "--trainer.callbacks.monitor", "train/loss"))
    train.main(["test", *job(tiny_cifar, runs, "--trainer.logger", "false", "--ckpt_path", "last")])
    assert not [w for w in recwarn if "callbacks used to create the checkpoint" in str(w.message)]
    (tested,) = [d for d in runs.iterdir() if d.name != "trained"]
    assert json.loads((tested / "run.json").read_text())["checkpoint"] == str(runs / "trained" / "checkpoints" /
                                                                             "last.ckpt")
    assert 0 <= json.loads((tested / "results.json").read_text())["test"]["test/acc"] <= 1
    with pytest.raises(train.UserError, match="unknown --system 'darknett'"):
        train.main(["validate", "--system", "darknett", "--ckpt_path", "last"])


@pytest.mark.parametrize("checkpoint", ["path", "last"])
def test_native_test_takes_the_checkpoints_net_and_the_command_lines_model_flags(tiny_cifar, tmp_path, checkpoint):
    # Lightning 2.6 rebuilds the model from the checkpoint's hyper-parameters (here nf 4, 3 classes, not the config
    # file's 32 and 10) but dropped --model.tta as well, so `test --model.tta flip` tested without TTA; and it reads
    # only a file, so `last` built the config file's net
    runs = tmp_path / "runs"
    train.main(job(tiny_cifar, runs, "--trainer.logger", "false", "--run_name", "trained"))
    flags = [arg for arg in native("test", tiny_cifar, runs) if not arg.startswith("--model.") and arg not in
             ("4", "[1]", "3", "1")]
    path = str(runs / "trained" / "checkpoints" / "last.ckpt") if checkpoint == "path" else "last"
    train.main([*flags, "--trainer.logger", "false", "--model.tta", "flip", "--model.interpret=false",
                "--ckpt_path", path])
    (tested,) = [d for d in runs.iterdir() if d.name != "trained"]
    model = yaml.safe_load((tested / "config.yaml").read_text())["model"]["init_args"]
    assert (model["nf"], model["num_blocks"], model["num_classes"]) == (4, [1], 3)  # the checkpoint's net
    assert (model["tta"], model["interpret"]) == ("flip", False)  # the command line's flags
    assert not (tested / "test_confusion_matrix.csv").exists()  # interpret false reached the model


def test_native_evaluations_refuse_a_missing_checkpoint_and_a_run_name_that_is_no_training_run(tiny_cifar, tmp_path):
    runs = tmp_path / "runs"
    with pytest.raises(train.UserError, match="test needs --ckpt_path: a .ckpt file, or last"):
        train.main(native("test", tiny_cifar, runs, "--trainer.logger", "false"))  # untrained weights otherwise
    with pytest.raises(train.UserError, match=r"no darknet run in .* yet; train one first \(python train.py --system"):
        train.main(native("test", tiny_cifar, runs, "--trainer.logger", "false", "--ckpt_path", "last"))
    train.main(job(tiny_cifar, runs, "--trainer.logger", "false", "--run_name", "trained"))
    train.main(native("test", tiny_cifar, runs, "--trainer.logger", "false", "--ckpt_path", "last"))
    (tested,) = [d.name for d in runs.iterdir() if d.name != "trained"]
    with pytest.raises(train.UserError, match=f"--run_name {tested}: .* holds a test, not a training run"):
        train.main(native("test", tiny_cifar, runs, "--run_name", tested, "--ckpt_path", "last"))


def test_predict_is_refused_naming_the_inference_commands_before_any_folder(tiny_cifar, tmp_path):
    runs = tmp_path / "runs"
    with pytest.raises(train.UserError, match=r"predict: no system here has a predict step; .*dl2-classify "
                                              r"\(darknet\), dl2-wgan-generate \(wgan\), dl2-cyclegan-translate"):
        train.main(native("predict", tiny_cifar, runs, "--ckpt_path", "last"))
    assert not runs.exists()


def test_test_on_a_system_without_a_test_step_is_refused_before_any_folder(tmp_path):
    import lightning as L

    from lightning_modules import WGAN
    model = WGAN(isize=16, nz=8, ngf=4, ndf=4)
    trainer = L.Trainer(accelerator="cpu", max_steps=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(tmp_path / "wgan.ckpt")
    state = torch.load(tmp_path / "wgan.ckpt", weights_only=False)
    state["hyper_parameters"]["_class_path"] = "lightning_modules.WGAN"  # as train.py's LightningCLI saves them
    torch.save(state, tmp_path / "wgan.ckpt")
    runs = tmp_path / "runs"
    with pytest.raises(train.UserError, match="test: WGAN has no test_step; the systems with one: darknet, cyclegan"):
        train.main(["test", "--config", str(ROOT / "configs" / "wgan.yaml"), "--trainer.default_root_dir", str(runs),
                    "--ckpt_path", str(tmp_path / "wgan.ckpt")])
    assert not runs.exists()  # was Lightning's "No test_step() method defined" traceback, after an empty run folder


@pytest.mark.parametrize("subcommand", ["test", "validate", "fit"])
def test_a_native_subcommand_refuses_another_systems_checkpoint_before_any_folder(tmp_path, subcommand):
    # Lightning builds the checkpoint's class over the config's: a CycleGAN met CIFAR-10 (test: a traceback from its
    # test step; fit: the Darknet config's scheduler refusing the CycleGAN's lr schedule)
    ckpt = tmp_path / "cyclegan.ckpt"
    torch.save({"state_dict": {"gen_a2b.model.1.weight": torch.zeros(1)}, "epoch": 0, "global_step": 3,
                "hyper_parameters": {"_class_path": "lightning_modules.CycleGAN", "n_blocks": 1}}, ckpt)
    runs = tmp_path / "runs"
    expected = (f"--ckpt_path {ckpt} is a CycleGAN checkpoint, but the config's model is a DarknetClassifier; give its "
                "system's config, --config configs/cyclegan.yaml")
    with pytest.raises(train.UserError, match=re.escape(expected)):
        train.main([subcommand, "--config", str(ROOT / "configs" / "darknet.yaml"), "--trainer.default_root_dir",
                    str(runs), "--trainer.logger", "false", "--data.data_dir", str(tmp_path / "absent"),
                    "--ckpt_path", str(ckpt)])
    assert not runs.exists()


def test_an_evaluation_after_an_in_process_ddp_run_reads_its_own_checkpoint(tiny_cifar, tmp_path, monkeypatch):
    # Lightning's launcher leaves LOCAL_RANK=0 in the parent, and the environment keeps an earlier evaluation's
    # DL2_RUN_NAME and DL2_CKPT_PATH: rank 0 must not take them for rank 0's choices
    runs = tmp_path / "runs"
    train.main(job(tiny_cifar, runs, "--trainer.logger", "false", "--run_name", "trained"))
    checkpoints = runs / "trained" / "checkpoints"
    best = next(checkpoints.glob("best-*.ckpt"))
    monkeypatch.setenv("LOCAL_RANK", "0")
    train.main(native("test", tiny_cifar, runs, "--trainer.logger", "false", "--ckpt_path", str(checkpoints /
                                                                                              "last.ckpt")))
    train.main(native("test", tiny_cifar, runs, "--trainer.logger", "false", "--ckpt_path", str(best)))
    read = sorted(json.loads((d / "run.json").read_text())["checkpoint"] for d in runs.iterdir() if d.name != "trained")
    assert read == sorted([str(checkpoints / "last.ckpt"), str(best)])  # two folders, each its own checkpoint


def test_native_test_in_a_slurm_job_that_trained_writes_beside_the_jobs_run(tiny_cifar, tmp_path, monkeypatch):
    # an sbatch script that trains, then tests: both steps share SLURM_JOB_ID, and the test must not take over
    # slurm-77, the training run's folder
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    runs = tmp_path / "runs"
    train.main(job(tiny_cifar, runs, "--trainer.logger", "false"))
    trained = runs / "slurm-77"
    before = files(trained)
    train.main(native("test", tiny_cifar, runs, "--trainer.logger", "false", "--ckpt_path", "last"))
    assert files(trained) == before
    info = json.loads((runs / "slurm-77-test" / "run.json").read_text())
    assert info["kind"] == "test" and info["checkpoint"] == str(trained / "checkpoints" / "last.ckpt")
    # another checkpoint tested in the same step would replace these outputs: refused; a step of its own is not
    best = str(next((trained / "checkpoints").glob("best-*.ckpt")))
    with pytest.raises(train.UserError, match="slurm-77-test holds this job's test of .*last.ckpt; run each test in"):
        train.main(native("test", tiny_cifar, runs, "--trainer.logger", "false", "--ckpt_path", best))
    monkeypatch.setenv("SLURM_STEP_ID", "3")
    train.main(native("test", tiny_cifar, runs, "--trainer.logger", "false", "--ckpt_path", best))
    assert json.loads((runs / "slurm-77-3-test" / "run.json").read_text())["checkpoint"] == best
    assert files(trained) == before


# with the slow tests (CI's 10 minutes); test_a_launched_evaluation_rank_reads_rank_0s_checkpoint checks the cause in CI
@pytest.mark.slow
def test_native_subcommands_run_under_ddp_with_two_cpu_processes(tiny_cifar, tmp_path):
    # the launched rank gets the arguments (sys.argv) and rank 0's folder and checkpoint, not a `last` of its own
    runs = tmp_path / "runs"
    train.main(job(tiny_cifar, runs, "--trainer.logger", "false", "--run_name", "trained"))
    ddp = ("--trainer.logger", "false", "--trainer.accelerator", "cpu", "--trainer.strategy", "ddp",
           "--trainer.devices", "2")
    result = run_script(native("test", tiny_cifar, runs, *ddp, "--ckpt_path", "last"), tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (tested,) = [d for d in runs.iterdir() if d.name != "trained"]
    assert json.loads((tested / "run.json").read_text())["checkpoint"] == str(runs / "trained" / "checkpoints" /
                                                                            "last.ckpt")
    assert (tested / "test_confusion_matrix.csv").is_file()
    assert "sync_dist=True" not in result.stderr  # the per-class accuracies are synced already: no DDP warning

