"""Subject ids: the key of a subject's privacy ledger, in one canonical form.

The ledger cap is per (tenant, subject id), so two spellings of one subject would each get a
budget of their own. Every subject id that enters the gateway (CreateSession, ListSessions,
GetLedger, UploadImage) is therefore canonicalised: Unicode NFKC, surrounding whitespace
trimmed, case-folded; the result must match SUBJECT_ID_FORM (ASCII letters are folded to lower
case, so "CAP-x", " cap-x " and "Cap-X" are one subject). Anything else is refused rather than
guessed at: "cap-x-2" stays a different subject, which is why an uploaded image is also bound to
the subject it was first used for (services.gateway.state.uploads).
"""

from __future__ import annotations

import re
import unicodedata

from veil.errors import InvalidArgument, quoted

MAX_SUBJECT_ID = 128
SUBJECT_ID_FORM = re.compile(r"[a-z0-9._-]{1,%d}" % MAX_SUBJECT_ID)


def canonical_subject_id(value: str, what: str = "subject_id") -> str:
    """`value` in canonical form; InvalidArgument when that is not [a-z0-9._-]{1,128}."""
    folded = unicodedata.normalize("NFKC", value).strip().casefold() if isinstance(value, str) else ""
    if not SUBJECT_ID_FORM.fullmatch(folded):
        raise InvalidArgument(f"{what} {quoted(value)} is not a subject id: after trimming and "
                              f"case-folding it must be 1..{MAX_SUBJECT_ID} of a-z 0-9 . _ -")
    return folded
