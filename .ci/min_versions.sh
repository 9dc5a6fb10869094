#!/usr/bin/env bash
# The version floors, tested: a fresh venv with every `>=` of setup.cfg's install_requires installed as `==`,
# the project on top without its dependencies, then the fast tests.
#   .ci/min_versions.sh [VENV_DIR] [pytest args]      (default: .venv-min, then -m "not slow" -q -n 2)
# TORCH_PINS replaces the torch/torchvision floors (two large downloads), e.g. keep what another venv has:
#   TORCH_PINS="torch==2.14.1 torchvision==0.29.1" .ci/min_versions.sh /tmp/min tests/test_darknet.py -q
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-.venv-min}"
shift || true
floors=$(python3 - <<'PY'
import configparser, os
config = configparser.ConfigParser()
config.read("setup.cfg")
lines = [line.strip() for line in config["options"]["install_requires"].splitlines() if line.strip()]
lines += [line.strip() for line in config["options.extras_require"]["dev"].splitlines() if line.strip()]
pins = os.environ.get("TORCH_PINS", "").split()
pinned = {pin.split("==")[0] for pin in pins}
out = [line.replace(">=", "==") for line in lines if line.split(">=")[0] not in pinned]
print(" ".join(out + pins))
PY
)
python3 -m venv "$venv"
echo "+ pip install $floors"
# shellcheck disable=SC2086
"$venv/bin/pip" install -q $floors
"$venv/bin/pip" install -q --no-deps -e .
"$venv/bin/pip" list 2>/dev/null | grep -iE '^(torch|torchvision|lightning|torchmetrics|wandb|jsonargparse|numpy|pillow|matplotlib) '
if [ $# -eq 0 ]; then set -- -m "not slow" -q -n 2; fi
"$venv/bin/python" -m pytest "$@"
