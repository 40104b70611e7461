"""Event envelope and the catalogue of event schemas shared by every service."""
from shared.core.events.envelope import Envelope, new_envelope, utc_now, isoformat_utc, parse_iso  # noqa: F401
from shared.core.events.catalogue import (  # noqa: F401
    CATALOGUE,
    InvalidEvent,
    schema_for,
    validate_data,
    validate_envelope,
)

__all__ = ["CATALOGUE", "Envelope", "InvalidEvent", "isoformat_utc", "new_envelope", "parse_iso", "schema_for",
           "utc_now", "validate_data", "validate_envelope"]
