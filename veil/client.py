"""A synchronous Python client of the gateway (veil.v1.Gateway), for internal services and the CLI.

    from veil.client import GatewayClient

    with GatewayClient("gateway:50050", token) as client:
        image = client.upload_image(Path("face.png"), subject_id="alice")
        session = client.create_session("alice", image, protect=["Male"], level=5)
        response = client.feedback(session.session_id, "more")          # a new round
        response = client.feedback(session.session_id, "accept", candidate=2)
        client.download(response.release.image.object, Path("released.png"))

The channel is a blocking gRPC channel (one per client; share a client between threads, gRPC
channels are thread-safe) with the options of veil.rpc.channel: message limits, keepalive, TLS
from VEIL_TLS_* when a CA is given, and a service config that retries calls failing with
UNAVAILABLE with exponential backoff. Every mutating call carries a request id (a fresh one
unless you pass yours), so a retried call, by gRPC or by you with the same id, happens once.
Each call has a default deadline (`Deadlines`); failures raise grpc.RpcError with the gateway's
status code and message.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from veil.config import env_field, from_env
from veil.errors import DataLoss, InvalidArgument, quoted
from veil.privacy import ATTRIBUTE_MECHANISMS
from veil.privacy.convert import mechanism_to_proto
from veil.rpc import ChannelConfig, open_sync_channel
from veil.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc

UPLOAD_CHUNK_BYTES = 1 << 20
FEEDBACK_KINDS = {
    "more": gateway_pb2.FEEDBACK_KIND_MORE_PRIVACY,
    "less": gateway_pb2.FEEDBACK_KIND_LESS_PRIVACY,
    "accept": gateway_pb2.FEEDBACK_KIND_ACCEPT,
    "eps": gateway_pb2.FEEDBACK_KIND_SET_EPSILON,
}
MECHANISMS = {m.value: mechanism_to_proto(m) for m in ATTRIBUTE_MECHANISMS}
_MAGIC = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg"}


@dataclasses.dataclass(frozen=True)
class ClientConfig:
    """Where the CLI finds the gateway and its credentials (flags override these)."""

    target: str = env_field("VEIL_GATEWAY_TARGET", "127.0.0.1:50050", doc="the gateway, host:port")
    token: str | None = env_field("VEIL_TOKEN", None, secret=True,
                                  doc="the caller's token (VEIL_TENANT_TOKENS_FILE maps it to a tenant)")


@dataclasses.dataclass(frozen=True)
class Deadlines:
    """Default deadline of each call, in seconds. Calls that generate a round wait for the
    anonymizer (and its queue), so they get minutes."""

    upload: float = 60.0
    generate: float = 600.0
    read: float = 15.0
    download: float = 120.0


SUFFIXES = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}
FACE_ACTIONS = {common_pb2.FACE_ACTION_ANONYMIZED: "anonymized", common_pb2.FACE_ACTION_KEPT: "kept",
                common_pb2.FACE_ACTION_OBSCURED: "obscured"}


def file_suffix(ref: common_pb2.ObjectRef) -> str:
    """The file name suffix of a stored photo (candidates come in their original's format)."""
    return SUFFIXES.get(ref.content_type, ".png")


def describe_faces(faces: Sequence[common_pb2.FaceRelease]) -> str:
    """One line: each face's box and what happened to it."""
    if not faces:
        return "no face"
    return "; ".join(f"face {i} at ({f.box.left}, {f.box.top}, {f.box.right}, {f.box.bottom}) "
                     f"{FACE_ACTIONS.get(f.action, 'unknown')}" for i, f in enumerate(faces))


def sniff_content_type(data: bytes) -> str:
    for magic, content_type in _MAGIC.items():
        if data.startswith(magic):
            return content_type
    raise InvalidArgument("not a PNG or JPEG file")


class GatewayClient:
    def __init__(self, target: str, token: str, *, channel_config: ChannelConfig | None = None,
                 deadlines: Deadlines = Deadlines()) -> None:
        if not token:
            raise InvalidArgument("a token is needed to call the gateway")
        self._channel = open_sync_channel(target, channel_config or ChannelConfig.load())
        self._stub = gateway_pb2_grpc.GatewayStub(self._channel)
        self._metadata = (("authorization", f"Bearer {token}"),)
        self.deadlines = deadlines

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> GatewayClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- images ----------------------------------------------------------------------------------

    def upload_image(self, image: bytes | Path, *, subject_id: str = "", content_type: str | None = None,
                     request_id: str | None = None) -> common_pb2.ImageRef:
        """Upload a PNG or JPEG (bytes or a file) in chunks; its ImageRef for create_session."""
        data = image.read_bytes() if isinstance(image, Path) else bytes(image)
        header = common_pb2.UploadHeader(
            request_id=request_id or uuid.uuid4().hex,
            content_type=content_type or sniff_content_type(data), size=len(data),
            sha256=hashlib.sha256(data).hexdigest(), subject_id=subject_id)

        def parts() -> Iterator[gateway_pb2.UploadImageRequest]:
            yield gateway_pb2.UploadImageRequest(header=header)
            for start in range(0, len(data), UPLOAD_CHUNK_BYTES):
                yield gateway_pb2.UploadImageRequest(
                    chunk=common_pb2.Chunk(data=data[start:start + UPLOAD_CHUNK_BYTES]))

        return self._stub.UploadImage(parts(), timeout=self.deadlines.upload,
                                      metadata=self._metadata)

    def download(self, ref: common_pb2.ObjectRef, path: Path | None = None) -> bytes:
        """The object's bytes (checked against ref.sha256); also written to `path` when given,
        atomically (a failed download leaves no file)."""
        chunks = self._stub.Download(gateway_pb2.DownloadRequest(object=ref),
                                     timeout=self.deadlines.download, metadata=self._metadata)
        data = b"".join(chunk.data for chunk in chunks)
        if ref.sha256 and hashlib.sha256(data).hexdigest() != ref.sha256:
            raise DataLoss(f"download of {quoted(ref.key)}: content does not match sha256 {ref.sha256}")
        if path is not None:
            _write_atomically(path, data)
        return data

    # --- sessions --------------------------------------------------------------------------------

    def create_session(self, subject_id: str, image: common_pb2.ImageRef | common_pb2.ObjectRef, *,
                       protect: Sequence[str], level: int | None = None,
                       epsilon: Mapping[str, float] | None = None, identity_epsilon: float = 0.0,
                       rho: float = 0.0, mechanism: str = "randomized_response",
                       candidates: int = 0, seed: int = 0,
                       request_id: str | None = None) -> gateway_pb2.Session:
        """Start a session and generate its first round. With neither `level` nor `epsilon` the
        model's default level applies; `epsilon` gives explicit eps per attribute (with
        `identity_epsilon`, `rho` and `mechanism`), `level` then fills attributes not named."""
        ref = image.object if isinstance(image, common_pb2.ImageRef) else image
        request = gateway_pb2.CreateSessionRequest(
            request_id=request_id or uuid.uuid4().hex, subject_id=subject_id, image=ref,
            protect=list(protect), candidates=candidates, seed=seed)
        if epsilon is not None:
            if mechanism not in MECHANISMS:
                raise InvalidArgument(f"mechanism must be one of {', '.join(MECHANISMS)}")
            request.privacy.explicit.CopyFrom(common_pb2.ExplicitBudget(
                attribute_epsilon=dict(epsilon), attribute_mechanism=MECHANISMS[mechanism],
                identity_epsilon=identity_epsilon, rho=rho))
            request.privacy.level = level or 0
        elif level is not None:
            request.privacy.level = level
        return self._stub.CreateSession(request, timeout=self.deadlines.generate,
                                        metadata=self._metadata)

    def feedback(self, session_id: str, kind: str, *, candidate: int = 0,
                 epsilon: Mapping[str, float] | None = None,
                 request_id: str | None = None) -> gateway_pb2.FeedbackResponse:
        """`kind`: "more" or "less" (a new round), "eps" (a new round at `epsilon`, keys the
        protected attributes and "identity"), "accept" (release `candidate` of the latest round)."""
        if kind not in FEEDBACK_KINDS:
            raise InvalidArgument(f"feedback must be one of {', '.join(FEEDBACK_KINDS)}, got {quoted(kind)}")
        request = gateway_pb2.FeedbackRequest(
            request_id=request_id or uuid.uuid4().hex, session_id=session_id,
            kind=FEEDBACK_KINDS[kind], candidate=candidate, epsilon=dict(epsilon or {}))
        return self._stub.Feedback(request, timeout=self.deadlines.generate, metadata=self._metadata)

    def close_session(self, session_id: str, *,
                      request_id: str | None = None) -> gateway_pb2.Session:
        """End an active session without a release (nothing is charged, its candidates are
        deleted); closing a closed session again answers the same."""
        request = gateway_pb2.CloseSessionRequest(request_id=request_id or uuid.uuid4().hex,
                                                  session_id=session_id)
        return self._stub.CloseSession(request, timeout=self.deadlines.read, metadata=self._metadata)

    def delete_upload(self, image: common_pb2.ImageRef | common_pb2.ObjectRef | str, *,
                      request_id: str | None = None) -> gateway_pb2.DeleteUploadResponse:
        """Delete an uploaded original, named by its ref or its sha256 (hex); refused while an
        active session uses it."""
        if isinstance(image, str):
            ref = common_pb2.ObjectRef(sha256=image)
        else:
            ref = image.object if isinstance(image, common_pb2.ImageRef) else image
        request = gateway_pb2.DeleteUploadRequest(request_id=request_id or uuid.uuid4().hex,
                                                  image=ref)
        return self._stub.DeleteUpload(request, timeout=self.deadlines.read, metadata=self._metadata)

    def get_session(self, session_id: str) -> gateway_pb2.Session:
        return self._stub.GetSession(gateway_pb2.GetSessionRequest(session_id=session_id),
                                     timeout=self.deadlines.read, metadata=self._metadata)

    def list_sessions(self, subject_id: str = "") -> Iterator[gateway_pb2.Session]:
        """Every session of the tenant (of one subject when given), newest first, page by page."""
        token = ""
        while True:
            page = self._stub.ListSessions(
                gateway_pb2.ListSessionsRequest(subject_id=subject_id, page_token=token),
                timeout=self.deadlines.read, metadata=self._metadata)
            yield from page.sessions
            if not (token := page.next_page_token):
                return

    def stream_rounds(self, session_id: str, from_round: int = 1,
                      timeout: float | None = None) -> Iterator[gateway_pb2.RoundEvent]:
        """Rounds from `from_round`, then progress and each new round until the session ends
        (no deadline unless given: the stream lasts as long as the session)."""
        return self._stub.StreamRounds(
            gateway_pb2.StreamRoundsRequest(session_id=session_id, from_round=from_round),
            timeout=timeout, metadata=self._metadata)

    def ledger(self, subject_id: str) -> gateway_pb2.Ledger:
        return self._stub.GetLedger(gateway_pb2.GetLedgerRequest(subject_id=subject_id),
                                    timeout=self.deadlines.read, metadata=self._metadata)


def client_from_env(target: str | None = None, token: str | None = None) -> GatewayClient:
    """A client for VEIL_GATEWAY_TARGET with VEIL_TOKEN, either replaced when given."""
    config = from_env(ClientConfig)
    return GatewayClient(target or config.target, token or config.token or "")


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise

