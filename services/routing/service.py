"""Routing: dispatches complaints to provincial, district/city and vertical agencies and keeps
the service-level clocks."""
from __future__ import annotations

import json
import logging
from datetime import timedelta

from nameko.events import event_handler
from nameko.rpc import rpc
from nameko.timer import timer
from nameko.web.handlers import http

from shared import config
from shared.errors import EXPECTED, NotFound
from shared.events import Envelope, isoformat_utc, parse_iso
from shared.eventstore import PendingEvent
from shared.http import json_response
from shared.nameko_support import Consumer, OutboxRelay, ServiceStore, Storage, health_report
from shared.service_base import ServiceBase
from services.routing import tables

log = logging.getLogger("routing")
DESK = "diskominfotik"


def build_store(url: str | None = None) -> ServiceStore:
    return ServiceStore("routing", tables.metadata, emits_events=True, url=url)


def handlers(store: ServiceStore) -> dict:
    def on_complaint_filed(tx, envelope: Envelope):
        data = envelope.data
        tx.execute(tables.dispositions.insert().values(
            complaint_id=envelope.complaint_id, tracking_code=data["tracking_code"],
            category=data["category"], region_code=data["region_code"], priority=data["priority"],
            confidential=data["confidential"], filed_at=data["filed_at"], text=data["text"],
            lead_agencies=json.dumps([DESK]), status="at_desk"))
        due = parse_iso(data["filed_at"]) + timedelta(days=3)
        tx.append([PendingEvent("ComplaintRouted", envelope.complaint_id, {
            "lead_agencies": [DESK], "coordinating_agencies": [],
            "decided_by": "rule:desk-fallback", "reason": "Belum ada aturan yang yakin; ditelaah desk.",
            "priority": data["priority"], "due_at": {"triage": isoformat_utc(due)}}, expected_version=0)])
    return {"ComplaintFiled": on_complaint_filed}


class RoutingService(ServiceBase):
    name = "routing"

    store = Storage(build_store)
    relay = OutboxRelay()
    consumer = Consumer(["intake"], handlers)

    @event_handler("intake", "ComplaintFiled")
    def on_complaint_filed(self, payload):
        self.consumer.handle(payload, "intake")

    @timer(interval=config.catchup_seconds(), eager=True)
    def catch_up(self):
        self.consumer.catch_up()
