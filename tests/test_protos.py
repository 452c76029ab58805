"""The committed gRPC stubs (veil/v1/) must be what `make proto` generates from protos/."""

from __future__ import annotations

from pathlib import Path

from veil_tools.protogen import ROOT, generate, proto_files

STUBS = ROOT / "veil" / "v1"


def stub_files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def test_committed_stubs_are_fresh(tmp_path: Path) -> None:
    generate(tmp_path)
    fresh = stub_files(tmp_path / "veil" / "v1")
    committed = stub_files(STUBS)
    assert len(proto_files()) == 4 and len(fresh) == 1 + 3 * len(proto_files())  # __init__ + _pb2.py/.pyi/_grpc.py
    stale = sorted(name for name in fresh.keys() | committed.keys() if fresh.get(name) != committed.get(name))
    assert stale == [], f"stale or missing stubs in veil/v1: {stale}; run `make proto` and commit"
