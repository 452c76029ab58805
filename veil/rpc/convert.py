"""Protobuf well-known types the services' messages share (object refs: veil.store.convert)."""

from __future__ import annotations

from datetime import datetime
from typing import overload

from google.protobuf.timestamp_pb2 import Timestamp


@overload
def timestamp(value: datetime) -> Timestamp: ...
@overload
def timestamp(value: None) -> None: ...
def timestamp(value: datetime | None) -> Timestamp | None:
    """The message of an aware datetime; None (the field left unset) for None."""
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp
