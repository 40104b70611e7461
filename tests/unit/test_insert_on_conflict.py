"""``shared.core.db.insert_on_conflict`` — the upsert reporting's projection and notification's
comment record share — on a real SQLite database: nothing twice, an update touches only the
columns named, and the statement is cacheable (SQLAlchemy's dialect ``on_conflict_…`` constructs
are not, so they were compiled again on every call)."""
from __future__ import annotations

import pytest
from sqlalchemy import Boolean, Column, MetaData, String, Table, create_engine, false, select

from shared.core.db import Transaction, insert_on_conflict
from services.notification.adapters import tables as notification_tables
from services.notification.adapters.records import _upsert_comment, comment_state, remember_comment

pytestmark = pytest.mark.unit

metadata = MetaData()
things = Table("things", metadata, Column("key", String, primary_key=True), Column("name", String),
               Column("flag", Boolean, nullable=False, server_default=false()), Column("note", String))


@pytest.fixture
def engine():
    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    yield engine
    engine.dispose()


def rows(connection):
    return [tuple(row) for row in connection.execute(select(things).order_by(things.c.key))]


def test_do_nothing_keeps_the_first_row(engine):
    statement = insert_on_conflict(things)
    with engine.begin() as connection:
        connection.execute(statement, {"key": "a", "name": "first", "flag": True, "note": None})
        connection.execute(statement, {"key": "a", "name": "second", "flag": False, "note": "x"})
        assert rows(connection) == [("a", "first", True, None)]


def test_an_update_of_some_columns_leaves_the_others_alone(engine):
    with engine.begin() as connection:
        connection.execute(insert_on_conflict(things, update_on="key"),
                           {"key": "a", "name": "first", "flag": True, "note": "kept"})
        only_name = insert_on_conflict(things, update_on="key", columns=("key", "name"))
        connection.execute(only_name, {"key": "a", "name": "renamed"})
        connection.execute(only_name, {"key": "b", "name": "new"})   # an insert: server defaults elsewhere
        assert rows(connection) == [("a", "renamed", True, "kept"), ("b", "new", False, None)]


def test_the_statements_are_compiled_once():
    assert insert_on_conflict(things, update_on="key")._generate_cache_key() is not None
    assert _upsert_comment(("removed_at",))._generate_cache_key() is not None
    assert _upsert_comment(("removed_at",)) is _upsert_comment(("removed_at",))


def test_a_comment_s_facts_add_up(engine):
    notification_tables.comment_states.create(engine)
    with engine.begin() as connection:
        tx = Transaction(connection, database=None)   # remember_comment only executes on it
        remember_comment(tx, "1_2", private_reply_closed="private_reply_used")
        remember_comment(tx, "1_2", removed_at="2026-12-01T00:00:00Z")
        state = comment_state(connection, "1_2")
    assert state is not None and state.private_reply_closed == "private_reply_used" and state.removed
