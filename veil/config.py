"""Configuration from environment variables, validated at start-up.

Each service declares a frozen dataclass whose fields are read by `from_env`; a bad value raises
ConfigError naming the variable, and the service's entry point exits with that message.
"""

from __future__ import annotations

import dataclasses
import math
import os
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from veil.errors import ConfigError

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def env_field(name: str, default: Any = dataclasses.MISSING, *, doc: str, min: float | None = None,
              max: float | None = None, choices: tuple[str, ...] | None = None,
              secret: bool = False) -> Any:
    """A dataclass field bound to the environment variable `name`; `secret` keeps it out of repr."""
    meta = {"env": name, "doc": doc, "min": min, "max": max, "choices": choices}
    if isinstance(default, (list, dict, set)):
        raise TypeError("mutable defaults are not supported")
    return dataclasses.field(default=default, metadata=meta, repr=not secret)


def _parse(kind: Any, name: str, raw: str) -> Any:
    if kind is bool:
        low = raw.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ConfigError(f"{name}={raw!r}: expected a boolean (true/false)")
    if kind is int:
        try:
            return int(raw, 10)
        except ValueError:
            raise ConfigError(f"{name}={raw!r}: expected an integer") from None
    if kind is float:
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r}: expected a number") from None
        if not math.isfinite(value):
            raise ConfigError(f"{name}={raw!r}: expected a finite number")
        return value
    if kind is str:
        return raw
    raise TypeError(f"unsupported config type {kind!r} for {name}")


def from_env(cls: type[T], environ: Mapping[str, str] | None = None,
             defaults: Mapping[str, Any] | None = None) -> T:
    """Build `cls` (a dataclass of env_field fields) from `environ` (default os.environ).

    `defaults` (by field name) replace the dataclass defaults, e.g. a service's own port; the
    environment still wins.
    """
    environ = os.environ if environ is None else environ
    defaults = defaults or {}
    unknown = set(defaults) - {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    if unknown:
        raise TypeError(f"unknown config fields in defaults: {', '.join(sorted(unknown))}")
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        name = f.metadata["env"]
        kind = hints[f.name]
        optional = False
        if typing.get_origin(kind) in (typing.Union, getattr(__import__("types"), "UnionType", None)):
            args = [a for a in typing.get_args(kind) if a is not type(None)]
            kind, optional = args[0], True
        raw = environ.get(name)
        if raw is None or (raw == "" and optional):
            default = defaults.get(f.name, f.default)
            if default is dataclasses.MISSING:
                raise ConfigError(f"{name} is required: {f.metadata['doc']}")
            values[f.name] = default
            continue
        value = _parse(kind, name, raw)
        lo, hi, choices = f.metadata["min"], f.metadata["max"], f.metadata["choices"]
        if lo is not None and value < lo:
            raise ConfigError(f"{name}={raw!r}: must be >= {lo}")
        if hi is not None and value > hi:
            raise ConfigError(f"{name}={raw!r}: must be <= {hi}")
        if choices is not None and value not in choices:
            raise ConfigError(f"{name}={raw!r}: must be one of {', '.join(choices)}")
        values[f.name] = value
    return cls(**values)


def describe(cls: type) -> list[tuple[str, str, str]]:
    """(variable, default, doc) rows, for README configuration tables and --help output."""
    rows = []
    for f in dataclasses.fields(cls):
        default = "(required)" if f.default is dataclasses.MISSING else repr(f.default)
        rows.append((f.metadata["env"], default, f.metadata["doc"]))
    return rows
