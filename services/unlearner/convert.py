"""Conversions between the unlearner's messages (protos/veil/v1/unlearner.proto) and the library's
and job store's types. Object refs are relative to the caller's tenant on both sides."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from services.unlearner.jobstore import JobRecord, JobState
from veil.errors import InvalidArgument
from veil.rpc.convert import timestamp
from veil.store import from_object_ref
from veil.unlearning.manifest import PinnedObject, ReplacementPair
from veil.unlearning.params import MAX_REPLACEMENT_PAIRS, UnlearnParams
from veil.unlearning.registry import PublishedModelCard
from veil.v1 import common_pb2, unlearner_pb2

JOB_STATES = {
    JobState.QUEUED: unlearner_pb2.JOB_STATE_QUEUED,
    JobState.RUNNING: unlearner_pb2.JOB_STATE_RUNNING,
    JobState.SUCCEEDED: unlearner_pb2.JOB_STATE_SUCCEEDED,
    JobState.FAILED: unlearner_pb2.JOB_STATE_FAILED,
    JobState.CANCELLED: unlearner_pb2.JOB_STATE_CANCELLED,
}




def unlearn_params(message: unlearner_pb2.UnlearnParams) -> UnlearnParams:
    """Library hyperparameters; a field left at 0 or "" takes the library's default."""
    given = {"tau": message.tau, "solver": message.solver, "damping": message.damping,
             "scale": message.scale, "max_iterations": message.max_iterations,
             "last_k_layers": message.last_k_layers, "epochs": message.epochs}
    return UnlearnParams(**{name: value for name, value in given.items() if value})


def pinned_ref(message: common_pb2.ObjectRef, bucket: str, where: str) -> PinnedObject:
    """A pinned object of the caller's tenant (the sha256 is required)."""
    try:
        info = from_object_ref(message, bucket)
        if info.sha256 is None:
            raise InvalidArgument("the sha256 is required")
        return PinnedObject(bucket, info.key, info.sha256)
    except InvalidArgument as exc:
        raise InvalidArgument(f"{where}: {exc}") from None


def replacement_pairs(messages: Sequence[unlearner_pb2.ReplacementPair],
                      bucket: str) -> tuple[ReplacementPair, ...]:
    if not messages:
        raise InvalidArgument("no replacement pairs")
    if len(messages) > MAX_REPLACEMENT_PAIRS:
        raise InvalidArgument(f"at most {MAX_REPLACEMENT_PAIRS} replacement pairs per request, got {len(messages)}")
    return tuple(ReplacementPair(pinned_ref(p.original, bucket, f"pairs[{i}].original"),
                                 pinned_ref(p.replacement, bucket, f"pairs[{i}].replacement"),
                                 p.session_id)
                 for i, p in enumerate(messages))


def _ref_message(ref: PinnedObject) -> common_pb2.ObjectRef:
    return common_pb2.ObjectRef(bucket=ref.bucket, key=ref.key, sha256=ref.sha256)


def version_message(card: PublishedModelCard, lineage: Sequence[str]) -> unlearner_pb2.ModelVersion:
    return unlearner_pb2.ModelVersion(
        model=card.model, version=card.version, parent_version=card.parent or "",
        checkpoint=_ref_message(card.checkpoint), manifest=_ref_message(card.manifest),
        manifest_sha256=card.manifest_sha256, card_json=card.to_json(),
        created_at=timestamp(datetime.fromisoformat(card.created_at)), lineage=list(lineage))


def job_message(job: JobRecord) -> unlearner_pb2.Job:
    return unlearner_pb2.Job(
        job_id=job.job_id, kind=job.kind.value, state=JOB_STATES[job.state],
        progress=common_pb2.Progress(stage=job.progress.stage, step=job.progress.step,
                                     total_steps=job.progress.total_steps),
        model=job.model, base_version=job.base_version or job.requested_version or "",
        result_version=job.result_version or "", error=job.error or "",
        session_ids=list(job.session_ids), created_at=timestamp(job.created_at),
        updated_at=timestamp(job.updated_at), attempts=job.attempts)
