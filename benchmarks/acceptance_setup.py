"""GPU acceptance, the data and packages: what `--prepare` copies here into .carry/ and .whl/, and what the GPU machine
unpacks and installs from them (benchmarks/gpu_acceptance.py runs it)."""

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("DL2_SHARED_DATA", ROOT.parent / "shared" / "data"))

CIFAR_ARCHIVE = "cifar10-jpeg.tar.gz"
H2Z_ARCHIVE = "horse2zebra-subset.tar"
H2Z_COUNTS = {"trainA": 50, "trainB": 50, "testA": 10, "testB": 10}  # 120 of the 2,661 images: 5.2 MiB, not 115 MB
CARRY_LIMIT_MIB = 64


# ------------------------------------------------------------------------------------------ prepare (here)
def prepare(carry: Path, wheels: Path, fetch: bool) -> None:
    """Copy CIFAR-10, cut a horse2zebra subset, fetch the wheels; check that all that travels fits 64 MiB."""
    carry.mkdir(parents=True, exist_ok=True)
    source = SHARED_DATA / CIFAR_ARCHIVE
    if not source.exists():
        sys.exit(f"gpu_acceptance.py: error: {source} not found; set DL2_SHARED_DATA to the shared data folder")
    shutil.copyfile(source, carry / CIFAR_ARCHIVE)
    with tarfile.open(SHARED_DATA / "horse2zebra.tar") as full, tarfile.open(carry / H2Z_ARCHIVE, "w") as subset:
        members = {}
        for m in full.getmembers():
            parts = Path(m.name).parts
            if m.isfile() and len(parts) == 3 and parts[1] in H2Z_COUNTS:
                members.setdefault(parts[1], []).append(m)
        for folder, count in H2Z_COUNTS.items():
            for m in sorted(members[folder], key=lambda m: m.name)[:count]:
                subset.addfile(m, full.extractfile(m))
    if fetch:
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "fetch_wheels.py"), "--dest", str(wheels)],
                       check=True)
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    tree = sum((ROOT / f).stat().st_size for f in tracked.decode().split("\0") if f and (ROOT / f).is_file())
    sizes = {"tracked tree": tree, str(carry): folder_size(carry), str(wheels): folder_size(wheels)}
    for name, size in sizes.items():
        print(f"{size / 2**20:7.1f} MiB  {name}")
    total = sum(sizes.values()) / 2**20
    print(f"{total:7.1f} MiB  travels to the GPU machine (limit {CARRY_LIMIT_MIB} MiB, untracked files not counted)")
    if total > CARRY_LIMIT_MIB - 4:
        sys.exit(f"gpu_acceptance.py: error: {total:.1f} MiB is too close to the {CARRY_LIMIT_MIB} MiB limit; "
                 f"lower H2Z_COUNTS")



def folder_size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) if folder.exists() else 0



# ------------------------------------------------------------------------------------------ setup (there)
def make_tiny_archives(carry: Path) -> None:
    """--smoke without prepared data: archives in the real layouts, small random images (10 classes)."""
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    stage = carry / "stage"
    for split, count in (("train", 8), ("test", 4)):
        for c in range(10):
            folder = stage / "cifar10" / split / f"class{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i:04d}.jpg")
    for folder, count in (("trainA", 3), ("trainB", 3), ("testA", 2), ("testB", 2)):
        (stage / "horse2zebra" / folder).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(
                stage / "horse2zebra" / folder / f"{i:03d}.jpg")
    with tarfile.open(carry / CIFAR_ARCHIVE, "w:gz") as tar:
        tar.add(stage / "cifar10", "cifar10")
    with tarfile.open(carry / H2Z_ARCHIVE, "w") as tar:
        tar.add(stage / "horse2zebra", "horse2zebra")
    shutil.rmtree(stage)



def unpack(carry: Path, data: Path, per_class: tuple[int, int]) -> tuple[Path, Path, Path]:
    """CIFAR-10 and the horse2zebra subset into data/; cifar10-small/ links the first images of each class."""
    data.mkdir(parents=True, exist_ok=True)
    for archive in (CIFAR_ARCHIVE, H2Z_ARCHIVE):
        if not (carry / archive).exists():
            sys.exit(f"gpu_acceptance.py: error: {carry / archive} missing; run "
                     f"`python benchmarks/gpu_acceptance.py --prepare` where ../shared/data is, and carry .carry")
        from datamodules.download import extract_tar  # the 'data' filter, or its checks on older Pythons
        with tarfile.open(carry / archive) as tar:
            extract_tar(tar, data)
    small = data / "cifar10-small"
    for split, count in zip(("train", "test"), per_class, strict=True):
        for class_dir in sorted((data / "cifar10" / split).iterdir()):
            target = small / split / class_dir.name
            target.mkdir(parents=True, exist_ok=True)
            for f in sorted(class_dir.iterdir())[:count]:
                if not (target / f.name).exists():  # a --work folder used before (a rerun on a warm machine)
                    os.link(f, target / f.name)
    return data / "cifar10", small, data / "horse2zebra"



def install_wheels(wheels: Path, site: Path, env: dict) -> str:
    """The carried wheels into site/ (pip --no-index --target) when jsonargparse or wandb does not import."""
    def imports(modules: str) -> bool:
        return subprocess.run([sys.executable, "-c", f"import {modules}"], env=env, capture_output=True).returncode == 0
    from benchmarks.fetch_wheels import JSONARGPARSE_MODULES as needed
    if imports(needed + ", wandb"):
        return "jsonargparse and wandb already installed"
    found = sorted(wheels.glob("*.whl")) if wheels.exists() else []
    failed = None
    if found:
        from benchmarks.fetch_wheels import install_offline
        result = install_offline(found, site)
        if result.returncode == 0:
            env["PYTHONPATH"] = os.pathsep.join([str(site), env["PYTHONPATH"]])
            sys.path.insert(0, str(site))  # this process imports the models too (model_options)
            return f"{len(found)} wheels installed into {site}"
        failed = (result.stderr.strip().splitlines() or ["?"])[-1]  # e.g. wheels for another Python
    if imports(needed):
        return f"jsonargparse installed, wandb not ({failed or f'no wheels in {wheels}'})"
    sys.exit(f"gpu_acceptance.py: error: jsonargparse is not installed and {wheels} holds no wheels that install "
             f"({failed or 'none found'}); run `python benchmarks/fetch_wheels.py` where there is internet, and "
             "carry .whl")



def wandb_works(env: dict, folder: Path) -> str | None:
    """None when an offline W&B run can be made here, else why not (the CLI runs then go without a logger)."""
    probe = [sys.executable, "-c", f"import wandb; r = wandb.init(mode='offline', dir={str(folder)!r}, "
             "project='probe'); r.log({'x': 1}); r.finish()"]
    folder.mkdir(parents=True, exist_ok=True)
    try:
        result = subprocess.run(probe, env=env, capture_output=True, text=True, timeout=90)
    except subprocess.TimeoutExpired:
        return "an offline wandb.init took over 90 s"
    lines = (result.stderr or result.stdout).strip().splitlines()
    return None if result.returncode == 0 else (lines[-1] if lines else f"exit {result.returncode}")
