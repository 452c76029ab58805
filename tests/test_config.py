"""veil.config: environment variables into validated, typed dataclasses."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from veil.config import describe, env_field, from_env
from veil.errors import ConfigError


@dataclass(frozen=True)
class Example:
    name: str = env_field("EX_NAME", doc="a required name")
    port: int = env_field("EX_PORT", 8080, min=1, max=65535, doc="a port")
    ratio: float = env_field("EX_RATIO", 0.5, min=0.0, max=1.0, doc="a fraction")
    enabled: bool = env_field("EX_ENABLED", False, doc="a switch")
    mode: str = env_field("EX_MODE", "fast", choices=("fast", "slow"), doc="a choice")
    path: str | None = env_field("EX_PATH", None, doc="optional")
    token: str | None = env_field("EX_TOKEN", None, secret=True, doc="a secret")


def test_types_and_defaults() -> None:
    config = from_env(Example, {"EX_NAME": "svc", "EX_PORT": "9000", "EX_RATIO": "0.25",
                                "EX_ENABLED": "yes", "EX_MODE": "slow", "EX_PATH": "/tmp/x"})
    assert config == Example(name="svc", port=9000, ratio=0.25, enabled=True, mode="slow", path="/tmp/x")
    defaults = from_env(Example, {"EX_NAME": "svc"})
    assert (defaults.port, defaults.ratio, defaults.enabled, defaults.mode, defaults.path) == (8080, 0.5, False, "fast", None)


@pytest.mark.parametrize(("raw", "expected"), [("1", True), ("TRUE", True), ("on", True), ("0", False),
                                               ("false", False), ("No", False), (" off ", False)])
def test_booleans(raw: str, expected: bool) -> None:
    assert from_env(Example, {"EX_NAME": "n", "EX_ENABLED": raw}).enabled is expected


@pytest.mark.parametrize(("env", "message"), [
    ({}, "EX_NAME is required: a required name"),
    ({"EX_PORT": "80.5"}, "EX_PORT='80.5': expected an integer"),
    ({"EX_PORT": "0"}, "EX_PORT='0': must be >= 1"),
    ({"EX_PORT": "65536"}, "EX_PORT='65536': must be <= 65535"),
    ({"EX_RATIO": "x"}, "EX_RATIO='x': expected a number"),
    ({"EX_RATIO": "inf"}, "EX_RATIO='inf': expected a finite number"),
    ({"EX_RATIO": "1.5"}, "EX_RATIO='1.5': must be <= 1.0"),
    ({"EX_ENABLED": "maybe"}, "EX_ENABLED='maybe': expected a boolean (true/false)"),
    ({"EX_MODE": "medium"}, "EX_MODE='medium': must be one of fast, slow"),
])
def test_invalid_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        from_env(Example, {"EX_NAME": "n", **env} if "EX_NAME" not in message else env)
    assert str(error.value) == message


def test_optional_empty_means_unset() -> None:
    assert from_env(Example, {"EX_NAME": "n", "EX_PATH": ""}).path is None
    assert from_env(Example, {"EX_NAME": ""}).name == ""  # a required str may be empty on purpose


def test_code_defaults_yield_to_the_environment() -> None:
    assert from_env(Example, {"EX_NAME": "n"}, defaults={"port": 50051}).port == 50051
    assert from_env(Example, {"EX_NAME": "n", "EX_PORT": "7"}, defaults={"port": 50051}).port == 7
    assert from_env(Example, {}, defaults={"name": "from-code"}).name == "from-code"
    with pytest.raises(TypeError, match="unknown config fields in defaults: nope"):
        from_env(Example, {"EX_NAME": "n"}, defaults={"nope": 1})


def test_secrets_stay_out_of_repr_and_describe_lists_variables() -> None:
    config = from_env(Example, {"EX_NAME": "n", "EX_TOKEN": "hunter2"})
    assert config.token == "hunter2" and "hunter2" not in repr(config)
    rows = {row[0]: row for row in describe(Example)}
    assert rows["EX_NAME"] == ("EX_NAME", "(required)", "a required name")
    assert rows["EX_PORT"] == ("EX_PORT", "8080", "a port")
    assert len(rows) == 7


def test_mutable_defaults_are_refused() -> None:
    with pytest.raises(TypeError):
        env_field("EX_LIST", [], doc="no")
