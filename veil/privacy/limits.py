"""Request limits shared by the anonymizer, the gateway and their clients.

- MAX_CANDIDATES: images generated per request (the anonymizer) or per round (a session).
- MAX_EPSILON: the largest eps of one mechanism in one release (an attribute's or identity's).
  Calibrating the identity Gaussian for a new eps takes seconds and grows with eps (measured on
  one core: 16 -> 2 s, 64 -> 5 s, 100 -> 9 s); above ~8 the released identity is already nearly
  independent of the original, so a larger eps buys nothing but unbounded work.
- MAX_SEED: seeds are uint64 (the proto fields' type; torch.Generator.manual_seed takes the
  whole range), so every seed a client can send is valid: 0..2^64-1.
"""

from __future__ import annotations

from typing import Any

from veil.errors import InvalidArgument, quoted

MAX_CANDIDATES = 8
MAX_SEED = 2**64 - 1
MAX_EPSILON = 64.0


def require_candidates(value: Any, what: str = "candidates") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CANDIDATES:
        raise InvalidArgument(f"{what} must be an integer in 1..{MAX_CANDIDATES}, got {quoted(value)}")
    return value


def require_seed(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise InvalidArgument(f"seed must be an integer in 0..2^64-1 (a uint64), got {quoted(value)}")
    return value
