"""What an outside reader's feed may carry of a routing event (docs/gateway.md, "Outside readers'
feeds"). Pure: ``feed_item(event, reader_agencies, followed)`` decides, from the event alone (its
``data.lifecycle`` is the complaint's state after it) and whether the reader was following the
complaint, if the reader gets an item and what it says.

The rules, so that an agency's system sees its own complaints and nothing else:

* only complaints where one of the reader's agencies is lead or coordinating after the event — or
  was before it (the event that takes the complaint away from it, e.g. its own hand-back or a
  re-routing elsewhere, is its last item);
* fields are copied from an allow-list per event type, so a field routing adds later reaches no
  one until it is listed here; an event type not listed is not forwarded at all;
* no officer's name: ``actor`` becomes the acting agency's code, otherwise ``ntbcare``; a desk
  operator's routing decision says ``ntbcare``;
* nothing the desk or an officer wrote about the complaint (reasons, notes, ``duplicate_of``);
* texts (an agency's answer) only while the complaint is not confidential;
* nothing personal: routing's events carry no reporter identity, and no ``reply_to`` or the like
  is on any allow-list.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Mapping

from shared.core.events import types as ev

#: Data fields copied as they are, per routing event type (codes, flags, deadlines, public names).
SAFE_FIELDS: Mapping[str, tuple[str, ...]] = {
    ev.COMPLAINT_ROUTED: ("lead_agencies", "coordinating_agencies", "priority", "due_at", "agency_names"),
    ev.COMPLAINT_ACKNOWLEDGED: ("agency_code", "agency_name"),
    ev.COMPLAINT_REJECTED_BY_AGENCY: ("agency_code", "agency_name", "returned_to_desk", "due_at"),
    ev.COMPLAINT_RESPONDED: ("agency_code", "agency_name", "resolved"),
    ev.COMPLAINT_RESOLVED: (),
    ev.COMPLAINT_ESCALATED: ("breach", "due_at", "notified", "agency_names"),
    ev.COMPLAINT_DISMISSED: (),
    ev.COMPLAINT_CONFIDENTIALITY_CHANGED: ("confidential",),
    # Issue 20: a desk correction — the codes before and after, and whether it re-routed (the
    # agencies a re-route reaches come in its own ComplaintRouted); never the reason.
    ev.COMPLAINT_RECLASSIFIED: ("category_before", "category_after", "region_before", "region_after",
                                "rerouted"),
}
#: Routing event types outside readers do not get (decided, not forgotten: a test requires every
#: routing event type to be in ``SAFE_FIELDS`` or here). Issue 19's citizen-loop events are not
#: forwarded until someone decides which of their fields an outside system may read.
NOT_FORWARDED: frozenset[str] = frozenset({
    ev.COMPLAINT_LINKED, ev.COMPLAINT_REOPENED, ev.COMPLAINT_REOPEN_REFUSED, ev.CITIZEN_RATED})
#: Texts, copied only while the complaint is not confidential.
TEXT_FIELDS: Mapping[str, tuple[str, ...]] = {ev.COMPLAINT_RESPONDED: ("text",)}
#: Event types whose data names who acted (``actor``, ``decided_by``): replaced, never copied.
ACTED: frozenset[str] = frozenset({
    ev.COMPLAINT_ROUTED, ev.COMPLAINT_ACKNOWLEDGED, ev.COMPLAINT_REJECTED_BY_AGENCY, ev.COMPLAINT_RESPONDED,
    ev.COMPLAINT_RESOLVED, ev.COMPLAINT_DISMISSED, ev.COMPLAINT_CONFIDENTIALITY_CHANGED,
    ev.COMPLAINT_RECLASSIFIED})
#: The complaint's public state after the event (``data.lifecycle``), as readers get it.
LIFECYCLE_FIELDS = ("status", "stage", "open", "at_desk", "confidential", "lead_agencies",
                    "coordinating_agencies", "parts", "deadlines", "agency_names")
PLATFORM_ACTOR = "ntbcare"
#: Namespace of feed item ids: ``uuid5(FEED_NAMESPACE, "<reader>/<routing event id>")``.
FEED_NAMESPACE = uuid.UUID("6f1d1c5e-0b7e-4d0a-9a57-2f8f0c6b1e31")


@dataclass(frozen=True)
class FeedItem:
    """One item for one reader: its id (the same for a redelivered event), what the reader gets,
    and whether the reader follows the complaint after it."""
    item_id: str
    reader: str
    event_type: str
    complaint_id: str
    body: dict[str, Any]
    follows_after: bool


def involved(lifecycle: Mapping[str, Any], agencies: frozenset[str]) -> bool:
    """Is one of ``agencies`` lead or coordinating in this lifecycle snapshot?"""
    current = set(lifecycle.get("lead_agencies") or ()) | set(lifecycle.get("coordinating_agencies") or ())
    return bool(current & agencies)


def item_id(reader: str, event_id: str) -> str:
    return str(uuid.uuid5(FEED_NAMESPACE, f"{reader}/{event_id}"))


def feed_item(event: Mapping[str, Any], reader: str, agencies: frozenset[str],
              followed: bool) -> FeedItem | None:
    """The item ``reader`` (following ``agencies``) gets of one routing event (a current envelope
    as a dict), or None. ``followed``: the reader had the complaint before this event."""
    event_type = str(event["event_type"])
    if event_type not in SAFE_FIELDS or not agencies:
        return None
    data: Mapping[str, Any] = event["data"]
    lifecycle: Mapping[str, Any] = data.get("lifecycle") or {}
    now_involved = involved(lifecycle, agencies)
    if not now_involved and not followed:
        return None
    confidential = bool(lifecycle.get("confidential", True))  # no snapshot: assume the worst
    return FeedItem(
        item_id=item_id(reader, str(event["event_id"])), reader=reader, event_type=event_type,
        complaint_id=str(event["complaint_id"]),
        body={
            "event_type": event_type,
            "complaint_id": str(event["complaint_id"]),
            "occurred_at": event["occurred_at"],
            "complaint": {name: lifecycle[name] for name in LIFECYCLE_FIELDS if name in lifecycle},
            "data": filtered_data(event_type, data, confidential),
        },
        follows_after=now_involved)


def filtered_data(event_type: str, data: Mapping[str, Any], confidential: bool) -> dict[str, Any]:
    """The allow-listed fields of one event's data, its actor replaced by an agency code."""
    out = {name: data[name] for name in SAFE_FIELDS.get(event_type, ()) if name in data}
    if not confidential:
        out.update({name: data[name] for name in TEXT_FIELDS.get(event_type, ()) if name in data})
    if event_type in ACTED:
        out["actor"] = acting_party(event_type, data)
    return out


def acting_party(event_type: str, data: Mapping[str, Any]) -> str:
    """Who acted, as a reader may know it: an agency's own act is the agency's; a routing rule
    keeps its rule id (``rule:…``); anything the desk or the platform did is ``ntbcare``."""
    if event_type == ev.COMPLAINT_ROUTED:
        decided_by = str(data.get("decided_by") or "")
        return decided_by if decided_by.startswith("rule:") else PLATFORM_ACTOR
    agency = data.get("agency_code")
    if event_type in (ev.COMPLAINT_ACKNOWLEDGED, ev.COMPLAINT_REJECTED_BY_AGENCY, ev.COMPLAINT_RESPONDED) and agency:
        return str(agency)
    return PLATFORM_ACTOR
