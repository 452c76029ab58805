"""Validation of object keys, prefixes, tenant ids, bucket names, content types and digests.

Every backend validates keys with these rules, so a key can never name a path outside the store
root (local) or outside a tenant's prefix (both backends).
"""

from __future__ import annotations

import re

from veil.errors import InvalidArgument, quoted

MAX_KEY_BYTES = 1024
TENANT_PREFIX = "tenants/"

_TENANT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_SHA256 = re.compile(r"[0-9a-f]{64}")
# type "/" subtype [; parameters], printable ASCII only (it travels as an HTTP header).
_CONTENT_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9!#$&^_.+-]+(;[ -~]*)?")
_MAX_CONTENT_TYPE = 200


def _check_chars(what: str, value: str) -> None:
    for ch in value:
        if ch == "\\":
            raise InvalidArgument(f"{what} {quoted(value)} contains a backslash")
        if ord(ch) < 0x20 or ord(ch) == 0x7F:
            raise InvalidArgument(f"{what} {quoted(value)} contains a control character (code {ord(ch)})")
    try:
        encoded = value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument(f"{what} {quoted(value)} is not valid UTF-8") from None
    if len(encoded) > MAX_KEY_BYTES:
        raise InvalidArgument(f"{what} is longer than {MAX_KEY_BYTES} bytes")


def _check_segments(what: str, value: str, segments: list[str]) -> None:
    for segment in segments:
        if segment == "":
            raise InvalidArgument(f"{what} {quoted(value)} has an empty path segment")
        if segment in (".", ".."):
            raise InvalidArgument(f"{what} {quoted(value)} has a {quoted(segment)} segment")


def validate_key(key: str) -> str:
    """Return `key` if it is a safe relative object key, else raise InvalidArgument.

    A key is non-empty UTF-8 of at most 1024 bytes, relative ("a/b.png", no leading "/"), with no
    empty, "." or ".." segments, no backslashes, NUL or other control characters.
    """
    if not isinstance(key, str):
        raise InvalidArgument(f"object key must be a string, got {type(key).__name__}")
    if key == "":
        raise InvalidArgument("object key is empty")
    _check_chars("object key", key)
    if key.startswith("/"):
        raise InvalidArgument(f"object key {quoted(key)} is absolute (starts with '/')")
    _check_segments("object key", key, key.split("/"))
    return key


def validate_prefix(prefix: str) -> str:
    """Return `prefix` if it is a safe listing prefix ("" lists everything), else raise.

    A prefix follows the key rules, except that it may be empty and its last segment may be
    empty or partial ("images/", "images/ca").
    """
    if not isinstance(prefix, str):
        raise InvalidArgument(f"prefix must be a string, got {type(prefix).__name__}")
    if prefix == "":
        return prefix
    _check_chars("prefix", prefix)
    if prefix.startswith("/"):
        raise InvalidArgument(f"prefix {quoted(prefix)} is absolute (starts with '/')")
    segments = prefix.split("/")
    _check_segments("prefix", prefix, segments[:-1])
    if segments[-1] == "..":
        raise InvalidArgument(f"prefix {quoted(prefix)} has a '..' segment")
    return prefix


def validate_tenant_id(tenant_id: str) -> str:
    """Tenant ids are 1-63 characters of letters, digits, '_' and '-', starting alphanumeric."""
    if not isinstance(tenant_id, str) or not _TENANT_ID.fullmatch(tenant_id):
        raise InvalidArgument(
            f"tenant id {quoted(tenant_id)} is invalid: use 1-63 letters, digits, '_' or '-', "
            "starting with a letter or digit"
        )
    return tenant_id


def tenant_prefix(tenant_id: str) -> str:
    return f"{TENANT_PREFIX}{validate_tenant_id(tenant_id)}/"


def validate_bucket(bucket: str) -> str:
    """S3 bucket naming: 3-63 lowercase letters, digits, '.' and '-'."""
    if not isinstance(bucket, str) or not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise InvalidArgument(
            f"bucket name {quoted(bucket)} is invalid: use 3-63 lowercase letters, digits, '.' or '-'"
        )
    return bucket


def validate_content_type(content_type: str) -> str:
    if (not isinstance(content_type, str) or len(content_type) > _MAX_CONTENT_TYPE
            or not _CONTENT_TYPE.fullmatch(content_type)):
        raise InvalidArgument(f"content type {quoted(content_type)} is not a valid media type")
    return content_type


def validate_sha256(sha256: str) -> str:
    """A lowercase hex sha256 digest (64 characters)."""
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
        raise InvalidArgument(f"sha256 {quoted(sha256)} is not 64 lowercase hex digits")
    return sha256
