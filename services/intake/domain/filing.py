"""Filing a complaint: classify the text, mint a tracking code and build the ``ComplaintFiled``
data. Pure domain (no nameko, no SQLAlchemy)."""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.core.events import isoformat_utc, parse_iso
from services.intake.domain.classifier import classify
from shared.core.reference import CONFIDENTIAL_CATEGORIES
from services.intake.domain.tracking import new_tracking_code


# -- who may file what ------------------------------------------------------------------------------
# Outside systems reach ``intake.file_complaint`` only through the gateway, which names the
# caller in the RPC's context data (``caller_system``). Their door is the API — or, for a
# system handing over complaints it received earlier, an import. The Meta channels, ``reply_to``
# and ``last_citizen_message_at`` would let them make the Page message any PSID or comment (and
# open Meta's windows for it) in the province's name: those stay with intake's own webhook and
# the platform's internal callers.
OUTSIDE_CHANNELS = ("api", "import")
OUTSIDE_FORBIDDEN_FIELDS = ("reply_to", "last_citizen_message_at")
CALLER_SYSTEM = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
INTERNAL = ""   # the caller-system value recorded for the platform's own callers


def caller_system_problem(caller_system: object) -> str | None:
    """None when ``caller_system`` is absent (an internal caller) or a well-formed system name."""
    if caller_system is None:
        return None
    if isinstance(caller_system, str) and CALLER_SYSTEM.fullmatch(caller_system):
        return None
    return "caller_system in the context data must be a system name (lower-case letters, digits, . _ -)"


def outside_caller_refusals(payload: dict[str, Any]) -> dict[str, list[str]]:
    """What an outside system may not file, per field (empty: nothing refused)."""
    refused: dict[str, list[str]] = {}
    channel = payload.get("channel", "api")
    if channel not in OUTSIDE_CHANNELS:
        refused["channel"] = [f"outside systems may file only on the channels {', '.join(OUTSIDE_CHANNELS)}, "
                              f"not {channel}"]
    for field in OUTSIDE_FORBIDDEN_FIELDS:
        if payload.get(field) is not None:
            refused[field] = [f"outside systems may not give {field}; the citizen's conversations on "
                              f"Facebook and Instagram reach the platform only through Meta"]
    return refused


@dataclass
class NewComplaint:
    complaint_id: str
    tracking_code: str
    data: dict[str, Any]      # ComplaintFiled data
    reporter: dict[str, Any]  # name/phone/email: stays in intake


def file_new(payload: dict[str, Any], now: datetime, tracking_code: str | None = None) -> NewComplaint:
    text = payload["text"].strip()
    found = classify(text)
    location = payload.get("location") or {}
    category = payload.get("category") or found.category
    region_code = location.get("region_code") or found.region_code
    confidential = payload.get("confidential")
    if confidential is None:
        confidential = category in CONFIDENTIAL_CATEGORIES
    received_at = payload.get("received_at")
    filed_at = parse_iso(received_at) if received_at else now
    reply_to = payload.get("reply_to")
    reasons = {key: list(value) for key, value in found.reasons.items()}
    if payload.get("category"):
        reasons["category"] = [f"given:{category}"]
    if location.get("region_code"):
        reasons["region"] = [f"given:{region_code}"]
    data = {
        "tracking_code": tracking_code or new_tracking_code(),
        "channel": payload.get("channel", "api"),
        "filed_at": isoformat_utc(filed_at),
        "text": text,
        "attachments": [{"type": a["type"], "url": a["url"]} for a in payload.get("attachments") or []],
        "category": category,
        "region_code": region_code,
        "priority": found.priority,
        "reasons": reasons,
        "confidential": bool(confidential),
        "reply_to": reply_to or None,
        "last_citizen_message_at": payload.get("last_citizen_message_at"),
        "external_ref": payload.get("external_ref"),
    }
    return NewComplaint(str(uuid.uuid4()), data["tracking_code"], data, dict(payload.get("reporter") or {}))
