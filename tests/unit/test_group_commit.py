"""``shared.core.group_commit``: units of work from concurrent green threads share one
transaction on a real SQLite file, and each caller still sees its own transaction's promises —
its result after the commit, its own error, nothing committed for a group that wrote nothing."""
from __future__ import annotations

import eventlet
import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, event, select, text

from shared.core.db import Database
from shared.core.group_commit import GroupCommit, group_commit_for

pytestmark = pytest.mark.unit

metadata = MetaData()
notes = Table("notes", metadata, Column("id", Integer, primary_key=True), Column("name", String, unique=True))


@pytest.fixture
def database(tmp_path):
    database = Database("test", f"sqlite:///{tmp_path / 'group.db'}", metadata)
    database.create_all()
    commits = []
    event.listen(database.engine, "commit", lambda _connection: commits.append(1))
    database.commits = commits
    yield database
    database.dispose()


def names(database):
    with database.read() as connection:
        return sorted(connection.execute(select(notes.c.name)).scalars())


def insert(name):
    def unit(tx):
        return int(tx.execute(notes.insert(), {"name": name}).inserted_primary_key[0])
    return unit


def run_together(writes, units):
    """Each unit from its own green thread, all started before any runs (as concurrent requests
    or sender lanes are); returns each thread's result or exception, in order."""
    def one(unit):
        try:
            return writes.run(unit)
        except Exception as error:
            return error
    threads = [eventlet.spawn(one, unit) for unit in units]
    return [thread.wait() for thread in threads]


def test_units_submitted_together_share_one_commit_and_each_gets_its_result(database):
    writes = GroupCommit(database)
    results = run_together(writes, [insert(f"n{i}") for i in range(10)])
    assert len(database.commits) == 1
    assert sorted(results) == list(range(1, 11))      # each caller its own row's id
    assert names(database) == sorted(f"n{i}" for i in range(10))
    assert (writes.groups, writes.units) == (1, 10)


def test_a_lone_unit_is_written_at_once_and_durable_when_run_returns(database):
    writes = GroupCommit(database)
    assert writes.run(insert("alone")) == 1
    with database.engine.connect() as other:        # another connection sees it: committed
        assert other.execute(text("SELECT count(*) FROM notes")).scalar() == 1
    assert writes.groups == 1


def test_a_failing_unit_gets_its_own_error_and_the_others_are_committed(database):
    writes = GroupCommit(database)
    writes.run(insert("taken"))

    def boom(tx):
        raise ValueError("this unit only")
    results = run_together(writes, [insert("a"), insert("taken"), boom, insert("b")])
    assert isinstance(results[1], Exception) and "UNIQUE" in str(results[1])
    assert isinstance(results[2], ValueError)
    assert isinstance(results[0], int) and isinstance(results[3], int)
    assert names(database) == ["a", "b", "taken"]


def test_a_group_in_which_every_unit_discarded_commits_nothing(database):
    writes = GroupCommit(database)

    def look(tx):
        tx.execute(select(notes.c.id)).all()
        tx.discard()
        return "nothing to do"
    before = len(database.commits)
    assert run_together(writes, [look, look, look]) == ["nothing to do"] * 3
    assert len(database.commits) == before


def test_a_unit_that_discards_does_not_undo_the_others_writes(database):
    writes = GroupCommit(database)

    def look(tx):
        tx.discard()
    run_together(writes, [insert("kept"), look, insert("also kept")])
    assert names(database) == ["also kept", "kept"]


def test_groups_are_bounded_and_every_unit_is_written(database):
    writes = GroupCommit(database, max_units=3)
    results = run_together(writes, [insert(f"n{i:02}") for i in range(10)])
    assert sorted(results) == list(range(1, 11))
    assert writes.units == 10 and writes.groups >= 4


def test_units_arriving_while_a_group_is_written_go_in_a_later_group(database):
    writes = GroupCommit(database)
    late = []

    def first(tx):
        # Another green thread asks while this group is open (it cannot join it: the group was
        # taken); it must still be written, by this leader or by the next one.
        late.append(eventlet.spawn(writes.run, insert("late")))
        return tx.execute(notes.insert(), {"name": "first"}).rowcount
    assert writes.run(first) == 1
    assert late[0].wait() == 2
    assert names(database) == ["first", "late"]


def test_one_group_commit_per_database():
    database = Database("x", "sqlite://", metadata)
    assert group_commit_for(database) is group_commit_for(database)
    assert group_commit_for(Database("y", "sqlite://", metadata)) is not group_commit_for(database)
