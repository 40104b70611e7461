"""One marshmallow schema per event type and schema version: the contract of the design's
"Event data" table. Events are validated when appended and again when received.

Schemas accept extra fields (``unknown = INCLUDE``) because the design allows producers to add
fields; the listed ones are required and typed.
"""
from __future__ import annotations

import uuid
from typing import Any

from marshmallow import INCLUDE, Schema, ValidationError, fields, validate, validates_schema

from shared.events.envelope import parse_iso

CATEGORIES = (
    "koperasi_umkm", "lingkungan_hidup", "infrastruktur", "pungli",
    "pelayanan_umum", "sosial", "kesehatan", "lainnya",
)
REGION_CODES = ("5201", "5202", "5203", "5204", "5205", "5206", "5207", "5208", "5271", "5272")
CHANNELS = ("facebook_messenger", "facebook_comment", "web", "api", "import", "open311")
PRIORITIES = ("urgent", "important", "normal")
BREACHES = ("triage", "first_response", "follow_up")
NOTIFY_CHANNELS = ("messenger", "comment_public", "comment_private")


class InvalidEvent(ValueError):
    """An envelope or its data does not match the catalogue; ``reason`` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _iso_utc(value: str) -> None:
    try:
        parse_iso(value)
    except (ValueError, TypeError) as error:
        raise ValidationError(f"not an ISO 8601 time with zone: {error}") from None


def IsoTime(**kwargs) -> fields.String:  # noqa: N802 - reads like a field class
    return fields.String(validate=_iso_utc, **kwargs)


def _uuid(value: str) -> None:
    try:
        uuid.UUID(str(value))
    except ValueError:
        raise ValidationError("not a UUID") from None


class EventData(Schema):
    class Meta:
        unknown = INCLUDE


class Attachment(Schema):
    class Meta:
        unknown = INCLUDE

    type = fields.String(required=True)
    url = fields.String(required=True)


class ReplyTo(Schema):
    """Where an answer can reach the citizen: a Messenger PSID, or a Page comment."""

    class Meta:
        unknown = INCLUDE

    page_id = fields.String(required=True)
    psid = fields.String()
    comment_id = fields.String()
    post_id = fields.String(allow_none=True)

    @validates_schema
    def _one_target(self, data, **kwargs):
        if bool(data.get("psid")) == bool(data.get("comment_id")):
            raise ValidationError("reply_to needs exactly one of psid or comment_id")


class Reasons(Schema):
    category = fields.List(fields.String(), required=True)
    region = fields.List(fields.String(), required=True)
    priority = fields.List(fields.String(), required=True)


class ComplaintFiledV1(EventData):
    tracking_code = fields.String(required=True, validate=validate.Length(min=4, max=32))
    channel = fields.String(required=True, validate=validate.OneOf(CHANNELS))
    filed_at = IsoTime(required=True)
    text = fields.String(required=True)
    attachments = fields.List(fields.Nested(Attachment), required=True)
    category = fields.String(required=True, validate=validate.OneOf(CATEGORIES))
    region_code = fields.String(required=True, allow_none=True, validate=validate.OneOf(REGION_CODES))
    priority = fields.String(required=True, validate=validate.OneOf(PRIORITIES))
    reasons = fields.Nested(Reasons, required=True)
    confidential = fields.Boolean(required=True, truthy={True}, falsy={False})
    reply_to = fields.Nested(ReplyTo, required=True, allow_none=True)
    last_citizen_message_at = IsoTime(required=True, allow_none=True)
    external_ref = fields.String(required=True, allow_none=True)


class ComplaintAmendedV1(EventData):
    text = fields.String(required=True)
    why = fields.String(required=True, validate=validate.OneOf(("more_messages", "comment_edited")))
    last_citizen_message_at = IsoTime(required=True, allow_none=True)


class CitizenMessageReceivedV1(EventData):
    text = fields.String(required=True)
    attachments = fields.List(fields.Nested(Attachment), required=True)
    reply_to = fields.Nested(ReplyTo, required=True, allow_none=True)
    message_at = IsoTime(required=True)


class CitizenCommentRemovedV1(EventData):
    comment_id = fields.String(required=True)


class StatusRequestedV1(EventData):
    tracking_code = fields.String(required=True)
    reply_to = fields.Nested(ReplyTo, required=True, allow_none=True)
    message_at = IsoTime(required=True)


class ComplaintRoutedV1(EventData):
    lead_agencies = fields.List(fields.String(), required=True, validate=validate.Length(min=1))
    coordinating_agencies = fields.List(fields.String(), required=True)
    decided_by = fields.String(required=True, validate=validate.Regexp(r"^(rule|operator):.+"))
    reason = fields.String(required=True)
    priority = fields.String(required=True, validate=validate.OneOf(PRIORITIES))
    due_at = fields.Dict(keys=fields.String(validate=validate.OneOf(BREACHES)), values=IsoTime(),
                         required=True)


class ComplaintAcknowledgedV1(EventData):
    agency_code = fields.String(required=True)
    actor = fields.String(required=True)


class ComplaintRejectedByAgencyV1(EventData):
    agency_code = fields.String(required=True)
    reason = fields.String(required=True, validate=validate.Length(min=1))
    actor = fields.String(required=True)


class ComplaintRespondedV1(EventData):
    agency_code = fields.String(required=True)
    text = fields.String(required=True, validate=validate.Length(min=1))
    resolved = fields.Boolean(required=True, truthy={True}, falsy={False})
    actor = fields.String(required=True)


class ComplaintResolvedV1(EventData):
    actor = fields.String(required=True)


class ComplaintEscalatedV1(EventData):
    breach = fields.String(required=True, validate=validate.OneOf(BREACHES))
    due_at = IsoTime(required=True)
    notified = fields.List(fields.String(), required=True)


class ComplaintDismissedV1(EventData):
    reason = fields.String(required=True, validate=validate.Length(min=1))
    duplicate_of = fields.String(required=True, allow_none=True)
    actor = fields.String(required=True)


class CitizenNotifiedV1(EventData):
    trigger_event_id = fields.String(required=True, validate=_uuid)
    channel = fields.String(required=True, validate=validate.OneOf(NOTIFY_CHANNELS))
    messaging_type = fields.String(required=True, allow_none=True)
    tag = fields.String(required=True, allow_none=True)
    graph_message_id = fields.String(required=True, allow_none=True)
    recipient_psid = fields.String(allow_none=True)


class CitizenNotificationFailedV1(EventData):
    trigger_event_id = fields.String(required=True, validate=_uuid)
    reason = fields.String(required=True)
    code = fields.Integer(required=True, allow_none=True)
    permanent = fields.Boolean(required=True, truthy={True}, falsy={False})


#: (event type, schema version) → schema class; the source service of each type in ``SOURCES``.
CATALOGUE: dict[tuple[str, int], type[Schema]] = {
    ("ComplaintFiled", 1): ComplaintFiledV1,
    ("ComplaintAmended", 1): ComplaintAmendedV1,
    ("CitizenMessageReceived", 1): CitizenMessageReceivedV1,
    ("CitizenCommentRemoved", 1): CitizenCommentRemovedV1,
    ("StatusRequested", 1): StatusRequestedV1,
    ("ComplaintRouted", 1): ComplaintRoutedV1,
    ("ComplaintAcknowledged", 1): ComplaintAcknowledgedV1,
    ("ComplaintRejectedByAgency", 1): ComplaintRejectedByAgencyV1,
    ("ComplaintResponded", 1): ComplaintRespondedV1,
    ("ComplaintResolved", 1): ComplaintResolvedV1,
    ("ComplaintEscalated", 1): ComplaintEscalatedV1,
    ("ComplaintDismissed", 1): ComplaintDismissedV1,
    ("CitizenNotified", 1): CitizenNotifiedV1,
    ("CitizenNotificationFailed", 1): CitizenNotificationFailedV1,
}

SOURCES: dict[str, str] = {
    "ComplaintFiled": "intake", "ComplaintAmended": "intake", "CitizenMessageReceived": "intake",
    "CitizenCommentRemoved": "intake", "StatusRequested": "intake",
    "ComplaintRouted": "routing", "ComplaintAcknowledged": "routing",
    "ComplaintRejectedByAgency": "routing", "ComplaintResponded": "routing",
    "ComplaintResolved": "routing", "ComplaintEscalated": "routing",
    "ComplaintDismissed": "routing",
    "CitizenNotified": "notification", "CitizenNotificationFailed": "notification",
}

LATEST_VERSION: dict[str, int] = {}
for (_type, _version) in CATALOGUE:
    LATEST_VERSION[_type] = max(_version, LATEST_VERSION.get(_type, 0))


_SCHEMAS: dict[tuple[str, int], Schema] = {}


def schema_for(event_type: str, schema_version: int) -> Schema:
    # One instance per schema, reused: building a marshmallow schema (and its nested ones) costs
    # more than validating with it, and validation keeps no state on the instance.
    key = (event_type, schema_version)
    schema = _SCHEMAS.get(key)
    if schema is None:
        try:
            schema = _SCHEMAS[key] = CATALOGUE[key]()
        except KeyError:
            raise InvalidEvent(f"unknown event type {event_type!r} v{schema_version}") from None
    return schema


def _flatten(errors: Any, prefix: str = "") -> list[str]:
    if isinstance(errors, dict):
        out: list[str] = []
        for key, value in errors.items():
            out.extend(_flatten(value, f"{prefix}{key}."))
        return out
    if isinstance(errors, list) and all(isinstance(item, str) for item in errors):
        return [f"{prefix.rstrip('.')}: {' '.join(errors)}"]
    return [f"{prefix.rstrip('.')}: {errors}"]


def validate_data(event_type: str, schema_version: int, data: Any) -> None:
    if not isinstance(data, dict):
        raise InvalidEvent("data must be a JSON object")
    errors = schema_for(event_type, schema_version).validate(data)
    if errors:
        raise InvalidEvent(f"{event_type} v{schema_version}: " + "; ".join(_flatten(errors)))


class EnvelopeSchema(Schema):
    event_id = fields.String(required=True, validate=_uuid)
    event_type = fields.String(required=True)
    schema_version = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    source = fields.String(required=True)
    position = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    complaint_id = fields.String(required=True, validate=_uuid)
    version = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    occurred_at = IsoTime(required=True)
    data = fields.Dict(required=True)


_ENVELOPE_SCHEMA = EnvelopeSchema()


def validate_envelope(raw: Any, expected_source: str | None = None) -> dict:
    """Check a received envelope completely; raise InvalidEvent with the reason otherwise."""
    if not isinstance(raw, dict):
        raise InvalidEvent("an event must be a JSON object")
    errors = _ENVELOPE_SCHEMA.validate(raw)
    if errors:
        raise InvalidEvent("envelope: " + "; ".join(_flatten(errors)))
    if expected_source and raw["source"] != expected_source:
        raise InvalidEvent(f"event claims source {raw['source']!r}, expected {expected_source!r}")
    if SOURCES.get(raw["event_type"]) not in (None, raw["source"]):
        raise InvalidEvent(f"{raw['event_type']} is not emitted by {raw['source']}")
    validate_data(raw["event_type"], raw["schema_version"], raw["data"])
    return raw
