"""The report's sections: the option naming an input JSON -> the function rendering it.

A section is `render(data, figures_dir) -> markdown`; it writes its PNGs under figures_dir and
links them as `figures/NAME.png`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from veil_tools.report import owner, privacy

Section = Callable[[dict, Path], str]

SECTIONS: dict[str, tuple[str, Section]] = {
    "owner": ("python -m veil_tools.owner", owner.render),
    "privacy": ("veil eval --json", privacy.render),
}
