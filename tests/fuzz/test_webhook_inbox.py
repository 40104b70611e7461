"""The webhook inbox under arbitrary bodies, on a real SQLite database (no server): whatever
signed bytes arrive are stored, then processed without an exception; each item is applied
(exactly one event), ignored, a duplicate, or quarantined with its reason — and a quarantined or
ignored item writes nothing else (no event, no complaint row)."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings, strategies as st
from sqlalchemy import func, select

from shared.core.events import validate_envelope
from services.intake.adapters import tables
from services.intake.application.inbox import WebhookInbox, WebhookSettings
from services.intake.adapters.store import build_store
from tests.fuzz.strategies import PAGE_ID, PURE, json_values, mostly_valid_bodies, webhook_bodies

ONE_EVENT_OUTCOMES = {"filed", "amended", "message_received", "status_requested", "comment_removed",
                      "reaction_recorded"}
NO_WRITE_OUTCOMES = {"ignored", "duplicate", "quarantined", "awaiting_new_complaint"}
INBOX = settings(PURE, max_examples=300)


@pytest.fixture(scope="module")
def inbox(tmp_path_factory):
    store = build_store(f"sqlite:///{tmp_path_factory.mktemp('fuzz-inbox') / 'intake.db'}")
    store.database.create_all()
    yield WebhookInbox(store, WebhookSettings(frozenset({PAGE_ID, "200000000000002"}), 120.0))
    store.database.dispose()


def counts(inbox) -> dict:
    with inbox.database.read() as connection:
        return {
            "events": connection.execute(select(func.count()).select_from(inbox.store.event_store.events)).scalar_one(),
            "complaints": connection.execute(select(func.count()).select_from(tables.complaints)).scalar_one(),
            "quarantined": inbox.store.quarantine.count(connection),
        }


def deliver_and_check(inbox, raw: bytes) -> dict:
    before = counts(inbox)
    inbox_id = inbox.store_body(raw)
    outcomes = inbox.process(inbox_id)        # must not raise
    after = counts(inbox)
    with inbox.database.read() as connection:
        state = connection.execute(select(tables.webhook_inbox.c.state).where(
            tables.webhook_inbox.c.inbox_id == inbox_id)).scalar_one()
    assert state == "processed", "a body must never stay pending (it would be retried forever)"
    assert set(outcomes) <= ONE_EVENT_OUTCOMES | NO_WRITE_OUTCOMES, outcomes
    assert after["events"] - before["events"] == sum(n for o, n in outcomes.items() if o in ONE_EVENT_OUTCOMES)
    assert after["complaints"] - before["complaints"] == outcomes.get("filed", 0)
    assert after["quarantined"] - before["quarantined"] == outcomes.get("quarantined", 0)
    for event in inbox.store.events_since(before["events"], 1000):
        validate_envelope(event, "intake")
    return outcomes


@INBOX
@given(body=webhook_bodies)
def test_meta_shaped_bodies_through_the_inbox(tried, inbox, body):
    tried["webhook inbox (SQLite): Meta-shaped bodies"] += 1
    deliver_and_check(inbox, json.dumps(body).encode("utf-8"))


@INBOX
@given(body=mostly_valid_bodies)
def test_mostly_valid_deliveries_file_amend_and_dedupe(tried, inbox, body):
    tried["webhook inbox (SQLite): mostly valid deliveries"] += 1
    deliver_and_check(inbox, json.dumps(body).encode("utf-8"))


@INBOX
@given(raw=st.one_of(st.binary(max_size=200), json_values.map(lambda v: json.dumps(v).encode()),
                     st.integers(min_value=1, max_value=3000).map(lambda n: b"[" * n + b"]" * n),
                     st.just(b'{"object":"page","entry":[{"id":' + b"9" * 5000 + b"}]}")))
def test_any_bytes_through_the_inbox(tried, inbox, raw):
    tried["webhook inbox (SQLite): any bytes"] += 1
    outcomes = deliver_and_check(inbox, raw)
    assert not outcomes.get("filed") or raw.startswith(b"{")
