"""Notification's interface tier: every entrypoint of ``NotificationService`` — the handlers of
intake's and routing's events, the desk's RPC methods (``undelivered``, ``delivery_state``), the
shared log/quarantine RPC, health and metrics, and the catch-up timer — driven in-process on a
SQLite file, with no broker and no database server.

The worker comes from nameko's ``worker_factory`` with real dependencies: notification's own
``ServiceStore`` (migrated), the real ``ConsumerApi`` over an ``EventConsumer`` built from
``NotificationHandlers``, and the real sender (``DeliveryLoop``) whose Graph client is a fake
that records calls and refuses on demand — the messages the handlers record are really planned
and sent by it. Only what needs a broker or Meta is a fake: the outbox relay and the Graph API.
Intake's and routing's sides are ``SourceLog``s; routing's events carry the lifecycle routing's
own fold (``shared.core.events.lifecycle``) gives. ``test_every_notification_entrypoint_has_an_
interface_test`` fails when an entrypoint is added without a test here.
"""
from __future__ import annotations

import itertools
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

import eventlet
import pytest

from shared.core.errors import NotFound, ValidationFailed
from shared.core.events import isoformat_utc, utc_now
from shared.core.events.lifecycle import Lifecycle
from shared.core.store import ServiceStore
from shared.glue.subscriptions import handler_name
from services.notification.adapters import tables
from services.notification.adapters.deliveries import Deliveries
from services.notification.adapters.graph_client import CommentResult, GraphApiError, SendResult, classify_error
from services.notification.adapters.sender import DeliveryLoop
from services.notification.domain.policy import RetryPolicy
from services.notification.service import NotificationHandlers, NotificationService, build_store
from tests.interface.harness import (FakeRelay, SourceLog, check_coverage, consumer_api, covers, instrument,
                                     json_of, real_dependencies, request, rows, text_of)

PAGE, OTHER_PAGE, UNKNOWN_PAGE = "100000000000001", "200000000000002", "900000000000009"
TOKENS = {PAGE: "page-token-1", OTHER_PAGE: "page-token-2"}
NAMES = {"dpupr": "Dinas PUPR Provinsi NTB", "polda-ntb": "Polda NTB"}


class FakeGraph:
    """The Graph client's methods (``send_message``, ``reply_to_comment``, ``close``): each call is
    recorded as (what, page or comment, recipient, text, messaging_type, tag, ok); ``refuse(call)``
    may return a ``GraphApiError`` to raise instead of answering."""

    def __init__(self):
        self.calls: list[dict] = []
        self.refuse = lambda call: None
        self.ids = itertools.count(1)

    def _answer(self, call: dict) -> None:
        error = self.refuse(call)
        self.calls.append(dict(call, ok=error is None))
        if error is not None:
            raise error

    def send_message(self, page_id, access_token, recipient, text, messaging_type="RESPONSE", tag=None,
                     quick_replies=None):
        self._answer({"what": "send", "page_id": page_id, "token": access_token, "recipient": dict(recipient),
                      "text": text, "messaging_type": messaging_type, "tag": tag, "quick_replies": quick_replies})
        number = next(self.ids)
        return SendResult(f"m_{number}", recipient.get("id") or f"79{number:04d}")

    def reply_to_comment(self, comment_id, access_token, text):
        self._answer({"what": "comment", "page_id": None, "token": access_token,
                      "recipient": {"comment_id": comment_id}, "text": text})
        return CommentResult(f"{comment_id}_{next(self.ids)}")

    def close(self):
        pass

    def sent(self, **match) -> list[dict]:
        return [c for c in self.calls if c["ok"] and all(c.get(k) == v for k, v in match.items())]


def graph_error(code, subcode=None, status=400) -> GraphApiError:
    return GraphApiError(code, subcode, status, f"refused ({code})", classify_error(status, code, subcode))


def psid() -> str:
    return f"7{uuid.uuid4().int % 10**14:014d}"


def messenger(page=PAGE) -> dict:
    return {"page_id": page, "psid": psid()}


def instagram(page=PAGE) -> dict:
    """An Instagram Direct thread as intake files it: the linked Page, the IGSID, the platform."""
    return {"page_id": page, "psid": f"69{uuid.uuid4().int % 10**14:014d}", "platform": "instagram"}


def commenter(page=PAGE) -> dict:
    return {"page_id": page, "comment_id": f"1_{uuid.uuid4().int % 10**9}", "post_id": "1"}


@dataclass
class Notification:
    worker: NotificationService
    store: ServiceStore
    graph: FakeGraph
    sender: DeliveryLoop
    intake_log: SourceLog = field(default_factory=lambda: SourceLog("intake"))
    routing_log: SourceLog = field(default_factory=lambda: SourceLog("routing"))
    lifecycles: dict = field(default_factory=dict)
    codes: dict = field(default_factory=dict)

    # -- intake's and routing's sides -----------------------------------------------------------------
    def push(self, envelope: dict) -> dict:
        getattr(self.worker, handler_name(envelope["event_type"]))(envelope)
        return envelope

    def filed(self, reply_to, *, confidential=False, at=None, push=True) -> tuple[str, dict]:
        complaint_id = str(uuid.uuid4())
        at = isoformat_utc(at or utc_now())
        code = self.codes[complaint_id] = f"NTB-{uuid.uuid4().hex[:5].upper()}-{uuid.uuid4().hex[:5].upper()}"
        self.lifecycles[complaint_id] = Lifecycle(confidential)
        envelope = self.intake_log.append("ComplaintFiled", complaint_id, {
            "tracking_code": code, "channel": "facebook_comment" if "comment_id" in reply_to else
            "instagram_direct" if reply_to.get("platform") == "instagram" else "facebook_messenger",
            "filed_at": at, "text": "Jalan rusak di depan sekolah.", "attachments": [], "category": "infrastruktur",
            "region_code": "5203", "priority": "normal", "reasons": {"category": [], "region": [], "priority": []},
            "confidential": confidential, "reply_to": reply_to, "last_citizen_message_at": at, "external_ref": None})
        return complaint_id, (self.push(envelope) if push else envelope)

    def intake(self, event_type, complaint_id, data, push=True) -> dict:
        envelope = self.intake_log.append(event_type, complaint_id, data)
        return self.push(envelope) if push else envelope

    def routing(self, event_type, complaint_id, data, push=True) -> dict:
        """As routing records it: the event with the lifecycle after it."""
        lifecycle = self.lifecycles[complaint_id]
        lifecycle.apply(event_type, data)
        envelope = self.routing_log.append(event_type, complaint_id, dict(data, lifecycle=lifecycle.snapshot()))
        return self.push(envelope) if push else envelope

    def routed(self, complaint_id, agency="dpupr", push=True) -> dict:
        return self.routing("ComplaintRouted", complaint_id, {
            "lead_agencies": [agency], "coordinating_agencies": [], "decided_by": "operator:desk:ayu",
            "reason": "sesuai kewenangan", "priority": "normal",
            "due_at": {"first_response": isoformat_utc(utc_now() + timedelta(days=2))},
            "agency_names": {agency: NAMES[agency]}}, push=push)

    def asked(self, complaint_id, code, reply_to) -> dict:
        return self.intake("StatusRequested", complaint_id, {
            "tracking_code": code, "reply_to": reply_to, "message_at": isoformat_utc(utc_now())})

    # -- notification's side ----------------------------------------------------------------------------
    def deliver(self, timeout=5.0) -> None:
        """Run the real sender until nothing due is left (what its loop does on a wake-up)."""
        self.sender.running = True
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                started = self.sender.dispatch()
                while self.sender.busy_lanes and time.monotonic() < deadline:
                    eventlet.sleep(0.005)
                if not started:
                    return
            raise AssertionError("the sender did not settle")
        finally:
            self.sender.running = False

    def state(self, envelope) -> list[dict]:
        return self.worker.delivery_state(envelope["event_id"])

    def log(self, event_type=None) -> list[dict]:
        return [e for e in self.worker.events_since(0) if event_type in (None, e["event_type"])]

    def complaint(self, complaint_id) -> dict:
        [row] = rows(self.store, tables.complaints, tables.complaints.c.complaint_id == complaint_id)
        return row

    def woken(self) -> bool:
        """Whether the worker woke the sender since the last check."""
        ready = self.sender._wake.ready()
        self.sender._wake = eventlet.event.Event()
        return ready


@pytest.fixture
def notification(migrated_sqlite, monkeypatch, called):
    monkeypatch.setenv("FACEBOOK_PAGES", ",".join(f"{page}:{token}" for page, token in TOKENS.items()))
    store = build_store(migrated_sqlite("notification", build_store))
    store.prepare()
    graph = FakeGraph()
    sender = DeliveryLoop(Deliveries(store.database), graph,
                          RetryPolicy(base_seconds=0.01, jitter=0.0, rate_limit_min_pause_seconds=0.05),
                          send_rate=0, concurrency=4, probe_seconds=0.05, poll_seconds=0.02, spawn=eventlet.spawn)
    intake_log, routing_log = SourceLog("intake"), SourceLog("routing")
    worker = real_dependencies(NotificationService, store=store, relay=FakeRelay(), sender=sender,
                               consumer=consumer_api(store, NotificationHandlers,
                                                     {"intake": intake_log, "routing": routing_log}))
    yield Notification(instrument(worker, called), store, graph, sender, intake_log, routing_log)
    store.database.dispose()


def test_every_notification_entrypoint_has_an_interface_test():
    check_coverage(NotificationService, sys.modules[__name__])


# --- intake's events ----------------------------------------------------------------------------------

@covers("on_complaint_filed", "delivery_state", "events_since")
def test_a_messenger_filing_is_acknowledged_once_with_its_tracking_code(notification):
    reply_to = messenger()
    complaint_id, filed = notification.filed(reply_to)
    code = notification.codes[complaint_id]
    [pending] = notification.state(filed)
    assert (pending["kind"], pending["state"], pending["attempts"]) == ("acknowledgment", "pending", 0)
    assert notification.woken()  # the handler wakes the sender

    notification.deliver()
    [call] = notification.graph.calls
    assert call["recipient"] == {"id": reply_to["psid"]} and call["token"] == TOKENS[PAGE]
    assert code in call["text"] and (call["messaging_type"], call["tag"]) == ("RESPONSE", None)
    [sent] = notification.state(filed)
    assert (sent["state"], sent["channel"], sent["messaging_type"], sent["attempts"]) == ("sent", "messenger",
                                                                                        "RESPONSE", 1)
    [notified] = notification.log()
    assert notified["event_type"] == "CitizenNotified" and notified["complaint_id"] == complaint_id
    assert notified["data"]["trigger_event_id"] == filed["event_id"]

    notification.push(filed)  # redelivered by the broker: nothing new, nothing sent again
    notification.deliver()
    assert len(notification.state(filed)) == 1 and len(notification.graph.calls) == 1


@covers("on_complaint_filed")
def test_a_comment_filing_gets_one_private_reply_and_a_public_reply_with_the_code(notification):
    reply_to = commenter()
    complaint_id, filed = notification.filed(reply_to)
    notification.deliver()
    private, public = notification.state(filed)
    assert (private["channel"], private["state"], public["channel"], public["state"]) == (
        "comment_private", "sent", "comment_public", "sent")
    [private_call] = notification.graph.sent(what="send")
    [public_call] = notification.graph.sent(what="comment")
    assert private_call["recipient"] == public_call["recipient"] == {"comment_id": reply_to["comment_id"]}
    assert notification.codes[complaint_id] in public_call["text"]
    record = notification.complaint(complaint_id)
    assert record["private_reply_used"] and record["known_psid"]  # Meta answered with the commenter's PSID


@covers("on_complaint_filed", "undelivered")
def test_a_filing_on_an_unconfigured_page_is_listed_for_the_desk(notification):
    complaint_id, filed = notification.filed(messenger(UNKNOWN_PAGE))
    notification.deliver()
    [item] = notification.worker.undelivered()
    assert item["complaint_id"] == complaint_id and item["tracking_code"] == notification.codes[complaint_id]
    assert item["reason"] == "page_not_configured" and "belum terdaftar" in item["explanation"]
    assert notification.graph.calls == []
    [failed] = notification.log("CitizenNotificationFailed")
    assert failed["data"]["listed_for_desk"] is True and failed["data"]["permanent"] is True


@covers("on_complaint_amended")
def test_an_amendment_reopens_messenger_s_24_hours(notification):
    old = utc_now() - timedelta(hours=30)
    complaint_id, filed = notification.filed(messenger(), at=old)
    notification.deliver()
    assert notification.state(filed)[0]["reason"] == "outside_24h_automated"  # automated, 30 h later

    notification.intake("ComplaintAmended", complaint_id, {
        "text": "Tambahan: lubangnya makin besar.", "why": "more_messages",
        "last_citizen_message_at": isoformat_utc(utc_now()), "levy_reported": False, "attachments": [],
        "category": "infrastruktur", "region_code": "5203", "priority": "normal",
        "reasons": {"category": [], "region": [], "priority": []}})
    assert notification.complaint(complaint_id)["last_citizen_message_at"] > isoformat_utc(old)
    routed = notification.routed(complaint_id)
    notification.deliver()
    [message] = notification.state(routed)
    assert (message["state"], message["messaging_type"]) == ("sent", "RESPONSE")


@covers("on_citizen_message_received")
def test_a_commenter_who_writes_in_messenger_is_answered_there(notification):
    complaint_id, filed = notification.filed(commenter())
    notification.deliver()
    their_psid = psid()
    notification.intake("CitizenMessageReceived", complaint_id, {
        "text": "Halo, ini saya yang komentar tadi.", "attachments": [],
        "reply_to": {"page_id": PAGE, "psid": their_psid}, "message_at": isoformat_utc(utc_now()),
        "levy_reported": False})
    assert notification.complaint(complaint_id)["known_psid"] == their_psid
    routed = notification.routed(complaint_id)
    notification.deliver()
    [message] = notification.state(routed)
    assert message["channel"] == "messenger"
    assert notification.graph.sent(recipient={"id": their_psid})[0]["text"].startswith("Aduan Anda dengan kode")


@covers("on_citizen_comment_removed")
def test_a_removed_comment_gets_no_public_reply_any_more(notification):
    reply_to = commenter()
    complaint_id, filed = notification.filed(reply_to)
    notification.deliver()
    assert [m["state"] for m in notification.state(filed)] == ["sent", "sent"]
    notification.intake("CitizenCommentRemoved", complaint_id, {"comment_id": reply_to["comment_id"]})
    [remembered] = rows(notification.store, tables.comment_states,
                        tables.comment_states.c.comment_id == reply_to["comment_id"])
    assert remembered["complaint_id"] == complaint_id and remembered["removed_at"]
    routed = notification.routed(complaint_id)
    notification.deliver()
    # The one private reply is used and the comment is gone: listed for the desk, nothing posted.
    [message] = notification.state(routed)
    assert (message["state"], message["reason"]) == ("undeliverable", "comment_removed")
    assert len(notification.graph.sent(what="comment")) == 1  # the acknowledgment's, before the removal
    [item] = notification.worker.undelivered()
    assert item["reason"] == "comment_removed" and "dihapus" in item["explanation"]


@covers("on_complaint_filed", "on_complaint_routed")
def test_a_private_reply_refused_for_the_comment_falls_back_and_is_not_tried_again(notification):
    reply_to = commenter()
    notification.graph.refuse = lambda call: graph_error(10903) if call["what"] == "send" else None
    complaint_id, filed = notification.filed(reply_to)
    notification.deliver()
    private, public = notification.state(filed)
    assert (private["state"], private["reason"], private["code"]) == ("failed", "private_reply_refused", 10903)
    assert public["state"] == "sent"
    routed = notification.routed(complaint_id)
    notification.deliver()
    [message] = notification.state(routed)
    assert (message["state"], message["channel"]) == ("sent", "comment_public")
    assert len([c for c in notification.graph.calls if c["what"] == "send"]) == 1


@covers("on_status_requested")
def test_a_status_request_is_answered_fully_to_the_filer_and_publicly_to_others(notification):
    reply_to = messenger()
    complaint_id, _filed = notification.filed(reply_to)
    code = notification.codes[complaint_id]
    notification.routed(complaint_id)
    mine = notification.asked(complaint_id, code.lower(), reply_to)
    someone = commenter()
    stranger = notification.asked(complaint_id, code, someone)
    lost = messenger()
    unknown = notification.asked(complaint_id, "NTB-ZZZZZ-ZZZZZ", lost)
    notification.deliver()
    [full] = notification.state(mine)
    assert full["kind"] == "status_reply" and full["state"] == "sent"
    [answer] = [c for c in notification.graph.sent(recipient={"id": reply_to["psid"]})
                if c["text"].startswith("Status aduan")]
    assert answer["text"].startswith(f"Status aduan {code}: disetujui.") and NAMES["dpupr"] in answer["text"]
    # Anyone else: the public status words only, privately under the comment they asked in.
    [to_stranger] = notification.graph.sent(recipient={"comment_id": someone["comment_id"]})
    assert (to_stranger["what"], to_stranger["text"]) == ("send", f"Status aduan {code}: disetujui.")
    assert notification.state(stranger)[0]["channel"] == "comment_private"
    assert notification.state(unknown)[0]["state"] == "sent"
    [not_found] = notification.graph.sent(recipient={"id": lost["psid"]})
    assert "NTB-ZZZZZ-ZZZZZ tidak ditemukan" in not_found["text"]


# --- routing's events ---------------------------------------------------------------------------------

@covers("on_complaint_routed", "on_complaint_acknowledged", "on_complaint_responded", "on_complaint_resolved")
def test_the_citizen_hears_routing_the_answer_and_the_outcome_in_order(notification):
    reply_to = messenger()
    complaint_id, filed = notification.filed(reply_to)
    routed = notification.routed(complaint_id)
    acknowledged = notification.routing("ComplaintAcknowledged", complaint_id,
                                        {"agency_code": "dpupr", "actor": "dpupr:budi"})
    answered = notification.routing("ComplaintResponded", complaint_id, {
        "agency_code": "dpupr", "text": "Jalan sudah kami tambal.", "resolved": True, "actor": "dpupr:budi"})
    resolved = notification.routing("ComplaintResolved", complaint_id, {"actor": "dpupr:budi"})
    assert notification.state(acknowledged) == []  # nothing to tell
    notification.deliver()
    texts = [c["text"] for c in notification.graph.sent(recipient={"id": reply_to["psid"]})]
    assert len(texts) == 5
    assert "kode pelacakan" in texts[0] and NAMES["dpupr"] in texts[1]
    assert texts[2].startswith(f"Jawaban dari {NAMES['dpupr']}: Jalan sudah kami tambal.")
    assert "dinyatakan selesai" in texts[3] and "sudah benar-benar selesai" in texts[4]  # then "Sudah selesai?"
    [answer] = notification.state(answered)
    assert answer["kind"] == "answer" and notification.state(resolved)[0]["kind"] == "resolved"
    assert [m["state"] for e in (filed, routed, answered, resolved) for m in notification.state(e)] == ["sent"] * 5


@covers("on_complaint_dismissed")
def test_a_dismissal_tells_the_citizen_why(notification):
    complaint_id, _filed = notification.filed(messenger())
    dismissed = notification.routing("ComplaintDismissed", complaint_id, {
        "reason": "Bukan wewenang pemerintah provinsi.", "duplicate_of": None, "actor": "desk:ayu"})
    notification.deliver()
    [message] = notification.state(dismissed)
    assert (message["kind"], message["state"]) == ("dismissed", "sent")
    assert notification.graph.sent()[-1]["text"].endswith("Alasan: Bukan wewenang pemerintah provinsi.")


@covers("on_complaint_escalated", "on_complaint_rejected_by_agency", "on_status_requested")
def test_escalations_and_hand_backs_send_nothing_but_a_status_answer_shows_them(notification):
    reply_to = messenger()
    complaint_id, _filed = notification.filed(reply_to)
    notification.routed(complaint_id)
    escalated = notification.routing("ComplaintEscalated", complaint_id, {
        "breach": "first_response", "due_at": isoformat_utc(utc_now()), "notified": ["dpupr", "diskominfotik"]})
    rejected = notification.routing("ComplaintRejectedByAgency", complaint_id, {
        "agency_code": "dpupr", "reason": "bukan wewenang", "actor": "dpupr:budi", "returned_to_desk": True,
        "due_at": {"triage": isoformat_utc(utc_now() + timedelta(days=1))}})
    assert notification.state(escalated) == [] and notification.state(rejected) == []
    kept = rows(notification.store, tables.complaint_events, tables.complaint_events.c.complaint_id == complaint_id)
    assert {"ComplaintEscalated", "ComplaintRejectedByAgency"} <= {row["event_type"] for row in kept}
    code = notification.codes[complaint_id]
    notification.asked(complaint_id, code, reply_to)
    notification.deliver()
    status = notification.lifecycles[complaint_id].snapshot()["status"]
    assert notification.graph.sent()[-1]["text"].startswith(f"Status aduan {code}: {status}.")


@covers("on_complaint_confidentiality_changed", "on_complaint_responded", "undelivered")
def test_made_confidential_the_answer_names_no_agency_and_never_goes_under_the_comment(notification):
    complaint_id, filed = notification.filed(commenter())
    notification.routed(complaint_id, "polda-ntb")
    notification.deliver()  # the private reply is spent on the acknowledgment
    changed = notification.routing("ComplaintConfidentialityChanged", complaint_id, {
        "confidential": True, "reason": "pungutan liar dilaporkan", "actor": "desk:ayu"})
    assert notification.state(changed) == []
    answered = notification.routing("ComplaintResponded", complaint_id, {
        "agency_code": "polda-ntb", "text": "Petugas sudah kami periksa.", "resolved": False,
        "actor": "polda-ntb:budi"})
    public_before = len(notification.graph.sent(what="comment"))
    notification.deliver()
    [answer] = notification.state(answered)
    assert (answer["state"], answer["reason"]) == ("undeliverable", "private_reply_used")
    assert len(notification.graph.sent(what="comment")) == public_before  # nothing public
    listed = {item["trigger_event_id"]: item for item in notification.worker.undelivered()}
    assert "Balasan pribadi" in listed[answered["event_id"]]["explanation"]
    assert [m["state"] for m in notification.state(filed)] == ["sent", "sent"]


@covers("on_complaint_filed", "on_complaint_routed", "on_complaint_responded", "on_status_requested",
        "undelivered")
def test_an_instagram_complaint_is_answered_in_its_thread_and_a_refusal_outside_the_window_listed(notification):
    reply_to = instagram()
    complaint_id, filed = notification.filed(reply_to, confidential=True)
    code = notification.codes[complaint_id]
    notification.routed(complaint_id, "polda-ntb")
    answer_text = "Laporan Anda — terima kasih — sedang kami selidiki bersama petugas di lapangan. " * 20
    answered = notification.routing("ComplaintResponded", complaint_id, {
        "agency_code": "polda-ntb", "text": answer_text, "resolved": False, "actor": "polda-ntb:budi"})
    asked = notification.asked(complaint_id, code, reply_to)
    notification.deliver()
    calls = notification.graph.sent()
    assert calls and all(c["what"] == "send" and c["page_id"] == PAGE and c["recipient"] == {"id": reply_to["psid"]}
                         for c in calls)
    assert code in calls[0]["text"] and all(NAMES["polda-ntb"] not in c["text"] for c in calls)  # confidential
    parts = notification.state(answered)
    assert len(parts) >= 2 and {p["state"] for p in parts} == {"sent"}
    assert all(len(c["text"].encode("utf-8")) < 1000 for c in calls)  # Instagram's limit, in bytes
    [status] = notification.state(asked)
    assert status["state"] == "sent" and calls[-1]["text"].startswith(f"Status aduan {code}")
    assert {e["data"]["platform"] for e in notification.log("CitizenNotified")} == {"instagram"}

    # Meta says the thread's window is closed (Instagram's 10 / 2534022): listed for the desk.
    notification.graph.refuse = lambda call: graph_error(10, 2534022)
    resolved = notification.routing("ComplaintResolved", complaint_id, {"actor": "polda-ntb:budi"})
    notification.deliver()
    refused, question = notification.state(resolved)
    assert (refused["state"], refused["reason"], refused["code"]) == ("undeliverable", "outside_window", 10)
    # "Sudah selesai?" is skipped where Meta refuses, recorded, never a task for the desk (issue 19).
    assert (question["kind"], question["state"]) == ("follow_up_question", "failed")
    [listed] = [item for item in notification.worker.undelivered() if item["complaint_id"] == complaint_id]
    assert listed["kind"] == "resolved" and "batas waktu" in listed["explanation"]


# --- RPC: the desk ------------------------------------------------------------------------------------

@covers("undelivered", "delivery_state")
def test_undelivered_lists_refused_messages_oldest_first_without_texts(notification):
    notification.graph.refuse = lambda call: graph_error(551) if call["page_id"] == OTHER_PAGE else None
    first_id, first = notification.filed(messenger(OTHER_PAGE))
    notification.deliver()
    _second_id, second = notification.filed(messenger(OTHER_PAGE))
    _fine_id, fine = notification.filed(messenger())
    notification.deliver()
    listed = notification.worker.undelivered()
    assert [item["trigger_event_id"] for item in listed] == [first["event_id"], second["event_id"]]
    assert listed[0]["reason"] == "person_unavailable" and listed[0]["code"] == 551
    assert "551" in listed[0]["explanation"] and listed[0]["fallback_reasons"] == []
    assert "text" not in listed[0] and "recipient_psid" not in listed[0]
    assert [item["complaint_id"] for item in notification.worker.undelivered(limit=1)] == [first_id]
    assert notification.state(fine)[0]["state"] == "sent"
    [refused] = notification.state(first)
    assert (refused["state"], refused["last_error"]) == ("undeliverable", "permanent:551/None")
    assert notification.worker.delivery_state(str(uuid.uuid4())) == []


# --- RPC: the log and the quarantine ------------------------------------------------------------------

@covers("events_since")
def test_events_since_is_notification_s_log_in_order(notification):
    for _ in range(3):
        notification.filed(messenger())
    notification.filed(messenger(UNKNOWN_PAGE))
    notification.deliver()
    log = notification.worker.events_since(0)
    assert [e["position"] for e in log] == [1, 2, 3, 4]
    assert sorted(e["event_type"] for e in log) == ["CitizenNotificationFailed"] + ["CitizenNotified"] * 3
    assert notification.worker.events_since(2, 1) == log[2:3] and notification.worker.events_since(4) == []


@covers("event_ids_since", "events_since")
def test_event_ids_since_lists_notification_s_log(notification):
    for _ in range(2):
        notification.filed(messenger())
    notification.deliver()
    log = notification.worker.events_since(0)
    assert notification.worker.event_ids_since(0) == [[e["position"], e["event_id"]] for e in log]
    assert notification.worker.event_ids_since(1, 1) == [[2, log[1]["event_id"]]]


@covers("on_complaint_routed", "quarantined")
def test_an_unreadable_routing_event_is_quarantined_and_sends_nothing(notification):
    complaint_id, _filed = notification.filed(messenger())
    broken = notification.routing_log.append("ComplaintRouted", complaint_id, {"lead_agencies": ["dpupr"]})
    notification.push(broken)
    [item] = notification.worker.quarantined()
    assert (item["kind"], item["source"], item["position"]) == ("event", "routing", 1)
    assert item["reason"].startswith("ComplaintRouted v2:") and "lifecycle: Missing data" in item["reason"]
    assert len(rows(notification.store, tables.outgoing)) == 1  # the acknowledgment only


@covers("quarantined", "replay_quarantined")
def test_a_quarantined_filing_is_acknowledged_when_replayed(notification):
    complaint_id, filing = notification.filed(messenger(), push=False)
    with notification.store.database.transaction() as tx:  # as the consumer quarantines a handler that kept failing
        notification.store.quarantine.put(tx.connection, "event", "handler failed: OperationalError", filing,
                                          source="intake", position=filing["position"])
    [item] = notification.worker.quarantined()
    with pytest.raises(ValidationFailed):
        notification.worker.replay_quarantined(item["item_id"], " ")
    with pytest.raises(NotFound):
        notification.worker.replay_quarantined(item["item_id"] + 1, "ops:ani")
    assert notification.worker.replay_quarantined(item["item_id"], "ops:ani")["outcome"] == "replayed"
    assert notification.worker.quarantined() == []
    assert notification.worker.replay_quarantined(item["item_id"], "ops:ani")["outcome"] == "already_replayed"
    notification.deliver()
    [message] = notification.state(filing)
    assert message["state"] == "sent" and notification.complaint(complaint_id)["filed"]


# --- timers -------------------------------------------------------------------------------------------

@covers("catch_up")
def test_catch_up_pulls_what_push_did_not_deliver_and_wakes_the_sender(notification):
    complaint_id, filed = notification.filed(messenger(), push=False)
    routed = notification.routed(complaint_id, push=False)
    assert notification.state(filed) == []
    notification.worker.catch_up()
    assert notification.woken()
    assert notification.worker.consumer.checkpoint("intake") == 1
    assert notification.worker.consumer.checkpoint("routing") == 1
    notification.deliver()
    assert [m["state"] for e in (filed, routed) for m in notification.state(e)] == ["sent", "sent"]
    notification.worker.catch_up()  # nothing new
    notification.deliver()
    assert len(notification.graph.calls) == 2


# --- operations ---------------------------------------------------------------------------------------

@covers("health")
def test_health_is_degraded_while_a_page_token_is_refused_and_503_without_the_broker(notification, monkeypatch):
    from shared.glue import health
    from tests.interface.harness import BrokerAnswers, BrokerRefuses

    monkeypatch.setattr(health, "Connection", BrokerAnswers)
    ok = notification.worker.health(request("GET", "/health"))
    assert (ok.status_code, json_of(ok)) == (200, {"service": "notification", "status": "ok", "published": 0})

    token_works = {"value": False}
    notification.graph.refuse = lambda call: None if token_works["value"] else graph_error(190)
    _complaint_id, filed = notification.filed(messenger())
    notification.deliver()
    degraded = notification.worker.health(request("GET", "/health"))
    body = json_of(degraded)
    assert degraded.status_code == 200 and body["status"] == "degraded" and body["held_pages"] == [PAGE]
    assert "invalid_token" in body["reason"]
    assert notification.state(filed)[0]["state"] == "pending"  # held, not dropped

    monkeypatch.setattr(health, "Connection", BrokerRefuses)
    down = notification.worker.health(request("GET", "/health"))
    assert down.status_code == 503 and json_of(down)["reason"] == "broker: ConnectionRefusedError"

    token_works["value"] = True
    eventlet.sleep(0.06)  # the probe interval
    notification.deliver()
    monkeypatch.setattr(health, "Connection", BrokerAnswers)
    assert json_of(notification.worker.health(request("GET", "/health")))["status"] == "ok"
    assert notification.state(filed)[0]["state"] == "sent"


@covers("metrics")
def test_metrics_show_notification_s_unpublished_events_and_quarantine(notification):
    notification.filed(messenger())
    notification.filed(messenger())
    notification.deliver()
    response = notification.worker.metrics(request("GET", "/metrics"))
    assert response.status_code == 200 and response.content_type.startswith("text/plain")
    text = text_of(response)
    assert 'ntbcare_outbox_pending_events{service="notification"} 2.0' in text
    assert 'ntbcare_quarantined_items{service="notification"} 0.0' in text
    assert 'ntbcare_notifications_sent_total{channel="messenger"}' in text


# --- issue 19: "Sudah selesai?", the rating, reopening ---------------------------------------------------

def _answered(notification, complaint_id, reply_to, answer, words="", score=None):
    return notification.intake("CitizenAnsweredFollowUp", complaint_id, {
        "answer": answer, "words": words, "score": score, "via": "quick_reply",
        "tracking_code": notification.codes[complaint_id], "reply_to": reply_to,
        "message_at": isoformat_utc(utc_now())})


@covers("on_complaint_resolved", "on_citizen_answered_follow_up", "on_complaint_reopened", "on_citizen_rated",
        "on_complaint_reopen_refused", "on_complaint_responded")
def test_the_loop_asks_with_quick_replies_and_answers_every_answer_in_the_thread(notification):
    reply_to = messenger()
    complaint_id, _ = notification.filed(reply_to)
    notification.routed(complaint_id)
    notification.routing("ComplaintResponded", complaint_id, {
        "agency_code": "dpupr", "text": "Jalan sudah kami tambal.", "resolved": True, "actor": "dpupr:budi"})
    notification.routing("ComplaintResolved", complaint_id, {"actor": "dpupr:budi"})
    notification.deliver()
    question = notification.graph.sent()[-1]
    assert "sudah benar-benar selesai" in question["text"] and question["messaging_type"] == "RESPONSE"
    assert question["tag"] is None                                    # never HUMAN_AGENT
    assert question["quick_replies"] == [
        {"content_type": "text", "title": "Sudah", "payload": f"NTBCARE_DONE:{complaint_id}:YES"},
        {"content_type": "text", "title": "Belum", "payload": f"NTBCARE_DONE:{complaint_id}:NO"}]

    # "Belum": routing reopens; the citizen hears it (no quick replies on it).
    _answered(notification, complaint_id, reply_to, "not_solved", "belum pak")
    notification.routing("ComplaintReopened", complaint_id, {
        "words": "belum pak", "actor": "citizen", "reopen_count": 1, "to_desk": False,
        "due_at": {"follow_up": isoformat_utc(utc_now() + timedelta(days=5))}, "answer_event_id": None})
    notification.deliver()
    reopened = notification.graph.sent()[-1]
    assert "buka kembali" in reopened["text"] and NAMES["dpupr"] in reopened["text"]
    assert reopened["quick_replies"] is None

    # Resolved again, "Sudah": the rating question with 1–5; a 9 is asked again; 4 is thanked.
    notification.routing("ComplaintResponded", complaint_id, {
        "agency_code": "dpupr", "text": "Sudah kami tambal ulang.", "resolved": True, "actor": "dpupr:budi"})
    notification.routing("ComplaintResolved", complaint_id, {"actor": "dpupr:budi"})
    _answered(notification, complaint_id, reply_to, "solved", "Sudah")
    notification.deliver()
    rating = notification.graph.sent()[-1]
    assert "nilai 1" in rating["text"]
    assert [(q["title"], q["payload"]) for q in rating["quick_replies"]] == [
        (str(n), f"NTBCARE_RATE:{complaint_id}:{n}") for n in range(1, 6)]
    _answered(notification, complaint_id, reply_to, "unclear_rating", "9")
    notification.deliver()
    again = notification.graph.sent()[-1]
    assert "1 sampai 5" in again["text"] and len(again["quick_replies"]) == 5
    notification.routing("CitizenRated", complaint_id, {"score": 4, "words": "4", "agencies": ["dpupr"],
                                                         "answer_event_id": None})
    notification.routing("ComplaintReopenRefused", complaint_id, {
        "reason": "period_over", "words": "belum", "answer_event_id": None, "period_days": 14})
    _answered(notification, complaint_id, reply_to, "stale", "Belum")
    notification.deliver()
    texts = [c["text"] for c in notification.graph.sent()[-3:]]
    assert "(4 dari 5)" in texts[0]
    assert "lebih dari 14 hari" in " ".join(texts[1].split()) and "ADUAN BARU" in texts[1]
    assert "sudah tidak berlaku" in texts[2] and "saat ini: selesai" in " ".join(texts[2].split())
    assert all(c["recipient"] == {"id": reply_to["psid"]} for c in notification.graph.sent())


@covers("on_complaint_resolved", "on_complaint_filed")
def test_the_question_is_skipped_outside_the_24_hours_and_never_under_the_comment(notification):
    # A Messenger citizen silent for two days: automated messages may not go (HUMAN_AGENT is
    # for a human's answer only) — recorded as failed, not listed for the desk.
    reply_to = messenger()
    complaint_id, _ = notification.filed(reply_to, at=utc_now() - timedelta(days=2))
    notification.routed(complaint_id)
    resolved = notification.routing("ComplaintResolved", complaint_id, {"actor": "dpupr:budi"})
    notification.deliver()
    states = {m["kind"]: (m["state"], m["reason"]) for m in notification.state(resolved)}
    assert states["follow_up_question"] == ("failed", "outside_24h_automated")
    assert all(item["kind"] != "follow_up_question" for item in notification.worker.undelivered())
    # A comment complaint with no Messenger thread: neither the public nor the private reply asks.
    commented = commenter()
    cid, _ = notification.filed(commented)
    notification.routed(cid)
    resolved = notification.routing("ComplaintResolved", cid, {"actor": "dpupr:budi"})
    notification.deliver()
    question = [m for m in notification.state(resolved) if m["kind"] == "follow_up_question"]
    assert [m["state"] for m in question] == ["failed"]
    assert not any("selesai?" in c["text"] or c.get("quick_replies") for c in notification.graph.sent()
                   if c["recipient"] == {"comment_id": commented["comment_id"]})


@covers("on_complaint_linked", "on_complaint_routed", "on_complaint_responded")
def test_a_linked_complaint_tells_its_citizen_nothing_until_the_clusters_answer_reaches_them_too(notification):
    """Issue 19, duplicates: ``ComplaintLinked`` sends nothing; the answer routing records on each
    linked complaint reaches that complaint's own citizen, in their own thread."""
    primary_to, member_to = messenger(), messenger()
    primary, _ = notification.filed(primary_to)
    member, _ = notification.filed(member_to)
    notification.routed(primary)
    notification.deliver()
    sent_before = len(notification.graph.sent())
    linked = notification.routing("ComplaintLinked", member, {
        "primary_complaint_id": primary, "primary_tracking_code": notification.codes[primary],
        "reason": "sama", "actor": "diskominfotik:ayu", "because": ["same_category_region", "similar_words"],
        "score": 0.5})
    notification.deliver()
    assert notification.state(linked) == [] and len(notification.graph.sent()) == sent_before
    notification.routed(member)   # routing gives it the primary's agency, then the same answer
    for complaint_id in (primary, member):
        notification.routing("ComplaintResponded", complaint_id, {
            "agency_code": "dpupr", "text": "Jalan ditambal besok.", "resolved": False, "actor": "dpupr:budi"})
    notification.deliver()
    answered = [m for m in notification.graph.sent() if "Jalan ditambal besok." in (m["text"] or "")]
    assert sorted(m["recipient"]["id"] for m in answered) == sorted([primary_to["psid"], member_to["psid"]])


@covers("ask_again", "on_complaint_resolved", "on_citizen_answered_follow_up")
def test_a_resolution_nobody_answered_is_asked_once_more_where_the_window_allows(notification, monkeypatch):
    monkeypatch.setenv("NOTIFICATION_FOLLOW_UP_DAYS", "0.00001")     # ~1 s: "seven days" in a test
    reply_to = messenger()
    complaint_id, _ = notification.filed(reply_to)
    notification.routed(complaint_id)
    resolved = notification.routing("ComplaintResolved", complaint_id, {"actor": "dpupr:budi"})
    answered_id, _ = notification.filed(messenger())
    notification.routed(answered_id)
    answered_resolved = notification.routing("ComplaintResolved", answered_id, {"actor": "dpupr:budi"})
    time.sleep(1.2)
    _answered(notification, answered_id, None, "solved", "Sudah")    # this citizen answered already
    notification.deliver()
    before = len(notification.graph.sent(recipient={"id": reply_to["psid"]}))

    notification.worker.ask_again()
    notification.deliver()
    *earlier, first_question = notification.graph.sent(recipient={"id": reply_to["psid"]})[:before]
    again = notification.graph.sent(recipient={"id": reply_to["psid"]})[before:]
    assert [c["text"] for c in again] == [first_question["text"]]    # the same question, once more
    assert [q["title"] for q in again[0]["quick_replies"]] == ["Sudah", "Belum"]
    assert [m["kind"] for m in notification.state(resolved)] == ["resolved", "follow_up_question",
                                                                 "follow_up_question"]
    notification.worker.ask_again()                                 # once only
    assert len(notification.state(resolved)) == 3
    # The citizen who answered is not asked again.
    assert [m["kind"] for m in notification.state(answered_resolved)] == ["resolved", "follow_up_question"]


@covers("on_complaint_reclassified", "on_complaint_routed")
def test_a_desk_correction_tells_the_citizen_nothing_but_its_reroute_names_the_new_agency(notification):
    """Issue 20: ``ComplaintReclassified`` is kept (its lifecycle) and sends nothing; the re-route
    routing records after it is told by the usual routed message, with the new agency."""
    reply_to = messenger()
    complaint_id, _ = notification.filed(reply_to)
    notification.routed(complaint_id, "dpupr")
    notification.deliver()
    sent_before = len(notification.graph.sent())
    corrected = notification.routing("ComplaintReclassified", complaint_id, {
        "category_before": "infrastruktur", "category_after": "lingkungan_hidup", "region_before": "5201",
        "region_after": "5201", "reason": "sampah, bukan jalan", "actor": "diskominfotik:ayu",
        "rerouted": True})
    notification.deliver()
    assert notification.state(corrected) == [] and len(notification.graph.sent()) == sent_before
    kept = rows(notification.store, tables.complaint_events, tables.complaint_events.c.complaint_id == complaint_id)
    assert "ComplaintReclassified" in {row["event_type"] for row in kept}
    rerouted = notification.routed(complaint_id, "polda-ntb")
    notification.deliver()
    [message] = notification.state(rerouted)
    assert message["kind"] == "routed" and message["state"] == "sent"
    assert NAMES["polda-ntb"] in notification.graph.sent()[-1]["text"]
