"""The gateway image installs no torch, diffusers or onnx (the `gateway` extra): every module of
the gateway, imported in a fresh interpreter, must leave them unimported."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOT_IN_THE_GATEWAY_IMAGE = ("torch", "diffusers", "safetensors", "onnx", "onnxruntime")

IMPORT_EVERY_GATEWAY_MODULE = f"""
import importlib, pkgutil, sys
import services.gateway
names = ["services.gateway." + m.name for m in pkgutil.iter_modules(services.gateway.__path__)]
assert "services.gateway.__main__" in names and len(names) > 10, names
for name in names:
    importlib.import_module(name)
print(" ".join(m for m in {NOT_IN_THE_GATEWAY_IMAGE!r} if m in sys.modules))
"""


def test_the_gateway_imports_no_torch_diffusers_or_onnx() -> None:
    done = subprocess.run([sys.executable, "-c", IMPORT_EVERY_GATEWAY_MODULE], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [], f"the gateway imports {done.stdout.strip()}"
