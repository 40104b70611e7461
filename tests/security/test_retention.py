"""Retention (issue 16): the webhook inbox (raw bodies with commenters' names), seen-items and the
quarantine grew forever. Now, on real SQLite and PostgreSQL: processed bodies are blanked first,
their rows deleted later, old dedupe keys and replayed quarantine items deleted — never a pending
body or an unresolved quarantine item — and 0 keeps forever. A real nameko container shows the
timer runs on its own."""
from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from shared.core.events import isoformat_utc, utc_now
from shared.core.retention import BATCH_ROWS, run_rules
from services.intake.adapters import tables
from services.intake.adapters.store import build_store

NOW = utc_now()


def days_ago(days: float) -> str:
    return isoformat_utc(NOW - timedelta(days=days))


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        url, cleanup = f"sqlite:///{tmp_path / 'intake.db'}", None
    else:
        from tests.support import infra
        url = infra.create_postgres_database()
        cleanup = lambda: infra.drop_postgres_database(url)  # noqa: E731
    service_store = build_store(url)
    service_store.database.create_all()
    yield service_store
    service_store.database.dispose()
    if cleanup:
        cleanup()


@pytest.fixture(autouse=True)
def default_retention(monkeypatch):
    for variable in ("INTAKE_INBOX_BODY_RETENTION_DAYS", "INTAKE_INBOX_RETENTION_DAYS", "INTAKE_SEEN_RETENTION_DAYS",
                     "NTBCARE_QUARANTINE_RETENTION_DAYS"):
        monkeypatch.delenv(variable, raising=False)


def add_inbox(store, body: str, state: str, received: float, processed: float | None = None) -> int:
    with store.database.transaction() as tx:
        result = tx.execute(tables.webhook_inbox.insert().values(
            received_at=days_ago(received), body=body, state=state,
            processed_at=days_ago(processed) if processed is not None else None))
        return int(result.inserted_primary_key[0])


def inbox_rows(store) -> dict[int, dict]:
    with store.database.read() as connection:
        return {row["inbox_id"]: dict(row) for row in connection.execute(select(tables.webhook_inbox)).mappings()}


def prune(store):
    return run_rules(store.database, store.retention_rules, now=NOW)


def test_processed_bodies_are_blanked_first_then_deleted_and_pending_bodies_stay(store):
    name = '{"from": {"name": "Baiq Nurul Aini"}}'   # what a comment's body carries
    old = add_inbox(store, name, "processed", received=100, processed=100)
    month = add_inbox(store, name, "processed", received=40, processed=40)
    waiting = add_inbox(store, name, "pending", received=400)          # never processed: kept whole
    fresh = add_inbox(store, name, "processed", received=1, processed=1)
    newest = add_inbox(store, name, "processed", received=120, processed=120)

    pruned = prune(store)

    rows = inbox_rows(store)
    assert old not in rows                                    # past INTAKE_INBOX_RETENTION_DAYS (90)
    assert rows[month]["body"] == "" and rows[month]["state"] == "processed"   # past the body's 30
    assert rows[waiting]["body"] == name and rows[waiting]["state"] == "pending"
    assert rows[fresh]["body"] == name
    # The newest row outlives its retention (blanked), so SQLite never hands its id out again.
    assert rows[newest]["body"] == ""
    assert pruned["webhook_bodies_blanked"] == 3 and pruned["webhook_inbox_rows"] == 1


def test_old_seen_items_are_deleted_in_batches(store):
    with store.database.transaction() as tx:
        tx.execute(tables.seen_items.insert(), [
            {"item_key": f"mid:{i}", "complaint_id": None, "seen_at": days_ago(91 + i % 5)}
            for i in range(BATCH_ROWS * 2 + 7)])
        tx.execute(tables.seen_items.insert().values(item_key="mid:recent", complaint_id=None, seen_at=days_ago(3)))
    assert prune(store)["seen_items"] == BATCH_ROWS * 2 + 7
    with store.database.read() as connection:
        assert list(connection.execute(select(tables.seen_items.c.item_key)).scalars()) == ["mid:recent"]


def test_only_replayed_quarantine_items_past_their_retention_are_deleted(store):
    quarantine, table = store.quarantine, store.quarantine.table
    with store.database.transaction() as tx:
        ids = {label: quarantine.put(tx.connection, "webhook", "unknown page", {"from": {"name": "Lalu Ahmad"}})
               for label in ("replayed_long_ago", "replayed_lately", "unresolved", "failed_again")}
        tx.execute(table.update().values(quarantined_at=days_ago(400)))
        tx.execute(table.update().where(table.c.item_id == ids["replayed_long_ago"])
                   .values(state="replayed", replayed_by="sari", replayed_at=days_ago(181)))
        tx.execute(table.update().where(table.c.item_id == ids["replayed_lately"])
                   .values(state="replayed", replayed_by="sari", replayed_at=days_ago(10)))
        # A replay that failed again is still quarantined, however old its last attempt.
        tx.execute(table.update().where(table.c.item_id == ids["failed_again"])
                   .values(replayed_by="sari", replayed_at=days_ago(300), attempts=2))
    assert prune(store)["quarantine_replayed"] == 1
    with store.database.read() as connection:
        left = set(connection.execute(select(table.c.item_id)).scalars())
    assert left == {ids["replayed_lately"], ids["unresolved"], ids["failed_again"]}


def test_zero_keeps_forever(store, monkeypatch):
    for variable in ("INTAKE_INBOX_BODY_RETENTION_DAYS", "INTAKE_INBOX_RETENTION_DAYS", "INTAKE_SEEN_RETENTION_DAYS",
                     "NTBCARE_QUARANTINE_RETENTION_DAYS"):
        monkeypatch.setenv(variable, "0")
    add_inbox(store, "body", "processed", received=3000, processed=3000)
    add_inbox(store, "body", "processed", received=2000, processed=2000)
    assert prune(store) == {}
    assert [row["body"] for row in inbox_rows(store).values()] == ["body", "body"]


def test_a_malformed_retention_is_refused(tmp_path, monkeypatch):
    from shared.core.config import ConfigError

    store = build_store(f"sqlite:///{tmp_path / 'intake.db'}")
    store.database.create_all()
    monkeypatch.setenv("INTAKE_SEEN_RETENTION_DAYS", "-1")
    with pytest.raises(ConfigError, match="INTAKE_SEEN_RETENTION_DAYS"):
        prune(store)


def test_the_storage_provider_prunes_on_its_own_in_a_running_container(tmp_path, monkeypatch):
    """No entrypoint, no call: a nameko container with the Storage provider prunes at start."""
    from nameko.containers import ServiceContainer

    from shared.glue.providers import Storage

    monkeypatch.setenv("NTBCARE_AUTO_MIGRATE", "1")
    monkeypatch.setenv("NTBCARE_RETENTION_CHECK_SECONDS", "0.2")
    url = f"sqlite:///{tmp_path / 'intake.db'}"
    seeded = build_store(url)
    seeded.prepare()
    add_inbox(seeded, "old body", "processed", received=200, processed=200)
    add_inbox(seeded, "newest body", "processed", received=1, processed=1)

    class Pruned:
        name = "retention_probe"
        store = Storage(lambda: build_store(url))

    container = ServiceContainer(Pruned, {})
    container.start()
    try:
        deadline = time.monotonic() + 20
        while len(inbox_rows(seeded)) != 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [row["body"] for row in inbox_rows(seeded).values()] == ["newest body"]
    finally:
        container.stop()
        seeded.database.dispose()


def test_a_service_refuses_to_start_with_a_malformed_retention(monkeypatch):
    from shared.core import config

    monkeypatch.setenv("NTBCARE_ENV", "development")
    monkeypatch.setenv("INTAKE_INBOX_RETENTION_DAYS", "ninety")
    with pytest.raises(config.ConfigError, match="INTAKE_INBOX_RETENTION_DAYS"):
        config.check_startup_settings()
    monkeypatch.setenv("INTAKE_INBOX_RETENTION_DAYS", "0")
    config.check_startup_settings()
