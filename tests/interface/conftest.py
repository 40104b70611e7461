"""Fixtures of the interface tier (tests/interface): a clean environment per test, the record of
which entrypoints a test drove (checked against its ``@covers`` marks), and the broker probe of
``GET /health`` replaced (no broker is ever contacted). ``migrated_sqlite`` (a migrated SQLite
file per test) is in tests/conftest.py: the unit tier uses it too."""
from __future__ import annotations

import os

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


@pytest.fixture
def broker_up(monkeypatch):
    monkeypatch.setattr(health, "Connection", BrokerAnswers)


@pytest.fixture
def broker_down(monkeypatch):
    monkeypatch.setattr(health, "Connection", BrokerRefuses)
