"""Intake: turns citizens' messages into recorded complaints (``ComplaintFiled`` …) and keeps the
reporter's contact, the only personal data in the platform."""
from __future__ import annotations

import logging

from marshmallow import ValidationError
from nameko.rpc import rpc
from nameko.web.handlers import http
from sqlalchemy import select

from shared import config
from shared.errors import EXPECTED, NotFound, ValidationFailed
from shared.events import isoformat_utc, utc_now
from shared.http import BodyTooLarge, json_response, read_json
from shared.nameko_support import OutboxRelay, Storage, health_report
from shared.service_base import ServiceBase
from services.intake import tables
from services.intake.filing import file_new
from services.intake.schemas import RpcComplaint, WebComplaint
from services.intake.store import build_store, find_by_external_ref, public_complaint, record_new_complaint

log = logging.getLogger("intake")


def check_startup() -> None:
    if not config.facebook_app_secret() and not config.is_development():
        raise config.ConfigError(
            "FACEBOOK_APP_SECRET is not set; webhooks could not be verified. Set it, or set "
            "NTBCARE_ENV=development for a local run.")


class IntakeService(ServiceBase):
    name = "intake"

    store = Storage(build_store)
    relay = OutboxRelay()

    # -- filing ------------------------------------------------------------------------------
    @rpc(expected_exceptions=EXPECTED)
    def file_complaint(self, complaint):
        try:
            payload = RpcComplaint().load(complaint if isinstance(complaint, dict) else {})
        except ValidationError as error:
            raise ValidationFailed(error.messages_dict if hasattr(error, "messages_dict") else error.messages)
        return self._file(payload)

    def _file(self, payload: dict) -> dict:
        database = self.store.database
        if payload.get("external_ref"):
            with database.read() as connection:
                existing = find_by_external_ref(connection, payload["external_ref"])
            if existing:
                return {"complaint_id": existing.complaint_id, "tracking_code": existing.tracking_code}
        new = file_new(payload, utc_now())
        with database.transaction() as tx:
            if payload.get("external_ref") and find_by_external_ref(tx.connection, payload["external_ref"]):
                existing = find_by_external_ref(tx.connection, payload["external_ref"])
                return {"complaint_id": existing.complaint_id, "tracking_code": existing.tracking_code}
            record_new_complaint(tx, new)
        log.info("complaint filed", extra={"complaint_id": new.complaint_id})
        return {"complaint_id": new.complaint_id, "tracking_code": new.tracking_code}

    @rpc(expected_exceptions=EXPECTED)
    def get_complaint(self, complaint_id):
        with self.store.database.read() as connection:
            row = connection.execute(select(tables.complaints).where(
                tables.complaints.c.complaint_id == str(complaint_id))).mappings().first()
        if row is None:
            raise NotFound(f"no complaint {complaint_id}")
        return public_complaint(row)

    @rpc(expected_exceptions=EXPECTED)
    def reporter_contact(self, complaint_id, actor, reason):
        if not actor or not str(actor).strip():
            raise ValidationFailed("actor is required")
        if not reason or len(str(reason).strip()) < 5:
            raise ValidationFailed("a reason (at least 5 characters) is required and is recorded")
        with self.store.database.transaction() as tx:
            complaint = tx.execute(select(tables.complaints.c.complaint_id).where(
                tables.complaints.c.complaint_id == str(complaint_id))).first()
            if complaint is None:
                raise NotFound(f"no complaint {complaint_id}")
            tx.execute(tables.contact_audit.insert().values(
                complaint_id=str(complaint_id), actor=str(actor), reason=str(reason),
                at=isoformat_utc(utc_now())))
            row = tx.execute(select(tables.reporters).where(
                tables.reporters.c.complaint_id == str(complaint_id))).mappings().first()
        log.info("reporter contact read by the desk", extra={"complaint_id": str(complaint_id)})
        if row is None:
            return {"complaint_id": str(complaint_id), "name": None, "phone": None, "email": None}
        return {"complaint_id": str(complaint_id), "name": row["name"], "phone": row["phone"],
                "email": row["email"]}

    @http("POST", "/api/complaints")
    def web_complaint(self, request):
        try:
            body = read_json(request)
            payload = WebComplaint().load(body if isinstance(body, dict) else {})
        except BodyTooLarge as error:
            return json_response(413, {"error": str(error)})
        except ValueError as error:
            return json_response(400, {"error": str(error)})
        except ValidationError as error:
            return json_response(400, {"error": "invalid complaint", "fields": error.messages})
        payload["channel"] = "web"
        result = self._file(payload)
        result["status_url"] = f"/api/complaints/{result['tracking_code']}"
        return json_response(201, result)
