"""Intake's use cases for complaints filed by other systems and the web form, each inside one
unit of work: file one (idempotent on ``external_ref`` per calling system), read what outside systems may see, and
give the desk a reporter's contact with the access recorded."""
from __future__ import annotations

import logging

from shared.core.errors import IllegalAction, NotFound, ValidationFailed
from shared.core.events import types as ev
from shared.core.eventstore import PendingEvent
from shared.core.events import isoformat_utc, utc_now
from shared.core.store import ServiceStore
from services.intake.adapters.store import (DuplicateKey, find_by_external_ref, find_by_tracking_code, find_complaint,
                                            find_reporter, public_complaint, record_contact_read,
                                            record_new_complaint, remember_conversation)
from services.intake.domain.tracking import normalise
from services.intake.domain.filing import INTERNAL, caller_system_problem, file_new, outside_caller_refusals

log = logging.getLogger("intake")

#: Complaints reopened from the public status page; Facebook ones answer in their conversation.
WEB_REOPEN_CHANNELS = ("web", "api", "open311")


class Complaints:
    def __init__(self, store: ServiceStore):
        self.store = store

    def file(self, payload: dict, caller_system: str | None = None) -> dict:
        """File ``payload`` (already validated by the schema) for a caller: ``caller_system`` is
        the outside system the gateway named (None: the platform's own callers and doors).
        Outside systems may not file Meta channels, ``reply_to`` or ``last_citizen_message_at``;
        ``external_ref`` is idempotent per caller."""
        problem = caller_system_problem(caller_system)
        if problem:
            raise ValidationFailed({"caller_system": [problem]})
        if caller_system is not None:
            refused = outside_caller_refusals(payload)
            if refused:
                log.warning("outside filing refused", extra={"caller_system": caller_system,
                                                             "fields": sorted(refused)})
                raise ValidationFailed(refused)
        caller = caller_system or INTERNAL
        database = self.store.database
        external_ref = payload.get("external_ref")
        if external_ref:
            with database.read() as connection:
                existing = find_by_external_ref(connection, external_ref, caller)
            if existing:
                return {"complaint_id": existing.complaint_id, "tracking_code": existing.tracking_code}
        new = file_new(payload, utc_now())
        reply_to = payload.get("reply_to") or {}
        psid = reply_to.get("psid")
        try:
            with database.transaction() as tx:
                existing = find_by_external_ref(tx.connection, external_ref, caller) if external_ref else None
                if existing:
                    return {"complaint_id": existing.complaint_id, "tracking_code": existing.tracking_code}
                record_new_complaint(tx, new, psid=psid, caller_system=caller)
                if psid and payload.get("channel") != "import":
                    # The caller holds this Messenger conversation: the citizen's next messages
                    # continue this complaint.
                    remember_conversation(tx, str(reply_to["page_id"]), str(psid), new.complaint_id,
                                          False, None)
        except DuplicateKey:
            # The same external_ref filed at the same moment by another worker: the unique
            # constraint let exactly one win; answer with that one.
            if not external_ref:
                raise
            with database.read() as connection:
                existing = find_by_external_ref(connection, external_ref, caller)
            if existing is None:
                raise
            return {"complaint_id": existing.complaint_id, "tracking_code": existing.tracking_code}
        log.info("complaint filed", extra={"complaint_id": new.complaint_id,
                                           **({"caller_system": caller_system} if caller_system else {})})
        return {"complaint_id": new.complaint_id, "tracking_code": new.tracking_code}

    def answer_by_code(self, tracking_code: str, text: str) -> dict:
        """"Not solved" from the public status page: a web, API or Open311 complaint's citizen
        (who holds its tracking code) asks to reopen it, with their words. Recorded as
        ``CitizenAnsweredFollowUp`` (``via: web``); routing decides (reopen, to the desk, or
        refused with the reason — the status page then shows the outcome). Facebook complaints
        answer in their conversation: their code is refused here as unknown, like any unknown
        code, so the answer tells nothing about the complaint. No personal data in the answer."""
        code = normalise(str(tracking_code or ""))
        words = (text or "").strip()
        if not words:
            raise ValidationFailed({"text": ["say what is still not solved"]})
        if len(words) > 2000:
            raise ValidationFailed({"text": ["at most 2,000 characters"]})
        with self.store.database.transaction() as tx:
            row = find_by_tracking_code(tx.connection, code)
            if row is None or row["channel"] not in WEB_REOPEN_CHANNELS:
                raise NotFound(f"no complaint {code!r} can be reopened here")
            if row["open"]:
                raise IllegalAction(f"complaint {code} is still being handled; it is not closed")
            tx.append([PendingEvent(ev.CITIZEN_ANSWERED_FOLLOW_UP, row["complaint_id"], {
                "answer": "not_solved", "words": words, "score": None, "via": "web",
                "tracking_code": row["tracking_code"], "reply_to": None,
                "message_at": isoformat_utc(utc_now())})])
        return {"tracking_code": row["tracking_code"], "received": True}

    def get(self, complaint_id) -> dict:
        with self.store.database.read() as connection:
            row = find_complaint(connection, str(complaint_id))
        if row is None:
            raise NotFound(f"no complaint {complaint_id}")
        return public_complaint(row)

    def reporter_contact(self, complaint_id, actor, reason) -> dict:
        if not actor or not str(actor).strip():
            raise ValidationFailed("actor is required")
        if not reason or len(str(reason).strip()) < 5:
            raise ValidationFailed("a reason (at least 5 characters) is required and is recorded")
        with self.store.database.transaction() as tx:
            if find_complaint(tx.connection, str(complaint_id)) is None:
                raise NotFound(f"no complaint {complaint_id}")
            record_contact_read(tx, str(complaint_id), str(actor), str(reason))
            row = find_reporter(tx.connection, str(complaint_id))
        log.info("reporter contact read by the desk", extra={"complaint_id": str(complaint_id)})
        if row is None:
            return {"complaint_id": str(complaint_id), "name": None, "phone": None, "email": None}
        return {"complaint_id": str(complaint_id), "name": row["name"], "phone": row["phone"],
                "email": row["email"]}
