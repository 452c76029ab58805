"""`veil eval-faces`: measure the whole-photo path (detector recall, stage latency, seams)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from veil.cli.options import comma_separated
from veil.errors import InvalidArgument


def register(subparsers: argparse._SubParsersAction) -> None:
    ev = subparsers.add_parser("eval-faces", help="measure face detection, per-stage latency and seams on real photos")
    ev.add_argument("--upsample", default="0,1,2", help="HOG upsampling settings to measure, e.g. 0,1")
    ev.add_argument("--scales", default="4,2", help="lfw_subset upscaling factors (25 px faces -> 100 px, 50 px)")
    ev.add_argument("--model", type=Path, default=None, help="model folder (default: the shipped demo model)")
    ev.add_argument("--level", type=int, default=None, help="privacy level of the latency runs (default: the model's default)")
    ev.add_argument("--repeats", type=int, default=3, help="photos per latency measurement (the median is reported)")
    ev.add_argument("--identity-levels", default="0,1,5,10",
                    help="privacy levels at which real-face identity left is measured (protecting Male)")
    ev.add_argument("--identity-faces", type=int, default=100,
                    help="lfw_subset faces (of 100) the identity measure anonymizes, plus astronaut")
    ev.add_argument("--sections", default="detector,latency,identity",
                    help="what to measure: detector, latency (with seams), identity")
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--json", type=Path, default=None, help="also write the numbers as JSON here")
    ev.set_defaults(func=_eval_faces)


def _eval_faces(args: argparse.Namespace) -> int:
    from skimage import data

    from veil.diffusion import DEFAULT_MODEL_DIR
    from veil.diffusion.anonymize import Anonymizer
    from veil.privacy import DEFAULT_LEVEL, PrivacySettings
    from veil.diffusion.pipeline import DiffusionAutoencoder
    from veil.faces import FacePipeline, HogDetector
    from veil.faces.measure import (detector_counts, group_photo, identity_distances, identity_left,
                                    lfw_identity_photos, seams, stage_latency)
    from veil.files import write_bytes_atomically

    sections = {s.strip() for s in args.sections.split(",") if s.strip()}
    unknown = sections - {"detector", "latency", "identity"}
    if unknown:
        raise InvalidArgument(f"--sections: unknown {sorted(unknown)}; known: detector, latency, identity")
    report: dict[str, object] = {"detector": [], "latency": {}, "seams": {}, "identity": []}
    for scale in (comma_separated(args.scales, int, "--scales") if "detector" in sections else []):
        for upsample in comma_separated(args.upsample, int, "--upsample"):
            counts = detector_counts(HogDetector(upsample=upsample), scale)
            row = {"face_px": 25 * scale, "upsample": upsample, "recall": counts.recall,
                   "faces_found": counts.faces_found, "false_positive_images": counts.false_positive_images,
                   "non_faces": counts.non_faces}
            report["detector"].append(row)
            print(f"HOG upsample {upsample}, {25 * scale} px faces: recall {counts.faces_found}/{counts.faces}, "
                  f"false positives on {counts.false_positive_images}/{counts.non_faces} non-faces", file=sys.stderr)
    model = DiffusionAutoencoder.from_pretrained(args.model or DEFAULT_MODEL_DIR, device=args.device)
    anonymizer = Anonymizer(model)
    settings = PrivacySettings.from_level(DEFAULT_LEVEL if args.level is None else args.level, [], model.attribute_names)

    def anonymize_crops(crops):
        return [c[0].image for c in anonymizer.anonymize(crops, settings, 1)]

    pipeline = FacePipeline(model.image_size)
    if "identity" in sections:
        photos, boxes = lfw_identity_photos(pipeline.detector, args.identity_faces)
        astronaut = data.astronaut()
        photos.append(astronaut)
        boxes.append(max(pipeline.detect(astronaut), key=lambda d: d.score).box)
        for level in comma_separated(args.identity_levels, int, "--identity-levels"):
            at_level = PrivacySettings.from_level(level, [] if level == 0 else ["Male"], model.attribute_names)
            distances = identity_distances(
                pipeline, lambda crops: [c[0].image for c in anonymizer.anonymize(crops, at_level, 1, seed=level)],
                photos, boxes)
            left = identity_left(distances[:-1])
            report["identity"].append({"level": level, "lfw_faces": left.faces, "lfw_matched": left.matched,
                                       "lfw_median_distance": left.median_distance,
                                       "astronaut_distance": distances[-1]})
            print(f"level {level}: {left.matched}/{left.faces} lfw faces still matched at 0.6 (median distance "
                  f"{left.median_distance:.3f}); astronaut {distances[-1]:.3f}", file=sys.stderr)
    for faces in ((1, 5) if "latency" in sections else ()):
        photos = [group_photo(faces, side=1024, face_px=150, seed=seed)[0] for seed in range(args.repeats)]
        report["latency"][f"1024px_{faces}_faces"] = stage_latency(pipeline, anonymize_crops, photos)
        photo = photos[0]
        prepared = pipeline.prepare(photo)
        result = pipeline.compose(prepared, anonymize_crops(prepared.crops) if prepared.crops else [])
        measured = seams(prepared, result.image)
        report["seams"][f"1024px_{faces}_faces"] = {"outside_psnr": str(measured.outside_psnr),
                                                    "ring_psnr": measured.ring_psnr}
    if "latency" in sections:
        prepared = pipeline.prepare(data.astronaut())
        measured = seams(prepared, pipeline.compose(prepared, anonymize_crops(prepared.crops)).image)
        report["seams"]["astronaut"] = {"outside_psnr": str(measured.outside_psnr), "ring_psnr": measured.ring_psnr}
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        write_bytes_atomically(args.json, text.encode() + b"\n")
    return 0
