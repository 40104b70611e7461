"""Shared fixtures: an isolated RabbitMQ virtual host per test session, a fresh PostgreSQL
database, a migrated SQLite file (migrated once per session, copied per test), and an override of
nameko's ``web_session`` (its own imports ``werkzeug.urls.url_join``, which werkzeug 3 removed).
Also: each distinct YAML text is parsed once per session (see below)."""
from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import shutil
import uuid
from collections import defaultdict

import pytest
import requests
import yaml

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


# --- migrated SQLite files -----------------------------------------------------------------------
@pytest.fixture(scope="session")
def _migrated_templates(tmp_path_factory) -> dict:
    return {"folder": tmp_path_factory.mktemp("migrated")}


@pytest.fixture
def migrated_sqlite(tmp_path, _migrated_templates):
    """``migrated_sqlite("routing", build_store)`` → the URL of a fresh SQLite file at the
    service's newest revisions: migrated once per session with the service's own ``build_store``
    and ``prepare()``, then copied (migrating each test's file anew would cost more than the test).
    The unit and interface tiers use it."""
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


# --- YAML parsed once per text -------------------------------------------------------------------
# Every test that builds a routing workflow, a composer or a classifier reads the shipped data files
# (directory, rules, holidays, templates, keywords), and PyYAML's pure-Python parser spends 50-200 ms
# on each, each time: a third of the fast tier. The same text is parsed once per session here, and
# every load still gets its own equal object (unpickled from the first parse), so what a test sees
# and asserts is unchanged. A text that fails to parse is never kept: it raises every time, with the
# stream's name, as the real ``yaml.safe_load`` does.
_PARSED: dict[bytes, bytes] = {}
_safe_load = yaml.safe_load


def _safe_load_once(stream):
    if hasattr(stream, "read"):
        text = stream.read()
        source = io.BytesIO(text) if isinstance(text, bytes) else io.StringIO(text)
        if hasattr(stream, "name"):
            source.name = stream.name   # PyYAML names the file in its errors
    else:
        text = source = stream
    key = hashlib.sha256(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")).digest()
    if key not in _PARSED:
        _PARSED[key] = pickle.dumps(_safe_load(source), protocol=pickle.HIGHEST_PROTOCOL)
    return pickle.loads(_PARSED[key])


yaml.safe_load = _safe_load_once


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
