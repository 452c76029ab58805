"""The report's sections: the option naming an input JSON -> the function rendering it.

A section is `render(data, figures_dir) -> markdown`; it writes its PNGs under figures_dir and
links them as `figures/NAME.png`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from veil_tools.report import owner, privacy, unlearning

Section = Callable[[dict, Path], str]

SECTIONS: dict[str, tuple[str, Section]] = {
    "privacy": ("veil eval --json", privacy.render),
    "owner": ("python -m veil_tools.owner", owner.render),
    "unlearning": ("python -m veil_tools.bench.unlearning", unlearning.render),
}
