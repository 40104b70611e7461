"""Minting tracking codes: short, human-typable and unguessable (random, not a counter), because
anyone may look up a complaint's public status with one; 10 random symbols of the shared
alphabet give 50 bits. The format and its normalisation live in ``shared.core.tracking``."""
import secrets

from shared.core.tracking import ALPHABET, PREFIX, SYMBOLS, normalise

__all__ = ["ALPHABET", "PREFIX", "SYMBOLS", "new_tracking_code", "normalise"]  # the format is re-exported


def new_tracking_code() -> str:
    symbols = "".join(secrets.choice(ALPHABET) for _ in range(SYMBOLS))
    return f"{PREFIX}-{symbols[:5]}-{symbols[5:]}"
