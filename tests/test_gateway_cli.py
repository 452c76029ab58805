"""`veil session ...` against a real gateway: the loop from a terminal, candidate files on disk;
and the caller tokens (services.gateway.auth)."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pytest
from fixtures_services import TOKENS

from services.gateway.auth import TenantTokens, parse_tokens
from veil.cli import main
from veil.errors import ConfigError, Unauthenticated
from veil.images import decode_image


@pytest.fixture
def veil(gateway, new_tenant, monkeypatch, capsys, tmp_path):
    """veil(*argv) -> (exit status, stdout, stderr), as a tenant of the test's own."""
    tenant = new_tenant()
    monkeypatch.setenv("VEIL_GATEWAY_TARGET", gateway.target)
    monkeypatch.setenv("VEIL_TOKEN", TOKENS[tenant])

    def run(*argv: str) -> tuple[int, str, str]:
        extra = ["--out", str(tmp_path / "out")] if argv[1] in ("create", "feedback", "show") else []
        status = main([*argv, *extra])
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    return run


def paths(out: str) -> list[Path]:
    return [Path(p) for p in re.findall(r"(?:candidate \d+|released): (\S+\.png)", out)]


def test_the_loop_from_a_terminal(veil, face_png, tmp_path):
    image = tmp_path / "face.png"
    image.write_bytes(face_png[3])
    status, out, err = veil("session", "create", str(image), "--subject", "ann", "--protect", "Male",
                            "--level", "5", "--candidates", "2")
    assert status == 0, err
    session_id = re.search(r"^session (\S+) \(active\)", out, re.M).group(1)
    assert "round 1: Male eps=2, identity eps=2, rho=1 (level 5)" in out
    first = paths(out)
    assert [p.name for p in first] == ["candidate-0.png", "candidate-1.png"]
    assert all(p.parent == tmp_path / "out" / session_id / "round-1" for p in first)
    assert all(decode_image(p.read_bytes()).shape == (16, 16, 3) for p in first)

    status, out, _ = veil("session", "feedback", session_id, "more")
    assert status == 0 and "round 2: Male eps=1, identity eps=1" in out
    status, out, _ = veil("session", "feedback", session_id, "eps", "Male=0.5", "identity=2")
    assert status == 0 and "round 3: Male eps=0.5, identity eps=2, rho=1 (set by feedback)" in out
    third = paths(out)
    status, out, _ = veil("session", "feedback", session_id, "accept", "1")
    assert status == 0 and "(accepted)" in out and "charged eps 2.5" in out
    [released] = paths(out)
    assert released.read_bytes() == third[1].read_bytes()

    status, out, _ = veil("session", "show", session_id)
    assert status == 0 and "3 round(s)" in out and f"released: {released}" in out
    status, out, _ = veil("session", "show", session_id, "--json")
    assert json.loads(out)["state"] == "SESSION_STATE_ACCEPTED"
    status, out, _ = veil("session", "ledger", "ann")
    assert status == 0 and f"session {session_id}" in out and "eps 2.5" in out
    status, out, _ = veil("session", "list", "--subject", "ann")
    assert status == 0 and out.count("session ") == 1


def test_closing_a_session_and_deleting_its_upload_from_a_terminal(veil, face_png, tmp_path):
    image = tmp_path / "face.png"
    image.write_bytes(face_png[5])
    sha256 = hashlib.sha256(face_png[5]).hexdigest()
    status, out, err = veil("session", "create", str(image), "--subject", "ivy", "--protect", "Male",
                            "--candidates", "1")
    assert status == 0, err
    session_id = re.search(r"^session (\S+) \(active\)", out, re.M).group(1)
    status, _, err = veil("session", "delete-upload", sha256)
    assert status == 2 and "FAILED_PRECONDITION" in err and "1 active session" in err
    status, out, err = veil("session", "close", session_id)
    assert status == 0 and f"session {session_id} (closed)" in out, err
    # A closed session's original is due for retention at once (grace 0 here), so the gateway's
    # retention loop may delete it first: either way the upload is gone afterwards.
    status, out, err = veil("session", "delete-upload", f"uploads/{sha256}.png")
    assert (status == 0 and f"deleted uploads/{sha256}.png" in out and "1 ended session" in out
            or status == 2 and "NOT_FOUND" in err), (out, err)
    status, _, err = veil("session", "delete-upload", sha256)
    assert status == 2 and "NOT_FOUND" in err


def test_the_cli_names_what_is_wrong(veil):
    status, _, err = veil("session", "feedback", "no-such-session", "more")
    assert status == 2 and "NOT_FOUND" in err
    status, _, err = veil("session", "feedback", "x", "accept", "first")
    assert status == 2 and "accept takes the index of a candidate" in err
    status, _, err = veil("session", "feedback", "x", "eps", "Male")
    assert status == 2 and "expected ATTR=EPS" in err
    status, _, err = veil("session", "ledger", "nobody")
    assert status == 2 and "NOT_FOUND: no ledger for subject 'nobody'" in err


def test_a_wrong_token_is_unauthenticated(veil, monkeypatch):
    monkeypatch.setenv("VEIL_TOKEN", "not-a-known-token-0000")
    status, _, err = veil("session", "list")
    assert status == 2 and "UNAUTHENTICATED: unknown token" in err


# --- tokens --------------------------------------------------------------------------------------

def test_token_file_errors_are_named():
    for text, message in [("not json", "not JSON"), ("[]", "non-empty JSON object"),
                          ("{}", "non-empty JSON object"),
                          ('{"short": "acme"}', "at least 16"),
                          ('{"a-long-enough-token-1": "bad tenant!"}', "tenant id")]:
        with pytest.raises(ConfigError, match=message):
            parse_tokens(text, "tokens.json")


def test_tokens_are_reloaded_when_the_file_changes(tmp_path):
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({"first-token-0123456789": "acme"}))
    tokens = TenantTokens(str(path))
    caller = tokens.caller("Bearer first-token-0123456789")
    assert caller.tenant == "acme" and caller.actor.startswith("token:")
    assert "first-token" not in caller.actor
    for bad in (None, "", "Basic abc", "Bearer ", "Bearer unknown-token-0123456789"):
        with pytest.raises(Unauthenticated):
            tokens.caller(bad)

    path.write_text(json.dumps({"second-token-0123456789": "globex"}))
    os.utime(path, (1, 1))  # a different modification time, whatever the clock's resolution
    assert tokens.caller("Bearer second-token-0123456789").tenant == "globex"
    with pytest.raises(Unauthenticated):
        tokens.caller("Bearer first-token-0123456789")
    path.write_text("{broken")  # a bad edit keeps the last good mapping
    os.utime(path, (2, 2))
    assert tokens.caller("Bearer second-token-0123456789").tenant == "globex"
