"""Typed domain errors.

The library raises these; the gRPC error interceptor (veil.rpc.interceptors) maps each class to
one status code, so servicers never build status codes by hand.
"""

from __future__ import annotations


class VeilError(Exception):
    """Base class of every domain error; maps to INTERNAL unless a subclass says otherwise."""


class InvalidArgument(VeilError):
    """The caller sent something malformed or out of range (INVALID_ARGUMENT)."""


class NotFound(VeilError):
    """A named object, version, session or job does not exist (NOT_FOUND)."""


class AlreadyExists(VeilError):
    """Creating something whose name is taken (ALREADY_EXISTS)."""


class FailedPrecondition(VeilError):
    """The system is not in a state that allows the operation (FAILED_PRECONDITION),
    e.g. a release that would exceed a subject's privacy budget, or feedback after accept."""


class PermissionDenied(VeilError):
    """The caller is known but may not touch this resource (PERMISSION_DENIED)."""


class Unauthenticated(VeilError):
    """No or unknown caller credentials (UNAUTHENTICATED)."""


class ResourceExhausted(VeilError):
    """A bounded queue or quota is full (RESOURCE_EXHAUSTED)."""


class Unavailable(VeilError):
    """A dependency (object store, database, another service) cannot be reached (UNAVAILABLE)."""


class DataLoss(VeilError):
    """Stored bytes do not match their recorded checksum (DATA_LOSS)."""


class Aborted(VeilError):
    """A computation was stopped to keep state consistent, e.g. a diverging unlearning solve (ABORTED)."""


class ConfigError(VeilError):
    """A configuration value is missing or invalid; services exit at start-up with its message."""


QUOTE_LIMIT = 100  # whole object keys and digests, a prefix of anything longer


def quoted(value: object, limit: int = QUOTE_LIMIT) -> str:
    """repr() of a caller's value for an error message, cut to its first `limit` characters (or
    bytes): messages travel back in a status trailer, and a long echo would only hide the error."""
    if isinstance(value, (str, bytes)) and len(value) > limit:
        unit = "characters" if isinstance(value, str) else "bytes"
        return f"{value[:limit]!r}... ({len(value)} {unit})"
    return repr(value)
