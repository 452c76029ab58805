"""`veil train | anonymize | eval | export-onnx`: the Diffusion-DP model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from veil.errors import InvalidArgument


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser("train", help="train the diffusion autoencoder (checkpoints, resumable)")
    train.add_argument("--config", type=Path, help="training config JSON (defaults: veil.diffusion.train.TrainConfig)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                       help="override one config value, e.g. --set steps=5000 --set unet_channels=[32,64,64]")
    train.add_argument("--run-dir", type=Path, required=True, help="run folder: config, log, checkpoints")
    train.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when available)")
    train.add_argument("--time-budget", type=float, default=None, help="stop (with a checkpoint) after this many seconds")
    train.add_argument("--until-step", type=int, default=None, help="stop (with a checkpoint) at this step")
    train.add_argument("--export", type=Path, default=None, help="write the shippable model folder here at the end")
    train.add_argument("--model-version", default="diffae-synth32", help="version recorded in the model card")
    train.set_defaults(func=_train)


def _config(args: argparse.Namespace):
    from veil.diffusion.train import TrainConfig

    raw = json.loads(args.config.read_text()) if args.config else {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidArgument(f"--set expects KEY=JSON, got {item!r}")
        try:
            raw[key] = json.loads(value)
        except json.JSONDecodeError:
            raw[key] = value
    return TrainConfig.from_dict(raw)


def _train(args: argparse.Namespace) -> int:
    from veil.diffusion.train import train_main

    return train_main(_config(args), args.run_dir, args.device, args.time_budget, args.until_step,
                      args.export, args.model_version)
