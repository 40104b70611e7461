"""Routing's interface tier: every entrypoint of ``RoutingService`` — the desk's and the agencies'
RPC methods, the bearer-token ``/api`` routes, the ``/console/`` pages, health and metrics, the
handlers of intake's events and the timers — driven in-process on a SQLite file, with no broker
and no database server.

The worker comes from nameko's ``worker_factory`` with real dependencies: routing's own
``ServiceStore`` (migrated), the real ``Workflow`` (``workflow_for``: the shipped directory, rules
and SLA policy, the tokens of ``ROUTING_TOKENS``), the real ``Console`` and the real
``ConsumerApi`` over an ``EventConsumer`` built from ``RoutingHandlers``. Only what needs a broker
is a fake: the outbox relay and the ``intake`` RPC proxy (the desk's reporter-contact lookup).
Intake's side is played by a ``SourceLog`` whose ``ComplaintFiled`` envelopes are pushed to
``on_complaint_filed`` (or left for catch-up). Each test asserts what the caller gets and what
routing recorded, refusals included; ``test_every_routing_entrypoint_has_an_interface_test``
fails when an entrypoint is added without a test here.
"""
from __future__ import annotations

import base64
import hashlib
import re
import sys
import time
import uuid
from dataclasses import dataclass
from http.cookies import SimpleCookie

import pytest

from shared.core.errors import Forbidden, IllegalAction, NotFound, ValidationFailed
from shared.core.events import isoformat_utc, utc_now
from shared.core.store import ServiceStore
from services.routing.adapters import clusters as cluster_tables, tables
from services.routing.adapters.console import config as console_config
from services.routing.adapters.console.pages import Console
from services.routing.adapters.console.session import COOKIE_NAME, SessionCodec
from services.routing.application.workflow import Workflow
from services.routing.application.evidence import EvidenceAccess
from services.routing.service import RoutingHandlers, RoutingService, build_store, workflow_for
from tests.interface.harness import (FakeRelay, SourceLog, check_coverage, consumer_api, covers, instrument,
                                     json_of, real_dependencies, request, rows, text_of)

DESK = "diskominfotik"
TOKENS = {DESK: "desk-token-interface", "dpupr": "dpupr-token-interface",
          "pemkab-loteng": "loteng-token-interface", "dikes": "dikes-token-interface"}
ROAD = ("Jalan provinsi rusak parah di Praya, banyak lubang", "infrastruktur", "5202")   # rule: dpupr leads
UNCLEAR = ("Halo admin, mohon dibantu urusan saya", "lainnya", None)                   # to the desk


class FakeIntake:
    """intake's RPC proxy as the console's reporter-contact lookup uses it; ``failure`` makes the
    call raise it (as a remote refusal or an intake that does not answer)."""

    def __init__(self):
        self.calls: list[tuple] = []
        self.failure: Exception | None = None
        self.media_files: dict[tuple[str, str], tuple[str, bytes]] = {}   # intake's media store

    def reporter_contact(self, complaint_id, actor, reason):
        self.calls.append((complaint_id, actor, reason))
        if self.failure:
            raise self.failure
        return {"complaint_id": complaint_id, "name": "Ani Lestari", "phone": "+62 812 3456 7890",
                "email": "ani@example.org"}

    def media(self, complaint_id, digest, offset=0, limit=None):
        """``intake.media`` as routing's evidence endpoints read it: 1 KiB chunks here, so the
        chunked read is exercised."""
        self.calls.append(("media", complaint_id, digest, offset))
        if self.failure:
            raise self.failure
        if (complaint_id, digest) not in self.media_files:
            raise NotFound(f"complaint {complaint_id} has no stored evidence {digest}")
        content_type, data = self.media_files[(complaint_id, digest)]
        part = data[offset:offset + 1024]
        return {"complaint_id": complaint_id, "digest": digest, "content_type": content_type, "size": len(data),
                "offset": offset, "length": len(part), "data": base64.b64encode(part).decode("ascii")}


@dataclass
class Routing:
    worker: RoutingService
    store: ServiceStore
    workflow: Workflow
    intake: FakeIntake
    intake_log: SourceLog         # what intake recorded, for pushes and catch-up

    def filed(self, text: str, category: str, region: str | None, *, confidential: bool = False,
              push: bool = True) -> str:
        """intake records ``ComplaintFiled``; pushed to routing's handler unless ``push=False``."""
        complaint_id, now = str(uuid.uuid4()), isoformat_utc(utc_now())
        envelope = self.intake_log.append("ComplaintFiled", complaint_id, {
            "tracking_code": f"NTB-{uuid.uuid4().hex[:6].upper()}", "channel": "api", "filed_at": now,
            "text": text, "attachments": [], "category": category, "region_code": region,
            "priority": "normal", "reasons": {"category": [], "region": [], "priority": []},
            "confidential": confidential, "reply_to": None, "last_citizen_message_at": None,
            "external_ref": None})
        if push:
            self.worker.on_complaint_filed(envelope)
        return complaint_id

    def log(self, complaint_id: str | None = None) -> list[tuple[str, dict]]:
        """Routing's own events (of one complaint), as (type, data)."""
        return [(e["event_type"], e["data"]) for e in self.worker.events_since(0)
                if complaint_id in (None, e["complaint_id"])]

    def api(self, entrypoint: str, method: str, path: str, *args, agency: str | None = None,
            body=None, actor: str | None = None):
        """Call an ``/api`` route as agency ``agency`` (its bearer token) or anonymously."""
        headers = {}
        if agency:
            headers["Authorization"] = f"Bearer {TOKENS[agency]}"
        if actor:
            headers["X-Actor"] = actor
        return getattr(self.worker, entrypoint)(request(method, path, json_body=body, headers=headers), *args)


@pytest.fixture
def make_routing(migrated_sqlite, monkeypatch, called):
    """Routing on a fresh SQLite file; ``env`` is set before the workflow reads it (SLA clocks)."""
    stores = []

    def make(**env) -> Routing:
        monkeypatch.setenv("ROUTING_TOKENS", ",".join(f"{code}:{token}" for code, token in TOKENS.items()))
        monkeypatch.setenv("ROUTING_CONSOLE_SECRET", "s" * 40)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        store = build_store(migrated_sqlite("routing", build_store))
        store.prepare()                   # as the Storage provider does: checks it is at the newest revision
        stores.append(store)
        workflow = workflow_for(store)
        console = Console(workflow, SessionCodec(console_config.console_secret()),
                          console_config.secure_cookie_mode(), evidence=EvidenceAccess(workflow))
        intake_log, intake = SourceLog("intake"), FakeIntake()
        worker = real_dependencies(RoutingService, store=store, relay=FakeRelay(), workflow=workflow,
                                   console=console, intake=intake,
                                   consumer=consumer_api(store, RoutingHandlers, {"intake": intake_log}))
        return Routing(instrument(worker, called), store, workflow, intake, intake_log)

    yield make
    for store in stores:
        store.database.dispose()


@pytest.fixture
def routing(make_routing) -> Routing:
    return make_routing()


def test_every_routing_entrypoint_has_an_interface_test():
    check_coverage(RoutingService, sys.modules[__name__])


# --- intake's events -------------------------------------------------------------------------------

@covers("on_complaint_filed", "events_since", "get_complaint")
def test_a_filed_complaint_is_routed_by_the_rules_once(routing):
    complaint_id = routing.filed(*ROAD)
    [(event_type, data)] = routing.log(complaint_id)
    assert (event_type, data["lead_agencies"], data["decided_by"]) == (
        "ComplaintRouted", ["dpupr"], "rule:jalan-provinsi")
    assert data["lifecycle"]["status"] == "disetujui" and data["agency_names"]["dpupr"]
    complaint = routing.worker.get_complaint(complaint_id)
    assert (complaint["status"], complaint["lead_agencies"], complaint["at_desk"]) == ("assigned", ["dpupr"], False)
    assert routing.worker.consumer.checkpoint("intake") == 1

    routing.worker.on_complaint_filed(routing.intake_log.events[0])     # redelivered
    assert len(routing.log(complaint_id)) == 1


@covers("on_complaint_filed", "event_ids_since", "events_since")
def test_event_ids_since_lists_routing_s_log(routing):
    routing.filed(*ROAD)
    [event] = routing.worker.events_since(0)
    assert routing.worker.event_ids_since(0) == [[event["position"], event["event_id"]]]
    assert routing.worker.event_ids_since(event["position"]) == []


@covers("on_complaint_filed", "quarantined")
def test_an_unreadable_filing_is_quarantined_and_routes_nothing(routing):
    broken = routing.intake_log.append("ComplaintFiled", str(uuid.uuid4()), {"text": "Tanpa kode lacak"})
    routing.worker.on_complaint_filed(broken)
    [item] = routing.worker.quarantined()
    assert (item["kind"], item["source"], item["position"]) == ("event", "intake", 1)
    assert "tracking_code" in item["reason"]
    assert routing.log() == []


@covers("on_complaint_amended", "get_complaint")
def test_an_amended_text_is_read_by_agencies_and_a_reported_levy_makes_it_confidential(routing):
    complaint_id = routing.filed(*ROAD)

    def amended(text, levy):
        return routing.intake_log.append("ComplaintAmended", complaint_id, {
            "text": text, "why": "more_messages", "last_citizen_message_at": isoformat_utc(utc_now()),
            "levy_reported": levy, "attachments": [], "category": "infrastruktur", "region_code": "5202",
            "priority": "normal", "reasons": {"category": [], "region": [], "priority": []}})

    routing.worker.on_complaint_amended(amended(f"{ROAD[0]}\nSudah dua bulan.", False))
    complaint = routing.worker.get_complaint(complaint_id)
    assert complaint["text"].endswith("Sudah dua bulan.") and complaint["confidential"] is False
    routing.worker.on_complaint_amended(amended(f"{ROAD[0]}\nPetugas minta uang pelicin.", True))
    assert routing.worker.get_complaint(complaint_id)["confidential"] is True
    assert [t for t, _ in routing.log(complaint_id)] == ["ComplaintRouted", "ComplaintConfidentialityChanged"]
    assert routing.log(complaint_id)[-1][1]["actor"] == "intake:classifier"


@covers("on_citizen_message_received", "get_complaint")
def test_a_levy_in_a_later_message_makes_it_confidential_once(routing):
    """A message after the first burst is text of the complaint too (CitizenMessageReceived v2):
    one reporting a levy makes it confidential, by intake's classifier, once; one that reports
    none, or a v1 message (never classified, lifted with ``False``), changes nothing."""
    complaint_id = routing.filed(*ROAD)

    def message(text, levy, schema_version=2):
        envelope = routing.intake_log.append("CitizenMessageReceived", complaint_id, {
            "text": text, "attachments": [], "reply_to": None, "message_at": isoformat_utc(utc_now()),
            "levy_reported": bool(levy)})
        if schema_version == 1:  # as intake recorded it before v2: no levy_reported
            del envelope["data"]["levy_reported"]
            envelope["schema_version"] = 1
        return envelope

    routing.worker.on_citizen_message_received(message("Sudah dua bulan.", False))
    routing.worker.on_citizen_message_received(message("Petugas minta uang pelicin.", None, schema_version=1))
    assert routing.worker.get_complaint(complaint_id)["confidential"] is False
    routing.worker.on_citizen_message_received(message("Petugas minta uang pelicin 300rb.", True))
    routing.worker.on_citizen_message_received(message("Pungli lagi hari ini.", True))
    assert routing.worker.get_complaint(complaint_id)["confidential"] is True
    assert [t for t, _ in routing.log(complaint_id)] == ["ComplaintRouted", "ComplaintConfidentialityChanged"]
    assert routing.log(complaint_id)[-1][1]["actor"] == "intake:classifier"


@covers("on_complaint_amended")
def test_an_amendment_of_a_complaint_routing_never_saw_records_nothing(routing):
    routing.worker.on_complaint_amended(routing.intake_log.append("ComplaintAmended", str(uuid.uuid4()), {
        "text": "Teks baru", "why": "comment_edited", "last_citizen_message_at": None, "levy_reported": True,
        "attachments": [], "category": "lainnya", "region_code": None, "priority": "normal",
        "reasons": {"category": [], "region": [], "priority": []}}))
    assert routing.log() == [] and routing.worker.quarantined() == []
    assert routing.worker.consumer.checkpoint("intake") == 1


# --- RPC: directory and tokens -----------------------------------------------------------------------

@covers("agencies")
def test_agencies_lists_the_directory_with_the_desk_marked(routing):
    agencies = {a["code"]: a for a in routing.worker.agencies()}
    assert agencies[DESK]["is_desk"] is True and agencies["dpupr"]["is_desk"] is False
    assert "infrastruktur" in agencies["dpupr"]["categories"]
    assert len(agencies) == len(routing.workflow.directory.all())


@covers("issue_token", "http_me")
def test_an_issued_token_authenticates_its_agency_and_is_stored_hashed(routing):
    issued = routing.worker.issue_token("dikes", "diskominfotik:sari")
    assert issued["agency_code"] == "dikes" and len(issued["token"]) >= 32
    me = routing.worker.http_me(request("GET", "/api/me", headers={"Authorization": f"Bearer {issued['token']}"}))
    assert json_of(me) == {"agency_code": "dikes", "actor": "dikes", "is_desk": False}
    assert issued["token"] not in str(rows(routing.store, tables.agency_tokens))


@pytest.mark.parametrize("agency, actor, refusal", [
    ("no-such-agency", "diskominfotik:sari", NotFound), ("dikes", " ", ValidationFailed)])
@covers("issue_token")
def test_issue_token_refuses_an_unknown_agency_or_a_blank_actor(routing, agency, actor, refusal):
    before = rows(routing.store, tables.agency_tokens)
    with pytest.raises(refusal):
        routing.worker.issue_token(agency, actor)
    assert rows(routing.store, tables.agency_tokens) == before


# --- RPC: the desk ------------------------------------------------------------------------------------

@covers("desk_queue", "assign")
def test_the_desk_routes_a_complaint_from_its_queue(routing):
    complaint_id = routing.filed(*UNCLEAR)
    [queued] = routing.worker.desk_queue()
    assert (queued["complaint_id"], queued["why"]) == (complaint_id, ["triage"])

    result = routing.worker.assign(complaint_id, ["dpupr", "pemkab-loteng"], "Jalan desa, PUPR memimpin",
                                   "diskominfotik:sari")
    assert result["recorded"] == ["ComplaintRouted"]
    assert (result["lead_agencies"], result["coordinating_agencies"], result["decided_by"]) == (
        ["dpupr"], ["pemkab-loteng"], "operator:diskominfotik:sari")
    assert routing.worker.desk_queue() == []


@pytest.mark.parametrize("complaint, codes, note, refusal", [
    ("known", ["no-such-agency"], "Catatan", ValidationFailed),
    ("known", [], "Catatan", ValidationFailed),
    ("known", ["dpupr"], " ", ValidationFailed),
    ("unknown", ["dpupr"], "Catatan", NotFound),
])
@covers("assign")
def test_assign_refuses_and_records_nothing(routing, complaint, codes, note, refusal):
    complaint_id = routing.filed(*UNCLEAR)
    target = complaint_id if complaint == "known" else str(uuid.uuid4())
    before = routing.log()
    with pytest.raises(refusal):
        routing.worker.assign(target, codes, note, "diskominfotik:sari")
    assert routing.log() == before


@covers("dismiss")
def test_the_desk_dismisses_a_duplicate_and_cannot_dismiss_it_twice(routing):
    original = routing.filed(*ROAD)
    duplicate = routing.filed(*ROAD)
    tracking_code = routing.worker.get_complaint(original)["tracking_code"]
    with pytest.raises(NotFound):
        routing.worker.dismiss(duplicate, "Aduan ganda", "diskominfotik:sari", duplicate_of="NTB-NONE00")
    result = routing.worker.dismiss(duplicate, "Aduan ganda", "diskominfotik:sari", duplicate_of=tracking_code)
    assert (result["recorded"], result["status"]) == (["ComplaintDismissed"], "dismissed")
    assert routing.log(duplicate)[-1][1]["duplicate_of"] == tracking_code
    with pytest.raises(IllegalAction):
        routing.worker.dismiss(duplicate, "Lagi", "diskominfotik:sari")
    assert [t for t, _ in routing.log(duplicate)] == ["ComplaintRouted", "ComplaintDismissed"]


@covers("set_priority")
def test_the_desk_changes_the_priority_once_with_a_reason(routing):
    complaint_id = routing.filed(*ROAD)
    result = routing.worker.set_priority(complaint_id, "urgent", "Jalan utama ke rumah sakit", "diskominfotik:sari")
    assert result["priority"] == "urgent" and result["recorded"]
    for priority, reason, refusal in [("urgent", "Lagi", IllegalAction), ("segera", "Alasan", ValidationFailed),
                                      ("important", " ", ValidationFailed)]:
        with pytest.raises(refusal):
            routing.worker.set_priority(complaint_id, priority, reason, "diskominfotik:sari")
    assert routing.worker.get_complaint(complaint_id)["priority"] == "urgent"


@covers("set_confidential")
def test_the_desk_marks_and_unmarks_confidentiality_with_a_reason(routing):
    complaint_id = routing.filed(*ROAD)
    with pytest.raises(ValidationFailed):
        routing.worker.set_confidential(complaint_id, True, " ", "diskominfotik:sari")
    with pytest.raises(ValidationFailed):
        routing.worker.set_confidential(complaint_id, "ya", "Menyebut nama petugas", "diskominfotik:sari")
    assert routing.worker.set_confidential(complaint_id, True, "Menyebut nama petugas",
                                           "diskominfotik:sari")["confidential"] is True
    with pytest.raises(IllegalAction):
        routing.worker.set_confidential(complaint_id, True, "Lagi", "diskominfotik:sari")
    assert routing.worker.set_confidential(complaint_id, False, "Tidak ada nama",
                                           "diskominfotik:sari")["confidential"] is False
    changes = [d for t, d in routing.log(complaint_id) if t == "ComplaintConfidentialityChanged"]
    assert [(d["confidential"], d["actor"]) for d in changes] == [
        (True, "diskominfotik:sari"), (False, "diskominfotik:sari")]


# --- RPC: agencies ------------------------------------------------------------------------------------

@covers("complaints_for")
def test_complaints_for_lists_an_agencys_complaints_by_status(routing):
    road = routing.filed(*ROAD)
    routing.filed(*UNCLEAR)
    [listed] = routing.worker.complaints_for("dpupr")
    assert (listed["complaint_id"], listed["role"]) == (road, "lead")
    assert [c["complaint_id"] for c in routing.worker.complaints_for("dpupr", "disetujui")] == [road]
    assert routing.worker.complaints_for("dpupr", "selesai") == []
    assert routing.worker.complaints_for("dikes") == []
    with pytest.raises(ValidationFailed):
        routing.worker.complaints_for("dpupr", "hilang")
    with pytest.raises(NotFound):
        routing.worker.complaints_for("no-such-agency")


@covers("acknowledge", "respond", "timeline")
def test_the_lead_acknowledges_answers_and_resolves_and_the_timeline_tells_it(routing):
    complaint_id = routing.filed(*ROAD)
    assert routing.worker.acknowledge(complaint_id, "dpupr", "dpupr:budi")["recorded"] == ["ComplaintAcknowledged"]
    answered = routing.worker.respond(complaint_id, "dpupr", "Ruas ini diperbaiki pekan depan.", False, "dpupr:budi")
    assert answered["recorded"] == ["ComplaintResponded"] and answered["status"] == "in_progress"
    resolved = routing.worker.respond(complaint_id, "dpupr", "Sudah diperbaiki.", True, "dpupr:budi")
    assert resolved["recorded"] == ["ComplaintResponded", "ComplaintResolved"]
    assert resolved["lifecycle"]["status"] == "selesai" and resolved["lifecycle"]["open"] is False

    timeline = routing.worker.timeline(complaint_id)
    assert [entry["event_type"] for entry in timeline] == [
        "ComplaintFiled", "ComplaintRouted", "ComplaintAcknowledged", "ComplaintResponded",
        "ComplaintResponded", "ComplaintResolved"]
    assert timeline[2]["data"]["actor"] == "dpupr:budi"
    with pytest.raises(NotFound):
        routing.worker.timeline("NTB-NONE00")


@covers("acknowledge", "respond")
def test_agency_actions_are_refused_when_not_assigned_or_not_allowed(routing):
    complaint_id = routing.filed(*ROAD)
    at_desk = routing.filed(*UNCLEAR)
    with pytest.raises(Forbidden):          # routed, but not to this agency
        routing.worker.acknowledge(complaint_id, "dikes", "dikes:eka")
    with pytest.raises(IllegalAction):      # still at the desk: nobody's yet
        routing.worker.acknowledge(at_desk, "dpupr", "dpupr:budi")
    with pytest.raises(ValidationFailed):
        routing.worker.respond(complaint_id, "dpupr", " ", False, "dpupr:budi")
    routing.worker.acknowledge(complaint_id, "dpupr", "dpupr:budi")
    with pytest.raises(IllegalAction):
        routing.worker.acknowledge(complaint_id, "dpupr", "dpupr:budi")
    assert [t for t, _ in routing.log()] == ["ComplaintRouted", "ComplaintRouted", "ComplaintAcknowledged"]


@covers("reject", "desk_queue")
def test_a_rejection_hands_the_complaint_back_to_the_desk(routing):
    complaint_id = routing.filed(*ROAD)
    with pytest.raises(ValidationFailed):
        routing.worker.reject(complaint_id, "dpupr", "", "dpupr:budi")
    result = routing.worker.reject(complaint_id, "dpupr", "Ruas ini jalan kabupaten", "dpupr:budi")
    assert result["recorded"] == ["ComplaintRejectedByAgency"] and result["at_desk"] is True
    [queued] = routing.worker.desk_queue()
    assert (queued["complaint_id"], queued["why"]) == (complaint_id, ["returned"])
    assert routing.worker.complaints_for("dpupr") == []          # handed back: no longer dpupr's


# --- RPC: quarantine ---------------------------------------------------------------------------------

@covers("quarantined", "replay_quarantined")
def test_a_quarantined_filing_is_routed_when_replayed(routing):
    complaint_id = routing.filed(*ROAD, push=False)
    filing = routing.intake_log.events[0]
    with routing.store.database.transaction() as tx:   # as the consumer quarantines a handler that kept failing
        routing.store.quarantine.put(tx.connection, "event", "handler failed: OperationalError", filing,
                                     source="intake", position=filing["position"])
    [item] = routing.worker.quarantined()
    with pytest.raises(ValidationFailed):
        routing.worker.replay_quarantined(item["item_id"], "")
    with pytest.raises(NotFound):
        routing.worker.replay_quarantined(item["item_id"] + 1, "ops:ani")

    assert routing.worker.replay_quarantined(item["item_id"], "ops:ani")["outcome"] == "replayed"
    assert routing.worker.get_complaint(complaint_id)["lead_agencies"] == ["dpupr"]
    assert routing.worker.quarantined() == []
    assert routing.worker.replay_quarantined(item["item_id"], "ops:ani")["outcome"] == "already_replayed"
    assert len(routing.log(complaint_id)) == 1


# --- HTTP: the agency API ------------------------------------------------------------------------------

@covers("http_me")
def test_api_me_names_the_caller_and_refuses_without_a_known_token(routing):
    me = routing.api("http_me", "GET", "/api/me", agency=DESK, actor="Sari")
    assert (me.status_code, json_of(me)) == (200, {"agency_code": DESK, "actor": f"{DESK}:Sari", "is_desk": True})
    anonymous = routing.api("http_me", "GET", "/api/me")
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    forged = routing.worker.http_me(request("GET", "/api/me", headers={"Authorization": "Bearer not-a-token"}))
    assert forged.status_code == 401
    assert routing.api("http_me", "GET", "/api/me", agency="dpupr", actor="a:b").status_code == 400


@covers("http_agencies")
def test_api_agencies_for_any_agency_not_for_strangers(routing):
    listed = routing.api("http_agencies", "GET", "/api/agencies", agency="dikes")
    assert listed.status_code == 200 and {a["code"] for a in json_of(listed)} >= {DESK, "dpupr", "dikes"}
    assert routing.api("http_agencies", "GET", "/api/agencies").status_code == 401


@covers("http_desk_queue")
def test_api_desk_queue_is_the_desks_only(routing):
    complaint_id = routing.filed(*UNCLEAR)
    queue = routing.api("http_desk_queue", "GET", "/api/desk/queue", agency=DESK)
    assert queue.status_code == 200 and [c["complaint_id"] for c in json_of(queue)] == [complaint_id]
    assert routing.api("http_desk_queue", "GET", "/api/desk/queue", agency="dpupr").status_code == 403
    assert routing.api("http_desk_queue", "GET", "/api/desk/queue").status_code == 401


@covers("http_complaints_for")
def test_api_complaints_for_an_agency_is_its_own_or_the_desks(routing):
    road = routing.filed(*ROAD)

    def listing(code, agency, status=None):
        path = f"/api/agencies/{code}/complaints" + (f"?status={status}" if status else "")
        return routing.api("http_complaints_for", "GET", path, code, agency=agency)

    own = listing("dpupr", "dpupr")
    assert own.status_code == 200 and [c["complaint_id"] for c in json_of(own)] == [road]
    assert json_of(listing("dpupr", "dpupr", "selesai")) == []
    assert listing("dpupr", DESK).status_code == 200
    assert listing("dpupr", "dikes").status_code == 403
    assert listing("dpupr", "dpupr", "hilang").status_code == 400
    assert listing("no-such-agency", DESK).status_code == 404


@covers("http_complaint", "http_timeline")
def test_api_complaint_and_timeline_for_assigned_agencies_and_the_desk_only(routing):
    complaint_id = routing.filed(*ROAD)
    for entrypoint, path in [("http_complaint", f"/api/complaints/{complaint_id}"),
                             ("http_timeline", f"/api/complaints/{complaint_id}/timeline")]:
        for agency, status in [("dpupr", 200), (DESK, 200), ("dikes", 404), (None, 401)]:   # not its own: as unknown
            assert routing.api(entrypoint, "GET", path, complaint_id, agency=agency).status_code == status, \
                (entrypoint, agency)
        assert routing.api(entrypoint, "GET", "/api/complaints/NTB-NONE00", "NTB-NONE00",
                           agency=DESK).status_code == 404
    complaint = json_of(routing.api("http_complaint", "GET", "/", complaint_id, agency="dpupr"))
    assert complaint["lead_agencies"] == ["dpupr"]
    timeline = json_of(routing.api("http_timeline", "GET", "/", complaint_id, agency="dpupr"))
    assert [e["event_type"] for e in timeline] == ["ComplaintFiled", "ComplaintRouted"]


@covers("http_assign")
def test_api_assign_by_the_desk_records_the_named_officer(routing):
    complaint_id = routing.filed(*UNCLEAR)
    path = f"/api/complaints/{complaint_id}/assign"
    assert routing.api("http_assign", "POST", path, complaint_id, agency="dpupr",
                       body={"agency_codes": ["dpupr"], "note": "Saya ambil"}).status_code == 403
    missing = routing.api("http_assign", "POST", path, complaint_id, agency=DESK, body={"agency_codes": ["dpupr"]})
    assert missing.status_code == 400 and "note" in json_of(missing)["fields"]
    assert routing.api("http_assign", "POST", path, complaint_id, agency=DESK,
                       body={"agency_codes": ["dpupr"], "note": "x", "urgent": True}).status_code == 400
    assert [t for t, _ in routing.log(complaint_id)] == ["ComplaintRouted"]   # only the rules' routing to the desk

    routed = routing.api("http_assign", "POST", path, complaint_id, agency=DESK, actor="Sari",
                         body={"agency_codes": ["dpupr"], "note": "Jalan provinsi"})
    assert routed.status_code == 200 and json_of(routed)["lead_agencies"] == ["dpupr"]
    assert routing.log(complaint_id)[-1][1]["decided_by"] == f"operator:{DESK}:Sari"


@covers("http_dismiss", "http_priority", "http_confidentiality")
def test_api_desk_commands_are_refused_to_agencies_and_recorded_for_the_desk(routing):
    complaint_id = routing.filed(*ROAD)
    commands = [("http_priority", "priority", {"priority": "urgent", "reason": "Akses rumah sakit"}),
                ("http_confidentiality", "confidentiality", {"confidential": True, "reason": "Ada nama"}),
                ("http_dismiss", "dismiss", {"reason": "Bukan aduan"})]
    for entrypoint, verb, body in commands:
        path = f"/api/complaints/{complaint_id}/{verb}"
        assert routing.api(entrypoint, "POST", path, complaint_id, agency="dpupr", body=body).status_code == 403
        assert routing.api(entrypoint, "POST", path, complaint_id, agency=DESK, body={}).status_code == 400
    assert [t for t, _ in routing.log(complaint_id)] == ["ComplaintRouted"]

    for entrypoint, verb, body in commands:
        response = routing.api(entrypoint, "POST", f"/api/complaints/{complaint_id}/{verb}", complaint_id,
                               agency=DESK, actor="Sari", body=body)
        assert response.status_code == 200, (entrypoint, json_of(response))
    complaint = routing.worker.get_complaint(complaint_id)
    assert (complaint["priority"], complaint["confidential"], complaint["status"]) == ("urgent", True, "dismissed")
    again = routing.api("http_dismiss", "POST", "/", complaint_id, agency=DESK, body={"reason": "Lagi"})
    assert again.status_code == 409


@covers("http_acknowledge", "http_respond")
def test_api_the_lead_acknowledges_and_resolves_other_agencies_cannot(routing):
    complaint_id = routing.filed(*ROAD)
    base = f"/api/complaints/{complaint_id}"
    assert routing.api("http_acknowledge", "POST", f"{base}/acknowledge", complaint_id,
                       agency="dikes").status_code == 404
    assert routing.api("http_acknowledge", "POST", f"{base}/acknowledge", complaint_id, agency="dpupr",
                       body={"note": "x"}).status_code == 400        # no body fields are accepted
    acknowledged = routing.api("http_acknowledge", "POST", f"{base}/acknowledge", complaint_id,
                               agency="dpupr", actor="Budi")
    assert acknowledged.status_code == 200 and json_of(acknowledged)["recorded"] == ["ComplaintAcknowledged"]
    assert routing.api("http_acknowledge", "POST", f"{base}/acknowledge", complaint_id,
                       agency="dpupr").status_code == 409
    assert routing.api("http_respond", "POST", f"{base}/respond", complaint_id, agency="dpupr",
                       body={"resolved": True}).status_code == 400
    resolved = routing.api("http_respond", "POST", f"{base}/respond", complaint_id, agency="dpupr", actor="Budi",
                           body={"text": "Sudah diperbaiki.", "resolved": True})
    assert resolved.status_code == 200 and json_of(resolved)["status"] == "resolved"
    assert routing.log(complaint_id)[-1][0] == "ComplaintResolved"
    assert routing.log(complaint_id)[1][1]["actor"] == "dpupr:Budi"
    unknown = routing.api("http_respond", "POST", "/", "NTB-NONE00", agency="dpupr",
                          body={"text": "Halo", "resolved": False})
    assert unknown.status_code == 404


@covers("http_reject")
def test_api_reject_hands_back_and_a_stranger_cannot(routing):
    complaint_id = routing.filed(*ROAD)
    path = f"/api/complaints/{complaint_id}/reject"
    assert routing.api("http_reject", "POST", path, complaint_id, agency="dikes",
                       body={"reason": "Bukan wewenang"}).status_code == 404
    assert routing.api("http_reject", "POST", path, complaint_id, agency="dpupr", body={}).status_code == 400
    rejected = routing.api("http_reject", "POST", path, complaint_id, agency="dpupr",
                           body={"reason": "Ruas ini jalan kabupaten"})
    assert rejected.status_code == 200 and json_of(rejected)["at_desk"] is True
    assert routing.api("http_complaint", "GET", "/", complaint_id, agency="dpupr").status_code == 404


# --- HTTP: the console ---------------------------------------------------------------------------------

class Browser:
    """Calls the console's ``@http`` entrypoints as a browser would, keeping the session cookie."""

    def __init__(self, routing: Routing):
        self.worker = routing.worker
        self.cookie: str | None = None

    def call(self, entrypoint: str, method: str, path: str, *args, data=None, query=None):
        headers = {"Cookie": f"{COOKIE_NAME}={self.cookie}"} if self.cookie else {}
        response = getattr(self.worker, entrypoint)(request(method, path, data=data, headers=headers,
                                                            query=query), *args)
        for header in response.headers.getlist("Set-Cookie"):
            self.cookie = SimpleCookie(header)[COOKIE_NAME].value
        return response

    def sign_in(self, agency: str, name: str = "Petugas Uji"):
        form = self.call("console_login_form", "GET", "/console/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', text_of(form)).group(1)
        signed_in = self.call("console_login", "POST", "/console/login",
                              data={"csrf_token": token, "token": TOKENS[agency], "nama": name})
        assert signed_in.status_code == 303, text_of(signed_in)

    def page_csrf(self, response) -> str:
        return re.search(r'name="csrf_token" value="([^"]+)"', text_of(response)).group(1)


@covers("console_login_form", "console_login", "console_home", "console_logout")
def test_console_sign_in_needs_csrf_and_a_known_token_and_sign_out_ends_the_session(routing):
    browser = Browser(routing)
    assert browser.call("console_home", "GET", "/console/").headers["Location"] == "/console/login"
    form = browser.call("console_login_form", "GET", "/console/login")
    assert form.status_code == 200 and form.headers["X-Frame-Options"] == "DENY"
    csrf = browser.page_csrf(form)
    assert browser.call("console_login", "POST", "/console/login",
                        data={"token": TOKENS[DESK], "nama": "Sari"}).status_code == 403
    assert browser.call("console_login", "POST", "/console/login",
                        data={"csrf_token": csrf, "token": "not-a-token", "nama": "Sari"}).status_code == 401
    signed_in = browser.call("console_login", "POST", "/console/login",
                             data={"csrf_token": csrf, "token": TOKENS[DESK], "nama": "Sari"})
    assert (signed_in.status_code, signed_in.headers["Location"]) == (303, "/console/")
    assert browser.call("console_home", "GET", "/console/").headers["Location"] == "/console/antrian"

    queue = browser.call("console_queue", "GET", "/console/antrian")
    assert browser.call("console_logout", "POST", "/console/keluar", data={}).status_code == 403   # no CSRF
    out = browser.call("console_logout", "POST", "/console/keluar", data={"csrf_token": browser.page_csrf(queue)})
    assert (out.status_code, out.headers["Location"]) == (303, "/console/login")
    assert browser.call("console_queue", "GET", "/console/antrian").headers["Location"] == "/console/login"


@covers("console_queue", "console_inbox", "console_search", "console_complaint")
def test_console_pages_show_the_desk_its_queue_and_an_agency_only_its_complaints(routing):
    at_desk = routing.filed(*UNCLEAR)
    road = routing.filed(*ROAD)
    codes = {cid: routing.worker.get_complaint(cid)["tracking_code"] for cid in (at_desk, road)}
    desk, agency = Browser(routing), Browser(routing)
    desk.sign_in(DESK, "Sari")
    agency.sign_in("dikes", "Eka")

    queue = desk.call("console_queue", "GET", "/console/antrian")
    assert queue.status_code == 200 and codes[at_desk] in text_of(queue) and codes[road] not in text_of(queue)
    assert agency.call("console_queue", "GET", "/console/antrian").status_code == 403
    assert desk.call("console_inbox", "GET", "/console/kotak-masuk").headers["Location"] == "/console/antrian"
    assert codes[road] not in text_of(agency.call("console_inbox", "GET", "/console/kotak-masuk"))
    dpupr = Browser(routing)
    dpupr.sign_in("dpupr", "Budi")
    assert codes[road] in text_of(dpupr.call("console_inbox", "GET", "/console/kotak-masuk"))

    found = desk.call("console_search", "GET", "/console/cari", query={"kode": codes[road].lower()})
    assert found.headers["Location"] == f"/console/aduan/{road}"
    hidden = agency.call("console_search", "GET", "/console/cari", query={"kode": codes[road]})
    assert hidden.headers["Location"].startswith("/console/kotak-masuk?kode=")   # never told it exists

    page = desk.call("console_complaint", "GET", f"/console/aduan/{road}", road)
    assert page.status_code == 200 and codes[road] in text_of(page)
    assert agency.call("console_complaint", "GET", f"/console/aduan/{road}", road).status_code == 404
    assert desk.call("console_complaint", "GET", "/console/aduan/x", "NTB-NONE00").status_code == 404


@covers("console_action")
def test_console_actions_record_through_the_workflow_and_refuse_without_csrf_or_authority(routing):
    complaint_id = routing.filed(*UNCLEAR)
    desk = Browser(routing)
    desk.sign_in(DESK, "Sari")
    csrf = desk.page_csrf(desk.call("console_complaint", "GET", "/", complaint_id))
    path = f"/console/aduan/{complaint_id}/teruskan"
    form = {"utama": "dpupr", "koordinasi": ["pemkab-loteng"], "catatan": "Jalan desa"}
    assert desk.call("console_action", "POST", path, complaint_id, "teruskan", data=form).status_code == 403
    assert desk.call("console_action", "POST", path, complaint_id, "hapus",
                     data={"csrf_token": csrf}).status_code == 404
    routed = desk.call("console_action", "POST", path, complaint_id, "teruskan", data={"csrf_token": csrf, **form})
    assert routed.headers["Location"] == f"/console/aduan/{complaint_id}?pesan=teruskan"
    complaint = routing.worker.get_complaint(complaint_id)
    assert (complaint["lead_agencies"], complaint["decided_by"]) == (["dpupr"], f"operator:{DESK}:Sari")

    agency = Browser(routing)
    agency.sign_in("dpupr", "Budi")
    agency_csrf = agency.page_csrf(agency.call("console_complaint", "GET", "/", complaint_id))
    desk_only = agency.call("console_action", "POST", "/", complaint_id, "tutup",
                            data={"csrf_token": agency_csrf, "alasan": "Bukan aduan"})
    assert desk_only.status_code == 403
    accepted = agency.call("console_action", "POST", "/", complaint_id, "terima", data={"csrf_token": agency_csrf})
    assert accepted.status_code == 303 and routing.log(complaint_id)[-1][0] == "ComplaintAcknowledged"
    again = agency.call("console_action", "POST", "/", complaint_id, "terima", data={"csrf_token": agency_csrf})
    assert again.status_code == 409 and routing.log(complaint_id)[-1][0] == "ComplaintAcknowledged"


@covers("console_action")
def test_console_reporter_contact_comes_from_intake_for_the_desk_with_a_reason(routing):
    complaint_id = routing.filed(*ROAD)
    desk = Browser(routing)
    desk.sign_in(DESK, "Sari")
    csrf = desk.page_csrf(desk.call("console_complaint", "GET", "/", complaint_id))

    def contact(reason):
        return desk.call("console_action", "POST", "/", complaint_id, "kontak",
                         data={"csrf_token": csrf, "alasan": reason})

    shown = contact("  Menanyakan lokasi persisnya ")
    assert shown.status_code == 200 and "+62 812 3456 7890" in text_of(shown)
    assert routing.intake.calls == [(complaint_id, f"{DESK}:Sari", "Menanyakan lokasi persisnya")]
    routing.intake.failure = ValidationFailed("a reason (at least 5 characters) is required and is recorded")
    assert contact("ok").status_code == 400
    routing.intake.failure = TimeoutError("intake did not answer")
    unavailable = contact("Menanyakan lokasi")
    assert unavailable.status_code == 503 and "+62 812" not in text_of(unavailable)


@covers("console_static")
def test_console_static_serves_the_console_folder_only(routing):
    browser = Browser(routing)
    css = browser.call("console_static", "GET", "/console/static/console.css", "console.css")
    assert css.status_code == 200 and css.content_type.startswith("text/css")
    assert browser.call("console_static", "GET", "/", "../../service.py").status_code == 404
    assert browser.call("console_static", "GET", "/", "missing.css").status_code == 404


# --- timers -----------------------------------------------------------------------------------------

@covers("catch_up")
def test_catch_up_routes_the_filings_push_did_not_deliver(routing):
    first = routing.filed(*ROAD, push=False)
    second = routing.filed(*UNCLEAR, push=False)
    routing.worker.catch_up()
    assert routing.worker.get_complaint(first)["lead_agencies"] == ["dpupr"]
    assert routing.worker.get_complaint(second)["at_desk"] is True
    assert routing.worker.consumer.checkpoint("intake") == 2
    routing.worker.catch_up()
    assert len(routing.log()) == 2


@covers("check_service_levels")
def test_a_breached_triage_clock_is_escalated_once(make_routing):
    routing = make_routing(ROUTING_SLA_SECONDS="triage=0.001")
    complaint_id = routing.filed(*UNCLEAR)
    time.sleep(0.01)
    routing.worker.check_service_levels()
    escalations = [d for t, d in routing.log(complaint_id) if t == "ComplaintEscalated"]
    assert [d["breach"] for d in escalations] == ["triage"]
    assert routing.worker.desk_queue()[0]["why"] == ["triage", "escalated:triage"]
    routing.worker.check_service_levels()
    assert len([t for t, _ in routing.log(complaint_id) if t == "ComplaintEscalated"]) == 1


# --- operations --------------------------------------------------------------------------------------

@covers("health")
def test_health_is_ok_with_database_and_broker(routing, broker_up):
    response = routing.worker.health(request("GET", "/health"))
    assert (response.status_code, json_of(response)) == (200, {"service": "routing", "status": "ok", "published": 0})


@covers("health")
def test_health_is_unavailable_without_the_broker(routing, broker_down):
    response = routing.worker.health(request("GET", "/health"))
    assert response.status_code == 503 and json_of(response)["reason"] == "broker: ConnectionRefusedError"


@covers("metrics")
def test_metrics_show_routings_unpublished_events(routing):
    routing.filed(*ROAD)
    routing.filed(*UNCLEAR)
    response = routing.worker.metrics(request("GET", "/metrics"))
    assert response.status_code == 200
    assert 'ntbcare_outbox_pending_events{service="routing"} 2.0' in text_of(response)
    assert 'ntbcare_quarantined_items{service="routing"} 0.0' in text_of(response)


# --- evidence: photos and files kept by intake, opened through routing ----------------------------------

PHOTO = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 10 + b"\xff\xd9"   # 2.5 KiB: 3 chunks
PHOTO_DIGEST = hashlib.sha256(PHOTO).hexdigest()


def filed_with_photo(routing: Routing, *, confidential: bool = False, push: bool = True) -> tuple[str, str]:
    """intake files ROAD (dpupr leads) with a Messenger photo it is downloading (a ``media_id``)."""
    complaint_id, media_id = str(uuid.uuid4()), str(uuid.uuid4())
    envelope = routing.intake_log.append("ComplaintFiled", complaint_id, {
        "tracking_code": f"NTB-{uuid.uuid4().hex[:6].upper()}", "channel": "facebook_messenger",
        "filed_at": isoformat_utc(utc_now()), "text": ROAD[0],
        "attachments": [{"type": "image", "url": "https://scontent.xx.fbcdn.net/v/t1/p_n.jpg?oh=00_s&oe=1",
                         "media_id": media_id}],
        "category": ROAD[1], "region_code": ROAD[2], "priority": "normal",
        "reasons": {"category": [], "region": [], "priority": []}, "confidential": confidential,
        "reply_to": {"page_id": "100000000000001", "psid": "7000000000000001"},
        "last_citizen_message_at": None, "external_ref": None})
    if push:
        routing.worker.on_complaint_filed(envelope)
    return complaint_id, media_id


def evidence_stored(routing: Routing, complaint_id: str, media_id: str, *, lost: bool = False) -> dict:
    data = ({"media_id": media_id, "type": "image", "state": "lost", "digest": None, "content_type": None,
             "size": None, "reason": "link expired or removed (HTTP 403)"} if lost else
            {"media_id": media_id, "type": "image", "state": "stored", "digest": PHOTO_DIGEST,
             "content_type": "image/jpeg", "size": len(PHOTO), "reason": None})
    envelope = routing.intake_log.append("EvidenceStored", complaint_id, data)
    routing.worker.on_evidence_stored(envelope)
    if not lost:
        routing.intake.media_files[(complaint_id, PHOTO_DIGEST)] = ("image/jpeg", PHOTO)
    return envelope


def evidence_file(routing: Routing, complaint_id: str, digest: str = PHOTO_DIGEST, agency: str | None = None,
                  token: str | None = None):
    headers = {"Authorization": f"Bearer {token or TOKENS[agency]}"} if (agency or token) else {}
    return routing.worker.http_evidence_file(request(
        "GET", f"/api/complaints/{complaint_id}/evidence/{digest}", headers=headers), complaint_id, digest)


@covers("on_complaint_filed", "on_evidence_stored", "http_evidence", "http_evidence_file")
def test_the_assigned_agency_opens_stored_evidence_with_its_token_and_no_one_else_does(routing):
    complaint_id, media_id = filed_with_photo(routing)
    listing = routing.api("http_evidence", "GET", "/", complaint_id, agency="dpupr")
    assert listing.status_code == 200
    assert json_of(listing)["evidence"] == [{"media_id": media_id, "type": "image", "state": "pending",
                                             "digest": None, "content_type": None, "size": None, "reason": None,
                                             "href": None}]
    assert "scontent" not in text_of(listing)                      # Meta's link is never handed out

    evidence_stored(routing, complaint_id, media_id)
    [item] = json_of(routing.api("http_evidence", "GET", "/", complaint_id, agency="dpupr"))["evidence"]
    assert (item["state"], item["digest"], item["size"], item["href"]) == (
        "stored", PHOTO_DIGEST, len(PHOTO), f"/api/complaints/{complaint_id}/evidence/{PHOTO_DIGEST}")

    opened = evidence_file(routing, complaint_id, agency="dpupr")
    assert (opened.status_code, opened.content_type, opened.get_data()) == (200, "image/jpeg", PHOTO)
    assert opened.headers["Content-Disposition"].startswith('inline; filename="NTB-')
    assert opened.headers["X-Content-Type-Options"] == "nosniff"
    assert opened.headers["Cache-Control"] == "private, no-store"
    assert "sandbox" in opened.headers["Content-Security-Policy"]
    assert [c[3] for c in routing.intake.calls if c[0] == "media"] == [0, 1024, 2048]   # read in chunks
    assert evidence_file(routing, complaint_id, agency=DESK).get_data() == PHOTO

    assert evidence_file(routing, complaint_id).status_code == 401                       # no token
    assert evidence_file(routing, complaint_id, token="not-a-token").status_code == 401
    assert evidence_file(routing, complaint_id, agency="dikes").status_code == 404       # not its complaint
    assert routing.api("http_evidence", "GET", "/", complaint_id, agency="dikes").status_code == 404
    assert routing.api("http_evidence", "GET", "/", complaint_id).status_code == 401
    calls = len(routing.intake.calls)
    assert evidence_file(routing, complaint_id, "0" * 64, agency="dpupr").status_code == 404
    assert evidence_file(routing, complaint_id, "../../etc/passwd", agency="dpupr").status_code == 400
    assert evidence_file(routing, str(uuid.uuid4()), agency=DESK).status_code == 404
    assert len(routing.intake.calls) == calls                      # refused before intake is asked


@covers("on_complaint_filed", "on_evidence_stored", "http_evidence", "http_evidence_file")
def test_a_confidential_complaints_evidence_is_for_the_desk_only(routing):
    complaint_id, media_id = filed_with_photo(routing, confidential=True)
    evidence_stored(routing, complaint_id, media_id)
    assert routing.worker.get_complaint(complaint_id)["lead_agencies"] == ["dpupr"]
    refused = evidence_file(routing, complaint_id, agency="dpupr")
    assert refused.status_code == 403 and "desk" in json_of(refused)["error"]
    assert routing.api("http_evidence", "GET", "/", complaint_id, agency="dpupr").status_code == 403
    assert evidence_file(routing, complaint_id, agency=DESK).get_data() == PHOTO
    assert [c for c in routing.intake.calls if c[0] == "media"][0][1] == complaint_id   # only for the desk


@covers("http_evidence_file")
def test_evidence_intake_cannot_hand_over_or_that_does_not_match_its_digest_is_unavailable(routing):
    complaint_id, media_id = filed_with_photo(routing)
    evidence_stored(routing, complaint_id, media_id)
    routing.intake.failure = TimeoutError("intake did not answer")
    unavailable = evidence_file(routing, complaint_id, agency="dpupr")
    assert (unavailable.status_code, unavailable.headers["Retry-After"]) == (503, "30")
    routing.intake.failure = None
    routing.intake.media_files[(complaint_id, PHOTO_DIGEST)] = ("image/jpeg", PHOTO[:-1] + b"X")   # tampered
    assert evidence_file(routing, complaint_id, agency="dpupr").status_code == 503
    routing.intake.media_files.pop((complaint_id, PHOTO_DIGEST))
    assert evidence_file(routing, complaint_id, agency="dpupr").status_code == 404     # intake lost the file


@covers("on_evidence_stored", "on_complaint_filed", "on_complaint_amended", "http_evidence")
def test_evidence_is_recorded_whatever_order_the_events_arrive_in_and_lost_says_why(routing):
    complaint_id, media_id = filed_with_photo(routing, push=False)
    evidence_stored(routing, complaint_id, media_id, lost=True)       # before the filing (another queue)
    routing.worker.on_complaint_filed(routing.intake_log.events[0])
    later = str(uuid.uuid4())
    routing.worker.on_complaint_amended(routing.intake_log.append("ComplaintAmended", complaint_id, {
        "text": ROAD[0] + "\nIni foto kedua.", "why": "more_messages", "last_citizen_message_at": None,
        "levy_reported": False, "category": ROAD[1], "region_code": ROAD[2], "priority": "normal",
        "reasons": {"category": [], "region": [], "priority": []},
        "attachments": [{"type": "image", "url": "https://scontent.xx.fbcdn.net/a.jpg", "media_id": media_id},
                        {"type": "video", "url": "https://video.xx.fbcdn.net/b.mp4", "media_id": later}]}))
    items = {i["media_id"]: i for i in json_of(routing.api("http_evidence", "GET", "/", complaint_id,
                                                           agency="dpupr"))["evidence"]}
    assert (items[media_id]["state"], items[media_id]["reason"]) == ("lost", "link expired or removed (HTTP 403)")
    assert (items[later]["state"], items[later]["type"]) == ("pending", "video")
    routing.worker.on_evidence_stored(routing.intake_log.events[1])   # redelivered: nothing changes
    assert len(rows(routing.store, tables.evidence)) == 2


@covers("console_evidence", "console_complaint")
def test_console_shows_evidence_as_links_to_routing_and_opens_it_for_whom_the_api_would(routing):
    complaint_id, media_id = filed_with_photo(routing)
    secret_id, secret_media = filed_with_photo(routing, confidential=True)
    evidence_stored(routing, complaint_id, media_id)
    evidence_stored(routing, secret_id, secret_media)
    link = f"/console/aduan/{complaint_id}/bukti/{PHOTO_DIGEST}"

    def open_as(browser, cid=complaint_id):
        return browser.call("console_evidence", "GET", f"/console/aduan/{cid}/bukti/{PHOTO_DIGEST}", cid,
                            PHOTO_DIGEST)

    anonymous = Browser(routing)
    assert open_as(anonymous).headers["Location"] == "/console/login"
    dpupr, dikes, desk = Browser(routing), Browser(routing), Browser(routing)
    dpupr.sign_in("dpupr", "Budi")
    dikes.sign_in("dikes", "Eka")
    desk.sign_in(DESK, "Sari")

    page = text_of(dpupr.call("console_complaint", "GET", "/", complaint_id))
    assert link in page and "Foto (3 KB)" in page and "scontent" not in page
    opened = open_as(dpupr)
    assert (opened.status_code, opened.content_type, opened.get_data()) == (200, "image/jpeg", PHOTO)
    assert opened.headers["X-Content-Type-Options"] == "nosniff"
    assert open_as(dikes).status_code == 404
    assert open_as(dpupr, secret_id).status_code == 403
    secret_page = text_of(dpupr.call("console_complaint", "GET", "/", secret_id))
    assert "/bukti/" not in secret_page
    assert open_as(desk, secret_id).get_data() == PHOTO
    assert f"/console/aduan/{secret_id}/bukti/{PHOTO_DIGEST}" in text_of(desk.call("console_complaint", "GET", "/",
                                                                                      secret_id))
    routing.intake.failure = TimeoutError("intake did not answer")
    assert open_as(desk).status_code == 503



# --- duplicates and clusters (issue 19) ------------------------------------------------------------

POST_ID = "100000000000001_777"


def comment_filed(routing: Routing, text: str, post_id: str = POST_ID, category: str = "infrastruktur",
                  region: str | None = "5202") -> str:
    """intake records a comment complaint under ``post_id`` (its comment id and page travel in
    ``reply_to``); pushed to routing's handler."""
    complaint_id = str(uuid.uuid4())
    envelope = routing.intake_log.append("ComplaintFiled", complaint_id, {
        "tracking_code": f"NTB-{uuid.uuid4().hex[:6].upper()}", "channel": "facebook_comment",
        "filed_at": isoformat_utc(utc_now()), "text": text, "attachments": [], "category": category,
        "region_code": region, "priority": "normal", "reasons": {"category": [], "region": [], "priority": []},
        "confidential": False, "last_citizen_message_at": isoformat_utc(utc_now()), "external_ref": None,
        "reply_to": {"page_id": "100000000000001", "comment_id": f"777_{uuid.uuid4().int % 10**12}",
                     "post_id": post_id}})
    routing.worker.on_complaint_filed(envelope)
    return complaint_id


@covers("on_complaint_filed", "suggested_links", "link_complaint", "refuse_link", "respond")
def test_comments_under_one_post_are_suggested_as_one_cluster_and_the_primarys_answer_reaches_the_linked(routing):
    first = comment_filed(routing, "Jalan provinsi di Praya ambles, tolong segera diperbaiki")
    second = comment_filed(routing, "Betul, jalan provinsi Praya ambles dari kemarin")
    third = comment_filed(routing, "Kapan diperbaiki pak?", category="lainnya", region=None)
    elsewhere = comment_filed(routing, "Kapan diperbaiki pak?", post_id="100000000000001_778")
    [cluster] = routing.worker.suggested_links()
    assert cluster["primary"]["complaint_id"] == first
    members = {m["complaint_id"]: m for m in cluster["members"]}
    assert set(members) == {second, third} and elsewhere not in members
    assert members[second]["because"] == ["same_post", "same_category_region", "similar_words"]
    assert members[third]["because"] == ["same_post"]
    assert "postingan Facebook yang sama" in members[third]["reason"]
    # Only the public post id and the words are kept for comparing: no comment id, no PSID.
    kept = rows(routing.store, tables.cluster_words)
    assert {row["post_id"] for row in kept} == {POST_ID, "100000000000001_778"}
    assert all("777_" not in str(row) for row in kept)

    refused = routing.worker.refuse_link(third, first, "diskominfotik:Sari")
    assert refused["state"] == "refused"
    with pytest.raises(NotFound):
        routing.worker.refuse_link(third, first, "diskominfotik:Sari")
    [cluster] = routing.worker.suggested_links()
    assert [m["complaint_id"] for m in cluster["members"]] == [second]

    linked = routing.worker.link_complaint(second, first, "", "diskominfotik:Sari")
    assert linked["linked_to"] == first and linked["recorded"] == ["ComplaintLinked"]   # same agency already
    [(event_type, data)] = [e for e in routing.log(second) if e[0] == "ComplaintLinked"]
    assert data["because"] == ["same_post", "same_category_region", "similar_words"]
    assert "postingan Facebook yang sama" in data["reason"] and data["actor"] == "diskominfotik:Sari"
    assert routing.worker.suggested_links() == []
    with pytest.raises(IllegalAction):
        routing.worker.link_complaint(second, first, "lagi", "diskominfotik:Sari")   # already linked
    with pytest.raises(IllegalAction):
        routing.worker.link_complaint(first, third, "utama", "diskominfotik:Sari")   # a primary
    with pytest.raises(IllegalAction):
        routing.worker.link_complaint(elsewhere, first, "", "diskominfotik:Sari")    # no suggestion, no reason

    # The agency answers the primary once: the linked complaint records the same answer.
    routing.worker.respond(first, "dpupr", "Perbaikan dimulai besok pagi.", True, "dpupr:budi")
    answered = [data for t, data in routing.log(second) if t == "ComplaintResponded"]
    assert [a["text"] for a in answered] == ["Perbaikan dimulai besok pagi."]
    assert routing.worker.get_complaint(second)["public_status"] == "selesai"
    assert routing.worker.get_complaint(third)["public_status"] == "diterima"     # refused: not in the cluster

    # Joining late (by hand, with a reason): the primary's agencies and its latest answer follow.
    # Naming a linked complaint as primary joins the cluster of its primary.
    late = routing.worker.link_complaint(elsewhere, second, "Masalah yang sama", "diskominfotik:Sari")
    assert late["linked_to"] == first
    # (routed elsewhere by the rules: it takes the primary's agency first)
    assert late["recorded"] == ["ComplaintLinked", "ComplaintRouted", "ComplaintResponded", "ComplaintResolved"]
    assert (late["public_status"], late["lead_agencies"]) == ("selesai", ["dpupr"])


@covers("on_complaint_filed", "suggested_links")
def test_a_viral_posts_comments_are_compared_with_the_cluster_not_with_every_member(routing):
    """Issue 17: routing compared each new complaint with every open complaint of its place (up to
    500), so forty — or four hundred — comments under one post made routing quadratic. Members (a
    pending suggestion or a link) are represented by their primary."""
    first = comment_filed(routing, "Jalan provinsi di Praya ambles, tolong segera diperbaiki")
    members = [comment_filed(routing, f"Jalan provinsi Praya ambles juga depan rumah nomor {n}")
               for n in range(30)]
    with routing.store.database.read() as connection:
        newest = cluster_tables.filing(connection, members[-1])
        compared = cluster_tables.candidates(connection, newest, cluster_tables.suggestion_rules().window)
    assert [candidate.complaint_id for candidate in compared] == [first]
    [cluster] = routing.worker.suggested_links()
    assert cluster["primary"]["complaint_id"] == first
    assert {m["complaint_id"] for m in cluster["members"]} == set(members)
    # A refused member stands for itself again: the next comment may be compared with it too.
    routing.worker.refuse_link(members[0], first, "diskominfotik:Sari")
    with routing.store.database.read() as connection:
        compared = cluster_tables.candidates(connection, newest, cluster_tables.suggestion_rules().window)
    assert {candidate.complaint_id for candidate in compared} == {first, members[0]}


@covers("http_suggested_links", "http_link", "http_refuse_link")
def test_api_suggestions_links_and_refusals_are_for_the_desk_only(routing):
    first = comment_filed(routing, "Jalan provinsi di Praya ambles")
    second = comment_filed(routing, "Jalan provinsi Praya ambles parah")
    third = comment_filed(routing, "Jalan provinsi Praya ambles juga di dusun kami")
    dismissed = comment_filed(routing, "Jalan provinsi Praya ambles, bahaya")
    routing.worker.dismiss(dismissed, "Komentar yang sama dua kali", "diskominfotik:Sari")   # closed: not listed
    listed = routing.api("http_suggested_links", "GET", "/api/desk/suggested-links", agency=DESK)
    assert listed.status_code == 200
    assert {m["complaint_id"] for m in json_of(listed)[0]["members"]} == {second, third}
    assert routing.api("http_suggested_links", "GET", "/api/desk/suggested-links",
                       agency="dpupr").status_code == 403
    assert routing.api("http_link", "POST", "/", second, agency="dpupr",
                       body={"primary": first}).status_code == 403
    assert routing.api("http_link", "POST", "/", second, agency=DESK, body={}).status_code == 400
    linked = routing.api("http_link", "POST", "/", second, agency=DESK, actor="Sari", body={"primary": first})
    assert linked.status_code == 200 and json_of(linked)["linked_to"] == first
    assert routing.log(second)[-1][1]["actor"] == f"{DESK}:Sari"
    refused = routing.api("http_refuse_link", "POST", "/", third, agency=DESK, body={"primary": first})
    assert (refused.status_code, json_of(refused)["state"]) == (200, "refused")
    again = routing.api("http_refuse_link", "POST", "/", third, agency=DESK, body={"primary": first})
    assert again.status_code == 404
    assert routing.api("http_refuse_link", "POST", "/", third, agency="dpupr",
                       body={"primary": first}).status_code == 403


@covers("console_clusters", "console_action", "console_complaint")
def test_console_shows_the_desk_suggested_clusters_with_reasons_and_joins_or_refuses_them(routing):
    first = comment_filed(routing, "Jalan provinsi di Praya ambles, tolong diperbaiki")
    second = comment_filed(routing, "Jalan provinsi Praya ambles parah")
    third = comment_filed(routing, "Kapan diperbaiki?", category="lainnya", region=None)
    codes = {cid: routing.worker.get_complaint(cid)["tracking_code"] for cid in (first, second, third)}
    desk, agency = Browser(routing), Browser(routing)
    desk.sign_in(DESK, "Sari")
    agency.sign_in("dpupr", "Budi")
    assert agency.call("console_clusters", "GET", "/console/gabungan").status_code == 403

    page = desk.call("console_clusters", "GET", "/console/gabungan")
    html = text_of(page)
    assert page.status_code == 200 and f'data-primary="{codes[first]}"' in html
    assert f'data-tracking-code="{codes[second]}"' in html and f'data-tracking-code="{codes[third]}"' in html
    assert "Postingan Facebook yang sama" in html and "Kategori dan wilayah sama" in html
    assert "kata yang sama: ambles, jalan" in html
    member_page = text_of(desk.call("console_complaint", "GET", "/", second))
    assert 'id="gabungan"' in member_page and "Postingan Facebook yang sama" in member_page

    csrf = desk.page_csrf(page)
    refused = desk.call("console_action", "POST", "/", first, "bukan-ganda",
                        data={"csrf_token": csrf, "ganda": third, "kembali": "gabungan"})
    assert refused.headers["Location"] == "/console/gabungan?pesan=bukan-ganda"
    assert agency.call("console_action", "POST", "/", first, "gabung",
                       data={"csrf_token": agency.page_csrf(agency.call("console_inbox", "GET", "/")),
                             "ganda": [second]}).status_code == 403
    joined = desk.call("console_action", "POST", "/", first, "gabung",
                       data={"csrf_token": csrf, "ganda": [second], "kembali": "gabungan"})
    assert joined.headers["Location"] == "/console/gabungan?pesan=gabung"
    assert routing.worker.get_complaint(second)["linked_to"] == first
    assert "Tidak ada saran gabungan" in text_of(desk.call("console_clusters", "GET", "/console/gabungan"))
    primary_page = text_of(desk.call("console_complaint", "GET", "/", first))
    assert f'href="/console/aduan/{second}">{codes[second]}</a>' in primary_page
    timeline = text_of(desk.call("console_complaint", "GET", "/", second))
    assert "Digabung dengan aduan lain" in timeline and f"Aduan utama: {codes[first]}" in timeline


# --- issue 19: the citizen's answer (intake's CitizenAnsweredFollowUp) -------------------------------------

def _answer(routing, complaint_id, answer, words="", score=None):
    envelope = routing.intake_log.append("CitizenAnsweredFollowUp", complaint_id, {
        "answer": answer, "words": words, "score": score, "via": "quick_reply", "tracking_code": "NTB-X",
        "reply_to": None, "message_at": isoformat_utc(utc_now())})
    routing.worker.on_citizen_answered_follow_up(envelope)
    return envelope


@covers("on_citizen_answered_follow_up", "respond", "get_complaint")
def test_belum_reopens_to_the_leads_then_to_the_desk_and_a_score_rates_once(routing):
    complaint_id = routing.filed(*ROAD)
    routing.worker.respond(complaint_id, "dpupr", "Sudah diperbaiki.", True, "dpupr:budi")
    no = _answer(routing, complaint_id, "not_solved", "blm jalannya msh rusak")
    reopened = routing.log(complaint_id)[-1]
    assert reopened[0] == "ComplaintReopened"
    assert (reopened[1]["words"], reopened[1]["reopen_count"], reopened[1]["to_desk"], reopened[1]["actor"],
            reopened[1]["answer_event_id"]) == ("blm jalannya msh rusak", 1, False, "citizen", no["event_id"])
    assert set(reopened[1]["due_at"]) == {"follow_up"}
    complaint = routing.worker.get_complaint(complaint_id)
    assert (complaint["public_status"], complaint["lead_agencies"], complaint["lifecycle"]["open"]) == \
        ("diproses", ["dpupr"], True)
    assert complaint["progress"]["dpupr"] == {"acknowledged": True, "answered": False, "resolved": False}
    assert "follow_up" in complaint["lifecycle"]["deadlines"]   # a fresh follow-up clock runs

    routing.worker.on_citizen_answered_follow_up(no)             # redelivered: nothing more
    assert [t for t, _ in routing.log(complaint_id)].count("ComplaintReopened") == 1

    routing.worker.respond(complaint_id, "dpupr", "Sudah kami tambal ulang.", True, "dpupr:budi")
    _answer(routing, complaint_id, "rating", "4", 4)
    _answer(routing, complaint_id, "rating", "5", 5)                # one rating per resolution
    rated = [d for t, d in routing.log(complaint_id) if t == "CitizenRated"]
    assert [(d["score"], d["agencies"]) for d in rated] == [(4, ["dpupr"])]

    _answer(routing, complaint_id, "not_solved", "belum juga")     # the second reopen: the desk
    second = routing.log(complaint_id)[-1][1]
    assert (second["reopen_count"], second["to_desk"], set(second["due_at"])) == (2, True, {"triage"})
    assert routing.worker.get_complaint(complaint_id)["at_desk"] is True


@covers("on_citizen_answered_follow_up", "respond", "dismiss")
def test_belum_after_the_period_or_on_a_dismissed_or_open_complaint_is_refused_with_the_reason(make_routing):
    routing = make_routing(ROUTING_REOPEN_DAYS="0")
    late = routing.filed(*ROAD)
    routing.worker.respond(late, "dpupr", "Sudah diperbaiki.", True, "dpupr:budi")
    _answer(routing, late, "not_solved", "belum pak")
    assert routing.log(late)[-1][0] == "ComplaintReopenRefused"
    assert (routing.log(late)[-1][1]["reason"], routing.log(late)[-1][1]["period_days"]) == ("period_over", 0)
    assert routing.worker.get_complaint(late)["public_status"] == "selesai"

    dismissed = routing.filed(*ROAD)
    routing.worker.dismiss(dismissed, "spam", "desk:sari")
    _answer(routing, dismissed, "not_solved", "belum")
    assert routing.log(dismissed)[-1][1]["reason"] == "dismissed"
    still_open = routing.filed(*ROAD)
    _answer(routing, still_open, "not_solved", "belum")
    assert routing.log(still_open)[-1][1]["reason"] == "open"
    _answer(routing, still_open, "solved", "sudah")                 # nothing for routing to record
    _answer(routing, still_open, "unclear_rating", "9")
    assert [t for t, _ in routing.log(still_open)][-1] == "ComplaintReopenRefused"
    _answer(routing, str(uuid.uuid4()), "not_solved", "belum")       # never seen: nothing, no error
    assert routing.worker.quarantined() == []


# --- issue 20: the desk corrects the category and region ---------------------------------------------

WRONG_REGION = ("Jalan desa di Sengkol rusak berlubang, mohon diperbaiki", "infrastruktur", "5201")


@covers("reclassify")
def test_the_desk_corrects_a_wrong_region_and_the_complaint_is_rerouted_by_the_rules(routing):
    complaint_id = routing.filed(*WRONG_REGION)
    assert routing.worker.get_complaint(complaint_id)["lead_agencies"] == ["pemkab-lobar"]
    for category, region, reason, refusal in (
            (None, None, "Sengkol di Lombok Tengah", ValidationFailed),       # nothing named
            (None, "9999", "Sengkol di Lombok Tengah", ValidationFailed),     # not a BPS code of NTB
            ("jalan", None, "kategori", ValidationFailed),                    # not a category
            (None, "5202", " ", ValidationFailed),                            # no reason
            (None, "5201", "sama saja", IllegalAction)):                      # nothing changes
        with pytest.raises(refusal):
            routing.worker.reclassify(complaint_id, category, region, reason, "diskominfotik:sari")
    assert [t for t, _ in routing.log(complaint_id)] == ["ComplaintRouted"]

    view = routing.worker.reclassify(complaint_id, None, "5202", "Sengkol ada di Lombok Tengah",
                                     "diskominfotik:sari")
    assert view["recorded"] == ["ComplaintReclassified", "ComplaintRouted"]
    assert (view["region_code"], view["filed_region_code"], view["lead_agencies"]) == (
        "5202", "5201", ["pemkab-loteng"])
    [(_, correction), (_, route)] = routing.log(complaint_id)[1:]
    assert (correction["region_before"], correction["region_after"], correction["actor"],
            correction["rerouted"]) == ("5201", "5202", "diskominfotik:sari", True)
    assert route["decided_by"].startswith("rule:") and route["lead_agencies"] == ["pemkab-loteng"]
    # The desk's lists show the corrected region (the state row), not the filed one.
    assert [i["region_code"] for i in routing.worker.complaints_for("pemkab-loteng")] == ["5202"]
    assert routing.worker.complaints_for("pemkab-lobar") == []

    # A category correction that keeps the rule changes only the facts.
    view = routing.worker.reclassify(complaint_id, "lingkungan_hidup", None, "soal saluran", "diskominfotik:sari")
    assert view["category"] == "lingkungan_hidup"
    routing.worker.dismiss(complaint_id, "Ganda", "diskominfotik:sari")
    with pytest.raises(IllegalAction, match="dismissed"):
        routing.worker.reclassify(complaint_id, None, "5203", "lagi", "diskominfotik:sari")


@covers("http_reclassify")
def test_api_corrections_are_the_desks_only(routing):
    complaint_id = routing.filed(*WRONG_REGION)
    path = f"/api/complaints/{complaint_id}/classification"
    body = {"region_code": "5202", "reason": "Sengkol ada di Lombok Tengah"}
    assert routing.api("http_reclassify", "POST", path, complaint_id, agency="dpupr", body=body).status_code == 403
    assert routing.api("http_reclassify", "POST", path, complaint_id, body=body).status_code == 401
    bad = routing.api("http_reclassify", "POST", path, complaint_id, agency=DESK,
                      body={"region_code": "0000", "reason": "x"})
    assert bad.status_code == 400 and "region_code" in json_of(bad)["fields"]
    assert [t for t, _ in routing.log(complaint_id)] == ["ComplaintRouted"]
    done = routing.api("http_reclassify", "POST", path, complaint_id, agency=DESK, actor="Sari", body=body)
    assert done.status_code == 200, json_of(done)
    assert json_of(done)["lead_agencies"] == ["pemkab-loteng"]
    [(_, correction)] = [(t, d) for t, d in routing.log(complaint_id) if t == "ComplaintReclassified"]
    assert correction["actor"].endswith("Sari") and correction["rerouted"] is True


@covers("console_action")
def test_console_correction_is_for_the_desk_with_csrf_and_reroutes(routing):
    complaint_id = routing.filed(*WRONG_REGION)
    desk = Browser(routing)
    desk.sign_in(DESK, "Sari")
    page = desk.call("console_complaint", "GET", "/", complaint_id)
    assert 'id="form-koreksi"' in text_of(page)
    csrf = desk.page_csrf(page)
    form = {"kategori": "infrastruktur", "wilayah": "5202", "alasan": "Sengkol di Lombok Tengah"}
    path = f"/console/aduan/{complaint_id}/koreksi"
    assert desk.call("console_action", "POST", path, complaint_id, "koreksi", data=form).status_code == 403
    agency = Browser(routing)
    agency.sign_in("pemkab-loteng", "Eka")
    agency_csrf = agency.page_csrf(agency.call("console_inbox", "GET", "/console/kotak-masuk"))
    assert agency.call("console_action", "POST", path, complaint_id, "koreksi",
                       data={"csrf_token": agency_csrf, **form}).status_code == 403
    assert [t for t, _ in routing.log(complaint_id)] == ["ComplaintRouted"]
    done = desk.call("console_action", "POST", path, complaint_id, "koreksi", data={"csrf_token": csrf, **form})
    assert done.headers["Location"] == f"/console/aduan/{complaint_id}?pesan=koreksi"
    complaint = routing.worker.get_complaint(complaint_id)
    assert (complaint["region_code"], complaint["lead_agencies"]) == ("5202", ["pemkab-loteng"])
    [correction] = [d for t, d in routing.log(complaint_id) if t == "ComplaintReclassified"]
    assert (correction["category_before"], correction["category_after"]) == ("infrastruktur", "infrastruktur")
    timeline = text_of(desk.call("console_complaint", "GET", "/", complaint_id))
    assert "Kategori/wilayah dikoreksi" in timeline and "Lombok Tengah" in timeline
