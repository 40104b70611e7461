"""A log recorded by the v1-era code itself replays under today's code: ``tests/data/
v1_routing_log.json`` was written by the old intake and routing (the tree before routing's events
carried the lifecycle; ``scripts/record_v1_routing_log.py``) playing the histories of
``tests/support/lifecycle_histories.py``. Its routing rows, stored as v1 wrote them, are served
lifted to v2 by today's routing, and reporting rebuilt from them holds the same projections as
reporting fed by today's routing playing the same histories live."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from shared.core.consumer import EventConsumer
from shared.core.events import utc_now
from shared.core.events.catalogue import LATEST_VERSION
from services.routing.adapters import repository
from services.routing.service import RoutingHandlers, build_store, workflow_for
from tests.integration.test_event_versions import reporting_projection
from tests.support import lifecycle_histories as histories

ROOT = Path(__file__).resolve().parents[2]
RECORDED = json.loads((ROOT / "tests/data/v1_routing_log.json").read_text(encoding="utf-8"))
IDS: dict[str, str] = RECORDED["histories"]
CODES = {name: filed["data"]["tracking_code"] for name, complaint_id in IDS.items()
         for filed in RECORDED["intake"] if filed["complaint_id"] == complaint_id}
TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T")


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path, monkeypatch):
    shipped = yaml.safe_load((ROOT / "services/routing/data/rules.yaml").read_text(encoding="utf-8"))
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"rules": [histories.TWO_LEADS_RULE] + shipped["rules"]},
                                    allow_unicode=True), encoding="utf-8")
    monkeypatch.setenv("ROUTING_RULES_FILE", str(rules))
    for name in ("ROUTING_SLA_SECONDS", "ROUTING_AGENCIES_FILE", "ROUTING_TOKENS"):
        monkeypatch.delenv(name, raising=False)
    if request.param == "sqlite":
        return lambda name: f"sqlite:///{tmp_path / name}.db"
    return lambda name: request.getfixturevalue("postgres_url") if name == "replayed" else \
        f"sqlite:///{tmp_path / name}.db"


def replayed_routing(url: str):
    """Today's routing over the recorded rows, as a database upgraded from v1 holds them."""
    store = build_store(url)
    store.database.create_all()
    with store.database.transaction() as tx:
        for filed in RECORDED["intake"]:
            repository.save_facts(tx.connection, filed["complaint_id"], filed["data"])
        tx.execute(store.event_store.events.insert(), [
            dict(event, data=json.dumps(event["data"])) for event in RECORDED["routing"]])
    return store


def live_routing(url: str):
    """Today's routing handed the same filings, playing the same histories now."""
    store = build_store(url)
    store.database.create_all()
    workflow = workflow_for(store)
    consumer = EventConsumer(store.database, store.quarantine, RoutingHandlers(store).table(),
                             store.checkpoints, store.processed, store.failures)
    for filed in RECORDED["intake"]:
        assert consumer.handle(filed, "intake") == "handled"
    histories.play(workflow, IDS, CODES, utc_now)
    return store


def without_times(value):
    """Moments and deadlines differ between a recording and a live run; everything else may not."""
    if isinstance(value, dict):
        return {k: without_times(v) for k, v in value.items()
                if not (isinstance(v, str) and TIME.match(v)) and k not in ("deadlines", "event_id")}
    if isinstance(value, (list, tuple)):
        return [without_times(v) for v in value]
    return value


def test_the_recording_is_v1_and_has_every_history():
    assert {e["schema_version"] for e in RECORDED["routing"]} == {1}
    assert not any("lifecycle" in e["data"] for e in RECORDED["routing"])
    assert set(IDS) == {name for name, _ in histories.FILINGS}
    kinds = {(e["complaint_id"], e["event_type"]) for e in RECORDED["routing"]}
    assert (IDS["hand_back"], "ComplaintRejectedByAgency") in kinds
    assert (IDS["escalation"], "ComplaintEscalated") in kinds
    assert (IDS["dismissal"], "ComplaintDismissed") in kinds
    # No personal data: filed through the API without reporter, Messenger ids or contact details.
    assert all(e["data"]["reply_to"] is None and e["data"]["channel"] == "api" for e in RECORDED["intake"])


def test_routing_lifts_the_recorded_v1_log(url):
    store = replayed_routing(url("replayed"))
    workflow = workflow_for(store)
    lifted = store.events_since(0, 1000)
    assert [e["event_id"] for e in lifted] == [e["event_id"] for e in RECORDED["routing"]]
    assert all(e["schema_version"] == LATEST_VERSION[e["event_type"]] == 2 for e in lifted)

    def statuses(name):
        return [(e["event_type"], e["data"]["lifecycle"]["status"]) for e in lifted
                if e["complaint_id"] == IDS[name]]
    assert statuses("two_leads") == [("ComplaintRouted", "disetujui"), ("ComplaintResponded", "diproses"),
                                     ("ComplaintResponded", "diproses"), ("ComplaintResolved", "selesai")]
    assert statuses("hand_back")[:3] == [("ComplaintRouted", "disetujui"),
                                         ("ComplaintRejectedByAgency", "diproses"), ("ComplaintRouted", "disetujui")]
    assert [e["data"]["lifecycle"]["at_desk"] for e in lifted
            if e["complaint_id"] == IDS["hand_back"]][1] is True
    assert statuses("escalation")[-1] == ("ComplaintEscalated", "disetujui")
    assert statuses("dismissal") == [("ComplaintRouted", "disetujui"), ("ComplaintDismissed", "ditolak")]
    for complaint_id in IDS.values():
        mine = [e for e in lifted if e["complaint_id"] == complaint_id]
        assert workflow.get_complaint(complaint_id)["lifecycle"] == mine[-1]["data"]["lifecycle"]
    store.database.dispose()


def test_a_rebuild_of_the_recorded_log_gives_the_live_projections(url, tmp_path):
    replayed = replayed_routing(url("replayed"))
    live = live_routing(url("live"))
    lifted, live_log = replayed.events_since(0, 1000), live.events_since(0, 1000)
    # Today's routing, playing the same commands, records the same events with the same lifecycle.
    assert [(e["complaint_id"], e["event_type"], without_times(e["data"])) for e in lifted] == \
        [(e["complaint_id"], e["event_type"], without_times(e["data"])) for e in live_log]

    from_v1 = reporting_projection(tmp_path / "from_v1.db", RECORDED["intake"], replayed.events_since)
    from_live = reporting_projection(tmp_path / "from_live.db", RECORDED["intake"], live.events_since)
    assert without_times(from_v1) == without_times(from_live)
    assert sorted(row["public_status"] for row, _ in from_v1.values()) == [
        "disetujui", "ditolak", "ditolak", "selesai", "selesai", "selesai"]
    replayed.database.dispose()
    live.database.dispose()
