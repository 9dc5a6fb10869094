"""train.py's command line before a run, called directly: --system to its config, the config's model, the model flags,
the checks of a config before its run folder, the system help, the W&B run a train.main began, the hardware and git
commit logged with a run. Small fakes stand in for LightningCLI, the Trainer and wandb; the expected values come from
the configs/ folder, the options' documented meaning, or a git repository the test makes."""

import inspect
import os
import re
import subprocess
import sys
from types import SimpleNamespace

import pytest
import yaml
from conftest import ROOT
from jsonargparse import Namespace

import train
from callbacks import checkpoints, configs, lr_finder, run_checkpoint, run_config, run_folder, wandb_run
from callbacks import cli as train_cli

CONFIGS = ROOT / "configs"


def shipped() -> list[str]:
    """The systems: the names of the YAML files in configs/, sorted."""
    return sorted(p.name[: -len(".yaml")] for p in CONFIGS.iterdir() if p.name.endswith(".yaml"))


# --system NAME, a config's model, the model flags


@pytest.mark.parametrize("argv, name, rest", [
    (["--system", "wgan", "--model.lr", "0.1"], "wgan", ["--model.lr", "0.1"]),
    (["--model.lr", "0.1", "--system=style", "--data.x", "1"], "style", ["--model.lr", "0.1", "--data.x", "1"]),
    (["--run_name", "r", "--system", "cyclegan"], "cyclegan", ["--run_name", "r"]),
    (["--config", "mine.yaml", "--model.nf", "8"], None, ["--config", "mine.yaml", "--model.nf", "8"])])
def test_find_system_takes_either_form_out_of_the_arguments(argv, name, rest):
    assert train.find_system(argv) == (name, rest)


@pytest.mark.parametrize("argv, given", [(["--system"], ""), (["--system=resnet"], "resnet"),
                                         (["--x", "--system", "Wgan"], "Wgan")])
def test_an_unknown_or_missing_system_is_refused_with_the_configs_folders_systems(argv, given):
    with pytest.raises(train.UserError) as refused:
        train.find_system(argv)
    assert str(refused.value) == f"unknown --system {given!r}; choose one of: {', '.join(shipped())}"


def test_system_becomes_its_config_and_a_config_alone_passes_through(tmp_path):
    assert train.system_to_config(["--system", "wgan", "--model.lr", "1"]) == [
        "--config", str(CONFIGS / "wgan.yaml"), "--model.lr", "1"]
    for argv in (["--config", "run/config.yaml", "--model.nf", "8"], ["--model.nf", "8", "--config=run/config.yaml"]):
        assert train.system_to_config(argv) == argv
    # a config of the system's own model (by its short name) or of no model at all is taken beside --system
    own, options = tmp_path / "own.yaml", tmp_path / "options.yaml"
    own.write_text("model:\n  class_path: DarknetClassifier\n  init_args:\n    nf: 4\n")
    options.write_text("trainer:\n  max_epochs: 1\n")
    assert train.system_to_config(["--system", "darknet", "--config", str(own), f"--config={options}"]) == [
        "--config", str(CONFIGS / "darknet.yaml"), "--config", str(own), f"--config={options}"]


@pytest.mark.parametrize("argv", [[], ["--model.lr", "0.1"], ["--configs", "x.yaml"]])
def test_neither_system_nor_config_is_refused_naming_the_three_ways(argv):
    with pytest.raises(train.UserError) as refused:
        train.system_to_config(argv)
    message = str(refused.value)
    assert message.startswith(f"give --system NAME (one of: {', '.join(shipped())}), a whole config (--config ")
    assert message.endswith("or a subcommand (fit, test, validate) with --config")


def test_a_config_of_another_model_beside_system_is_refused_with_both_ways_out(tmp_path):
    other = tmp_path / "gan.yaml"
    other.write_text("model:\n  class_path: my.models.WGAN\n")
    with pytest.raises(train.UserError) as refused:
        train.system_to_config(["--system", "darknet", "--config", str(other)])
    assert str(refused.value) == (f"--system darknet and --config {other}, a config of WGAN: give --config {other} "
                                  f"alone to run it (--config configs/darknet.yaml --config {other} for your model in "
                                  f"the shipped recipe), or --system darknet with a config of its options")


@pytest.mark.parametrize("text, model", [
    ("model:\n  class_path: lightning_modules.WGAN\n", "WGAN"), ("model:\n  class_path: CycleGAN\n", "CycleGAN"),
    ("model:\n  init_args:\n    nf: 4\n", None), ("trainer:\n  max_epochs: 1\n", None), ("", None),
    ("model:\n  class_path: 3\n", None), ("- model\n", None), ("model: [1, 2]\n", None),
    ("model: {class_path: [a\n", None)])  # the last is no YAML: LightningCLI names the mistake
def test_config_model_is_the_short_class_name_or_none(text, model, tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    assert train.config_model(path) == model
    assert train.config_model(tmp_path / "absent.yaml") is None


def test_model_flags_are_the_first_name_after_model_and_init_args():
    argv = ["--model.tta", "flip", "--model.init_args.nf=8", "--data.batch_size", "4", "--model.one_cycle.div", "20",
            "--model.blocks+=3", "--model.init_args.betas=[0, 1]", "--model", "DarknetClassifier", "--trainer.x=1"]
    assert train_cli.model_flags(argv) == ["tta", "nf", "one_cycle", "blocks", "betas"]


def test_system_of_a_class_is_the_config_that_trains_it_by_class_name():
    assert {path: configs.system_of(path) for path in (
        "lightning_modules.WGAN", "mine.WGAN", "CycleGAN", "lightning_modules.StyleTransfer", "my.GAN", "")} == {
        "lightning_modules.WGAN": "wgan", "mine.WGAN": "wgan", "CycleGAN": "cyclegan",
        "lightning_modules.StyleTransfer": "style", "my.GAN": None, "": None}
    # darknet and darknet_fast train the same class: the first of them
    assert configs.system_of("lightning_modules.DarknetClassifier") == "darknet"


def test_no_data_module_is_not_checked():
    train_cli.check_data("lightning_modules.WGAN", None)


# the job's own checks (check_job): the LR finder of a GAN, --init_from, the resumed checkpoint's step


class ManualGAN:
    automatic_optimization = False


class Classifier:
    automatic_optimization = True


def job_cli(model, callbacks=None):
    return SimpleNamespace(model=model, trainer=SimpleNamespace(callbacks=callbacks if callbacks is not None else []),
                           config=Namespace(model=Namespace(class_path="lightning_modules.WGAN")), datamodule=None)


def job_options(run=False, init_from=None, ckpt_path=None):
    return Namespace(lr_find=Namespace(run=run), init_from=init_from, ckpt_path=ckpt_path)


def test_check_job_refuses_the_lr_finder_of_a_model_that_steps_its_optimizers_itself():
    with pytest.raises(train.UserError, match=r"^--lr_find sweeps the lr of one optimizer that Lightning steps; "
                                              r"ManualGAN steps its optimizers itself \(a GAN's alternating updates\)"):
        train_cli.check_job(job_cli(ManualGAN()), job_options(run=True))
    assert train_cli.check_job(job_cli(Classifier()), job_options(run=True)) is None
    assert train_cli.check_job(job_cli(ManualGAN()), job_options(run=False)) is None


def test_check_job_puts_init_from_on_the_trainer_and_returns_the_resumed_step(monkeypatch):
    calls = []
    monkeypatch.setattr(checkpoints, "init_from", lambda *args: calls.append(("init_from", *args)) or "weights")
    monkeypatch.setattr(checkpoints, "check_checkpoint",
                        lambda *args: calls.append(("check", *args)) or {"global_step": 42})
    model = Classifier()
    cli = job_cli(model, ["earlier"])
    assert train_cli.check_job(cli, job_options(init_from="w.ckpt")) is None
    assert cli.trainer.callbacks == ["earlier", "weights"] and calls == [("init_from", "w.ckpt", model, "wgan", False)]
    calls.clear()
    assert train_cli.check_job(cli, job_options(init_from="w.ckpt", ckpt_path="last.ckpt")) == 42
    assert calls == [("init_from", "w.ckpt", model, "wgan", True), ("check", "last.ckpt", model, "wgan")]
    calls.clear()
    assert train_cli.check_job(job_cli(model), job_options(ckpt_path="last.ckpt")) == 42
    assert calls == [("check", "last.ckpt", model, "wgan")]


# CLI.before_instantiate_classes with a fake CLI: the config as given, the refusals before a folder, the plan


class FakeCLI:
    before_instantiate_classes = train_cli.CLI.before_instantiate_classes

    def __init__(self, config, job=True, resolved=False):
        self.config, self.job, self.checkpoint_resolved = config, job, resolved

    def job_config(self):
        return self.config if self.job else self.config[self.config.subcommand]


def options(model="lightning_modules.DarknetClassifier", **given):
    finder = {name: p.default for name, p in inspect.signature(lr_finder.lr_find).parameters.items() if name != "cli"}
    values = dict(model=Namespace(class_path=model), trainer=Namespace(fast_dev_run=False), ckpt_path=None,
                  run_name=None, init_from=None, save_every_minutes=10.0, lr_find=Namespace(**finder))
    values.update(given)
    return Namespace(**values)


def native(subcommand, **given):
    section = options(**given)
    del section["lr_find"]
    section.weights_only = given.get("weights_only")
    return Namespace(subcommand=subcommand, **{subcommand: section})


@pytest.fixture
def calls(monkeypatch):
    """resolve_checkpoint, check_checkpoint_class and prepare_run recorded: (name, kind), and prepare_run's make."""
    made = []
    monkeypatch.setattr(run_checkpoint, "resolve_checkpoint", lambda config, kind: made.append(("resolve", kind)))
    monkeypatch.setattr(checkpoints, "check_checkpoint_class", lambda config, kind: made.append(("class", kind)))
    monkeypatch.setattr(run_folder, "prepare_run", lambda config, kind, make=True: made.append(("prepare", kind, make))
                        or "the plan")
    return made


def test_a_jobs_config_as_given_leaves_out_its_folder_checkpoint_and_the_job_forms_defaults(calls):
    config = options(run_name="r1", ckpt_path="runs/r1/checkpoints/last.ckpt")
    cli = FakeCLI(config)
    cli.before_instantiate_classes()
    given = cli.config_as_given
    assert given.ckpt_path is None and given.run_name is None and "lr_find" not in given and "init_from" not in given
    assert config.run_name == "r1" and config.ckpt_path.endswith("last.ckpt") and "lr_find" in config  # untouched
    assert calls == [("resolve", "fit"), ("prepare", "fit", False)] and cli.run_plan == "the plan"
    cli = FakeCLI(options(init_from="first.ckpt"))
    cli.before_instantiate_classes()
    assert cli.config_as_given.init_from == "first.ckpt"  # a fine-tuned run's config names its start


def test_an_lr_finders_config_keeps_its_options(calls):
    config = options()
    config.lr_find.run, config.lr_find.num_training = True, 5
    cli = FakeCLI(config)
    cli.before_instantiate_classes()
    assert cli.config_as_given.lr_find.num_training == 5 and cli.config_as_given.run_name is None
    assert calls == [("resolve", "lr_find"), ("prepare", "lr_find", False)]


@pytest.mark.parametrize("resolved", [False, True])
def test_an_evaluations_config_keeps_its_checkpoint_and_run_name(calls, resolved):
    config = native("test", ckpt_path="runs/r1/checkpoints/last.ckpt", run_name="r1")
    cli = FakeCLI(config, job=False, resolved=resolved)
    cli.before_instantiate_classes()
    assert cli.config_as_given.ckpt_path == "runs/r1/checkpoints/last.ckpt" and cli.config_as_given.run_name == "r1"
    # Lightning 2.6's _parse_ckpt_path resolved and checked it already; under 2.5, here
    assert calls == [*([] if resolved else [("resolve", "test"), ("class", "test")]), ("prepare", "test", False)]


def test_a_native_fits_config_drops_weights_only_at_its_default(calls):
    for value, kept in ((None, False), (True, True)):
        cli = FakeCLI(native("fit", weights_only=value), job=False)
        cli.before_instantiate_classes()
        assert ("weights_only" in cli.config_as_given) == kept
    assert calls[:3] == [("resolve", "fit"), ("class", "fit"), ("prepare", "fit", False)]


@pytest.mark.parametrize("kind, model, step", [("validate", "lightning_modules.StyleTransfer", "validation_step"),
                                               ("test", "lightning_modules.WGAN", "test_step")])
def test_an_evaluation_of_a_system_without_its_step_is_refused_before_any_folder(calls, kind, model, step):
    cli = FakeCLI(native(kind, model=model, ckpt_path="x.ckpt"), job=False)
    with pytest.raises(train.UserError, match=f"^{kind}: {model.rpartition('.')[2]} has no {step}; "):
        cli.before_instantiate_classes()
    assert calls == []
    FakeCLI(native(kind, ckpt_path="x.ckpt"), job=False).before_instantiate_classes()  # the Darknet has both
    assert calls[-1] == ("prepare", kind, False)


def test_each_lr_finder_option_without_the_finder_is_named(calls):
    for name, value in (("mode", "linear"), ("min_lr", 1e-3), ("stop_div", None), ("linear_axis", True)):
        config = options()
        setattr(config.lr_find, name, value)
        with pytest.raises(train.UserError, match=f"^--lr_find.{name} is an LR finder option, but the finder runs "
                                                  r"only with --lr_find \(else this trains\)"):
            FakeCLI(config).before_instantiate_classes()
    assert calls == []


def test_init_from_is_refused_by_the_native_fit_alone(calls):
    with pytest.raises(train.UserError, match=r"^--init_from starts a run in the job form: python train.py --config "
                                              r"FILE --init_from CKPT \(without the fit subcommand\)"):
        FakeCLI(native("fit", init_from="w.ckpt"), job=False).before_instantiate_classes()
    FakeCLI(native("test", init_from="w.ckpt", ckpt_path="x.ckpt"), job=False).before_instantiate_classes()
    FakeCLI(options(init_from="w.ckpt")).before_instantiate_classes()
    assert [c[1] for c in calls if c[0] == "prepare"] == ["test", "fit"]


def test_a_fast_dev_run_with_a_checkpoint_is_refused_for_a_fit_alone(calls):
    fast = Namespace(fast_dev_run=1)
    with pytest.raises(train.UserError, match=r"^--trainer.fast_dev_run with --ckpt_path would run its one batch in "
                                              r"that run's folder .*drop --ckpt_path"):
        FakeCLI(options(trainer=fast, ckpt_path="x.ckpt")).before_instantiate_classes()
    FakeCLI(options(trainer=fast)).before_instantiate_classes()  # a smoke test of a new run
    FakeCLI(native("test", trainer=fast, ckpt_path="x.ckpt"), job=False).before_instantiate_classes()
    assert [c[1] for c in calls if c[0] == "prepare"] == ["fit", "test"]


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../up", f"a{os.sep}b"])
def test_a_run_name_that_is_no_single_folder_name_is_refused(calls, name):
    with pytest.raises(train.UserError) as refused:
        FakeCLI(options(run_name=name)).before_instantiate_classes()
    assert str(refused.value).startswith(f"--run_name {name!r}: one folder's name under --trainer.default_root_dir, "
                                         "without '/'")
    assert calls == []


def test_a_run_name_with_the_platforms_own_separator_is_refused(calls, monkeypatch):
    with monkeypatch.context() as windows:  # os.sep is "/" here: Windows' backslash, in force for the check alone
        windows.setattr(os, "sep", "\\")
        with pytest.raises(train.UserError, match=r"^--run_name 'a\\\\b': one folder's name under "):
            FakeCLI(options(run_name="a\\b")).before_instantiate_classes()
    assert calls == []


@pytest.mark.parametrize("name", ["r1", "...", "a.b", "..x"])
def test_a_run_name_with_dots_is_a_folder_name(calls, name):
    FakeCLI(options(run_name=name)).before_instantiate_classes()
    assert calls[-1] == ("prepare", "fit", False)


def test_save_every_minutes_takes_0_and_fractions_and_refuses_a_negative(calls):
    for minutes in (0.0, 0.5):
        FakeCLI(options(save_every_minutes=minutes)).before_instantiate_classes()
    with pytest.raises(train.UserError, match=r"^--save_every_minutes -0.5: give minutes, or 0 for no timed saves"):
        FakeCLI(options(save_every_minutes=-0.5)).before_instantiate_classes()
    assert len(calls) == 4


# the W&B run a train.main began, ended with its exit status


@pytest.mark.parametrize("earlier, now, ended", [
    (None, "ours", [130]),  # began here, no run before: ended with the status given
    ("callers", "ours", [130]),  # began here, beside the caller's (which wandb replaced): ended
    ("callers", "callers", []),  # the caller's run, logged into: the caller ends it
    (None, None, []),  # no run at all
    ("callers", None, [])])  # the caller's, ended meanwhile: nothing to end
def test_the_wandb_run_is_ended_only_when_this_call_began_it(monkeypatch, earlier, now, ended):
    runs = {"callers": SimpleNamespace(id="callers1"), "ours": SimpleNamespace(id="ours0001"), None: None}
    finished = []
    monkeypatch.setitem(sys.modules, "wandb", SimpleNamespace(run=runs[now], finish=lambda exit_code: finished.append(
        exit_code)))
    wandb_run.finish_wandb_run(runs[earlier], 130)
    assert finished == ended


def test_the_current_wandb_run_is_none_without_wandb_or_a_run(monkeypatch):
    run = SimpleNamespace(id="ours0001")
    monkeypatch.setitem(sys.modules, "wandb", SimpleNamespace(run=run))
    assert wandb_run.current_wandb_run() is run
    monkeypatch.setitem(sys.modules, "wandb", SimpleNamespace())  # a wandb without `run` (a stub)
    assert wandb_run.current_wandb_run() is None
    monkeypatch.delitem(sys.modules, "wandb")  # never imported: not imported for this
    assert wandb_run.current_wandb_run() is None and "wandb" not in sys.modules
    wandb_run.finish_wandb_run(None, 0)


def test_a_failing_wandb_finish_does_not_hide_the_runs_own_outcome(monkeypatch):
    def finish(exit_code):
        raise OSError("wandb's service is gone")
    monkeypatch.setitem(sys.modules, "wandb", SimpleNamespace(run=SimpleNamespace(), finish=finish))
    wandb_run.finish_wandb_run(None, 1)


# what a run logs of its hardware and checkout


class TPUAccelerator:
    pass


class FSDPStrategy:
    pass


def fake_trainer(datamodule, world_size=6, accumulate=3):
    return SimpleNamespace(datamodule=datamodule, accelerator=TPUAccelerator(), strategy=FSDPStrategy(),
                           num_devices=3, num_nodes=2, world_size=world_size, accumulate_grad_batches=accumulate)


def test_hardware_names_what_auto_became_and_the_batch_of_an_optimizer_step():
    data = SimpleNamespace(hparams={"batch_size": 8})
    assert run_config.hardware(fake_trainer(data)) == {"accelerator": "TPUAccelerator", "strategy": "FSDPStrategy",
                                                       "devices": 3, "nodes": 2, "world_size": 6,
                                                       "effective_batch_size": 8 * 6 * 3}
    assert isinstance(run_config.hardware(fake_trainer(data))["effective_batch_size"], int)
    assert run_config.hardware(fake_trainer(data, world_size=1, accumulate=5))["effective_batch_size"] == 40
    # no data module, one without hyper-parameters or without an int batch size: unknown
    for datamodule in (None, SimpleNamespace(), SimpleNamespace(hparams={}), SimpleNamespace(hparams={
            "batch_size": None})):
        assert run_config.hardware(fake_trainer(datamodule))["effective_batch_size"] is None


def git(folder, *args):
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=folder,
                          capture_output=True, text=True, check=True).stdout.strip()


def test_git_commit_is_the_checkouts_head_dirty_with_changed_tracked_files(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # no repository above tmp_path is found
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    # git_commit looks in the checkout that holds callbacks/run_config.py
    monkeypatch.setattr(run_config, "__file__", str(checkout / "callbacks" / "run_config.py"))
    assert run_config.git_commit() is None  # not a git checkout
    git(checkout, "init", "-q")
    (checkout / "train.py").write_text("one\n")
    git(checkout, "add", "train.py")
    git(checkout, "commit", "-qm", "first")
    head = (checkout / ".git" / "refs" / "heads" / git(checkout, "branch", "--show-current")).read_text().strip()
    assert re.fullmatch("[0-9a-f]{40}", head)
    assert run_config.git_commit() == head
    (checkout / "notes.txt").write_text("untracked")  # an untracked file is no change of the code
    assert run_config.git_commit() == head
    (checkout / "train.py").write_text("two\n")
    assert run_config.git_commit() == head + "-dirty"
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))  # no git at all
    assert run_config.git_commit() is None


# the system help


def option_help(text: str, option: str) -> str:
    """The help of one option, its lines joined: from `  --option` to the next option. An option with two flags is
    `--a A, --a+ A` up to Python 3.12 and `--a, --a+ A` from 3.13 (argparse shows the metavar once)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"  {re.escape(option)}( |,|$)", line))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith("   ")), len(lines))
    return " ".join(" ".join(lines[start:end]).split())


def shown_default(text: str, option: str):
    found = re.search(r"default: (.*)\)$", option_help(text, option))
    assert found, option_help(text, option)
    return yaml.safe_load(found[1])


def same_value(shown, value) -> bool:
    try:
        return float(shown) == float(value)
    except (TypeError, ValueError):
        return shown == value


@pytest.mark.parametrize("system", shipped())
def test_system_help_names_each_option_of_its_config_with_the_configs_value(system, capsys):
    config = yaml.safe_load((CONFIGS / f"{system}.yaml").read_text())
    train.print_system_help(["--system", system])
    text = capsys.readouterr().out
    assert text.startswith(f"usage: python train.py --system {system} ")
    assert option_help(text, "--system") == (f"--system {{{','.join(shipped())}}} the system to train "
                                             f"(configs/NAME.yaml) (default: {system})")
    for group in ("model", "data"):
        for key, value in (config[group].get("init_args") or {}).items():
            if not isinstance(value, (dict, list)):
                assert same_value(shown_default(text, f"--{group}.{key}"), value), (group, key)
    for key, value in config["trainer"].items():
        if not isinstance(value, (dict, list)):
            assert same_value(shown_default(text, f"--trainer.{key}"), value), key
    # the run options, with the job's own default of the timed saves (README: every 10 minutes)
    assert shown_default(text, "--save_every_minutes") == 10.0
    for option in ("--ckpt_path", "--init_from", "--run_name", "--lr_find", "--traceback"):
        option_help(text, option)


def test_system_help_shows_the_class_names_of_a_configs_callbacks_plugins_and_logger(tmp_path, monkeypatch, capsys):
    (tmp_path / "mine.yaml").write_text(
        "model:\n  class_path: lightning_modules.WGAN\n  init_args:\n    nz: 7\n"
        "data:\n  class_path: datamodules.ImageFolderDataModule\n"
        "trainer:\n  gradient_clip_val: 0.5\n  default_root_dir: runs/v1.2\n"
        "  plugins: {class_path: callbacks.AtomicCheckpointIO}\n"
        "  callbacks:\n    - class_path: lightning.pytorch.callbacks.LearningRateMonitor\n"
        "    - lightning.pytorch.callbacks.ModelSummary\n"
        "  logger: []\n")
    monkeypatch.setattr(configs, "FOLDER", tmp_path)
    train.print_system_help(["--system", "mine"])
    text = capsys.readouterr().out
    assert shown_default(text, "--model.nz") == 7 and shown_default(text, "--trainer.gradient_clip_val") == 0.5
    assert shown_default(text, "--trainer.default_root_dir") == "runs/v1.2"  # a value with a dot, as written
    assert option_help(text, "--trainer.plugins").endswith("(default: AtomicCheckpointIO)")
    assert option_help(text, "--trainer.callbacks").endswith("(default: LearningRateMonitor, ModelSummary)")
    assert option_help(text, "--trainer.logger").endswith("(default: [])")  # no logger, as written


def test_help_without_system_lists_each_system_with_its_configs_first_words(capsys):
    train.print_system_help(["--help"])
    text = capsys.readouterr().out
    width = max(len(name) for name in shipped())
    listed = text.split("--system NAME --help):\n")[1].splitlines()
    assert len(listed) == len(shipped())
    for name, line in zip(shipped(), listed, strict=True):
        first = (CONFIGS / f"{name}.yaml").read_text().splitlines()[0]
        words = line[2 + width + 2:]
        assert line == f"  {name.ljust(width)}  {words}" and words and " (" not in words
        assert first.startswith(f"# {words}") and first[len(words) + 2:][:2] in ("", " (", ":", ": ")
