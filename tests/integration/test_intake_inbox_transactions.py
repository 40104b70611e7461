"""A stored webhook body is processed in ONE transaction (issue 17, item 2), on SQLite and
PostgreSQL: a failure after its items were applied leaves nothing of them committed and the body
pending; an item that cannot be applied is undone alone (its savepoint) and quarantined in the
same transaction while the others file; and the commits are counted — a body is one commit to
store and one to process, a complaint from Meta's POST to the acknowledgment two intake commits and
three notification ones."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from bench.transactions import commits, measure
from services.intake.adapters import tables
from services.intake.adapters.inbox_store import WebhookBodies
from services.intake.application.inbox import WebhookInbox, WebhookSettings
from tests.integration.test_intake_conversation_state import store_at
from tests.support import facebook as fb
from tests.support.platform import DEV_PAGE_ID


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        built = store_at(f"sqlite:///{tmp_path / 'intake.db'}")
    else:
        built = store_at(request.getfixturevalue("postgres_url"))
    built.database.create_all()
    yield built
    built.database.dispose()


def body_of(*texts_and_psids) -> bytes:
    return json.dumps(fb.page_body(*(fb.messaging_entry(DEV_PAGE_ID, fb.text_message(DEV_PAGE_ID, psid, text))
                                     for text, psid in texts_and_psids))).encode()


def counted(store) -> dict:
    """Events recorded and items quarantined so far (compared before and after)."""
    with store.database.read() as connection:
        events = connection.execute(select(func.count()).select_from(store.event_store.events)).scalar_one()
        return {"events": events, "quarantined": store.quarantine.count(connection)}


def state_of(store, inbox_id: int) -> str:
    with store.database.read() as connection:
        return connection.execute(select(tables.webhook_inbox.c.state).where(
            tables.webhook_inbox.c.inbox_id == inbox_id)).scalar_one()


def conversation_of(store, psid: str):
    with store.database.read() as connection:
        return connection.execute(select(tables.conversations).where(
            tables.conversations.c.psid == psid)).first()


def test_a_failure_after_the_items_were_applied_commits_nothing_and_leaves_the_body_pending(store, monkeypatch):
    inbox = WebhookInbox(store, WebhookSettings(frozenset(), 120))
    first, second = fb.new_psid(), fb.new_psid()
    inbox_id = inbox.store_body(body_of(("Jalan rusak di Praya", first), ("Sampah di Ampenan", second)))
    before = counted(store)

    def lost(tx, inbox_id, outcomes):
        # Both items are applied in this transaction by now; then the database goes away.
        assert outcomes == {"filed": 2}
        raise OperationalError("UPDATE webhook_inbox", {}, Exception("server closed the connection"))

    with monkeypatch.context() as patched:
        patched.setattr(WebhookBodies, "mark_processed", staticmethod(lost))
        with pytest.raises(OperationalError):
            inbox.process(inbox_id)
    assert counted(store) == before                       # no event, nothing quarantined
    assert conversation_of(store, first) is None and conversation_of(store, second) is None
    assert state_of(store, inbox_id) == "pending"

    # The timer comes back: everything is applied once, now for good.
    assert inbox.process(inbox_id) == {"filed": 2}
    assert counted(store)["events"] == before["events"] + 2
    assert state_of(store, inbox_id) == "processed"
    assert inbox.process(inbox_id) == {}


def test_a_bad_item_among_good_ones_is_undone_alone_and_quarantined_while_the_others_file(store, monkeypatch):
    inbox = WebhookInbox(store, WebhookSettings(frozenset(), 120))
    good, bad, later = fb.new_psid(), fb.new_psid(), fb.new_psid()
    original = WebhookInbox._message

    def fails_after_writing(self, tx, message, received_at):
        outcome = original(self, tx, message, received_at)   # the complaint, its conversation, its event
        if message.psid == bad:
            raise RuntimeError("a bug after the item was written")
        return outcome

    monkeypatch.setattr(WebhookInbox, "_message", fails_after_writing)
    inbox_id = inbox.store_body(body_of(("Jalan rusak di Praya", good), ("Lampu mati di Selong", bad),
                                        ("Sampah di Ampenan", later)))
    before = counted(store)
    with commits({"intake": store.database.engine}) as commit_count:
        assert inbox.process(inbox_id) == {"filed": 2, "quarantined": 1}
    assert commit_count == {"intake": 1}                 # items, quarantine and the body: one commit
    after = counted(store)
    assert (after["events"] - before["events"], after["quarantined"] - before["quarantined"]) == (2, 1)
    filed = [e for e in store.events_since(0, 1000) if e["event_type"] == "ComplaintFiled"]
    texts = {e["data"]["text"] for e in filed}
    assert {"Jalan rusak di Praya", "Sampah di Ampenan"} <= texts and "Lampu mati di Selong" not in texts
    # The bad item's own writes were undone with its savepoint; the others' kept.
    assert conversation_of(store, bad) is None
    assert conversation_of(store, good) is not None and conversation_of(store, later) is not None
    assert state_of(store, inbox_id) == "processed"
    with store.database.read() as connection:
        [full] = [item for item in (store.quarantine.get(connection, q["item_id"])
                                    for q in store.quarantine.list(connection, limit=1000))
                  if bad in item["payload"]]
    assert "RuntimeError: a bug after the item was written" in full["reason"]

    # Fixed and replayed: the quarantined item files, once.
    monkeypatch.setattr(WebhookInbox, "_message", original)
    assert inbox.replay(full, "desk:test") == "replayed"
    assert conversation_of(store, bad) is not None
    assert inbox.replay(full, "desk:test") == "replayed"  # the mid is known: nothing filed again
    assert counted(store)["events"] == after["events"] + 1


def test_a_body_is_one_commit_to_store_and_one_to_process(store):
    inbox = WebhookInbox(store, WebhookSettings(frozenset(), 120))
    raw = body_of(("Jalan rusak di Praya", fb.new_psid()), ("Sampah di Ampenan", fb.new_psid()))
    with commits({"intake": store.database.engine}) as commit_count:
        inbox_id = inbox.store_body(raw)
        assert commit_count == {"intake": 1}
        assert inbox.process(inbox_id) == {"filed": 2}
    assert commit_count == {"intake": 2}


def test_a_complaint_costs_two_intake_and_three_notification_commits_end_to_end(tmp_path):
    """Before issue 17 item 2: intake 3 (body, item, body processed), notification 4 (consumer,
    lease, sent + CitizenNotified, lease given back after it was settled)."""
    figures = measure(tmp_path, complaints=3)
    assert figures["per_complaint"]["intake"] == 2
    assert figures["per_complaint"]["notification"] == 3


def test_a_backlog_is_processed_several_bodies_a_commit_in_arrival_order(store, monkeypatch):
    inbox = WebhookInbox(store, WebhookSettings(frozenset(), 120))
    psid, start = fb.new_psid(), fb.now_ms()
    bodies = [json.dumps(fb.page_body(fb.messaging_entry(DEV_PAGE_ID, fb.text_message(
        DEV_PAGE_ID, psid, text, start + offset)))).encode()
        for text, offset in (("Jalan rusak", 0), ("di Praya dekat pasar", 5_000), ("sudah sebulan", 9_000))]
    ids = [inbox.store_body(raw) for raw in bodies]
    before = counted(store)

    def lost_at_the_last(tx, inbox_id, outcomes, _original=WebhookBodies.mark_processed):
        if inbox_id == ids[-1]:
            raise OperationalError("UPDATE webhook_inbox", {}, Exception("database is locked"))
        _original(tx, inbox_id, outcomes)

    with monkeypatch.context() as patched:
        patched.setattr(WebhookBodies, "mark_processed", staticmethod(lost_at_the_last))
        with pytest.raises(OperationalError):
            inbox.process_many(ids)
    assert counted(store) == before and [state_of(store, i) for i in ids] == ["pending"] * 3

    with commits({"intake": store.database.engine}) as commit_count:
        assert inbox.process_many(ids) == [{"filed": 1}, {"amended": 1}, {"amended": 1}]
    assert commit_count == {"intake": 1}
    [filed] = [e for e in store.events_since(before["events"], 1000) if e["event_type"] == "ComplaintFiled"]
    amended = [e for e in store.events_since(before["events"], 1000) if e["event_type"] == "ComplaintAmended"]
    assert amended[-1]["data"]["text"].startswith("Jalan rusak") and "sudah sebulan" in amended[-1]["data"]["text"]
    assert filed["complaint_id"] == amended[-1]["complaint_id"]
    assert inbox.process_many(ids) == [{}, {}, {}]


def test_while_webhooks_are_being_answered_the_drain_commits_one_body_at_a_time_and_gives_way(store):
    """Under a flood the 200s go first: nothing else in the process runs while an inbox
    transaction is open, so one holds a single body while webhooks arrive (a group otherwise)."""
    inbox = WebhookInbox(store, WebhookSettings(frozenset(), 120))
    groups, pauses = [], []
    process_many = inbox.process_many
    inbox.process_many = lambda ids: groups.append(len(ids)) or process_many(ids)   # type: ignore[method-assign]
    for _ in range(5):
        inbox.store_body(body_of(("Jalan rusak di Praya", fb.new_psid())))
    assert inbox.drain(pause=lambda: pauses.append(1), busy=lambda: True) == 5
    assert groups == [1] * 5 and len(pauses) == 5

    groups.clear()
    for _ in range(5):
        inbox.store_body(body_of(("Sampah di Ampenan", fb.new_psid())))
    assert inbox.drain(busy=lambda: False) == 5
    assert groups == [5]


def test_pending_bodies_are_found_by_their_own_index_not_by_walking_every_processed_one(tmp_path):
    """The inbox worker reads "pending, oldest first" before every group: without an index that
    read walked every body of the retention period (90 days)."""
    from sqlalchemy import text
    from services.intake.adapters.inbox_store import _PENDING
    built = store_at(f"sqlite:///{tmp_path / 'intake.db'}")
    built.database.create_all()
    try:
        with built.database.read() as connection:
            pending = _PENDING.statement.params(b_cutoff="2026-12-01T00:00:00.000000Z")   # the Core statement
            sql = str(pending.compile(connection, compile_kwargs={"literal_binds": True}))
            sql = sql.replace("__[POSTCOMPILE_b_limit]", "100")
            plan = " ".join(str(row[-1]) for row in connection.execute(text(f"EXPLAIN QUERY PLAN {sql}")))
    finally:
        built.database.dispose()
    assert "USING INDEX ix_webhook_inbox_pending" in plan, plan


def test_a_group_whose_items_all_apply_takes_no_savepoints(store):
    """A savepoint and its release an item were a sixth of what a body cost: a group is tried
    without them (a failing item sends it round again with them — the bad-item test above)."""
    from sqlalchemy import event as sa_event
    inbox = WebhookInbox(store, WebhookSettings(frozenset(), 120))
    ids = [inbox.store_body(body_of(("Jalan rusak di Praya", fb.new_psid()), ("Sampah di Ampenan", fb.new_psid())))
           for _ in range(4)]
    statements: list[str] = []
    listener = lambda *args: statements.append(args[2])   # noqa: E731 - (conn, cursor, statement, …)
    sa_event.listen(store.database.engine, "before_cursor_execute", listener)
    try:
        assert inbox.process_many(ids) == [{"filed": 2}] * 4
    finally:
        sa_event.remove(store.database.engine, "before_cursor_execute", listener)
    assert not [s for s in statements if "SAVEPOINT" in s.upper()]
    assert inbox.process_many(ids) == [{}] * 4


def test_a_conflict_in_a_group_without_savepoints_runs_the_group_again_with_them(store, monkeypatch):
    """Another writer took a key first (PostgreSQL): the attempt without savepoints is given up
    whole — nothing of it stays — and the group is processed again, an item a savepoint."""
    from sqlalchemy.exc import IntegrityError
    from services.intake.adapters import inbox_store
    inbox = WebhookInbox(store, WebhookSettings(frozenset(), 120))
    ids = [inbox.store_body(body_of(("Jalan rusak di Praya", fb.new_psid()))) for _ in range(3)]
    before = counted(store)
    calls = []
    original = inbox_store.mark_seen

    def conflicting_once(tx, key, complaint_id):
        calls.append(key)
        if len(calls) == 2:   # the second item, on the first attempt
            raise IntegrityError("INSERT INTO seen_items", {}, Exception("duplicate key"))
        original(tx, key, complaint_id)

    monkeypatch.setattr(inbox_store, "mark_seen", conflicting_once)
    assert inbox.process_many(ids) == [{"filed": 1}] * 3
    assert len(calls) == 2 + 3                                 # given up at the second, then all three
    assert counted(store) == {**before, "events": before["events"] + 3}   # one ComplaintFiled each
