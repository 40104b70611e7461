"""Notification: turns routing's and intake's events into Facebook messages and comment replies."""
from __future__ import annotations

import json
import uuid

from nameko.events import event_handler
from nameko.timer import timer

from shared import config
from shared.events import Envelope, isoformat_utc, utc_now
from shared.nameko_support import Consumer, OutboxRelay, ServiceStore, Storage
from shared.service_base import ServiceBase
from services.notification import tables
from services.notification.sender import Sender

MESSAGE_NAMESPACE = uuid.UUID("6f1c4d0e-8a55-4c3e-9a0e-6e7b1b2f0c11")


def build_store(url: str | None = None) -> ServiceStore:
    return ServiceStore("notification", tables.metadata, emits_events=True, url=url)


def handlers(store: ServiceStore) -> dict:
    def on_complaint_filed(tx, envelope: Envelope):
        data = envelope.data
        now = isoformat_utc(utc_now())
        tx.execute(tables.complaints.insert().values(
            complaint_id=envelope.complaint_id, tracking_code=data["tracking_code"],
            reply_to=json.dumps(data["reply_to"]) if data["reply_to"] else None,
            confidential=data["confidential"], last_citizen_message_at=data["last_citizen_message_at"],
            public_status="diterima", lead_agencies="[]", updated_at=now))
        reply_to = data["reply_to"]
        if not reply_to or data["channel"] == "import" or not reply_to.get("psid"):
            return
        text = (f"Terima kasih, aduan Anda sudah kami terima dengan kode {data['tracking_code']}. "
                f"Ketik CEK {data['tracking_code']} untuk menanyakan statusnya.")
        tx.execute(tables.outgoing.insert().values(
            message_id=str(uuid.uuid5(MESSAGE_NAMESPACE, f"{envelope.event_id}:ack:0")),
            trigger_event_id=envelope.event_id, complaint_id=envelope.complaint_id,
            page_id=reply_to["page_id"], recipient=json.dumps({"id": reply_to["psid"]}),
            channel="messenger", messaging_type="RESPONSE", tag=None, text=text, state="pending",
            attempts=0, next_attempt_at=now, created_at=now))
    return {"ComplaintFiled": on_complaint_filed}


class NotificationService(ServiceBase):
    name = "notification"

    store = Storage(build_store)
    relay = OutboxRelay()
    consumer = Consumer(["intake", "routing"], handlers)
    sender = Sender()

    @event_handler("intake", "ComplaintFiled")
    def on_complaint_filed(self, payload):
        self.consumer.handle(payload, "intake")

    @timer(interval=config.catchup_seconds(), eager=True)
    def catch_up(self):
        self.consumer.catch_up()
