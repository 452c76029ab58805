"""Run every benchmark, or the ones named: python -m veil_tools.bench [diffusion] [unlearning] [gateway]."""

from __future__ import annotations

import importlib
import sys

BENCHES = {
    "diffusion": "veil_tools.bench.diffusion",
    "gateway": "veil_tools.bench.gateway",
    "unlearning": "veil_tools.bench.unlearning",
}


def main(argv: list[str]) -> int:
    names = argv or list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; known: {', '.join(BENCHES)}", file=sys.stderr)
        return 2
    status = 0
    for name in names:
        print(f"\n=== {name} ===", flush=True)
        status |= importlib.import_module(BENCHES[name]).main([])
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
