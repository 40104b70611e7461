"""How each event changes reporting's read model — pure functions, no database.

Two steps, both deterministic:

1. ``fact_from_event`` keeps the few fields of an event the reports need (a *fact*), keyed by
   ``(source, complaint_id, version)``. Everything personal is dropped here, at the door: the
   complaint text, ``reply_to`` (PSID, comment id), ``recipient_psid``, actors' names, free-text
   reasons. Only an agency's public answer text is kept.
2. ``derive`` recomputes a complaint's rows (the complaint, its agencies' assignments, its public
   answers) from *all* its facts, each source's facts in version order.

Because rows are recomputed from the set of facts rather than patched event by event, the result
does not depend on the order in which events arrive (``ComplaintRouted`` may come before
``ComplaintFiled``; a routing event from one queue before an older one from another), and a live
projection equals a rebuilt one.
"""
from __future__ import annotations

from typing import Any

from shared.events import parse_iso
from services.reporting.months import month_key

DESK = "diskominfotik"
OPEN_STATUSES = ("diterima", "disetujui", "diproses")

# Per event type: the data fields kept as facts (no personal data, no free text but answers).
KEPT_FIELDS: dict[str, tuple[str, ...]] = {
    "ComplaintFiled": ("tracking_code", "channel", "filed_at", "category", "region_code",
                       "priority", "confidential"),
    "ComplaintAmended": ("why",),
    "ComplaintRouted": ("lead_agencies", "coordinating_agencies", "priority", "due_at"),
    "ComplaintAcknowledged": ("agency_code",),
    "ComplaintRejectedByAgency": ("agency_code",),
    "ComplaintResponded": ("agency_code", "text", "resolved"),
    "ComplaintResolved": (),
    "ComplaintEscalated": ("breach", "due_at", "notified"),
    "ComplaintDismissed": (),
    "CitizenNotified": ("channel",),
    "CitizenNotificationFailed": ("code", "permanent"),
}


def fact_from_event(envelope: dict) -> dict | None:
    """The fact an event contributes, or None for events reports do not use (citizen messages,
    removed comments, status requests)."""
    kept = KEPT_FIELDS.get(envelope["event_type"])
    if kept is None:
        return None
    data = envelope["data"]
    return {
        "source": envelope["source"], "complaint_id": envelope["complaint_id"],
        "version": int(envelope["version"]), "event_type": envelope["event_type"],
        "occurred_at": envelope["occurred_at"],
        "data": {name: data.get(name) for name in kept},
    }


def _new_assignment(complaint_id: str, agency_code: str) -> dict:
    return {"complaint_id": complaint_id, "agency_code": agency_code, "role": "other",
            "assigned_at": None, "first_response_due": None, "follow_up_due": None,
            "acknowledged_at": None, "first_answer_at": None, "rejected_at": None,
            "resolved": False, "escalations": 0}


def _earliest(*moments: str | None) -> str | None:
    present = [m for m in moments if m]
    return min(present, key=parse_iso) if present else None


def derive(complaint_id: str, facts: list[dict]) -> dict:
    """``{"complaint": row, "assignments": [rows], "answers": [rows]}`` from a complaint's facts."""
    def of(source):
        return sorted((f for f in facts if f["source"] == source), key=lambda f: f["version"])
    intake, routing, notification = of("intake"), of("routing"), of("notification")

    filed = next((f for f in intake if f["event_type"] == "ComplaintFiled"), None)
    filing = filed["data"] if filed else {}
    row: dict[str, Any] = {
        "complaint_id": complaint_id, "filed": filed is not None,
        "tracking_code": filing.get("tracking_code"), "channel": filing.get("channel"),
        "category": filing.get("category"), "region_code": filing.get("region_code"),
        "priority": filing.get("priority"), "confidential": bool(filing.get("confidential")),
        "filed_at": filing.get("filed_at"),
        "month": month_key(filing["filed_at"]) if filed else None,
        "amendments": sum(1 for f in intake if f["event_type"] == "ComplaintAmended"),
    }

    status, rejected_before = "diterima", False
    lead: list[str] = []
    coordinating: list[str] = []
    at_desk, current_dues = False, {}
    acted_since_route = answered_since_route = False
    routed_at = sla_first_response_due = sla_follow_up_due = resolved_at = None
    assignments: dict[str, dict] = {}
    answers: list[dict] = []
    escalations = rejections = 0

    def assignment(code: str) -> dict:
        return assignments.setdefault(code, _new_assignment(complaint_id, code))

    for fact in routing:
        kind, data, at = fact["event_type"], fact["data"], fact["occurred_at"]
        if kind == "ComplaintRouted":
            lead, coordinating = list(data["lead_agencies"]), list(data["coordinating_agencies"])
            current_dues = dict(data["due_at"] or {})
            at_desk = "triage" in current_dues
            acted_since_route = answered_since_route = False
            if data.get("priority"):
                row["priority"] = data["priority"]
            if at_desk:
                # Back at the desk after an agency's "bukan wewenang" is still being processed.
                status = "diproses" if rejected_before else "diterima"
                continue
            status = "disetujui"
            if routed_at is None:
                routed_at = at
                sla_first_response_due = current_dues.get("first_response")
                sla_follow_up_due = current_dues.get("follow_up")
            for code in lead:
                entry = assignment(code)
                if entry["role"] != "lead" or entry["assigned_at"] is None:
                    entry.update(role="lead", assigned_at=at,
                                 first_response_due=current_dues.get("first_response"),
                                 follow_up_due=current_dues.get("follow_up"))
            for code in coordinating:
                if code not in lead and assignment(code)["role"] == "other":
                    assignment(code).update(role="coordinating", assigned_at=at)
        elif kind == "ComplaintAcknowledged":
            entry = assignment(data["agency_code"])
            entry["acknowledged_at"] = entry["acknowledged_at"] or at
            acted_since_route = True
            status = "diproses"
        elif kind == "ComplaintRejectedByAgency":
            entry = assignment(data["agency_code"])
            entry["rejected_at"] = entry["rejected_at"] or at
            rejections += 1
            rejected_before = True
            status = "diproses"
        elif kind == "ComplaintResponded":
            entry = assignment(data["agency_code"])
            entry["first_answer_at"] = entry["first_answer_at"] or at
            answers.append({"complaint_id": complaint_id, "version": fact["version"],
                            "agency_code": data["agency_code"], "text": data["text"],
                            "resolved": bool(data["resolved"]), "answered_at": at})
            acted_since_route = answered_since_route = True
            if data["resolved"]:
                entry["resolved"] = True
                resolved_at = resolved_at or at
                status = "selesai"
            else:
                status = "diproses"
        elif kind == "ComplaintResolved":
            for code in lead:
                if code in assignments and assignments[code]["role"] == "lead":
                    assignments[code]["resolved"] = True
            resolved_at = resolved_at or at
            status = "selesai"
        elif kind == "ComplaintEscalated":
            escalations += 1
            if data["breach"] != "triage" and not at_desk:
                # A missed agency deadline counts against the agencies leading at that moment.
                for code in lead:
                    if code in assignments and assignments[code]["role"] == "lead":
                        assignments[code]["escalations"] += 1
        elif kind == "ComplaintDismissed":
            status = "ditolak"

    leads = [a for a in assignments.values() if a["role"] == "lead"]
    row.update({
        "lead_agencies": lead, "coordinating_agencies": coordinating, "at_desk": at_desk,
        "routed_at": routed_at, "first_response_due": sla_first_response_due,
        "follow_up_due": sla_follow_up_due,
        "first_response_at": _earliest(*(m for a in leads for m in (a["acknowledged_at"], a["first_answer_at"]))),
        "first_answer_at": _earliest(*(a["answered_at"] for a in answers)),
        "answers": len(answers), "followed_up": bool(answers),
        "resolved": status == "selesai", "resolved_at": resolved_at if status == "selesai" else None,
        "dismissed": status == "ditolak", "escalations": escalations, "rejections": rejections,
        "public_status": status,
        "notified": sum(1 for f in notification if f["event_type"] == "CitizenNotified"),
        "notification_failures": sum(1 for f in notification if f["event_type"] == "CitizenNotificationFailed"),
    })
    row["next_due_kind"], row["next_due_at"] = _next_deadline(
        status, at_desk, current_dues, acted_since_route, answered_since_route)
    # The public "updated" time: the latest thing that happened to the complaint itself
    # (escalations and notifications are internal).
    public_moments = [f["occurred_at"] for f in intake + routing if f["event_type"] != "ComplaintEscalated"]
    row["updated_at"] = max(public_moments, key=parse_iso) if public_moments else None
    return {"complaint": row, "assignments": sorted(assignments.values(), key=lambda a: a["agency_code"]),
            "answers": answers}


def _next_deadline(status, at_desk, dues, acted, answered) -> tuple[str | None, str | None]:
    if status not in OPEN_STATUSES:
        return None, None
    if at_desk:
        return ("triage", dues["triage"]) if dues.get("triage") else (None, None)
    if not acted and dues.get("first_response"):
        return "first_response", dues["first_response"]
    if not answered and dues.get("follow_up"):
        return "follow_up", dues["follow_up"]
    return None, None
