"""train.py's refusals as a user sees them from the command line: one line and exit status 2; a bug keeps its
traceback."""

import importlib.util
import sys

import lightning as L
import pytest
from conftest import ROOT, run_in_process
from runs import assert_one_line_error, job, run_script, wgan_job

import train

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets: threads only add contention


def test_the_offline_cifar10_download_error_is_one_line(tmp_path, capsys, monkeypatch):
    absent = tmp_path / "cifar10"
    result = run_in_process(job(absent, tmp_path / "runs", "--data.url", "http://127.0.0.1:9/cifar-10-python.tar.gz"),
                            capsys, monkeypatch)
    assert_one_line_error(result, f"no CIFAR-10 found in {absent}")


def test_an_option_the_last_callback_lacks_is_named_once_with_that_callback(tiny_cifar, tmp_path, capsys,
                                                                              monkeypatch):
    """`--trainer.callbacks.NAME` sets an option of the list's last callback; one it lacks (a typo after README's
    `--trainer.callbacks+=...EarlyStopping`, or the scheduler's one_cycle, which is not the last) was reported as
    "trainer.callbacks.patienc' is not accepted Option 'patienc is not an option": jsonargparse names the option once
    per class it tried (the callback's and lightning.Callback's), and the pattern took both lines as one name."""
    cases = {"--trainer.callbacks.patienc: EarlyStopping (the last callback, which --trainer.callbacks.NAME sets) "
             "has no option patienc; see --help": ["--trainer.callbacks+=lightning.pytorch.callbacks.EarlyStopping",
                                                   "--trainer.callbacks.monitor", "val/acc",
                                                   "--trainer.callbacks.patienc", "3"],
             "--trainer.callbacks.one_cycle: ModelCheckpoint (the last callback, which --trainer.callbacks.NAME sets) "
             "has no option one_cycle; see --help": ["--trainer.callbacks.one_cycle", "null"]}
    for needle, args in cases.items():
        error = assert_one_line_error(run_in_process(job(tiny_cifar, tmp_path / "runs", *args), capsys, monkeypatch),
                                      needle)
        assert "is not accepted" not in error and error.count("patienc") + error.count("one_cycle") == 2, error


def test_a_bad_value_from_the_command_line_is_one_line(tiny_cifar, tmp_path, capsys, monkeypatch):
    bad = {"--data.batch_size: expected int, got 'many'": ["--data.batch_size", "many"],
           "model.learning_rate is not an option, as --model.learning_rate or in a --config file; see the options "
           "with --help": ["--model.learning_rate", "0.1"],
           # the Trainer's own checks: a traceback and status 1
           "the Trainer refuses its options: `max_epochs` must be a non-negative integer or -1. You passed in -5. "
           "Check the --trainer values (--help-trainer lists them)": ["--trainer.max_epochs", "-5"],
           "the Trainer refuses its options: `max_steps` must be": ["--trainer.max_steps", "-3"],
           # its device parsing's TypeError on the CPU (a traceback, status 1, and an empty run folder left)
           "the Trainer refuses its options: `devices` selected with `CPUAccelerator` should be an int > 0. "
           "(--trainer.devices -1) Check the --trainer values": ["--trainer.accelerator", "cpu", "--trainer.devices",
                                                                 "-1"],
           "(--trainer.devices [0, 1])": ["--trainer.accelerator", "cpu", "--trainer.devices", "[0, 1]"],
           # a callback's own refusal (Lightning's MisconfigurationException), inside jsonargparse's ValueError
           "a --trainer.callbacks entry refuses its options: Combination of parameters every_n_train_steps=100, "
           "every_n_epochs=5 and train_time_interval=None should be mutually exclusive. Check its values":
               ["--trainer.callbacks+=ModelCheckpoint", "--trainer.callbacks.every_n_epochs", "5",
                "--trainer.callbacks.every_n_train_steps", "100"],
           # Lightning's RuntimeError for a second ModelCheckpoint of the shipped one's monitor and mode
           "two ModelCheckpoint callbacks with the same monitor, mode, every_n_epochs, every_n_train_steps or "
           "train_time_interval: a checkpoint keeps each one's state under those, so Lightning refuses the pair":
               ["--trainer.callbacks+=ModelCheckpoint", "--trainer.callbacks.monitor", "val/acc",
                "--trainer.callbacks.mode", "max", "--trainer.callbacks.save_top_k", "3"],
           "unrecognized arguments: --trainer.max_epoch 1 (did you mean trainer.max_epochs?); see --help":
               ["--trainer.max_epoch", "1"],
           # a flag without its group (junyanz's --lambda_identity): the model's or data's option of that name, both
           # where both have one, ours for another project's name; none for a flag that is nowhere
           "unrecognized arguments: --lambda_identity 0.5 (did you mean --model.lambda_identity?); see --help":
               ["--lambda_identity", "0.5"],
           "unrecognized arguments: --isize 64 (did you mean --model.isize and --data.isize?); see --help":
               ["--isize", "64"],
           "unrecognized arguments: --dataroot x (did you mean --data.data_dir?); see --help": ["--dataroot", "x"],
           "unrecognized arguments: --no_such_flag 1; see --help": ["--no_such_flag", "1"],
           # a class's required argument, not the other types the option takes ("Expected a <class 'bool'>")
           "--trainer.logger: CSVLogger needs --trainer.logger.save_dir; see --help":
               ["--trainer.logger", "CSVLogger"]}
    if not any(importlib.util.find_spec(name) for name in ("tensorboard", "tensorboardX")):  # not a dependency
        bad["Neither `tensorboard` nor `tensorboardX` is available. Try `pip install`ing either."] = [
            "--trainer.logger", "TensorBoardLogger", "--trainer.logger.save_dir", str(tmp_path / "tb")]
    for needle, args in bad.items():
        assert_one_line_error(run_in_process(job(tiny_cifar, tmp_path / "runs", *args), capsys, monkeypatch), needle)
    assert not (tmp_path / "runs").exists()  # refused before the run folder is made


def test_a_package_an_option_needs_is_one_line_and_a_bugs_import_error_keeps_its_traceback():
    from callbacks.errors import user_message
    try:
        try:
            raise ModuleNotFoundError("Neither `tensorboard` nor `tensorboardX` is available. Try `pip install`ing "
                                      "either.\nRequirement 'tensorboard' not met.")
        except ModuleNotFoundError as missing:
            raise ValueError("Problem with given class_path 'TensorBoardLogger'") from missing
    except ValueError as error:
        assert user_message(error) == ("Neither `tensorboard` nor `tensorboardX` is available. Try `pip install`ing "
                                       "either. Requirement 'tensorboard' not met.")
    try:
        try:
            import lightning_modules.no_such_module  # noqa: F401  (a bug's import)
        except ModuleNotFoundError as missing:
            raise ValueError("Problem with given class_path 'lightning_modules.Mine'") from missing
    except ValueError as error:
        assert user_message(error) is None


def test_the_fits_own_refusals_are_one_line(tiny_cifar, tmp_path, capsys, monkeypatch):
    """Lightning checks these as the fit starts, after the Trainer is made: a traceback and status 1."""
    runs = tmp_path / "runs"
    for option, value in (("gradient_clip_val", "1.0"), ("accumulate_grad_batches", "2")):
        assert_one_line_error(run_in_process(wgan_job(tiny_cifar, runs, f"--trainer.{option}", value), capsys,
                                             monkeypatch),
                              f"--trainer.{option} {value}: WGAN steps its optimizers itself", "drop it")
    # 24 images in batches of 8: 3 an epoch
    result = run_in_process(job(tiny_cifar, runs, "--trainer.val_check_interval", "4"), capsys, monkeypatch)
    assert_one_line_error(result, "--trainer.val_check_interval 4 is more than the 3 batches of an epoch",
                          "at most 3 batches")
    assert not runs.exists()  # refused inside the fit: the folder it made (run.json, W&B run, config.yaml) went


class UselessLog(L.Callback):
    def on_train_batch_end(self, trainer, pl_module, *args):
        pl_module.log("x", 1.0, on_step=False, on_epoch=False)  # Lightning's MisconfigurationException: a bug


def test_a_bug_lightning_reports_as_misconfiguration_keeps_its_traceback(tiny_cifar, tmp_path):
    """The one-line conversion of the fit's refusals took a bug in a log call for a --trainer option."""
    from lightning.pytorch.utilities.exceptions import MisconfigurationException
    with pytest.raises(MisconfigurationException, match="is not useful"):
        train.main(job(tiny_cifar, tmp_path / "runs", "--trainer.callbacks+=test_one_line_errors.UselessLog"))


class BadValue(L.Callback):
    def on_train_batch_end(self, trainer, pl_module, *args):
        raise ValueError("a bug in a callback")


def test_a_bug_raising_value_error_in_the_fit_keeps_its_traceback(tiny_cifar, tmp_path):
    """The fit's ValueError is made one line only for Lightning's val_check_interval refusal; any other is a bug."""
    with pytest.raises(ValueError, match="a bug in a callback") as raised:
        train.main(job(tiny_cifar, tmp_path / "runs", "--trainer.callbacks+=test_one_line_errors.BadValue"))
    assert raised.type is ValueError  # not a UserError (one line), nor a TypeError from reading the refusal's numbers


def test_a_config_of_another_systems_model_beside_system_is_refused(tiny_cifar, tmp_path, capsys, monkeypatch):
    """--system darknet --config configs/wgan.yaml trained a WGAN, silently."""
    wgan = str(ROOT / "configs" / "wgan.yaml")
    result = run_in_process(["--system", "darknet", "--config", wgan], capsys, monkeypatch)
    assert_one_line_error(result, f"--system darknet and --config {wgan}, a config of WGAN: give --config {wgan} alone")
    for short in (["-c", wgan], [f"-c={wgan}"]):  # LightningCLI's alias
        assert_one_line_error(run_in_process(["--system", "darknet", *short], capsys, monkeypatch), "a config of WGAN")
    own = tmp_path / "own.yaml"  # the system's own model, by its short name, with options: taken
    own.write_text("model:\n  class_path: DarknetClassifier\n  init_args:\n    nf: 4\n")
    with pytest.raises(SystemExit) as printed:
        train.main(["--system", "darknet", f"--config={own}", "--print_config"])
    assert printed.value.code in (0, None) and "nf: 4" in capsys.readouterr().out


def test_a_mistyped_key_in_a_config_file_is_named_as_its_key(tiny_cifar, tmp_path, capsys, monkeypatch):
    """A top-level typo read '--.trainr.max_epochs'; a Trainer one, "Group 'trainer' does not accept option"."""
    bad = {"trainr:\n  max_epochs: 1\n": "trainr.max_epochs is not an option, as --trainr.max_epochs or in a "
                                         "--config file",
           "trainer:\n  max_epoch: 1\n": "trainer.max_epoch is not an option (did you mean trainer.max_epochs?), as "
                                         "--trainer.max_epoch or in a --config file",
           "model:\n  init_args:\n    nff: 8\n": "model.nff is not an option, as --model.nff or in a --config file"}
    for text, needle in bad.items():
        config = tmp_path / "typo.yaml"
        config.write_text(text)
        result = run_in_process(job(tiny_cifar, tmp_path / "runs", "--config", str(config)), capsys, monkeypatch)
        assert_one_line_error(result, needle)


@pytest.mark.slow  # 22 s; the same unwrapping as test_a_bad_value_from_the_command_line_is_one_line, kept out of CI
def test_a_missing_weights_file_is_unwrapped_from_jsonargparse(tmp_path):
    args = ["--system", "style", "--model.vgg_weights", str(tmp_path / "vgg.pth"), "--trainer.logger", "false"]
    result = run_script(args, tmp_path)
    line = assert_one_line_error(result, f"--model.vgg_weights {tmp_path / 'vgg.pth'}: no such file")
    assert "Namespace(" not in line and "Union" not in line
    traced = run_script([*args, "--traceback"], tmp_path)  # the traceback stays one flag away
    assert traced.returncode != 0 and "Traceback (most recent call last)" in traced.stderr


def test_user_message_finds_the_user_error_in_a_worker_report():
    from callbacks.errors import user_message
    wrapped = train.UserError("Caught UserError in DataLoader worker process 0.\nOriginal Traceback (most recent "
                              "call last):\n  File \"x.py\", line 1\ncallbacks.errors.UserError: a.jpg is truncated")
    assert user_message(ValueError("wrapped")) is None  # a plain ValueError is a bug: traceback
    assert user_message(wrapped) == "a.jpg is truncated"
    try:
        try:
            raise train.UserError("the root cause; fix it")
        except train.UserError as error:
            raise ValueError("Does not validate against any of the Union subtypes") from error
    except ValueError as outer:
        assert user_message(outer) == "the root cause; fix it"



def test_user_message_follows_an_error_raised_while_handling_a_user_error_only_from_a_wrapper():
    """jsonargparse and Lightning raise their ValueError or RuntimeError while handling ours (no `from`): the
    UserError inside is the message. A bug's exception raised in an except block (a KeyError), or a wrapper that
    dropped the context (`from None`), is no user's mistake: its traceback stays."""
    from callbacks.errors import user_message

    def raised(outer, suppress=False):
        try:
            try:
                raise train.UserError("the root cause; fix it")
            except train.UserError:
                if suppress:
                    raise outer from None
                raise outer  # noqa: B904  (the implicit chaining a wrapper makes)
        except Exception as error:
            return error
    assert user_message(raised(ValueError("Does not validate against any of the Union subtypes"))) == \
        "the root cause; fix it"
    assert user_message(raised(RuntimeError("Error instantiating a class"))) == "the root cause; fix it"
    assert user_message(raised(KeyError("a bug in the handler"))) is None
    assert user_message(raised(ValueError("the context dropped"), suppress=True)) is None

def test_the_models_one_cycle_beside_the_configs_phase_scheduler_is_refused_with_both_ways_out(tiny_cifar, tmp_path):
    ways_out = (r'--model.one_cycle null; in Python one_cycle=None\) or the scheduler callback \(train.py: the '
                r'config.s callbacks, --trainer.callbacks "\[\]"')
    with pytest.raises(train.UserError, match=ways_out):
        train.main(job(tiny_cifar, tmp_path / "runs", "--model.one_cycle", "[20, 20, 0.95, 0.85]"))
    train.main(job(tiny_cifar, tmp_path / "runs", "--model.one_cycle", "[20, 20, 0.95, 0.85]", "--trainer.callbacks",
                   "[]", "--run_name", "without"))  # the second way runs
    assert (tmp_path / "runs" / "without" / "results.json").is_file()


@pytest.mark.parametrize("scheduler, message", [
    ("phases: [{epochs: 1, opt_fn: SGD, lr: 0.1, lr_decay: cosinus}]",
     "'cosinus' is not a valid DecayType; use one of no, linear, cosine, exponential, polynomial"),
    ("phases: [{epochs: -1, opt_fn: SGD, lr: 0.1}]", "a TrainingPhase needs epochs > 0 (got -1.0)"),
    ("phases: [{epochs: 1, opt_fn: Adamm, lr: 0.1}]", "unknown optimizer 'Adamm'"),
    ("one_cycle: {pcts: 20}", "one_cycle has no option 'pcts'; its options: cycle_len, lr, div, pct,")])
def test_a_bad_phase_spec_is_one_line(tiny_cifar, tmp_path, scheduler, message):
    from callbacks.errors import user_message
    config = tmp_path / "phases.yaml"
    config.write_text("trainer:\n  callbacks:\n    - class_path: callbacks.TrainingPhaseScheduler\n      init_args:\n"
                      f"        {scheduler}\n")
    with pytest.raises(Exception) as raised:  # jsonargparse wraps the scheduler's UserError
        train.main(job(tiny_cifar, tmp_path / "runs", "--config", str(config)))
    assert message in user_message(raised.value)


GLOO_GONE = "[../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer [127.0.0.1]:29500"


@pytest.mark.parametrize("chained", [False, True, "implicitly"])
def test_a_collective_failing_as_another_process_ended_is_one_line(chained, monkeypatch, capsys):
    """Rank 0's one-line error under DDP (the data missing on a node) was followed by rank 1's 30-line traceback of
    gloo's 'Connection closed by peer', which read as the crash. In one process, or with --traceback, or for another
    RuntimeError, the traceback stays."""
    from callbacks.errors import one_line_errors

    def collective(argv):
        if not chained:
            raise RuntimeError(GLOO_GONE)
        try:
            raise RuntimeError(GLOO_GONE)
        except RuntimeError as error:
            if chained == "implicitly":  # raised while handling it: its __context__ alone
                raise ValueError("the barrier failed")  # noqa: B904
            raise ValueError("the barrier failed") from error
    monkeypatch.setattr(sys, "argv", ["train.py"])
    monkeypatch.delenv("SLURM_NTASKS", raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(SystemExit) as stop:
        one_line_errors(collective, [])
    assert stop.value.code == 1
    assert capsys.readouterr().err == ("train.py: rank 1: stopped, as another process of the run ended first (it says "
                                       "why; --traceback shows this one's)\n")
    with pytest.raises(RuntimeError if not chained else ValueError):
        one_line_errors(collective, ["--traceback"])
    with pytest.raises(RuntimeError, match="mat1 and mat2 shapes"):  # a bug in a run of several
        one_line_errors(lambda argv: (_ for _ in ()).throw(RuntimeError("mat1 and mat2 shapes cannot be")), [])
    monkeypatch.setenv("WORLD_SIZE", "1")
    with pytest.raises(RuntimeError if not chained else ValueError):  # one process: no other to have ended
        one_line_errors(collective, [])
    monkeypatch.delenv("WORLD_SIZE")
    with pytest.raises(RuntimeError if not chained else ValueError):  # nothing says there are several
        one_line_errors(collective, [])
    monkeypatch.setenv("SLURM_NTASKS", "4")  # srun's tasks, no WORLD_SIZE
    with pytest.raises(SystemExit):
        one_line_errors(collective, [])
    assert capsys.readouterr().err.startswith("train.py: rank 1: stopped")
    monkeypatch.delenv("SLURM_NTASKS")
    monkeypatch.delenv("RANK")
    import torch.distributed as dist  # a process group of its own says it (a launcher's variables gone)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_rank", lambda group=None: 3)
    for size, one_line in ((2, True), (1, False)):
        monkeypatch.setattr(dist, "get_world_size", lambda group=None, size=size: size)
        if one_line:
            with pytest.raises(SystemExit):
                one_line_errors(collective, [])
            assert capsys.readouterr().err.startswith("train.py: rank 3: stopped")
        else:
            with pytest.raises(RuntimeError if not chained else ValueError):
                one_line_errors(collective, [])


@pytest.mark.parametrize("flag", [None, "fast", "0.5"])
def test_a_bad_value_in_a_config_file_is_named_as_the_files_not_as_a_flag(flag, tiny_cifar, tmp_path, capsys,
                                                                          monkeypatch):
    """`model: {lr: fast}` in a --config file was reported as "--model.lr: expected float", a flag the user never
    typed; a bad flag's value is still the flag's (jsonargparse reads the file first, then the flags)."""
    config = tmp_path / "mine.yaml"
    config.write_text("model:\n  lr: fast\n" if flag != "fast" else "model:\n  lr: 0.1\n")
    args = job(tiny_cifar, tmp_path / "runs", "--config", str(config), *(["--model.lr", flag] if flag else []))
    result = run_in_process(args, capsys, monkeypatch)
    expected = ("--model.lr: expected float, got 'fast'" if flag == "fast" else
                "model.lr in a --config file: expected float, got 'fast'")
    assert_one_line_error(result, expected)
    assert not (tmp_path / "runs").exists()
