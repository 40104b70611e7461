"""Filing a complaint: classify the text, mint a tracking code and build the ``ComplaintFiled``
data. Pure domain (no nameko, no SQLAlchemy)."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.core.events import isoformat_utc, parse_iso
from services.intake.domain.classifier import classify
from shared.core.reference import CONFIDENTIAL_CATEGORIES
from services.intake.domain.tracking import new_tracking_code


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
