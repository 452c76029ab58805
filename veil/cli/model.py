"""`veil model upload | pull`: model folders in the object store (store settings from VEIL_STORE_* / VEIL_S3_*).

The published classifiers' commands of the same group (manifest, train, list, show) live in
veil.cli.unlearn.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    model = subparsers.add_parser("model", help="model folders in the object store; published classifiers")
    commands = model.add_subparsers(dest="model_command", required=True, metavar="COMMAND")
    upload = commands.add_parser("upload", help="upload a model folder (files, then its manifest)")
    upload.add_argument("folder", type=Path, help="the model folder (with model_card.json)")
    upload.add_argument("uri", help="store://<prefix> or s3://<bucket>/<prefix>, as VEIL_MODEL_URI names it")
    upload.set_defaults(func=_upload)
    pull = commands.add_parser("pull", help="download a model into the local cache, verified")
    pull.add_argument("uri", help="store://<prefix> or s3://<bucket>/<prefix>")
    pull.add_argument("--cache-dir", type=Path, default=Path("/tmp/veil-models"), help="cache folder")
    pull.set_defaults(func=_pull)
    from veil.cli.unlearn import register_model_commands

    register_model_commands(commands)


def _location(uri: str):
    from veil.config import from_env
    from veil.diffusion.loading import ModelLocation
    from veil.errors import InvalidArgument
    from veil.store import StoreConfig

    location = ModelLocation.parse(uri)
    if location.prefix is None:
        raise InvalidArgument(f"{uri!r} is a local path; give store://<prefix> or s3://<bucket>/<prefix>")
    return location, location.store(from_env(StoreConfig))


def _upload(args: argparse.Namespace) -> int:
    from veil.diffusion.loading import upload_model

    location, store = _location(args.uri)
    store.ensure_bucket()
    manifest = upload_model(args.folder, store, location.prefix)
    print(f"uploaded {len(manifest['files'])} files and the manifest to {store.bucket}/{location.prefix}")
    return 0


def _pull(args: argparse.Namespace) -> int:
    from veil.diffusion.loading import pull_model

    location, store = _location(args.uri)
    print(pull_model(store, location.prefix, args.cache_dir))
    return 0
