"""A forged event pushed on the broker must never shadow the real one (issue 16, "least privilege
inside"): before, a pushed event claiming a position the consumer had not handled yet was recorded
at that position, so the source's real event there later counted as a duplicate and was never
applied. Now only the source's own log (``events_since``, pulled by catch-up) confirms what sits at
a position: pushed events are recorded by event id, catch-up re-reads everything not yet
confirmed, applies the real event where a pushed one differed, and reports the impostor.
Real databases (SQLite and PostgreSQL), the real consumer and catch-up; no broker needed."""
from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from shared.core.consumer import CatchUp, EventConsumer
from shared.core.events.catalogue import LATEST_VERSION
from tests.support.lifecycle import snapshot
from tests.support.effects_store import effects_store

SOURCE = "routing"


def envelope(position: int, actor: str) -> dict:
    return {"event_id": str(uuid.uuid4()), "event_type": "ComplaintResolved",
            "schema_version": LATEST_VERSION["ComplaintResolved"], "source": SOURCE,
            "position": position, "complaint_id": str(uuid.uuid4()), "version": 1,
            "occurred_at": "2026-11-01T00:00:00Z",
            "data": {"actor": actor, "lifecycle": snapshot("selesai")}}


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    with effects_store(request.param, tmp_path) as service_store:
        yield service_store


def consumer_of(store) -> EventConsumer:
    effects = store.metadata.tables["effects"]

    def record(tx, env):
        tx.execute(effects.insert().values(position=env.position, actor=env.data["actor"]))
    return EventConsumer(store.database, store.quarantine, {"ComplaintResolved": record},
                         store.checkpoints, store.processed, store.failures)


def applied(store) -> list[tuple[int, str]]:
    effects = store.metadata.tables["effects"]
    with store.database.read() as connection:
        return sorted((row.position, row.actor) for row in connection.execute(select(effects)))


def catch_up(consumer, log):
    CatchUp(consumer, [SOURCE], lambda _s, position, limit: [e for e in log if e["position"] > position][:limit],
            batch=True).run_once()


@pytest.mark.parametrize("forged_position", [1, 3], ids=["next-position", "future-position"])
def test_a_forged_pushed_event_does_not_shadow_the_real_one(store, forged_position):
    consumer = consumer_of(store)
    log = [envelope(position, f"officer-{position}") for position in (1, 2, 3)]
    forged = envelope(forged_position, "forger")
    consumer.handle(forged, SOURCE)                      # pushed by someone who may publish
    for real in log:                                     # then the real events are pushed
        consumer.handle(real, SOURCE)
    catch_up(consumer, log)                              # and the source's own log is read
    real_effects = [effect for effect in applied(store) if effect[1] != "forger"]
    assert real_effects == [(1, "officer-1"), (2, "officer-2"), (3, "officer-3")]
    assert consumer.checkpoint(SOURCE) == 3
    with store.database.read() as connection:
        reported = [item for item in store.quarantine.list(connection) if item["kind"] == "forged"]
    assert [(item["source"], item["position"]) for item in reported] == [(SOURCE, forged_position)]
    # Everything is confirmed now: the real events again, pushed or pulled, change nothing.
    before = applied(store)
    for real in log:
        assert consumer.handle(real, SOURCE) == "duplicate"
    catch_up(consumer, log)
    assert applied(store) == before


def test_catch_up_reads_again_from_what_the_log_confirmed_not_from_what_push_claimed(store):
    consumer = consumer_of(store)
    log = [envelope(position, f"officer-{position}") for position in range(1, 6)]
    for real in log[:3]:
        consumer.handle(real, SOURCE)
    consumer.handle(envelope(4, "forger"), SOURCE)
    asked = []

    def fetch(_source, position, limit):
        asked.append(position)
        return [e for e in log if e["position"] > position][:limit]
    CatchUp(consumer, [SOURCE], fetch).run_once()
    assert asked == [0]                                 # nothing pushed was taken on trust
    assert (4, "officer-4") in applied(store) and (5, "officer-5") in applied(store)
    assert consumer.checkpoint(SOURCE) == 5
    # Confirmed pushes are not applied twice.
    assert [effect for effect in applied(store) if effect[1] != "forger"] == [
        (p, f"officer-{p}") for p in range(1, 6)]
