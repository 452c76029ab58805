"""Deterministic PNG output of matplotlib figures."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display; the same bytes on any machine with the same versions

import matplotlib.pyplot as plt  # noqa: E402 (after the backend is chosen)
from matplotlib.figure import Figure  # noqa: E402

DPI = 100


def new_figure(width: float, height: float, columns: int = 1) -> tuple[Figure, list]:
    figure, axes = plt.subplots(1, columns, figsize=(width, height), squeeze=False)
    return figure, list(axes[0])


def save_png(figure: Figure, path: Path) -> None:
    """Write `figure` to `path` without the metadata that would differ between runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=DPI, metadata={"Software": None})
    plt.close(figure)
