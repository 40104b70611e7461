"""``shared.core.db.DriverQuery`` on SQLite and PostgreSQL: the rows a Core SELECT gives through
SQLAlchemy, as tuples straight from the driver — its own literal binds and LIMIT filled in, the
caller's by name — and a clear refusal of what it cannot compile once (an expanding IN)."""
from __future__ import annotations

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, bindparam, create_engine, or_, select

from shared.core.db import DriverQuery

pytestmark = pytest.mark.db

metadata = MetaData()
things = Table("things", metadata, Column("id", Integer, primary_key=True), Column("kind", String(16)),
               Column("name", String(32)))


@pytest.fixture(params=["sqlite", "postgresql"])
def connection(request, tmp_path):
    url = (f"sqlite:///{tmp_path / 'things.db'}" if request.param == "sqlite"
           else request.getfixturevalue("postgres_url"))
    engine = create_engine(url)
    metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(things.insert(), [{"id": n, "kind": ("a", "b", "c")[n % 3], "name": f"n{n}"}
                                             for n in range(1, 31)])
        yield connection
    engine.dispose()


def test_the_rows_are_those_sqlalchemy_gives(connection):
    statement = (select(things.c.id, things.c.name)
                 .where(or_(things.c.kind == "a", things.c.kind == "b"), things.c.id > bindparam("b_above"))
                 .order_by(things.c.id.desc()).limit(5))
    expected = [tuple(row) for row in connection.execute(statement, {"b_above": 10})]
    query = DriverQuery(statement)
    assert query.rows(connection, {"b_above": 10}) == expected
    assert query.rows(connection, {"b_above": 10}) == expected      # the compiled form, again
    assert expected == [(30, "n30"), (28, "n28"), (27, "n27"), (25, "n25"), (24, "n24")]


def test_an_expanding_in_list_is_refused(connection):
    query = DriverQuery(select(things.c.id).where(things.c.kind.in_(bindparam("b_kinds", expanding=True))))
    with pytest.raises(ValueError, match="expanding"):
        query.rows(connection, {"b_kinds": ["a"]})
