"""Download into .whl/ the wheels the lent GPU machine lacks (wandb, jsonargparse[signatures], airbench + needs).

    python benchmarks/fetch_wheels.py            # here, with internet; then name .whl in the device call's carry

The GPU machine (device tool, /work/.library/device/KINDS.md) runs Python 3.12 on x86-64 Linux with torch,
torchvision, lightning and torchmetrics but no internet. Each wheel is fetched with `pip download --no-deps` for
that interpreter and platform; its Requires-Dist lines (markers evaluated for Python 3.12 on Linux) name the next
ones, minus what that machine already has (PRESENT, copied from KINDS.md, read there on 2026-11-17; two of them
carried anyway, NEWER_THAN_PRESENT).
airbench 0.1.8 is published as a source archive only: it is built into a (pure Python) wheel here.
On the GPU machine: `pip install --no-index --no-deps --target /tmp/site .whl/*.whl` (gpu_acceptance.py does it).
"""

import argparse
import subprocess
import sys
import zipfile
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
ROOTS = ["wandb==0.31.0", "jsonargparse[signatures]==4.53.0"]
# what jsonargparse[signatures] brings, for the scripts' import probes (LightningCLI needs all three)
JSONARGPARSE_MODULES = "jsonargparse, docstring_parser, typeshed_client"
SDIST_ONLY = ["airbench==0.1.8"]
PYTHON = "3.12"
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64", "linux_x86_64"]
TARGET_ENV = {"python_version": PYTHON, "python_full_version": PYTHON + ".3", "sys_platform": "linux",
              "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
              "implementation_name": "cpython", "platform_python_implementation": "CPython"}
# the 'cuda' image's packages (KINDS.md, "Python packages already there")
PRESENT = set(map(canonicalize_name, """
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core cuda-pathfinder
cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock flatbuffers flax fonttools
formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna
imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver
lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe
matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals
networkx ninja numba numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime
nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13
nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript
opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy
peft pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments
pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist
python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image
scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six
sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile
tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm
transformers treescope triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel
wrapt xarray xxhash yarl zipp""".split()))


# carried although the image has them: the carried wheels need recent releases (pydantic-core 2.50 typing-extensions
# >= 4.16, googleapis-common-protos 1.76 protobuf >= 6.33.5), and KINDS.md gives no versions; on PYTHONPATH the
# carried ones come first
NEWER_THAN_PRESENT = {"typing-extensions", "protobuf"}


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True)


def install_offline(wheels: list[Path], site: Path) -> subprocess.CompletedProcess:
    """There, on the GPU machine (no internet): the carried wheels into site/, each as it is (their needs are
    carried too), for PYTHONPATH. gpu_acceptance.py and darknet_sweep.py call it."""
    return subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                           "--no-cache-dir", "--upgrade", "--target", str(site), *map(str, wheels)],
                          capture_output=True, text=True)


def download(requirement: str, dest: Path) -> None:
    platforms = [a for p in PLATFORMS for a in ("--platform", p)]
    pip("download", "-q", "--no-deps", "--only-binary=:all:", "--python-version", PYTHON, "--implementation", "cp",
        *platforms, "-d", str(dest), requirement)


def wheel_of(name: str, dest: Path) -> Path | None:
    for wheel in dest.glob("*.whl"):
        if canonicalize_name(wheel.name.split("-")[0]) == name:
            return wheel
    return None


def requirements_of(wheel: Path, extras: set[str]) -> list[Requirement]:
    """Requires-Dist lines that apply on the GPU machine for this wheel installed with these extras."""
    with zipfile.ZipFile(wheel) as z:
        metadata = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        lines = z.read(metadata).decode().splitlines()
    found = []
    for line in lines:
        if not line.startswith("Requires-Dist:"):
            continue
        req = Requirement(line.partition(":")[2].strip())
        marker: Marker | None = req.marker
        if marker is None or any(marker.evaluate({**TARGET_ENV, "extra": e}) for e in extras | {""}):
            found.append(req)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", default=str(ROOT / ".whl"))
    args = parser.parse_args()
    dest = Path(args.dest)
    dest.mkdir(parents=True, exist_ok=True)
    queue, seen = [Requirement(r) for r in ROOTS], set()
    while queue:
        req = queue.pop(0)
        name = canonicalize_name(req.name)
        key = (name, frozenset(req.extras))
        if key in seen or (name in PRESENT and name not in NEWER_THAN_PRESENT):
            continue
        seen.add(key)
        wheel = wheel_of(name, dest)
        if wheel is None:
            download(f"{req.name}{req.specifier}", dest)
            wheel = wheel_of(name, dest)
        for dep in requirements_of(wheel, set(req.extras)):
            if canonicalize_name(dep.name) == name:  # jsonargparse[signatures] -> jsonargparse[typing-extensions]
                queue.append(Requirement(f"{dep.name}[{','.join(req.extras | dep.extras)}]"))
            else:
                queue.append(dep)
    for spec in SDIST_ONLY:
        name = canonicalize_name(Requirement(spec).name)
        if wheel_of(name, dest) is None:  # pure Python: a wheel built here installs there
            pip("wheel", "-q", "--no-deps", "--no-build-isolation", "--no-binary=:all:", "-w", str(dest), spec)
    wheels = sorted(dest.glob("*.whl"))
    total = sum(w.stat().st_size for w in wheels)
    for w in wheels:
        print(f"{w.stat().st_size / 2**20:8.2f} MiB  {w.name}")
    print(f"{len(wheels)} wheels, {total / 2**20:.1f} MiB in {dest}")


if __name__ == "__main__":
    main()
