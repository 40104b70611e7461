"""The fault suite's platform: each test module (one per fault) gets the whole platform — intake,
routing, notification and reporting as separate processes, the Graph API sandbox, its own
RabbitMQ vhost and data directory — with short intervals, so recovery is measured in seconds.
A module may add settings in ``PLATFORM_ENV``, and run on PostgreSQL as well as SQLite by
parametrising ``store`` (``STORES`` of ``scenario``): a database per service, given to the
services as ``<SERVICE>_DATABASE_URL``, and a vhost per store. The figures of every scenario are
summarised at the end of the run."""
from __future__ import annotations

import uuid

import pytest

from tests.faults.scenario import FAULT_ENV, FIGURES
from tests.support import infra
from tests.support.platform import SERVICES, Platform


@pytest.fixture(scope="module")
def store(request):
    """``sqlite`` unless the module parametrises it (``STORES``)."""
    return getattr(request, "param", "sqlite")


@pytest.fixture(scope="module")
def rabbit_vhost(store):
    """A vhost per module and store: the PostgreSQL run of a module starts on empty queues."""
    name = f"ntbcare-test-{store}-{uuid.uuid4().hex[:8]}"
    infra.create_vhost(name)
    yield name
    infra.delete_vhost(name)


@pytest.fixture(scope="module")
def service_databases(store):
    """On ``postgresql``: a database per service on the machine's PostgreSQL (a module may
    override this fixture with databases of its own server)."""
    if store != "postgresql":
        yield {}
        return
    urls = {service: infra.create_postgres_database() for service in SERVICES}
    yield urls
    for url in urls.values():
        infra.drop_postgres_database(url)


@pytest.fixture(scope="module")
def platform(amqp_uri, service_databases, tmp_path_factory, request):
    env = dict(FAULT_ENV)
    env.update({f"{service.upper()}_DATABASE_URL": url for service, url in service_databases.items()})
    env.update(getattr(request.module, "PLATFORM_ENV", {}))
    running = Platform(amqp_uri, tmp_path_factory.mktemp("faults"), extra_env=env).start_all()
    yield running
    running.stop_all()


def pytest_terminal_summary(terminalreporter):
    if not FIGURES:
        return
    terminalreporter.section("fault suite: figures")
    columns = ("sent", "acknowledged", "lost", "duplicates", "refused_attempts", "recovery_seconds")
    terminalreporter.write_line(f"{'scenario':<40}" + "".join(f"{c:>18}" for c in columns))
    for name, figures in sorted(FIGURES.items()):
        terminalreporter.write_line(f"{name:<40}" + "".join(f"{figures.get(c, '-')!s:>18}" for c in columns))
