"""How each event changes reporting's read model — pure functions, no database.

Two steps, both deterministic:

1. ``fact_from_event`` keeps the few fields of an event the reports need (a *fact*), keyed by
   ``(source, complaint_id, version)``. Everything personal is dropped here, at the door: the
   complaint text, ``reply_to`` (PSID, comment id), ``recipient_psid``, actors' names, free-text
   reasons. Only an agency's public answer text is kept.
2. ``derive`` recomputes a complaint's rows (the complaint, its agencies' assignments, its public
   answers) from *all* its facts, each source's facts in version order.

Routing decides the complaint's lifecycle and every routing event carries it (``data.lifecycle``,
the state after the event). ``derive`` reads the public status, desk, agencies, each agency's
part, confidentiality and the running deadlines from the lifecycle of the latest routing fact; it
never works them out again. What it still takes from the events themselves are *timings*: when an
agency was assigned, acknowledged, answered, handed back, was escalated against.

Because rows are recomputed from the set of facts rather than patched event by event, the result
does not depend on the order in which events arrive (``ComplaintRouted`` may come before
``ComplaintFiled``; a routing event from one queue before an older one from another), and a live
projection equals a rebuilt one.
"""
from __future__ import annotations

import re
from operator import itemgetter
from typing import Any

from shared.core.events import parse_iso
from shared.core.events import types as ev
from shared.core.reference import DITERIMA, DITOLAK, SELESAI, month_key as _month_key

#: Bump when ``derive`` gives different rows for the same facts: the projection's fingerprint
#: changes with it, and reporting rebuilds itself at start-up (see ``repository.shape_fingerprint``).
#: 2: status, desk, agencies, parts, confidentiality and deadlines read from routing's lifecycle.
#: 3: the citizen's loop — reopens and ratings per complaint and per agency (issue 19).
#: 4: duplicates — the primary of the cluster a complaint was linked to (``cluster_primary``).
#: 5: the desk's corrections (issue 20) — the final category and region after the desk's
#:    corrections, how many corrections, and whether the desk reviewed the classification.
PROJECTION_VERSION = 5

#: The parts of routing's lifecycle snapshot reporting keeps (``stage`` is routing's own detail).
LIFECYCLE_FIELDS = ("status", "open", "at_desk", "confidential", "lead_agencies",
                    "coordinating_agencies", "parts", "deadlines", "agency_names")

# Per event type: the data fields kept as facts (no personal data, no free text but answers).
# Also the list of events reporting handles (``service.ReportingHandlers``).
KEPT_FIELDS: dict[str, tuple[str, ...]] = {
    ev.COMPLAINT_FILED: ("tracking_code", "channel", "filed_at", "category", "region_code",
                         "priority", "confidential"),
    ev.COMPLAINT_AMENDED: ("why",),
    # ``by_desk``: derived from ``decided_by`` (an operator's decision), never the operator's name.
    ev.COMPLAINT_ROUTED: ("priority", "due_at", "lifecycle", "by_desk"),
    ev.COMPLAINT_ACKNOWLEDGED: ("agency_code", "lifecycle"),
    ev.COMPLAINT_REJECTED_BY_AGENCY: ("agency_code", "lifecycle"),
    ev.COMPLAINT_RESPONDED: ("agency_code", "text", "resolved", "lifecycle"),
    ev.COMPLAINT_RESOLVED: ("lifecycle",),
    ev.COMPLAINT_ESCALATED: ("breach", "due_at", "lifecycle"),
    ev.COMPLAINT_DISMISSED: ("lifecycle",),
    ev.COMPLAINT_CONFIDENTIALITY_CHANGED: ("confidential", "lifecycle"),  # not the reason or actor
    # The citizen's loop: never their words (free text), only what the reports count.
    ev.COMPLAINT_REOPENED: ("to_desk", "lifecycle"),
    ev.COMPLAINT_REOPEN_REFUSED: ("reason", "lifecycle"),
    ev.CITIZEN_RATED: ("score", "agencies", "lifecycle"),
    ev.COMPLAINT_LINKED: ("primary_complaint_id", "lifecycle"),  # not the reason or actor
    # The desk's correction (issue 20): the codes before and after; not the reason or actor.
    ev.COMPLAINT_RECLASSIFIED: ("category_before", "category_after", "region_before", "region_after",
                                "rerouted", "lifecycle"),
    ev.CITIZEN_NOTIFIED: ("channel",),
    ev.CITIZEN_NOTIFICATION_FAILED: ("code", "permanent"),
}

#: Kept fields computed from the event's data rather than copied (so no name is kept).
DERIVED_FIELDS = {
    "by_desk": lambda data: str(data.get("decided_by") or "").startswith("operator:"),
}

#: Facts whose ``data`` ``derive`` never reads (it only counts them): a rebuild need not decode it.
DATA_UNUSED = frozenset({ev.COMPLAINT_AMENDED, ev.CITIZEN_NOTIFIED, ev.CITIZEN_NOTIFICATION_FAILED})

# Internal happenings that do not move the public "updated" time.
_INTERNAL = (ev.COMPLAINT_ESCALATED, ev.COMPLAINT_CONFIDENTIALITY_CHANGED, ev.COMPLAINT_RECLASSIFIED)


def month_key(filed_at_iso: str) -> str:
    # A time in the stores' format before 16:00 UTC is on the same day in WITA (UTC+8 since long
    # before 1970): its month is its first seven characters. Any other is converted.
    if (filed_at_iso[11:13] < "16" and filed_at_iso[:4] >= "1970"
            and _canonical(filed_at_iso) is not None):
        return filed_at_iso[:7]
    return _month_key(parse_iso(filed_at_iso))


def fact_from_event(envelope: dict[str, Any]) -> dict[str, Any] | None:
    """The fact an event contributes, or None for events reports do not use (citizen messages,
    removed comments, status requests)."""
    data = fact_data(envelope["event_type"], envelope["data"])
    if data is None:
        return None
    return {
        "source": envelope["source"], "complaint_id": envelope["complaint_id"],
        "version": int(envelope["version"]), "event_type": envelope["event_type"],
        "occurred_at": envelope["occurred_at"], "data": data,
    }


# Per event type, what ``fact_data`` does, worked out once from ``KEPT_FIELDS``: the fields in
# their order, which of them are computed, whether the lifecycle is kept.
_FACT_PLANS: dict[str, tuple[tuple[str, ...], tuple[str, ...], bool]] = {
    event_type: (kept, tuple(name for name in kept if name in DERIVED_FIELDS), "lifecycle" in kept)
    for event_type, kept in KEPT_FIELDS.items()
}


def fact_data(event_type: str, data: dict[str, Any]) -> dict[str, Any] | None:
    """The ``data`` of the fact an event of ``event_type`` contributes (only ``KEPT_FIELDS``),
    or None for a type reports do not use. A rebuild calls it for every event of the logs."""
    plan = _FACT_PLANS.get(event_type)
    if plan is None:
        return None
    kept, computed, with_lifecycle = plan
    get = data.get
    out = {name: get(name) for name in kept}  # in ``kept``'s order; computed ones replaced below
    for name in computed:
        out[name] = DERIVED_FIELDS[name](data)
    if with_lifecycle:
        lifecycle = data["lifecycle"]
        out["lifecycle"] = {name: lifecycle.get(name) for name in LIFECYCLE_FIELDS}
    return out


def before_routing(confidential: bool) -> dict[str, Any]:
    """What the lifecycle is before routing's first event: filed, waiting for the desk."""
    return {"status": DITERIMA, "open": True, "at_desk": True, "confidential": confidential,
            "lead_agencies": [], "coordinating_agencies": [], "parts": {}, "deadlines": {},
            "agency_names": {}}


def _new_assignment(complaint_id: str, agency_code: str) -> dict[str, Any]:
    return {"complaint_id": complaint_id, "agency_code": agency_code, "agency_name": None,
            "role": "other", "assigned_at": None, "first_response_due": None,
            "follow_up_due": None, "acknowledged_at": None, "first_answer_at": None,
            "rejected_at": None, "resolved": False, "escalations": 0,
            "reopens": 0, "rating": None}


# The one format the event stores write times in (``isoformat_utc``): UTC, microseconds, "Z".
# For such strings the text order is the time order, so comparing them needs no parsing; any
# other form (an offset, fewer digits) is compared by its parsed time, as always.
_CANONICAL_UTC = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")
_canonical = _CANONICAL_UTC.fullmatch


def _all_canonical(moments: list[str]) -> bool:
    for moment in moments:
        if type(moment) is not str or _canonical(moment) is None or moment.startswith("0000"):
            return False
    return True


def _earliest_of(moments: list[str]) -> str | None:
    """The earliest moment of a list (the first of equal ones), None for an empty list."""
    if not moments:
        return None
    return min(moments) if _all_canonical(moments) else min(moments, key=parse_iso)


def _latest_of(moments: list[str]) -> str | None:
    if not moments:
        return None
    return max(moments) if _all_canonical(moments) else max(moments, key=parse_iso)


def _min_or_none(moments: list[str]) -> str | None:
    return min(moments) if moments else None


def _max_or_none(moments: list[str]) -> str | None:
    return max(moments) if moments else None


_by_version = itemgetter("version")


def derive(complaint_id: str, facts: list[dict[str, Any]]) -> dict[str, Any]:
    """``{"complaint": row, "assignments": [rows], "answers": [rows]}`` from a complaint's facts."""
    intake: list[dict[str, Any]] = []
    routing: list[dict[str, Any]] = []
    notified = notification_failures = 0
    for fact in facts:
        source = fact["source"]
        if source == "routing":
            routing.append(fact)
        elif source == "intake":
            intake.append(fact)
        elif source == "notification":  # only counted: their order does not matter
            kind = fact["event_type"]
            if kind == ev.CITIZEN_NOTIFIED:
                notified += 1
            elif kind == ev.CITIZEN_NOTIFICATION_FAILED:
                notification_failures += 1
    # Each source's facts in version order (a stable sort: as ``sorted`` always did).
    intake.sort(key=_by_version)
    routing.sort(key=_by_version)

    filed = next((f for f in intake if f["event_type"] == ev.COMPLAINT_FILED), None)
    filing = filed["data"] if filed else {}
    # Routing's word on the complaint now: the lifecycle after its latest event.
    now = routing[-1]["data"]["lifecycle"] if routing else before_routing(bool(filing.get("confidential")))
    status = now["status"]
    row: dict[str, Any] = {
        "complaint_id": complaint_id, "filed": filed is not None,
        "tracking_code": filing.get("tracking_code"), "channel": filing.get("channel"),
        "category": filing.get("category"), "region_code": filing.get("region_code"),
        "priority": filing.get("priority"), "confidential": bool(now["confidential"]),
        "filed_at": filing.get("filed_at"),
        "month": month_key(filing["filed_at"]) if filed else None,
        "amendments": sum(1 for f in intake if f["event_type"] == ev.COMPLAINT_AMENDED),
    }

    routed_at = sla_first_response_due = sla_follow_up_due = resolved_at = None
    assignments: dict[str, dict[str, Any]] = {}
    answers: list[dict[str, Any]] = []
    escalations = rejections = 0
    names: dict[str, str] = {}
    reopens, rating = 0, None
    leads_before: list[str] = []

    def assignment(code: str) -> dict[str, Any]:
        entry = assignments.get(code)
        if entry is None:
            entry = assignments[code] = _new_assignment(complaint_id, code)
        return entry

    # Timings come from the events; "who leads at that moment" from each event's own lifecycle.
    for fact in routing:
        kind, data, at = fact["event_type"], fact["data"], fact["occurred_at"]
        then = data["lifecycle"]
        if kind == ev.COMPLAINT_REOPENED:
            # Counted against the agencies that led when the citizen said "belum".
            reopens += 1
            for code in leads_before:
                assignment(code)["reopens"] += 1
        elif kind == ev.CITIZEN_RATED:
            rating = data["score"]
            for code in data.get("agencies") or []:
                assignment(code)["rating"] = data["score"]
        leads_before = list(then["lead_agencies"])
        # A name equal to its code means the directory had none: the display fallback applies.
        for code, name in (then.get("agency_names") or {}).items():
            if name and name != code:
                names[code] = name
        if then["status"] == SELESAI and resolved_at is None:
            resolved_at = at
        if kind == ev.COMPLAINT_ROUTED:
            if data.get("priority"):
                row["priority"] = data["priority"]
            if then["at_desk"]:
                continue  # routed to (or held at) the desk: no agency has a part
            dues = data.get("due_at") or {}
            if routed_at is None:
                routed_at = at
                sla_first_response_due = dues.get("first_response")
                sla_follow_up_due = dues.get("follow_up")
            for code in then["lead_agencies"]:
                entry = assignment(code)
                if entry["role"] != "lead" or entry["assigned_at"] is None:
                    entry.update(role="lead", assigned_at=at,
                                 first_response_due=dues.get("first_response"),
                                 follow_up_due=dues.get("follow_up"))
            for code in then["coordinating_agencies"]:
                entry = assignment(code)
                if entry["role"] == "other":
                    entry.update(role="coordinating", assigned_at=at)
        elif kind == ev.COMPLAINT_ACKNOWLEDGED:
            entry = assignment(data["agency_code"])
            entry["acknowledged_at"] = entry["acknowledged_at"] or at
        elif kind == ev.COMPLAINT_REJECTED_BY_AGENCY:
            entry = assignment(data["agency_code"])
            entry["rejected_at"] = entry["rejected_at"] or at
            rejections += 1
        elif kind == ev.COMPLAINT_RESPONDED:
            entry = assignment(data["agency_code"])
            entry["first_answer_at"] = entry["first_answer_at"] or at
            answers.append({"complaint_id": complaint_id, "version": fact["version"],
                            "agency_code": data["agency_code"], "text": data["text"],
                            "resolved": bool(data["resolved"]), "answered_at": at})
        elif kind == ev.COMPLAINT_ESCALATED:
            escalations += 1
            if data["breach"] != "triage" and not then["at_desk"]:
                # A missed agency deadline counts against the agencies leading at that moment.
                for code in then["lead_agencies"]:
                    if code in assignments and assignments[code]["role"] == "lead":
                        assignments[code]["escalations"] += 1

    for code, entry in assignments.items():
        entry["resolved"] = bool((now["parts"].get(code) or {}).get("resolved"))
        entry["agency_name"] = names.get(code)

    leads = [a for a in assignments.values() if a["role"] == "lead"]
    # Every time below is a fact's ``occurred_at``: when all of them are in the stores' format,
    # the earliest and latest are found as text (``_earliest_of``/``_latest_of`` give the same).
    public_moments = [f["occurred_at"] for f in intake if f["event_type"] not in _INTERNAL]
    public_moments += [f["occurred_at"] for f in routing if f["event_type"] not in _INTERNAL]
    as_text = (_all_canonical(public_moments)
               and _all_canonical([f["occurred_at"] for f in routing if f["event_type"] in _INTERNAL]))
    earliest, latest = (_min_or_none, _max_or_none) if as_text else (_earliest_of, _latest_of)
    row.update({
        "lead_agencies": list(now["lead_agencies"]),
        "coordinating_agencies": list(now["coordinating_agencies"]),
        "agency_names": dict(sorted(names.items())),
        "at_desk": bool(now["at_desk"]),
        "routed_at": routed_at, "first_response_due": sla_first_response_due,
        "follow_up_due": sla_follow_up_due,
        "first_response_at": earliest([m for a in leads
                                       for m in (a["acknowledged_at"], a["first_answer_at"]) if m]),
        "first_answer_at": earliest([a["answered_at"] for a in answers if a["answered_at"]]),
        "answers": len(answers), "followed_up": bool(answers),
        "resolved": status == SELESAI, "resolved_at": resolved_at if status == SELESAI else None,
        "dismissed": status == DITOLAK, "escalations": escalations, "rejections": rejections,
        "public_status": status,
        "notified": notified,
        "reopens": reopens, "rating": rating,
        "notification_failures": notification_failures,
    })
    row.update(classification_review(filing, routing))
    # Duplicates: the primary of the cluster the desk linked the complaint to, or None.
    row["cluster_primary"] = next((f["data"]["primary_complaint_id"] for f in reversed(routing)
                                   if f["event_type"] == ev.COMPLAINT_LINKED), None)
    row["next_due_kind"], row["next_due_at"] = next_deadline(now)
    # The public "updated" time: the latest thing that happened to the complaint itself
    # (escalations, confidentiality decisions and notifications are internal).
    row["updated_at"] = latest(public_moments)
    return {"complaint": row, "assignments": sorted(assignments.values(), key=lambda a: a["agency_code"]),
            "answers": answers}


def classification_review(filing: dict[str, Any], routing: list[dict[str, Any]]) -> dict[str, Any]:
    """What the desk did with the automatic classification (``category``/``region_code`` of the
    row stay as filed, the classifier's): ``final_category``/``final_region_code`` after the
    desk's corrections (``ComplaintReclassified``), ``corrections`` counted, and
    ``desk_reviewed`` — the desk corrected it, or routed it to agencies other than those it had
    (at-desk triage of a complaint the rules could not route, or a re-route after the rules'
    routing). A desk decision that keeps the agencies (a priority change) or holds the complaint
    at the desk is not a review of the classification."""
    final_category, final_region = filing.get("category"), filing.get("region_code")
    corrections, reviewed = 0, False
    leads_before: list[str] = []
    for fact in routing:
        kind, data = fact["event_type"], fact["data"]
        then = data["lifecycle"]
        if kind == ev.COMPLAINT_RECLASSIFIED:
            final_category, final_region = data["category_after"], data["region_after"]
            corrections += 1
            reviewed = True
        elif (kind == ev.COMPLAINT_ROUTED and data.get("by_desk") and not then["at_desk"]
              and list(then["lead_agencies"]) != leads_before):
            reviewed = True
        leads_before = [] if then["at_desk"] else list(then["lead_agencies"])
    return {"final_category": final_category, "final_region_code": final_region,
            "corrections": corrections, "desk_reviewed": reviewed}


def next_deadline(lifecycle: dict[str, Any]) -> tuple[str | None, str | None]:
    """The earliest clock routing still runs (``triage``, ``first_response``, ``follow_up``)."""
    if not lifecycle["open"] or not lifecycle["deadlines"]:
        return None, None
    items = list(lifecycle["deadlines"].items())
    if _all_canonical([due for _kind, due in items]):
        kind, due = min(items, key=lambda item: (item[1], item[0]))
    else:
        kind, due = min(items, key=lambda item: (parse_iso(item[1]), item[0]))
    return kind, due
