"""Notification's handler table on a real database (SQLite file), without the broker: events go
through the idempotent consumer (validated against the catalogue's current versions), and the
outgoing messages they record say what routing's lifecycle says — two leads stay *diproses* until
the last resolves, a complaint made confidential later names no agency and gets no public update
from then on, a status answer reads the latest lifecycle."""
from __future__ import annotations

import itertools
import json
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select

from shared.core.consumer import EventConsumer
from shared.core.events import isoformat_utc, utc_now
from shared.core.events.catalogue import event_types_of
from services.notification.adapters import tables
from services.notification.application.handling import NotificationHandlers, complaint_history, confidential_now
from services.notification.domain.policy import COMMENT_PUBLIC
from services.notification.service import build_store
from tests.support.lifecycle import snapshot

PAGE = "100000000000001"
NAMES = {"dpupr": "Dinas PUPR Provinsi NTB", "polda-ntb": "Polda NTB"}
START = utc_now() - timedelta(hours=1)


@pytest.fixture()
def notification(tmp_path):
    store = build_store(f"sqlite:///{tmp_path / 'notification.db'}")
    store.database.create_all()
    consumer = EventConsumer(store.database, store.quarantine, NotificationHandlers(store).table(),
                             store.checkpoints, store.processed, store.failures)
    return Complaints(store, consumer)


class Complaints:
    """Plays intake and routing by hand: each call hands one event to notification's consumer."""

    def __init__(self, store, consumer):
        self.store, self.consumer = store, consumer
        self.positions = {"intake": itertools.count(1), "routing": itertools.count(1)}
        self.versions: dict[tuple, itertools.count] = {}
        self.clock = itertools.count(1)

    def send(self, source, event_type, complaint_id, data, version=None, event_id=None):
        if version is None:
            version = next(self.versions.setdefault((source, complaint_id), itertools.count(1)))
        envelope = {
            "event_id": event_id or str(uuid.uuid4()), "event_type": event_type,
            "schema_version": 2 if source == "routing" and event_type != "ComplaintConfidentialityChanged" else 1,
            "source": source, "position": next(self.positions[source]), "complaint_id": complaint_id,
            "version": version, "occurred_at": isoformat_utc(START + timedelta(minutes=next(self.clock))),
            "data": data}
        assert self.consumer.handle(envelope, source) == "handled"
        return envelope["event_id"]

    def file(self, complaint_id, reply_to, confidential=False, code="NTB-AB12C-DE34F"):
        at = isoformat_utc(START)
        return self.send("intake", "ComplaintFiled", complaint_id, {
            "tracking_code": code, "channel": "facebook_comment" if "comment_id" in reply_to else "facebook_messenger",
            "filed_at": at, "text": "Jalan rusak.", "attachments": [], "category": "infrastruktur",
            "region_code": "5203", "priority": "normal",
            "reasons": {"category": [], "region": [], "priority": []}, "confidential": confidential,
            "reply_to": reply_to, "last_citizen_message_at": at, "external_ref": None})

    def route(self, complaint_id, leads, lifecycle, **kwargs):
        return self.send("routing", "ComplaintRouted", complaint_id, {
            "lead_agencies": list(leads), "coordinating_agencies": [], "decided_by": "operator:desk:ayu",
            "reason": "jalan", "priority": "normal",
            "due_at": {"first_response": isoformat_utc(START + timedelta(days=2))},
            "lifecycle": lifecycle}, **kwargs)

    def respond(self, complaint_id, agency, text, resolved, lifecycle):
        return self.send("routing", "ComplaintResponded", complaint_id, {
            "agency_code": agency, "text": text, "resolved": resolved, "actor": f"{agency}:budi",
            "lifecycle": lifecycle})

    def messages(self, trigger_event_id):
        with self.store.database.read() as connection:
            rows = connection.execute(select(tables.outgoing).where(
                tables.outgoing.c.trigger_event_id == trigger_event_id)
                .order_by(tables.outgoing.c.seq)).mappings().all()
        return [dict(row, excluded_channels=json.loads(row["excluded_channels"])) for row in rows]


def comment_reply():
    return {"page_id": PAGE, "comment_id": f"1_{uuid.uuid4().int % 10**9}", "post_id": "1"}


def part(acknowledged=True, answered=False, resolved=False):
    return {"role": "lead", "acknowledged": acknowledged, "answered": answered, "resolved": resolved}


def test_every_routing_event_is_handled_and_intake_s_five():
    subscriptions = NotificationHandlers.subscriptions()
    assert set(subscriptions["routing"]) == set(event_types_of("routing"))
    assert "ComplaintConfidentialityChanged" in subscriptions["routing"]
    assert set(subscriptions["intake"]) == {"ComplaintFiled", "ComplaintAmended", "CitizenMessageReceived",
                                            "CitizenCommentRemoved", "StatusRequested",
                                            "CitizenAnsweredFollowUp"}


def test_two_leads_the_first_resolving_is_diproses_and_the_last_selesai(notification):
    complaint_id = str(uuid.uuid4())
    notification.file(complaint_id, comment_reply())
    leads = dict(leads=["dpupr", "polda-ntb"], names=NAMES)
    notification.route(complaint_id, leads["leads"], snapshot("disetujui", **leads))
    first = notification.respond(complaint_id, "dpupr", "Jalan sudah kami tambal.", True, snapshot(
        "diproses", **leads, parts={"dpupr": part(answered=True, resolved=True), "polda-ntb": part(False)}))
    [answer] = notification.messages(first)
    assert answer["text"].startswith("Jawaban dari Dinas PUPR Provinsi NTB")
    assert "status: diproses" in answer["public_text"] and "selesai" not in answer["public_text"]

    last = snapshot("selesai", **leads, parts={"dpupr": part(answered=True, resolved=True),
                                               "polda-ntb": part(answered=True, resolved=True)})
    second = notification.respond(complaint_id, "polda-ntb", "Pungutan sudah dihentikan.", True, last)
    resolved = notification.send("routing", "ComplaintResolved", complaint_id, {"actor": "polda-ntb:budi",
                                                                               "lifecycle": last})
    assert "status: selesai" in notification.messages(second)[0]["public_text"]
    outcome, question = notification.messages(resolved)  # then "Sudah selesai?" (issue 19)
    assert question["kind"] == "follow_up_question"
    assert "dinyatakan selesai" in outcome["text"] and "Dinas PUPR Provinsi NTB dan Polda NTB" in outcome["text"]


def test_made_confidential_later_names_no_agency_and_leaves_the_comment_alone(notification):
    complaint_id = str(uuid.uuid4())
    reply_to = comment_reply()
    notification.file(complaint_id, reply_to)
    routed = notification.route(complaint_id, ["dpupr"], snapshot("disetujui", names=NAMES))
    [announced] = notification.messages(routed)
    assert "Dinas PUPR Provinsi NTB" in announced["text"] and "disetujui" in announced["public_text"]

    # A later bubble reported an illegal levy: routing makes the complaint confidential.
    changed = notification.send("routing", "ComplaintConfidentialityChanged", complaint_id, {
        "confidential": True, "reason": "pungutan liar dilaporkan", "actor": "intake:classifier",
        "lifecycle": snapshot("disetujui", names=NAMES, confidential=True)})
    assert notification.messages(changed) == []  # the change itself tells the citizen nothing
    with notification.store.database.read() as connection:
        # What the sender asks before a public reply composed earlier (e.g. held behind a Page).
        assert confidential_now(connection, complaint_id)

    answered = notification.respond(complaint_id, "dpupr", "Petugas sudah kami periksa.", False, snapshot(
        "diproses", names=NAMES, confidential=True, parts={"dpupr": part(answered=True)}))
    [answer] = notification.messages(answered)
    assert "Petugas sudah kami periksa." in answer["text"] and "PUPR" not in answer["text"]
    assert answer["public_text"] is None and COMMENT_PUBLIC in answer["excluded_channels"]

    # The reporter asks in Messenger (the PSID learnt after the comment): no agency in the answer.
    psid = "4242"
    with notification.store.database.transaction() as tx:
        tx.execute(tables.complaints.update().where(tables.complaints.c.complaint_id == complaint_id)
                   .values(known_psid=psid))
    asked = notification.send("intake", "StatusRequested", complaint_id, {
        "tracking_code": "ntb-ab12c-de34f", "reply_to": {"page_id": PAGE, "psid": psid},
        "message_at": isoformat_utc(utc_now())})
    [status] = notification.messages(asked)
    assert status["text"].startswith("Status aduan NTB-AB12C-DE34F: diproses.")
    assert "Ditangani oleh" not in status["text"] and "PUPR" not in status["text"]


def test_unmarked_by_the_desk_public_updates_resume(notification):
    complaint_id = str(uuid.uuid4())
    notification.file(complaint_id, comment_reply(), confidential=True)
    secret = notification.route(complaint_id, ["polda-ntb"],
                                snapshot("disetujui", leads=["polda-ntb"], names=NAMES, confidential=True))
    [routed] = notification.messages(secret)
    assert "Polda" not in routed["text"] and routed["public_text"] is None
    notification.send("routing", "ComplaintConfidentialityChanged", complaint_id, {
        "confidential": False, "reason": "bukan pungli", "actor": "desk:ayu",
        "lifecycle": snapshot("disetujui", leads=["polda-ntb"], names=NAMES)})
    answered = notification.respond(complaint_id, "polda-ntb", "Sudah kami tangani.", False, snapshot(
        "diproses", leads=["polda-ntb"], names=NAMES, parts={"polda-ntb": part(answered=True)}))
    [answer] = notification.messages(answered)
    assert answer["text"].startswith("Jawaban dari Polda NTB") and "diproses" in answer["public_text"]


def test_routing_before_filing_is_composed_with_confidentiality_as_it_is_by_then(notification):
    # Events travel on different queues: routing's may arrive before ComplaintFiled. By the time
    # they can be composed the complaint is confidential; the earlier routing must not name anyone.
    complaint_id = str(uuid.uuid4())
    routed = notification.route(complaint_id, ["dpupr"], snapshot("disetujui", names=NAMES))
    notification.send("routing", "ComplaintConfidentialityChanged", complaint_id, {
        "confidential": True, "reason": "pungli", "actor": "desk:ayu",
        "lifecycle": snapshot("disetujui", names=NAMES, confidential=True)})
    assert notification.messages(routed) == []  # waiting for ComplaintFiled
    notification.file(complaint_id, comment_reply())
    [message] = notification.messages(routed)
    assert "PUPR" not in message["text"] and message["public_text"] is None


def test_routed_to_the_desk_sends_nothing(notification):
    complaint_id = str(uuid.uuid4())
    notification.file(complaint_id, {"page_id": PAGE, "psid": "777"})
    desk = notification.route(complaint_id, ["diskominfotik"], snapshot("diterima", stage="triage"))
    assert notification.messages(desk) == []


def test_an_event_recorded_before_the_lifecycle_waits_for_it(notification):
    """What revision 8b2c4d6e1f3a relies on: a routing event notification recorded before routing's
    events carried the lifecycle ends the complaint's known history until routing's log (read
    again from the start) gives it with its lifecycle; then its messages are recorded once."""
    complaint_id = str(uuid.uuid4())
    notification.file(complaint_id, {"page_id": PAGE, "psid": "777"})
    event_id = str(uuid.uuid4())
    with notification.store.database.transaction() as tx:
        tx.execute(tables.complaint_events.insert().values(
            event_id=event_id, complaint_id=complaint_id, source="routing", version=1,
            event_type="ComplaintRouted", occurred_at=isoformat_utc(START), planned=False,
            data=json.dumps({"lead_agencies": ["dpupr"], "due_at": {}})))
    with notification.store.database.read() as connection:
        assert [e["event_type"] for e in complaint_history(connection, complaint_id)] == ["ComplaintFiled"]
    notification.route(complaint_id, ["dpupr"], snapshot("disetujui", names=NAMES), version=1,
                       event_id=event_id)
    [routed] = notification.messages(event_id)
    assert "Dinas PUPR Provinsi NTB" in routed["text"]
    notification.route(complaint_id, ["dpupr"], snapshot("disetujui", names=NAMES), version=1,
                       event_id=event_id)  # and again: nothing new
    assert len(notification.messages(event_id)) == 1
