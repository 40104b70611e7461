"""Intake's persistence: the service store and the complaint repository used by its entrypoints."""
from __future__ import annotations

import json

from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import IntegrityError

from shared.core.fast_sql import fast
from shared.core.db import Transaction
from shared.core.events import isoformat_utc, parse_iso, utc_now
from shared.core.eventstore import PendingEvent
from shared.core.store import ServiceStore
from shared.core.events import types as ev
from services.intake.adapters import media, tables
from services.intake.adapters.retention import INTAKE_RETENTION_RULES
from services.intake.domain.filing import INTERNAL, NewComplaint
from services.intake.domain.media import MEDIA_CHANNELS

# The per-message statements, built once (building them per call was a third of the service's CPU)
# and executed with a parameters dict; bind names are prefixed ``b_`` so that they never collide
# with a column named in an INSERT's VALUES or an UPDATE's SET.
_complaints, _conversations = tables.complaints, tables.conversations
_BY_EXTERNAL_REF = (select(_complaints.c.complaint_id, _complaints.c.tracking_code)
                    .where(_complaints.c.caller_system == bindparam("b_caller_system"))
                    .where(_complaints.c.external_ref == bindparam("b_external_ref")))
_INSERT_COMPLAINT = _complaints.insert()
_INSERT_REPORTER = tables.reporters.insert()
_COMPLAINT = select(_complaints).where(_complaints.c.complaint_id == bindparam("b_complaint_id"))
_BY_TRACKING_CODE = select(_complaints).where(_complaints.c.tracking_code == bindparam("b_tracking_code"))
_SET_STATE = update(_complaints).where(_complaints.c.complaint_id == bindparam("b_complaint_id")).values(
    open=bindparam("b_open"), confidential=bindparam("b_confidential"))
_CONVERSATION_KEY = (_conversations.c.page_id == bindparam("b_page_id")) & (
    _conversations.c.psid == bindparam("b_psid"))
_CONVERSATION_FOUND = select(_conversations.c.psid).where(_CONVERSATION_KEY)
# SET: the columns named in the parameters dict (besides ``b_page_id`` and ``b_psid``).
_UPDATE_CONVERSATION = update(_conversations).where(_CONVERSATION_KEY)
_INSERT_CONVERSATION = _conversations.insert()
# Run straight on the driver where they can be (``shared.core.fast_sql``).
_BY_EXTERNAL_REF = fast(_BY_EXTERNAL_REF)
_INSERT_COMPLAINT = fast(_INSERT_COMPLAINT)
_INSERT_REPORTER = fast(_INSERT_REPORTER)
_COMPLAINT = fast(_COMPLAINT)
_BY_TRACKING_CODE = fast(_BY_TRACKING_CODE)
_SET_STATE = fast(_SET_STATE)
_CONVERSATION_FOUND = fast(_CONVERSATION_FOUND)
_UPDATE_CONVERSATION = fast(_UPDATE_CONVERSATION)
_INSERT_CONVERSATION = fast(_INSERT_CONVERSATION)


def build_store(url: str | None = None) -> ServiceStore:
    store = ServiceStore("intake", tables.metadata, emits_events=True, url=url)
    store.retention_rules.extend(INTAKE_RETENTION_RULES)  # inbox bodies, inbox rows, seen-items
    return store


def find_by_external_ref(connection, external_ref: str, caller_system: str = INTERNAL):
    """The complaint this caller filed with this reference (each caller has its own references)."""
    return connection.execute(_BY_EXTERNAL_REF, {"b_caller_system": caller_system,
                                                  "b_external_ref": external_ref}).first()


def record_new_complaint(tx: Transaction, new: NewComplaint, psid: str | None = None,
                         caller_system: str = INTERNAL) -> None:
    """The complaint row, the reporter row, its attachments' pending downloads (each gets a
    ``media_id``) and ``ComplaintFiled`` — one transaction."""
    data = new.data
    data["attachments"] = media.register(tx, new.complaint_id, data["attachments"], parse_iso(data["filed_at"]),
                                         from_meta=data["channel"] in MEDIA_CHANNELS)
    tx.execute(_INSERT_COMPLAINT, dict(
        complaint_id=new.complaint_id, tracking_code=new.tracking_code, channel=data["channel"],
        filed_at=data["filed_at"], text=data["text"], category=data["category"],
        region_code=data["region_code"], priority=data["priority"], confidential=data["confidential"],
        reply_to=json.dumps(data["reply_to"]) if data["reply_to"] else None,
        external_ref=data["external_ref"], last_citizen_message_at=data["last_citizen_message_at"],
        attachments=json.dumps(data["attachments"]), open=True, caller_system=caller_system))
    reporter = new.reporter
    if any(reporter.get(k) for k in ("name", "phone", "email")) or psid:
        tx.execute(_INSERT_REPORTER, dict(
            complaint_id=new.complaint_id, name=reporter.get("name"), phone=reporter.get("phone"),
            email=reporter.get("email"), psid=psid))
    tx.append([PendingEvent(ev.COMPLAINT_FILED, new.complaint_id, data, expected_version=0)])


def public_complaint(row) -> dict:
    """A complaint without personal data (no reporter, no PSID or comment id)."""
    reply_to = json.loads(row["reply_to"]) if row["reply_to"] else None
    return {
        "complaint_id": row["complaint_id"], "tracking_code": row["tracking_code"],
        "channel": row["channel"], "filed_at": row["filed_at"], "text": row["text"],
        "category": row["category"], "region_code": row["region_code"],
        "priority": row["priority"], "confidential": bool(row["confidential"]),
        "has_reply_to": reply_to is not None, "external_ref": row["external_ref"],
        "attachments": json.loads(row["attachments"]) if row["attachments"] else [],
        "last_citizen_message_at": row["last_citizen_message_at"], "open": bool(row["open"]),
    }


def find_complaint(connection, complaint_id: str):
    return connection.execute(_COMPLAINT, {"b_complaint_id": str(complaint_id)}).mappings().first()


def find_by_tracking_code(connection, tracking_code: str):
    return connection.execute(_BY_TRACKING_CODE, {"b_tracking_code": tracking_code}).mappings().first()


def set_state(tx: Transaction, complaint_id: str, is_open: bool, confidential: bool) -> None:
    """What routing's lifecycle says of the complaint: open or closed, confidential or not."""
    tx.execute(_SET_STATE, {"b_complaint_id": complaint_id, "b_open": is_open, "b_confidential": confidential})


def remember_conversation(tx: Transaction, page_id: str, psid: str, complaint_id: str | None,
                          in_first_burst: bool, last_message_at: str | None) -> None:
    """Point (Page, PSID) at a complaint (None: the next message files a new one)."""
    key = {"b_page_id": page_id, "b_psid": psid}
    values = {"complaint_id": complaint_id, "in_first_burst": in_first_burst}
    if last_message_at is not None:
        values["last_message_at"] = last_message_at
    if tx.execute(_CONVERSATION_FOUND, key).first():
        tx.execute(_UPDATE_CONVERSATION, {**key, **values})
    else:
        tx.execute(_INSERT_CONVERSATION, {"page_id": page_id, "psid": psid, **values,
                                          "last_message_at": last_message_at})


#: A unique key refused the row (the same ``external_ref`` filed at the same moment by another worker).
DuplicateKey = IntegrityError


def record_contact_read(tx: Transaction, complaint_id: str, actor: str, reason: str) -> None:
    """Who read a reporter's contact, when and why (the desk's access is recorded)."""
    tx.execute(tables.contact_audit.insert().values(complaint_id=complaint_id, actor=actor, reason=reason,
                                                    at=isoformat_utc(utc_now())))


def find_reporter(connection, complaint_id: str):
    """The reporter's contact of a complaint (name, phone, email), or None."""
    return connection.execute(select(tables.reporters).where(
        tables.reporters.c.complaint_id == complaint_id)).mappings().first()
