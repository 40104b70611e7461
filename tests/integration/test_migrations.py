"""Alembic migrations of every service's database, on SQLite and PostgreSQL: an empty database
upgraded to its heads (the service's branch and the core branches it depends on) has exactly the
tables the code declares (so a model change without a revision fails here), a database made by the
history from before the core branches upgrades cleanly, and a service refuses to start on an
unmigrated database with a plain message."""
from __future__ import annotations

import subprocess
import sys

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from shared.core import config, migrations
from shared.core.alembic_env import include_object
from shared.core.db import make_engine
from tests.support import infra
from tests.support.platform import ROOT

SERVICES = ("intake", "routing", "notification", "reporting")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrated.db'}"
    else:
        url = infra.create_postgres_database()
        yield url
        infra.drop_postgres_database(url)


@pytest.mark.parametrize("service", config.DATABASE_SERVICES)
def test_upgrade_to_head_matches_the_code(service, database_url):
    migrations.upgrade(service, database_url)
    engine = make_engine(database_url)
    try:
        assert migrations.missing(service, migrations.current(engine)) == ()
        event_store = {"events", "outbox"} & set(inspect(engine).get_table_names())
        assert event_store == ({"events", "outbox"} if service in config.EMITTING_SERVICES else set())
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": False,
                                                                    "include_object": include_object})
            differences = compare_metadata(context, migrations.metadata_for(service))
        assert differences == [], (f"{service}: models differ from migrations; "
                                   f"run python -m shared.core.migrations revision {service} '…' "
                                   f"(or, for a core table, revision consumer|event_store '…')")
        migrations.upgrade(service, database_url)  # idempotent
    finally:
        engine.dispose()


# Before the core tables had branches of their own, each service's initial revision created them,
# and the version table of a database at that history's head records just the service's revision.
CORE_BASES = {"ff337c0ab861", "73cfae00a11a"}   # the core tables the old history made, as they were
OLD_HEADS = {"intake": "cbef09724bdd", "routing": "7d1e2f3a4b5c", "notification": "8b2c4d6e1f3a",
             "reporting": "9b4e6c2d1f70"}


def _differences(engine, service):
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": False,
                                                                "include_object": include_object})
        return compare_metadata(context, migrations.metadata_for(service))


def _core_rows(service):
    """A row in every core table the service has, to show an upgrade keeps them."""
    at = "2026-11-30T08:00:00.000000Z"
    rows = {
        "quarantine": {"item_id": 1, "kind": "event", "source": "intake", "position": 7, "reason": "old",
                       "payload": "{}", "quarantined_at": at, "state": "quarantined", "attempts": 1,
                       "replayed_by": None, "replayed_at": None},
        "consumer_checkpoints": {"source": "intake", "position": 42, "updated_at": at},
        "processed_events": {"source": "intake", "position": 42, "event_id": "0" * 36, "outcome": "handled"},
        "handler_failures": {"source": "intake", "position": 43, "failures": 2, "last_error": "boom"},
    }
    if service in config.EMITTING_SERVICES:
        rows["events"] = {"position": 1, "event_id": "1" * 36, "event_type": "x", "schema_version": 1,
                          "source": service, "complaint_id": "2" * 36, "version": 1, "occurred_at": at,
                          "data": "{}"}
        rows["outbox"] = {"position": 1}
    return rows


def _assert_rows_kept(engine, metadata, rows):
    with engine.connect() as connection:
        for name, row in rows.items():
            assert [dict(found) for found in connection.execute(
                metadata.tables[name].select()).mappings()] == [row], name


@pytest.mark.parametrize("service", SERVICES)
def test_a_database_made_by_the_old_history_upgrades_cleanly(service, database_url):
    """The old history's head, with the core tables (and rows in them) its initial revision made:
    the core revisions count as applied (the service's initial revision depends on them), so the
    database is current as it is, and upgrading it changes nothing and keeps every row."""
    engine = make_engine(database_url)
    metadata = migrations.metadata_for(service)
    try:
        migrations.upgrade(service, database_url, OLD_HEADS[service])  # the same tables, column for column
        rows = _core_rows(service)
        with engine.begin() as connection:
            connection.execute(text("DELETE FROM alembic_version"))  # exactly what the old history recorded
            connection.execute(text("INSERT INTO alembic_version (version_num) VALUES (:head)"),
                               {"head": OLD_HEADS[service]})
            for name, row in rows.items():
                connection.execute(metadata.tables[name].insert().values(**row))
        if OLD_HEADS[service] == migrations.head(service):
            # Starts without an upgrade — but for revisions the core branches gained since their
            # bases (e.g. the consumer branch's rate_budgets), which the upgrade below applies.
            missing = set(migrations.missing(service, migrations.current(engine)))
            assert missing <= set(migrations.heads(service)[1:]) - CORE_BASES, missing
        migrations.upgrade(service, database_url)
        assert migrations.missing(service, migrations.current(engine)) == ()
        assert _differences(engine, service) == []
        _assert_rows_kept(engine, metadata, rows)
    finally:
        engine.dispose()


def test_the_core_revisions_adopt_tables_that_exist(database_url):
    """A database that has some core tables but no record of the core revisions (e.g. made by the
    old DDL): the core revisions keep those tables and their rows and create only the missing ones."""
    service = "routing"
    engine = make_engine(database_url)
    metadata = migrations.metadata_for(service)
    core = migrations.branch_tables("consumer") | migrations.branch_tables("event_store")
    absent = {"handler_failures", "outbox"}
    try:
        metadata.create_all(engine, tables=[metadata.tables[name] for name in sorted(core - absent)])
        rows = {name: row for name, row in _core_rows(service).items() if name not in absent}
        with engine.begin() as connection:
            for name, row in rows.items():
                connection.execute(metadata.tables[name].insert().values(**row))
        migrations.upgrade(service, database_url, "consumer@head")
        migrations.upgrade(service, database_url, "event_store@head")
        assert set(inspect(engine).get_table_names()) == core | {"alembic_version"}
        _assert_rows_kept(engine, metadata, rows)
        migrations.upgrade(service, database_url)  # then the service's own tables
        assert migrations.missing(service, migrations.current(engine)) == ()
        assert _differences(engine, service) == []
        _assert_rows_kept(engine, metadata, rows)
    finally:
        engine.dispose()


def test_service_refuses_an_unmigrated_database(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "NTBCARE_DATA_DIR": str(tmp_path), "NTBCARE_ENV": "development",
           "NTBCARE_AUTO_MIGRATE": "0", "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "shared.runner", "routing"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 3
    assert "routing database is at revision none" in result.stderr and "make migrate" in result.stderr
    upgraded = subprocess.run([sys.executable, "-m", "shared.core.migrations", "upgrade", "routing"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"routing: at {migrations.head('routing')}" in upgraded.stdout
    at = subprocess.run([sys.executable, "-m", "shared.core.migrations", "current", "routing"], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=120)
    assert at.returncode == 0, at.stderr
    assert at.stdout.strip() == (f"routing: at {migrations.head('routing')} (routing), "
                                 f"{migrations.heads('routing')[1]} (consumer), "
                                 f"{migrations.heads('routing')[2]} (event_store): up to date")
