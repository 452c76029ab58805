"""Rounds with refused candidates, end to end (a gateway and an anonymizer with verified edits on
loopback): the round names each refused candidate and why, keeps it after a restart of the read
path, refuses to accept it, and a round with none offered goes on with feedback."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from fixtures_services import TOKENS, failure, start_anonymizer
from test_anonymizer_verified import LEVEL, PROTECT, TRIES, library_candidates

from services.gateway.rounds import round_seed
from veil.cli import main as cli
from veil.images import decode_image

Code = grpc.StatusCode


@pytest.fixture(scope="module")
def verifying_anonymizer(tiny_model_dir, services_store, services_logs, tmp_path_factory):
    service = start_anonymizer(tiny_model_dir, services_store, services_logs / "verifying-anonymizer.log",
                               tmp_path_factory.mktemp("verifying-cache"), sampling_steps=2, decode_tries=TRIES)
    yield service
    service.stop()


def session_seed(model_dir: Path, face: bytes, candidates: int, wanted) -> tuple[int, list]:
    """A session seed whose first round's candidates (as the library decodes them) satisfy `wanted`."""
    crop = decode_image(face)
    for seed in range(1, 200):
        [row] = library_candidates(model_dir, [crop], round_seed(seed, 1), candidates)
        if wanted([c.offered for c in row]):
            return seed, row
    raise AssertionError("no seed in 1..199 gives the round wanted")


def test_a_round_says_which_candidates_were_refused_and_why(start_gateway, verifying_anonymizer, new_tenant,
                                                           face_png, tiny_model_dir):
    gateway = start_gateway(VEIL_ANONYMIZER_TARGET=verifying_anonymizer.target)
    seed, expected = session_seed(tiny_model_dir, face_png[2], 4, lambda offered: 0 < sum(offered) < 4)
    refused = [k for k, c in enumerate(expected) if not c.offered]
    with gateway.client(new_tenant()) as client:
        image = client.upload_image(face_png[2], subject_id="rita")
        session = client.create_session("rita", image, protect=PROTECT, level=LEVEL.level, candidates=4, seed=seed)
        for latest in (session.latest_round, client.get_session(session.session_id).latest_round):
            assert [c.index for c in latest.candidates] == [k for k in range(4) if k not in refused]
            assert [r.index for r in latest.refused] == refused
            for r in latest.refused:
                [face] = r.faces
                assert list(face.unverified_attributes) == list(expected[r.index].disagreeing)
                assert face.receipt.decode_tries == TRIES and "otherwise than released" in r.reason
        for c in session.latest_round.candidates:
            assert c.receipt.decode_tries == expected[c.index].tries
            assert client.download(c.image.object)  # stored, as offered
        wrong = failure(client.feedback, session.session_id, "accept", candidate=refused[0])
        assert wrong.code() == Code.INVALID_ARGUMENT
        assert f"candidate {refused[0]} of round 1 was not offered: face 0 still read" in wrong.details()
        assert failure(client.ledger, "rita").code() == Code.NOT_FOUND  # nothing was charged
        chosen = session.latest_round.candidates[-1]
        release = client.feedback(session.session_id, "accept", candidate=chosen.index).release
        assert release.receipt.receipt_id == chosen.receipt.receipt_id
        assert client.ledger("rita").summary.sum_epsilon == pytest.approx(release.charged_epsilon)


def test_a_round_with_no_candidate_offered_goes_on_with_feedback(start_gateway, verifying_anonymizer, new_tenant,
                                                                face_png, tiny_model_dir, monkeypatch, capsys,
                                                                tmp_path):
    gateway = start_gateway(VEIL_ANONYMIZER_TARGET=verifying_anonymizer.target)
    seed, [expected] = session_seed(tiny_model_dir, face_png[3], 1, lambda offered: not any(offered))
    tenant = new_tenant()
    with gateway.client(tenant) as client:
        image = client.upload_image(face_png[3], subject_id="sam")
        session = client.create_session("sam", image, protect=PROTECT, level=LEVEL.level, candidates=1, seed=seed)
        first = session.latest_round
        assert (len(first.candidates), [r.index for r in first.refused]) == (0, [0])
        # From a terminal: the refusal and what the owner can answer.
        monkeypatch.setenv("VEIL_GATEWAY_TARGET", gateway.target)
        monkeypatch.setenv("VEIL_TOKEN", TOKENS[tenant])
        assert cli(["session", "show", session.session_id, "--out", str(tmp_path / "out")]) == 0
        shown = capsys.readouterr().out
        assert f"  candidate 0: refused: face 0 still read {', '.join(expected.disagreeing)}" in shown
        assert "no candidate offered: answer with more, less or eps for a new round" in shown
        wrong = failure(client.feedback, session.session_id, "accept", candidate=0)
        assert wrong.code() == Code.INVALID_ARGUMENT and "was not offered" in wrong.details()
        second = client.feedback(session.session_id, "more").round
        assert second.number == 2 and len(second.candidates) + len(second.refused) == 1
