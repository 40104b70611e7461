"""Intake's inbox and conversation state on a real database (SQLite and PostgreSQL), in process:
a closed complaint makes the next message a new complaint, a private reply's PSID continues the
comment's complaint, replies under a complaint comment continue it, and reprocessing a stored
body files nothing twice."""
from __future__ import annotations

import copy
import json
import uuid

import pytest

from shared.core.consumer import EventConsumer
from shared.core.db import Database
from shared.core.events import isoformat_utc, new_envelope, utc_now
from services.intake.adapters import tables
from services.intake.application.inbox import WebhookInbox, WebhookSettings
from services.intake.service import IntakeHandlers
from services.intake.adapters.store import build_store, find_complaint
from shared.core.events.catalogue import LATEST_VERSION
from tests.support import facebook as fb
from tests.support import lifecycle
from tests.support.platform import DEV_PAGE_ID


_first_store = []


def store_at(url: str):
    """Intake's store on another database: its tables are defined once per process (module-level
    metadata), so later stores share them and only get a database of their own."""
    if not _first_store:
        _first_store.append(build_store(url))
        return _first_store[0]
    clone = copy.copy(_first_store[0])
    clone.database = Database("intake", url, tables.metadata, clone.event_store)
    return clone


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        built = store_at(f"sqlite:///{tmp_path / 'intake.db'}")
    else:
        built = store_at(request.getfixturevalue("postgres_url"))
    built.database.create_all()
    yield built
    built.database.dispose()


def deliver(inbox: WebhookInbox, *entries) -> dict:
    return inbox.process(inbox.store_body(json.dumps(fb.page_body(*entries)).encode()))


def log_of(store, event_type=None) -> list[dict]:
    found = store.events_since(0, 1000)
    return [e for e in found if event_type is None or e["event_type"] == event_type]


def envelope(source, event_type, complaint_id, position, data) -> dict:
    return new_envelope(event_type=event_type, schema_version=LATEST_VERSION[event_type],
                        source=source, position=position,
                        complaint_id=complaint_id, version=position, occurred_at=isoformat_utc(utc_now()),
                        data=data).to_dict()


def test_closed_complaint_then_new_one_and_private_reply_hand_over(store):
    inbox = WebhookInbox(store, WebhookSettings(frozenset(), 120))
    consumer = EventConsumer(store.database, store.quarantine, IntakeHandlers(store).table(), store.checkpoints,
                             store.processed, store.failures)
    psid, start = fb.new_psid(), fb.now_ms() - 3_600_000
    assert deliver(inbox, fb.messaging_entry(DEV_PAGE_ID, fb.text_message(
        DEV_PAGE_ID, psid, "Jalan rusak di Praya", start))) == {"filed": 1}
    first = log_of(store, "ComplaintFiled")[0]["complaint_id"]

    assert consumer.handle(envelope("routing", "ComplaintResolved", first, 1, {
        "actor": "agency:pupr", "lifecycle": lifecycle.snapshot("selesai")}),
                           "routing") == "handled"
    # Even inside the bubble window: the complaint is closed, so this is a new one.
    assert deliver(inbox, fb.messaging_entry(DEV_PAGE_ID, fb.text_message(
        DEV_PAGE_ID, psid, "Sekarang lampu jalan mati di Praya", start + 30_000))) == {"filed": 1}
    second = log_of(store, "ComplaintFiled")[1]["complaint_id"]
    assert second != first
    assert consumer.handle(envelope("routing", "ComplaintDismissed", second, 2,
                                    {"reason": "duplikat", "duplicate_of": None, "actor": "desk:ani",
                                     "lifecycle": lifecycle.snapshot("ditolak")}),
                           "routing") == "handled"

    # A comment complaint; notification's private reply tells intake the commenter's PSID.
    comment = fb.comment_change(DEV_PAGE_ID, "Sampah di pantai Senggigi tidak diangkut")
    assert deliver(inbox, fb.changes_entry(DEV_PAGE_ID, comment)) == {"filed": 1}
    from_comment = log_of(store, "ComplaintFiled")[2]["complaint_id"]
    reply = fb.comment_change(DEV_PAGE_ID, "Sudah seminggu begini", parent_id=comment["value"]["comment_id"],
                              post_id=comment["value"]["post_id"])
    assert deliver(inbox, fb.changes_entry(DEV_PAGE_ID, reply)) == {"message_received": 1}
    commenter = fb.new_psid()
    notified = envelope("notification", "CitizenNotified", from_comment, 1, {
        "trigger_event_id": str(uuid.uuid4()), "channel": "comment_private", "messaging_type": None,
        "tag": None, "graph_message_id": "m_private", "recipient_psid": commenter})
    assert consumer.handle(notified, "notification") == "handled"
    assert deliver(inbox, fb.messaging_entry(DEV_PAGE_ID, fb.text_message(
        DEV_PAGE_ID, commenter, "Ini foto sampahnya, mohon segera"))) == {"message_received": 1}
    continued = log_of(store, "CitizenMessageReceived")
    assert [e["complaint_id"] for e in continued] == [from_comment, from_comment]
    assert continued[1]["data"]["reply_to"] == {"page_id": DEV_PAGE_ID, "psid": commenter}
    assert continued[0]["data"]["reply_to"]["comment_id"] == reply["value"]["comment_id"]
    assert len(log_of(store, "ComplaintFiled")) == 3


def test_reprocessing_and_redelivery_file_nothing_twice(store):
    inbox = WebhookInbox(store, WebhookSettings(frozenset({DEV_PAGE_ID}), 120))
    psid = fb.new_psid()
    body = fb.page_body(fb.messaging_entry(DEV_PAGE_ID, fb.text_message(DEV_PAGE_ID, psid, "Pungli di pasar Selong"),
                                           {"sender": {"id": psid}}),
                        fb.changes_entry(DEV_PAGE_ID, fb.comment_change(DEV_PAGE_ID, "Jembatan rusak di Woha")))
    raw = json.dumps(body).encode()
    first = inbox.store_body(raw)
    assert inbox.process(first) == {"filed": 2, "quarantined": 1}
    assert inbox.process(first) == {}                       # already processed
    again = inbox.store_body(raw)                            # Meta delivers it again
    assert inbox.process(again) == {"duplicate": 2, "quarantined": 1}
    assert len(log_of(store, "ComplaintFiled")) == 2
    with store.database.read() as connection:
        assert len(store.quarantine.list(connection)) == 2   # one per delivery, kept with its reason
    # The edit of a comment intake never saw added files it (the add was lost or predates us).
    edited = fb.comment_change(DEV_PAGE_ID, "Drainase tersumbat di Ampenan", verb="edited")
    assert deliver(inbox, fb.changes_entry(DEV_PAGE_ID, edited)) == {"filed": 1}
    assert deliver(inbox, fb.changes_entry(DEV_PAGE_ID, edited)) == {"duplicate": 1}


def test_confidentiality_follows_the_complaint(store):
    """"Selamat pagi, mau lapor" then a bubble about an illegal levy: the amendment reports the
    levy and intake keeps the reporter's complaint confidential; the desk's decision (routing's
    lifecycle) is what intake shows afterwards."""
    inbox = WebhookInbox(store, WebhookSettings(frozenset(), 120))
    consumer = EventConsumer(store.database, store.quarantine, IntakeHandlers(store).table(),
                             store.checkpoints, store.processed, store.failures)
    psid, start = fb.new_psid(), fb.now_ms() - 60_000
    assert deliver(inbox, fb.messaging_entry(DEV_PAGE_ID, fb.text_message(
        DEV_PAGE_ID, psid, "Selamat pagi, mau lapor", start))) == {"filed": 1}
    filed = log_of(store, "ComplaintFiled")[0]
    assert filed["data"]["confidential"] is False
    assert deliver(inbox, fb.messaging_entry(DEV_PAGE_ID, fb.text_message(
        DEV_PAGE_ID, psid, "petugas desa minta uang 300rb untuk bikin KTP, katanya pungutan",
        start + 20_000))) == {"amended": 1}
    [amended] = log_of(store, "ComplaintAmended")
    assert amended["schema_version"] == 2 and amended["data"]["levy_reported"] is True
    complaint_id = filed["complaint_id"]
    with store.database.read() as connection:
        assert find_complaint(connection, complaint_id)["confidential"] is True

    unmarked = envelope("routing", "ComplaintConfidentialityChanged", complaint_id, 1, {
        "confidential": False, "reason": "bukan pungli: biaya resmi", "actor": "desk:ani",
        "lifecycle": lifecycle.snapshot("diterima", confidential=False)})
    assert consumer.handle(unmarked, "routing") == "handled"
    with store.database.read() as connection:
        assert find_complaint(connection, complaint_id)["confidential"] is False
    # More words that report no levy leave the desk's decision alone.
    assert deliver(inbox, fb.messaging_entry(DEV_PAGE_ID, fb.text_message(
        DEV_PAGE_ID, psid, "terima kasih", start + 40_000))) == {"amended": 1}
    assert log_of(store, "ComplaintAmended")[1]["data"]["levy_reported"] is False


def test_a_levy_told_after_the_first_burst_is_classified_too(store):
    """Any text of the complaint counts: a message after the first burst (CitizenMessageReceived,
    not an amendment) that reports an illegal levy says so (v2's ``levy_reported``) and intake
    keeps the complaint confidential; a message that reports none says ``False``."""
    inbox = WebhookInbox(store, WebhookSettings(frozenset(), 120))
    psid, start = fb.new_psid(), fb.now_ms() - 3_600_000
    assert deliver(inbox, fb.messaging_entry(DEV_PAGE_ID, fb.text_message(
        DEV_PAGE_ID, psid, "Jalan di desa kami rusak parah", start))) == {"filed": 1}
    complaint_id = log_of(store, "ComplaintFiled")[0]["complaint_id"]
    assert deliver(inbox, fb.messaging_entry(DEV_PAGE_ID, fb.text_message(
        DEV_PAGE_ID, psid, "Sudah dua bulan belum diperbaiki", start + 600_000))) == {"message_received": 1}
    assert deliver(inbox, fb.messaging_entry(DEV_PAGE_ID, fb.text_message(
        DEV_PAGE_ID, psid, "petugas desa minta uang 300rb untuk bikin KTP, katanya pungutan",
        start + 1_200_000))) == {"message_received": 1}
    messages = log_of(store, "CitizenMessageReceived")
    assert [(m["schema_version"], m["data"]["levy_reported"]) for m in messages] == [
        (LATEST_VERSION["CitizenMessageReceived"], False), (2, True)]
    assert not log_of(store, "ComplaintAmended")
    with store.database.read() as connection:
        assert find_complaint(connection, complaint_id)["confidential"] is True


def test_an_edited_comment_that_now_reports_a_levy_makes_the_complaint_confidential(store):
    """A Page comment filed as a road complaint, then edited to report an illegal levy: the
    amendment (``_comment_edited``) reports the levy and intake keeps it confidential."""
    inbox = WebhookInbox(store, WebhookSettings(frozenset(), 120))
    added = fb.comment_change(DEV_PAGE_ID, "Jalan di depan kantor desa berlubang")
    assert deliver(inbox, fb.changes_entry(DEV_PAGE_ID, added)) == {"filed": 1}
    [filed] = log_of(store, "ComplaintFiled")
    assert filed["data"]["confidential"] is False
    edited = fb.comment_change(DEV_PAGE_ID, "Petugas kantor desa minta uang 300rb untuk bikin KTP, pungutan liar",
                               verb="edited", comment_id=added["value"]["comment_id"],
                               post_id=added["value"]["post_id"])
    assert deliver(inbox, fb.changes_entry(DEV_PAGE_ID, edited)) == {"amended": 1}
    [amended] = log_of(store, "ComplaintAmended")
    assert (amended["data"]["why"], amended["data"]["levy_reported"]) == ("comment_edited", True)
    with store.database.read() as connection:
        assert find_complaint(connection, filed["complaint_id"])["confidential"] is True
