"""The demo's calls to the unlearner (a tenant's operator training and inspecting its models):
Train, WatchJob, ListModels, Evaluate. Blocking gRPC with the tenant in `x-veil-tenant` metadata and the run's internal secret."""

from __future__ import annotations

import uuid

import grpc

from veil.errors import FailedPrecondition
from veil.rpc import ChannelConfig, open_sync_channel, outgoing_metadata
from veil.rpc.internal import INTERNAL_TOKEN_KEY
from veil.v1 import common_pb2, unlearner_pb2, unlearner_pb2_grpc

TERMINAL = (unlearner_pb2.JOB_STATE_SUCCEEDED, unlearner_pb2.JOB_STATE_FAILED, unlearner_pb2.JOB_STATE_CANCELLED)
READ_SECONDS = 30.0


class Registry:
    def __init__(self, target: str, tenant: str, internal_secret: str) -> None:
        self._channel = open_sync_channel(target, ChannelConfig.load())
        self._stub = unlearner_pb2_grpc.UnlearnerStub(self._channel)
        # The unlearner honours x-veil-tenant only with the secret the gateway presents (veil.rpc.internal).
        self._metadata = (*outgoing_metadata(tenant), (INTERNAL_TOKEN_KEY, internal_secret))

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def train(self, model: str, manifest: common_pb2.ObjectRef, *, epochs: int,
              seed: int) -> unlearner_pb2.Job:
        request = unlearner_pb2.TrainRequest(request_id=uuid.uuid4().hex, model=model,
                                             manifest=manifest, epochs=epochs, seed=seed)
        return self._stub.Train(request, timeout=READ_SECONDS, metadata=self._metadata)

    def wait(self, job_id: str, timeout: float) -> unlearner_pb2.Job:
        """The job once it has ended (WatchJob); FailedPrecondition when it failed or did not
        end within `timeout` seconds."""
        job = None
        try:
            for job in self._stub.WatchJob(unlearner_pb2.GetJobRequest(job_id=job_id),
                                           timeout=timeout, metadata=self._metadata):
                if job.state in TERMINAL:
                    break
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                raise
        if job is None or job.state not in TERMINAL:
            raise FailedPrecondition(f"{job_id} did not end within {timeout:g} s")
        if job.state != unlearner_pb2.JOB_STATE_SUCCEEDED:
            raise FailedPrecondition(f"{job.kind} job {job_id} ended {unlearner_pb2.JobState.Name(job.state)}: "
                                     f"{job.error}")
        return job

    def versions(self, model: str) -> list[unlearner_pb2.ModelVersion]:
        """The model's versions, newest first."""
        return list(self._stub.ListModels(unlearner_pb2.ListModelsRequest(model=model),
                                          timeout=READ_SECONDS, metadata=self._metadata).versions)

    def evaluate(self, model: str, version: str, reference: str = "") -> dict[str, float]:
        response = self._stub.Evaluate(
            unlearner_pb2.EvaluateRequest(model=model, version=version, reference_version=reference),
            timeout=300.0, metadata=self._metadata)
        return dict(response.metrics)
