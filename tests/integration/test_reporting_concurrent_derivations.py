"""Two transactions that bring facts of the same complaint at the same time (reporting consumes
intake's and routing's events side by side) must not lose one another's facts on PostgreSQL: each
derives the complaint's rows from every fact it can see, and under READ COMMITTED the second would
read the facts before the first committed, wait on the first's row lock, then overwrite the row
with what it read. Real PostgreSQL, real transactions, the second really waiting."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import eventlet
import pytest
from sqlalchemy import select

from services.reporting.adapters import repository, tables
from services.reporting.domain import projections
from services.reporting.service import build_store
from shared.core.events import types as ev
from tests.support.reporting_seed import Seeder


@pytest.fixture()
def one_complaint(tmp_path):
    """A complaint's ComplaintFiled (intake) and its ComplaintRouted (routing), as received."""
    seeder = Seeder(tmp_path / "sources")
    seeder.history(20, datetime(2020, 1, 1, tzinfo=timezone.utc), months=1)
    seeder.flush()
    logs = {source: json.loads(json.dumps(store.events_since(0, 1000))) for source, store in seeder.stores.items()}
    seeder.dispose()
    routed = next(event for event in logs["routing"] if event["event_type"] == ev.COMPLAINT_ROUTED
                  and not event["data"]["lifecycle"]["at_desk"])
    filed = next(event for event in logs["intake"] if event["event_type"] == ev.COMPLAINT_FILED
                 and event["complaint_id"] == routed["complaint_id"])
    return filed, routed


def test_facts_of_one_complaint_committed_side_by_side_are_both_in_its_row(postgres_url, one_complaint):
    filed, routed = one_complaint
    store = build_store(postgres_url)
    store.prepare()
    first_derived, commit_first = eventlet.event.Event(), eventlet.event.Event()

    def first():
        with store.database.transaction() as tx:
            repository.apply_event(tx, filed)
            tx.reporting_derivations.derive()  # its rows written now, committed later
            first_derived.send()
            commit_first.wait()

    def second():
        first_derived.wait()
        with store.database.transaction() as tx:
            repository.apply_event(tx, routed)  # derived as it commits

    threads = [eventlet.spawn(first), eventlet.spawn(second)]
    eventlet.sleep(0.5)                 # the second is at its derivation now, waiting on the first
    commit_first.send()
    for thread in threads:
        thread.wait()

    projection = tables.projection(1)
    with store.database.read() as connection:
        row = connection.execute(select(projection.complaints)).mappings().one()
        facts = [repository._fact_from_row(fact) for fact in
                 connection.execute(select(projection.facts)).mappings()]
    assert len(facts) == 2
    expected = projections.derive(routed["complaint_id"], facts)["complaint"]
    assert row["filed"] is True and row["tracking_code"] == filed["data"]["tracking_code"]
    assert json.loads(row["lead_agencies"]) == routed["data"]["lifecycle"]["lead_agencies"] != []
    assert repository.decode_complaint(dict(row)) == {**expected, "lead_agencies": expected["lead_agencies"]}
    store.database.dispose()
