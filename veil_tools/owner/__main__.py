"""`python -m veil_tools.owner --out out/owner.json`: the simulated owner under several controller
settings, each on fresh services (veil_tools.localrun, state in a temporary directory) with the
gateway configured by env.

A setting is `MORE_FACTOR:START_LEVEL` (VEIL_EPS_MORE_FACTOR of the gateway, and the level the
owner's sessions start at). Probes are synthetic faces of identities the model never saw (seed
0, identities from PROBE_FIRST_IDENTITY; the model trained on 0..1499), the same for every
setting. The JSON holds every probe's rounds and the run's seeds, model version and machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from veil.data.synth import iter_samples
from veil.errors import InvalidArgument, quoted
from veil.images import encode_png
from veil.machine import machine
from veil_tools.localrun import LocalServices
from veil_tools.owner.attacker import AttackerSpec, cached_attacker
from veil_tools.owner.play import play_probe
from veil_tools.owner.policy import OwnerPolicy

PROBE_FIRST_IDENTITY = 100_000
PROBE_SEED = 0


def parse_setting(text: str) -> tuple[float, int]:
    try:
        factor, level = text.split(":")
        return float(factor), int(level)
    except ValueError:
        raise InvalidArgument(f"a setting is MORE_FACTOR:START_LEVEL, e.g. 0.5:5, got {quoted(text)}") from None


def probe_faces(count: int, size: int, protect: str) -> list[tuple[bytes, bool]]:
    return [(encode_png(np.asarray(s.image)), s.attributes[protect])
            for s in iter_samples(PROBE_SEED, count, 1, size, first_identity=PROBE_FIRST_IDENTITY)]


def run_setting(var_dir: Path, factor: float, levels: list[int], args: argparse.Namespace,
                policy: OwnerPolicy) -> tuple[str, list[dict], dict[str, float]]:
    """Every start level of one MORE factor on one set of services: (model version, results per
    start level, the owner's attacker's training accuracy)."""
    env = {"gateway": {"VEIL_EPS_MORE_FACTOR": repr(factor),
                       # The owner measures the controller, not the cap: no probe is refused.
                       "VEIL_LEDGER_CAP": "1000"},
           "anonymizer": {"VEIL_SAMPLING_STEPS": str(args.sampling_steps)}}
    results = []
    with LocalServices(var_dir, ports="free", model_uri=args.model, env=env, log_level="warning") as services:
        info = services.model_info()
        attacker = cached_attacker(AttackerSpec(image_size=info.image_size), args.cache)
        probes = probe_faces(args.probes, info.image_size, policy.protect)
        with services.client() as client:
            for level in levels:
                started = time.monotonic()
                # One subject per probe face: the gateway binds an image to the first subject it was
                # used for, so each start level's session charges that subject's ledger (never
                # refused at this cap; only what each release charges is reported).
                played = [play_probe(client, info, attacker, policy, png, value,
                                     subject=f"probe-{i}-f{factor}", level=level,
                                     candidates=args.candidates, seed=args.seed + i).to_dict()
                          for i, (png, value) in enumerate(probes)]
                print(f"more factor {factor}, start level {level}: {len(played)} probes in "
                      f"{time.monotonic() - started:.0f} s", file=sys.stderr)
                results.append({"more_factor": factor, "start_level": level, "probes": played})
    return info.model_version, results, attacker.train_accuracy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m veil_tools.owner", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="the JSON to write")
    parser.add_argument("--cache", type=Path, default=Path("out/owner-cache"), help="the owner's attacker")
    parser.add_argument("--model", default=None, help="model directory (default: the shipped model)")
    parser.add_argument("--settings", nargs="+", default=["0.5:5", "0.7:5", "0.5:7", "0.7:7"],
                        help="MORE_FACTOR:START_LEVEL pairs")
    parser.add_argument("--probes", type=int, default=20)
    parser.add_argument("--candidates", type=int, default=2)
    parser.add_argument("--sampling-steps", type=int, default=6)
    parser.add_argument("--seed", type=int, default=1,
                        help="session seed of probe i is seed + i (>= 1: 0 asks the gateway for a random one)")
    parser.add_argument("--privacy-target", type=float, default=OwnerPolicy.privacy_target)
    parser.add_argument("--utility-floor", type=float, default=OwnerPolicy.utility_floor)
    parser.add_argument("--max-rounds", type=int, default=OwnerPolicy.max_rounds)
    args = parser.parse_args(argv)
    if args.seed < 1:
        raise InvalidArgument(f"--seed must be >= 1 (seed 0 makes the gateway draw a random one), "
                              f"got {quoted(args.seed)}")
    policy = OwnerPolicy(privacy_target=args.privacy_target, utility_floor=args.utility_floor,
                         max_rounds=args.max_rounds)
    by_factor: dict[float, list[int]] = {}
    for factor, level in map(parse_setting, args.settings):
        by_factor.setdefault(factor, []).append(level)
    settings, model_version, attacker_accuracy = [], "", {}
    for factor, levels in by_factor.items():
        # Fresh services each time: no ledger or session carries over between settings or runs.
        with tempfile.TemporaryDirectory(prefix="veil-owner-") as var:
            model_version, played, attacker_accuracy = run_setting(Path(var), factor, levels, args, policy)
        settings.extend(played)
    report = {"kind": "owner", "model_version": model_version, "machine": machine(),
              "seeds": {"probe_faces": PROBE_SEED, "probe_first_identity": PROBE_FIRST_IDENTITY,
                        "sessions": args.seed, "attacker": AttackerSpec.seed},
              "run": {"probes": args.probes, "candidates": args.candidates,
                      "sampling_steps": args.sampling_steps},
              "policy": asdict(policy), "attacker_train_accuracy": attacker_accuracy,
              "settings": settings}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
