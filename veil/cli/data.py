"""`veil data ...`: synthetic data sets in the CelebA format."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="face data sets (CelebA format)")
    commands = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    synth = commands.add_parser("synth", help="write a seeded synthetic face data set")
    synth.add_argument("--out", type=Path, required=True, help="output folder")
    synth.add_argument("--identities", type=int, required=True)
    synth.add_argument("--per-identity", type=int, required=True)
    synth.add_argument("--seed", type=int, required=True)
    synth.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    synth.add_argument("--test-per-identity", type=int, default=None,
                       help="photos per identity held out as the test split (default: a fifth)")
    synth.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    synth.set_defaults(func=_synth)


def _synth(args: argparse.Namespace) -> int:
    from veil.data.synth import generate_dataset

    root = generate_dataset(args.out, args.identities, args.per_identity, args.seed, size=args.size,
                            test_per_identity=args.test_per_identity, workers=args.workers)
    print(f"wrote {args.identities * args.per_identity} images to {root}")
    return 0
