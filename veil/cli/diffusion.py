"""`veil train | anonymize | eval | export-onnx`: the Diffusion-DP model."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from veil.cli.options import comma_separated
from veil.errors import InvalidArgument
from veil.privacy import ATTRIBUTE_MECHANISMS, LEVELS, Mechanism, privacy_level

if TYPE_CHECKING:  # the commands import torch only when they run
    from veil.diffusion.audit import AuditConfig
    from veil.diffusion.evaluate import EvalConfig, EvalReport


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser("train", help="train the diffusion autoencoder (checkpoints, resumable)")
    train.add_argument("--config", type=Path, help="training config JSON (defaults: veil.diffusion.train.TrainConfig)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                       help="override one config value, e.g. --set steps=5000 --set unet_channels=[32,64,64]")
    train.add_argument("--data", type=Path, default=None,
                       help="train on this CelebA-format folder (e.g. real CelebA) instead of the config's data")
    train.add_argument("--image-size", type=int, default=None, help="training resolution, e.g. 64 or 128")
    train.add_argument("--run-dir", type=Path, required=True,
                       help="run folder: config, log, checkpoints (a rerun with the same folder resumes)")
    train.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when available)")
    train.add_argument("--time-budget", type=float, default=None, help="stop (with a checkpoint) after this many seconds")
    train.add_argument("--until-step", type=int, default=None, help="stop (with a checkpoint) at this step")
    train.add_argument("--export", type=Path, default=None, help="write the shippable model folder here at the end")
    train.add_argument("--model-version", default="diffae-synth32", help="version recorded in the model card")
    train.set_defaults(func=_train)

    anon = subparsers.add_parser("anonymize", help="anonymise every face of a photo, or of each photo in a folder")
    anon.add_argument("input", type=Path, help="a PNG/JPEG/WebP photo, or a folder of them; an image of exactly the "
                                               "model's size is taken as an aligned face crop")
    anon.add_argument("--out", type=Path, required=True, help="output file (one input) or folder")
    anon.add_argument("--max-side", type=int, default=4096, help="refuse photos larger than this on their longest side")
    anon.add_argument("--min-face", type=int, default=None,
                      help="faces smaller than this (px) are obscured, not re-synthesized (default: veil.faces')")
    anon.add_argument("--upsample", type=int, default=None, help="HOG detector upsampling (default: veil.faces')")
    anon.add_argument("--protect", default="", help="comma-separated attributes to protect, e.g. Male,Young")
    anon.add_argument("--level", type=int, default=None, help="privacy level 0..10 (default: the model's default)")
    anon.add_argument("--eps", default=None, help="explicit eps per protected attribute, e.g. Male=1,Young=0.5")
    anon.add_argument("--mechanism", default=Mechanism.RANDOMIZED_RESPONSE.value,
                      choices=[m.value for m in ATTRIBUTE_MECHANISMS])
    anon.add_argument("--identity-eps", type=float, default=None, help="explicit eps of the identity mechanism")
    anon.add_argument("--rho", type=float, default=0.0, help="explicit fraction of x_T re-drawn (with --eps)")
    anon.add_argument("--candidates", type=int, default=1)
    anon.add_argument("--seed", type=int, default=None)
    anon.add_argument("--batch-size", type=int, default=16)
    anon.add_argument("--decode-tries", type=int, default=3,
                      help="verified edits: decodes of a candidate until the attribute classifier reads the released "
                           "values, else it is refused and not written (default 3; 0: unverified)")
    _model_arguments(anon)
    anon.set_defaults(func=_anonymize)

    ev = subparsers.add_parser("eval", help="measure the model against the Diffusion-DP bars")
    _model_arguments(ev)
    ev.add_argument("--data", type=Path, default=None,
                    help="CelebA-format data set (default: the one in the model's training config, generated if absent)")
    ev.add_argument("--probes", type=int, default=200, help="held-out probes, one per identity")
    ev.add_argument("--gallery", type=int, default=400, help="identities in the re-ID gallery (the probes' and others)")
    ev.add_argument("--probe-seed", type=int, default=0,
                    help="which held-out probes are drawn (and the mechanisms' seeds); the evaluators stay")
    ev.add_argument("--audit-data", type=Path, default=None,
                    help="faces of identities no model saw, for the leakage audit (default: generated for synthetic models)")
    ev.add_argument("--tuning-probes", type=int, default=200, help="audit probes that train the adaptive attacker")
    ev.add_argument("--audit-probes", type=int, default=200, help="audit probes every leakage figure is measured on")
    ev.add_argument("--audit-eps", default="0.5,1,2,4", help="eps of the attribute-only release audited")
    ev.add_argument("--audit-releases", default="-:0",
                    help="explicit releases audited at --audit-eps, as IDENTITY_EPS:RHO items ('-': no identity "
                         "mechanism), e.g. -:0,-:1,2:0; -:0 is the attribute-only release")
    ev.add_argument("--audit-levels", default="1,2,3,4,5,6,7,8,9,10", help="levels audited (empty: none)")
    ev.add_argument("--audit-decode-tries", type=int, default=0,
                    help="audit verified edits as served with VEIL_DECODE_TRIES=N: refused outcomes are not released "
                         "(default 0: every decode released)")
    ev.add_argument("--test-draws", type=int, default=1, help="test decodes per probe (the issue's bars want 2)")
    ev.add_argument("--sweep-levels", default=",".join(str(p.level) for p in LEVELS),
                    help="levels whose identity and utility are measured with the key attribute protected "
                         "(default: all; empty: none)")
    ev.add_argument("--examples", type=Path, default=None,
                    help="write a PNG of a few probes released at each swept level here (its name relative to "
                         "--json's folder goes into the JSON)")
    ev.add_argument("--json", type=Path, default=None, help="also write the table as JSON here")
    ev.add_argument("--write-card", action="store_true", help="store the result under `metrics` in the model card")
    ev.add_argument("--cache", type=Path, default=Path("out/eval-cache"),
                    help="where trained evaluators are kept between runs (they depend on the data only)")
    ev.set_defaults(func=_eval)


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
    if args.data is not None:
        raw.update(data_dir=str(args.data), generate_data=False)
    config = TrainConfig.from_dict(raw)
    return config if args.image_size is None else config.at_size(args.image_size)


def _train(args: argparse.Namespace) -> int:
    from veil.diffusion.train import train_main

    return train_main(_config(args), args.run_dir, args.device, args.time_budget, args.until_step,
                      args.export, args.model_version)


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: the shipped demo model)")
    parser.add_argument("--steps", type=int, default=None, help="DDIM steps (default: the model card's)")
    parser.add_argument("--guidance", type=float, default=None, help="guidance weight (default: the model card's)")
    parser.add_argument("--guidance-base", choices=["source", "null"], default=None)
    parser.add_argument("--device", default="cpu")


def _anonymizer(args: argparse.Namespace, max_batch: int = 32, decode_tries: int = 0):
    import dataclasses

    from veil.diffusion import DEFAULT_MODEL_DIR
    from veil.diffusion.anonymize import Anonymizer
    from veil.diffusion.pipeline import DiffusionAutoencoder

    model = DiffusionAutoencoder.from_pretrained(args.model or DEFAULT_MODEL_DIR, device=args.device)
    overrides = {k: v for k, v in (("steps", args.steps), ("guidance", args.guidance),
                                   ("guidance_base", args.guidance_base)) if v is not None}
    return Anonymizer(model, dataclasses.replace(model.card.sampling, **overrides), max_batch=max_batch,
                      decode_tries=decode_tries)


def _decode_tries(value: int, flag: str) -> int:
    """`value` when it is 0 (unverified) or a valid number of tries, else InvalidArgument naming `flag`."""
    from veil.diffusion.verify import require_tries

    return require_tries(value, flag) if value else 0


def _parse_eps(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in filter(None, text.split(",")):
        name, sep, value = item.partition("=")
        if not sep:
            raise InvalidArgument(f"--eps expects NAME=VALUE pairs, got {item!r}")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise InvalidArgument(f"--eps {name}: {value!r} is not a number") from None
    return out


PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def _anonymize(args: argparse.Namespace) -> int:
    from veil.diffusion.photos import compose_candidates
    from veil.privacy import DEFAULT_LEVEL, PrivacySettings
    from veil.faces.photo import decode_photo
    from veil.files import write_bytes_atomically

    if args.input.is_dir():
        inputs = sorted(p for p in args.input.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
        if not inputs:
            raise InvalidArgument(f"{args.input}: no .png/.jpg/.webp images")
    elif args.input.is_file():
        inputs = [args.input]
    else:
        raise InvalidArgument(f"{args.input}: no such file or folder")
    anonymizer = _anonymizer(args, max_batch=args.batch_size,
                             decode_tries=_decode_tries(args.decode_tries, "--decode-tries"))
    names = anonymizer.model.attribute_names
    protect = [a.strip() for a in args.protect.split(",") if a.strip()]
    if args.eps is not None:
        if args.level is not None:
            raise InvalidArgument("give either --level or --eps, not both")
        settings = PrivacySettings.explicit(protect, names, _parse_eps(args.eps), args.mechanism, args.identity_eps,
                                            args.rho)
    else:
        settings = PrivacySettings.from_level(DEFAULT_LEVEL if args.level is None else args.level, protect, names)
    # Decode everything before any work, and write only at the end: a bad input writes nothing.
    photos = [decode_photo(p.read_bytes(), args.max_side, what=str(p)) for p in inputs]
    size = anonymizer.model.image_size
    pipeline = _pipeline(args, size)
    # An image of the model's size is an aligned crop, anonymized whole (as before whole photos).
    prepared = [None if photo.pixels.shape[:2] == (size, size) else pipeline.prepare(photo.pixels)
                for photo in photos]
    crops = [c for photo, item in zip(photos, prepared) for c in ([photo.pixels] if item is None else item.crops)]
    released = (anonymizer.verified(anonymizer.prepare(crops), settings, args.candidates, args.seed)
                if crops else [])
    single = not args.input.is_dir()
    outputs: list[tuple[Path, bytes]] = []
    refused = []
    results = iter(released)
    for path, photo, item in zip(inputs, photos, prepared):
        per_crop = [next(results) for _ in range(1 if item is None else len(item.crops))]
        suffix = ".png" if item is None else path.suffix
        base = args.out if single else args.out / f"{path.stem}{suffix}"
        candidates = compose_candidates(pipeline, photo, item, per_crop, args.candidates, args.seed)
        for index, candidate in enumerate(candidates):
            target = base if args.candidates == 1 else base.with_name(f"{base.stem}-{index}{base.suffix}")
            if candidate.photo is None:
                refused.append(f"{target}: refused: {candidate.refusal}")
                continue
            pixels = candidate.photo
            fmt = "PNG" if item is None else pixels.format  # a crop is written as PNG, as before
            outputs.append((target, _encode(pixels.pixels, target, fmt, pixels.alpha)))
            outputs.append((target.with_suffix(".receipt.json"),
                            json.dumps(candidate.receipt_json(), indent=2, sort_keys=True).encode()))
    for target, data in outputs:
        write_bytes_atomically(target, data)
    for line in refused:
        print(line, file=sys.stderr)
    print(f"wrote {len(outputs) // 2} image(s) with receipts under {args.out}"
          + (f"; {len(refused)} candidate(s) refused (never read as released)" if refused else ""))
    return 0


def _pipeline(args: argparse.Namespace, crop_size: int):
    from veil.faces import FacePipeline, HogDetector

    options = {} if args.min_face is None else {"min_face": args.min_face}
    detector = HogDetector() if args.upsample is None else HogDetector(upsample=args.upsample)
    return FacePipeline(crop_size, detector, **options)


def _encode(pixels, target: Path, fmt: str, alpha) -> bytes:
    """In the format the output's name asks for (.png, .jpg, .webp), else the input's."""
    from veil.faces.photo import encode_photo

    by_suffix = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
    return encode_photo(pixels, by_suffix.get(target.suffix.lower(), fmt), alpha)


def _releases(text: str) -> tuple[tuple[float | None, float], ...]:
    out = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        identity, sep, rho = item.partition(":")
        try:
            if not sep:
                raise ValueError(item)
            out.append((None if identity == "-" else float(identity), float(rho)))
        except ValueError:
            raise InvalidArgument(f"--audit-releases expects IDENTITY_EPS:RHO items, got {item!r}") from None
    return tuple(out)


def _log_stderr(message: str) -> None:
    print(message, file=sys.stderr)


def _seeds(report: EvalReport, cfg: EvalConfig, audit_cfg: AuditConfig) -> dict[str, object]:
    """The seeds the eval's numbers depend on (the rows' releases derive theirs from probe_seed)."""
    return {"probe_seed": cfg.probe_seed, "evaluators": cfg.seed, "audit_attackers": audit_cfg.seed,
            "audit_tuning_decodes": audit_cfg.tuning_seed, "audit_test_decodes": list(audit_cfg.test_seeds),
            "level_sweep_decodes": [entry["seed"] for entry in report.details["levels"]["levels"]]}


def _eval(args: argparse.Namespace) -> int:
    from veil.data import load_celeba
    from veil.diffusion.audit import AuditConfig, audit_model
    from veil.diffusion.evaluate import EvalConfig, evaluate
    from veil.diffusion.train import TrainConfig, ensure_dataset, ensure_unseen_faces
    from veil.files import write_bytes_atomically
    from veil.machine import machine

    sweep = comma_separated(args.sweep_levels, int, "--sweep-levels")
    for level in sweep:
        privacy_level(level)  # refused now, not after the model, data and evaluators are loaded
    if args.examples is not None and not sweep:
        raise InvalidArgument("--examples shows the swept levels; give at least one with --sweep-levels")
    anonymizer = _anonymizer(args)
    model = anonymizer.model
    if args.data is None:
        train_cfg = TrainConfig.from_dict(model.card.training["config"])
        data_root = ensure_dataset(train_cfg)
    else:
        data_root = args.data
    data = load_celeba(data_root, size=model.image_size)
    cfg = EvalConfig(probes=args.probes, gallery=args.gallery, probe_seed=args.probe_seed, sweep_levels=sweep)
    audit_cfg = AuditConfig(tuning_probes=args.tuning_probes, test_probes=args.audit_probes,
                            epsilons=comma_separated(args.audit_eps, float, "--audit-eps"),
                            levels=comma_separated(args.audit_levels, int, "--audit-levels"),
                            releases=_releases(args.audit_releases),
                            test_seeds=tuple(range(2, 2 + args.test_draws)),
                            decode_tries=_decode_tries(args.audit_decode_tries, "--audit-decode-tries"))
    if args.test_draws < 1:
        raise InvalidArgument(f"--test-draws must be >= 1, got {args.test_draws}")
    if args.audit_data is not None:
        unseen_root = args.audit_data
    elif args.data is None:
        unseen_root = ensure_unseen_faces(train_cfg, audit_cfg.tuning_probes + audit_cfg.test_probes)
    else:
        raise InvalidArgument("with --data, give --audit-data: faces of identities the model never saw")
    unseen = load_celeba(unseen_root, size=model.image_size)
    report = evaluate(anonymizer, data, cfg, log=_log_stderr, cache_dir=args.cache)
    audit_model(anonymizer, data, unseen, cfg, audit_cfg, report, args.cache, _log_stderr)
    print(report.table())
    if args.examples is not None:
        from veil.images import encode_png

        write_bytes_atomically(args.examples, encode_png(report.examples))
        # The JSON names the grid as the report that reads it will find it: beside the JSON.
        start = Path.cwd() if args.json is None else args.json.resolve().parent
        report.details["levels"]["examples"] = Path(os.path.relpath(args.examples.resolve(), start)).as_posix()
    if args.json:
        record = {**report.to_dict(), "machine": machine(), "seeds": _seeds(report, cfg, audit_cfg)}
        write_bytes_atomically(args.json, json.dumps(record, indent=2, sort_keys=True).encode() + b"\n")
    if args.write_card:
        from veil.diffusion import DEFAULT_MODEL_DIR
        from veil.diffusion.pipeline import CARD_FILE

        folder = args.model or DEFAULT_MODEL_DIR
        card = json.loads((folder / CARD_FILE).read_text())
        card["metrics"] = report.to_dict()
        write_bytes_atomically(folder / CARD_FILE, json.dumps(card, indent=2, sort_keys=True).encode() + b"\n")
    return 0 if report.passed else 1

