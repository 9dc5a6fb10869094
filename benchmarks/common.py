"""Where benchmarks find the real data: ../shared/data (or $DL2_SHARED_DATA), unpacked once into .cache/."""

import os
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("DL2_SHARED_DATA", ROOT.parent / "shared" / "data"))


def cifar10_dir() -> Path:
    """The real CIFAR-10 (JPEG copy, fast.ai layout), unpacked into .cache/cifar10 on first use."""
    target = ROOT / ".cache" / "cifar10"
    if not (target / "test").is_dir():
        archive = SHARED_DATA / "cifar10-jpeg.tar.gz"
        if not archive.exists():
            raise SystemExit(f"benchmark needs the real CIFAR-10 at {archive} (or set DL2_SHARED_DATA)")
        with tarfile.open(archive) as tar:
            tar.extractall(target.parent, filter="data")
    return target
