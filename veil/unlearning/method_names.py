"""The one vocabulary of unlearning methods, and its conversion to and from the proto enum.

Everything inside the project (library, CLI, service configuration, model cards, the gateway's
VEIL_UNLEARNING_METHOD) spells a method by its name here; only the gRPC edge converts to
UnlearnMethod values. Torch-free, so the gateway and the CLI's parser can import it.
"""

from __future__ import annotations

from veil.errors import InvalidArgument, quoted
from veil.v1 import unlearner_pb2

FIRST_ORDER, SECOND_ORDER, FINE_TUNE, RETRAIN = "first", "second", "finetune", "retrain"
METHODS = (FIRST_ORDER, SECOND_ORDER, FINE_TUNE, RETRAIN)
# Asks for the unlearner's configured default (VEIL_UNLEARNER_DEFAULT_METHOD).
DEFAULT = "default"

_TO_PROTO = {
    DEFAULT: unlearner_pb2.UNLEARN_METHOD_UNSPECIFIED,
    FIRST_ORDER: unlearner_pb2.UNLEARN_METHOD_FIRST_ORDER,
    SECOND_ORDER: unlearner_pb2.UNLEARN_METHOD_SECOND_ORDER,
    FINE_TUNE: unlearner_pb2.UNLEARN_METHOD_FINE_TUNE,
    RETRAIN: unlearner_pb2.UNLEARN_METHOD_RETRAIN,
}
_FROM_PROTO = {value: name for name, value in _TO_PROTO.items()}


def check_method(name: str) -> str:
    if name not in METHODS:
        raise InvalidArgument(f"unknown method {quoted(name)}; expected one of {', '.join(METHODS)}")
    return name


def method_to_proto(name: str) -> int:
    """The UnlearnMethod value of `name` (a method, or DEFAULT)."""
    if name not in _TO_PROTO:
        raise InvalidArgument(f"unknown unlearning method {quoted(name)}; expected one of "
                              f"{', '.join(_TO_PROTO)}")
    return _TO_PROTO[name]


def method_from_proto(value: int, default: str) -> str:
    """The method an UnlearnMethod value names; UNSPECIFIED is `default`."""
    if value not in _FROM_PROTO:
        raise InvalidArgument(f"unknown unlearning method {value}")
    name = _FROM_PROTO[value]
    return default if name == DEFAULT else name
