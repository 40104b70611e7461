"""The in-process harness of the interface tier: what stands in for nameko's containers and for
the broker, so one service's entrypoints can be driven on a SQLite file with no server.

* ``entrypoints(ServiceClass)`` — every nameko entrypoint of the class (RPC, HTTP, event handler,
  timer), read from the class itself, so a new entrypoint shows up in the coverage checks;
* ``check_coverage(ServiceClass, module)`` — every entrypoint has a ``@covers`` test in the module;
* ``real_dependencies(ServiceClass, **deps)`` — nameko's ``worker_factory``, refusing to leave any
  dependency as its default ``MagicMock``;
* ``instrument(worker, called)`` — records which entrypoints a test really drove (``@covers``
  names are checked against it after each test, see conftest.py);
* ``request(...)`` — a werkzeug request as nameko's ``@http`` hands it over; ``rows(store, table)``;
* ``SourceLog`` — another service's event log: envelopes to push to ``on_<event>`` handlers and
  the ``events_since`` that catch-up pulls from;
* ``InProcessConsumer`` — stands in for the ``Consumer`` provider: the real ``EventConsumer`` over
  the service's store and handler table, catching up from ``SourceLog``s instead of over RPC;
* ``FakeRelay`` — the outbox relay's worker interface without a broker.

Only what needs a broker is replaced; stores, workflows, consumers and the console are real.
"""
from __future__ import annotations

import functools
import inspect
import json

import pytest
from nameko.events import EventHandler
from nameko.extensions import DependencyProvider, Entrypoint
from nameko.rpc import Rpc
from nameko.testing.services import worker_factory
from nameko.timer import Timer
from nameko.web.handlers import HttpRequestHandler
from sqlalchemy import select
from werkzeug.test import EnvironBuilder

from shared.core.consumer import CatchUp, EventConsumer
from shared.core.events import isoformat_utc, new_envelope, utc_now
from shared.core.events.catalogue import LATEST_VERSION
from shared.glue.providers import ConsumerApi


def covers(*entrypoint_names: str):
    """Marks a test as the interface test of these entrypoints; after the test the harness checks
    that each of them was really called on the worker (conftest.py)."""
    return pytest.mark.covers(*entrypoint_names)


# --- the entrypoints of a service class -----------------------------------------------------------

def describe(entrypoint: Entrypoint) -> str:
    if isinstance(entrypoint, HttpRequestHandler):
        return f"http {entrypoint.method} {entrypoint.url}"
    if isinstance(entrypoint, Rpc):
        return "rpc"
    if isinstance(entrypoint, EventHandler):
        return f"event {entrypoint.source_service}.{entrypoint.event_type}"
    if isinstance(entrypoint, Timer):
        return f"timer every {entrypoint.interval}s"
    return type(entrypoint).__name__


def entrypoints(service_cls) -> dict[str, list[str]]:
    """{method name: [what it is]} for every nameko entrypoint of the class (inherited ones and
    those ``listens_to`` adds included)."""
    found: dict[str, list[str]] = {}
    for name, attribute in inspect.getmembers(service_cls):
        for entrypoint in getattr(attribute, "nameko_entrypoints", ()):
            found.setdefault(name, []).append(describe(entrypoint))
    return {name: sorted(kinds) for name, kinds in sorted(found.items())}


def instrument(worker, called: set[str]):
    """Wrap the worker's entrypoint methods so every call (refused ones too) is recorded."""
    for name in entrypoints(type(worker)):
        method = getattr(worker, name)

        @functools.wraps(method)
        def recorded(*args, _name=name, _method=method, **kwargs):
            called.add(_name)
            return _method(*args, **kwargs)

        setattr(worker, name, recorded)
    return worker


def covered_names(module) -> dict[str, list[str]]:
    """{entrypoint name: [tests declaring it]} from the ``@covers`` marks of a test module."""
    found: dict[str, list[str]] = {}
    for test_name, function in vars(module).items():
        if not test_name.startswith("test_") or not callable(function):
            continue
        for mark in getattr(function, "pytestmark", ()):
            if mark.name == "covers":
                for entrypoint_name in mark.args:
                    found.setdefault(entrypoint_name, []).append(test_name)
    return found


def check_coverage(service_cls, module) -> None:
    """Every entrypoint of the class has a test in the module, and every ``@covers`` name is a
    real entrypoint (no test claims one that does not exist)."""
    declared = entrypoints(service_cls)
    covered = covered_names(module)
    missing = {name: kinds for name, kinds in declared.items() if name not in covered}
    unknown = sorted(set(covered) - set(declared))
    assert not missing, (f"{service_cls.__name__} entrypoints without an interface test in "
                         f"{module.__name__}: {missing}")
    assert not unknown, f"@covers names that are no entrypoint of {service_cls.__name__}: {unknown}"


# --- HTTP -------------------------------------------------------------------------------------------

def request(method: str, path: str, *, json_body=None, data=None, headers: dict | None = None,
            query: dict | None = None, remote_addr: str = "203.0.113.7", content_type: str | None = None):
    """A werkzeug ``Request`` as nameko's ``@http`` entrypoint receives it."""
    if json_body is not None:
        data = json.dumps(json_body).encode("utf-8")
        content_type = content_type or "application/json"
    builder = EnvironBuilder(method=method, path=path, data=data, headers=headers or {},
                             query_string=query, content_type=content_type,
                             environ_base={"REMOTE_ADDR": remote_addr})
    try:
        return builder.get_request()
    finally:
        builder.close()


def json_of(response):
    return json.loads(response.get_data(as_text=True))


def text_of(response) -> str:
    return response.get_data(as_text=True)


# --- other services' event logs -----------------------------------------------------------------------

class SourceLog:
    """Another service's log as this service sees it: ``append`` records an envelope at the next
    position (push it to an ``on_<event>`` handler, or leave it for catch-up to pull)."""

    def __init__(self, source: str):
        self.source = source
        self.events: list[dict] = []
        self._versions: dict[str, int] = {}

    def append(self, event_type: str, complaint_id: str, data: dict, *, version: int | None = None) -> dict:
        version = version if version is not None else self._versions.get(complaint_id, 0) + 1
        self._versions[complaint_id] = version
        envelope = new_envelope(event_type=event_type, schema_version=LATEST_VERSION[event_type],
                                source=self.source, position=len(self.events) + 1,
                                complaint_id=complaint_id, version=version,
                                occurred_at=isoformat_utc(utc_now()), data=data).to_dict()
        self.events.append(envelope)
        return envelope

    def events_since(self, position: int, limit: int = 1000) -> list[dict]:
        return [e for e in self.events if e["position"] > position][:limit]


class InProcessConsumer:
    """Stands in for the ``Consumer`` provider (``shared.glue.providers``): the real
    ``EventConsumer`` over the service's store and handler table; catch-up pulls each source's
    ``events_since`` from ``SourceLog``s instead of over RPC."""

    def __init__(self, store, handlers_cls, logs: dict[str, SourceLog], batch_catch_up: bool = True):
        self.sources = handlers_cls.sources()
        self.logs = logs
        self.batch_catch_up = batch_catch_up
        self.consumer = EventConsumer(store.database, store.quarantine, handlers_cls(store).table(),
                                      store.checkpoints, store.processed, store.failures,
                                      service=store.name)

    def catch_up(self) -> dict[str, int]:
        def fetch(source: str, position: int, limit: int) -> list[dict]:
            return self.logs[source].events_since(position, limit)

        pulling = CatchUp(self.consumer, [s for s in self.sources if s in self.logs], fetch,
                          batch=self.batch_catch_up)
        return pulling.run_once()


def consumer_api(store, handlers_cls, logs: dict[str, SourceLog]) -> ConsumerApi:
    """What a worker's ``self.consumer`` is in production (``ConsumerApi``), over ``InProcessConsumer``."""
    return ConsumerApi(InProcessConsumer(store, handlers_cls, logs))


# --- what needs a broker ------------------------------------------------------------------------------

class FakeRelay:
    """The worker interface of the outbox relay (``RelayStatus``) with no broker: nothing is
    published, so recorded events stay in the outbox."""

    broker_ok = False
    last_error = None
    published = 0

    def __init__(self):
        self.wakes = 0

    def wake(self) -> None:
        self.wakes += 1


class BrokerAnswers:
    """Replaces kombu's ``Connection`` in ``shared.glue.health``: the broker answers."""

    def __init__(self, *args, **kwargs):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def ensure_connection(self, *args, **kwargs):
        return self


class BrokerRefuses(BrokerAnswers):
    """… and the broker is down."""

    def ensure_connection(self, *args, **kwargs):
        raise ConnectionRefusedError(111, "Connection refused")


def real_dependencies(service_cls, **dependencies):
    """``worker_factory(service_cls, **dependencies)``, refusing to leave any dependency as
    nameko's default ``MagicMock`` (a mock would let a test pass without the real behaviour)."""
    names = {name for name, attribute in inspect.getmembers(service_cls)
             if isinstance(attribute, DependencyProvider)}
    missing = sorted(names - set(dependencies))
    assert not missing, f"{service_cls.__name__}: give every dependency a real value; missing {missing}"
    return worker_factory(service_cls, **dependencies)


def rows(store, table, *where) -> list[dict]:
    """The rows of one of the service's tables (optionally filtered), as dicts."""
    query = select(table)
    for condition in where:
        query = query.where(condition)
    with store.database.read() as connection:
        return [dict(row) for row in connection.execute(query).mappings()]
