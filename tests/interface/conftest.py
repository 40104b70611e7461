"""Fixtures of the interface tier (tests/interface): a clean environment per test, the record of
which entrypoints a test drove (checked against its ``@covers`` marks), a migrated SQLite file per
test, and the broker probe of ``GET /health`` replaced (no broker is ever contacted)."""
from __future__ import annotations

import os
import shutil

import pytest

from shared.glue import health
from tests.interface.harness import BrokerAnswers, BrokerRefuses

# Settings a developer's shell (or another tier) may have exported; each test sets what it needs.
_PREFIXES = ("FACEBOOK_", "INTAKE_", "OPEN311_", "ROUTING_", "REPORTING_")


def pytest_configure(config):
    config.addinivalue_line("markers", "covers(*entrypoints): the service entrypoints an interface "
                                       "test drives (checked after the test)")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in list(os.environ):
        if name.startswith(_PREFIXES):
            monkeypatch.delenv(name)
    monkeypatch.setenv("NTBCARE_ENV", "production")


@pytest.fixture
def called() -> set[str]:
    """Names of the entrypoints the test called on an instrumented worker."""
    return set()


@pytest.fixture(autouse=True)
def declared_entrypoints_were_driven(request, called):
    yield
    declared = {name for mark in request.node.iter_markers("covers") for name in mark.args}
    not_driven = sorted(declared - called)
    assert not not_driven, f"{request.node.name} declares @covers{tuple(not_driven)} but never calls them"


@pytest.fixture(scope="session")
def _migrated_templates(tmp_path_factory) -> dict:
    return {"folder": tmp_path_factory.mktemp("migrated")}


@pytest.fixture
def migrated_sqlite(tmp_path, _migrated_templates):
    """``migrated_sqlite("routing", build_store)`` → the URL of a fresh SQLite file at the
    service's newest revisions: migrated once per session with the service's own ``build_store``
    and ``prepare()``, then copied (migrating each test's file anew would cost more than the test)."""
    def url(service: str, build_store) -> str:
        template = _migrated_templates.get(service)
        if template is None:
            template = _migrated_templates["folder"] / f"{service}.db"
            store = build_store(f"sqlite:///{template}")
            store.prepare()
            store.database.dispose()            # the last connection folds the WAL into the file
            assert not template.with_name(template.name + "-wal").exists()
            _migrated_templates[service] = template
        target = tmp_path / f"{service}-{len(list(tmp_path.glob(f'{service}-*.db')))}.db"
        shutil.copyfile(template, target)
        return f"sqlite:///{target}"

    return url


@pytest.fixture
def broker_up(monkeypatch):
    monkeypatch.setattr(health, "Connection", BrokerAnswers)


@pytest.fixture
def broker_down(monkeypatch):
    monkeypatch.setattr(health, "Connection", BrokerRefuses)
