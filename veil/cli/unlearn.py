"""`veil model ...`, `veil unlearn`, `veil unlearn-eval`: published models and feature unlearning.

The object store comes from the environment (VEIL_STORE_BACKEND, VEIL_STORE_ROOT, VEIL_S3_*; see
veil.store.config); --tenant confines every key to that tenant's prefix.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from veil.errors import InvalidArgument, quoted
from veil.unlearning.method_names import METHODS
from veil.unlearning.params import CURVATURES, SOLVERS, TrainConfig, UnlearnParams

EVAL_COLUMNS = (("test_accuracy", "test acc", "{:.4f}"), ("agreement", "agree", "{:.4f}"),
                ("l2_distance", "L2", "{:.3f}"), ("probe_leakage", "leak", "{:.3f}"),
                ("mia_auc", "MIA AUC", "{:.3f}"), ("time_ratio", "speedup", "{:.1f}"))


def _tenant_option() -> argparse.ArgumentParser:
    tenant = argparse.ArgumentParser(add_help=False)
    tenant.add_argument("--tenant", help="tenant whose objects and models to use (default: none)")
    return tenant


def register_model_commands(commands: argparse._SubParsersAction) -> None:
    """`veil model manifest | train | list | show` (the group itself is veil.cli.model's)."""
    tenant = _tenant_option()

    manifest = commands.add_parser("import-dataset", parents=[tenant],
                                   help="upload a CelebA-format data set and write its manifest")
    manifest.add_argument("--dataset", type=Path, required=True, help="CelebA-format folder")
    manifest.add_argument("--prefix", required=True, help="store key prefix, e.g. datasets/faces")
    manifest.add_argument("--protected", default="Male,No_Beard",
                          help="comma-separated attributes never trained on (default Male,No_Beard)")
    manifest.add_argument("--size", type=int, default=None, help="resize images to this square side")
    manifest.set_defaults(func=_manifest)

    train = commands.add_parser("train", parents=[tenant], help="train a new model (a root version)")
    train.add_argument("--manifest", required=True, help="store key of the dataset manifest")
    train.add_argument("--manifest-sha256", default=None, help="pin the manifest's content")
    train.add_argument("--model", required=True, help="model name")
    config = TrainConfig()
    train.add_argument("--seed", type=int, default=config.seed)
    train.add_argument("--epochs", type=int, default=config.epochs)
    train.add_argument("--batch-size", type=int, default=config.batch_size)
    train.add_argument("--learning-rate", type=float, default=config.learning_rate)
    train.add_argument("--weight-decay", type=float, default=config.weight_decay)
    train.add_argument("--channels", default="16,32,64", help="conv widths, comma-separated")
    train.add_argument("--embedding-dim", type=int, default=64)
    train.set_defaults(func=_train)

    listing = commands.add_parser("list", parents=[tenant], help="versions, newest first")
    listing.add_argument("--model", default=None, help="only this model")
    listing.set_defaults(func=_list)

    show = commands.add_parser("show", parents=[tenant], help="one version's card and lineage")
    show.add_argument("--model", required=True)
    show.add_argument("--version", default=None, help="default: the newest")
    show.set_defaults(func=_show)


def register(subparsers: argparse._SubParsersAction) -> None:
    tenant = _tenant_option()
    unlearn = subparsers.add_parser("unlearn", parents=[tenant],
                                    help="replace originals by protected images in a model (new version)")
    unlearn.add_argument("--model", required=True)
    unlearn.add_argument("--version", default=None, help="the version to update (default: newest)")
    unlearn.add_argument("--pairs", type=Path, required=True,
                         help="CSV with header original_key,original_sha256,replacement_key,"
                              "replacement_sha256[,session_id]")
    unlearn.add_argument("--method", required=True, choices=METHODS)
    defaults = UnlearnParams()
    unlearn.add_argument("--tau", type=float, default=defaults.tau, help="first-order step size")
    unlearn.add_argument("--solver", choices=SOLVERS, default=defaults.solver)
    unlearn.add_argument("--curvature", choices=CURVATURES, default=defaults.curvature)
    unlearn.add_argument("--damping", type=float, default=defaults.damping)
    unlearn.add_argument("--scale", type=float, default=defaults.scale, help="LiSSA scale")
    unlearn.add_argument("--max-iterations", type=int, default=defaults.max_iterations)
    unlearn.add_argument("--tolerance", type=float, default=defaults.tolerance)
    unlearn.add_argument("--last-k-layers", type=int, default=defaults.last_k_layers,
                         help="update only the last k parameterised layers (0: all)")
    unlearn.add_argument("--hessian-samples", type=int, default=defaults.hessian_samples)
    unlearn.add_argument("--epochs", type=int, default=defaults.epochs, help="fine-tune epochs")
    unlearn.add_argument("--seed", type=int, default=defaults.seed)
    unlearn.set_defaults(func=_unlearn)

    evaluate = subparsers.add_parser("unlearn-eval", parents=[tenant],
                                     help="compare versions with a reference (e.g. retrained) version")
    evaluate.add_argument("--model", required=True)
    evaluate.add_argument("--reference", required=True, help="the version to compare with")
    evaluate.add_argument("--versions", nargs="+", default=None,
                          help="versions to compare (default: the reference's parent and siblings)")
    evaluate.add_argument("--protected", default=None,
                          help="protected attribute the probe attacks (default: the manifest's first)")
    evaluate.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    evaluate.set_defaults(func=_evaluate)


def _registry(args: argparse.Namespace):
    from veil.config import from_env
    from veil.store import StoreConfig, open_store
    from veil.unlearning.registry import ModelRegistry

    store = open_store(from_env(StoreConfig))
    store.ensure_bucket()
    return ModelRegistry(store.for_tenant(args.tenant) if args.tenant else store)


def _progress(stage: str, step: int, total: int) -> None:
    print(f"{stage} {step}/{total}", file=sys.stderr, flush=True)


def _summary(card) -> str:
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in sorted(card.metrics.items()))
    return (f"{card.model} {card.version} (parent {card.parent or '-'}, {card.method}, "
            f"{card.wall_time_seconds:.2f} s): {metrics}")


def _manifest(args: argparse.Namespace) -> int:
    from veil.unlearning.dataset import import_celeba

    registry = _registry(args)
    protected = [name for name in args.protected.split(",") if name]
    manifest, key = import_celeba(registry.store, args.dataset, args.prefix.rstrip("/"), protected,
                                  args.size)
    print(f"manifest {key} sha256 {manifest.sha256}: {len(manifest.train)} train, "
          f"{len(manifest.test)} test; tasks {', '.join(manifest.task_attributes)}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from veil.unlearning import workflow

    try:
        channels = tuple(int(c) for c in args.channels.split(","))
    except ValueError:
        raise InvalidArgument(f"--channels {quoted(args.channels)}: expected comma-separated integers") from None
    config = TrainConfig(seed=args.seed, epochs=args.epochs, batch_size=args.batch_size,
                         learning_rate=args.learning_rate, weight_decay=args.weight_decay)
    card = workflow.train(_registry(args), model=args.model, manifest_key=args.manifest,
                          manifest_sha256=args.manifest_sha256, config=config, channels=channels,
                          embedding_dim=args.embedding_dim, progress=_progress)
    print(_summary(card))
    return 0


def _list(args: argparse.Namespace) -> int:
    cards = _registry(args).list(args.model)
    print(f"{'model':<16} {'version':<8} {'parent':<8} {'method':<9} {'pairs':>6} {'test acc':>8}  created")
    for card in cards:
        accuracy = card.metrics.get("test_accuracy")
        shown = f"{accuracy:.4f}" if accuracy is not None else "-"
        print(f"{card.model:<16} {card.version:<8} {card.parent or '-':<8} {card.method:<9} "
              f"{card.pairs:>6} {shown:>8}  {card.created_at}")
    return 0


def _show(args: argparse.Namespace) -> int:
    registry = _registry(args)
    card = registry.card(args.model, args.version)
    print(card.to_json())
    print("lineage: " + " -> ".join(registry.lineage(args.model, card.version)))
    return 0


def _unlearn(args: argparse.Namespace) -> int:
    from veil.unlearning import workflow
    from veil.unlearning.manifest import read_pairs_csv

    registry = _registry(args)
    try:
        text = args.pairs.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidArgument(f"cannot read --pairs {args.pairs}: {exc.strerror}") from None
    pairs = read_pairs_csv(text, registry.store.bucket)
    params = UnlearnParams(tau=args.tau, solver=args.solver, curvature=args.curvature,
                           damping=args.damping, scale=args.scale, max_iterations=args.max_iterations,
                           tolerance=args.tolerance, last_k_layers=args.last_k_layers,
                           hessian_samples=args.hessian_samples, epochs=args.epochs, seed=args.seed)
    card = workflow.unlearn(registry, model=args.model, version=args.version, pairs=pairs,
                            method=args.method, params=params, progress=_progress)
    print(_summary(card))
    return 0


def format_rows(rows: list[dict]) -> str:
    header = f"{'version':<8} {'method':<9}" + "".join(f" {title:>8}" for _, title, _ in EVAL_COLUMNS)
    lines = [header, "-" * len(header)]
    for row in rows:
        cells = "".join(f" {fmt.format(row[key]) if key in row else '-':>8}" for key, _, fmt in EVAL_COLUMNS)
        lines.append(f"{row['version']:<8} {row['method']:<9}{cells}")
    return "\n".join(lines)


def _evaluate(args: argparse.Namespace) -> int:
    from veil.unlearning import workflow

    registry = _registry(args)
    reference = registry.card(args.model, args.reference)
    versions = args.versions
    if versions is None:
        if reference.parent is None:
            raise InvalidArgument(f"{args.reference} is a root version: name --versions to compare")
        siblings = [c.version for c in registry.list(args.model) if c.parent == reference.parent]
        versions = [reference.parent, *sorted(siblings, key=lambda v: int(v[1:]))]
    rows = []
    for version in versions:
        card = registry.card(args.model, version)
        metrics = workflow.compare(registry, model=args.model, version=version,
                                   reference=reference.version, protected=args.protected)
        method = "none" if card.method == "train" else card.method
        rows.append({"version": version, "method": method, **metrics})
    print(f"{args.model}: compared with {reference.version} ({reference.method}); leak = probe accuracy "
          "on the originals' protected attribute, MIA AUC = originals vs test split")
    print(format_rows(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"model": args.model, "reference": reference.version,
                                         "rows": rows}, indent=2) + "\n")
    return 0
