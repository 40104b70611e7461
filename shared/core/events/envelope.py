"""The event envelope of the design: every event travels and is stored as this JSON object."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def isoformat_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with a trailing Z, the one format every event and API uses."""
    if moment.tzinfo is None:
        raise ValueError("naive datetimes are ambiguous; pass an aware UTC datetime")
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_iso(value: str) -> datetime:
    """Parse ISO 8601 (with Z or an offset) into an aware UTC datetime."""
    if not isinstance(value, str):
        raise ValueError("expected an ISO 8601 string")
    moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone")
    return moment.astimezone(timezone.utc)


@dataclass(frozen=True)
class Envelope:
    event_id: str
    event_type: str
    schema_version: int
    source: str
    position: int
    complaint_id: str
    version: int
    occurred_at: str
    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        # Same result as dataclasses.asdict (a deep copy of data) at a fraction of its cost:
        # event data is JSON, so only dicts and lists need copying.
        return {"event_id": self.event_id, "event_type": self.event_type,
                "schema_version": self.schema_version, "source": self.source,
                "position": self.position, "complaint_id": self.complaint_id,
                "version": self.version, "occurred_at": self.occurred_at,
                "data": _copy_json(self.data)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "Envelope":
        return cls(**{name: raw[name] for name in cls.__dataclass_fields__})


class StoredEnvelope(dict):  # type: ignore[type-arg]
    """An envelope as an event store read it back from its own table, in this process.

    The store validated the event against its version's schema when it appended it
    (``EventStore.append``) and built the rest of the envelope itself, so checking it again
    with the schemas is pure cost: ``validate_envelope`` keeps only its cheap checks (source,
    owner) for these. Only the event store makes them. Whatever crosses a process boundary —
    the broker, an RPC reply — arrives as a plain dict and is validated completely, and so is
    any copy (``dict(envelope)``, an upcast lifts into a plain dict)."""

    __slots__ = ()


def _copy_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _copy_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy_json(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_copy_json(item) for item in value)
    return value


def new_envelope(**fields: Any) -> Envelope:
    fields.setdefault("event_id", str(uuid.uuid4()))
    return Envelope(**fields)
