"""Shared fixtures: an isolated RabbitMQ virtual host per test session, a fresh PostgreSQL
database, and an override of nameko's ``web_session`` (its own imports ``werkzeug.urls.url_join``,
which werkzeug 3 removed)."""
from __future__ import annotations

import json
import os
import uuid
from collections import defaultdict

import pytest
import requests

from tests.support import infra
from tests.support.figures import print_tried


@pytest.fixture(scope="module")
def rabbit_vhost():
    """A RabbitMQ vhost per test module, so durable queues left by one module's services (or by
    another run) never feed another's; deleted after."""
    name = f"ntbcare-test-{uuid.uuid4().hex[:8]}"
    infra.create_vhost(name)
    yield name
    infra.delete_vhost(name)


@pytest.fixture(scope="module")
def amqp_uri(rabbit_vhost):
    return infra.amqp_uri(rabbit_vhost)


@pytest.fixture
def postgres_url():
    url = infra.create_postgres_database()
    yield url
    infra.drop_postgres_database(url)


@pytest.fixture
def web_session():
    session = requests.Session()
    yield session
    session.close()


# --- the test pyramid ------------------------------------------------------------------------------
# A test's tier is its folder (tests/<tier>/…); `integration` holds the database contract tests and
# is the `db` tier. A test of any folder that asks for PostgreSQL is also `db`, so the fast tier
# (`make test-fast`: unit and interface, `-m "(unit or interface) and not db"`) needs no server.
TIERS = {"unit": "unit", "interface": "interface", "integration": "db", "e2e": "e2e",
         "faults": "faults", "fuzz": "fuzz", "security": "security", "browser": "browser"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        parts = item.path.relative_to(config.rootpath).parts
        tier = TIERS.get(parts[1]) if len(parts) > 2 and parts[0] == "tests" else None
        if tier:
            item.add_marker(getattr(pytest.mark, tier))
        if "postgres_url" in getattr(item, "fixturenames", ()) and tier != "db":
            item.add_marker(pytest.mark.db)



def pytest_terminal_summary(terminalreporter):
    print_tried(terminalreporter)


# --- per-file times, for dealing files to parallel shards (scripts/run_tests.py) -------------------
FILE_SECONDS: defaultdict = defaultdict(float)


def pytest_runtest_logreport(report):
    FILE_SECONDS[report.nodeid.split("::", 1)[0]] += report.duration


def pytest_sessionfinish(session):
    out = os.environ.get("NTBCARE_TEST_TIMES_OUT")
    if out and FILE_SECONDS:
        with open(out, "w", encoding="utf-8") as handle:
            json.dump(dict(FILE_SECONDS), handle)
