#!/bin/sh
# Installs one service's dependencies into the virtual environment /opt/venv (deploy/docker/
# Dockerfile): veil's base dependencies and the service's extra. Not veil itself: the image runs
# the source tree copied to /app.
#
#   install-python-deps.sh anonymizer|unlearner|gateway cpu|cuda
#       (in a directory holding pyproject.toml and constraints.txt)
#
# When the service needs torch (its extra names it), torch comes first, from the PyTorch index of
# the variant (the CPU wheel, or the CUDA build named by TORCH_CUDA); everything else is then
# installed under the lock, which keeps pip from replacing that torch. The anonymizer also takes
# the extra of its variant: `cpu` (onnxruntime) or `gpu` (onnxruntime-gpu, pinned to the
# onnxruntime version of the lock, and nvidia-ml-py). Only the anonymizer has a cuda variant; it
# also takes the `faces` extra (dlib and its CC0 model files) for whole photos.
set -eu
service=$1
variant=$2
case "$service/$variant" in
    anonymizer/cpu) torch_build=cpu; extras="anonymizer cpu faces" ;;
    anonymizer/cuda) torch_build=${TORCH_CUDA:?set TORCH_CUDA, e.g. cu128}; extras="anonymizer gpu faces" ;;
    unlearner/cpu|gateway/cpu) torch_build=cpu; extras=$service ;;
    *) echo "no image for service '$service', variant '$variant'" >&2; exit 2 ;;
esac
pip="/opt/venv/bin/pip --no-cache-dir --disable-pip-version-check --no-input"
# shellcheck disable=SC2086 # one argument per extra
/opt/venv/bin/python - $extras > requirements.txt <<'PY'
import sys
import tomllib

with open("pyproject.toml", "rb") as f:
    project = tomllib.load(f)["project"]
extras = [project["optional-dependencies"][name] for name in sys.argv[1:]]
print("\n".join(project["dependencies"] + [r for extra in extras for r in extra]))
PY
if grep -q '^torch\b' requirements.txt; then
    $pip install -c constraints.txt \
        --index-url "https://download.pytorch.org/whl/$torch_build" \
        --extra-index-url https://pypi.org/simple \
        "torch==${TORCH_VERSION:?}+$torch_build"
fi
sed -n 's/^onnxruntime==/onnxruntime-gpu==/p' constraints.txt > variant-constraints.txt
$pip install -c constraints.txt -c variant-constraints.txt -r requirements.txt
$pip check
