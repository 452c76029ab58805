"""Errors of the gateway's calls to the anonymizer and the unlearner, as veil.errors types: the
caller's mistakes keep their code, a dependency that is down or slow becomes UNAVAILABLE, and
anything else is an internal error of the gateway's (the dependency's detail stays in the log)."""

from __future__ import annotations

import logging

import grpc

from veil import errors

log = logging.getLogger(__name__)

_PASSED_ON: dict[grpc.StatusCode, type[errors.VeilError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidArgument,
    grpc.StatusCode.NOT_FOUND: errors.NotFound,
    grpc.StatusCode.FAILED_PRECONDITION: errors.FailedPrecondition,
    grpc.StatusCode.DATA_LOSS: errors.DataLoss,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errors.ResourceExhausted,
    grpc.StatusCode.UNAVAILABLE: errors.Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: errors.Unavailable,
    grpc.StatusCode.ABORTED: errors.Aborted,
}


def downstream_error(service: str, exc: grpc.aio.AioRpcError) -> errors.VeilError:
    """The veil error for a failed call to `service` ("anonymizer", "unlearner")."""
    code = exc.code()
    kind = _PASSED_ON.get(code)
    if kind is None:
        log.error("%s call failed with %s: %s", service, code.name, exc.details())
        return errors.VeilError(f"{service} call failed ({code.name})")
    return kind(f"{service}: {exc.details()}")


def retryable(exc: errors.VeilError) -> bool:
    """Failures that may pass by themselves: the work should be tried again later."""
    return isinstance(exc, (errors.Unavailable, errors.ResourceExhausted, errors.Aborted))


def input_refused(exc: errors.VeilError) -> bool:
    """Failures that say the session's input can never work (a corrupt or missing original, a
    setting the model refuses): retrying is pointless, the session ends."""
    return isinstance(exc, (errors.InvalidArgument, errors.NotFound, errors.DataLoss))
