"""The `veil` command line: one entry point, one module per command group.

Each module in COMMAND_MODULES exposes `register(subparsers)`, which adds its commands and sets
`func` on each parser; `func(args) -> int` is the exit status. Modules are imported lazily by
name so `veil --help` stays fast and a command group's heavy imports (torch) load only when used.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from veil.errors import VeilError

COMMAND_MODULES: list[str] = [
    "veil.cli.data",
    "veil.cli.diffusion",
    "veil.cli.faces",
    "veil.cli.model",
    "veil.cli.session",
    "veil.cli.unlearn",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="veil", description="Interactive face-image privacy.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except VeilError as exc:
        # Domain errors are the user's to fix: one clear line, no traceback.
        print(f"veil {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
