"""Shared fixtures: an isolated RabbitMQ virtual host per test session, a fresh PostgreSQL
database, and an override of nameko's ``web_session`` (its own imports ``werkzeug.urls.url_join``,
which werkzeug 3 removed)."""
from __future__ import annotations

import uuid

import pytest
import requests

from tests.support import infra
from tests.support.figures import TRIED, print_tried


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


# --- figures gathered across xdist workers ---------------------------------------------------------

def pytest_sessionfinish(session):
    workeroutput = getattr(session.config, "workeroutput", None)  # set only in an xdist worker
    if workeroutput is not None:
        workeroutput["fuzz_tried"] = dict(TRIED)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    TRIED.update(getattr(node, "workeroutput", {}).get("fuzz_tried", {}))


def pytest_terminal_summary(terminalreporter):
    print_tried(terminalreporter)
