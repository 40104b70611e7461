"""Alembic migrations of every service's database, on SQLite and PostgreSQL: an empty database
upgraded to head has exactly the tables the code declares (so a model change without a revision
fails here), and a service refuses to start on an unmigrated database with a plain message."""
from __future__ import annotations

import subprocess
import sys

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from shared.core import migrations
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


@pytest.mark.parametrize("service", SERVICES)
def test_upgrade_to_head_matches_the_code(service, database_url):
    migrations.upgrade(service, database_url)
    engine = make_engine(database_url)
    try:
        assert migrations.current(engine) == migrations.head(service)
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": False,
                                                                    "include_object": include_object})
            differences = compare_metadata(context, migrations.metadata_for(service))
        assert differences == [], f"{service}: models differ from migrations; run python -m shared.core.migrations revision {service} '…'"
        migrations.upgrade(service, database_url)  # idempotent
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
