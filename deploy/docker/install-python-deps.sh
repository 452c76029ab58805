#!/bin/sh
# Installs veil's dependencies into the virtual environment /opt/venv, for every service image
# (services/*/Dockerfile). Not veil itself: the images run the source tree copied to /app, where
# veil.db finds services/<name>/migrations.
#
#   install-python-deps.sh cpu|cuda    (in a directory holding pyproject.toml and constraints.txt)
#
# torch comes first, from the PyTorch index of the variant (the CPU wheel, or the CUDA build named
# by TORCH_CUDA); everything else is then installed under the lock, which keeps pip from replacing
# that torch. The cuda variant takes the `gpu` extra (onnxruntime-gpu, nvidia-ml-py), pinned to the
# onnxruntime version of the lock. Every image takes the `faces` extra (dlib, its model files).
set -eu
variant=$1
case "$variant" in
    cpu) torch_build=cpu; extra=cpu ;;
    cuda) torch_build=${TORCH_CUDA:?set TORCH_CUDA, e.g. cu128}; extra=gpu ;;
    *) echo "variant must be cpu or cuda, not '$variant'" >&2; exit 2 ;;
esac
pip="/opt/venv/bin/pip --no-cache-dir --disable-pip-version-check --no-input"
$pip install -c constraints.txt \
    --index-url "https://download.pytorch.org/whl/$torch_build" \
    --extra-index-url https://pypi.org/simple \
    "torch==${TORCH_VERSION:?}+$torch_build"
/opt/venv/bin/python - "$extra" > requirements.txt <<'PY'
import sys
import tomllib

with open("pyproject.toml", "rb") as f:
    project = tomllib.load(f)["project"]
extras = project["optional-dependencies"]
print("\n".join(project["dependencies"] + extras[sys.argv[1]] + extras["faces"]))
PY
sed -n 's/^onnxruntime==/onnxruntime-gpu==/p' constraints.txt > variant-constraints.txt
$pip install -c constraints.txt -c variant-constraints.txt -r requirements.txt
$pip check
