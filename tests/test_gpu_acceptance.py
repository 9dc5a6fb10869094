"""benchmarks/gpu_acceptance.py (with its acceptance_setup.py and acceptance_report.py): its --smoke run on the CPU
(every part, tiny), its checks and its report."""

import json
import os
import sys

import pytest
import torch
from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_acceptance as acceptance  # noqa: E402

from benchmarks import acceptance_report  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.slow  # about 95 s on an idle 2-core CPU; CI runs the one-system smoke below
def test_smoke_runs_every_part_through_the_real_commands(tmp_path):
    out = tmp_path / "out"
    report = acceptance.main(["--smoke", "--work", str(tmp_path / "work"), "--out", str(out),
                              "--carry", str(tmp_path / "no-carry"), "--wheels", str(tmp_path / "no-wheels"),
                              "--budget", "3600"])
    assert report["failures"] == []
    # CLI: generated data of 10 classes x 8 training images; darknet batch 16 -> 5 steps an epoch; the cyclegan
    # 2 batches an epoch x 3 optimizers; wgan and style count steps; the resume doubles them in the same folder
    steps = {(r["system"], r["run"]["steps"], r["resume"]["steps"]) for r in report["cli"]}
    assert steps == {("darknet", 10 * 8 // 16, 10), ("wgan", 3, 6), ("cyclegan", 2 * 3, 12), ("style", 2, 4)}
    assert all(r["run"]["ok"] and r["resume"]["ok"] for r in report["cli"])
    for system in ("wgan", "cyclegan", "style"):
        run_dir = tmp_path / "work" / "runs" / f"{system}-32-true" / "acceptance"
        assert json.loads((run_dir / "results.json").read_text())["global_step"] == 2 * dict(
            (s, r) for s, r, _ in steps)[system]
        assert list((run_dir / "images").glob("*.png"))
    # speed: every script ran and gave a positive rate for both loops
    measured = {(r["system"], r["precision"]) for r in report["speed"]}
    assert measured == {("darknet", "32-true"), ("darknet", "bf16-mixed"), ("wgan", "bf16-mixed+channels_last"),
                        ("cyclegan", "32-true"), ("cyclegan", "bf16-mixed+channels_last"), ("style", "32-true")}
    assert all(r["ours"] > 0 and r["plain"] > 0 for r in report["speed"])
    assert 0 <= report["accuracy"]["test_acc"] <= 1
    # outputs: what the device tool returns (at most 8 files), the table as written
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8 and {"gpu_acceptance.json", "gpu_acceptance.md", "gpu_acceptance.log",
                                "logs.tar.gz"} <= set(files)
    table = (out / "gpu_acceptance.md").read_text()
    assert table.count("\n| darknet |") == 2 + 1 and "| style | L-BFGS evaluations/s, 32px, 2 images |" in table
    assert set(report["part_seconds"]) >= {"setup", "darknet-cli", "wgan-speed", "darknet-accuracy", "total"}


def test_smoke_of_one_system_runs_its_cli_lane_and_speed_script(tmp_path):
    """The same orchestration for the WGAN alone (CLI runs under each precision, resume, speed script, report),
    so CI catches a script that rotted without paying for every system."""
    out = tmp_path / "out"
    report = acceptance.main(["--smoke", "--only", "wgan", "--work", str(tmp_path / "work"), "--out", str(out),
                              "--carry", str(tmp_path / "no-carry"), "--wheels", str(tmp_path / "no-wheels"),
                              "--budget", "3600"])
    assert report["failures"] == []
    assert {(r["system"], r["run"]["steps"], r["resume"]["steps"]) for r in report["cli"]} == {("wgan", 3, 6)}
    assert {r["precision"] for r in report["speed"]} == {"bf16-mixed+channels_last"}
    assert all(r["ours"] > 0 and r["plain"] > 0 for r in report["speed"])
    assert "| wgan |" in (out / "gpu_acceptance.md").read_text()


def test_only_picks_parts_by_name_system_or_kind():
    assert acceptance.select_parts("wgan") == ["wgan-cli", "wgan-speed"]
    assert acceptance.select_parts("speed,darknet-accuracy") == [  # the accuracy first: never measured on a GPU
        "darknet-accuracy", "darknet-speed", "wgan-speed", "cyclegan-speed", "style-speed"]
    assert acceptance.select_parts("") == acceptance.PARTS
    with pytest.raises(SystemExit, match="--only gan names no part"):
        acceptance.select_parts("gan")


def fake_run(run_dir, global_step, epochs, images=True):
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "results.json").write_text(json.dumps({"global_step": global_step, "epochs": epochs}))
    torch.save({"global_step": global_step}, run_dir / "checkpoints" / "last.ckpt")
    if images:
        (run_dir / "images").mkdir()
        (run_dir / "images" / "samples-000001.png").write_bytes(b"")
    return run_dir


def test_check_run_finds_a_resume_that_did_not_continue(tmp_path):
    assert acceptance.check_run(fake_run(tmp_path / "a", 12, None), "wgan", 12, None, wandb=False) == []
    # restarted from step 0 instead of continuing: 6 steps where 12 were due
    assert acceptance.check_run(fake_run(tmp_path / "b", 6, 1), "cyclegan", 12, 2, wandb=False) == [
        "results.json global_step 6, expected 12", "results.json epochs 1, expected 2",
        "last.ckpt global_step 6, expected 12"]
    problems = acceptance.check_run(fake_run(tmp_path / "c", 4, 2, images=False), "style", 4, None, wandb=True)
    c = tmp_path / "c"
    assert problems == [f"no images in {c / 'images'}", f"no W&B offline run in {c}"]
    # restarted and trained 2 epochs from 0: the right final step, but not from the checkpoint's
    restarted = fake_run(tmp_path / "d", 12, 2)
    (restarted / "acceptance_probe-start.json").write_text(json.dumps({"global_step": 0}))
    assert acceptance.check_run(restarted, "cyclegan", 12, 2, wandb=False, start=6) == [
        "training began at global_step 0, expected 6"]
    assert acceptance.check_run(restarted, "cyclegan", 12, 2, wandb=False, start=0) == []
    assert acceptance.check_run(tmp_path / "absent", "darknet", 4, 1, wandb=False) == [
        f"no {tmp_path / 'absent' / 'results.json'}"]


def test_a_child_gets_the_time_left_before_the_deadline_and_none_is_started_past_it(tmp_path, monkeypatch):
    """The deadline (budget + 30 s) holds with children still to run: it gave any child 10 s at least before."""
    import time
    marker = tmp_path / "ran"
    command = [sys.executable, "-c", f"import pathlib, time; pathlib.Path({str(marker)!r}).touch(); time.sleep(30)"]
    monkeypatch.setattr(acceptance, "DEADLINE", [time.perf_counter() + 2])
    rc, seconds, last = acceptance.run(command, {}, tmp_path / "past.log", timeout=60)
    assert (rc, seconds, last) == (124, 0.0, "not started: past --budget's deadline") and not marker.exists()
    assert "not started" in (tmp_path / "past.log").read_text()
    monkeypatch.setattr(acceptance, "DEADLINE", [time.perf_counter() + 8])
    rc, seconds, last = acceptance.run(command, dict(os.environ), tmp_path / "cut.log", timeout=60)
    assert rc == 124 and last == "timed out" and 5 <= seconds < 20 and marker.exists()


def test_table_flags_ratios_below_target_and_the_speed_targets():
    rows = [{"system": "wgan", "measure": "critic it/s, 64px, batch 64", "precision": "32-true", "ours": 100.0,
             "plain": 50.0 / 0.48, "unit": "it/s"},
            {"system": "wgan", "measure": "critic it/s, 64px, batch 64", "precision": "bf16-mixed+channels_last",
             "ours": 150.0, "plain": 150.0, "unit": "it/s", "peak_ours_gib": 1.25, "peak_plain_gib": 1.0},
            {"system": "style", "measure": "L-BFGS evaluations/s, 512px, 1 image", "precision": "32-true",
             "ours": 10.0, "plain": 10.0, "per_image_ours": 10.0, "per_image_plain": 10.0},
            {"system": "style", "measure": "L-BFGS evaluations/s, 512px, 16 images", "precision": "32-true",
             "ours": 1.0, "plain": 1.0, "per_image_ours": 16.0, "per_image_plain": 16.0}]
    env = {"device": "GPU X", "date": "2026-11-28", "torch": "2.11", "lightning": "2.6.6", "cuda": "13.0",
           "python": "3.12"}
    text = acceptance_report.markdown({"environment": env, "command": "c", "smoke": False, "speed": rows, "cli": [],
                                "wandb": True, "part_seconds": {"total": 1.0}})
    assert "| wgan | critic it/s, 64px, batch 64 | 32-true | 100.0 | 104.2 | 0.960 (below target) | n/a / n/a |" in text
    assert "| 150.0 | 150.0 | 1.000 | 1.25 / 1 | GPU X | 2.11 / 2.6.6 | 2026-11-28 |" in text
    assert "- WGAN bf16+channels_last / fp32 (ours): 1.50x (target >= 1.4)" in text  # 150 / 100
    assert "- Style, per-image rate of 16 images / 1 image (ours): 1.60x (target >= 1.5)" in text  # 16 / 10


def test_fetch_wheels_follows_the_needs_but_not_into_the_machine_s_packages_except_the_two_it_may_hold_old(
        tmp_path, monkeypatch):
    import zipfile

    import fetch_wheels
    needs = {"wandb": ["click>=8.2", "protobuf<8,>=5", "pydantic>=2.6", "tqdm; python_version < '3.8'"],
             "pydantic": ["typing-extensions>=4.16", "annotated-types>=0.6"], "annotated-types": [],
             "jsonargparse": ["PyYAML>=3.13", "docstring-parser>=0.15; extra == 'signatures'"], "docstring-parser": [],
             "protobuf": [], "typing-extensions": []}
    fetched = []

    def download(requirement, dest):  # a wheel whose METADATA holds the package's needs, as pip download leaves it
        name = fetch_wheels.canonicalize_name(fetch_wheels.Requirement(requirement).name)
        fetched.append(name)
        with zipfile.ZipFile(dest / f"{name.replace('-', '_')}-1.0-py3-none-any.whl", "w") as wheel:
            wheel.writestr(f"{name}-1.0.dist-info/METADATA",
                           "".join(f"Requires-Dist: {line}\n" for line in needs[name]))
    monkeypatch.setattr(fetch_wheels, "download", download)
    monkeypatch.setattr(fetch_wheels, "ROOTS", ["wandb==0.31.0", "jsonargparse[signatures]==4.53.0"])
    monkeypatch.setattr(fetch_wheels, "SDIST_ONLY", [])
    monkeypatch.setattr(sys, "argv", ["fetch_wheels.py", "--dest", str(tmp_path)])
    fetch_wheels.main()
    # click and PyYAML are on the machine; tqdm's marker is false on Python 3.12; protobuf and typing-extensions are
    # carried all the same (the image's may be older than the carried wheels need)
    assert sorted(fetched) == ["annotated-types", "docstring-parser", "jsonargparse", "protobuf", "pydantic",
                               "typing-extensions", "wandb"]
