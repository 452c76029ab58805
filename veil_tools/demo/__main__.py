"""`python -m veil_tools.demo --out out`: see veil_tools.demo."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import veil_tools.demo
from veil_tools.demo.run import DemoOptions, run_demo
from veil.errors import VeilError


def main(argv: list[str] | None = None) -> int:
    defaults = DemoOptions(out=Path("out"))
    parser = argparse.ArgumentParser(prog="python -m veil_tools.demo", description=veil_tools.demo.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=defaults.out,
                        help="output folder; results go to <out>/demo/ (default: out)")
    parser.add_argument("--model", default=None,
                        help="the anonymizer's VEIL_MODEL_URI (default: models/diffae-synth32)")
    parser.add_argument("--steps", type=int, default=None,
                        help="DDIM sampling steps (default: the model card's)")
    parser.add_argument("--decode-tries", type=int, default=None,
                        help="verified edits: the anonymizer's VEIL_DECODE_TRIES (default: its default, 3; "
                             "0: every candidate offered unverified)")
    parser.add_argument("--candidates", type=int, default=defaults.candidates,
                        help=f"candidates per round (default {defaults.candidates})")
    parser.add_argument("--level", type=int, default=defaults.level,
                        help=f"starting privacy level (default {defaults.level})")
    parser.add_argument("--cap", type=float, default=defaults.ledger_cap,
                        help=f"the gateway's VEIL_LEDGER_CAP (default {defaults.ledger_cap:g})")
    parser.add_argument("--train-epochs", type=int, default=defaults.train_epochs,
                        help=f"epochs of the published classifier (default {defaults.train_epochs})")
    args = parser.parse_args(argv)
    options = DemoOptions(out=args.out, model_uri=args.model, sampling_steps=args.steps,
                          decode_tries=args.decode_tries, candidates=args.candidates, level=args.level, ledger_cap=args.cap,
                          train_epochs=args.train_epochs)
    try:
        report = run_demo(options)
    except VeilError as exc:
        print(f"veil_tools.demo: {exc}", file=sys.stderr)
        return 1
    ledger = report["ledger"]["summary"]
    print(f"demo done in {report['timings_seconds']['total']:.0f} s: composed eps "
          f"{ledger['composed_epsilon']:.3f} (plain sum {ledger['sum_epsilon']:.3f}) of cap "
          f"{ledger['cap']:g}; {report['models']['model']} {report['models']['trained_version']} -> "
          f"{report['models']['updated_version']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
