"""Parsing of option values shared by the command groups."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from veil.errors import InvalidArgument, quoted

T = TypeVar("T")


def comma_separated(text: str, kind: Callable[[str], T], option: str) -> tuple[T, ...]:
    """The comma-separated values of `option` (e.g. "--levels 0,1,5"), each parsed by `kind`."""
    try:
        return tuple(kind(item) for item in text.split(",") if item.strip())
    except ValueError:
        noun = "integers" if kind is int else "numbers"
        raise InvalidArgument(f"{option} expects comma-separated {noun}, got {quoted(text)}") from None
