"""Every event type declared once: its owner, every field a consumer reads (one marshmallow
schema per version), and its version history with the upcasters that lift an old event to the
current version before any handler sees it. This is the contract of the design's "Event data"
table; events are validated when appended and again when received.

Adding an event type: a name in ``shared.core.events.types``, its schema here and one ``EventContract``
in ``CONTRACTS``; then the handler in the consuming service's handler table, which is also its
subscription (see the README, "Where things go").

Changing an event's shape: add ``<Type>V<n+1>``, list it in the contract's ``versions`` and give
an upcaster from ``n``. ``upcast`` runs them in a row; an upcaster that needs the complaint's
earlier events (``needs_history``) runs where that history is — routing lifts its own v1 log
when it reads it (``upcast_log``), so every reader of routing's events gets v2.

Schemas accept extra fields (``unknown = INCLUDE``) because the design allows producers to add
fields; the listed ones are required and typed.
"""
from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable

from marshmallow import INCLUDE, Schema, ValidationError, fields, validate, validates_schema

from shared.core.events import types as ev
from shared.core.events.envelope import StoredEnvelope, parse_iso
from shared.core.reference import CATEGORIES, PRIORITIES, PUBLIC_STATUSES, REGION_CODES, STAGE_WORDS

if TYPE_CHECKING:  # imported where used at run time: lifecycle imports this package
    from shared.core.events.lifecycle import Lifecycle

CHANNELS = ("facebook_messenger", "facebook_comment", "instagram_direct", "web", "api", "import", "open311")
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


def IsoTime(**kwargs: Any) -> fields.String:  # noqa: N802 - reads like a field class
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
    # On intake's events: the attachment intake keeps in its media store (``EvidenceStored``
    # settles it); absent for links it does not fetch (web form, API, ``geo:``).
    media_id = fields.String()


class ReplyTo(Schema):
    """Where an answer can reach the citizen: a Messenger PSID, or a Page comment."""

    class Meta:
        unknown = INCLUDE

    page_id = fields.String(required=True)
    psid = fields.String()
    comment_id = fields.String()
    post_id = fields.String(allow_none=True)

    @validates_schema
    def _one_target(self, data: dict[str, Any], **kwargs: Any) -> None:
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


class CitizenMessageReceivedV2(CitizenMessageReceivedV1):
    """v2: says whether this message reports an illegal levy (intake's classifier on its text):
    a levy told after the first burst makes the complaint confidential as an amendment's does
    (routing records it). v1 messages were never classified: they lift with ``False``."""
    levy_reported = fields.Boolean(required=True, truthy={True}, falsy={False})


class CitizenCommentRemovedV1(EventData):
    comment_id = fields.String(required=True)


class CitizenReactedV1(EventData):
    """The citizen sent only a sticker, the like (👍) button or Instagram's heart in the
    conversation of this complaint (typically after an answer): a reaction, never complaint text."""
    reaction = fields.String(required=True, validate=validate.OneOf(("like", "sticker", "heart")))
    sticker_id = fields.String(required=True, allow_none=True)
    message_at = IsoTime(required=True)


class StatusRequestedV1(EventData):
    tracking_code = fields.String(required=True)
    reply_to = fields.Nested(ReplyTo, required=True, allow_none=True)
    message_at = IsoTime(required=True)


EVIDENCE_STATES = ("stored", "lost")


class EvidenceStoredV1(EventData):
    """One attachment's download settled (intake's media store): ``stored`` with the SHA-256
    ``digest`` of its bytes, the sniffed ``content_type`` and ``size``, or ``lost`` with the
    ``reason`` (the link expired, too large, not a media file, retries exhausted). ``media_id`` is
    the id the attachment carries in ``ComplaintFiled``/``ComplaintAmended``/
    ``CitizenMessageReceived``; the bytes are read through routing, never from a public URL."""
    media_id = fields.String(required=True, validate=validate.Length(min=1, max=36))
    type = fields.String(required=True)
    state = fields.String(required=True, validate=validate.OneOf(EVIDENCE_STATES))
    digest = fields.String(required=True, allow_none=True, validate=validate.Regexp(r"^[0-9a-f]{64}$"))
    content_type = fields.String(required=True, allow_none=True)
    size = fields.Integer(required=True, allow_none=True, strict=True, validate=validate.Range(min=0))
    reason = fields.String(required=True, allow_none=True)

    @validates_schema
    def _stored_has_its_digest(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("state") == "stored" and not (data.get("digest") and data.get("content_type")):
            raise ValidationError("stored evidence needs its digest and content_type")


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

class ComplaintAmendedV2(ComplaintAmendedV1):
    """v2: says whether the new text reports an illegal levy (routing then makes the complaint
    confidential). v1 amendments never changed confidentiality: they lift with ``False``."""
    levy_reported = fields.Boolean(required=True, truthy={True}, falsy={False})
    attachments = fields.List(fields.Nested(Attachment))


class AgencyPart(Schema):
    role = fields.String(required=True, validate=validate.OneOf(("lead", "coordinating", "handed_back")))
    acknowledged = fields.Boolean(required=True, truthy={True}, falsy={False})
    answered = fields.Boolean(required=True, truthy={True}, falsy={False})
    resolved = fields.Boolean(required=True, truthy={True}, falsy={False})


class LifecycleSnapshot(Schema):
    """The complaint's state after the event, as routing decided it (``shared.core.events.lifecycle``)."""
    status = fields.String(required=True, validate=validate.OneOf(PUBLIC_STATUSES))
    stage = fields.String(required=True, validate=validate.OneOf(tuple(STAGE_WORDS)))
    open = fields.Boolean(required=True, truthy={True}, falsy={False})
    at_desk = fields.Boolean(required=True, truthy={True}, falsy={False})
    confidential = fields.Boolean(required=True, truthy={True}, falsy={False})
    lead_agencies = fields.List(fields.String(), required=True)
    coordinating_agencies = fields.List(fields.String(), required=True)
    parts = fields.Dict(keys=fields.String(), values=fields.Nested(AgencyPart), required=True)
    deadlines = fields.Dict(keys=fields.String(validate=validate.OneOf(BREACHES)), values=IsoTime(),
                            required=True)
    agency_names = fields.Dict(keys=fields.String(), values=fields.String(), required=True)


class _WithLifecycle:
    lifecycle = fields.Nested(LifecycleSnapshot, required=True)


class ComplaintRoutedV2(_WithLifecycle, ComplaintRoutedV1):
    agency_names = fields.Dict(keys=fields.String(), values=fields.String())


class ComplaintAcknowledgedV2(_WithLifecycle, ComplaintAcknowledgedV1):
    agency_name = fields.String()


class ComplaintRejectedByAgencyV2(_WithLifecycle, ComplaintRejectedByAgencyV1):
    agency_name = fields.String()
    returned_to_desk = fields.Boolean(truthy={True}, falsy={False})
    due_at = fields.Dict(keys=fields.String(validate=validate.OneOf(BREACHES)), values=IsoTime())


class ComplaintRespondedV2(_WithLifecycle, ComplaintRespondedV1):
    agency_name = fields.String()


class ComplaintResolvedV2(_WithLifecycle, ComplaintResolvedV1):
    pass


class ComplaintEscalatedV2(_WithLifecycle, ComplaintEscalatedV1):
    agency_names = fields.Dict(keys=fields.String(), values=fields.String())


class ComplaintDismissedV2(_WithLifecycle, ComplaintDismissedV1):
    pass


class ComplaintConfidentialityChangedV1(_WithLifecycle, EventData):
    """The complaint became confidential (a text reported an illegal levy; ``actor`` is then
    ``intake:classifier``) or the desk marked or unmarked it, with its reason."""
    confidential = fields.Boolean(required=True, truthy={True}, falsy={False})
    reason = fields.String(required=True, validate=validate.Length(min=1))
    actor = fields.String(required=True, validate=validate.Length(min=1))


LINK_REASONS = ("same_post", "same_category_region", "similar_words")


class ComplaintLinkedV1(_WithLifecycle, EventData):
    """The desk joined this complaint to a cluster: ``primary_complaint_id`` (and its tracking
    code) is the complaint an agency answers once for all; ``reason`` is the desk's words (or the
    suggestion's), ``because`` the suggestion's grounds (empty for a link made by hand) with its
    ``score`` (word similarity 0–1, or null). No Facebook ids: the grounds are named, not copied."""
    primary_complaint_id = fields.String(required=True, validate=_uuid)
    primary_tracking_code = fields.String(required=True, validate=validate.Length(min=4, max=32))
    reason = fields.String(required=True, validate=validate.Length(min=1))
    actor = fields.String(required=True, validate=validate.Length(min=1))
    because = fields.List(fields.String(validate=validate.OneOf(LINK_REASONS)), required=True)
    score = fields.Float(required=True, allow_none=True, validate=validate.Range(min=0, max=1))


class ComplaintReclassifiedV1(_WithLifecycle, EventData):
    """The desk corrected the complaint's category and/or region (issue 20): the values before and
    after (a region may be null: unknown), the desk's ``reason`` and ``actor``, and whether the
    correction re-routed the complaint (``rerouted``: a ``ComplaintRouted`` by the rule that now
    applies follows in the same transaction). The lifecycle does not move by this event itself."""
    category_before = fields.String(required=True, validate=validate.OneOf(CATEGORIES))
    category_after = fields.String(required=True, validate=validate.OneOf(CATEGORIES))
    region_before = fields.String(required=True, allow_none=True, validate=validate.OneOf(REGION_CODES))
    region_after = fields.String(required=True, allow_none=True, validate=validate.OneOf(REGION_CODES))
    reason = fields.String(required=True, validate=validate.Length(min=1))
    actor = fields.String(required=True, validate=validate.Length(min=1))
    rerouted = fields.Boolean(required=True, truthy={True}, falsy={False})


FOLLOW_UP_ANSWERS = ("solved", "not_solved", "rating", "unclear_rating", "stale")
FOLLOW_UP_VIA = ("quick_reply", "postback", "text", "web")
REOPEN_REFUSALS = ("period_over", "dismissed", "open")


class CitizenAnsweredFollowUpV1(EventData):
    """The citizen answered "Sudah selesai?" (or rated) on this closed complaint, as intake
    recognised it: ``solved`` / ``not_solved`` (``words``: what they wrote), ``rating`` with a
    ``score`` 1–5, or what needs a clear reply instead — ``unclear_rating`` (a number outside
    1–5) and ``stale`` (a quick reply of a question that is no longer current). ``via``: how it
    came; ``reply_to``: where the citizen answered (null from the web)."""
    answer = fields.String(required=True, validate=validate.OneOf(FOLLOW_UP_ANSWERS))
    words = fields.String(required=True)
    score = fields.Integer(required=True, allow_none=True, strict=True,
                           validate=validate.Range(min=1, max=5))
    via = fields.String(required=True, validate=validate.OneOf(FOLLOW_UP_VIA))
    tracking_code = fields.String(required=True)
    reply_to = fields.Nested(ReplyTo, required=True, allow_none=True)
    message_at = IsoTime(required=True)

    @validates_schema
    def _rating_has_its_score(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("answer") == "rating" and data.get("score") is None:
            raise ValidationError("a rating needs its score")


class ComplaintReopenedV1(_WithLifecycle, EventData):
    """The citizen said the resolved complaint is not solved, within the reopen period: back to
    its lead agencies (their parts reset, a fresh ``follow_up`` clock in ``due_at``) or, from the
    second reopen on (``to_desk``), to the desk with a ``triage`` clock."""
    words = fields.String(required=True)
    actor = fields.String(required=True, validate=validate.Length(min=1))
    reopen_count = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    to_desk = fields.Boolean(required=True, truthy={True}, falsy={False})
    due_at = fields.Dict(keys=fields.String(validate=validate.OneOf(BREACHES)), values=IsoTime(),
                         required=True)
    answer_event_id = fields.String(required=True, allow_none=True)


class ComplaintReopenRefusedV1(_WithLifecycle, EventData):
    """A "not solved" that cannot reopen the complaint: ``period_over`` (resolved longer ago than
    the reopen period), ``dismissed``, or ``open`` (it is being handled already). The citizen
    gets a clear reply; the words stay in the event."""
    reason = fields.String(required=True, validate=validate.OneOf(REOPEN_REFUSALS))
    words = fields.String(required=True)
    answer_event_id = fields.String(required=True, allow_none=True)


class CitizenRatedV1(_WithLifecycle, EventData):
    """The citizen's rating of a resolved complaint (once per resolution): ``score`` 1–5, their
    ``words``, and the lead ``agencies`` that resolved it (routing knows them)."""
    score = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=5))
    words = fields.String(required=True)
    agencies = fields.List(fields.String(), required=True)
    answer_event_id = fields.String(required=True, allow_none=True)


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


# --- version history -----------------------------------------------------------------------------

class NeedsHistory(Exception):
    """An upcaster needs the complaint's earlier events; the event must be read from its source's
    log (``events_since``), which lifts it with that history."""


@dataclass(frozen=True)
class Upcaster:
    """Lifts ``data`` of version n to n+1. With ``needs_history`` it is called as
    ``lift(data, event_type, state)`` with the fold of the complaint's earlier events."""
    lift: Callable[..., dict[str, Any]]
    needs_history: bool = False


def _levy_not_reported(data: dict[str, Any]) -> dict[str, Any]:
    # ComplaintAmended v1 and CitizenMessageReceived v1 were never classified for a levy.
    data.setdefault("levy_reported", False)
    return data



def _routing_v1_to_v2(data: dict[str, Any], event_type: str, lifecycle: Lifecycle) -> dict[str, Any]:
    # ``lifecycle`` has folded the complaint's earlier routing events; fold this one too and
    # record the state it leaves, exactly as routing records it on a v2 event.
    after = lifecycle.copy()
    after.apply(event_type, data)
    data["lifecycle"] = after.snapshot()
    return data


_ROUTING_LIFT = {1: Upcaster(_routing_v1_to_v2, needs_history=True)}


@dataclass(frozen=True)
class EventContract:
    name: str
    owner: str
    versions: dict[int, type[Schema]]
    upcasters: dict[int, Upcaster] = field(default_factory=dict)  # from version n to n+1

    @property
    def latest(self) -> int:
        return max(self.versions)


CONTRACTS: dict[str, EventContract] = {contract.name: contract for contract in (
    EventContract(ev.COMPLAINT_FILED, "intake", {1: ComplaintFiledV1}),
    EventContract(ev.COMPLAINT_AMENDED, "intake", {1: ComplaintAmendedV1, 2: ComplaintAmendedV2},
                  {1: Upcaster(_levy_not_reported)}),
    EventContract(ev.CITIZEN_MESSAGE_RECEIVED, "intake", {1: CitizenMessageReceivedV1, 2: CitizenMessageReceivedV2},
                  {1: Upcaster(_levy_not_reported)}),
    EventContract(ev.CITIZEN_COMMENT_REMOVED, "intake", {1: CitizenCommentRemovedV1}),
    EventContract(ev.STATUS_REQUESTED, "intake", {1: StatusRequestedV1}),
    EventContract(ev.EVIDENCE_STORED, "intake", {1: EvidenceStoredV1}),
    EventContract(ev.CITIZEN_REACTED, "intake", {1: CitizenReactedV1}),
    EventContract(ev.CITIZEN_ANSWERED_FOLLOW_UP, "intake", {1: CitizenAnsweredFollowUpV1}),
    *(EventContract(name, "routing", {1: v1, 2: v2}, _ROUTING_LIFT) for name, v1, v2 in (
        (ev.COMPLAINT_ROUTED, ComplaintRoutedV1, ComplaintRoutedV2),
        (ev.COMPLAINT_ACKNOWLEDGED, ComplaintAcknowledgedV1, ComplaintAcknowledgedV2),
        (ev.COMPLAINT_REJECTED_BY_AGENCY, ComplaintRejectedByAgencyV1, ComplaintRejectedByAgencyV2),
        (ev.COMPLAINT_RESPONDED, ComplaintRespondedV1, ComplaintRespondedV2),
        (ev.COMPLAINT_RESOLVED, ComplaintResolvedV1, ComplaintResolvedV2),
        (ev.COMPLAINT_ESCALATED, ComplaintEscalatedV1, ComplaintEscalatedV2),
        (ev.COMPLAINT_DISMISSED, ComplaintDismissedV1, ComplaintDismissedV2))),
    EventContract(ev.COMPLAINT_CONFIDENTIALITY_CHANGED, "routing",
                  {1: ComplaintConfidentialityChangedV1}),
    EventContract(ev.COMPLAINT_LINKED, "routing", {1: ComplaintLinkedV1}),
    EventContract(ev.COMPLAINT_RECLASSIFIED, "routing", {1: ComplaintReclassifiedV1}),
    EventContract(ev.COMPLAINT_REOPENED, "routing", {1: ComplaintReopenedV1}),
    EventContract(ev.COMPLAINT_REOPEN_REFUSED, "routing", {1: ComplaintReopenRefusedV1}),
    EventContract(ev.CITIZEN_RATED, "routing", {1: CitizenRatedV1}),
    EventContract(ev.CITIZEN_NOTIFIED, "notification", {1: CitizenNotifiedV1}),
    EventContract(ev.CITIZEN_NOTIFICATION_FAILED, "notification", {1: CitizenNotificationFailedV1}),
)}

#: (event type, schema version) → schema class, derived from ``CONTRACTS``.
CATALOGUE: dict[tuple[str, int], type[Schema]] = {
    (contract.name, version): schema
    for contract in CONTRACTS.values() for version, schema in contract.versions.items()}
SOURCES: dict[str, str] = {contract.name: contract.owner for contract in CONTRACTS.values()}
LATEST_VERSION: dict[str, int] = {contract.name: contract.latest for contract in CONTRACTS.values()}


def event_types_of(owner: str) -> tuple[str, ...]:
    return tuple(name for name, contract in CONTRACTS.items() if contract.owner == owner)


def is_current(envelope: dict[str, Any]) -> bool:
    version: int = envelope["schema_version"]
    return version >= LATEST_VERSION.get(envelope["event_type"], 0)


def upcast(envelope: dict[str, Any], state: Lifecycle | None = None) -> dict[str, Any]:
    """The envelope lifted to its type's latest version (a copy; the input is not changed).
    ``state`` is what a ``needs_history`` upcaster folds from; without it such an event raises
    ``NeedsHistory``."""
    contract = CONTRACTS.get(envelope["event_type"])
    if contract is None or envelope["schema_version"] >= contract.latest:
        return envelope
    lifted = dict(envelope)
    data = copy.deepcopy(envelope["data"])
    version = envelope["schema_version"]
    while version < contract.latest:
        upcaster = contract.upcasters.get(version)
        if upcaster is None:
            raise InvalidEvent(f"{contract.name} v{version} has no upcaster to v{version + 1}")
        if upcaster.needs_history:
            if state is None:
                raise NeedsHistory(f"{contract.name} v{version} is lifted by its source, with "
                                   "the complaint's history")
            data = upcaster.lift(data, contract.name, state)
        else:
            data = upcaster.lift(data)
        version += 1
    lifted["data"], lifted["schema_version"] = data, version
    return lifted


def upcast_log(events: Iterable[dict[str, Any]], confidential: bool) -> list[dict[str, Any]]:
    """One complaint's routing events, in version order, each lifted to its latest version with
    the lifecycle folded from the ones before it (``confidential``: as filed)."""
    from shared.core.events.lifecycle import Lifecycle  # the fold routing records with
    lifecycle = Lifecycle(confidential)
    lifted = []
    for envelope in events:
        current = upcast(envelope, lifecycle) if not is_current(envelope) else envelope
        lifted.append(current)
        lifecycle.apply(envelope["event_type"], envelope["data"])
    return lifted


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
    # The compiled check answers for nearly every event in a few microseconds; marshmallow (tens
    # of microseconds) judges only what it cannot vouch for, and gives the reasons.
    from shared.core.events.fast_check import data_accepted
    if data_accepted(event_type, schema_version, data):
        return
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


def validate_envelope(raw: Any, expected_source: str | None = None) -> dict[str, Any]:
    """Check a received envelope completely; raise InvalidEvent with the reason otherwise."""
    if not isinstance(raw, dict):
        raise InvalidEvent("an event must be a JSON object")
    if type(raw) is StoredEnvelope:  # read back in this process by the store that validated it
        if expected_source and raw["source"] != expected_source:
            raise InvalidEvent(f"event claims source {raw['source']!r}, expected {expected_source!r}")
        return raw
    errors = _ENVELOPE_SCHEMA.validate(raw)
    if errors:
        raise InvalidEvent("envelope: " + "; ".join(_flatten(errors)))
    if expected_source and raw["source"] != expected_source:
        raise InvalidEvent(f"event claims source {raw['source']!r}, expected {expected_source!r}")
    if SOURCES.get(raw["event_type"]) not in (None, raw["source"]):
        raise InvalidEvent(f"{raw['event_type']} is not emitted by {raw['source']}")
    validate_data(raw["event_type"], raw["schema_version"], raw["data"])
    return raw
