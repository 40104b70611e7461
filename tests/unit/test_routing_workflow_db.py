"""Routing's application service on a real database (SQLite file; PostgreSQL for concurrent
timers), without the broker: events and state rows commit together, refused actions leave both
untouched, breaches escalate exactly once across a restart and across two processes checking at
once, tokens are stored hashed and env tokens are revoked by removing them, the directory file is
upserted on start."""
from __future__ import annotations

import json
import threading
import uuid
from datetime import timedelta

import pytest
import yaml
from sqlalchemy import select

from shared.core.consumer import EventConsumer
from shared.core.errors import Forbidden, IllegalAction, NotFound
from shared.core.events import isoformat_utc, utc_now
from services.routing.domain import directory as directory_module
from services.routing.adapters import tables
from services.routing.service import build_store, workflow_for

DESK = "diskominfotik"


@pytest.fixture(autouse=True)
def routing_env(monkeypatch):
    monkeypatch.setenv("ROUTING_TOKENS", f"{DESK}:desk-token-123,dpupr:dpupr-token-123")
    for name in ("ROUTING_SLA_SECONDS", "ROUTING_AGENCIES_FILE", "ROUTING_RULES_FILE"):
        monkeypatch.delenv(name, raising=False)


def start(url: str):
    """What a routing process does on start, against the given database."""
    store = build_store(url)
    store.database.create_all()
    workflow = workflow_for(store)
    consumer = EventConsumer(store.database, store.quarantine,
                             {"ComplaintFiled": workflow.on_complaint_filed},
                             store.checkpoints, store.processed, store.failures)
    return workflow, consumer


_positions = iter(range(1, 1_000_000))


def file(consumer, category, region, text, priority="normal") -> str:
    complaint_id = str(uuid.uuid4())
    now = isoformat_utc(utc_now())
    assert consumer.handle({
        "event_id": str(uuid.uuid4()), "event_type": "ComplaintFiled", "schema_version": 1,
        "source": "intake", "position": next(_positions), "complaint_id": complaint_id, "version": 1,
        "occurred_at": now, "data": {
            "tracking_code": f"NTB-{uuid.uuid4().hex[:6].upper()}", "channel": "api", "filed_at": now,
            "text": text, "attachments": [], "category": category, "region_code": region,
            "priority": priority, "reasons": {"category": [], "region": [], "priority": []},
            "confidential": False, "reply_to": None, "last_citizen_message_at": None,
            "external_ref": None}}, "intake") == "handled"
    return complaint_id


def snapshot(workflow, complaint_id):
    with workflow.database.read() as connection:
        events = workflow.events.events_for(connection, complaint_id)
        state = connection.execute(select(tables.dispositions).where(
            tables.dispositions.c.complaint_id == complaint_id)).mappings().first()
        roles = connection.execute(select(tables.assignments).where(
            tables.assignments.c.complaint_id == complaint_id)).mappings().all()
    return events, dict(state), sorted(map(dict, roles), key=str)


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'routing.db'}"


def test_events_and_state_rows_move_together_and_refusals_change_neither(sqlite_url):
    workflow, consumer = start(sqlite_url)
    cid = file(consumer, "infrastruktur", "5203", "Jl. Prov. menuju Sembalun longsor")
    events, state, roles = snapshot(workflow, cid)
    assert [e["event_type"] for e in events] == ["ComplaintRouted"]
    assert state["version"] == 1 and state["status"] == "assigned"
    assert json.loads(state["lead_agencies"]) == ["dpupr"]
    assert roles == [{"complaint_id": cid, "agency_code": "dpupr", "role": "lead"}]

    refusals = [
        (Forbidden, lambda: workflow.acknowledge(cid, "pemkab-lotim", "x")),
        (Forbidden, lambda: workflow.acknowledge(cid, "dpupr", "x", caller="pemkab-lotim")),
        (Forbidden, lambda: workflow.get_complaint(cid, caller="pemkab-lotim")),
        (Forbidden, lambda: workflow.assign(cid, ["dlhk"], "x", "x", caller="dpupr")),
        (Forbidden, lambda: workflow.desk_queue(caller="dpupr")),
        (NotFound, lambda: workflow.acknowledge(cid, "dinas-tidak-ada", "x")),
        (IllegalAction, lambda: workflow.set_priority(cid, "normal", "sama", "x")),
    ]
    for error, action in refusals:
        with pytest.raises(error):
            action()
        assert snapshot(workflow, cid) == (events, state, roles)

    workflow.respond(cid, "dpupr", "Sudah dibersihkan.", True, "budi")
    resolved = snapshot(workflow, cid)
    assert [e["event_type"] for e in resolved[0]] == ["ComplaintRouted", "ComplaintResponded",
                                                      "ComplaintResolved"]
    assert resolved[1]["status"] == "resolved" and resolved[1]["version"] == 3
    assert resolved[1]["next_due_at"] is None  # a closed complaint never escalates
    with pytest.raises(IllegalAction, match="already resolved"):
        workflow.respond(cid, "dpupr", "Sekali lagi.", True, "budi")
    assert snapshot(workflow, cid) == resolved


def test_get_complaint_by_tracking_code_and_the_timeline(sqlite_url):
    workflow, consumer = start(sqlite_url)
    cid = file(consumer, "lainnya", None, "mohon info")
    complaint = workflow.get_complaint(cid)
    assert workflow.get_complaint(complaint["tracking_code"])["complaint_id"] == cid
    assert complaint["decided_by"] == "rule:desk-fallback" and complaint["at_desk"]
    assert complaint["agency_names"] == {DESK: workflow.directory.get(DESK).name}
    timeline = workflow.timeline(cid)
    assert [e["event_type"] for e in timeline] == ["ComplaintFiled", "ComplaintRouted"]
    assert "text" not in timeline[0]["data"]


def test_a_breach_is_escalated_exactly_once_across_a_restart(sqlite_url):
    workflow, consumer = start(sqlite_url)
    cid = file(consumer, "infrastruktur", "5203", "jalan provinsi longsor", priority="urgent")
    now = utc_now()
    assert workflow.escalate_breaches(now) == 0
    assert workflow.escalate_breaches(now + timedelta(hours=2)) == 1
    assert workflow.escalate_breaches(now + timedelta(hours=3)) == 0

    restarted, _ = start(sqlite_url)  # a new process on the same database
    assert restarted.escalate_breaches(now + timedelta(hours=3)) == 0
    assert restarted.escalate_breaches(now + timedelta(days=30)) == 1  # follow-up
    assert restarted.escalate_breaches(now + timedelta(days=31)) == 0
    events, state, _ = snapshot(restarted, cid)
    escalated = [e["data"] for e in events if e["event_type"] == "ComplaintEscalated"]
    assert [e["breach"] for e in escalated] == ["first_response", "follow_up"]
    assert escalated[0]["notified"] == ["inspektorat", DESK]
    assert state["next_due_at"] is None and json.loads(state["escalated"]) == ["first_response",
                                                                               "follow_up"]
    assert cid in {item["complaint_id"] for item in restarted.desk_queue()}


def test_concurrent_breach_checks_on_postgresql_escalate_once(postgres_url):
    first, consumer = start(postgres_url)
    second, _ = start(postgres_url)  # another routing process on the same database
    ids = [file(consumer, "kesehatan", "5203", "puskesmas tutup", priority="urgent") for _ in range(8)]
    later = utc_now() + timedelta(hours=2)
    counts: list[int] = []
    threads = [threading.Thread(target=lambda w=w: counts.append(w.escalate_breaches(later)))
               for w in (first, second, first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sum(counts) == len(ids)
    for cid in ids:
        events, _, _ = snapshot(first, cid)
        assert [e["event_type"] for e in events].count("ComplaintEscalated") == 1


def test_tokens_are_hashed_issued_once_and_env_tokens_revocable(sqlite_url, monkeypatch):
    workflow, _ = start(sqlite_url)
    assert workflow.authenticate("dpupr-token-123") == "dpupr"
    assert workflow.authenticate("desk-token-123") == DESK
    assert workflow.authenticate("wrong") is None and workflow.authenticate(None) is None
    issued = workflow.issue_token("bpjn-ntb", "admin")
    assert workflow.authenticate(issued["token"]) == "bpjn-ntb"
    with pytest.raises(NotFound):
        workflow.issue_token("tidak-ada", "admin")
    with workflow.database.read() as connection:
        stored = connection.execute(select(tables.agency_tokens)).mappings().all()
    assert len(stored) == 3 and all(len(row["token_hash"]) == 64 for row in stored)
    assert not {issued["token"], "dpupr-token-123"} & {row["token_hash"] for row in stored}

    monkeypatch.setenv("ROUTING_TOKENS", f"{DESK}:desk-token-123")
    restarted, _ = start(sqlite_url)
    assert restarted.authenticate("dpupr-token-123") is None  # removed from the env: revoked
    assert restarted.authenticate("desk-token-123") == DESK
    assert restarted.authenticate(issued["token"]) == "bpjn-ntb"  # issued tokens stay


def test_directory_file_is_upserted_on_start(sqlite_url, tmp_path, monkeypatch):
    workflow, _ = start(sqlite_url)
    assert {a["code"] for a in workflow.agencies()} >= {DESK, "dpupr", "pemkot-bima", "bws-nt1"}
    document = yaml.safe_load(directory_module.DEFAULT_PATH.read_text(encoding="utf-8"))
    for record in document["agencies"]:
        if record["code"] == "dpupr":
            record["name"] = "Dinas PUPR (nama baru)"
    edited = tmp_path / "agencies.yaml"
    edited.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    monkeypatch.setenv("ROUTING_AGENCIES_FILE", str(edited))
    restarted, consumer = start(sqlite_url)
    names = {a["code"]: a["name"] for a in restarted.agencies()}
    assert names["dpupr"] == "Dinas PUPR (nama baru)"
    cid = file(consumer, "infrastruktur", None, "jalan provinsi rusak")
    events, _, _ = snapshot(restarted, cid)
    assert events[0]["data"]["agency_names"] == {"dpupr": "Dinas PUPR (nama baru)"}
