"""The gateway's interface tier: every entrypoint of ``GatewayService`` — the outside systems'
``call``, the handlers of routing's events that fill the readers' feeds, the catch-up timer and
health — driven in-process on a SQLite file, with no broker and no database server.

The worker comes from nameko's ``worker_factory`` with real dependencies: the grants read from a
grant file (``GATEWAY_GRANTS_FILE``, as ``GrantTable`` reads it), the gateway's own
``ServiceStore`` (migrated) and the real ``ConsumerApi`` over an ``EventConsumer`` built from
``FeedHandlers`` with the grant file's readers (as ``FeedConsumer`` builds it). Only what needs a
broker is a fake: the internal RPC (records the calls it would make) and the feed relay (the items
stay in the feed log, which the tests read). Routing's side is a ``SourceLog`` whose events carry
the lifecycle routing's own fold gives. ``test_every_gateway_entrypoint_has_an_interface_test``
fails when an entrypoint is added without a test here. The broker's side (user ids, permissions,
the relay publishing) is tests/security/test_broker_grants.py and test_broker_feeds.py.
"""
from __future__ import annotations

import json
import logging
import sys
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

import pytest

from shared.core.errors import Forbidden, NotFound, ValidationFailed
from shared.core.events import isoformat_utc, utc_now
from shared.core.events.lifecycle import Lifecycle
from shared.core.store import ServiceStore
from shared.glue.subscriptions import handler_name
from services.gateway.adapters.feed_log import FeedLog, feed_outbox
from services.gateway.adapters.grant_file import load_grants
from services.gateway.application.feeds import FeedHandlers
from services.gateway.domain.grants import IncomingCall
from services.gateway.service import GatewayService, build_store
from tests.interface.harness import (FakeRelay, SourceLog, check_coverage, consumer_api, covers, instrument,
                                     json_of, real_dependencies, request, rows)

PUPR_SI, DIKES_SI, QUIET = "dinas-pupr-si", "dinas-dikes-si", "dinas-lhk-si"
GRANTS = f"""systems:
  lapor-sp4n:
    operations: [intake.file_complaint, intake.get_complaint]
    agencies: []
  {PUPR_SI}:
    operations: []
    agencies: [dpupr]
  {DIKES_SI}:
    agencies: [dikes]
  {QUIET}:
    agencies: [dlhk]
    feed: false
"""
NAMES = {"dpupr": "Dinas Pekerjaan Umum dan Penataan Ruang", "dikes": "Dinas Kesehatan", "dlhk": "Dinas LHK"}
OFFICER = "Budi Santoso"          # an officer's name: never in a feed


class FakeRpc:
    """The internal RPC (``InternalRpc``: ``rpc(operation, args, kwargs)``) without a broker:
    records each call and answers ``answer``, or raises ``failure`` as the called service would."""

    def __init__(self):
        self.calls: list[tuple[str, list, dict]] = []
        self.answer: object = {"tracking_code": "NTB-ABCDE-FGHIJ"}
        self.failure: Exception | None = None

    def __call__(self, operation: str, args: list, kwargs: dict):
        self.calls.append((operation, args, kwargs))
        if self.failure is not None:
            raise self.failure
        return self.answer


@dataclass
class Gateway:
    worker: GatewayService
    store: ServiceStore
    rpc: FakeRpc
    relay: FakeRelay
    routing_log: SourceLog = field(default_factory=lambda: SourceLog("routing"))
    lifecycles: dict = field(default_factory=dict)

    # -- routing's side -------------------------------------------------------------------------------
    def routing(self, event_type: str, complaint_id: str, data: dict, push: bool = True) -> dict:
        """As routing records it (the event with the lifecycle after it), pushed to its handler."""
        lifecycle = self.lifecycles.setdefault(complaint_id, Lifecycle())
        lifecycle.apply(event_type, data)
        envelope = self.routing_log.append(event_type, complaint_id, dict(data, lifecycle=lifecycle.snapshot()))
        if push:
            self.push(envelope)
        return envelope

    def push(self, envelope: dict) -> None:
        getattr(self.worker, handler_name(envelope["event_type"]))(envelope)

    def routed(self, complaint_id: str | None = None, agency: str = "dpupr", push: bool = True,
               decided_by: str = "rule:jalan-provinsi") -> str:
        complaint_id = complaint_id or str(uuid.uuid4())
        self.routing("ComplaintRouted", complaint_id, {
            "lead_agencies": [agency], "coordinating_agencies": [], "decided_by": decided_by,
            "reason": "Catatan meja: pelapor takut diketahui", "priority": "normal",
            "due_at": {"first_response": isoformat_utc(utc_now() + timedelta(days=2))},
            "agency_names": {agency: NAMES[agency]}}, push=push)
        return complaint_id

    def responded(self, complaint_id: str, text: str, resolved: bool = False, agency: str = "dpupr") -> dict:
        return self.routing("ComplaintResponded", complaint_id, {
            "agency_code": agency, "agency_name": NAMES[agency], "text": text, "resolved": resolved,
            "actor": f"{agency}:{OFFICER}"})

    # -- the gateway's side ---------------------------------------------------------------------------
    def feed(self, reader: str) -> list[dict]:
        """What the reader's feed carries (the items of the feed log, in its order)."""
        with self.store.database.read() as connection:
            return FeedLog().items_of(connection, reader)

    def unpublished(self) -> list[dict]:
        with self.store.database.read() as connection:
            return FeedLog().unpublished(connection)


@pytest.fixture
def gateway(migrated_sqlite, tmp_path, monkeypatch, called) -> Gateway:
    grant_file = tmp_path / "grants.yaml"
    grant_file.write_text(GRANTS)
    monkeypatch.setenv("GATEWAY_GRANTS_FILE", str(grant_file))
    grants = load_grants()                           # what GrantTable and FeedConsumer read at start
    readers = grants.readers()

    class ReadersFeedHandlers(FeedHandlers):        # FeedConsumer's table: FeedHandlers(store, readers)
        def __init__(self, store):
            super().__init__(store, readers)

    store = build_store(migrated_sqlite("gateway", build_store))
    store.prepare()
    rpc, relay, routing_log = FakeRpc(), FakeRelay(), SourceLog("routing")
    worker = real_dependencies(GatewayService, grants=grants, rpc=rpc, store=store, relay=relay,
                               consumer=consumer_api(store, ReadersFeedHandlers, {"routing": routing_log}))
    yield Gateway(instrument(worker, called), store, rpc, relay, routing_log)
    store.database.dispose()


def test_every_gateway_entrypoint_has_an_interface_test():
    check_coverage(GatewayService, sys.modules[__name__])


# --- outside systems' calls ----------------------------------------------------------------------------

def incoming(operation: str, body, caller: str | None = "lapor-sp4n") -> IncomingCall:
    return IncomingCall(caller=caller, operation=operation, reply_to=f"{caller}.replies-1",
                        correlation_id=str(uuid.uuid4()), body=body)


@covers("call")
def test_a_granted_call_is_made_as_asked_and_its_answer_returned(gateway):
    body = {"args": [{"text": "Jalan rusak di Praya", "channel": "api"}], "kwargs": {"external_ref": "SP4N-1"}}
    assert gateway.worker.call(incoming("intake.file_complaint", body)) == gateway.rpc.answer
    assert gateway.rpc.calls == [("intake.file_complaint", body["args"], body["kwargs"])]
    assert gateway.worker.call(incoming("intake.get_complaint", {"args": ["NTB-ABCDE-FGHIJ"]})) == gateway.rpc.answer
    assert gateway.rpc.calls[-1] == ("intake.get_complaint", ["NTB-ABCDE-FGHIJ"], {})


@pytest.mark.parametrize("caller, operation, body, refusal, says", [
    (None, "intake.file_complaint", {"args": []}, Forbidden, "carries no user_id"),
    ("lapor-sp4n", "routing.assign", {"args": []}, Forbidden, "lapor-sp4n is not granted routing.assign"),
    (PUPR_SI, "intake.get_complaint", {"args": []}, Forbidden, f"{PUPR_SI} is not granted intake.get_complaint"),
    ("stranger", "intake.file_complaint", {"args": []}, Forbidden, "stranger is not granted"),
    ("lapor-sp4n", "intake.file_complaint", ["positional"], ValidationFailed, "the body must be"),
    ("lapor-sp4n", "intake.file_complaint", {"args": [], "context": {"caller_system": "x"}}, ValidationFailed,
     "the body must be"),
    ("lapor-sp4n", "intake.file_complaint", {"kwargs": {1: "x"}}, ValidationFailed, "the body must be"),
])
@covers("call")
def test_a_call_without_identity_grant_or_proper_body_is_refused_before_any_service_is_asked(
        gateway, caplog, caller, operation, body, refusal, says):
    with caplog.at_level(logging.WARNING, logger="gateway"), pytest.raises(refusal, match=says):
        gateway.worker.call(incoming(operation, body, caller))
    assert gateway.rpc.calls == []
    [logged] = [r.getMessage() for r in caplog.records if r.name == "gateway"]
    assert logged.startswith(f"refused {operation} from {caller or '(no user_id)'}")


@covers("call")
def test_a_refusal_is_logged_with_who_and_what_never_the_arguments(gateway, caplog):
    """The arguments may hold a reporter's contact details: they stay out of the log."""
    body = {"args": [{"text": "Jalan rusak", "reporter": {"name": "Ani Lestari", "phone": "+62 812 3456 7890"}}]}
    with caplog.at_level(logging.WARNING, logger="gateway"), pytest.raises(Forbidden):
        gateway.worker.call(incoming("intake.file_complaint", body, caller=PUPR_SI))
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert f"refused intake.file_complaint from {PUPR_SI}" in logged
    assert "Ani" not in logged and "3456 7890" not in logged


@covers("call")
def test_a_services_refusal_comes_back_to_the_caller_as_the_services_own(gateway):
    gateway.rpc.failure = NotFound("no complaint NTB-ZZZZZ-ZZZZZ")
    with pytest.raises(NotFound, match="NTB-ZZZZZ-ZZZZZ"):
        gateway.worker.call(incoming("intake.get_complaint", {"args": ["NTB-ZZZZZ-ZZZZZ"]}))
    assert [operation for operation, _args, _kwargs in gateway.rpc.calls] == ["intake.get_complaint"]


# --- routing's events: the readers' feeds --------------------------------------------------------------

@covers("on_complaint_routed", "on_complaint_acknowledged", "on_complaint_responded", "on_complaint_resolved")
def test_a_reader_gets_its_agencys_complaint_in_order_without_names_or_notes(gateway):
    complaint_id = gateway.routed()
    gateway.routing("ComplaintAcknowledged", complaint_id, {"agency_code": "dpupr", "agency_name": NAMES["dpupr"],
                                                            "actor": f"dpupr:{OFFICER}"})
    gateway.responded(complaint_id, "Lubang jalan sudah kami tambal hari ini", resolved=True)
    gateway.routing("ComplaintResolved", complaint_id, {"actor": f"dpupr:{OFFICER}"})
    assert gateway.relay.wakes == 4                         # each recorded item is handed to the relay

    feed = gateway.feed(PUPR_SI)
    assert [(i["position"], i["event_type"]) for i in feed] == [
        (1, "ComplaintRouted"), (2, "ComplaintAcknowledged"), (3, "ComplaintResponded"), (4, "ComplaintResolved")]
    assert {i["complaint_id"] for i in feed} == {complaint_id}
    assert [i["data"]["actor"] for i in feed] == ["rule:jalan-provinsi", "dpupr", "dpupr", "ntbcare"]
    assert feed[2]["data"] == {"agency_code": "dpupr", "agency_name": NAMES["dpupr"], "resolved": True,
                               "text": "Lubang jalan sudah kami tambal hari ini", "actor": "dpupr"}
    assert (feed[3]["complaint"]["status"], feed[3]["complaint"]["open"]) == ("selesai", False)
    assert OFFICER not in json.dumps(feed) and "pelapor" not in json.dumps(feed)   # no names, no desk notes
    assert gateway.feed(DIKES_SI) == [] and gateway.feed(QUIET) == []             # not theirs / no feed
    assert [i["reader"] for i in gateway.unpublished()] == [PUPR_SI] * 4           # waiting for the relay

    gateway.push(gateway.routing_log.events[2])                                    # redelivered
    assert len(gateway.feed(PUPR_SI)) == 4 and gateway.worker.consumer.checkpoint("routing") == 4


@covers("on_complaint_routed", "on_complaint_escalated", "on_complaint_rejected_by_agency")
def test_a_handed_back_complaint_reaches_the_reader_once_more_and_then_no_longer(gateway):
    complaint_id = gateway.routed(decided_by="operator:diskominfotik:Rina Wulandari")
    gateway.routing("ComplaintEscalated", complaint_id, {
        "breach": "first_response", "due_at": isoformat_utc(utc_now()), "notified": ["dpupr", "diskominfotik"],
        "agency_names": {"dpupr": NAMES["dpupr"]}})
    gateway.routing("ComplaintRejectedByAgency", complaint_id, {
        "agency_code": "dpupr", "agency_name": NAMES["dpupr"], "reason": "Bukan kewenangan kami, jalan desa",
        "actor": f"dpupr:{OFFICER}", "returned_to_desk": True,
        "due_at": {"triage": isoformat_utc(utc_now() + timedelta(days=1))}})
    gateway.routing("ComplaintEscalated", complaint_id, {
        "breach": "triage", "due_at": isoformat_utc(utc_now()), "notified": ["diskominfotik"]})
    gateway.routed(complaint_id, agency="dikes", decided_by="operator:diskominfotik:Rina Wulandari")

    feed = gateway.feed(PUPR_SI)
    assert [i["event_type"] for i in feed] == ["ComplaintRouted", "ComplaintEscalated", "ComplaintRejectedByAgency"]
    assert feed[0]["data"]["actor"] == "ntbcare"                       # the desk's decision, not its operator
    assert feed[1]["data"]["breach"] == "first_response"
    handed_back = feed[2]
    assert handed_back["data"] == {"agency_code": "dpupr", "agency_name": NAMES["dpupr"], "returned_to_desk": True,
                                   "due_at": handed_back["data"]["due_at"], "actor": "dpupr"}   # no reason
    assert handed_back["complaint"]["lead_agencies"] == [] and handed_back["complaint"]["at_desk"] is True
    assert "Rina" not in json.dumps(feed) and "jalan desa" not in json.dumps(feed)
    [routed_to_dikes] = gateway.feed(DIKES_SI)                          # the new lead's reader from now on
    assert routed_to_dikes["complaint"]["lead_agencies"] == ["dikes"]


@covers("on_complaint_routed", "on_complaint_confidentiality_changed", "on_complaint_responded")
def test_a_confidential_complaints_answer_reaches_its_reader_without_the_text(gateway):
    complaint_id = gateway.routed()
    gateway.responded(complaint_id, "Kami periksa dulu")
    gateway.routing("ComplaintConfidentialityChanged", complaint_id, {
        "confidential": True, "reason": "Pelapor menyebut pungutan liar oleh petugas", "actor": "intake:classifier"})
    gateway.responded(complaint_id, "Petugas yang meminta uang sudah kami periksa")
    feed = gateway.feed(PUPR_SI)
    assert [i["event_type"] for i in feed] == ["ComplaintRouted", "ComplaintResponded",
                                              "ComplaintConfidentialityChanged", "ComplaintResponded"]
    assert feed[1]["data"]["text"] == "Kami periksa dulu"
    assert feed[2]["data"] == {"confidential": True, "actor": "ntbcare"}
    assert "text" not in feed[3]["data"] and feed[3]["complaint"]["confidential"] is True
    assert "meminta uang" not in json.dumps(feed) and "pungutan" not in json.dumps(feed)


@covers("on_complaint_dismissed")
def test_a_dismissal_reaches_the_reader_without_its_reason(gateway):
    complaint_id = gateway.routed()
    gateway.routing("ComplaintDismissed", complaint_id, {
        "reason": "Aduan ganda dari warga yang sama", "duplicate_of": "NTB-AAAAA-BBBBB",
        "actor": "diskominfotik:Rina Wulandari"})
    dismissed = gateway.feed(PUPR_SI)[-1]
    assert (dismissed["event_type"], dismissed["data"]) == ("ComplaintDismissed", {"actor": "ntbcare"})
    assert dismissed["complaint"]["open"] is False and "NTB-AAAAA" not in json.dumps(dismissed)


@covers("on_complaint_reclassified")
def test_a_desk_correction_reaches_the_reader_as_codes_without_the_reason_or_who(gateway):
    complaint_id = gateway.routed()
    gateway.routing("ComplaintReclassified", complaint_id, {
        "category_before": "infrastruktur", "category_after": "infrastruktur", "region_before": "5202",
        "region_after": "5271", "reason": "Lokasi di Mataram, bukan Praya", "actor": "diskominfotik:Rina Wulandari",
        "rerouted": False})
    corrected = gateway.feed(PUPR_SI)[-1]
    assert (corrected["event_type"], corrected["data"]) == ("ComplaintReclassified", {
        "category_before": "infrastruktur", "category_after": "infrastruktur", "region_before": "5202",
        "region_after": "5271", "rerouted": False, "actor": "ntbcare"})
    assert "Rina" not in json.dumps(corrected) and "bukan Praya" not in json.dumps(corrected)


@covers("on_complaint_linked", "on_complaint_reopened", "on_complaint_reopen_refused", "on_citizen_rated")
def test_routing_events_no_reader_was_promised_are_handled_and_forward_nothing(gateway):
    """Links, reopenings and ratings are not forwarded (``NOT_FORWARDED`` of domain/feed.py, not
    in docs/gateway.md's contract): handled (the checkpoint moves on), recorded for no reader."""
    primary, linked = gateway.routed(), gateway.routed()
    gateway.responded(primary, "Sudah kami tambal", resolved=True)
    gateway.routing("ComplaintResolved", primary, {"actor": f"dpupr:{OFFICER}"})
    before = gateway.feed(PUPR_SI)
    wakes = gateway.relay.wakes
    gateway.routing("ComplaintLinked", linked, {
        "primary_complaint_id": primary, "primary_tracking_code": "NTB-PRIMA-RY001", "reason": "Jalan yang sama",
        "actor": "diskominfotik:Rina Wulandari", "because": ["same_post"], "score": None})
    gateway.routing("CitizenRated", primary, {"score": 2, "words": "lambat sekali", "agencies": ["dpupr"],
                                              "answer_event_id": None})
    gateway.routing("ComplaintReopened", primary, {
        "words": "belum beres, Pak", "actor": "citizen", "reopen_count": 1, "to_desk": False,
        "due_at": {"follow_up": isoformat_utc(utc_now() + timedelta(days=3))}, "answer_event_id": None})
    gateway.routing("ComplaintReopenRefused", linked, {"reason": "open", "words": "belum", "answer_event_id": None})
    assert gateway.feed(PUPR_SI) == before and len(gateway.unpublished()) == len(before)
    assert gateway.worker.consumer.checkpoint("routing") == len(gateway.routing_log.events)
    assert gateway.relay.wakes == wakes + 4
    with gateway.store.database.read() as connection:
        assert gateway.store.quarantine.list(connection, 10) == []


@covers("on_complaint_responded")
def test_an_unreadable_routing_event_is_quarantined_and_feeds_no_one(gateway):
    complaint_id = gateway.routed(push=False)
    broken = gateway.routing_log.append("ComplaintResponded", complaint_id, {"agency_code": "dpupr",
                                                                             "text": "Tanpa siapa"})
    gateway.push(broken)
    with gateway.store.database.read() as connection:
        [item] = gateway.store.quarantine.list(connection, 10)
    assert (item["kind"], item["source"], item["position"]) == ("event", "routing", 2)
    assert "ComplaintResponded" in item["reason"]
    assert gateway.feed(PUPR_SI) == [] and rows(gateway.store, feed_outbox) == []


# --- the timer ---------------------------------------------------------------------------------------------

@covers("catch_up")
def test_catch_up_records_what_push_did_not_deliver_and_wakes_the_relay(gateway):
    first = gateway.routed(push=False)
    pushed = gateway.routed()
    gateway.responded(pushed, "Sedang kami kerjakan")
    second = gateway.routed(push=False)
    assert {i["complaint_id"] for i in gateway.feed(PUPR_SI)} == {pushed}
    wakes = gateway.relay.wakes
    gateway.worker.catch_up()
    assert gateway.relay.wakes == wakes + 1
    assert gateway.worker.consumer.checkpoint("routing") == 4
    feed = gateway.feed(PUPR_SI)
    assert [i["complaint_id"] for i in feed] == [pushed, pushed, first, second]   # in the order recorded
    assert [i["position"] for i in feed] == [1, 2, 3, 4]             # gap-free, whatever the order of arrival
    gateway.worker.catch_up()                                          # nothing new
    assert len(gateway.feed(PUPR_SI)) == 4 and len(gateway.unpublished()) == 4


# --- operations --------------------------------------------------------------------------------------------

@covers("health")
def test_health_is_the_common_one_and_503_without_the_broker_or_the_database(gateway, monkeypatch):
    from shared.glue import health
    from tests.interface.harness import BrokerAnswers, BrokerRefuses

    monkeypatch.setattr(health, "Connection", BrokerAnswers)
    ok = gateway.worker.health(request("GET", "/health"))
    assert (ok.status_code, json_of(ok)) == (200, {"service": "gateway", "status": "ok", "published": 0})
    monkeypatch.setattr(health, "Connection", BrokerRefuses)
    down = gateway.worker.health(request("GET", "/health"))
    assert (down.status_code, json_of(down)["status"]) == (503, "unavailable")
    assert json_of(down)["reason"] == "broker: ConnectionRefusedError"

    monkeypatch.setattr(health, "Connection", BrokerAnswers)

    def gone():
        raise OSError("the database file is gone")

    monkeypatch.setattr(gateway.store.database, "ping", gone)
    no_database = gateway.worker.health(request("GET", "/health"))
    assert (no_database.status_code, json_of(no_database)["reason"]) == (503, "database: OSError")
