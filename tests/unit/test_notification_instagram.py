"""Instagram Direct in notification, pure and on a SQLite file: a complaint intake filed as
``instagram_direct`` (``reply_to.platform: instagram``, the IGSID, the linked Page) is answered in its
thread through the Page's Send API under Instagram's rules — the same 24 h ``RESPONSE`` window,
``HUMAN_AGENT`` (only when approved) up to 7 days, no comment channels, parts under 1,000 UTF-8
bytes — Meta's outside-window refusal ``10 / 2534022`` ends in the desk's list, and the
acknowledgment, confidentiality and ``CEK`` answers work as on Messenger."""
from __future__ import annotations

import itertools
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from shared.core.consumer import EventConsumer
from shared.core.events import isoformat_utc, utc_now
from services.notification.adapters import tables
from services.notification.application.handling import NotificationHandlers
from services.notification.domain import delivery, messages, policy
from services.notification.domain.composer import ComplaintView, drafts_for_event, is_filer, status_reply
from services.notification.domain.delivery import CallError, ComplaintRecord, Finish, NextChannel, PendingMessage, Send
from services.notification.domain.messages import INSTAGRAM_TEXT_LIMIT_BYTES, split_for, split_text, utf8_length
from services.notification.domain.policy import (HUMAN_AGENT, MESSAGE_TAG, MESSENGER, PLATFORM_INSTAGRAM, RESPONSE,
                                                 MessageKind, plan_delivery)
from services.notification.service import build_store
from tests.support.lifecycle import snapshot

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
PAGE = "700000000000007"  # the Page the Instagram account is linked to
IGSID = "6900000000000042"
INSTAGRAM = {"page_id": PAGE, "psid": IGSID, "platform": "instagram"}
CODE = "NTB-AB12C-DE34F"
NAMES = {"dpupr": "Dinas PUPR Provinsi NTB", "polda-ntb": "Polda NTB"}


def plan(age, kind=MessageKind.ROUTED, human_written=False, approved=True, reply_to=INSTAGRAM):
    return plan_delivery(reply_to, kind, human_written, NOW - age, None, False, None, NOW,
                         human_agent_approved=approved)


# -- the windows: Messenger's, in the Instagram thread ---------------------------------------------

def test_inside_24_hours_a_response_to_the_igsid_through_the_linked_page():
    found = plan(timedelta(hours=23, minutes=59))
    [attempt] = found.attempts
    assert (found.page_id, attempt.channel, attempt.messaging_type, attempt.tag) == (PAGE, MESSENGER, RESPONSE, None)
    assert attempt.recipient == {"id": IGSID} and attempt.platform == PLATFORM_INSTAGRAM
    assert attempt.deadline == NOW - timedelta(hours=23, minutes=59) + timedelta(hours=24)


def test_between_24_hours_and_7_days_only_a_human_answer_with_human_agent_when_approved():
    late = timedelta(days=3)
    [attempt] = plan(late, MessageKind.ANSWER, human_written=True).attempts
    assert (attempt.messaging_type, attempt.tag, attempt.platform) == (MESSAGE_TAG, HUMAN_AGENT, PLATFORM_INSTAGRAM)
    assert attempt.tag in policy.TAGS_BY_PLATFORM[PLATFORM_INSTAGRAM] == ("HUMAN_AGENT",)
    unapproved = plan(late, MessageKind.ANSWER, human_written=True, approved=False)
    assert unapproved.skipped_reason == policy.HUMAN_AGENT_NOT_APPROVED and unapproved.undeliverable
    automated = plan(late)
    assert automated.skipped_reason == policy.OUTSIDE_24H_AUTOMATED and automated.undeliverable
    closed = plan(timedelta(days=7, minutes=1), MessageKind.ANSWER, human_written=True)
    assert closed.skipped_reason == policy.MESSENGER_WINDOW_CLOSED and closed.undeliverable


def test_an_instagram_thread_has_no_comment_channels():
    # Even a reply_to naming a comment is answered in the thread only …
    with_comment = dict(INSTAGRAM, comment_id="17900000000000001")
    found = plan(timedelta(hours=1), reply_to=with_comment)
    assert [a.channel for a in found.attempts] == [MESSENGER] and found.fallback_reasons == ()
    # … and without the thread, nothing: listed for the desk.
    comment_only = {"page_id": PAGE, "comment_id": "17900000000000001", "platform": "instagram"}
    nothing = plan(timedelta(hours=1), reply_to=comment_only)
    assert nothing.attempts == () and nothing.skipped_reason == policy.INVALID_REPLY_TO and nothing.undeliverable
    late = plan(timedelta(days=2), reply_to=with_comment)  # automated after 24 h: no public fallback
    assert late.attempts == () and late.skipped_reason == policy.OUTSIDE_24H_AUTOMATED


def test_a_platform_notification_cannot_answer_on_is_listed_for_the_desk():
    assert policy.platform_of(None) == policy.platform_of({"psid": "1"}) == policy.PLATFORM_MESSENGER
    assert policy.platform_of(INSTAGRAM) == PLATFORM_INSTAGRAM
    assert policy.platform_of({"platform": "whatsapp"}) is None
    found = plan(timedelta(hours=1), reply_to=dict(INSTAGRAM, platform="whatsapp"))
    assert found.skipped_reason == policy.INVALID_REPLY_TO and found.undeliverable


# -- Meta's outside-window refusal on Instagram: 10 / 2534022 ---------------------------------------

def test_2534022_is_its_own_row_outside_the_window_change_channel_or_the_desk():
    rule = policy.error_rule(400, 10, 2534022)
    assert (rule.code, rule.subcode, rule.kind, rule.action, rule.reason) == (
        10, 2534022, policy.OUTSIDE_WINDOW, policy.NEXT_CHANNEL, policy.OUTSIDE_WINDOW_REASON)
    assert rule is not policy.error_rule(400, 10, 2018278) and rule is not policy.error_rule(400, 10, None)
    assert policy.describe_action(rule) == "change channel (none left: undeliverable, listed for the desk)"
    assert "github.com" in policy.SOURCES[rule.source] and not rule.alert
    assert f"| `10 / 2534022` | {rule.meaning} |" in policy.render_error_table()


def _message(**fields) -> PendingMessage:
    values = dict(message_id="m-1", trigger_event_id="e-1", complaint_id="c-1", kind=MessageKind.ANSWER,
                  text="Jawaban dari Dinas PUPR: jalan ditambal.", human_written=True)
    values.update(fields)
    return PendingMessage(**values)


def test_refused_outside_the_window_an_instagram_message_ends_listed_for_the_desk():
    record = ComplaintRecord(reply_to=INSTAGRAM, last_citizen_message_at=NOW - timedelta(hours=2))
    msg = _message()
    send = delivery.decide_send(msg, delivery.plan_for(msg, record, NOW))
    assert isinstance(send, Send) and send.attempt.platform == PLATFORM_INSTAGRAM
    step = delivery.after_error(msg, send, CallError(10, 2534022, 400), NOW)
    assert isinstance(step, NextChannel) and step.excluded_channels == (MESSENGER,)
    assert (step.reason, step.code, step.failed_call.last_error) == ("outside_window", 10, "outside_window:10/2534022")
    again = _message(excluded_channels=frozenset(step.excluded_channels), attempts=1, reason=step.reason,
                     code=step.code)
    final = delivery.decide_send(again, delivery.plan_for(again, record, NOW))
    assert final == Finish("undeliverable", "outside_window", 10, permanent=True)
    assert final.listed_for_desk and delivery.failed_event(again, final)["listed_for_desk"]
    assert "di luar batas waktu" in messages.desk_reason("outside_window", code=10)


def test_citizen_notified_names_the_instagram_thread():
    record = ComplaintRecord(reply_to=INSTAGRAM, last_citizen_message_at=NOW - timedelta(hours=2))
    msg = _message()
    send = delivery.decide_send(msg, delivery.plan_for(msg, record, NOW))
    sent = delivery.after_success(msg, send, "m_1", IGSID)
    data = delivery.notified_event(msg, sent)
    assert (data["channel"], data["platform"], data["messaging_type"]) == ("messenger", "instagram", "RESPONSE")
    assert "recipient_psid" not in data and not sent.private_reply_used
    on_messenger = ComplaintRecord(reply_to={"page_id": PAGE, "psid": "7000"},
                                   last_citizen_message_at=NOW - timedelta(hours=2))
    send = delivery.decide_send(msg, delivery.plan_for(msg, on_messenger, NOW))
    assert "platform" not in delivery.notified_event(msg, delivery.after_success(msg, send, "m_2", "7000"))


# -- Instagram's shorter texts ---------------------------------------------------------------------------

def test_instagram_parts_stay_under_1000_utf8_bytes_and_messenger_keeps_2000_characters():
    sentence = "Tim dinas — bersama warga — meninjau jalan yang rusak dan menjadwalkan perbaikannya. "
    text = sentence * 40  # ~3,500 characters, more bytes
    parts = split_for(text, PLATFORM_INSTAGRAM)
    assert len(parts) >= 4 and all(utf8_length(p) < INSTAGRAM_TEXT_LIMIT_BYTES for p in parts)
    assert " ".join(parts).split() == text.split()
    assert all(p.endswith(".") for p in parts)  # still cut at sentence ends
    assert split_for(text, "messenger") == split_for(text, None) == split_text(text)
    assert all(len(p) < 2000 for p in split_text(text)) and len(split_text(text)) < len(parts)


def test_instagram_byte_edges_and_words_are_never_cut_inside_a_character():
    assert split_for("a" * 999, PLATFORM_INSTAGRAM) == ["a" * 999]
    assert split_for("a" * 1000, PLATFORM_INSTAGRAM) == ["a" * 999, "a"]
    assert split_for("é" * 499, PLATFORM_INSTAGRAM) == ["é" * 499]  # 998 bytes
    assert split_for("é" * 500, PLATFORM_INSTAGRAM) == ["é" * 499, "é"]  # 1,000 bytes is too many
    emoji = "🙏" * 600  # one 2,400-byte word: cut between characters, under 1,000 bytes each
    parts = split_for(f"Terima kasih {emoji} sekali.", PLATFORM_INSTAGRAM)
    assert all(utf8_length(p) < 1000 for p in parts) and "".join(parts).count("🙏") == 600
    with pytest.raises(ValueError):
        split_text("x", 4, utf8_length)


# -- what the citizen is told: as on Messenger ------------------------------------------------------------

VIEW = ComplaintView(CODE, "instagram_direct", INSTAGRAM, False)
CONFIDENTIAL = ComplaintView(CODE, "instagram_direct", INSTAGRAM, True)


def test_the_acknowledgment_and_updates_have_no_public_reply():
    [ack] = drafts_for_event(VIEW, "ComplaintFiled", {"channel": "instagram_direct"})
    assert ack.kind == MessageKind.ACKNOWLEDGMENT and CODE in ack.text and f"CEK {CODE}" in ack.text
    assert ack.public_text is None and ack.excluded_channels == ()
    lifecycle = snapshot("disetujui", leads=["dpupr"], names=NAMES)
    [routed] = drafts_for_event(VIEW, "ComplaintRouted", {"lifecycle": lifecycle})
    assert NAMES["dpupr"] in routed.text and routed.public_text is None


def test_a_confidential_instagram_complaint_names_no_agency():
    lifecycle = snapshot("disetujui", leads=["polda-ntb"], names=NAMES, confidential=True)
    [routed] = drafts_for_event(CONFIDENTIAL, "ComplaintRouted", {"lifecycle": lifecycle})
    [answer] = drafts_for_event(CONFIDENTIAL, "ComplaintResponded", {
        "lifecycle": lifecycle, "agency_code": "polda-ntb", "text": "Sedang kami selidiki."})
    for draft in (routed, answer):
        assert "Polda" not in draft.text and draft.public_text is None
    assert answer.human_written and "Sedang kami selidiki." in answer.text
    status = status_reply(CODE, CONFIDENTIAL, [{"event_type": "ComplaintRouted", "occurred_at": isoformat_utc(NOW),
                                                "data": {"lifecycle": lifecycle}}], True, False)
    assert "Polda" not in status.text and status.public_text is None


def test_the_filer_is_the_same_igsid_in_the_same_app():
    assert is_filer(VIEW, None, dict(INSTAGRAM))
    assert not is_filer(VIEW, None, {"page_id": PAGE, "psid": IGSID})  # a Messenger PSID with the same digits
    assert not is_filer(VIEW, None, dict(INSTAGRAM, psid="69999"))
    messenger_view = ComplaintView(CODE, "facebook_messenger", {"page_id": PAGE, "psid": IGSID}, False)
    assert not is_filer(messenger_view, None, dict(INSTAGRAM))


# -- recorded by the handlers ------------------------------------------------------------------------------

class Complaints:
    """Intake and routing by hand, each event through notification's consumer on a SQLite file."""

    def __init__(self, store, consumer):
        self.store, self.consumer = store, consumer
        self.positions = {"intake": itertools.count(1), "routing": itertools.count(1)}
        self.versions: dict[tuple, itertools.count] = {}

    def send(self, source, event_type, complaint_id, data):
        version = next(self.versions.setdefault((source, complaint_id), itertools.count(1)))
        envelope = {"event_id": str(uuid.uuid4()), "event_type": event_type,
                    "schema_version": 2 if source == "routing" else 1, "source": source,
                    "position": next(self.positions[source]), "complaint_id": complaint_id, "version": version,
                    "occurred_at": isoformat_utc(utc_now()), "data": data}
        assert self.consumer.handle(envelope, source) == "handled"
        return envelope["event_id"]

    def file(self, complaint_id, reply_to, at):
        return self.send("intake", "ComplaintFiled", complaint_id, {
            "tracking_code": CODE, "channel": "instagram_direct", "filed_at": isoformat_utc(at),
            "text": "Jalan rusak.", "attachments": [], "category": "infrastruktur", "region_code": "5203",
            "priority": "normal", "reasons": {"category": [], "region": [], "priority": []},
            "confidential": False, "reply_to": reply_to, "last_citizen_message_at": isoformat_utc(at),
            "external_ref": None})

    def messages(self, trigger_event_id):
        with self.store.database.read() as connection:
            return [dict(row) for row in connection.execute(select(tables.outgoing).where(
                tables.outgoing.c.trigger_event_id == trigger_event_id).order_by(tables.outgoing.c.seq)).mappings()]

    def complaint(self, complaint_id):
        with self.store.database.read() as connection:
            return dict(connection.execute(select(tables.complaints).where(
                tables.complaints.c.complaint_id == complaint_id)).mappings().one())


@pytest.fixture()
def notification(tmp_path):
    store = build_store(f"sqlite:///{tmp_path / 'notification.db'}")
    store.database.create_all()
    consumer = EventConsumer(store.database, store.quarantine, NotificationHandlers(store).table(),
                             store.checkpoints, store.processed, store.failures)
    return Complaints(store, consumer)


def test_an_instagram_answer_is_recorded_in_parts_instagram_takes(notification):
    complaint_id = str(uuid.uuid4())
    at = utc_now() - timedelta(hours=1)
    [ack] = notification.messages(notification.file(complaint_id, INSTAGRAM, at))
    assert ack["public_text"] is None and ack["page_id"] == PAGE
    assert notification.complaint(complaint_id)["last_citizen_message_at"] == isoformat_utc(at)
    lifecycle = snapshot("diproses", leads=["dpupr"], names=NAMES)
    notification.send("routing", "ComplaintRouted", complaint_id, {
        "lead_agencies": ["dpupr"], "coordinating_agencies": [], "decided_by": "operator:desk:ayu",
        "reason": "jalan", "priority": "normal", "due_at": {}, "lifecycle": snapshot("disetujui", leads=["dpupr"],
                                                                                        names=NAMES)})
    long_answer = "Tim kami — bersama warga — sudah meninjau lokasi dan menjadwalkan perbaikan. " * 30
    answered = notification.send("routing", "ComplaintResponded", complaint_id, {
        "agency_code": "dpupr", "text": long_answer, "resolved": False, "actor": "dpupr:budi",
        "lifecycle": lifecycle})
    parts = notification.messages(answered)
    assert len(parts) >= 3 and [p["part_index"] for p in parts] == list(range(len(parts)))
    assert all(utf8_length(p["text"]) < 1000 and p["public_text"] is None for p in parts)
    assert all(p["human_written"] for p in parts)


def test_cek_on_instagram_is_answered_fully_to_the_filer_in_parts_instagram_takes(notification):
    complaint_id = str(uuid.uuid4())
    notification.file(complaint_id, INSTAGRAM, utc_now() - timedelta(days=2))
    asked_at = isoformat_utc(utc_now())
    asked = notification.send("intake", "StatusRequested", complaint_id, {
        "tracking_code": CODE.lower(), "reply_to": INSTAGRAM, "message_at": asked_at, "known": True})
    [answer] = notification.messages(asked)
    assert answer["audience"] == "asker" and answer["text"].startswith(f"Status aduan {CODE}")
    assert "Pembaruan" in answer["text"]  # the full status: the filer asked
    # The filer's question is a message of theirs in the thread: it reopens the 24 hours.
    assert notification.complaint(complaint_id)["last_citizen_message_at"] == asked_at


def test_a_message_in_another_app_s_thread_opens_no_window_in_the_complaint_s(notification):
    complaint_id = str(uuid.uuid4())
    filed_at = utc_now() - timedelta(days=2)
    notification.file(complaint_id, INSTAGRAM, filed_at)
    notification.send("intake", "CitizenMessageReceived", complaint_id, {
        "text": "Ada kabar?", "attachments": [], "reply_to": {"page_id": PAGE, "psid": "7000"},
        "message_at": isoformat_utc(utc_now()), "levy_reported": False})
    assert notification.complaint(complaint_id)["last_citizen_message_at"] == isoformat_utc(filed_at)
    later = isoformat_utc(utc_now())
    notification.send("intake", "CitizenMessageReceived", complaint_id, {
        "text": "Ada kabar?", "attachments": [], "reply_to": INSTAGRAM, "message_at": later,
        "levy_reported": False})
    assert notification.complaint(complaint_id)["last_citizen_message_at"] == later
