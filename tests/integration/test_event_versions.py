"""Event contracts across versions: a log recorded before routing's events carried the lifecycle
(v1) is read under the v2 code exactly as if it had been recorded live — routing lifts it when it
serves ``events_since`` (and when the relay publishes), with the same fold it records with.

Histories are played through routing's real workflow on SQLite and PostgreSQL; then the stored
rows are turned back into what v1 code wrote (no ``lifecycle``, ``schema_version`` 1)."""
from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import update

from shared.core.consumer import EventConsumer
from shared.core.events import isoformat_utc, utc_now
from shared.core.events.catalogue import LATEST_VERSION
from services.routing.service import RoutingHandlers, build_store, workflow_for

_positions = iter(range(1, 1_000_000))
FILINGS: list[dict] = []  # intake's log, as this test plays intake's part


@pytest.fixture(params=["sqlite", "postgresql"])
def routing(request, monkeypatch, tmp_path):
    for name in ("ROUTING_SLA_SECONDS", "ROUTING_AGENCIES_FILE", "ROUTING_RULES_FILE", "ROUTING_TOKENS"):
        monkeypatch.delenv(name, raising=False)
    url = (f"sqlite:///{tmp_path / 'routing.db'}" if request.param == "sqlite"
           else request.getfixturevalue("postgres_url"))
    FILINGS.clear()
    store = build_store(url)
    store.database.create_all()
    workflow = workflow_for(store)
    consumer = EventConsumer(store.database, store.quarantine, RoutingHandlers(store).table(),
                             store.checkpoints, store.processed, store.failures)
    yield store, workflow, consumer
    store.database.dispose()


def file(consumer, text: str, category: str, region: str | None, confidential=False) -> str:
    complaint_id, now = str(uuid.uuid4()), isoformat_utc(utc_now())
    FILINGS.append({
        "event_id": str(uuid.uuid4()), "event_type": "ComplaintFiled", "schema_version": 1,
        "source": "intake", "position": next(_positions), "complaint_id": complaint_id,
        "version": 1, "occurred_at": now, "data": {
            "tracking_code": f"NTB-{uuid.uuid4().hex[:6].upper()}", "channel": "api",
            "filed_at": now, "text": text, "attachments": [], "category": category,
            "region_code": region, "priority": "normal",
            "reasons": {"category": [], "region": [], "priority": []},
            "confidential": confidential, "reply_to": None, "last_citizen_message_at": None,
            "external_ref": None}})
    FILINGS[-1]["position"] = len(FILINGS)
    assert consumer.handle(FILINGS[-1], "intake") == "handled"
    return complaint_id


def play_histories(workflow, consumer) -> dict:
    """The lifecycle's hard cases, as v1-era routing could record them."""
    two_leads = file(consumer, "Jalan rusak dan pungutan", "lainnya", None)
    workflow.assign(two_leads, ["dpupr", "polda-ntb"], "Dua urusan", "sari")
    workflow.assign(two_leads, ["dpupr"], "Dinas PUPR memimpin", "sari")  # one lead, then
    workflow.acknowledge(two_leads, "dpupr", "budi")
    handed_back = file(consumer, "Sampah menumpuk di pasar", "lingkungan_hidup", "5201")
    routed = workflow.get_complaint(handed_back)
    workflow.reject(handed_back, routed["lead_agencies"][0], "Bukan wewenang kami", "budi")
    workflow.assign(handed_back, ["pemkab-lobar", "dlhk"], "Kabupaten memimpin", "sari")
    workflow.respond(handed_back, "dlhk", "Kami bantu koordinasi.", False, "ani")
    workflow.respond(handed_back, "pemkab-lobar", "Sudah diangkut.", True, "eka")
    dismissed = file(consumer, "Halo admin", "lainnya", None)
    workflow.dismiss(dismissed, "Bukan aduan", "sari")
    return {"two_leads": two_leads, "handed_back": handed_back, "dismissed": dismissed}


def stored_as_v1(store) -> None:
    """Rewrite routing's stored events the way v1 code recorded them."""
    events = store.event_store.events
    with store.database.transaction() as tx:
        for row in tx.execute(events.select()).mappings().all():
            data = json.loads(row["data"])
            data.pop("lifecycle", None)
            tx.execute(update(events).where(events.c.position == row["position"]).values(
                schema_version=1, data=json.dumps(data)))


def test_a_v1_log_reads_as_the_live_v2_log(routing):
    store, workflow, consumer = routing
    ids = play_histories(workflow, consumer)
    live = store.events_since(0, 1000)
    assert live and all(e["schema_version"] == LATEST_VERSION[e["event_type"]] == 2 for e in live)
    # The last lead's resolving answer leaves its part resolved; ComplaintResolved closes it.
    handed_back = [e for e in live if e["complaint_id"] == ids["handed_back"]]
    assert [(e["event_type"], e["data"]["lifecycle"]["status"]) for e in handed_back] == [
        ("ComplaintRouted", "disetujui"), ("ComplaintRejectedByAgency", "diproses"),
        ("ComplaintRouted", "disetujui"), ("ComplaintResponded", "diproses"),
        ("ComplaintResponded", "diproses"), ("ComplaintResolved", "selesai")]
    assert handed_back[1]["data"]["lifecycle"]["at_desk"] is True
    assert handed_back[-2]["data"]["lifecycle"]["parts"]["pemkab-lobar"]["resolved"] is True

    stored_as_v1(store)
    assert {e["schema_version"] for e in store.event_store.events_for(
        store.database.engine.connect(), live[0]["complaint_id"])} == {1}
    assert store.events_since(0, 1000) == live          # what events_since serves
    with store.database.read() as connection:            # and what the relay publishes
        assert store.event_store.unpublished(connection, 1000) == live
    # Paging from the middle of a complaint's history lifts with that history too.
    assert store.events_since(live[3]["position"], 2) == live[4:6]
    # Routing's own state replays from the v1 rows unchanged.
    for complaint_id in {e["complaint_id"] for e in live}:
        mine = [e for e in live if e["complaint_id"] == complaint_id]
        assert workflow.get_complaint(complaint_id)["lifecycle"] == mine[-1]["data"]["lifecycle"]


def reporting_projection(path, intake_log: list[dict], routing_log_reader) -> dict:
    """Reporting's rows per tracking code after a rebuild from these logs."""
    from services.reporting.adapters import repository as reporting
    from services.reporting.service import build_store as reporting_store

    store = reporting_store(f"sqlite:///{path}")
    store.prepare()

    def fetch(source, position, limit):
        if source == "intake":
            return [e for e in intake_log if e["position"] > position][:limit]
        if source == "routing":
            return routing_log_reader(position, limit)
        return []
    reporting.rebuild(store.database, fetch, store.checkpoints, store.processed, store.failures)
    with store.database.read() as connection:
        rows = {e["data"]["tracking_code"]: reporting.complaint_by_tracking_code(
            connection, e["data"]["tracking_code"]) for e in intake_log}
    store.database.dispose()
    return rows


def test_a_rebuild_of_a_v1_era_log_gives_the_live_projections(routing, tmp_path):
    store, workflow, consumer = routing
    play_histories(workflow, consumer)
    live_log = store.events_since(0, 1000)
    live = reporting_projection(tmp_path / "live.db", FILINGS,
                                lambda position, limit: [e for e in live_log if e["position"] > position][:limit])
    stored_as_v1(store)
    rebuilt = reporting_projection(tmp_path / "rebuilt.db", FILINGS, store.events_since)

    def comparable(rows):
        return {code: ({k: v for k, v in row.items() if k not in ("projected_at",)}, answers)
                for code, (row, answers) in rows.items()}
    assert comparable(rebuilt) == comparable(live)
    statuses = sorted(row["public_status"] for row, _ in live.values())
    assert statuses == ["diproses", "ditolak", "selesai"]
