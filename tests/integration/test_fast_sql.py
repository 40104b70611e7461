"""``shared.core.fast_sql`` on SQLite and PostgreSQL: a wrapped Core statement gives, run straight
on the driver, what SQLAlchemy gives for it — the same rows with the same Python types (a SQLite
``Boolean`` as ``True``/``False``), the same row counts, the same scalar defaults on INSERT, the
same exception classes, in the caller's transaction — and what it cannot run that way (an
expanding IN, a callable default, several parameter sets) goes through SQLAlchemy unchanged. On
PostgreSQL it is prepared once per connection, as the engine's hook prepares SQLAlchemy's own."""
from __future__ import annotations

import pytest
from sqlalchemy import (Boolean, Column, Integer, MetaData, String, Table, Text, bindparam, delete, event, func,
                        select, text, update)
from sqlalchemy.exc import IntegrityError, MultipleResultsFound, NoResultFound

from shared.core.db import Database
from shared.core.fast_sql import FastResult, FastStatement, fast

pytestmark = pytest.mark.db

metadata = MetaData()
things = Table("things", metadata,
               Column("id", Integer, primary_key=True),
               Column("kind", String(16), nullable=False, default="plain"),
               Column("done", Boolean, nullable=False, default=False),
               Column("note", Text, nullable=True),
               Column("stamp", String(40), nullable=True, default=lambda: "made-by-python"))

BY_ID = select(things).where(things.c.id == bindparam("b_id"))
BY_KIND = select(things.c.id, things.c.done).where(things.c.kind == bindparam("b_kind"), things.c.done.is_(False)) \
    .order_by(things.c.id).limit(bindparam("b_limit"))
COUNT = select(func.count()).select_from(things).where(things.c.kind == bindparam("b_kind"))
MARK = update(things).where(things.c.id == bindparam("b_id"), things.c.done.is_(False))
INSERT = things.insert()
FORGET = delete(things).where(things.c.id > bindparam("b_above"))
IN_LIST = select(things.c.id).where(things.c.id.in_(bindparam("b_ids", expanding=True))).order_by(things.c.id)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path):
    url = (f"sqlite:///{tmp_path / 'things.db'}" if request.param == "sqlite"
           else request.getfixturevalue("postgres_url"))
    database = Database("things", url, metadata)
    database.create_all()
    with database.transaction() as tx:
        tx.execute(INSERT, [{"id": n, "kind": ("a", "b")[n % 2], "done": n % 3 == 0, "note": f"n{n}",
                             "stamp": "seeded"} for n in range(1, 21)])
    yield database
    database.dispose()


def both(connection, statement, parameters):
    """What SQLAlchemy gives, and what the wrapped statement gives, for the same call."""
    return connection.execute(statement, parameters), connection.execute(fast(statement), parameters)


def test_rows_and_their_types_are_sqlalchemy_s(database):
    with database.read() as connection:
        core, quick = both(connection, BY_ID, {"b_id": 3})
        assert isinstance(quick, FastResult)
        core_row, quick_row = core.mappings().one(), quick.mappings().one()
        assert quick_row == dict(core_row) and quick_row["done"] is True
        core, quick = both(connection, BY_KIND, {"b_kind": "a", "b_limit": 4})
        expected = [tuple(row) for row in core]
        rows = quick.all()
        assert [tuple(row) for row in rows] == expected == [(2, False), (4, False), (8, False), (10, False)]
        assert rows[0].id == 2 and rows[0]._mapping == {"id": 2, "done": False} and rows[0][1] is False
        assert connection.execute(fast(COUNT), {"b_kind": "b"}).scalar() == 10
        assert connection.execute(fast(BY_ID), {"b_id": 99}).first() is None
        assert connection.execute(fast(BY_KIND), {"b_kind": "b", "b_limit": 3}).scalars().all() == [1, 5, 7]
        with pytest.raises(NoResultFound):
            connection.execute(fast(BY_ID), {"b_id": 99}).one()
        with pytest.raises(MultipleResultsFound):
            connection.execute(fast(BY_KIND), {"b_kind": "a", "b_limit": 5}).one()


def test_writes_count_rows_fill_scalar_defaults_and_commit_with_the_transaction(database):
    mark = fast(MARK)
    insert = fast(INSERT)
    with database.transaction() as tx:
        assert tx.execute(mark, {"b_id": 4, "done": True, "note": "checked"}).rowcount == 1
        assert tx.execute(mark, {"b_id": 4, "done": True}).rowcount == 0       # done already
        assert tx.execute(mark, {"b_id": 5, "note": None}).rowcount == 1      # another set of names
        tx.execute(insert, {"id": 50, "note": "fifty", "stamp": "given"})    # kind, done: scalar defaults
        tx.execute(insert, {"id": 51})                                        # stamp: a callable default
        assert tx.execute(fast(FORGET), {"b_above": 50}).rowcount == 1
    with database.read() as connection:
        rows = {row["id"]: row for row in connection.execute(select(things)).mappings()}
    assert (rows[4]["done"], rows[4]["note"]) == (True, "checked")
    assert (rows[5]["done"], rows[5]["note"]) == (False, None)
    assert (rows[50]["kind"], rows[50]["done"], rows[50]["stamp"]) == ("plain", False, "given")
    assert 51 not in rows
    with database.transaction() as tx:
        tx.execute(insert, {"id": 52})
    with database.read() as connection:
        assert connection.execute(fast(BY_ID), {"b_id": 52}).mappings().one()["stamp"] == "made-by-python"


def test_a_rolled_back_transaction_takes_the_fast_writes_with_it(database):
    with pytest.raises(RuntimeError):
        with database.transaction() as tx:
            tx.execute(fast(MARK), {"b_id": 1, "done": True})
            raise RuntimeError("undo")
    with database.read() as connection:
        assert connection.execute(fast(BY_ID), {"b_id": 1}).mappings().one()["done"] is False


def test_errors_are_sqlalchemy_s_classes(database):
    insert = fast(INSERT)
    for _ in range(2):   # the second time from the compiled form (and, on PostgreSQL, prepared)
        with pytest.raises(IntegrityError):
            with database.transaction() as tx:
                tx.execute(insert, {"id": 1, "kind": "dup"})


def test_what_it_cannot_run_on_the_driver_goes_through_sqlalchemy(database):
    through_sqlalchemy: list = []     # SQLAlchemy's execution of a Core statement announces it here
    event.listen(database.engine, "before_execute",
                 lambda _c, statement, *_rest: through_sqlalchemy.append(statement))
    statements = through_sqlalchemy
    with database.transaction() as tx:
        assert tx.execute(fast(IN_LIST), {"b_ids": [3, 1, 9]}).scalars().all() == [1, 3, 9]
        tx.execute(fast(INSERT), [{"id": 60}, {"id": 61}])
        through_core = len(statements)
        tx.execute(fast(BY_ID), {"b_id": 60})
        assert len(statements) == through_core          # this one did not pass through SQLAlchemy
    assert through_core >= 2


def test_postgresql_prepares_each_statement_once_per_connection(database):
    if database.dialect != "postgresql":
        pytest.skip("PostgreSQL only")
    by_id = fast(BY_ID)
    with database.read() as connection:
        for wanted in (1, 2, 3):
            assert connection.execute(by_id, {"b_id": wanted}).mappings().one()["id"] == wanted
        prepared = connection.execute(text("SELECT statement FROM pg_prepared_statements")).scalars().all()
    assert sum("FROM things" in statement and "things.id =" in statement for statement in prepared) == 1


def test_what_watches_the_engine_s_statements_sees_the_fast_ones_too(database):
    seen: list[str] = []
    event.listen(database.engine, "before_cursor_execute", lambda _c, _cur, statement, *_rest: seen.append(statement))
    with database.read() as connection:
        connection.execute(fast(BY_ID), {"b_id": 1})
    assert len(seen) == 1 and ("things.id = ?" in seen[0] or seen[0].startswith("EXECUTE "))


def test_a_wrapped_statement_is_a_fast_statement():
    assert isinstance(fast(BY_ID), FastStatement) and fast(BY_ID).statement is BY_ID


def test_a_text_write_runs_on_the_driver_with_its_typed_parameters(database):
    from shared.core.db import insert_on_conflict
    upsert = fast(insert_on_conflict(things, update_on="id"))
    statements: list = []
    event.listen(database.engine, "before_execute", lambda _c, statement, *_rest: statements.append(statement))
    row = {"id": 2, "kind": "z", "done": True, "note": None, "stamp": "again"}
    with database.transaction() as tx:
        tx.execute(upsert, row)
        tx.execute(upsert, dict(row, id=70, done=False))
    assert statements == []
    with database.read() as connection:
        assert connection.execute(fast(BY_ID), {"b_id": 2}).mappings().one() == row
        assert connection.execute(fast(BY_ID), {"b_id": 70}).mappings().one()["done"] is False
