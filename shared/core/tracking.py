"""The tracking-code format every service speaks: ``NTB-XXXXX-XXXXX`` in Crockford's base32
alphabet (no I/L/O/U, so a code read aloud or typed on a phone keyboard survives), and the
normalisation of what a citizen types. Intake mints codes; intake, reporting and Open311 read them."""
from __future__ import annotations

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
PREFIX = "NTB"
SYMBOLS = 10


def normalise(code: str) -> str:
    """Accept what a citizen types: lower case, spaces and dashes, O for 0, I/L for 1, with or
    without the NTB prefix. Anything that is not a well-formed code comes back stripped and in
    upper case (so it simply matches nothing)."""
    cleaned = "".join(ch for ch in str(code).upper() if ch.isalnum())
    if cleaned.startswith(PREFIX):
        cleaned = cleaned[len(PREFIX):]
    cleaned = cleaned.translate(str.maketrans("OIL", "011"))
    if len(cleaned) != SYMBOLS or any(ch not in ALPHABET for ch in cleaned):
        return str(code).strip().upper()
    return f"{PREFIX}-{cleaned[:5]}-{cleaned[5:]}"
