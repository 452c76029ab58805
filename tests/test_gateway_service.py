"""The gateway as a process on loopback (PostgreSQL, nanio S3, the anonymizer process with the tiny
model): the feedback loop end to end, the ledger against dp-accounting, tenancy, idempotency,
retention without an unlearner, and every bad input with its status code."""

from __future__ import annotations

import hashlib
import math
import struct
import threading
import urllib.request
import uuid
import zlib

import grpc
import numpy as np
import pytest
from dp_accounting.pld import privacy_loss_distribution as pld
from dp_accounting.privacy_accountant import NeighboringRelation
from fixtures_db import migrated
from fixtures_services import TOKENS, failure, wait_for
from google.protobuf.message import Message

from veil.images import encode_png
from veil.privacy import MAX_EPSILON
from veil.privacy.mechanisms import randomized_response_noise_parameter
from veil.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc

Code = grpc.StatusCode
DELTA = 1e-6
GRID = 1e-3  # VEIL_LEDGER_DISCRETIZATION's default


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height (no pixel data)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))


class Raw:
    """The gateway's stub with a tenant's credentials, for requests the client would not send."""

    def __init__(self, target: str, tenant: str | None) -> None:
        self.channel = grpc.insecure_channel(target, options=[("grpc.max_send_message_length", 64 << 20)])
        self.stub = gateway_pb2_grpc.GatewayStub(self.channel)
        self.metadata = (("authorization", f"Bearer {TOKENS[tenant]}"),) if tenant else ()

    def __getattr__(self, method: str):
        call = getattr(self.stub, method)
        return lambda request, **kw: call(request, metadata=kw.pop("metadata", self.metadata),
                                          timeout=kw.pop("timeout", 60), **kw)

    def upload(self, header: common_pb2.UploadHeader, *chunks: bytes):
        parts = [gateway_pb2.UploadImageRequest(header=header)]
        parts += [gateway_pb2.UploadImageRequest(chunk=common_pb2.Chunk(data=c)) for c in chunks]
        return self.UploadImage(iter(parts))


def header_for(data: bytes, content_type: str = "image/png", **fields) -> common_pb2.UploadHeader:
    return common_pb2.UploadHeader(content_type=content_type, size=len(data), **fields)


# --- the loop ------------------------------------------------------------------------------------

def test_two_rounds_of_feedback_then_accept(gateway, new_tenant, face_png, gateway_state):
    tenant = new_tenant()
    before = gateway.metrics()
    with gateway.client(tenant) as client:
        image = client.upload_image(face_png[0], subject_id="alice")
        sha = hashlib.sha256(face_png[0]).hexdigest()
        assert (image.object.key, image.object.sha256, image.width, image.height) == (
            f"uploads/{sha}.png", sha, 16, 16)
        session = client.create_session("alice", image, protect=["Male"], level=5, candidates=2)
        sid = session.session_id
        first = session.latest_round
        assert (session.state, session.round_count, first.number, first.level) == (
            gateway_pb2.SESSION_STATE_ACTIVE, 1, 1, 5)
        assert dict(first.attribute_epsilon) == {"Male": 2.0}
        assert (first.identity_epsilon, first.rho) == (2.0, pytest.approx(1.0))
        assert [c.index for c in first.candidates] == [0, 1]
        assert all(c.receipt.attributes[0].epsilon == 2.0 and c.receipt.identity_noise_multiplier > 0
                   for c in first.candidates)

        events: list[gateway_pb2.RoundEvent] = []
        stream = client.stream_rounds(sid, timeout=120)

        def read() -> None:
            try:
                events.extend(stream)
            except grpc.RpcError as exc:  # the assertions below report what is missing
                events.append(exc)

        reader = threading.Thread(target=read)
        reader.start()

        more = client.feedback(sid, "more")
        # MORE halves every budget of the round (Male 2 -> 1, identity 2 -> 1).
        assert (more.round.number, more.round.level) == (2, -1)
        assert (dict(more.round.attribute_epsilon), more.round.identity_epsilon) == ({"Male": 1.0}, 1.0)
        less = client.feedback(sid, "less")
        # A reversal: bisection between the two answers, sqrt(lo * hi) per budget.
        assert less.round.attribute_epsilon["Male"] == pytest.approx(math.sqrt(2.0))
        assert less.round.identity_epsilon == pytest.approx(math.sqrt(1.0 * 2.0))
        chosen = less.round.candidates[1]
        accepted = client.feedback(sid, "accept", candidate=1)
        reader.join(timeout=60)

    release = accepted.release
    assert accepted.session.state == gateway_pb2.SESSION_STATE_ACCEPTED
    assert accepted.session.round_count == 3
    assert release.receipt.receipt_id == chosen.receipt.receipt_id
    assert release.image.object.key == f"releases/{sid}.png"
    assert release.image.object.sha256 == chosen.image.object.sha256
    with gateway.client(tenant) as client:
        published = client.download(release.image.object)
        assert published == client.download(chosen.image.object)
    with urllib.request.urlopen(release.image.url, timeout=10) as response:  # presigned (S3)
        assert response.read() == published
    expected_charge = 2 * math.sqrt(2.0)
    assert release.charged_epsilon == pytest.approx(expected_charge)
    assert release.ledger.sum_epsilon == pytest.approx(expected_charge)
    # (At the ledger's delta 1e-6 the identity Gaussian, calibrated at 1e-5, costs more than its
    # nominal eps: composed can exceed the plain sum.)
    assert release.ledger.composed_epsilon == pytest.approx(
        expected_composition([chosen.receipt])[0], rel=1e-6)
    unspent = min(100.0 - release.ledger.composed_epsilon, MAX_EPSILON)  # no release spends more
    assert unspent - 2 * GRID <= release.ledger.remaining <= unspent
    assert list(release.unlearning_request_ids) == []  # no unlearner: no registered model

    # The stream saw every round, progress of the ones generated while it listened, the end.
    kinds = [e.WhichOneof("event") for e in events]
    assert [e.round.number for e in events if e.HasField("round")] == [1, 2, 3]
    assert "progress" in kinds and kinds[-1] == "session_ended"
    assert events[-1].session_ended.state == gateway_pb2.SESSION_STATE_ACCEPTED

    with gateway.client(tenant) as client:
        ledger = client.ledger("alice")
    [entry] = ledger.entries
    assert (entry.session_id, entry.receipt_id) == (sid, chosen.receipt.receipt_id)
    assert ledger.summary.composed_epsilon == pytest.approx(release.ledger.composed_epsilon)

    # Retention (no dependent model): the original goes once the release is published.
    with gateway.client(tenant) as client:
        wait_for(lambda: client.get_session(sid).original.url == "",
                 what="the original's deletion")  # recorded once the object is gone
        assert failure(client.download, image.object).code() == Code.NOT_FOUND

    records = gateway_state.audit.records(tenant, limit=1000)
    actions = [(r.action, r.outcome) for r in records if r.action != "object.download"]
    assert actions == [("image.upload", "ok"), ("session.create", "ok"), ("round.add", "ok"),
                       ("round.feedback", "ok"), ("round.add", "ok"), ("round.feedback", "ok"),
                       ("round.add", "ok"), ("release.accept", "charged"), ("release.publish", "ok"),
                       ("original.delete", "ok")]
    by_action = {r.action: r for r in records}
    assert by_action["session.create"].input_sha256 == sha
    assert by_action["round.add"].model_versions == ("tiny-test",)
    assert by_action["release.accept"].actor == by_action["image.upload"].actor
    assert by_action["release.accept"].actor.startswith("token:")
    assert TOKENS[tenant] not in str([(r.actor, r.detail) for r in records])
    after = gateway.metrics()

    def delta(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("veil_gateway_releases_total") >= 1
    assert delta("veil_gateway_sessions_created_total") >= 1
    assert delta("veil_gateway_feedback_total", kind="more_privacy") >= 1
    assert delta("veil_gateway_session_rounds_count") >= 1
    assert delta("veil_gateway_release_epsilon_sum") >= expected_charge - 1e-6
    assert delta("veil_gateway_anonymizer_call_seconds_count", grpc_code="OK") >= 3
    assert delta("veil_gateway_round_seconds_count") >= 3
    assert delta("veil_gateway_originals_deleted_total") >= 1
    assert delta("veil_grpc_server_handled_total", grpc_service="veil.v1.Gateway",
                 grpc_method="Feedback", grpc_type="unary", grpc_code="OK") >= 3
    assert after[("veil_gpu_available", ())] == 0.0


def test_set_epsilon_moves_to_the_owners_values(gateway, new_tenant, face_png):
    with gateway.client(new_tenant()) as client:
        image = client.upload_image(face_png[1])
        session = client.create_session("bob", image, protect=["Male", "Young"],
                                        epsilon={"Male": 1.0, "Young": 0.5}, identity_epsilon=4.0,
                                        rho=0.2, candidates=1)
        first = session.latest_round
        assert (first.level, dict(first.attribute_epsilon), first.identity_epsilon, first.rho) == (
            -1, {"Male": 1.0, "Young": 0.5}, 4.0, pytest.approx(0.2))
        moved = client.feedback(session.session_id, "eps", epsilon={"Young": 2.0, "identity": 3.0})
        assert (dict(moved.round.attribute_epsilon), moved.round.identity_epsilon) == (
            {"Male": 1.0, "Young": 2.0}, 3.0)
        receipt = moved.round.candidates[0].receipt
        assert {a.attribute: a.epsilon for a in receipt.attributes} == {"Male": 1.0, "Young": 2.0}
        assert receipt.identity_epsilon == 3.0


# --- the ledger -----------------------------------------------------------------------------------

def expected_composition(receipts: list[common_pb2.Receipt]) -> tuple[float, float]:
    """(composed eps at DELTA, plain sum) of the receipts' releases, with dp-accounting's PLDs
    built here from the receipts (REPLACE_ONE; Laplace with sensitivity 2 in noise-multiplier
    units, as dp-accounting treats its REPLACE_ONE Gaussian)."""
    replace_one = NeighboringRelation.REPLACE_ONE
    distributions, total = [], 0.0
    for receipt in receipts:
        for attribute in receipt.attributes:
            total += attribute.epsilon
            if attribute.mechanism == common_pb2.MECHANISM_RANDOMIZED_RESPONSE:
                distributions.append(pld.from_randomized_response(
                    randomized_response_noise_parameter(attribute.epsilon), 2,
                    value_discretization_interval=GRID, neighboring_relation=replace_one))
            else:
                assert attribute.mechanism == common_pb2.MECHANISM_LAPLACE
                distributions.append(pld.from_laplace_mechanism(
                    2.0 / attribute.epsilon, sensitivity=2.0, value_discretization_interval=GRID))
        if receipt.identity_epsilon:
            total += receipt.identity_epsilon
            distributions.append(pld.from_gaussian_mechanism(
                receipt.identity_noise_multiplier, value_discretization_interval=GRID,
                neighboring_relation=replace_one))
    composed = distributions[0]
    for distribution in distributions[1:]:
        composed = composed.compose(distribution)
    return composed.get_epsilon_for_delta(DELTA), total


def test_composed_epsilon_matches_dp_accounting_for_a_mixed_sequence(gateway, new_tenant, face_png):
    settings = [dict(epsilon={"Male": 1.0}),                                          # RR
                dict(epsilon={"Male": 0.5}, mechanism="laplace", identity_epsilon=2.0),  # Laplace + Gaussian
                dict(level=5),                                                        # RR + Gaussian
                dict(epsilon={"Male": 0.75, "Young": 1.5}, mechanism="laplace")]
    receipts = []
    with gateway.client(new_tenant()) as client:
        for i, setting in enumerate(settings):
            image = client.upload_image(face_png[i])
            protect = list(setting.get("epsilon", {"Male": 0}))
            session = client.create_session("carol", image, protect=protect, candidates=1, **setting)
            accepted = client.feedback(session.session_id, "accept", candidate=0)
            receipts.append(accepted.release.receipt)
        ledger = client.ledger("carol")
    assert [e.receipt_id for e in ledger.entries] == [r.receipt_id for r in receipts]
    mechanisms = {a.mechanism for r in receipts for a in r.attributes}
    assert mechanisms == {common_pb2.MECHANISM_RANDOMIZED_RESPONSE, common_pb2.MECHANISM_LAPLACE}
    composed, total = expected_composition(receipts)
    assert ledger.summary.sum_epsilon == pytest.approx(total)
    assert ledger.summary.composed_epsilon == pytest.approx(composed, rel=1e-6)
    assert ledger.summary.composed_epsilon < total
    # The first three releases alone, as the second-to-last entry's total would have been.
    assert ledger.summary.delta == DELTA and ledger.summary.cap == 100.0


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf])
def test_bad_epsilon_is_refused_and_the_budget_is_unchanged(gateway, new_tenant, face_png, bad):
    with gateway.client(new_tenant()) as client:
        image = client.upload_image(face_png[0])
        first = client.create_session("dave", image, protect=["Male"], epsilon={"Male": 1.0},
                                      candidates=1)
        client.feedback(first.session_id, "accept", candidate=0)
        before = client.ledger("dave").summary
        refused = failure(client.create_session, "dave", image, protect=["Male"],
                          epsilon={"Male": bad}, candidates=1)
        assert refused.code() == Code.INVALID_ARGUMENT and "epsilon" in refused.details()
        # (Retention deletes an original once its release is out: upload it again.)
        image = client.upload_image(face_png[1])
        second = client.create_session("dave", image, protect=["Male"], epsilon={"Male": 1.0},
                                       candidates=1)
        refused = failure(client.feedback, second.session_id, "eps", epsilon={"Male": bad})
        assert refused.code() == Code.INVALID_ARGUMENT and "epsilon" in refused.details()
        assert client.ledger("dave").summary == before
        assert client.get_session(second.session_id).round_count == 1


def test_renaming_the_subject_gives_no_fresh_budget(gateway, new_tenant, face_png):
    """Subject ids are canonical (trimmed, case-folded) and an image charges one subject only."""
    with gateway.client(new_tenant()) as client:
        image = client.upload_image(face_png[4], subject_id="cap-x")
        session = client.create_session(" CAP-x ", image, protect=["Male"],
                                        epsilon={"Male": 1.0}, candidates=1)
        assert session.subject_id == "cap-x"
        renamed = failure(client.create_session, "cap-x-2", image, protect=["Male"],
                          epsilon={"Male": 1.0}, candidates=1)
        assert renamed.code() == Code.FAILED_PRECONDITION
        assert "'cap-x'" in renamed.details() and "'cap-x-2'" in renamed.details()
        # The same bytes uploaded again for another subject are refused too.
        again = failure(client.upload_image, face_png[4], subject_id="Someone-Else")
        assert again.code() == Code.FAILED_PRECONDITION and "'cap-x'" in again.details()
        client.feedback(session.session_id, "accept", candidate=0)
        ledger = client.ledger("Cap-X")
        assert ledger.subject_id == "cap-x" and len(ledger.entries) == 1
        assert ledger == client.ledger("cap-x")
        # Retention deleted the original: uploaded again without a subject, it is still cap-x's.
        image = client.upload_image(face_png[4])
        renamed = failure(client.create_session, "cap-x-2", image, protect=["Male"],
                          epsilon={"Male": 1.0}, candidates=1)
        assert renamed.code() == Code.FAILED_PRECONDITION
        for bad in ["cap x", "", "x" * 129, "caf\u00e9", "cap/x"]:
            assert failure(client.ledger, bad).code() == Code.INVALID_ARGUMENT, bad
            refused = failure(client.create_session, bad, image, protect=["Male"], level=3)
            assert refused.code() == Code.INVALID_ARGUMENT, bad
        assert failure(client.upload_image, face_png[5], subject_id="cap x").code() == (
            Code.INVALID_ARGUMENT)
        assert [s.session_id for s in client.list_sessions("CAP-X")] == [session.session_id]


# --- tenancy and idempotency -----------------------------------------------------------------------

def test_a_tenant_never_sees_another_tenants_sessions_ledgers_or_objects(gateway, new_tenant, face_png):
    owner, other = new_tenant(), new_tenant()
    with gateway.client(owner) as client:
        image = client.upload_image(face_png[2])
        session = client.create_session("erin", image, protect=["Male"], level=3, candidates=1)
        candidate = session.latest_round.candidates[0].image.object
        client.feedback(session.session_id, "accept", candidate=0)
    sid = session.session_id
    with gateway.client(other) as intruder:
        for call, args in [(intruder.get_session, (sid,)), (intruder.ledger, ("erin",)),
                           (intruder.feedback, (sid, "more")), (intruder.stream_rounds, (sid,)),
                           (intruder.download, (candidate,))]:
            refused = failure(call, *args)
            assert refused.code() == Code.NOT_FOUND, (call, refused)
            assert owner not in refused.details()
        refused = failure(intruder.create_session, "erin", image, protect=["Male"], level=3)
        assert refused.code() == Code.NOT_FOUND
        sneaky = common_pb2.ObjectRef(key=f"../{owner}/{candidate.key}", sha256=candidate.sha256)
        assert failure(intruder.download, sneaky).code() == Code.INVALID_ARGUMENT
        assert list(intruder.list_sessions()) == []
    with gateway.client(owner) as client:
        assert [s.session_id for s in client.list_sessions("erin")] == [sid]


def test_a_repeated_request_id_returns_the_first_result(gateway, new_tenant, face_png):
    with gateway.client(new_tenant()) as client:
        image = client.upload_image(face_png[3], request_id="upload-1")
        assert client.upload_image(face_png[3], request_id="upload-1") == image
        first = client.create_session("frank", image, protect=["Male"], level=4, candidates=1,
                                      request_id="create-1")
        again = client.create_session("frank", image, protect=["Male"], level=4, candidates=1,
                                      request_id="create-1")
        assert again == first
        assert len(list(client.list_sessions("frank"))) == 1
        other = failure(client.create_session, "frank", image, protect=["Male"], level=6,
                        candidates=1, request_id="create-1")
        assert other.code() == Code.INVALID_ARGUMENT and "create-1" in other.details()
        more = client.feedback(first.session_id, "more", request_id="more-1")
        assert client.feedback(first.session_id, "more", request_id="more-1") == more
        assert client.get_session(first.session_id).round_count == 2
        accepted = client.feedback(first.session_id, "accept", request_id="accept-1")
        assert client.feedback(first.session_id, "accept", request_id="accept-1") == accepted
        assert len(client.ledger("frank").entries) == 1


def test_closing_a_session_and_deleting_its_upload(start_gateway, make_pg_database, new_tenant, face_png):
    # Retention would delete the ended sessions' original at a moment of its own: kept here, on a
    # database no other gateway of the run reads (retention scans every tenant's sessions), so
    # what the test deletes is decided by DeleteUpload alone.
    gateway = start_gateway(VEIL_RETENTION_POLICY="keep", VEIL_DATABASE_URL=migrated(make_pg_database()))
    owner, other = new_tenant(), new_tenant()
    with gateway.client(owner) as client:
        image = client.upload_image(face_png[4], subject_id="gwen")
        session = client.create_session("gwen", image, protect=["Male"], level=3, candidates=2)
        sid = session.session_id
        candidate = session.latest_round.candidates[0].image.object
        in_use = failure(client.delete_upload, image)
        assert in_use.code() == Code.FAILED_PRECONDITION and "1 active session" in in_use.details()
        with gateway.client(other) as intruder:
            assert failure(intruder.close_session, sid).code() == Code.NOT_FOUND
            assert failure(intruder.delete_upload, image).code() == Code.NOT_FOUND
        closed = client.close_session(sid, request_id="close-1")
        assert closed.state == gateway_pb2.SESSION_STATE_CLOSED
        assert client.close_session(sid, request_id="close-1") == closed
        assert client.close_session(sid) == closed
        assert failure(client.feedback, sid, "more").code() == Code.FAILED_PRECONDITION
        assert failure(client.feedback, sid, "accept").code() == Code.FAILED_PRECONDITION
        assert failure(client.download, candidate).code() == Code.NOT_FOUND
        assert failure(client.ledger, "gwen").code() == Code.NOT_FOUND  # nothing was charged

        accepted = client.create_session("gwen", image, protect=["Male"], level=3, candidates=1)
        client.feedback(accepted.session_id, "accept", candidate=0)
        refused = failure(client.close_session, accepted.session_id)
        assert refused.code() == Code.FAILED_PRECONDITION and "accepted" in refused.details()

        deleted = client.delete_upload(image.object.sha256, request_id="delete-1")
        assert (deleted.image.key, deleted.image.sha256, deleted.sessions) == (
            image.object.key, image.object.sha256, 2)
        assert client.delete_upload(image.object.sha256, request_id="delete-1") == deleted
        assert failure(client.delete_upload, image).code() == Code.NOT_FOUND
        assert failure(client.download, image.object).code() == Code.NOT_FOUND
        # The bytes stay bound to their subject: uploading them again for another is refused.
        assert failure(client.upload_image, face_png[4], subject_id="hal").code() == \
            Code.FAILED_PRECONDITION


# --- bad input -------------------------------------------------------------------------------------

def test_bad_input_gets_its_documented_code_and_the_service_keeps_serving(gateway, new_tenant, face_png):
    tenant = new_tenant()
    raw = Raw(gateway.target, tenant)
    with gateway.client(tenant) as client:
        image = client.upload_image(face_png[4])
        session = client.create_session("gina", image, protect=["Male"], level=5, candidates=2)
    sid = session.session_id
    with gateway.client(tenant) as client:
        faceless = client.upload_image(encode_png(np.zeros((32, 32, 3), dtype=np.uint8)))
    corrupt = b"\x89PNG\r\n\x1a\n" + b"garbage" * 20
    ref = image.object

    def create(**fields):
        request = gateway_pb2.CreateSessionRequest(subject_id="gina", image=ref, protect=["Male"],
                                                   candidates=1)
        for name, value in fields.items():
            if isinstance(value, Message):
                getattr(request, name).CopyFrom(value)
            elif name == "protect":
                request.ClearField("protect")
                request.protect.extend(value)
            else:
                setattr(request, name, value)
        return raw.CreateSession(request)

    def explicit(eps: float) -> common_pb2.PrivacySetting:
        return common_pb2.PrivacySetting(explicit=common_pb2.ExplicitBudget(attribute_epsilon={"Male": eps}))

    def feedback(kind, **fields):
        return raw.Feedback(gateway_pb2.FeedbackRequest(session_id=fields.pop("session_id", sid),
                                                        kind=kind, **fields))

    cases = [
        ("corrupt image bytes", lambda: raw.upload(header_for(corrupt), corrupt),
         Code.INVALID_ARGUMENT, "not a readable PNG, JPEG or WebP"),
        ("0x0 image", lambda: raw.upload(header_for(png_header(0, 0)), png_header(0, 0)),
         Code.INVALID_ARGUMENT, "upload: not a readable PNG, JPEG or WebP"),
        ("10000x10000 header", lambda: raw.upload(header_for(png_header(10000, 10000)),
                                                  png_header(10000, 10000)),
         Code.INVALID_ARGUMENT, "upload: 10000x10000 is larger than 4096 px"),
        ("wrong content type", lambda: raw.upload(header_for(face_png[0], "text/plain"), face_png[0]),
         Code.INVALID_ARGUMENT, "content type 'text/plain' is not supported"),
        ("content type of other bytes", lambda: raw.upload(header_for(face_png[0], "image/jpeg"),
                                                           face_png[0]),
         Code.INVALID_ARGUMENT, "the bytes are PNG"),
        ("size mismatch", lambda: raw.upload(header_for(face_png[0] + b"x"), face_png[0]),
         Code.INVALID_ARGUMENT, "declared size"),
        ("sha256 mismatch", lambda: raw.upload(header_for(face_png[0], sha256="0" * 64), face_png[0]),
         Code.DATA_LOSS, "sha256"),
        ("chunk first", lambda: raw.UploadImage(iter([gateway_pb2.UploadImageRequest(
            chunk=common_pb2.Chunk(data=b"x"))])), Code.INVALID_ARGUMENT, "UploadHeader before"),
        ("upload over the limit", lambda: raw.upload(common_pb2.UploadHeader(
            content_type="image/png", size=1 << 30)), Code.INVALID_ARGUMENT, "declared size"),
        ("a huge message", lambda: raw.upload(header_for(b"x" * (5 << 20)), b"x" * (5 << 20)),
         Code.RESOURCE_EXHAUSTED, ""),
        ("unknown attribute", lambda: create(protect=["Wings"]), Code.INVALID_ARGUMENT,
         "unknown attribute(s) 'Wings'"),
        ("level 0", lambda: create(privacy=common_pb2.PrivacySetting(level=0)),
         Code.INVALID_ARGUMENT, "level 0"),
        ("level 11", lambda: create(privacy=common_pb2.PrivacySetting(level=11)),
         Code.INVALID_ARGUMENT, "level"),
        ("eps 0", lambda: create(privacy=explicit(0.0)), Code.INVALID_ARGUMENT, "epsilon"),
        ("eps < 0", lambda: create(privacy=explicit(-1.0)), Code.INVALID_ARGUMENT, "epsilon"),
        ("eps NaN", lambda: create(privacy=explicit(math.nan)), Code.INVALID_ARGUMENT, "epsilon"),
        ("eps inf", lambda: create(privacy=explicit(math.inf)), Code.INVALID_ARGUMENT, "epsilon"),
        ("no image", lambda: create(image=common_pb2.ObjectRef()), Code.INVALID_ARGUMENT, "no image"),
        ("unknown image", lambda: create(image=common_pb2.ObjectRef(key="uploads/none.png")),
         Code.NOT_FOUND, "none.png"),
        ("a photo without a face", lambda: create(image=faceless.object),
         Code.INVALID_ARGUMENT, "no face to anonymize"),
        ("too many candidates", lambda: create(candidates=9), Code.INVALID_ARGUMENT, "candidates"),
        ("no subject", lambda: create(subject_id=""), Code.INVALID_ARGUMENT, "subject"),
        ("unknown session", lambda: raw.GetSession(gateway_pb2.GetSessionRequest(session_id="nope")),
         Code.NOT_FOUND, "nope"),
        ("feedback on an unknown session", lambda: feedback(gateway_pb2.FEEDBACK_KIND_MORE_PRIVACY,
                                                            session_id=str(uuid.uuid4())),
         Code.NOT_FOUND, "not found"),
        ("stream of an unknown session", lambda: list(raw.StreamRounds(
            gateway_pb2.StreamRoundsRequest(session_id="nope"))), Code.NOT_FOUND, "nope"),
        ("ledger of an unknown subject", lambda: raw.GetLedger(gateway_pb2.GetLedgerRequest(
            subject_id="nobody")), Code.NOT_FOUND, "nobody"),
        ("download of an unknown object", lambda: list(raw.Download(gateway_pb2.DownloadRequest(
            object=common_pb2.ObjectRef(key="releases/none.png")))), Code.NOT_FOUND, ""),
        ("no feedback kind", lambda: feedback(gateway_pb2.FEEDBACK_KIND_UNSPECIFIED),
         Code.INVALID_ARGUMENT, "feedback kind"),
        ("eps of an unknown attribute", lambda: feedback(gateway_pb2.FEEDBACK_KIND_SET_EPSILON,
                                                         epsilon={"Wings": 1.0}),
         Code.INVALID_ARGUMENT, "Wings"),
        ("eps NaN in feedback", lambda: feedback(gateway_pb2.FEEDBACK_KIND_SET_EPSILON,
                                                 epsilon={"Male": math.nan}),
         Code.INVALID_ARGUMENT, "epsilon"),
        ("candidate out of range", lambda: feedback(gateway_pb2.FEEDBACK_KIND_ACCEPT, candidate=7),
         Code.INVALID_ARGUMENT, "no candidate 7 in round 1; offered: [0, 1]"),
        ("no token", lambda: Raw(gateway.target, None).ListSessions(gateway_pb2.ListSessionsRequest()),
         Code.UNAUTHENTICATED, "authorization"),
        ("unknown token", lambda: raw.ListSessions(gateway_pb2.ListSessionsRequest(),
                                                   metadata=(("authorization", "Bearer wrong-token-0123456789"),)),
         Code.UNAUTHENTICATED, "unknown token"),
    ]
    for name, call, code, message in cases:
        refused = failure(call)
        assert (refused.code(), name) == (code, name), refused.details()
        assert message in (refused.details() or ""), (name, refused.details())
        # ... and the gateway keeps serving.
        assert raw.GetSession(gateway_pb2.GetSessionRequest(session_id=sid)).session_id == sid
    assert feedback(gateway_pb2.FEEDBACK_KIND_ACCEPT, candidate=1).release.image.object.key
    after_accept = failure(feedback, gateway_pb2.FEEDBACK_KIND_MORE_PRIVACY)
    assert after_accept.code() == Code.FAILED_PRECONDITION and "accepted" in after_accept.details()
    accept_again = failure(feedback, gateway_pb2.FEEDBACK_KIND_ACCEPT, candidate=0)
    assert accept_again.code() == Code.FAILED_PRECONDITION
    with gateway.client(tenant) as client:  # still serving a whole session (a new upload:
        image = client.upload_image(face_png[4])  # retention removes an accepted original)
        assert client.create_session("gina", image, protect=["Male"], level=5).round_count == 1
    raw.channel.close()


def test_a_photo_session_releases_every_face_and_charges_each(gateway, new_tenant):
    """A whole photo (scikit-image's astronaut, 512 px): the candidate is the whole photo with each
    face anonymized, the receipts are per face, and accepting charges every anonymized face."""
    from skimage import data as skdata

    tenant = new_tenant()
    photo = encode_png(skdata.astronaut())
    with gateway.client(tenant) as client:
        image = client.upload_image(photo, subject_id="eileen")
        assert (image.width, image.height) == (512, 512)
        session = client.create_session("eileen", image, protect=["Male"], level=5, candidates=1)
        [candidate] = session.latest_round.candidates
        assert (candidate.image.width, candidate.image.height) == (512, 512)
        faces = list(candidate.faces)
        assert faces and all(f.action == common_pb2.FACE_ACTION_ANONYMIZED for f in faces)
        assert any(abs((f.box.left + f.box.right) / 2 - 220) < 20 and abs((f.box.top + f.box.bottom) / 2 - 120) < 20
                   for f in faces)  # her face
        receipts = [f.receipt for f in faces]
        assert len({r.receipt_id for r in receipts}) == len(faces) and candidate.receipt == receipts[0]
        accepted = client.feedback(session.session_id, "accept", candidate=0)
        release = accepted.release
        assert list(release.faces) == faces
        assert release.image.object.key == f"releases/{session.session_id}.png"
        assert len(client.download(release.image.object)) == candidate.image.object.size
        ledger = client.ledger("eileen")
    # Male 2 + identity 2 per face, each face a release of its own.
    assert release.charged_epsilon == pytest.approx(4.0 * len(faces))
    assert release.ledger.composed_epsilon == pytest.approx(expected_composition(receipts)[0], rel=1e-6)
    assert ledger.summary.composed_epsilon == pytest.approx(release.ledger.composed_epsilon)
