"""Intake's interface tier: every entrypoint of ``IntakeService`` (its RPC methods, Meta's webhook,
the web form, the Open311 routes, health and metrics, the event handlers and the timers) driven
in-process on a SQLite file — no broker, no database server.

The worker comes from nameko's ``worker_factory`` with real dependencies: intake's own
``ServiceStore`` (migrated), the real ``ConsumerApi`` over an ``EventConsumer`` built from
``IntakeHandlers``, the real Open311 settings and rate limiter. Only what needs a broker is a
fake: the outbox relay and the ``reporting`` RPC proxy. Each test asserts what the caller gets
(result, status, body) and what intake recorded (its event log, tables, quarantine), including
the refusals. ``test_every_intake_entrypoint_has_an_interface_test`` fails when an entrypoint is
added without a test here.
"""
from __future__ import annotations

import contextlib

import json
import sys
from dataclasses import dataclass

import pytest
from nameko.exceptions import UnknownService

from shared.core.errors import NotFound, ValidationFailed
from shared.core.events.catalogue import CATEGORIES
from shared.core.store import ServiceStore
from shared.core.shared_budget import shared_limiter_from_env
from services.intake.adapters import tables
from services.intake.adapters.open311_web import Open311Settings
from services.intake.adapters.store import build_store
from services.intake.application.inbox import WebhookInbox, settings_from_env
from services.intake.domain.webhook import MAX_WEBHOOK_BYTES, SIGNATURE_HEADER
from services.intake.service import WEB_RATE_DEFAULT, WEB_RATE_VARIABLE, IntakeHandlers, IntakeService, drain_inbox
from tests.interface.harness import (FakeRelay, SourceLog, check_coverage, consumer_api, covers, instrument,
                                     json_of, real_dependencies, request, rows, text_of)
from tests.support import facebook as fb
from tests.support import lifecycle
from tests.support import meta_payloads as meta

PAGE, OTHER_PAGE = "100000000000001", "200000000000002"
APP_SECRET, VERIFY_TOKEN = "interface-app-secret", "interface-verify-token"
OPEN311_CLIENT, OPEN311_KEY = "kota-mataram", "open311-key-of-mataram"
ROAD = {"text": "Jalan provinsi rusak parah di Praya, banyak lubang", "category": "infrastruktur",
        "location": {"region_code": "5202"}}
REPORTER = {"name": "Ani Lestari", "phone": "+62 812 3456 7890", "email": "ani@example.org"}


class FakeReporting:
    """The ``reporting`` RPC proxy as Open311's status reads use it, answering from ``statuses``
    (tracking code → reporting's public status); ``failure`` makes every call raise it."""

    def __init__(self):
        self.statuses: dict[str, dict] = {}
        self.calls: list[tuple] = []
        self.failure: Exception | None = None

    def find_complaints(self, filters):
        self.calls.append(("find_complaints", filters))
        if self.failure:
            raise self.failure
        wanted = filters.get("tracking_codes")
        return [s for code, s in self.statuses.items() if wanted is None or code in wanted]

    def complaint_status(self, tracking_code):
        self.calls.append(("complaint_status", tracking_code))
        if self.failure:
            raise self.failure
        if tracking_code not in self.statuses:
            raise NotFound(f"no complaint {tracking_code}")
        return self.statuses[tracking_code]


class InboxWorker:
    """The background inbox worker (``BackgroundWork``) without its green thread: ``wake()`` only
    records the call, as the real one only sets an event and returns; ``run()`` is what the thread
    does once woken — the service's own ``drain_inbox`` over the store."""

    def __init__(self, store: ServiceStore):
        self.store = store
        self.wakes = 0

    def wake(self) -> None:
        self.wakes += 1

    def foreground(self):
        return contextlib.nullcontext()

    def run(self) -> int:
        return drain_inbox(self.store)


@dataclass
class Intake:
    worker: IntakeService
    store: ServiceStore
    reporting: FakeReporting
    routing_log: SourceLog        # what routing recorded, for pushes and catch-up
    notification_log: SourceLog
    inbox_worker: InboxWorker

    def log(self, event_type: str | None = None) -> list[dict]:
        return [e for e in self.worker.events_since(0) if event_type in (None, e["event_type"])]

    def file(self, **overrides) -> dict:
        return self.worker.file_complaint({**ROAD, **overrides})

    def webhook(self, body: dict, *, secret: str = APP_SECRET, raw: bytes | None = None, process: bool = True):
        """POST as Meta does; then (``process``) let the woken inbox worker run, as its thread
        does right after the answer."""
        raw = raw if raw is not None else json.dumps(body, separators=(",", ":")).encode()
        wakes = self.inbox_worker.wakes
        response = self.worker.facebook_webhook(request(
            "POST", "/webhooks/facebook", data=raw, content_type="application/json",
            headers={SIGNATURE_HEADER: fb.signature(raw, secret)}))
        if process and self.inbox_worker.wakes > wakes:
            self.inbox_worker.run()
        return response


@pytest.fixture
def intake(migrated_sqlite, monkeypatch, called):
    monkeypatch.setenv("FACEBOOK_APP_SECRET", APP_SECRET)
    monkeypatch.setenv("FACEBOOK_VERIFY_TOKEN", VERIFY_TOKEN)
    monkeypatch.setenv("FACEBOOK_PAGES", f"{PAGE}:page-token")
    monkeypatch.setenv("OPEN311_API_KEYS", f"{OPEN311_CLIENT}:{OPEN311_KEY}")
    monkeypatch.setenv("INTAKE_STATUS_URL", "https://status.example/aduan/{tracking_code}")
    store = build_store(migrated_sqlite("intake", build_store))
    store.prepare()                       # as the Storage provider does: checks it is at the newest revision
    routing_log, notification_log = SourceLog("routing"), SourceLog("notification")
    reporting = FakeReporting()
    inbox_worker = InboxWorker(store)
    worker = real_dependencies(
        IntakeService, store=store, relay=FakeRelay(), reporting=reporting, inbox_worker=inbox_worker,
        consumer=consumer_api(store, IntakeHandlers, {"routing": routing_log, "notification": notification_log}),
        web_rate_limit=web_rate_limit(monkeypatch, 30, store.database),
        open311_settings=open311_settings(monkeypatch, 60),
        caller_system=None)      # an internal caller (the gateway names outside ones in the context data)
    yield Intake(instrument(worker, called), store, reporting, routing_log, notification_log, inbox_worker)
    store.database.dispose()


def web_rate_limit(monkeypatch, per_minute: int, database):
    """The web form's limiter as its provider (``SharedRateLimit``) builds it from the
    environment: counted in intake's database, shared by every replica."""
    monkeypatch.setenv(WEB_RATE_VARIABLE, str(per_minute))
    return shared_limiter_from_env(WEB_RATE_VARIABLE, WEB_RATE_DEFAULT, database)


def open311_settings(monkeypatch, per_minute: int) -> Open311Settings:
    monkeypatch.setenv("OPEN311_RATE_PER_MINUTE", str(per_minute))
    settings = Open311Settings()
    settings.setup()
    return settings


def test_every_intake_entrypoint_has_an_interface_test():
    check_coverage(IntakeService, sys.modules[__name__])


# --- RPC -----------------------------------------------------------------------------------------

@covers("file_complaint", "events_since", "get_complaint")
def test_file_complaint_records_the_complaint_and_keeps_the_reporter_out_of_the_event(intake):
    filed = intake.file(reporter=REPORTER)

    [event] = intake.log()
    assert (event["event_type"], event["complaint_id"], event["position"]) == (
        "ComplaintFiled", filed["complaint_id"], 1)
    data = event["data"]
    assert (data["tracking_code"], data["channel"], data["category"], data["region_code"]) == (
        filed["tracking_code"], "api", "infrastruktur", "5202")
    # The phone's distinctive digits, not "812": a random id or a timestamp's microseconds hold
    # "812" now and then (a CI run failed on it).
    logged = json.dumps(event)
    assert not any(part in logged for part in ("Ani Lestari", "3456 7890", "34567890", "ani@example.org"))
    [reporter] = rows(intake.store, tables.reporters)
    assert (reporter["complaint_id"], reporter["name"], reporter["email"]) == (
        filed["complaint_id"], "Ani Lestari", "ani@example.org")

    complaint = intake.worker.get_complaint(filed["complaint_id"])
    assert (complaint["tracking_code"], complaint["open"], complaint["confidential"]) == (
        filed["tracking_code"], True, False)
    assert "reporter" not in complaint and "name" not in complaint


@covers("file_complaint", "events_since")
def test_file_complaint_with_the_same_external_ref_answers_the_first_filing(intake):
    first = intake.file(external_ref="simpel:2024/881")
    again = intake.file(external_ref="simpel:2024/881", text="Isi yang dikirim ulang oleh sistem lain")
    assert again == first
    assert len(intake.worker.events_since(0)) == 1


@covers("file_complaint")
def test_file_complaint_keeps_each_outside_systems_references_apart_and_its_meta_reach_out(intake):
    """The gateway names the caller in the context data (``caller_system``): references are per
    caller, and an outside caller may not reach citizens on Meta (tests/security/test_caller_trust.py
    drives the same over the real RPC)."""
    internal = intake.file(external_ref="REF-1")
    intake.worker.caller_system = "lapor-sp4n"
    lapor = intake.file(external_ref="REF-1")
    assert lapor != internal and intake.file(external_ref="REF-1") == lapor
    with pytest.raises(ValidationFailed) as refused:
        intake.file(channel="facebook_messenger", reply_to={"page_id": PAGE, "psid": "7000000000000001"})
    assert {"channel", "reply_to"} <= set(refused.value.args[0])
    assert [row["caller_system"] for row in rows(intake.store, tables.complaints)] == ["", "lapor-sp4n"]


@pytest.mark.parametrize("complaint, field", [
    ({"text": "abc"}, "text"),                                                 # too short
    ({"text": "Jalan rusak di desa kami", "category": "cuaca"}, "category"),
    ({"text": "Jalan rusak di desa kami", "channel": "import"}, "received_at"),  # imports say when
    ({"text": "Jalan rusak di desa kami", "reporter": {"phone": "bukan nomor"}}, "reporter"),
    ({"text": "Jalan rusak di desa kami", "reply_to": {"page_id": PAGE}}, "reply_to"),
    ({"text": "Jalan rusak di desa kami", "reply_to": {"page_id": PAGE, "comment_id": f"../{PAGE}/feed?x="}},
     "reply_to"),                                                              # not a Meta id
    ("not a complaint", "text"),
])
@covers("file_complaint", "events_since")
def test_file_complaint_refuses_malformed_input_and_records_nothing(intake, complaint, field):
    with pytest.raises(ValidationFailed) as refused:
        intake.worker.file_complaint(complaint)
    assert field in str(refused.value)
    assert intake.worker.events_since(0) == [] and rows(intake.store, tables.complaints) == []


@covers("file_complaint")
def test_file_complaint_refuses_text_no_database_can_store(intake):
    with pytest.raises(ValidationFailed):
        intake.worker.file_complaint({"text": "Jalan rusak \ud800 di desa kami"})
    assert rows(intake.store, tables.complaints) == []


@covers("events_since")
def test_events_since_pages_through_the_log_in_order(intake):
    ids = [intake.file(text=f"Jalan provinsi rusak nomor {n} di Praya")["complaint_id"] for n in range(3)]
    assert [e["complaint_id"] for e in intake.worker.events_since(0)] == ids
    assert [e["position"] for e in intake.worker.events_since(1, limit=1)] == [2]
    assert intake.worker.events_since(3) == []


@covers("event_ids_since", "events_since")
def test_event_ids_since_lists_the_log_s_positions_and_ids(intake):
    for n in range(3):
        intake.file(text=f"Lampu jalan mati nomor {n} di Mataram")
    log = intake.worker.events_since(0)
    assert intake.worker.event_ids_since(0) == [[e["position"], e["event_id"]] for e in log]
    assert intake.worker.event_ids_since(1, 1) == [[2, log[1]["event_id"]]] and intake.worker.event_ids_since(3) == []


@covers("get_complaint")
def test_get_complaint_of_an_unknown_id_is_not_found(intake):
    with pytest.raises(NotFound):
        intake.worker.get_complaint("00000000-0000-0000-0000-000000000000")


@covers("reporter_contact")
def test_reporter_contact_is_given_to_a_named_actor_with_a_reason_and_audited(intake):
    with_reporter = intake.file(reporter=REPORTER)["complaint_id"]
    anonymous = intake.file(text="Lampu jalan provinsi mati di Praya")["complaint_id"]

    contact = intake.worker.reporter_contact(with_reporter, "desk:sari", "Menanyakan lokasi persisnya")
    assert contact == {"complaint_id": with_reporter, "name": "Ani Lestari", "phone": "+62 812 3456 7890",
                       "email": "ani@example.org"}
    assert intake.worker.reporter_contact(anonymous, "desk:sari", "Menanyakan lokasi") == {
        "complaint_id": anonymous, "name": None, "phone": None, "email": None}
    audit = rows(intake.store, tables.contact_audit)
    assert [(a["complaint_id"], a["actor"], a["reason"]) for a in audit] == [
        (with_reporter, "desk:sari", "Menanyakan lokasi persisnya"),
        (anonymous, "desk:sari", "Menanyakan lokasi")]


@pytest.mark.parametrize("actor, reason, refusal", [
    ("", "Menanyakan lokasi", ValidationFailed),
    ("   ", "Menanyakan lokasi", ValidationFailed),
    ("desk:sari", "ok", ValidationFailed),            # a reason of at least 5 characters
    ("desk:sari", None, ValidationFailed),
])
@covers("reporter_contact")
def test_reporter_contact_is_refused_without_actor_or_reason_and_nothing_is_audited(intake, actor, reason,
                                                                                    refusal):
    complaint_id = intake.file(reporter=REPORTER)["complaint_id"]
    with pytest.raises(refusal):
        intake.worker.reporter_contact(complaint_id, actor, reason)
    assert rows(intake.store, tables.contact_audit) == []


@covers("reporter_contact")
def test_reporter_contact_of_an_unknown_complaint_is_not_found_and_not_audited(intake):
    with pytest.raises(NotFound):
        intake.worker.reporter_contact("00000000-0000-0000-0000-000000000000", "desk:sari", "Menanyakan lokasi")
    assert rows(intake.store, tables.contact_audit) == []


# --- quarantine -----------------------------------------------------------------------------------

@covers("on_complaint_resolved", "quarantined", "replay_quarantined")
def test_an_unreadable_pushed_event_is_quarantined_listed_without_payload_and_stays_so_on_replay(intake):
    complaint_id = intake.file()["complaint_id"]
    broken = intake.routing_log.append("ComplaintResolved", complaint_id, {"actor": "dpupr:budi"})  # no lifecycle
    intake.worker.on_complaint_resolved(broken)

    [item] = intake.worker.quarantined()
    assert (item["kind"], item["source"], item["position"], item["state"]) == ("event", "routing", 1, "quarantined")
    assert "lifecycle" in item["reason"] and "payload" not in item and item["payload_bytes"] > 0
    assert intake.worker.get_complaint(complaint_id)["open"] is True

    assert intake.worker.replay_quarantined(item["item_id"], "ops:ani") == {
        "item_id": item["item_id"], "outcome": "still_quarantined"}
    [again] = intake.worker.quarantined()
    assert (again["attempts"], again["replayed_by"]) == (2, "ops:ani")


@covers("replay_quarantined")
def test_replay_quarantined_refuses_without_actor_or_for_an_unknown_item(intake):
    with pytest.raises(ValidationFailed):
        intake.worker.replay_quarantined(1, " ")
    with pytest.raises(NotFound):
        intake.worker.replay_quarantined(999, "ops:ani")


@covers("facebook_webhook", "quarantined", "replay_quarantined")
def test_a_message_to_an_unconfigured_page_is_quarantined_then_replayed_once_configured(intake, monkeypatch):
    psid = fb.new_psid()
    body = fb.page_body(fb.messaging_entry(OTHER_PAGE, fb.text_message(
        OTHER_PAGE, psid, "Jembatan desa putus di Sumbawa")))
    assert intake.webhook(body).status_code == 200
    [item] = intake.worker.quarantined()
    assert (item["kind"], item["source"]) == ("webhook", "facebook") and "not configured" in item["reason"]
    assert intake.log() == []

    monkeypatch.setenv("FACEBOOK_PAGES", f"{PAGE}:page-token,{OTHER_PAGE}:second-token")
    assert intake.worker.replay_quarantined(item["item_id"], "ops:ani")["outcome"] == "replayed"
    [filed] = intake.log("ComplaintFiled")
    assert filed["data"]["channel"] == "facebook_messenger"
    assert filed["data"]["reply_to"] == {"page_id": OTHER_PAGE, "psid": psid}
    assert intake.worker.quarantined() == []
    assert intake.worker.replay_quarantined(item["item_id"], "ops:ani")["outcome"] == "already_replayed"
    assert len(intake.log("ComplaintFiled")) == 1


# --- Meta's webhook ---------------------------------------------------------------------------------

@covers("facebook_verify")
def test_facebook_verify_echoes_the_challenge_only_for_the_verify_token(intake, monkeypatch):
    def verify(**args):
        return intake.worker.facebook_verify(request("GET", "/webhooks/facebook", query=args))

    accepted = verify(**{"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"})
    assert (accepted.status_code, text_of(accepted), accepted.mimetype) == (200, "1158201444", "text/plain")
    assert verify(**{"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1"}).status_code == 403
    assert verify(**{"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN}).status_code == 403
    assert verify(**{"hub.mode": "subscribe", "hub.challenge": "1"}).status_code == 403
    monkeypatch.delenv("FACEBOOK_VERIFY_TOKEN")
    assert verify(**{"hub.mode": "subscribe", "hub.verify_token": "", "hub.challenge": "1"}).status_code == 403


@covers("facebook_webhook")
def test_facebook_webhook_stores_a_signed_body_and_files_its_message_once(intake):
    psid = fb.new_psid()
    body = fb.page_body(fb.messaging_entry(PAGE, fb.text_message(PAGE, psid, "Sampah menumpuk di pasar Praya"),
                                           fb.delivery(PAGE, psid)))
    response = intake.webhook(body)
    assert (response.status_code, text_of(response)) == (200, "EVENT_RECEIVED")
    [stored] = rows(intake.store, tables.webhook_inbox)
    assert stored["state"] == "processed" and json.loads(stored["outcome"]) == {"filed": 1, "ignored": 1}
    [filed] = intake.log("ComplaintFiled")
    assert filed["data"]["channel"] == "facebook_messenger" and "Sampah" in filed["data"]["text"]
    [conversation] = rows(intake.store, tables.conversations)
    assert (conversation["psid"], conversation["complaint_id"]) == (psid, filed["complaint_id"])

    assert intake.webhook(body).status_code == 200     # Meta delivers it again
    assert len(intake.log("ComplaintFiled")) == 1
    assert json.loads(rows(intake.store, tables.webhook_inbox)[1]["outcome"]) == {"duplicate": 1, "ignored": 1}


@covers("facebook_webhook")
def test_facebook_webhook_refuses_forged_unsigned_and_oversized_bodies_and_stores_nothing(intake):
    body = fb.page_body(fb.messaging_entry(PAGE, fb.text_message(PAGE, fb.new_psid(), "Jalan rusak")))
    assert intake.webhook(body, secret="someone-else").status_code == 403
    unsigned = intake.worker.facebook_webhook(request("POST", "/webhooks/facebook", json_body=body))
    assert (unsigned.status_code, text_of(unsigned)) == (403, "forbidden")
    oversized = intake.webhook({}, raw=b"{" + b" " * MAX_WEBHOOK_BYTES + b"}")
    assert oversized.status_code == 413
    assert rows(intake.store, tables.webhook_inbox) == [] and intake.log() == []
    assert intake.inbox_worker.wakes == 0


@covers("facebook_webhook")
def test_facebook_webhook_answers_once_the_body_is_stored_and_processing_runs_behind_it(intake):
    body = fb.page_body(fb.messaging_entry(PAGE, fb.text_message(PAGE, fb.new_psid(), "Jalan berlubang di Dompu")))
    response = intake.webhook(body, process=False)
    assert (response.status_code, text_of(response)) == (200, "EVENT_RECEIVED")
    [stored] = rows(intake.store, tables.webhook_inbox)
    assert stored["state"] == "pending" and intake.log() == []      # answered before any processing
    assert intake.inbox_worker.wakes == 1                            # … and the worker woken for it

    assert intake.inbox_worker.run() == 1
    assert rows(intake.store, tables.webhook_inbox)[0]["state"] == "processed"
    assert len(intake.log("ComplaintFiled")) == 1


@covers("facebook_webhook")
def test_a_database_failure_while_processing_never_reaches_meta_and_the_body_stays_pending(intake, monkeypatch):
    from sqlalchemy.exc import OperationalError
    body = fb.page_body(fb.messaging_entry(PAGE, fb.text_message(PAGE, fb.new_psid(), "Sampah di Sungai Jangkok")))

    def locked(self, tx, item, received_at):
        raise OperationalError("INSERT", {}, Exception("database is locked"))

    with monkeypatch.context() as patched:
        patched.setattr(WebhookInbox, "_apply_understood", locked)
        assert intake.webhook(body, process=False).status_code == 200
        with pytest.raises(OperationalError):
            intake.inbox_worker.run()                 # the worker logs it and waits for the next wake-up
    assert rows(intake.store, tables.webhook_inbox)[0]["state"] == "pending" and intake.log() == []
    intake.inbox_worker.run()
    assert len(intake.log("ComplaintFiled")) == 1


@covers("facebook_webhook", "quarantined")
def test_an_item_that_keeps_failing_is_quarantined_and_never_holds_up_later_bodies(intake, monkeypatch):
    original = WebhookInbox._message

    def buggy(self, tx, message, received_at):
        if "Praya" in message.text:
            raise RuntimeError("a bug in the conversation rules")
        return original(self, tx, message, received_at)

    monkeypatch.setattr(WebhookInbox, "_message", buggy)
    for text in ("Jalan rusak di Praya", "Sampah menumpuk di Ampenan"):
        intake.webhook(fb.page_body(fb.messaging_entry(PAGE, fb.text_message(PAGE, fb.new_psid(), text))),
                       process=False)
    assert intake.inbox_worker.run() == 2
    [item] = intake.worker.quarantined()
    assert "RuntimeError" in item["reason"]
    [filed] = intake.log("ComplaintFiled")
    assert "Ampenan" in filed["data"]["text"]
    assert [r["state"] for r in rows(intake.store, tables.webhook_inbox)] == ["processed", "processed"]


@covers("facebook_webhook")
def test_bodies_are_processed_in_arrival_order_so_bubbles_extend_the_first(intake):
    psid, start = fb.new_psid(), fb.now_ms()
    for offset, text in ((0, "Jalan rusak parah"), (5_000, "di depan pasar Praya"), (9_000, "sudah dua bulan")):
        intake.webhook(fb.page_body(fb.messaging_entry(PAGE, fb.text_message(PAGE, psid, text, start + offset))),
                       process=False)
    assert intake.inbox_worker.run() == 3
    [filed] = intake.log("ComplaintFiled")
    amended = intake.log("ComplaintAmended")
    assert len(amended) == 2 and all(e["complaint_id"] == filed["complaint_id"] for e in amended)
    assert amended[-1]["data"]["text"] == "Jalan rusak parah\ndi depan pasar Praya\nsudah dua bulan"


@covers("facebook_webhook")
def test_a_batch_of_many_entries_and_updates_is_applied_item_by_item(intake):
    entries = [fb.messaging_entry(PAGE, *(fb.text_message(PAGE, f"79{e:03d}{i:02d}", f"Lampu jalan mati nomor {e}-{i}")
                                          for i in range(5)), fb.delivery(PAGE, "7"), fb.read_receipt(PAGE, "7"))
               for e in range(40)]
    assert intake.webhook(fb.page_body(*entries)).status_code == 200
    [stored] = rows(intake.store, tables.webhook_inbox)
    assert json.loads(stored["outcome"]) == {"filed": 200, "ignored": 80}
    assert len(intake.log("ComplaintFiled")) == 200


# --- what real Pages send besides complaints (tests/support/meta_payloads.py) --------------------------

def resolve(intake, complaint_id):
    intake.worker.on_complaint_resolved(intake.routing_log.append("ComplaintResolved", complaint_id, {
        "actor": "dpupr:budi", "lifecycle": lifecycle.snapshot("selesai")}))


@covers("facebook_webhook", "on_complaint_resolved")
def test_a_like_after_the_answer_is_the_citizens_reaction_and_files_nothing(intake):
    psid = fb.new_psid()
    intake.webhook(fb.page_body(fb.messaging_entry(PAGE, fb.text_message(PAGE, psid, "Jalan longsor di Sembalun"))))
    [filed] = intake.log("ComplaintFiled")
    resolve(intake, filed["complaint_id"])                     # answered and closed by the agency

    intake.webhook(fb.page_body(fb.messaging_entry(PAGE, meta.like_button(PAGE, psid, meta.LIKE_LARGE))))
    assert len(intake.log("ComplaintFiled")) == 1              # no "[lampiran: image]" complaint
    [reacted] = intake.log("CitizenReacted")
    assert reacted["complaint_id"] == filed["complaint_id"]
    assert (reacted["data"]["reaction"], reacted["data"]["sticker_id"]) == ("like", str(meta.LIKE_LARGE))
    assert json.loads(rows(intake.store, tables.webhook_inbox)[-1]["outcome"]) == {"reaction_recorded": 1}

    intake.webhook(fb.page_body(fb.messaging_entry(PAGE, meta.sticker_transition(PAGE, psid))))
    assert [e["data"]["reaction"] for e in intake.log("CitizenReacted")] == ["like", "sticker"]
    intake.webhook(fb.page_body(fb.messaging_entry(PAGE, fb.text_message(PAGE, psid, "Ada lagi, jembatan putus"))))
    assert len(intake.log("ComplaintFiled")) == 2              # a real message after it still files


@covers("facebook_webhook")
def test_stickers_never_file_or_extend_a_complaint(intake):
    stranger, typing = fb.new_psid(), fb.new_psid()
    intake.webhook(fb.page_body(fb.messaging_entry(PAGE, meta.like_button(PAGE, stranger),
                                                   meta.sticker_only(PAGE, stranger))))
    assert intake.log() == [] and rows(intake.store, tables.conversations) == []
    assert json.loads(rows(intake.store, tables.webhook_inbox)[0]["outcome"]) == {"ignored": 2}

    start = fb.now_ms()
    intake.webhook(fb.page_body(fb.messaging_entry(
        PAGE, fb.text_message(PAGE, typing, "Air PDAM keruh di Selong", start),
        meta.like_button(PAGE, typing, timestamp_ms=start + 2_000),
        fb.text_message(PAGE, typing, "sudah seminggu", start + 4_000))))
    [filed] = intake.log("ComplaintFiled")
    [amended] = intake.log("ComplaintAmended")                 # the bubble after the 👍 still extends it
    assert amended["data"]["text"] == "Air PDAM keruh di Selong\nsudah seminggu"
    assert amended["data"]["attachments"] == [] and filed["data"]["attachments"] == []
    assert [e["data"]["reaction"] for e in intake.log("CitizenReacted")] == ["like"]


@covers("facebook_webhook")
def test_standby_messages_file_complaints_unless_the_page_leaves_them_to_another_app(intake, monkeypatch):
    psid = fb.new_psid()
    body = fb.page_body(meta.standby_entry(PAGE, fb.text_message(PAGE, psid, "Pungutan liar di pelabuhan Lembar"),
                                           meta.standby_echo(PAGE, psid, "Baik, kami teruskan")))
    intake.webhook(body)
    [filed] = intake.log("ComplaintFiled")
    assert filed["data"]["channel"] == "facebook_messenger" and filed["data"]["reply_to"] == {
        "page_id": PAGE, "psid": psid}

    monkeypatch.setenv("INTAKE_STANDBY_MODE", f"process,{PAGE}:ignore")
    intake.webhook(fb.page_body(meta.standby_entry(PAGE, fb.text_message(PAGE, fb.new_psid(), "Jalan rusak"))))
    assert len(intake.log("ComplaintFiled")) == 1
    assert json.loads(rows(intake.store, tables.webhook_inbox)[-1]["outcome"]) == {"ignored": 1}


@covers("facebook_webhook", "quarantined")
def test_handover_reactions_referrals_postbacks_edits_and_other_objects_are_ignored_never_quarantined(intake):
    psid = fb.new_psid()
    intake.webhook(fb.page_body(
        fb.messaging_entry(PAGE, meta.pass_thread_control(PAGE, psid), meta.take_thread_control(PAGE, psid),
                           meta.request_thread_control(PAGE, psid), meta.app_roles(PAGE),
                           meta.reaction(PAGE, psid, "m_answer"), meta.referral(PAGE, psid), meta.postback(PAGE, psid),
                           meta.message_edit(PAGE, psid, "m_1", "ralat"), meta.optin(PAGE),
                           meta.policy_enforcement(PAGE)),
        meta.standby_entry(PAGE, meta.take_thread_control(PAGE, psid)),
        fb.changes_entry(PAGE, meta.comment_with_verb(PAGE, "hide"), meta.comment_with_verb(PAGE, "block"))))
    intake.webhook(meta.user_object_body())
    intake.webhook(meta.permissions_object_body())
    outcomes = [json.loads(r["outcome"]) for r in rows(intake.store, tables.webhook_inbox)]
    assert outcomes == [{"ignored": 13}, {"ignored": 1}, {"ignored": 1}]
    assert intake.worker.quarantined() == [] and intake.log() == []


@covers("facebook_webhook")
def test_a_comment_with_only_a_video_or_a_gif_is_a_complaint_with_the_attachment(intake):
    video = meta.video_comment(PAGE, url="https://video.xx.fbcdn.net/v/banjir.mp4")
    intake.webhook(fb.page_body(fb.changes_entry(PAGE, video, meta.gif_comment(PAGE))))
    first, second = intake.log("ComplaintFiled")
    assert first["data"]["channel"] == "facebook_comment" and first["data"]["text"] == "[lampiran: video]"
    assert [(a["type"], a["url"]) for a in first["data"]["attachments"]] == [
        ("video", "https://video.xx.fbcdn.net/v/banjir.mp4")]
    assert first["data"]["reply_to"]["comment_id"] == video["value"]["comment_id"]
    assert second["data"]["attachments"][0]["url"].endswith(".gif")
    assert intake.worker.quarantined() == []


IG_ACCOUNT = "17841400000000001"


@covers("facebook_webhook", "quarantined", "replay_quarantined")
def test_instagram_direct_files_on_its_own_channel_answerable_through_the_page(intake, monkeypatch):
    igsid, start = "6000000000000042", fb.now_ms()
    body = meta.instagram_body(meta.instagram_entry(
        IG_ACCOUNT, meta.instagram_text(IG_ACCOUNT, igsid, "Jalan ke Senaru rusak berat", timestamp_ms=start)))
    intake.webhook(body)                                        # the account is not mapped yet
    [item] = intake.worker.quarantined()
    assert "FACEBOOK_INSTAGRAM_ACCOUNTS" in item["reason"] and intake.log() == []

    monkeypatch.setenv("FACEBOOK_INSTAGRAM_ACCOUNTS", f"{IG_ACCOUNT}:{PAGE}")
    assert intake.worker.replay_quarantined(item["item_id"], "ops:ani")["outcome"] == "replayed"
    [filed] = intake.log("ComplaintFiled")
    assert filed["data"]["channel"] == "instagram_direct"
    assert filed["data"]["reply_to"] == {"page_id": PAGE, "psid": igsid, "platform": "instagram"}
    assert filed["data"]["region_code"] == "5208"

    intake.webhook(meta.instagram_body(meta.instagram_entry(
        IG_ACCOUNT, meta.instagram_text(IG_ACCOUNT, igsid, "tolong segera", timestamp_ms=start + 3_000),
        meta.instagram_heart(IG_ACCOUNT, igsid), meta.instagram_read(IG_ACCOUNT, igsid, "aWdf_x"))))
    [amended] = intake.log("ComplaintAmended")
    assert amended["complaint_id"] == filed["complaint_id"]
    [heart] = intake.log("CitizenReacted")
    assert heart["data"]["reaction"] == "heart"
    assert intake.worker.get_complaint(filed["complaint_id"])["channel"] == "instagram_direct"


# --- the web form -------------------------------------------------------------------------------------

@covers("web_complaint")
def test_web_complaint_files_on_the_web_channel_and_answers_with_the_status_url(intake):
    response = intake.worker.web_complaint(request("POST", "/api/complaints", json_body={
        **ROAD, "reporter": REPORTER, "channel": "import"}))   # a citizen cannot choose the channel
    assert response.status_code == 201 and response.headers["Cache-Control"] == "no-store"
    body = json_of(response)
    assert body["status_url"] == f"https://status.example/aduan/{body['tracking_code']}"
    [filed] = intake.log("ComplaintFiled")
    assert (filed["complaint_id"], filed["data"]["channel"]) == (body["complaint_id"], "web")
    assert rows(intake.store, tables.reporters)[0]["name"] == "Ani Lestari"


@pytest.mark.parametrize("raw, status, error", [
    (b"{not json", 400, "body is not JSON"),
    (json.dumps({"text": "abc"}).encode(), 400, "invalid complaint"),
    (json.dumps({"text": "Jalan rusak", "location": {"region_code": "9999"}}).encode(), 400, "invalid complaint"),
    (json.dumps({"text": "x" * 300_000}).encode(), 413, "body over"),
])
@covers("web_complaint")
def test_web_complaint_refuses_bad_bodies_and_records_nothing(intake, raw, status, error):
    response = intake.worker.web_complaint(request("POST", "/api/complaints", data=raw,
                                                   content_type="application/json"))
    assert response.status_code == status and error in json_of(response)["error"]
    assert intake.log() == []


@covers("web_complaint")
def test_web_complaint_is_rate_limited_per_client_address(intake, monkeypatch):
    intake.worker.web_rate_limit = web_rate_limit(monkeypatch, 1, intake.store.database)

    def post(address):
        return intake.worker.web_complaint(request("POST", "/api/complaints", json_body=ROAD, remote_addr=address))

    assert post("198.51.100.1").status_code == 201
    refused = post("198.51.100.1")
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert json_of(refused)["retry_after_seconds"] >= 1
    assert post("198.51.100.2").status_code == 201
    assert len(intake.log("ComplaintFiled")) == 2


# --- Open311 ------------------------------------------------------------------------------------------

@covers("open311_services")
def test_open311_services_lists_every_category_in_json_and_xml(intake):
    as_json = intake.worker.open311_services(request("GET", "/open311/v2/services.json"), "json")
    assert as_json.status_code == 200
    assert [s["service_code"] for s in json_of(as_json)] == list(CATEGORIES)
    as_xml = intake.worker.open311_services(request("GET", "/open311/v2/services.xml"), "xml")
    assert as_xml.content_type.startswith("text/xml")
    assert text_of(as_xml).count("<service>") == len(CATEGORIES) and "<services>" in text_of(as_xml)
    assert intake.worker.open311_services(request("GET", "/open311/v2/services.csv"), "csv").status_code == 404


@covers("open311_service_definition")
def test_open311_service_definition_of_a_known_and_an_unknown_code(intake):
    def definition(code, fmt):
        return intake.worker.open311_service_definition(
            request("GET", f"/open311/v2/services/{code}.{fmt}"), code, fmt)

    assert json_of(definition("pungli", "json")) == {"service_code": "pungli", "attributes": []}
    xml = definition("pungli", "xml")
    assert xml.status_code == 200 and "<service_code>pungli</service_code>" in text_of(xml)
    unknown = definition("cuaca", "json")
    assert unknown.status_code == 404 and json_of(unknown)[0]["code"] == 404
    assert definition("pungli", "html").status_code == 404


@covers("open311_create")
def test_open311_create_files_for_the_client_of_the_api_key(intake):
    response = intake.worker.open311_create(request("POST", "/open311/v2/requests.json", data={
        "api_key": OPEN311_KEY, "service_code": "infrastruktur", "service_request_id": "MTR-77",
        "description": "Jalan provinsi berlubang di depan pasar Praya", "first_name": "Ani",
        "last_name": "Lestari", "email": "ani@example.org", "lat": "-8.71", "long": "116.27"}), "json")
    assert response.status_code == 201
    [answer] = json_of(response)
    [filed] = intake.log("ComplaintFiled")
    assert answer["service_request_id"] == filed["data"]["tracking_code"]
    assert (filed["data"]["channel"], filed["data"]["category"], filed["data"]["external_ref"]) == (
        "open311", "infrastruktur", f"open311:{OPEN311_CLIENT}:MTR-77")
    assert rows(intake.store, tables.reporters)[0]["name"] == "Ani Lestari"


@pytest.mark.parametrize("form, status", [
    ({"description": "Jalan provinsi berlubang di Praya"}, 403),                       # no api_key
    ({"api_key": "guessed", "description": "Jalan provinsi berlubang di Praya"}, 403),
    ({"api_key": OPEN311_KEY, "description": "abc"}, 400),                              # too short
    ({"api_key": OPEN311_KEY, "description": "Jalan rusak di Praya", "service_code": "cuaca"}, 400),
])
@covers("open311_create")
def test_open311_create_refuses_without_a_key_or_with_an_invalid_request(intake, form, status):
    response = intake.worker.open311_create(request("POST", "/open311/v2/requests.xml", data=form), "xml")
    assert response.status_code == status and "<errors>" in text_of(response)
    assert intake.log() == []


def status_of(tracking_code: str) -> dict:
    """reporting's public status of a complaint, as ``complaint_status`` answers it."""
    return {"tracking_code": tracking_code, "status": "diproses", "status_label": "Sedang diproses",
            "category": "infrastruktur", "agencies": [{"code": "dpupr", "name": "Dinas PUPR NTB"}],
            "filed_at": "2024-05-01T03:04:05.000000Z", "updated_at": "2024-05-02T01:00:00.000000Z",
            "answers": [{"text": "Ruas ini kami perbaiki pekan depan."}], "region_name": "Lombok Tengah"}


@covers("open311_requests")
def test_open311_requests_are_answered_from_reporting_with_the_filters_given(intake):
    intake.reporting.statuses = {"NTB-AAA111": status_of("NTB-AAA111"), "NTB-BBB222": status_of("NTB-BBB222")}
    # A lookup by code needs no key (the code is the key) and shows that complaint.
    response = intake.worker.open311_requests(request("GET", "/open311/v2/requests.json", query={
        "service_request_id": "NTB-AAA111, ", "service_code": "infrastruktur", "status": "open"}), "json")
    assert response.status_code == 200
    [found] = json_of(response)
    assert (found["service_request_id"], found["status"], found["agency_responsible"]) == (
        "NTB-AAA111", "open", "Dinas PUPR NTB")
    assert found["description"] is None      # the citizen's own words are never in status answers
    assert intake.reporting.calls == [("find_complaints", {"tracking_codes": ["NTB-AAA111"],
                                                           "category": "infrastruktur", "status": "open",
                                                           "limit": 1000})]
    # A list needs the key and carries neither codes nor answers.
    as_xml = intake.worker.open311_requests(request("GET", "/open311/v2/requests.xml",
                                                    query={"api_key": OPEN311_KEY}), "xml")
    assert text_of(as_xml).count("<request>") == 2
    assert "NTB-" not in text_of(as_xml) and "Ruas ini" not in text_of(as_xml)


@pytest.mark.parametrize("failure, status", [
    (UnknownService("reporting"), 503), (ConnectionRefusedError(), 503),
    (ValidationFailed("start_date: not a date"), 400)])
@covers("open311_requests")
def test_open311_requests_when_reporting_refuses_or_is_away(intake, failure, status):
    intake.reporting.failure = failure
    response = intake.worker.open311_requests(request("GET", "/open311/v2/requests.json",
                                                      query={"api_key": OPEN311_KEY}), "json")
    assert response.status_code == status and json_of(response)[0]["code"] == status
    if status == 503:
        assert response.headers["Retry-After"] == "30"


@covers("open311_request")
def test_open311_request_by_id_found_unknown_or_reporting_away(intake):
    intake.reporting.statuses = {"NTB-AAA111": status_of("NTB-AAA111")}

    def read(request_id, fmt="json"):
        return intake.worker.open311_request(request("GET", f"/open311/v2/requests/{request_id}.{fmt}"),
                                             request_id, fmt)

    found = read("NTB-AAA111")
    assert found.status_code == 200 and json_of(found)[0]["status_notes"] == (
        "Sedang diproses: Ruas ini kami perbaiki pekan depan.")
    assert read("NTB-AAA111", "xml").status_code == 200
    assert read("NTB-ZZZ999").status_code == 404
    assert read("NTB-AAA111", "yaml").status_code == 404
    intake.reporting.failure = UnknownService("reporting")
    assert read("NTB-AAA111").status_code == 503


@covers("open311_requests", "open311_request")
def test_open311_status_reads_are_rate_limited_per_client_address(intake, monkeypatch):
    intake.worker.open311_settings = open311_settings(monkeypatch, 1)
    intake.reporting.statuses = {"NTB-AAA111": status_of("NTB-AAA111")}
    assert intake.worker.open311_requests(request("GET", "/x", query={"service_request_id": "NTB-AAA111"}),
                                          "json").status_code == 200
    refused = intake.worker.open311_request(request("GET", "/x"), "NTB-AAA111", "json")
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert intake.worker.open311_request(request("GET", "/x", remote_addr="198.51.100.9"),
                                         "NTB-AAA111", "json").status_code == 200
    assert len(intake.reporting.calls) == 2    # the refused read never reached reporting


# --- routing's and notification's events ---------------------------------------------------------------

@covers("on_complaint_resolved")
def test_a_resolved_complaint_is_closed_and_a_redelivery_changes_nothing(intake):
    complaint_id = intake.file()["complaint_id"]
    resolved = intake.routing_log.append("ComplaintResolved", complaint_id, {
        "actor": "dpupr:budi", "lifecycle": lifecycle.snapshot("selesai")})
    intake.worker.on_complaint_resolved(resolved)
    assert intake.worker.get_complaint(complaint_id)["open"] is False
    [processed] = rows(intake.store, intake.store.checkpoints)
    assert (processed["source"], processed["position"]) == ("routing", 1)

    intake.worker.on_complaint_resolved(resolved)          # the broker redelivers it
    assert intake.worker.get_complaint(complaint_id)["open"] is False
    assert intake.worker.quarantined() == [] and intake.log() == intake.log("ComplaintFiled")


@covers("on_complaint_dismissed", "facebook_webhook")
def test_after_a_dismissal_the_citizens_next_message_files_a_new_complaint(intake):
    psid = fb.new_psid()
    first_sent = fb.now_ms() - 10_000
    intake.webhook(fb.page_body(fb.messaging_entry(PAGE, fb.text_message(
        PAGE, psid, "Halo admin, jalan desa kami rusak", first_sent))))
    [first] = intake.log("ComplaintFiled")
    intake.worker.on_complaint_dismissed(intake.routing_log.append("ComplaintDismissed", first["complaint_id"], {
        "reason": "Bukan aduan", "duplicate_of": None, "actor": "diskominfotik:sari",
        "lifecycle": lifecycle.snapshot("ditolak")}))
    assert intake.worker.get_complaint(first["complaint_id"])["open"] is False

    intake.webhook(fb.page_body(fb.messaging_entry(PAGE, fb.text_message(
        PAGE, psid, "Lampu jalan di depan sekolah mati", first_sent + 5_000))))   # inside the bubble window
    assert [e["complaint_id"] != first["complaint_id"] for e in intake.log("ComplaintFiled")] == [False, True]
    assert intake.log("ComplaintAmended") == []


@covers("on_complaint_confidentiality_changed")
def test_confidentiality_follows_routings_decision_both_ways(intake):
    complaint_id = intake.file()["complaint_id"]
    for confidential in (True, False):
        intake.worker.on_complaint_confidentiality_changed(intake.routing_log.append(
            "ComplaintConfidentialityChanged", complaint_id, {
                "confidential": confidential, "reason": "Menyebut pungutan", "actor": "diskominfotik:sari",
                "lifecycle": lifecycle.snapshot("disetujui", confidential=confidential)}))
        assert intake.worker.get_complaint(complaint_id)["confidential"] is confidential


@covers("on_citizen_notified", "facebook_webhook")
def test_a_private_reply_to_a_comment_makes_the_commenters_messages_continue_its_complaint(intake):
    comment = fb.comment_change(PAGE, "Sampah di pantai Senggigi tidak diangkut")
    intake.webhook(fb.page_body(fb.changes_entry(PAGE, comment)))
    [filed] = intake.log("ComplaintFiled")
    commenter = fb.new_psid()
    notified = intake.notification_log.append("CitizenNotified", filed["complaint_id"], {
        "trigger_event_id": filed["event_id"], "channel": "comment_private", "messaging_type": None,
        "tag": None, "graph_message_id": "m_private", "recipient_psid": commenter})
    intake.worker.on_citizen_notified(notified)
    [conversation] = rows(intake.store, tables.conversations)
    assert (conversation["page_id"], conversation["psid"], conversation["complaint_id"]) == (
        PAGE, commenter, filed["complaint_id"])

    intake.webhook(fb.page_body(fb.messaging_entry(PAGE, fb.text_message(PAGE, commenter, "Ini fotonya"))))
    [continued] = intake.log("CitizenMessageReceived")
    assert continued["complaint_id"] == filed["complaint_id"] and len(intake.log("ComplaintFiled")) == 1


@covers("on_citizen_notified")
def test_a_messenger_notification_without_psid_remembers_no_conversation(intake):
    complaint_id = intake.file()["complaint_id"]
    intake.worker.on_citizen_notified(intake.notification_log.append("CitizenNotified", complaint_id, {
        "trigger_event_id": "5f0c2a7e-6d1b-4f38-9a41-1c0b9c2d7e11", "channel": "messenger",
        "messaging_type": "RESPONSE", "tag": None, "graph_message_id": "m_1"}))
    assert rows(intake.store, tables.conversations) == []
    assert rows(intake.store, intake.store.checkpoints)[0]["position"] == 1   # handled, not lost


# --- timers -----------------------------------------------------------------------------------------

@covers("catch_up")
def test_catch_up_pulls_the_events_push_did_not_deliver(intake):
    closed = intake.file()["complaint_id"]
    secret = intake.file(text="Jalan provinsi rusak di Praya lagi")["complaint_id"]
    intake.routing_log.append("ComplaintResolved", closed, {
        "actor": "dpupr:budi", "lifecycle": lifecycle.snapshot("selesai")})
    intake.routing_log.append("ComplaintConfidentialityChanged", secret, {
        "confidential": True, "reason": "Menyebut pungutan", "actor": "diskominfotik:sari",
        "lifecycle": lifecycle.snapshot("disetujui", confidential=True)})

    intake.worker.catch_up()
    assert intake.worker.get_complaint(closed)["open"] is False
    assert intake.worker.get_complaint(secret)["confidential"] is True
    assert intake.worker.consumer.checkpoint("routing") == 2
    intake.worker.catch_up()                                  # nothing new: nothing changes
    assert intake.worker.consumer.checkpoint("routing") == 2


@covers("process_left_over_bodies")
def test_webhook_bodies_left_pending_are_processed_when_the_timer_wakes_the_inbox_worker(intake):
    inbox = WebhookInbox(intake.store, settings_from_env())
    body = fb.page_body(fb.messaging_entry(PAGE, fb.text_message(PAGE, fb.new_psid(), "Air PDAM mati tiga hari")))
    inbox.store_body(json.dumps(body).encode())          # stored, then the process died before processing

    intake.worker.process_left_over_bodies()
    assert intake.inbox_worker.wakes == 1                 # the timer only wakes the one worker …
    assert intake.inbox_worker.run() == 1                 # … which processes what is pending
    assert [r["state"] for r in rows(intake.store, tables.webhook_inbox)] == ["processed"]
    assert len(intake.log("ComplaintFiled")) == 1
    intake.worker.process_left_over_bodies()
    assert intake.inbox_worker.run() == 0 and len(intake.log("ComplaintFiled")) == 1


# --- operations --------------------------------------------------------------------------------------

@covers("health")
def test_health_is_ok_with_database_and_broker_and_counts_pending_bodies(intake, broker_up):
    WebhookInbox(intake.store, settings_from_env()).store_body(b'{"object":"page","entry":[]}')
    response = intake.worker.health(request("GET", "/health"))
    assert (response.status_code, json_of(response)) == (200, {
        "service": "intake", "status": "ok", "published": 0, "webhook_bodies_pending": 1,
        "evidence_downloads_pending": 0})


@covers("health")
def test_health_is_unavailable_without_the_broker(intake, broker_down):
    response = intake.worker.health(request("GET", "/health"))
    body = json_of(response)
    assert response.status_code == 503 and body["status"] == "unavailable"
    assert body["reason"] == "broker: ConnectionRefusedError"      # the database is fine


@covers("metrics")
def test_metrics_show_the_outbox_and_quarantine_of_this_store(intake):
    intake.file()
    intake.worker.on_complaint_resolved(intake.routing_log.append("ComplaintResolved", "x", {"actor": "a"}))
    response = intake.worker.metrics(request("GET", "/metrics"))
    assert response.status_code == 200 and response.content_type.startswith("text/plain")
    exposition = text_of(response)
    assert 'ntbcare_outbox_pending_events{service="intake"} 1.0' in exposition   # nothing published yet
    assert 'ntbcare_quarantined_items{service="intake"} 1.0' in exposition


# --- evidence: the media store (docs/intake.md, "Evidence: the media store") -------------------------

@pytest.fixture
def cdn(intake, monkeypatch, tmp_path):
    """A tiny CDN on 127.0.0.1 (allowed by name, as the Graph sandbox is in development) and a
    media directory of the test's own."""
    from tests.support.media_server import MediaServer
    monkeypatch.setenv("INTAKE_MEDIA_DIR", str(tmp_path / "media"))
    monkeypatch.setenv("INTAKE_MEDIA_RETRY_SECONDS", "60")
    with MediaServer() as server:
        monkeypatch.setenv("INTAKE_MEDIA_ALLOW_HOSTS", server.host)
        yield server


def messenger_photo(intake, *urls) -> dict:
    """A complaint of a system holding a Messenger conversation, with the citizen's photos."""
    return intake.file(channel="facebook_messenger", reply_to={"page_id": PAGE, "psid": "7000000000000099"},
                       attachments=[{"type": "image", "url": url} for url in urls])


@covers("file_complaint", "download_evidence", "media", "events_since", "health")
def test_a_messenger_photo_is_downloaded_by_the_timer_announced_and_read_back_in_chunks(intake, cdn, tmp_path,
                                                                                        broker_up):
    import base64
    from tests.support.media_server import JPEG, sha256
    filed = messenger_photo(intake, cdn.add("foto_n.jpg", JPEG))
    [attachment] = intake.log("ComplaintFiled")[0]["data"]["attachments"]
    assert set(attachment) == {"type", "url", "media_id"}
    assert json_of(intake.worker.health(request("GET", "/health")))["evidence_downloads_pending"] == 1

    assert intake.worker.download_evidence() == {"stored": 1}
    digest = sha256(JPEG)
    [stored] = intake.log("EvidenceStored")
    assert (stored["complaint_id"], stored["data"]["media_id"], stored["data"]["state"], stored["data"]["digest"],
            stored["data"]["content_type"], stored["data"]["size"]) == (
        filed["complaint_id"], attachment["media_id"], "stored", digest, "image/jpeg", len(JPEG))
    assert (tmp_path / "media" / digest[:2] / digest).read_bytes() == JPEG
    assert intake.worker.download_evidence() == {}                       # nothing due
    assert json_of(intake.worker.health(request("GET", "/health")))["evidence_downloads_pending"] == 0

    whole = intake.worker.media(filed["complaint_id"], digest)
    assert (whole["content_type"], whole["size"], whole["length"], base64.b64decode(whole["data"])) == (
        "image/jpeg", len(JPEG), len(JPEG), JPEG)
    first, rest = intake.worker.media(filed["complaint_id"], digest, 0, 100), \
        intake.worker.media(filed["complaint_id"], digest, 100)
    assert base64.b64decode(first["data"]) + base64.b64decode(rest["data"]) == JPEG
    assert (first["length"], rest["offset"]) == (100, 100)


@covers("file_complaint", "download_evidence", "events_since")
def test_download_evidence_records_an_expired_link_as_lost_and_retries_a_failing_one(intake, cdn):
    from tests.support.media_server import JPEG
    expired, failing = cdn.add("old_n.jpg", JPEG), cdn.add("busy_n.jpg", JPEG)
    cdn.expire("old_n.jpg")
    cdn.fail("busy_n.jpg", 1)
    filed = messenger_photo(intake, expired, failing)
    assert intake.worker.download_evidence() == {"lost": 1, "retry": 1}
    [lost] = intake.log("EvidenceStored")
    assert (lost["complaint_id"], lost["data"]["state"], lost["data"]["reason"], lost["data"]["digest"]) == (
        filed["complaint_id"], "lost", "link expired or removed (HTTP 403)", None)
    by_state = {row["state"]: row for row in rows(intake.store, tables.media)}
    assert (by_state["pending"]["attempts"], by_state["pending"]["reason"]) == (1, "the server answered HTTP 503")
    assert intake.worker.download_evidence() == {}                       # the retry waits its backoff
    assert json.dumps(intake.log("EvidenceStored")).count("old_n") == 0     # no link in the event


@covers("file_complaint", "download_evidence")
def test_web_form_and_api_links_are_never_fetched(intake, cdn):
    from tests.support.media_server import JPEG
    intake.file(attachments=[{"type": "image", "url": cdn.add("web_n.jpg", JPEG)}])     # channel api
    assert intake.worker.download_evidence() == {}
    assert rows(intake.store, tables.media) == [] and cdn.requests("web_n.jpg") == 0


@covers("media")
def test_media_refuses_malformed_digests_and_evidence_of_other_complaints(intake, cdn):
    from tests.support.media_server import JPEG, sha256
    filed = messenger_photo(intake, cdn.add("foto_n.jpg", JPEG))
    other = intake.file()["complaint_id"]
    digest = sha256(JPEG)
    with pytest.raises(NotFound):
        intake.worker.media(filed["complaint_id"], digest)                 # not downloaded yet
    intake.worker.download_evidence()
    with pytest.raises(NotFound):
        intake.worker.media(other, digest)                                 # not that complaint's
    for bad in ("../../etc/passwd", digest.upper(), "", None):
        with pytest.raises(ValidationFailed):
            intake.worker.media(filed["complaint_id"], bad)
    with pytest.raises(ValidationFailed):
        intake.worker.media(filed["complaint_id"], digest, -1)



# --- issue 19: the citizen's answer to "Sudah selesai?" ---------------------------------------------------

def _messenger_complaint(intake, text="Jalan longsor di Sembalun, mohon diperbaiki"):
    psid = fb.new_psid()
    intake.webhook(fb.page_body(fb.messaging_entry(PAGE, fb.text_message(PAGE, psid, text))))
    filed = intake.log("ComplaintFiled")[-1]
    return psid, filed


def _say(intake, psid, item):
    intake.webhook(fb.page_body(fb.messaging_entry(PAGE, item)))
    return json.loads(rows(intake.store, tables.webhook_inbox)[-1]["outcome"])


@covers("facebook_webhook", "on_complaint_resolved", "on_complaint_reopened")
def test_the_citizens_answers_are_recognised_against_the_latest_closed_complaint(intake):
    psid, filed = _messenger_complaint(intake)
    cid = filed["complaint_id"]
    # While the complaint is open, "belum" is a message on it, not an answer.
    later = fb.now_ms() + 300_000          # past the first burst (INTAKE_BUBBLE_SECONDS)
    assert _say(intake, psid, fb.text_message(PAGE, psid, "belum pak", timestamp_ms=later)) == \
        {"message_received": 1}
    resolve(intake, cid)

    no = f"NTBCARE_DONE:{cid}:NO"
    assert _say(intake, psid, meta.quick_reply_tap(PAGE, psid, "Belum", no)) == {"follow_up_answered": 1}
    assert _say(intake, psid, fb.text_message(PAGE, psid, "blm jalannya msh rusak")) == {"follow_up_answered": 1}
    assert _say(intake, psid, fb.text_message(PAGE, psid, "3")) == {"follow_up_answered": 1}
    assert _say(intake, psid, fb.text_message(PAGE, psid, "9")) == {"follow_up_answered": 1}
    assert _say(intake, psid, meta.button_postback(PAGE, psid, "Sudah", f"NTBCARE_DONE:{cid}:YES")) == \
        {"follow_up_answered": 1}
    answers = [(e["complaint_id"], e["data"]["answer"], e["data"]["words"], e["data"]["score"], e["data"]["via"])
               for e in intake.log("CitizenAnsweredFollowUp")]
    assert answers == [(cid, "not_solved", "Belum", None, "quick_reply"),
                       (cid, "not_solved", "blm jalannya msh rusak", None, "text"),
                       (cid, "rating", "3", 3, "text"),
                       (cid, "unclear_rating", "9", None, "text"),
                       (cid, "solved", "Sudah", None, "postback")]
    assert all(e["data"]["reply_to"] == {"page_id": PAGE, "psid": psid} for e in intake.log("CitizenAnsweredFollowUp"))
    assert len(intake.log("ComplaintFiled")) == 1          # no answer became a complaint

    # Routing reopens it: intake follows the lifecycle, and the old "Belum" button is stale now.
    intake.worker.on_complaint_reopened(intake.routing_log.append("ComplaintReopened", cid, {
        "words": "Belum", "actor": "citizen", "reopen_count": 1, "to_desk": False,
        "due_at": {"follow_up": "2030-01-01T00:00:00.000000Z"}, "answer_event_id": None,
        "lifecycle": lifecycle.snapshot("diproses")}))
    assert intake.worker.get_complaint(cid)["open"] is True
    assert _say(intake, psid, meta.quick_reply_tap(PAGE, psid, "Belum", no)) == {"follow_up_answered": 1}
    assert intake.log("CitizenAnsweredFollowUp")[-1]["data"]["answer"] == "stale"
    # …and the citizen's words now continue the reopened complaint.
    assert _say(intake, psid, fb.text_message(PAGE, psid, "belum, masih berlubang")) == {"message_received": 1}


@covers("facebook_webhook", "on_complaint_resolved")
def test_text_that_is_not_an_answer_files_a_new_complaint_and_foreign_payloads_are_not_answers(intake):
    psid, filed = _messenger_complaint(intake)
    resolve(intake, filed["complaint_id"])
    # A tampered payload (not a complaint id) is read as its text: "Sudah" is an answer …
    assert _say(intake, psid, meta.quick_reply_tap(PAGE, psid, "Sudah", "NTBCARE_DONE:nope:YES")) == \
        {"follow_up_answered": 1}
    # … another app's postback stays ignored, our garbled one too (never a complaint "Mulai").
    assert _say(intake, psid, meta.postback(PAGE, psid)) == {"ignored": 1}
    assert _say(intake, psid, meta.button_postback(PAGE, psid, "Sudah", "NTBCARE_DONE:x")) == {"ignored": 1}
    # A new problem after the closed complaint is a new complaint, not an answer.
    assert _say(intake, psid, fb.text_message(
        PAGE, psid, "Tidak ada air bersih di desa kami sejak seminggu, mohon bantuan PDAM")) == {"filed": 1}
    assert len(intake.log("ComplaintFiled")) == 2
    assert [e["data"]["answer"] for e in intake.log("CitizenAnsweredFollowUp")] == ["solved"]


@covers("web_reopen", "on_complaint_resolved")
def test_web_reopen_records_the_citizens_words_for_a_closed_web_complaint_only(intake):
    filed = json_of(intake.worker.web_complaint(request("POST", "/api/complaints", json_body=ROAD)))
    code = filed["tracking_code"]

    def post(body, tracking_code=code, address="198.51.100.7"):
        return intake.worker.web_reopen(request("POST", f"/api/complaints/{tracking_code}/reopen",
                                                json_body=body, remote_addr=address), tracking_code)

    open_now = post({"text": "belum diperbaiki"})
    assert open_now.status_code == 409 and intake.log("CitizenAnsweredFollowUp") == []
    resolve(intake, filed["complaint_id"])
    accepted = post({"text": "Belum, lubangnya masih ada di depan sekolah"})
    assert accepted.status_code == 202 and json_of(accepted) == {"tracking_code": code, "received": True}
    [answer] = intake.log("CitizenAnsweredFollowUp")
    assert (answer["complaint_id"], answer["data"]["answer"], answer["data"]["via"], answer["data"]["reply_to"]) == \
        (filed["complaint_id"], "not_solved", "web", None)
    assert "Ani" not in accepted.get_data(as_text=True)

    assert post({"text": "  "}).status_code == 400
    assert post({"words": "belum"}).status_code == 400
    assert post({"text": "belum"}, tracking_code="NTB-00000-00000").status_code == 404
    # A Messenger complaint's code is answered as an unknown one: it answers in its own thread.
    psid, messenger = _messenger_complaint(intake)
    resolve(intake, messenger["complaint_id"])
    unknown = post({"text": "belum"}, tracking_code=messenger["data"]["tracking_code"])
    assert (unknown.status_code, json_of(unknown)) == (404, {"error": "unknown tracking code"})
    assert len(intake.log("CitizenAnsweredFollowUp")) == 1


@covers("web_reopen")
def test_web_reopen_is_rate_limited_with_the_web_forms_budget(intake, monkeypatch):
    intake.worker.web_rate_limit = web_rate_limit(monkeypatch, 1, intake.store.database)

    def post(address):
        return intake.worker.web_reopen(request("POST", "/api/complaints/NTB-00000-00000/reopen",
                                                json_body={"text": "belum"}, remote_addr=address),
                                        "NTB-00000-00000")

    assert post("198.51.100.9").status_code == 404
    refused = post("198.51.100.9")
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1


@covers("facebook_webhook", "on_complaint_resolved")
def test_belum_under_the_citizens_own_comment_of_a_closed_complaint_is_an_answer(intake):
    first = fb.comment_change(PAGE, "Jalan provinsi di Praya ambles, motor sering jatuh")
    post_id, comment_id = first["value"]["post_id"], first["value"]["comment_id"]
    intake.webhook(fb.page_body(fb.changes_entry(PAGE, first)))
    [filed] = intake.log("ComplaintFiled")
    resolve(intake, filed["complaint_id"])
    reply = fb.comment_change(PAGE, "belum, masih ambles", post_id=post_id, parent_id=comment_id)
    intake.webhook(fb.page_body(fb.changes_entry(PAGE, reply)))
    [answer] = intake.log("CitizenAnsweredFollowUp")
    assert (answer["complaint_id"], answer["data"]["answer"], answer["data"]["words"]) == (
        filed["complaint_id"], "not_solved", "belum, masih ambles")
    assert answer["data"]["reply_to"]["comment_id"] == reply["value"]["comment_id"]
    # A new problem under the same comment is still a new complaint.
    other = fb.comment_change(PAGE, "Lampu jalan di simpang empat Praya juga mati semua sejak kemarin",
                              post_id=post_id, parent_id=comment_id)
    intake.webhook(fb.page_body(fb.changes_entry(PAGE, other)))
    assert len(intake.log("ComplaintFiled")) == 2 and len(intake.log("CitizenAnsweredFollowUp")) == 1
