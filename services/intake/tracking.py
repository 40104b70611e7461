"""Tracking codes: short, human-typable and unguessable (random, not a counter), because anyone
may look up a complaint's public status with one. Crockford's base32 alphabet avoids I/L/O/U, so
a code read aloud or typed on a phone keyboard survives; 10 random symbols give 50 bits."""
import secrets

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
PREFIX = "NTB"


def new_tracking_code() -> str:
    symbols = "".join(secrets.choice(ALPHABET) for _ in range(10))
    return f"{PREFIX}-{symbols[:5]}-{symbols[5:]}"


def normalise(code: str) -> str:
    """Accept what a citizen types: lower case, spaces, O for 0, I/L for 1."""
    cleaned = "".join(ch for ch in code.upper() if ch.isalnum())
    cleaned = cleaned.translate(str.maketrans({"O": "0", "I": "1", "L": "1"}))
    if cleaned.startswith("NTB"):
        cleaned = cleaned[3:]
    if len(cleaned) != 10:
        return code.strip().upper()
    return f"{PREFIX}-{cleaned[:5]}-{cleaned[5:]}"
