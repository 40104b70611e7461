"""PostgreSQL runs the services' statements prepared (``shared.core.db._prepare_statements``): a
statement is prepared on a connection the first time it runs there and executed by name after,
with the same results, row counts and errors as the text; one the server cannot prepare still runs
as text, and the refusal leaves the caller's transaction intact."""
from __future__ import annotations

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, bindparam, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from shared.core.db import Database


@pytest.fixture
def database(postgres_url):
    metadata = MetaData()
    Table("items", metadata, Column("id", Integer, primary_key=True), Column("name", String(20)))
    database = Database("test", postgres_url, metadata)
    database.create_all()
    yield database
    database.dispose()


def _prepared(connection) -> set[str]:
    return set(connection.execute(text("SELECT statement FROM pg_prepared_statements")).scalars())


def test_a_statement_is_prepared_once_and_then_run_by_name(database):
    items = database.metadata.tables["items"]
    by_id = select(items.c.name).where(items.c.id == bindparam("wanted"))
    with database.transaction() as tx:
        tx.execute(insert(items), [{"id": n, "name": f"n{n}"} for n in range(1, 4)])
        assert tx.execute(by_id, {"wanted": 2}).scalar() == "n2"
        assert tx.execute(by_id, {"wanted": 3}).scalar() == "n3"
        assert tx.execute(by_id, {"wanted": 9}).first() is None
        prepared = _prepared(tx.connection)
        assert sum("SELECT items.name" in statement for statement in prepared) == 1
        renamed = tx.execute(update(items).where(items.c.id <= bindparam("upto")).values(name="x"), {"upto": 2})
        assert renamed.rowcount == 2
        returned = tx.execute(insert(items).values(id=7, name="seven").returning(items.c.id)).scalar()
        assert returned == 7
    with database.read() as connection:
        assert connection.execute(select(items.c.name).order_by(items.c.id)).scalars().all() == \
            ["x", "x", "n3", "seven"]


def test_errors_are_the_statement_s_own(database):
    items = database.metadata.tables["items"]
    with database.transaction() as tx:
        tx.execute(insert(items).values(id=1, name="one"))
    for _ in range(2):   # the second time, prepared
        with pytest.raises(IntegrityError):
            with database.transaction() as tx:
                tx.execute(insert(items).values(id=1, name="again"))


def test_a_statement_the_server_cannot_prepare_runs_as_text_in_the_same_transaction(database):
    items = database.metadata.tables["items"]
    with database.transaction() as tx:
        tx.execute(insert(items).values(id=1, name="one"))
        # Both parameters of "+" are of unknown type: PREPARE refuses it, the text runs.
        assert tx.execute(text("SELECT :a + :b"), {"a": 2, "b": 3}).scalar() == 5
        assert tx.execute(select(items.c.name)).scalar() == "one"   # the transaction goes on
    with database.read() as connection:
        assert connection.execute(select(items.c.name)).scalars().all() == ["one"]


def test_a_new_session_after_a_lost_one_prepares_again(database, postgres_url):
    """Prepared statements go with their session: once the server dropped it, the pool's next
    connection prepares its statements again instead of running names it never prepared."""
    from sqlalchemy import create_engine
    items = database.metadata.tables["items"]
    count = select(items.c.id).where(items.c.id > bindparam("above"))
    with database.transaction() as tx:
        tx.execute(insert(items).values(id=1, name="one"))
        assert tx.execute(count, {"above": 0}).scalars().all() == [1]
        pid = tx.execute(text("SELECT pg_backend_pid()")).scalar()
    admin = create_engine(postgres_url)
    try:
        with admin.connect() as connection:
            connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    finally:
        admin.dispose()
    for attempt in range(3):
        try:
            with database.transaction() as tx:
                assert tx.execute(count, {"above": 0}).scalars().all() == [1]
                assert sum("items.id" in statement for statement in _prepared(tx.connection)) == 1
            break
        except Exception:   # the dropped session fails once; the pool then opens fresh ones
            assert attempt == 0


def test_a_statement_the_server_cannot_parse_fails_with_its_own_error(database):
    """The savepoint around a PREPARE is its own statement: sent in one string with it, a
    statement PostgreSQL cannot parse left no savepoint to roll back to, and the caller got
    "savepoint ntbcare_prepare does not exist" instead of the statement's syntax error."""
    from sqlalchemy.exc import ProgrammingError
    with pytest.raises(ProgrammingError) as raised:
        with database.transaction() as tx:
            tx.connection.exec_driver_sql("SELECT name FROM (SELECT name FROM items) ORDER BY name FROM")
    assert raised.value.orig.pgcode == "42601", raised.value.orig.pgcode   # syntax_error
