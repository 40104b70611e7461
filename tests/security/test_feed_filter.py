"""The filter behind outside readers' feeds (services/gateway/domain/feed.py and the handler that
records its items, application/feeds.py), case by case, with no server: an agency's system gets
its own complaints only — including the event that takes one away from it — with allow-listed
fields, no officer's or desk operator's name, no note or reason, and no text once the complaint is
confidential. ``tests/security/test_broker_feeds.py`` shows the same on the real broker."""
from __future__ import annotations

import json
import uuid

import pytest

from services.gateway.adapters.feed_log import FeedLog
from services.gateway.application.feeds import FeedHandlers
from services.gateway.domain.feed import SAFE_FIELDS, feed_item
from services.gateway.service import build_store
from shared.core.events import Envelope

PUPR = frozenset({"dpupr"})


def lifecycle(lead=("dpupr",), coordinating=(), confidential=False, **extra):
    parts = {code: {"role": "lead", "acknowledged": False, "answered": False, "resolved": False} for code in lead}
    return {"status": "disetujui", "stage": "assigned", "open": True, "at_desk": not lead,
            "confidential": confidential, "lead_agencies": list(lead), "coordinating_agencies": list(coordinating),
            "parts": parts, "deadlines": {}, "agency_names": {code: code.upper() for code in lead}, **extra}


def event(event_type, data, complaint_id=None, version=1):
    return {"event_id": str(uuid.uuid4()), "event_type": event_type, "schema_version": 2, "source": "routing",
            "position": version, "complaint_id": complaint_id or str(uuid.uuid4()), "version": version,
            "occurred_at": "2026-12-01T01:00:00.000000Z", "data": data}


def responded(confidential=False, lead=("dpupr",), **extra):
    return event("ComplaintResponded", {"agency_code": "dpupr", "agency_name": "Dinas PUPR", "text": "Sudah ditambal",
                                        "resolved": False, "actor": "Budi Santoso",
                                        "lifecycle": lifecycle(lead, confidential=confidential), **extra})


def test_an_answer_reaches_its_agency_without_the_officers_name():
    item = feed_item(responded(), "pupr-si", PUPR, followed=False)
    assert item.body["data"] == {"agency_code": "dpupr", "agency_name": "Dinas PUPR", "text": "Sudah ditambal",
                                 "resolved": False, "actor": "dpupr"}
    assert "Budi" not in json.dumps(item.body)


def test_a_confidential_complaint_carries_no_text():
    item = feed_item(responded(confidential=True), "pupr-si", PUPR, followed=False)
    assert "text" not in item.body["data"] and item.body["complaint"]["confidential"] is True


def test_no_snapshot_counts_as_confidential_and_as_not_involved():
    data = {"agency_code": "dpupr", "text": "x", "resolved": False, "actor": "Budi"}
    assert feed_item(event("ComplaintResponded", data), "pupr-si", PUPR, followed=False) is None
    item = feed_item(event("ComplaintResponded", data), "pupr-si", PUPR, followed=True)
    assert "text" not in item.body["data"]


def test_fields_not_on_the_allow_list_never_pass():
    """Routing may add fields (its schemas accept extras): none reaches a reader until listed."""
    extra = {"note": "catatan meja", "reply_to": {"psid": "123"}, "reporter_name": "Ani", "complaint_text": "…"}
    item = feed_item(responded(**extra), "pupr-si", PUPR, followed=False)
    assert not set(extra) & set(item.body["data"]) and "Ani" not in json.dumps(item.body)
    assert not set(extra) & set(item.body["complaint"])


def test_another_agencys_complaint_is_not_in_the_feed():
    assert feed_item(responded(lead=("dlhk",)), "pupr-si", PUPR, followed=False) is None
    assert feed_item(responded(lead=("dlhk",)), "pupr-si", frozenset(), followed=True) is None


def test_desk_decisions_and_reasons_are_the_platforms():
    routed = event("ComplaintRouted", {"lead_agencies": ["dpupr"], "coordinating_agencies": [],
                                       "decided_by": "operator:Rina Wulandari", "reason": "catatan: pelapor takut",
                                       "priority": "high", "due_at": {}, "lifecycle": lifecycle()})
    body = feed_item(routed, "pupr-si", PUPR, followed=False).body
    assert body["data"]["actor"] == "ntbcare" and "reason" not in body["data"]
    assert "Rina" not in json.dumps(body) and "pelapor" not in json.dumps(body)
    for event_type, data in (
            ("ComplaintDismissed", {"reason": "duplikat", "duplicate_of": str(uuid.uuid4()), "actor": "Rina"}),
            ("ComplaintConfidentialityChanged", {"confidential": True, "reason": "pungli", "actor": "Rina"}),
            ("ComplaintRejectedByAgency", {"agency_code": "dpupr", "reason": "bukan wewenang kami", "actor": "Budi"})):
        body = feed_item(event(event_type, {**data, "lifecycle": lifecycle()}), "pupr-si", PUPR, followed=False).body
        assert "reason" not in body["data"] and "duplicate_of" not in body["data"]
        assert body["data"]["actor"] in ("ntbcare", "dpupr")


def test_an_event_type_not_on_the_allow_list_is_not_forwarded():
    assert "ComplaintFiled" not in SAFE_FIELDS
    assert feed_item(event("ComplaintFiled", {"text": "x", "lifecycle": lifecycle()}), "pupr-si", PUPR, False) is None


@pytest.fixture
def store(tmp_path):
    built = build_store(f"sqlite:///{tmp_path / 'gateway.db'}")
    built.prepare()
    yield built
    built.database.dispose()


def handle(store, handlers, raw):
    with store.database.transaction() as tx:
        handlers.on_routing_event(tx, Envelope.from_dict(raw))


def test_the_event_that_takes_a_complaint_away_is_the_last_one_its_reader_gets(store):
    """Re-routed from Dinas PUPR to DLHK: PUPR's system learns it (its last item), then nothing
    more of that complaint; another reader following DLHK gets it from there on."""
    handlers = FeedHandlers(store, {"pupr-si": PUPR, "dlhk-si": frozenset({"dlhk"})})
    complaint = str(uuid.uuid4())

    def routed_to(agency, version):
        return event("ComplaintRouted", {"lead_agencies": [agency], "coordinating_agencies": [],
                                         "decided_by": "operator:Rina", "reason": "r", "priority": "normal",
                                         "due_at": {}, "lifecycle": lifecycle((agency,))}, complaint, version)
    handle(store, handlers, routed_to("dpupr", 1))
    handle(store, handlers, routed_to("dlhk", 2))
    handle(store, handlers, event("ComplaintAcknowledged", {"agency_code": "dlhk", "actor": "Siti",
                                                            "lifecycle": lifecycle(("dlhk",))}, complaint, 3))
    with store.database.read() as connection:
        pupr = FeedLog().items_of(connection, "pupr-si")
        dlhk = FeedLog().items_of(connection, "dlhk-si")
        pending = FeedLog().unpublished(connection)
    assert [(i["event_type"], i["complaint"]["lead_agencies"]) for i in pupr] == [
        ("ComplaintRouted", ["dpupr"]), ("ComplaintRouted", ["dlhk"])]
    assert [i["event_type"] for i in dlhk] == ["ComplaintRouted", "ComplaintAcknowledged"]
    assert [i["position"] for i in pupr] == [1, 2] and [i["position"] for i in dlhk] == [1, 2]
    assert len(pending) == 4 and {p["reader"] for p in pending} == {"pupr-si", "dlhk-si"}
