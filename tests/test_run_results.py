"""What a fit trains and its results.json says: bf16-true batches, the last batch's lr, fast_dev_run's batches,
fractional epochs, no test with limit_test_batches 0."""

import json
import time

import lightning as L
import pytest
from runs import cyclegan_job, job, run_folders, wgan_job

import train

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets: threads only add contention


class BatchDtypes(L.Callback):
    """Records the dtypes of each training batch's float tensors and of the model's weights."""

    def __init__(self, record: str):
        self.record = record

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        tensors = batch if isinstance(batch, list | tuple) else [batch]
        floats = sorted({str(t.dtype) for t in tensors if t.is_floating_point()})
        weights = sorted({str(p.dtype) for p in pl_module.parameters()})
        with open(self.record, "a") as record:
            record.write(f"{' '.join(floats)} | {' '.join(weights)}\n")


@pytest.mark.parametrize("system", ["darknet", "wgan", "cyclegan"])
def test_true_half_precision_feeds_the_model_bf16_images(system, tiny_cifar, tiny_unpaired, tmp_path):
    """Lightning converts a batch before on_after_batch_transfer, while it is uint8: the float32 images made there
    met the bf16 weights (\"Input type (torch.FloatTensor) and weight type (CPUBFloat16Type)\", a traceback)."""
    runs, record, steps = tmp_path / "runs", tmp_path / "record", 2
    if system == "darknet":
        make = job(tiny_cifar, runs, "--data.batch_size", "4")
    elif system == "cyclegan":
        make, steps = cyclegan_job(tiny_unpaired, runs), 6
    else:
        make = wgan_job(tiny_cifar, runs)
    train.main([*make, "--trainer.precision", "bf16-true", "--trainer.max_steps", str(steps), "--run_name", "r",
                "--trainer.callbacks+=test_run_results.BatchDtypes", f"--trainer.callbacks.record={record}"])
    assert set(record.read_text().splitlines()) == {"torch.bfloat16 | torch.bfloat16"}
    assert json.loads((runs / "r" / "results.json").read_text())["global_step"] == steps


def test_final_lr_is_the_lr_of_the_last_batch_not_the_next_epochs(tiny_unpaired, tmp_path):
    """The CycleGAN's linear decay set each optimizer's lr for an epoch after the last: results.json said 0."""
    runs = tmp_path / "runs"
    train.main([*cyclegan_job(tiny_unpaired, runs, "--data.num_workers", "0"), "--model.n_epochs", "1",
                "--model.n_epochs_decay", "1", "--run_name", "r"])
    # epoch 1 of n_epochs 1 + n_epochs_decay 1 trains at (1 + 1 - 1) / (1 + 1) of lr 2e-4; the next would be at 0
    final_lr = json.loads((runs / "r" / "results.json").read_text())["final_lr"]
    assert final_lr == [[pytest.approx(1e-4)]] * 3


def test_a_cyclegan_fast_dev_run_trains_as_many_batches_as_asked(tiny_unpaired, tmp_path):
    """Lightning's fast_dev_run N sets max_steps N, a third of N batches of three optimizer steps."""
    runs = tmp_path / "runs"
    train.main([*cyclegan_job(tiny_unpaired, runs, "--data.num_workers", "0"), "--trainer.fast_dev_run", "2",
                "--run_name", "r"])
    results = json.loads((runs / "r" / "results.json").read_text())
    assert (results["batches"], results["global_step"]) == (2, 6)


def test_epochs_are_fractional_for_a_run_stopped_inside_an_epoch(tiny_cifar, tmp_path):
    runs = tmp_path / "runs"
    # 24 images in batches of 8: 3 batches an epoch; 4 steps are one epoch and a third
    train.main(job(tiny_cifar, runs, "--trainer.max_epochs", "5", "--trainer.max_steps", "4"))
    results = json.loads((run_folders(runs)[0] / "results.json").read_text())
    assert results["epochs"] == round(4 / 3, 4) and results["epochs_completed"] == 1 and results["batches"] == 4


def test_limit_test_batches_0_trains_skips_the_test_and_writes_the_results(tiny_cifar, tmp_path):
    """README: `0` means none. Lightning's test then returns no result at all: the job ended in an IndexError after
    the fit, without results.json."""
    runs = tmp_path / "runs"
    train.main(job(tiny_cifar, runs, "--data.batch_size", "4", "--trainer.max_steps", "2",
                   "--trainer.limit_test_batches", "0", "--run_name", "r"))
    results = json.loads((runs / "r" / "results.json").read_text())
    assert results["test"] == {} and results["global_step"] == 2


def test_fit_seconds_is_the_fits_wall_time_and_is_printed(tiny_cifar, tmp_path, capsys):
    """results.json's fit_seconds (benchmarks/time_to_accuracy.py reads it): the fit's time, within the job's; printed
    after the metrics, as airbench prints its time beside its accuracy (it was in the file alone)."""
    runs, start = tmp_path / "runs", time.perf_counter()
    train.main(job(tiny_cifar, runs, "--data.batch_size", "4", "--trainer.max_steps", "2", "--run_name", "r"))
    elapsed = time.perf_counter() - start
    seconds = json.loads((runs / "r" / "results.json").read_text())["fit_seconds"]
    assert 0 < seconds <= elapsed
    assert f"Fit time: {seconds} s" in capsys.readouterr().out.splitlines()
    train.main(job(tiny_cifar, runs, "--data.batch_size", "4", "--trainer.max_steps", "3", "--run_name", "r",
                   "--ckpt_path", "last"))
    seconds = json.loads((runs / "r" / "results.json").read_text())["fit_seconds"]
    assert f"Fit time: {seconds} s (this launch, after its resume)" in capsys.readouterr().out.splitlines()


def test_a_run_ended_before_its_first_validation_does_not_ask_whether_val_acc_was_logged(tiny_cifar, tmp_path,
                                                                                           recwarn):
    """--trainer.max_steps before the first validation: the ModelCheckpoint's save at the end warned "HINT: Did you call
    log('val/acc', value) in the LightningModule?", which points at the user's code (after a validation Lightning
    raises for a key truly missing)."""
    train.main(job(tiny_cifar, tmp_path / "runs", "--data.batch_size", "4", "--trainer.max_steps", "2"))
    assert not [w for w in recwarn if "could not find the monitored key" in str(w.message)]
