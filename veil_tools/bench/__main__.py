"""`make bench`: run the benchmark sections, print their figures and write them as a record.

    python -m veil_tools.bench                         # every section, out/bench/<name>.json
    python -m veil_tools.bench decode store --quick    # the sections named, shrunk to seconds
    python -m veil_tools.bench --device cuda           # on the GPU (fails when CUDA is not there)
    python -m veil_tools.bench --compare OLD.json      # run, then old vs new and the ratio
    python -m veil_tools.bench --compare OLD.json --against NEW.json   # two records, no run

Sections: decode (eager torch vs ONNX Runtime), batching (micro-batching off vs on, 16 callers),
gateway (CPU ms of the gateway process per round, overhead p50/p99), store (put/get MiB/s, local
and S3), unlearning (first/second order vs retraining). The exit status is 1 when --compare finds
a regression beyond --threshold.
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

from veil_tools.bench.record import build_record, compare, format_comparison, read_record, write_record
from veil_tools.bench.sections import SECTIONS, BenchSettings
from veil.diffusion import DEFAULT_MODEL_DIR
from veil.errors import FailedPrecondition, VeilError

DEFAULT_OUT = Path("out/bench")


def check_device(device: str) -> None:
    """FailedPrecondition unless torch sees a GPU and onnxruntime has its CUDA provider."""
    if device != "cuda":
        return
    import onnxruntime
    import torch

    missing = []
    if not torch.cuda.is_available():
        missing.append(f"torch {torch.__version__} sees no CUDA device")
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        missing.append(f"onnxruntime {onnxruntime.__version__} has no CUDAExecutionProvider "
                       "(install the gpu extra: onnxruntime-gpu)")
    if missing:
        raise FailedPrecondition("--device cuda: " + "; ".join(missing))


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m veil_tools.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sections", nargs="*", metavar="SECTION",
                        help=f"sections to run (default all): {', '.join(SECTIONS)}")
    parser.add_argument("--quick", action="store_true", help="every section shrunk to seconds")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR,
                        help="model directory of the decode, batching and gateway sections")
    parser.add_argument("--repeats", type=int, default=None,
                        help="repetitions of each figure (default 3; 1 with --quick)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default=None,
                        help="record name (default: <device>-<host>, plus -quick)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder of the record")
    parser.add_argument("--compare", type=Path, metavar="OLD.json",
                        help="print old vs new for every figure both records hold")
    parser.add_argument("--against", type=Path, metavar="NEW.json",
                        help="with --compare: compare with this record instead of running")
    parser.add_argument("--threshold", type=float, default=0.25,
                        help="a figure worse by more than this fraction is a regression (default 0.25)")
    args = parser.parse_args(argv)
    unknown = [name for name in args.sections if name not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; known: {', '.join(SECTIONS)}")
    if args.against and not args.compare:
        parser.error("--against needs --compare")
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def run(args: argparse.Namespace) -> dict:
    check_device(args.device)
    settings = BenchSettings(quick=args.quick, device=args.device, model_dir=args.model,
                             repeats=args.repeats or (1 if args.quick else 3), seed=args.seed)
    names = args.sections or list(SECTIONS)
    figures = []
    for name in names:
        print(f"=== {name} ===", flush=True)
        found = SECTIONS[name](settings)
        for fig in found:
            stats = fig.summary()
            if stats["median"] is None:  # e.g. no round to take a percentile of
                print(f"  {fig.name:<44} {'n/a':>10} {fig.unit}", flush=True)
                continue
            print(f"  {fig.name:<44} {stats['median']:>10.4g} {fig.unit:<12} "
                  f"(min {stats['min']:.4g}, max {stats['max']:.4g}, n={len(fig.samples)})", flush=True)
        figures += found
    record_name = args.name or f"{args.device}-{platform.node()}{'-quick' if args.quick else ''}"
    record = build_record(record_name, {
        "sections": names, "quick": settings.quick, "device": settings.device,
        "model": str(settings.model_dir), "repeats": settings.repeats, "seed": settings.seed,
    }, figures)
    path = write_record(record, args.out / f"{record_name}.json")
    print(f"wrote {path}")
    return record


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        old = read_record(args.compare) if args.compare else None
        new = read_record(args.against) if args.against else run(args)
    except VeilError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if old is None:
        return 0
    rows = compare(old, new, args.threshold)
    print(format_comparison(rows, old, new))
    regressions = [row.name for row in rows if row.regression]
    if regressions:
        print(f"{len(regressions)} regression(s) beyond {args.threshold:.0%}: {', '.join(regressions)}")
    return 1 if regressions else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
