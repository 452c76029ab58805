"""The machine a measurement ran on, recorded beside its numbers (the eval's and the owner's JSON)."""

from __future__ import annotations

import os
import platform

import torch


def machine() -> dict[str, object]:
    return {"platform": platform.platform(), "processor": platform.machine(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__}
